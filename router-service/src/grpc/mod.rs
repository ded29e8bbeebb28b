//! The thin tonic adapter: parses requests into engine and config types, calls the
//! [`Router`], and maps answers and errors back ([`status`] holds the code table). Decides
//! nothing.

pub mod auth;
mod convert;
mod request;
pub mod status;

use std::sync::Arc;

use handoff_core::id::{AgentId, GroupId};
use handoff_core::shutdown::Stop;
use handoff_proto::router::v1::{
    AssignHumanRequest, AssignHumanResponse, ExplainAssignmentRequest, ExplainAssignmentResponse,
    GetStatusRequest, GetStatusResponse, ListAgentsRequest, ListAgentsResponse,
    ListSessionsRequest, ListSessionsResponse, MultiplexRequest, RemoveAgentRequest,
    RemoveAgentResponse, ReportSessionEventRequest, ReportSessionEventResponse,
    SetAgentStatusRequest, SetAgentStatusResponse, UpsertAgentRequest, UpsertAgentResponse,
    UpsertCustomerRequest, UpsertCustomerResponse,
    router_service_server::{RouterService, SERVICE_NAME},
};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument as _, Span, field::Empty};

pub use request::parse_request;

use crate::{
    error::RouterError,
    metrics::{Metrics, RejectionLabels},
    service::Router,
    store::{Assignment, Store},
};

/// The server span of a call to `method`: the child of the caller's span when the request
/// carries a trace context (the gateway's, or any internal caller's).
fn server_span<T>(method: &'static str, request: &Request<T>) -> Span {
    let span = tracing::info_span!(
        "rpc",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = SERVICE_NAME,
        rpc.method = method,
        app = Empty,
        session = Empty,
        rule = Empty,
        strategy = Empty,
        candidates = Empty,
        reserved = Empty,
        fallback = Empty,
        outcome = Empty,
        otel.status_code = Empty,
        otel.status_message = Empty,
    );
    handoff_core::telemetry::adopt(&span, |name| {
        request
            .metadata()
            .get(name)
            .and_then(|value| value.to_str().ok())
    });
    span
}

/// Runs a call's `handler` in `span`, noting a failure on it and counting it.
/// The name of the router token `request` came with, as the listener's guard found it.
fn caller<T>(request: &Request<T>) -> Option<std::sync::Arc<str>> {
    request
        .extensions()
        .get::<auth::CallerName>()
        .map(|caller| std::sync::Arc::clone(&caller.0))
}

async fn traced<R>(
    metrics: &Metrics,
    method: &'static str,
    span: Span,
    handler: impl Future<Output = Result<R, Status>>,
) -> Result<R, Status> {
    let result = handler.instrument(span.clone()).await;
    if let Err(status) = &result {
        span.record("otel.status_code", "ERROR");
        span.record("otel.status_message", status.message());
        metrics
            .rejections
            .get_or_create(&RejectionLabels {
                method,
                code: code_name(status.code()),
            })
            .inc();
    }
    result
}

/// A gRPC code as its name.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Notes a decision on the current call's span.
fn note(assignment: &Assignment) {
    let (answer, outcome) = match assignment {
        Assignment::Fresh(answer) => (answer, "decided"),
        Assignment::Replayed(answer) => (answer, "replayed"),
    };
    let span = Span::current();
    span.record("rule", answer.rule.as_str());
    span.record("candidates", answer.agents.len());
    span.record("fallback", answer.fallback);
    span.record("outcome", outcome);
    if let Some(strategy) = answer.strategy {
        span.record("strategy", strategy.as_str());
    }
    if let Some(reserved) = &answer.reserved {
        span.record("reserved", reserved.as_str());
    }
}

/// `handoff.router.v1.RouterService` over a [`Router`].
pub struct RouterGrpc<S> {
    router: Arc<Router<S>>,
    streams: Streams,
}

impl<S> Clone for RouterGrpc<S> {
    fn clone(&self) -> Self {
        Self {
            router: Arc::clone(&self.router),
            streams: self.streams.clone(),
        }
    }
}

