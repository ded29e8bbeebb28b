//! handoff-router: decides which human agents take a conversation a chatbot hands over.
//!
//! Dependencies point one way: [`engine`] (pure decisions) <- [`store`] (mutable state) <-
//! [`service`] (the router as an application, in domain terms: [`error`]) <- [`grpc`] (the
//! tonic adapter) <- [`server`] (health, reflection, and the gRPC server on the
//! [`listener`]'s connections), and [`console`] (the operator console in the browser, over
//! the same service). The `handoff` crate
//! wires it with the gateway into the binaries.

#![warn(missing_docs)]

pub mod console;
pub mod decision_log;
pub mod desk;
pub mod engine;
pub mod error;
pub mod grpc;
mod hash;
pub mod listener;
pub mod metrics;
pub mod replay;
pub mod server;
pub mod service;
pub mod store;
#[cfg(test)]
mod testing;

pub use console::serve_console;
pub use error::{ErrorKind, RouterError};
pub use server::{SERVICE_NAME, ServeError, Services, serve, serve_metrics};
pub use service::{Clock, Router, SystemClock};
