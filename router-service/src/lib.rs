//! handoff-router: decides which human agents take a conversation a chatbot hands over.
//!
//! Dependencies point one way: [`engine`] (pure decisions) <- [`store`] (mutable state) <-
//! [`service`] (the router as an application) <- [`grpc`] (the tonic adapter) <- [`server`]
//! (the listener, health and reflection) <- the `handoff-router` binary. [`reload`] swaps
//! in a changed config file while serving.

pub mod engine;
pub mod error;
pub mod grpc;
pub mod reload;
pub mod server;
pub mod service;
pub mod store;

pub use error::RouterError;
pub use server::{SERVICE_NAME, serve};
pub use service::{Clock, Router, SystemClock};
