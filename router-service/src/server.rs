//! The gRPC server: the router service, `grpc.health.v1`, and server reflection (v1 and
//! v1alpha, which grpcurl 1.8 needs) on a listener the caller has already bound.

use std::{sync::Arc, time::Duration};

use handoff_core::shutdown::{Stop, drain};
use handoff_proto::router::v1::router_service_server::RouterServiceServer;
pub use handoff_proto::router::v1::router_service_server::SERVICE_NAME;
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;

use crate::{grpc::RouterGrpc, service::Router, store::Store};

/// The gRPC server could not be built or failed while serving.
#[derive(Debug, thiserror::Error)]
#[error("grpc server: {0}")]
pub struct ServeError(String);

/// Serves `router` on `listener` until `stop` is requested, then reports NOT_SERVING and
/// drains in-flight calls for at most `grace` before dropping them.
pub async fn serve<S: Store>(
    listener: TcpListener,
    router: Arc<Router<S>>,
    stop: Stop,
    grace: Duration,
) -> Result<(), ServeError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
    let stopping = {
        let (stopped, reporter) = (stop.stopped(), reporter.clone());
        async move {
            stopped.await;
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
            reporter
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
        }
    };
    let health_watch = tokio::spawn(watch_store(router.clone(), reporter.clone()));
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let server = Server::builder()
        .add_service(health)
        .add_service(reflection().build_v1().map_err(serve_error)?)
        .add_service(reflection().build_v1alpha().map_err(serve_error)?)
        .add_service(RouterServiceServer::new(RouterGrpc::new(router)))
        .serve_with_incoming_shutdown(incoming, stopping);
    let result = drain(
        "router",
        async { server.await.map_err(serve_error) },
        &stop,
        grace,
    )
    .await;
    // Wait for the watcher to be gone, not just told to go: it holds the router, and with it
    // the store (the embedded file is locked until the last holder lets go).
    health_watch.abort();
    let _ = health_watch.await;
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

fn serve_error(err: impl std::fmt::Display) -> ServeError {
    ServeError(err.to_string())
}
