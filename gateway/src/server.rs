//! The HTTP server on a listener the caller has already bound, with graceful shutdown.

use std::{sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use handoff_core::shutdown::{Stop, drain};
use tokio::net::TcpListener;

use crate::{callback::Gateway, error::GatewayError, http::routes};

/// Serves `gateway` on `listener` until `stop` is requested, then lets in-flight callbacks
/// finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    stop: Stop,
    grace: Duration,
) -> Result<(), GatewayError> {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set tcp_nodelay");
        }
    });
    let server = axum::serve(listener, routes(gateway)).with_graceful_shutdown(stop.stopped());
    let server = async {
        server
            .await
            .map_err(|err| GatewayError::Internal(err.to_string()))
    };
    drain("gateway", server, &stop, grace).await
}
