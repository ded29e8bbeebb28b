//! The HTTP server on a listener the caller has already bound, with graceful shutdown.

use std::{future::Future, sync::Arc, time::Duration};

use axum::serve::ListenerExt;
use tokio::{net::TcpListener, sync::oneshot};

use crate::{callback::Gateway, error::GatewayError, http::routes};

/// Serves `gateway` on `listener` until `shutdown` resolves, then lets in-flight callbacks
/// finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let listener = listener.tap_io(|tcp| {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set tcp_nodelay");
        }
    });
    let (stopping, stopped) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopping.send(());
    };
    let server = axum::serve(listener, routes(gateway)).with_graceful_shutdown(signal);
    let grace_elapsed = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result.map_err(|err| GatewayError::Internal(err.to_string())),
        () = grace_elapsed => {
            tracing::warn!(grace = ?grace, "shutdown grace elapsed, dropping in-flight callbacks");
            Ok(())
        }
    }
}
