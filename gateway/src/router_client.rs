//! The gateway's connection to the router, every call bounded by `[gateway]
//! router_timeout` and by what is left of the callback's own deadline, behind a circuit
//! breaker: after [`BREAKER_FAILURES`] calls in a row find the router down or too slow,
//! calls fail at once for [`BREAKER_COOLDOWN`] (callbacks get the fallback group without
//! waiting), then one is let through to try again. Readiness is asked at most once a
//! [`READY_TTL`]. The router is reached over a lazily connected gRPC channel, the calls
//! multiplexed over one `Multiplex` stream ([`crate::multiplex`]), or, in the all-in-one,
//! the router's own implementation of the generated service trait, called in process. Both run the same server-side code (request validation, the router, status
//! codes, health); the in-process call only skips protobuf encoding, HTTP/2 framing and the
//! socket, which were most of what a callback cost beyond the decision itself.

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use handoff_proto::{
    DynRouterService,
    router::v1::{
        AssignHumanRequest, AssignHumanResponse, ReportSessionEventRequest,
        ReportSessionEventResponse, SetAgentStatusRequest, SetAgentStatusResponse,
        router_service_client::RouterServiceClient, router_service_server::SERVICE_NAME,
    },
};
use tonic::{
    Request,
    metadata::{MetadataKey, MetadataValue},
    transport::{Channel, Endpoint},
};
use tonic_health::{
    pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        health_server::Health,
    },
    server::HealthService,
};
use tracing::{Instrument as _, Span};

use crate::{
    error::GatewayError,
    multiplex::{Multiplexed, Mux, Sent},
    translate,
};

/// How calls reach the router.
// One per gateway: the size of the channel variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Transport {
    /// A gRPC channel to a router elsewhere.
    Channel {
        router: RouterServiceClient<Channel>,
        /// The same channel's `Multiplex` stream, which the gateway's calls take.
        mux: Arc<Mux>,
        health: HealthClient<Channel>,
    },
    /// The router's gRPC service and health service, in this process.
    InProcess {
        router: Arc<DynRouterService>,
        health: Arc<HealthService>,
    },
}

/// Runs an in-process call as a task of its own, so that a panic in the router fails the
/// call (INTERNAL: the app's fallback answers) as it would over a channel, instead of taking
/// the callback's connection down. Dropping the returned future (the deadline passed) aborts
/// the task, as dropping a call over a channel cancels it.
async fn isolated<T: Send + 'static>(
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
) -> Result<tonic::Response<T>, tonic::Status> {
    /// Aborts the task when the caller stops waiting for it.
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let task = tokio::spawn(call);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(result) => result,
        Err(err) => Err(tonic::Status::internal(format!("the router failed: {err}"))),
    }
}

/// How many calls in a row must find the router down or too slow to open the breaker.
pub const BREAKER_FAILURES: u32 = 5;
/// How long an open breaker fails calls at once before letting one through.
pub const BREAKER_COOLDOWN: Duration = Duration::from_secs(2);
/// How long a readiness answer is reused.
pub const READY_TTL: Duration = Duration::from_secs(1);

/// The circuit breaker: consecutive failures, and until when calls fail at once.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    open_until: Mutex<Option<Instant>>,
}

impl Breaker {
    /// Whether a call may go to the router now; an expired cooldown lets calls through
    /// (the first to fail again opens it anew).
    fn allows(&self) -> bool {
        let open_until = self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open_until.is_none_or(|until| Instant::now() >= until)
    }

    fn succeeded(&self) {
        if self.failures.swap(0, Ordering::Relaxed) >= BREAKER_FAILURES {
            tracing::info!("the router answers again: circuit closed");
        }
        *self
            .open_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn failed(&self) {
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures >= BREAKER_FAILURES {
            let mut open_until = self
                .open_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if open_until.is_none_or(|until| Instant::now() >= until) {
                if failures == BREAKER_FAILURES {
                    tracing::warn!(
                        failures,
                        cooldown = ?BREAKER_COOLDOWN,
                        "the router is down or too slow: circuit open, callbacks get the fallback at once"
                    );
                }
                *open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            }
        }
    }
}

/// The last readiness answer, and when it was asked.
type Readiness = Option<(Instant, Result<(), GatewayError>)>;

/// A handle to the router; cheap to clone (clones share the breaker and readiness).
#[derive(Clone)]
pub struct RouterClient {
    transport: Transport,
    timeout: Duration,
    /// `authorization: Bearer <[gateway] router_token>`, for a router elsewhere.
    bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    breaker: Arc<Breaker>,
    ready: Arc<Mutex<Readiness>>,
}

impl std::fmt::Debug for RouterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterClient")
            .field("timeout", &self.timeout)
            .field("in_process", &self.is_in_process())
            .finish_non_exhaustive()
    }
}

