//! The gRPC server: the router service, `grpc.health.v1`, and server reflection (v1 and
//! v1alpha, which grpcurl 1.8 needs) on a listener the caller has already bound.

use std::{future::Future, sync::Arc, time::Duration};

use handoff_proto::router::v1::router_service_server::RouterServiceServer;
use tokio::{net::TcpListener, sync::oneshot};
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{error::RouterError, grpc::RouterGrpc, service::Router, store::Store};

/// The full name health checks use for the router service.
pub const SERVICE_NAME: &str = "handoff.router.v1.RouterService";

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight calls for
/// at most `grace` before dropping them.
pub async fn serve<S: Store>(
    listener: TcpListener,
    router: Arc<Router<S>>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RouterError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let (stopping, stopped) = oneshot::channel::<()>();
    let reporter_at_stop = reporter.clone();
    let signal = async move {
        shutdown.await;
        let reporter = reporter_at_stop;
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        reporter
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let _ = stopping.send(());
    };
    let health_watch = tokio::spawn(watch_store(router.clone(), reporter.clone()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .add_service(health)
        .add_service(reflection().build_v1().map_err(server_error)?)
        .add_service(reflection().build_v1alpha().map_err(server_error)?)
        .add_service(RouterServiceServer::new(RouterGrpc::new(router)))
        .serve_with_incoming_shutdown(incoming, signal);
    let grace_elapsed = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            Err(_) => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = server => result.map_err(server_error),
        () = grace_elapsed => {
            tracing::warn!(grace = ?grace, "shutdown grace elapsed, dropping in-flight calls");
            Ok(())
        }
    };
    health_watch.abort();
    result
}

/// How often the store's reachability is checked for the health service.
const HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// Reports the router service NOT_SERVING while its store cannot be reached, and SERVING
/// again once it can.
async fn watch_store<S: Store>(
    router: Arc<Router<S>>,
    reporter: tonic_health::server::HealthReporter,
) {
    let mut serving = true;
    let mut ticks = tokio::time::interval(HEALTH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let reachable = router.store().ping().await;
        if reachable.is_ok() == serving {
            continue;
        }
        serving = reachable.is_ok();
        let status = if serving {
            tracing::info!("state store reachable again");
            ServingStatus::Serving
        } else {
            if let Err(err) = &reachable {
                tracing::warn!(error = %err, "state store unreachable");
            }
            ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        reporter.set_service_status(SERVICE_NAME, status).await;
    }
}

/// Both reflection versions describe every service served, themselves included.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(handoff_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

fn server_error(err: impl std::fmt::Display) -> RouterError {
    RouterError::Server(err.to_string())
}
