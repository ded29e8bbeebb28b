//! One callback, start to finish: who is calling, what they sent, and then, by command,
//! what the router says (with the fallback when it cannot say in time) or what the router
//! records (acknowledged only once it has).

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tracing::Instrument as _;

use arc_swap::ArcSwap;
use axum::body::Body;
use handoff_core::{
    Config,
    config::ConfigError,
    id::{AgentId, SdkAppId},
    throttle::Throttle,
};
use handoff_proto::router::v1::ReportOutcome;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tonic::Code;

use crate::{
    auth::{AppPolicy, Apps},
    error::GatewayError,
    events::{self, EventNames},
    ledger::{Ledger, Request},
    metrics::{Command, Counters, Outcome},
    router_client::RouterClient,
    tencent::{
        self, AssignHuman, Callback, CallbackQuery, CallbackResponse, Encoded,
        MEMBER_STATUS_CHANGE, MemberEventNotify, SessionEventNotify,
    },
    translate,
};

/// The gateway: the apps it serves, the router it asks, and what it has counted.
#[derive(Debug)]
pub struct Gateway {
    apps: ArcSwap<Apps>,
    names: ArcSwap<EventNames>,
    router: RouterClient,
    path: String,
    max_body_bytes: usize,
    /// Everything a callback may take from its arrival: `[gateway] deadline`.
    deadline: Duration,
    /// Room for `[gateway] max_in_flight` callbacks at once.
    in_flight: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
    /// What each signature was first used for.
    ledger: Ledger,
    counters: Counters,
}

impl Gateway {
    /// A gateway for `config`'s apps, asking the router at `[gateway] router_url`.
    pub fn from_config(config: &Config) -> Result<Self, GatewayError> {
        let gateway = &config.gateway;
        let router = RouterClient::new(
            &gateway.router_url,
            gateway.router_timeout.get(),
            gateway.router_token.as_ref(),
            router_tls(gateway)?,
        )?;
        Ok(Self::with_router(config, router))
    }

    /// A gateway for `config`'s apps, asking `router` (`[gateway] router_url` unused).
    pub fn with_router(config: &Config, router: RouterClient) -> Self {
        let gateway = &config.gateway;
        Self {
            apps: ArcSwap::from_pointee(Apps::from_config(config)),
            names: ArcSwap::from_pointee(EventNames::from_config(&gateway.session_events)),
            router,
            path: gateway.path.clone(),
            max_body_bytes: gateway.max_body_bytes,
            deadline: gateway.deadline.get(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(gateway.max_in_flight)),
            max_in_flight: gateway.max_in_flight,
            ledger: Ledger::default(),
            counters: Counters::default(),
        }
    }

    /// Takes the apps (tokens, fallback groups, clock skew) and the session event names of
    /// a reloaded `config`; the listener, path and router settings keep their values until
    /// the next start.
    pub fn reload(&self, config: &Config) -> Result<(), ConfigError> {
        self.apps.store(Arc::new(Apps::from_config(config)));
        let names = EventNames::from_config(&config.gateway.session_events);
        self.names.store(Arc::new(names));
        Ok(())
    }

    /// The path callbacks are POSTed to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The router this gateway asks.
    pub fn router(&self) -> &RouterClient {
        &self.router
    }

    /// What the gateway has counted.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Exports the gateway's counters over OTLP when the `OTEL_*` variables ask for it,
    /// for as long as the gateway lives.
    pub fn export_metrics(self: &Arc<Self>) {
        if let Some(meter) = handoff_core::telemetry::meter() {
            let gateway = Arc::downgrade(self);
            handoff_core::telemetry::mirror(meter, crate::metrics::MIRRORED, move || {
                gateway
                    .upgrade()
                    .map(|gateway| gateway.counters.exposition())
            });
        }
    }