impl RouterClient {
    /// A client for the router at `url` that connects on first use and reconnects by itself,
    /// presenting `token` (when given) on every call.
    pub fn new(
        url: &str,
        timeout: Duration,
        token: Option<&handoff_core::config::Secret>,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, GatewayError> {
        let bearer = token
            .map(|token| {
                let mut value = MetadataValue::try_from(format!("Bearer {}", token.expose()))
                    .map_err(|_| {
                        GatewayError::Internal("gateway.router_token is not plain text".into())
                    })?;
                value.set_sensitive(true);
                Ok::<_, GatewayError>(value)
            })
            .transpose()?;
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(|err| GatewayError::Internal(format!("router_url {url:?}: {err}")))?;
        if url.starts_with("https://") {
            // An https:// router is reached over TLS or not at all.
            let tls = tls.unwrap_or_default().with_webpki_roots();
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|err| GatewayError::Internal(format!("router_url {url:?}: {err}")))?;
        }
        let channel = endpoint
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let router = RouterServiceClient::new(channel.clone());
        let transport = Transport::Channel {
            mux: Arc::new(Mux::new(router.clone(), bearer.clone())),
            router,
            health: HealthClient::new(channel),
        };
        Ok(Self::over(transport, timeout, bearer))
    }

    fn over(
        transport: Transport,
        timeout: Duration,
        bearer: Option<MetadataValue<tonic::metadata::Ascii>>,
    ) -> Self {
        Self {
            transport,
            timeout,
            bearer,
            breaker: Arc::default(),
            ready: Arc::default(),
        }
    }

    /// A client calling the router's own service implementation and health service in
    /// this process (the all-in-one).
    pub fn in_process(
        router: Arc<DynRouterService>,
        health: Arc<HealthService>,
        timeout: Duration,
    ) -> Self {
        Self::over(Transport::InProcess { router, health }, timeout, None)
    }

    /// Whether the router is called in this process rather than over a channel.
    pub fn is_in_process(&self) -> bool {
        matches!(self.transport, Transport::InProcess { .. })
    }

    /// Asks the router who should take a session.
    pub async fn assign_human(
        &self,
        message: AssignHumanRequest,
        deadline: Instant,
    ) -> Result<AssignHumanResponse, tonic::Status> {
        self.unary(
            "AssignHuman",
            message,
            deadline,
            |mut router, request| async move { router.assign_human(request).await },
            |router, request| async move { router.assign_human(request).await },
        )
        .await
    }

    /// Tells the router what happened to a session.
    pub async fn report_session_event(
        &self,
        message: ReportSessionEventRequest,
        deadline: Instant,
    ) -> Result<ReportSessionEventResponse, tonic::Status> {
        self.unary(
            "ReportSessionEvent",
            message,
            deadline,
            |mut router, request| async move { router.report_session_event(request).await },
            |router, request| async move { router.report_session_event(request).await },
        )
        .await
    }

    /// Tells the router an agent's new status.
    pub async fn set_agent_status(
        &self,
        message: SetAgentStatusRequest,
        deadline: Instant,
    ) -> Result<SetAgentStatusResponse, tonic::Status> {
        self.unary(
            "SetAgentStatus",
            message,
            deadline,
            |mut router, request| async move { router.set_agent_status(request).await },
            |router, request| async move { router.set_agent_status(request).await },
        )
        .await
    }

    /// One call of the router's rpc `name` with `message`, within `deadline`: on the
    /// channel's `Multiplex` stream, or with `remote` (the generated client's method) for a
    /// router that does not serve it, or in this process with `local` (the service's), as a
    /// task of its own; traced, bounded and counted by the breaker alike.
    async fn unary<Req, Resp, Remote, Local>(
        &self,
        name: &'static str,
        message: Req,
        deadline: Instant,
        remote: impl FnOnce(RouterServiceClient<Channel>, tonic::Request<Req>) -> Remote,
        local: impl FnOnce(Arc<DynRouterService>, tonic::Request<Req>) -> Local,
    ) -> Result<Resp, tonic::Status>
    where
        Req: Multiplexed<Response = Resp>,
        Remote: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
        Local: Future<Output = Result<tonic::Response<Resp>, tonic::Status>> + Send + 'static,
        Resp: Send + 'static,
    {
        match &self.transport {
            Transport::Channel { router, mux, .. } => {
                let call = async {
                    let trace = handoff_core::telemetry::outgoing();
                    match mux.call(message, self.budget(deadline), trace).await {
                        Sent::Answered(answer) => answer.map(tonic::Response::new),
                        Sent::Unary(message) => {
                            let request = self.traced_request(message, deadline);
                            remote(router.clone(), request).await
                        }
                    }
                };
                self.bounded(deadline, call)
                    .instrument(self.span(name))
                    .await
            }
            Transport::InProcess { router, .. } => {
                let (request, span) = self.call(name, message, deadline);
                self.bounded(deadline, isolated(local(router.clone(), request)))
                    .instrument(span)
                    .await
            }
        }
    }

