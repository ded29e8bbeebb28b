//! handoff: the router and the Tencent gateway, wired once.
//!
//! [`Application`] builds whichever parts have a listener (the router, the gateway or both)
//! from one config and runs them until a stop; the three binaries (`handoff`,
//! `handoff-router`, `handoff-gateway`) are [`launch`] with the parts they run, and the
//! end-to-end tests build the system through the same [`Application`]. The routing logic
//! lives in `handoff-router`, the Tencent contract in `handoff-gateway`; nothing here
//! decides anything.

#![warn(missing_docs)]

mod app;
pub mod desk;
mod launch;
pub mod replay;

pub use app::{AppError, Application, Listeners, Reloader, check};
pub use launch::{Parts, launch};