    /// Answers one callback, its answer encoded as it goes on the wire.
    pub async fn on_callback(
        &self,
        raw_query: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Encoded, GatewayError> {
        let span = tracing::info_span!(
            "callback",
            otel.name = "Tencent callback",
            otel.kind = "server",
            app = tracing::field::Empty,
            command = tracing::field::Empty,
            session = tracing::field::Empty,
            outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        handoff_core::telemetry::adopt(&span, |name| {
            headers.get(name).and_then(|value| value.to_str().ok())
        });
        let started = Instant::now();
        let (command, answered) = self
            .dispatch(raw_query, headers, body, started + self.deadline)
            .instrument(span.clone())
            .await;
        self.counters.observe(command, started.elapsed());
        if answered.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        answered
    }

    async fn dispatch(
        &self,
        raw_query: &str,
        headers: &HeaderMap,
        body: Body,
        deadline: Instant,
    ) -> (Command, Result<Encoded, GatewayError>) {
        let query = CallbackQuery::parse(raw_query);
        let apps = self.apps.load();
        let checked = async {
            if let Some(name) = query.ambiguous {
                return Err(GatewayError::BadRequest(format!(
                    "{name} is given more than once, with different values"
                )));
            }
            let app = apps.authenticate(&query, SystemTime::now())?;
            let body = self.read_body(headers, body, deadline).await?;
            let callback = tencent::parse(&query, &body)?;
            // Only a signed request can be played again as Tencent's.
            let request = app
                .token
                .as_ref()
                .map(|_| Request::of(app.id, raw_query, &body));
            Ok::<_, GatewayError>((app, callback, request))
        };
        let (app, callback, request) = match checked.await {
            Ok(checked) => checked,
            Err(err) => {
                self.counters.count(Command::Unknown, Outcome::Refused);
                self.counters.refused(err.reason());
                return (Command::Unknown, Err(err));
            }
        };
        let span = tracing::Span::current();
        span.record("app", app.id.get());
        let again = request.is_some_and(|request| self.ledger.answered(request, Instant::now()));
        if again && !matches!(callback, Callback::AssignHuman(_)) {
            // An event answered before was recorded then: acknowledged again, not sent on.
            let command = match callback {
                Callback::SessionEvent(_) => Command::SessionEvent,
                _ => Command::MemberEvent,
            };
            self.counters.count(command, Outcome::Duplicate);
            return (command, Ok(Encoded::from(&CallbackResponse::ok())));
        }
        let (command, answer) = self.route(app, &query, callback, again, deadline).await;
        if let (Some(request), Ok(_), false) = (request, &answer, again) {
            let window = apps.signature_window();
            self.ledger.record(request, Instant::now(), window);
        }
        (command, answer.map(|answer| Encoded::from(&answer)))
    }

    /// Sends a checked callback where it goes, within room for it; `again` for a signed
    /// AssignHuman answered before (the router then only replays).
    async fn route(
        &self,
        app: &AppPolicy,
        query: &CallbackQuery,
        callback: Callback,
        again: bool,
        deadline: Instant,
    ) -> (Command, Result<CallbackResponse, GatewayError>) {
        let span = tracing::Span::current();
        // Shed what there is no room for, before asking the router anything.
        let Ok(_room) = self.in_flight.try_acquire() else {
            return self.shed(app, &callback);
        };
        match callback {
            Callback::AssignHuman(callback) => {
                span.record("session", callback.session_id.as_str());
                let answer = self
                    .assign_human(app, query, callback, again, deadline)
                    .await;
                (Command::AssignHuman, answer)
            }
            Callback::SessionEvent(event) => {
                span.record("session", event.session_id.as_str());
                let answer = self.session_event(app.id, query, event, deadline).await;
                (Command::SessionEvent, answer)
            }
            Callback::MemberEvent(event) => {
                let answer = self.member_event(app.id, query, event, deadline).await;
                (Command::MemberEvent, answer)
            }
        }
    }

    /// Asks the router who takes the session; when it cannot say in time, the app's
    /// fallback group answers.
    async fn assign_human(
        &self,
        app: &AppPolicy,
        query: &CallbackQuery,
        callback: AssignHuman,
        replay_only: bool,
        deadline: Instant,
    ) -> Result<CallbackResponse, GatewayError> {
        let started = Instant::now();
        let session = callback.session_id.clone();
        let mut request = translate::to_request(app, query, callback);
        request.replay_only = replay_only;
        let answer = match self.router.assign_human(request, deadline).await {
            Ok(response) => translate::from_response(response),
            Err(status) => Err(self.router.error(&status)),
        };
        let elapsed_ms = started.elapsed().as_millis();
        match answer {
            Ok(response) => {
                self.counters.count(Command::AssignHuman, Outcome::Answered);
                // The router logs the decision: one line per callback at INFO.
                tracing::debug!(
                    app = %app.id,
                    %session,
                    group = response.agent_group_id,
                    agents = response.agent_id_list.len(),
                    elapsed_ms,
                    "callback answered"
                );
                Ok(response)
            }
            Err(err) => {
                let answer = translate::fallback(app, err.clone());
                if answer.is_ok() {
                    self.counters.fell_back(err.reason());
                }
                let outcome = if answer.is_ok() {
                    Outcome::Fallback
                } else {
                    Outcome::RouterFailed
                };
                self.counters.count(Command::AssignHuman, outcome);
                /// Failures logged: an outage writes a few lines a second, not one a callback.
                static FAILURES: Throttle = Throttle::new(10);
                if let Some(left_out) = FAILURES.admit() {
                    tracing::warn!(
                        app = %app.id,
                        %session,
                        error = %err,
                        fallback = answer.is_ok(),
                        elapsed_ms,
                        left_out,
                        "router failed"
                    );
                }
                answer
            }
        }
    }

    /// The answer to a callback there is no room for: an AssignHuman gets the app's
    /// fallback group when it has one, anything else 503 (Tencent delivers events again).
    fn shed(
        &self,
        app: &AppPolicy,
        callback: &Callback,
    ) -> (Command, Result<CallbackResponse, GatewayError>) {
        static SHED: Throttle = Throttle::new(10);
        if let Some(left_out) = SHED.admit() {
            tracing::warn!(app = %app.id, max_in_flight = self.max_in_flight, left_out, "callback shed: too many in flight");
        }
        let err = GatewayError::Overloaded(self.max_in_flight);
        let command = match callback {
            Callback::AssignHuman(_) => Command::AssignHuman,
            Callback::SessionEvent(_) => Command::SessionEvent,
            Callback::MemberEvent(_) => Command::MemberEvent,
        };
        if command == Command::AssignHuman {
            let answer = translate::fallback(app, err.clone());
            if answer.is_ok() {
                self.counters.fell_back(err.reason());
                self.counters.count(command, Outcome::Fallback);
                return (command, answer);
            }
        }
        self.counters.count(command, Outcome::RouterFailed);
        (command, Err(err))
    }

    /// Hands a session event to the router and acknowledges it once recorded; an event
    /// without routing meaning is acknowledged at once.
    async fn session_event(
        &self,
        app: SdkAppId,
        query: &CallbackQuery,
        event: SessionEventNotify,
        deadline: Instant,
    ) -> Result<CallbackResponse, GatewayError> {
        let Some(kind) = self.names.load().meaning(&event) else {
            self.counters.count(Command::SessionEvent, Outcome::Ignored);
            tracing::debug!(%app, session = %event.session_id, event = event.event, "session event without routing meaning");
            return Ok(CallbackResponse::ok());
        };
        let (session, name) = (event.session_id.clone(), event.event.clone());
        let request = events::session_request(app, query, event, kind);
        match self.router.report_session_event(request, deadline).await {
            Ok(response) => {
                let outcome = report_outcome(response.outcome());
                self.counters.count(Command::SessionEvent, outcome);
                tracing::debug!(%app, %session, event = name, kind = kind.as_str_name(), ?outcome, "session event");
                Ok(CallbackResponse::ok())
            }
            Err(status) => Err(self.not_recorded(Command::SessionEvent, app, &status)),
        }
    }

    /// Hands an agent's new status to the router and acknowledges it once recorded; other
    /// member events, unknown members and unknown statuses are acknowledged and counted.
    async fn member_event(
        &self,
        app: SdkAppId,
        query: &CallbackQuery,
        event: MemberEventNotify,
        deadline: Instant,
    ) -> Result<CallbackResponse, GatewayError> {
        if !event.event.eq_ignore_ascii_case(MEMBER_STATUS_CHANGE) {
            self.counters.count(Command::MemberEvent, Outcome::Ignored);
            return Ok(CallbackResponse::ok());
        }
        let (Some(member), Some(raw_status)) = (&event.member_id, &event.status) else {
            self.counters.count(Command::MemberEvent, Outcome::Refused);
            return Err(GatewayError::BadRequest(
                "Member.StatusChange needs MemberId and Status".into(),
            ));
        };
        let Some(status) = events::status(raw_status) else {
            self.counters
                .count(Command::MemberEvent, Outcome::UnknownStatus);
            tracing::warn!(%app, member, status = raw_status, "member status in an unknown spelling, acknowledged");
            return Ok(CallbackResponse::ok());
        };
        let Ok(agent) = AgentId::parse(member.as_str()) else {
            return Ok(self.unknown_member(app, member));
        };
        let request = events::status_request(app, query, &agent, status, event.event_time_ms);
        match self.router.set_agent_status(request, deadline).await {
            Ok(response) => {
                let outcome = report_outcome(response.outcome());
                self.counters.count(Command::MemberEvent, outcome);
                tracing::debug!(%app, %agent, status = status.as_str_name(), ?outcome, "member status");
                Ok(CallbackResponse::ok())
            }
            Err(status) if status.code() == Code::NotFound => {
                Ok(self.unknown_member(app, agent.as_str()))
            }
            Err(status) => Err(self.not_recorded(Command::MemberEvent, app, &status)),
        }
    }

    fn unknown_member(&self, app: SdkAppId, member: &str) -> CallbackResponse {
        self.counters
            .count(Command::MemberEvent, Outcome::UnknownMember);
        static UNKNOWN: Throttle = Throttle::new(1);
        if let Some(left_out) = UNKNOWN.admit() {
            tracing::warn!(%app, member, left_out, "status of a member the router does not know, acknowledged");
        }
        CallbackResponse::ok()
    }

    /// The FAIL an event the router did not record gets, so that Tencent delivers it again.
    fn not_recorded(
        &self,
        command: Command,
        app: SdkAppId,
        status: &tonic::Status,
    ) -> GatewayError {
        self.counters.count(command, Outcome::RouterFailed);
        let err = self.router.error(status);
        static NOT_RECORDED: Throttle = Throttle::new(10);
        if let Some(left_out) = NOT_RECORDED.admit() {
            tracing::warn!(%app, error = %err, left_out, "event not recorded, answered FAIL for Tencent to retry");
        }
        err
    }

    /// Reads the body, refusing it once it passes `max_body_bytes` or the callback's
    /// deadline.
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
        deadline: Instant,
    ) -> Result<bytes::Bytes, GatewayError> {
        let too_large = GatewayError::BodyTooLarge(self.max_body_bytes);
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes as u64) {
            return Err(too_large);
        }
        let collect = Limited::new(body, self.max_body_bytes).collect();
        match tokio::time::timeout_at(deadline.into(), collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large),
            Ok(Err(err)) => Err(GatewayError::BadRequest(format!(
                "cannot read the body: {err}"
            ))),
            Err(_) => Err(GatewayError::BodyTimeout(self.deadline)),
        }
    }
}

/// The TLS settings for an `https://` router: the CA that signs it and the gateway's own
/// certificate, when configured.
fn router_tls(
    gateway: &handoff_core::config::GatewayConfig,
) -> Result<Option<tonic::transport::ClientTlsConfig>, GatewayError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|err| GatewayError::Internal(format!("{}: {err}", path.display())))
    };
    let mut tls = tonic::transport::ClientTlsConfig::new();
    if let Some(ca) = &gateway.router_ca {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    if let (Some(cert), Some(key)) = (&gateway.router_cert, &gateway.router_key) {
        tls = tls.identity(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        ));
    }
    Ok(Some(tls))
}

/// How an event the router took is counted.
fn report_outcome(outcome: ReportOutcome) -> Outcome {
    match outcome {
        ReportOutcome::Duplicate => Outcome::Duplicate,
        ReportOutcome::Superseded => Outcome::Superseded,
        ReportOutcome::Implausible => Outcome::Implausible,
        ReportOutcome::UnknownAgent => Outcome::UnknownAgent,
        ReportOutcome::OverCapacity => Outcome::OverCapacity,
        ReportOutcome::Recorded | ReportOutcome::Unspecified => Outcome::Recorded,
    }
}