/// What the `Multiplex` streams of a [`RouterGrpc`] live under.
#[derive(Clone)]
pub struct Streams {
    /// The access policy each call on a stream is checked against, under the stream's
    /// token (none: the all-in-one's in-process service, past the listener).
    pub access: Option<auth::Policy>,
    /// How many calls of one stream may run at once (`[router] max_concurrent_calls`, as
    /// for a connection's unary calls).
    pub max_in_flight: usize,
    /// Stops every stream reading calls (the router is stopping).
    pub closing: Stop,
}

impl<S> RouterGrpc<S> {
    /// Serves `router`, its `Multiplex` streams under `streams`.
    pub fn new(router: Arc<Router<S>>, streams: Streams) -> Self {
        Self { router, streams }
    }
}

#[tonic::async_trait]
impl<S: Store> RouterService for RouterGrpc<S> {
    async fn assign_human(
        &self,
        request: Request<AssignHumanRequest>,
    ) -> Result<Response<AssignHumanResponse>, Status> {
        let span = server_span("AssignHuman", &request);
        traced(self.router.metrics(), "AssignHuman", span, async move {
            let request = request.into_inner();
            let replay_only = request.replay_only;
            let handoff = parse_request(request, self.router.now())?;
            let span = Span::current();
            span.record("app", handoff.app.get());
            span.record("session", handoff.session.as_str());
            let assignment = if replay_only {
                self.router.replay(&handoff).await?
            } else {
                self.router.assign(&handoff).await?
            };
            note(&assignment);
            Ok(Response::new(convert::assignment(assignment)))
        })
        .await
    }

    async fn explain_assignment(
        &self,
        request: Request<ExplainAssignmentRequest>,
    ) -> Result<Response<ExplainAssignmentResponse>, Status> {
        let span = server_span("ExplainAssignment", &request);
        traced(
            self.router.metrics(),
            "ExplainAssignment",
            span,
            async move {
                let request = request.into_inner();
                let at = request::time("at", request.at)?;
                let handoff = request
                    .handoff
                    .ok_or_else(|| RouterError::invalid("handoff", "is required"))?;
                let handoff = parse_request(handoff, self.router.now())?;
                let explained = self.router.explain(&handoff, at).await?;
                Ok(Response::new(convert::explanation(explained)))
            },
        )
        .await
    }