    /// How the gateway reads a failed call: unavailable, too slow, or refused.
    pub fn error(&self, status: &tonic::Status) -> GatewayError {
        translate::from_status(status, self.timeout)
    }

    /// Whether the router answers its health check as serving (asked at most once a
    /// [`READY_TTL`]; the answer is shared meanwhile).
    pub async fn ready(&self) -> Result<(), GatewayError> {
        if let Some((at, answer)) = &*self.ready.lock().unwrap_or_else(PoisonError::into_inner)
            && at.elapsed() < READY_TTL
        {
            return answer.clone();
        }
        let deadline = Instant::now() + self.timeout;
        let request = self.request(
            HealthCheckRequest {
                service: SERVICE_NAME.to_owned(),
            },
            deadline,
        );
        let response = match &self.transport {
            Transport::Channel { health, .. } => {
                self.bounded(deadline, health.clone().check(request)).await
            }
            Transport::InProcess { health, .. } => {
                self.bounded(deadline, health.check(request)).await
            }
        };
        let answer = match response.map_err(|status| self.error(&status)) {
            Ok(response) => match response.status() {
                ServingStatus::Serving => Ok(()),
                other => Err(GatewayError::RouterUnavailable(format!(
                    "health check says {}",
                    other.as_str_name()
                ))),
            },
            Err(err) => Err(err),
        };
        *self.ready.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), answer.clone()));
        answer
    }

    /// A call to the router's `method`: its client span, and its request carrying the
    /// span's trace context, so that the router's span of the call is its child.
    fn call<T>(&self, method: &'static str, message: T, deadline: Instant) -> (Request<T>, Span) {
        let span = self.span(method);
        let request = span.in_scope(|| self.traced_request(message, deadline));
        (request, span)
    }

    /// The client span of a call to the router's `method`.
    fn span(&self, method: &'static str) -> Span {
        tracing::info_span!(
            "router call",
            otel.name = method,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = SERVICE_NAME,
            rpc.method = method,
            in_process = self.is_in_process(),
        )
    }

    /// The call's request, carrying the current span's trace context.
    fn traced_request<T>(&self, message: T, deadline: Instant) -> Request<T> {
        let mut request = self.request(message, deadline);
        for (name, value) in handoff_core::telemetry::outgoing() {
            if let (Ok(name), Ok(value)) = (
                MetadataKey::from_bytes(name.as_bytes()),
                MetadataValue::try_from(value.as_str()),
            ) {
                request.metadata_mut().insert(name, value);
            }
        }
        request
    }

    /// How long a call may take: `router_timeout`, or what is left until `deadline`.
    fn budget(&self, deadline: Instant) -> Duration {
        self.timeout
            .min(deadline.saturating_duration_since(Instant::now()))
    }

    /// The call's request, carrying its budget (`grpc-timeout`) and the gateway's token for
    /// a router elsewhere.
    fn request<T>(&self, message: T, deadline: Instant) -> Request<T> {
        let mut request = Request::new(message);
        if !self.is_in_process() {
            request.set_timeout(self.budget(deadline));
            if let Some(bearer) = &self.bearer {
                request
                    .metadata_mut()
                    .insert("authorization", bearer.clone());
            }
        }
        request
    }

    /// Awaits `call` within its budget, whatever the router is doing, unless the breaker
    /// is open; counts the outcome for the breaker.
    async fn bounded<T>(
        &self,
        deadline: Instant,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        if !self.breaker.allows() {
            return Err(tonic::Status::unavailable(
                "the router is known to be down (circuit open)",
            ));
        }
        let budget = self.budget(deadline);
        let result = match tokio::time::timeout(budget, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(status),
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {budget:?}"
            ))),
        };
        match &result {
            Err(status)
                // A deadline tonic enforces itself comes back as CANCELLED.
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                ) =>
            {
                self.breaker.failed();
            }
            _ => self.breaker.succeeded(),
        }
        result
    }
}
