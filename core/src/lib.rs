//! What every handoff binary shares, and nothing that decides a route.
//!
//! - [`id`]: the identifiers a request carries (`SdkAppId`, `AgentId`, `SessionId`, ...),
//!   each built by a fallible `parse` at the boundary so nothing past it re-validates.
//! - [`config`]: the one TOML file the router, the gateway and the all-in-one read,
//!   layered with `HANDOFF__SECTION__KEY` environment overrides and validated whole.
//! - [`reload`]: watching the config file and SIGHUP, for the binaries that reload.
//! - [`cli`], [`telemetry`], [`shutdown`]: process wiring for the three binaries.

#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod id;
pub mod net;
pub mod reload;
pub mod shutdown;
pub mod telemetry;
pub mod throttle;
pub mod tls;

pub use config::Config;
