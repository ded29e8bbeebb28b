//! The gateway's connection to the router: one lazily connected gRPC channel, every call
//! bounded by `[gateway] router_timeout`.

use std::time::Duration;

use std::future::Future;

use handoff_proto::router::v1::{
    AssignHumanRequest, AssignHumanResponse, ReportSessionEventRequest, ReportSessionEventResponse,
    SetAgentStatusRequest, SetAgentStatusResponse, router_service_client::RouterServiceClient,
    router_service_server::SERVICE_NAME,
};
use tonic::{
    Request,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{error::GatewayError, translate};

/// A handle to the router; cheap to clone.
#[derive(Debug, Clone)]
pub struct RouterClient {
    router: RouterServiceClient<Channel>,
    health: HealthClient<Channel>,
    timeout: Duration,
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
        Ok(Self {
            router: RouterServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
            timeout,
        })
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