    async fn upsert_agent(
        &self,
        request: Request<UpsertAgentRequest>,
    ) -> Result<Response<UpsertAgentResponse>, Status> {
        let span = server_span("UpsertAgent", &request);
        let by = caller(&request);
        traced(self.router.metrics(), "UpsertAgent", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let agent = request
                .agent
                .ok_or_else(|| RouterError::invalid("agent", "is required"))?;
            let config = convert::agent_config(agent)?;
            let agent = self.router.upsert_agent(app, config, by.as_deref()).await?;
            Ok(Response::new(UpsertAgentResponse {
                agent: Some(convert::agent(&agent, agent.status)),
            }))
        })
        .await
    }

    async fn remove_agent(
        &self,
        request: Request<RemoveAgentRequest>,
    ) -> Result<Response<RemoveAgentResponse>, Status> {
        let span = server_span("RemoveAgent", &request);
        let by = caller(&request);
        traced(self.router.metrics(), "RemoveAgent", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let agent = AgentId::parse(request.agent_id)
                .map_err(|e| RouterError::invalid("agent_id", e))?;
            self.router.remove_agent(app, &agent, by.as_deref()).await?;
            Ok(Response::new(RemoveAgentResponse {}))
        })
        .await
    }

    async fn set_agent_status(
        &self,
        request: Request<SetAgentStatusRequest>,
    ) -> Result<Response<SetAgentStatusResponse>, Status> {
        let span = server_span("SetAgentStatus", &request);
        let by = caller(&request);
        traced(self.router.metrics(), "SetAgentStatus", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let agent = AgentId::parse(request.agent_id)
                .map_err(|e| RouterError::invalid("agent_id", e))?;
            let status = convert::status(request.status).ok_or_else(|| {
                RouterError::invalid("status", "must be AVAILABLE, AWAY or OFFLINE")
            })?;
            let mut report = convert::status_report(request.event_time, request.event_id)?;
            report.by = by.map(|name| name.to_string());
            let applied = self.router.set_status(app, &agent, status, report).await?;
            Ok(Response::new(SetAgentStatusResponse {
                outcome: convert::outcome(applied).into(),
            }))
        })
        .await
    }

    async fn upsert_customer(
        &self,
        request: Request<UpsertCustomerRequest>,
    ) -> Result<Response<UpsertCustomerResponse>, Status> {
        let span = server_span("UpsertCustomer", &request);
        let by = caller(&request);
        traced(self.router.metrics(), "UpsertCustomer", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let customer = request
                .customer
                .ok_or_else(|| RouterError::invalid("customer", "is required"))?;
            let config = convert::customer_config(customer)?;
            let customer = self
                .router
                .upsert_customer(app, config, by.as_deref())
                .await?;
            Ok(Response::new(UpsertCustomerResponse {
                customer: Some(convert::customer(&customer)),
            }))
        })
        .await
    }

    async fn list_agents(
        &self,
        request: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        let span = server_span("ListAgents", &request);
        traced(self.router.metrics(), "ListAgents", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let group = request
                .group_id
                .map(GroupId::new)
                .transpose()
                .map_err(|e| RouterError::invalid("group_id", e))?;
            let listings = self.router.list_agents(app, group).await?;
            let groups = self.router.list_groups(app, group).await?;
            Ok(Response::new(ListAgentsResponse {
                agents: listings.iter().map(convert::listing).collect(),
                groups: groups.iter().map(convert::group_listing).collect(),
            }))
        })
        .await
    }

    async fn report_session_event(
        &self,
        request: Request<ReportSessionEventRequest>,
    ) -> Result<Response<ReportSessionEventResponse>, Status> {
        let span = server_span("ReportSessionEvent", &request);
        traced(
            self.router.metrics(),
            "ReportSessionEvent",
            span,
            async move {
                let request = request.into_inner();
                let app = convert::app_id(request.sdk_app_id)?;
                let event = convert::session_event(request)?;
                let applied = self.router.report_session(app, event).await?;
                Ok(Response::new(ReportSessionEventResponse {
                    outcome: convert::outcome(applied).into(),
                }))
            },
        )
        .await
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let span = server_span("ListSessions", &request);
        traced(self.router.metrics(), "ListSessions", span, async move {
            let request = request.into_inner();
            let app = convert::app_id(request.sdk_app_id)?;
            let agent = Some(request.agent_id)
                .filter(|id| !id.is_empty())
                .map(AgentId::parse)
                .transpose()
                .map_err(|e| RouterError::invalid("agent_id", e))?;
            let page = convert::page(request.page_size, &request.page_token)?;
            let (sessions, next) = self.router.list_sessions(app, agent.as_ref(), page).await?;
            Ok(Response::new(ListSessionsResponse {
                sessions: sessions.iter().map(convert::live_session).collect(),
                next_page_token: next
                    .map(|last| convert::page_token(&last))
                    .unwrap_or_default(),
            }))
        })
        .await
    }

    type MultiplexStream = handoff_proto::multiplex::Answers;

    async fn multiplex(
        &self,
        request: Request<Streaming<MultiplexRequest>>,
    ) -> Result<Response<Self::MultiplexStream>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|value| value.as_bytes().to_vec());
        let access = self.streams.access.clone();
        let rejections = self.router.metrics().rejections.clone();
        // Each call is checked as if it came alone: its method against the token's grants,
        // against the policy as it is now (a reload that takes a grant away takes it away
        // from open streams too).
        let admit = move |method: &'static str| {
            let mut extensions = tonic::Extensions::new();
            let Some(access) = &access else {
                return Ok(extensions);
            };
            match access.load().check_method(method, authorization.as_deref()) {
                Ok(caller) => {
                    if let Some(caller) = caller {
                        extensions.insert(caller);
                    }
                    Ok(extensions)
                }
                Err(status) => {
                    rejections
                        .get_or_create(&RejectionLabels {
                            method,
                            code: code_name(status.code()),
                        })
                        .inc();
                    Err(status)
                }
            }
        };
        Ok(Response::new(handoff_proto::multiplex::serve(
            Arc::new(self.clone()),
            request.into_inner(),
            self.streams.max_in_flight,
            admit,
            self.streams.closing.stopped(),
        )))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let span = server_span("GetStatus", &request);
        traced(self.router.metrics(), "GetStatus", span, async move {
            Ok(Response::new(convert::router_status(
                &self.router.status().await,
            )))
        })
        .await
    }
}
