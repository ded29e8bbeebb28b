//! The gateway's connection to the router, every call bounded by `[gateway]
//! router_timeout`: a lazily connected gRPC channel to a router elsewhere, or, in the
//! all-in-one, the router's own gRPC services called in process. Both go through the same
//! generated client and server (encoding, decoding, status codes, health); only the bytes
//! skip HTTP/2 and the loopback socket.

use std::{convert::Infallible, future::Future, time::Duration};

use handoff_proto::router::v1::{
    AssignHumanRequest, AssignHumanResponse, ReportSessionEventRequest, ReportSessionEventResponse,
    SetAgentStatusRequest, SetAgentStatusResponse, router_service_client::RouterServiceClient,
    router_service_server::SERVICE_NAME,
};
use tonic::{Request, body::Body, transport::Endpoint};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tower::{BoxError, Service, ServiceExt, util::BoxCloneSyncService};

use crate::{error::GatewayError, translate};

/// How gRPC requests reach the router: a channel, or its services in this process.
type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, TransportError>;

/// A channel's failure to carry a call (a concrete type: the generated client's bounds
/// do not hold for a bare boxed error inside an async handler).
#[derive(Debug)]
struct TransportError(BoxError);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TransportError {
    /// The channel's own error, so that tonic finds a refused connection in the chain and
    /// says UNAVAILABLE.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

/// A handle to the router; cheap to clone.
#[derive(Clone)]
pub struct RouterClient {
    router: RouterServiceClient<Transport>,
    health: HealthClient<Transport>,
    timeout: Duration,
    in_process: bool,
}

impl std::fmt::Debug for RouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterClient")
            .field("timeout", &self.timeout)
            .field("in_process", &self.in_process)
            .finish_non_exhaustive()
    }
}

impl RouterClient {
    /// A client for the router at `url` that connects on first use and reconnects by itself.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, GatewayError> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|err| GatewayError::Internal(format!("router_url {url:?}: {err}")))?
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let transport = BoxCloneSyncService::new(channel.map_err(|err| TransportError(err.into())));
        Ok(Self::over(transport, timeout, false))
    }

    /// A client calling `services`, the router's gRPC services (the router service and
    /// `grpc.health.v1` at least) in this process: no socket, no HTTP/2 framing.
    pub fn in_process<S>(services: S, timeout: Duration) -> Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let transport = BoxCloneSyncService::new(services.map_err(|never| match never {}));
        Self::over(transport, timeout, true)
    }

    fn over(transport: Transport, timeout: Duration, in_process: bool) -> Self {
        Self {
            router: RouterServiceClient::new(transport.clone()),
            health: HealthClient::new(transport),
            timeout,
            in_process,
        }
    }

    /// Whether the router is called in this process rather than over a channel.
    pub fn is_in_process(&self) -> bool {
        self.in_process
    }

    /// Asks the router who should take a session.
    pub async fn assign_human(
        &self,
        message: AssignHumanRequest,
    ) -> Result<AssignHumanResponse, tonic::Status> {
        let mut router = self.router.clone();
        self.bounded(router.assign_human(self.request(message)))
            .await
    }

    /// Tells the router what happened to a session.
    pub async fn report_session_event(
        &self,
        message: ReportSessionEventRequest,
    ) -> Result<ReportSessionEventResponse, tonic::Status> {
        let mut router = self.router.clone();
        self.bounded(router.report_session_event(self.request(message)))
            .await
    }

    /// Tells the router an agent's new status.
    pub async fn set_agent_status(
        &self,
        message: SetAgentStatusRequest,
    ) -> Result<SetAgentStatusResponse, tonic::Status> {
        let mut router = self.router.clone();
        self.bounded(router.set_agent_status(self.request(message)))
            .await
    }

    /// How the gateway reads a failed call: unavailable, too slow, or refused.
    pub fn error(&self, status: &tonic::Status) -> GatewayError {
        translate::from_status(status, self.timeout)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Awaits `call`, giving up after the deadline whatever the connection is doing.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Whether the router answers its health check as serving.
    pub async fn ready(&self) -> Result<(), GatewayError> {
        let mut request = Request::new(HealthCheckRequest {
            service: SERVICE_NAME.to_owned(),
        });
        request.set_timeout(self.timeout);
        let mut health = self.health.clone();
        let response = tokio::time::timeout(self.timeout, health.check(request))
            .await
            .map_err(|_| GatewayError::RouterTimeout(self.timeout))?
            .map_err(|status| translate::from_status(&status, self.timeout))?;
        match response.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(GatewayError::RouterUnavailable(format!(
                "health check says {}",
                other.as_str_name()
            ))),
        }
    }
}
