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

/// mimalloc, for every binary and test of the workspace: glibc's malloc, shared by the
/// runtime's two workers, was a tenth of a callback's CPU time (perf, two processes).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use app::{AppError, Application, Listeners, Reloader, check};
pub use launch::{Parts, launch};
