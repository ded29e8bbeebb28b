//! handoff-gateway: speaks Tencent Desk's "Business Server Agent Routing Callback" and asks
//! the router over gRPC.
//!
//! [`tencent`] is the wire format, [`auth`] checks who is calling, [`translate`] maps
//! Tencent to `handoff.router.v1` and back, [`callback`] runs one callback through them,
//! [`http`] holds the axum routes and [`server`] the listener. The gateway decides no route
//! itself: when the router fails it answers the app's configured fallback group or a
//! Tencent-shaped error from the table in [`error`].

#![warn(missing_docs)]

pub mod auth;
pub mod callback;
pub mod error;
pub mod events;
pub mod http;
pub mod ledger;
pub mod metrics;
pub mod multiplex;
pub mod router_client;
pub mod server;
pub mod tencent;
pub mod translate;

pub use callback::Gateway;
pub use error::GatewayError;
pub use server::{Limits, Sources, TlsAcceptor, serve};
