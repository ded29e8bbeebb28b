//! The gRPC server: the router service, `grpc.health.v1`, and server reflection (v1 and
//! v1alpha, which grpcurl 1.8 needs). [`Services`] is built once; [`serve`] puts it on a
//! listener the caller has already bound, and [`Services::router_service`] and
//! [`Services::health_service`] hand the same implementations to a caller in this process
//! (the all-in-one gateway).

use std::{sync::Arc, time::Duration};

use handoff_core::shutdown::{Stop, drain};
pub use handoff_proto::router::v1::router_service_server::SERVICE_NAME;
use handoff_proto::{DynRouterService, router::v1::router_service_server::RouterServiceServer};
use tokio::net::TcpListener;
use tonic::{service::Routes, transport::Server};
use tonic_health::{
    ServingStatus,
    server::{HealthReporter, HealthService},
};

use crate::{
    grpc::{
        RouterGrpc, Streams,
        auth::{GuardLayer, Policy},
    },
    listener::{self, ActivityLayer, ConnectionLimits},
    service::Router,
    store::Store,
};

/// The gRPC server could not be built or failed while serving.
#[derive(Debug, thiserror::Error)]
#[error("grpc server: {0}")]
pub struct ServeError(pub(crate) String);

/// Everything the router serves over gRPC, health and reflection included, for one router.
pub struct Services<S: Store> {
    router: Arc<Router<S>>,
    routes: Routes,
    health: HealthReporter,
    access: Policy,
    streams: Streams,
}

impl<S: Store> Services<S> {
    /// The services for `router`, its health reported SERVING, the listener's calls checked
    /// against `access` (which a reload swaps), each `Multiplex` stream running at most
    /// `max_concurrent_calls` of its calls at once.
    pub async fn new(
        router: Arc<Router<S>>,
        access: Policy,
        max_concurrent_calls: usize,
    ) -> Result<Self, ServeError> {
        let streams = Streams {
            access: Some(access.clone()),
            max_in_flight: max_concurrent_calls,
            closing: Stop::new(),
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status(SERVICE_NAME, ServingStatus::Serving)
            .await;
        let routes = Routes::new(health_service)
            .add_service(reflection().build_v1().map_err(serve_error)?)
            .add_service(reflection().build_v1alpha().map_err(serve_error)?)
            .add_service(RouterServiceServer::new(RouterGrpc::new(
                router.clone(),
                streams.clone(),
            )))
            .prepare();
        Ok(Self {
            router,
            routes,
            health,
            access,
            streams,
        })
    }

    /// The router service's implementation, for a caller in this process (the
    /// all-in-one's gateway): what the listener serves, without encoding or framing.
    pub fn router_service(&self) -> Arc<DynRouterService> {
        let streams = Streams {
            access: None,
            ..self.streams.clone()
        };
        Arc::new(RouterGrpc::new(self.router.clone(), streams))
    }

    /// The health service the listener serves, for a caller in this process: it says
    /// NOT_SERVING once the server is stopping or the store cannot be reached.
    pub fn health_service(&self) -> Arc<HealthService> {
        Arc::new(HealthService::from_health_reporter(self.health.clone()))
    }
}

/// Serves `services` on `listener` (over TLS with `tls`, from `[router.tls]`) until `stop`
/// is requested, then reports NOT_SERVING and drains in-flight calls for at most `grace`
/// before dropping them. Connections live under `limits` (see [`crate::listener`]); a
/// connection's calls beyond `max_concurrent_calls` are refused at once (UNAVAILABLE: the
/// gateway answers its fallback) instead of queueing.
pub async fn serve<S: Store>(
    listener: TcpListener,
    services: Services<S>,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: ConnectionLimits,
    max_concurrent_calls: usize,
    stop: Stop,
    grace: Duration,
) -> Result<(), ServeError> {
    let Services {
        router,
        routes,
        health,
        access,
        streams,
    } = services;
    let stopping = {
        let (stopped, health) = (stop.stopped(), health.clone());
        async move {
            stopped.await;
            // Multiplex streams stop reading calls, answer those read, and end, so that
            // draining does not wait on them for the whole grace.
            streams.closing.stop();
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            health
                .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                .await;
        }
    };
    let open = access.load().is_open();
    let guard = GuardLayer::new(access, router.metrics().rejections.clone());
    let health_watch = tokio::spawn(watch_store(Arc::clone(&router), health));
    if open {
        tracing::warn!(
            "the router's gRPC port takes calls from anyone who reaches it: list callers in [router.auth] tokens"
        );
    }
    // The guard first: a call it refuses never counts as the connection's activity.
    let server = Server::builder()
        .concurrency_limit_per_connection(max_concurrent_calls)
        .load_shed(true)
        .http2_keepalive_interval(Some(limits.keepalive))
        .http2_keepalive_timeout(Some(limits.keepalive.min(Duration::from_secs(20))))
        .layer(guard)
        .layer(ActivityLayer)
        .add_routes(routes);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let closed = router.metrics().connections_closed.clone();
    let incoming = listener::incoming(listener, acceptor, limits, closed);
    let served = async {
        server
            .serve_with_incoming_shutdown(incoming, stopping)
            .await
            .map_err(serve_error)
    };
    let result = drain("router", served, &stop, grace).await;
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
async fn watch_store<S: Store>(router: Arc<Router<S>>, reporter: HealthReporter) {
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

/// Serves the router's Prometheus metrics (`GET /metrics`) on `listener` until `stop`.
pub async fn serve_metrics<S: Store>(
    listener: TcpListener,
    router: Arc<Router<S>>,
    stop: Stop,
) -> Result<(), ServeError> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let router = router.clone();
            async move {
                // OpenMetrics to whoever asks for it (Prometheus does), else text 0.0.4.
                let open = headers
                    .get_all(axum::http::header::ACCEPT)
                    .iter()
                    .filter_map(|value| value.to_str().ok())
                    .any(|accept| accept.contains("application/openmetrics-text"));
                let (content_type, text) = if open {
                    (
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        router.metrics_openmetrics().await,
                    )
                } else {
                    (
                        "text/plain; version=0.0.4; charset=utf-8",
                        router.metrics_text().await,
                    )
                };
                ([(axum::http::header::CONTENT_TYPE, content_type)], text)
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.stopped().await })
        .await
        .map_err(serve_error)
}
