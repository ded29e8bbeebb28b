//! The router as an application: finds the app, asks the store to assign the session with
//! the engine's decision, explains decisions, applies run-time changes to agents and
//! customers, and swaps in a reloaded config. Knows nothing of gRPC.

pub mod desk_sync;
mod housekeeping;

use std::{path::Path, sync::Arc, time::SystemTime};

use housekeeping::Housekeeping;

use crate::{
    decision_log::{DecisionLog, Entry, Seen},
    engine::StateView,
    metrics::{GroupLabels, Metrics},
};

use arc_swap::ArcSwap;
use handoff_core::{
    Config,
    config::{AgentConfig, AgentStatus, ConfigError, CustomerConfig},
    id::{AgentId, GroupId, SdkAppId, SessionId},
    throttle::Throttle,
};

use crate::{
    engine::{
        self, Agent, AgentField, AgentLoad, Answer, App, Catalog, Customer, Decision, Handoff,
        LiveSession,
    },
    error::RouterError,
    store::{AnyStore, Applied, Assignment, Change, Look, SessionEvent, Store, StoreError},
};

/// When and under which identity a caller reports a change, for ordering and retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// When it happened by the reporter's clock; the router's now when not given.
    pub at: Option<SystemTime>,
    /// The report's identity, so that a retry changes nothing.
    pub id: Option<String>,
    /// Who reports it: the name of the router token the call came with.
    pub by: Option<String>,
}

/// How many sessions a page of ListSessions holds unless asked otherwise.
pub const DEFAULT_PAGE: usize = 500;

/// The most sessions a page holds.
pub const MAX_PAGE: usize = 1000;

/// A page of a listing: at most `size` entries, after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The most entries.
    pub size: usize,
    /// The last session of the previous page; `None` for the first.
    pub after: Option<SessionId>,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            size: DEFAULT_PAGE,
            after: None,
        }
    }
}

/// What ExplainAssignment shows.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The decision AssignHuman would make now.
    pub decision: Decision,
    /// The answer it would give.
    pub answer: Answer,
    /// The sessions holding seats: where each agent's load comes from.
    pub sessions: Vec<LiveSession>,
    /// Of each agent the decision names (candidates and agents left out), where its
    /// fields come from and the load Desk counts beyond its seats.
    pub agents: std::collections::BTreeMap<AgentId, (engine::desk::Sources, u32)>,
}

/// The router's source of time, injectable so that tests control it.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// An agent as routing sees it now.
#[derive(Debug, Clone)]
pub struct AgentListing {
    /// The definition.
    pub agent: Arc<Agent>,
    /// The live status.
    pub status: AgentStatus,
    /// The live load.
    pub load: AgentLoad,
    /// Whether the agent is within its shift.
    pub on_shift: bool,
    /// Where its definition comes from.
    pub source: AgentSource,
    /// Where its status comes from: the definition's (`profile`) unless set live.
    pub status_source: engine::desk::Source,
    /// Parked after missed offers: how many, and until when.
    pub parked: Option<(u32, SystemTime)>,
    /// The offers it missed in a row (since it last accepted one or was set available).
    pub missed: u32,
    /// The new sessions it took within the app's fair share window (0 without it).
    pub fair_share_taken: u32,
    /// When its live status was set, when it was.
    pub status_since: Option<SystemTime>,
}

/// A group and its live measures, as ListAgents shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group.
    pub id: GroupId,
    /// Seats free among its available agents (what headroom and `overflow_when` count).
    pub free_seats: u64,
    /// Its estimated wait, when the store keeps waits and has any.
    pub estimated_wait: Option<std::time::Duration>,
}

/// Where an agent's definition comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentSource {
    /// The config file, as it is now.
    File,
    /// `UpsertAgent`, for an agent the file does not define.
    Runtime,
    /// `UpsertAgent`, over the file's definition of the same agent: the file's edits do not
    /// apply to it.
    RuntimeOverFile,
    /// A member of the app's Tencent Desk, synced; the file or gRPC adds its profile.
    Desk,
}

/// Logs the expressions of `catalog` that cannot decide anything (`handoff check` refuses
/// them; a running router takes them, as they may be meant for data it has not seen).
fn warn_lint(catalog: &Catalog, config: &Config) -> Vec<(String, String)> {
    let lint = catalog.lint(config, SystemTime::now());
    for (key, message) in &lint {
        tracing::warn!(key, message, "expression cannot decide anything");
    }
    lint
}

/// How the router's config stands: what GetStatus reports.
#[derive(Debug, Clone)]
pub struct ConfigStatus {
    /// When the running config was loaded, at start or by a reload.
    pub loaded: SystemTime,
    /// The last reload refused since the start, and why.
    pub last_refused: Option<(SystemTime, String)>,
    /// The running config's expressions that cannot decide anything (key, problem).
    pub warnings: Vec<(String, String)>,
}

/// How the router is: its config, and whether its store answers.
#[derive(Debug, Clone)]
pub struct Status {
    /// The config's standing.
    pub config: ConfigStatus,
    /// Why the store does not answer, when it does not.
    pub store_error: Option<String>,
    /// Each synced app's Desk sync.
    pub desk: Vec<(SdkAppId, desk_sync::DeskHealth)>,
}

/// The routing service: catalog, store and clock.
pub struct Router<S> {
    catalog: ArcSwap<Catalog>,
    store: S,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    decision_log: Option<DecisionLog>,
    /// The background work for this router, stopped when it is dropped.
    housekeeping: std::sync::OnceLock<Housekeeping>,
    /// How its config stands, for GetStatus.
    config_status: std::sync::Mutex<ConfigStatus>,
    /// How each app's Desk sync stands here, for GetStatus.
    desk_health: std::sync::Mutex<std::collections::BTreeMap<SdkAppId, desk_sync::DeskHealth>>,
    /// Every decision and change as it is made, for whoever follows them live (the
    /// console's tail); built only while someone does.
    feed: tokio::sync::broadcast::Sender<Arc<Fed>>,
    /// Each app's answers of the last minutes, for the console's floor.
    recent: parking_lot::Mutex<std::collections::HashMap<SdkAppId, Recent>>,
}

/// How many minutes [`Recent`] keeps.
pub const RECENT_MINUTES: u64 = 15;

/// An app's fresh answers per minute of the last [`RECENT_MINUTES`]: those that reserved an
/// agent, and fallbacks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recent {
    /// (minute since the epoch, assigned, fallbacks), a slot per minute mod the window.
    slots: [(u64, u32, u32); RECENT_MINUTES as usize],
}

impl Recent {
    fn note(&mut self, minute: u64, assigned: bool, fallback: bool) {
        let slot = &mut self.slots[(minute % RECENT_MINUTES) as usize];
        if slot.0 != minute {
            *slot = (minute, 0, 0);
        }
        slot.1 += u32::from(assigned);
        slot.2 += u32::from(fallback);
    }

    /// Answers that reserved an agent, and fallbacks, within the window ending at `minute`.
    pub fn totals(&self, minute: u64) -> (u32, u32) {
        self.slots
            .iter()
            .filter(|(at, _, _)| *at + RECENT_MINUTES > minute && *at <= minute)
            .fold((0, 0), |(a, f), (_, assigned, fallbacks)| {
                (a + assigned, f + fallbacks)
            })
    }
}

/// A decision or change as the live feed carries it: the decision log's entry, and for a
/// decision how long the store took.
#[derive(Debug)]
pub struct Fed {
    /// The entry, as the decision log writes it.
    pub entry: Entry,
    /// The store's time for a decision (deciding and reserving), microseconds.
    pub micros: Option<u64>,
}

/// How many entries the live feed holds for a follower that falls behind (it then skips
/// ahead, told how many it missed).
const FEED_DEPTH: usize = 1024;

impl Router<AnyStore> {
    /// A router over `config` (read from `origin`) with the store `[router.store]` names and
    /// the system clock; with a decision log, its state is logged before the router serves
    /// and whenever the log starts a new file (by a task that ends with the router).
    pub async fn open(config: &Config, origin: &Path) -> Result<Arc<Self>, RouterError> {
        let catalog = Catalog::from_config(config, origin)?;
        let warnings = warn_lint(&catalog, config);
        let store = AnyStore::open(&config.router, &catalog, SystemTime::now()).await?;
        let mut router = Router::new(catalog, store, Arc::new(SystemClock));
        router.status_mut().warnings = warnings;
        if let AnyStore::Redis(redis) = &router.store {
            redis.count_data_lost_in(router.metrics.store_data_lost.clone());
            audit_redis(redis).await;
        }
        router.decision_log = DecisionLog::open(
            &config.router.decision_log,
            router.metrics.decision_log_written.clone(),
            router.metrics.decision_log_dropped.clone(),
        )
        .map_err(|err| {
            ConfigError::new(
                origin,
                "router.decision_log.path",
                format!("cannot open the decision log: {err}"),
            )
        })?;
        router.log_state().await;
        let router = Arc::new(router);
        let _ = router.housekeeping.set(Housekeeping::spawn(&router));
        Ok(router)
    }
}

impl<S: Store> Router<S> {
    /// A router over `catalog`, keeping state in `store`, reading time from `clock`.
    pub fn new(catalog: Catalog, store: S, clock: Arc<dyn Clock>) -> Self {
        Self {
            catalog: ArcSwap::from_pointee(catalog),
            store,
            clock,
            metrics: Metrics::new(),
            decision_log: None,
            housekeeping: std::sync::OnceLock::new(),
            config_status: std::sync::Mutex::new(ConfigStatus {
                loaded: SystemTime::now(),
                last_refused: None,
                warnings: Vec::new(),
            }),
            desk_health: std::sync::Mutex::default(),
            feed: tokio::sync::broadcast::channel(FEED_DEPTH).0,
            recent: parking_lot::Mutex::default(),
        }
    }

    /// How `app`'s Desk sync stands here, when it syncs with Desk.
    pub fn desk_sync(&self, app: &App) -> Option<desk_sync::DeskHealth> {
        app.desk.as_ref()?;
        Some(
            self.desk_health
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&app.id)
                .cloned()
                .unwrap_or_default(),
        )
    }

    /// `app`'s answers that reserved an agent, and its fallbacks, in the last
    /// [`RECENT_MINUTES`] minutes.
    pub fn recent(&self, app: SdkAppId) -> (u32, u32) {
        let minute = engine::unix_ms(self.clock.now()) / 60_000;
        self.recent
            .lock()
            .get(&app)
            .map_or((0, 0), |recent| recent.totals(minute))
    }

    /// Follows every decision and change from now on.
    pub fn follow(&self) -> tokio::sync::broadcast::Receiver<Arc<Fed>> {
        self.feed.subscribe()
    }

    /// Whether anyone follows the live feed.
    fn followed(&self) -> bool {
        self.feed.receiver_count() > 0
    }

    /// What the router has counted.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The router's metrics as Prometheus text, each group's agents and seats read now.
    pub async fn metrics_text(&self) -> String {
        self.count_seats().await;
        self.metrics.encode()
    }

    /// The router's metrics as OpenMetrics text, gauges read now.
    pub async fn metrics_openmetrics(&self) -> String {
        self.count_seats().await;
        self.metrics.encode_openmetrics()
    }

    fn status_mut(&self) -> std::sync::MutexGuard<'_, ConfigStatus> {
        self.config_status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes a reload refused with `error`: the running config stays.
    pub fn reload_refused(&self, error: &ConfigError) {
        self.status_mut().last_refused = Some((self.clock.now(), error.to_string()));
    }

    /// How the router is now: its config, and whether its store answers.
    pub async fn status(&self) -> Status {
        let config = self.status_mut().clone();
        let store_error = self.store.ping().await.err().map(|err| err.to_string());
        let catalog = self.catalog.load();
        let health = self
            .desk_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let desk = catalog
            .apps()
            .filter(|app| app.desk.is_some())
            .map(|app| (app.id, health.get(&app.id).cloned().unwrap_or_default()))
            .collect();
        Status {
            config,
            store_error,
            desk,
        }
    }

    /// The apps the router serves now, by id.
    pub fn apps(&self) -> Vec<Arc<App>> {
        let mut apps: Vec<Arc<App>> = self.catalog.load().apps().cloned().collect();
        apps.sort_by_key(|app| app.id);
        apps
    }

    /// The router's current time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The store behind the router.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Replaces the catalog with one compiled from `config`, atomically; on error the
    /// running catalog stays.
    pub fn reload(self: &Arc<Self>, config: &Config, origin: &Path) -> Result<(), ConfigError> {
        let catalog = Arc::new(Catalog::from_config(config, origin)?);
        let warnings = warn_lint(&catalog, config);
        let previous = self.catalog.swap(Arc::clone(&catalog));
        {
            let mut status = self.status_mut();
            status.loaded = self.clock.now();
            status.warnings = warnings;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let router = Arc::clone(self);
            runtime.spawn(async move { router.warn_overridden(&previous, &catalog).await });
        }
        Ok(())
    }

    /// Warns of each agent whose definition the reload from `previous` to `catalog` changed
    /// in the file while `UpsertAgent` defines it at run time: the run-time one stays.
    async fn warn_overridden(&self, previous: &Catalog, catalog: &Catalog) {
        let spec = |agent: &Agent| serde_json::to_value(&agent.spec).ok();
        for app in catalog.apps() {
            let changed: Vec<AgentId> = app
                .agents()
                .iter()
                .filter(|agent| {
                    previous
                        .app(app.id)
                        .and_then(|old| old.agent(&agent.id))
                        .is_none_or(|old| spec(old) != spec(agent))
                })
                .map(|agent| agent.id.clone())
                .collect();
            if changed.is_empty() {
                continue;
            }
            let overridden = self
                .inspect(app, Look::default(), self.clock.now(), |state| {
                    changed
                        .iter()
                        .filter(|id| state.roster_changes().contains_key(*id))
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_default();
            for agent in overridden {
                tracing::warn!(app = %app.id, %agent, "the file's new definition of this agent does not apply: it is defined at run time (UpsertAgent), which stays; UpsertAgent it with the file's definition to take that");
            }
        }
    }

    /// The app as the catalog has it now.
    pub fn app(&self, id: SdkAppId) -> Result<Arc<App>, RouterError> {
        self.catalog
            .load()
            .app(id)
            .cloned()
            .ok_or(RouterError::UnknownApp(id))
    }

    /// Decides who takes `handoff` and reserves capacity for it.
    pub async fn assign(&self, handoff: &Handoff) -> Result<Assignment, RouterError> {
        self.assign_with(handoff, false).await
    }

    /// Answers a retry of `handoff` answered before: its live reservation's answer, or,
    /// without one (it ran out, the session ended), the group alone, reserving nothing.
    /// What a signed callback played again gets, so that it cannot reserve a seat for a
    /// session that is over.
    pub async fn replay(&self, handoff: &Handoff) -> Result<Assignment, RouterError> {
        self.assign_with(handoff, true).await
    }

    async fn assign_with(
        &self,
        handoff: &Handoff,
        replay_only: bool,
    ) -> Result<Assignment, RouterError> {
        let app = self.app(handoff.app)?;
        let now = self.clock.now();
        // The user's time orders the reservation against the session's events: one dated
        // far ahead would outrank every event to come, so it is taken as now. (An old one
        // is outranked by every event, as it should be.)
        let plausible;
        let handoff = if !app.reports.ahead(handoff.event_time, now) {
            handoff
        } else {
            plausible = Handoff {
                event_time: now,
                ..handoff.clone()
            };
            &plausible
        };
        let started = std::time::Instant::now();
        let logging = self.decision_log.is_some();
        let mut seen = Seen::default();
        let mut headroom_used = None;
        let assignment = self
            .store
            .assign(&app, handoff, now, |state| {
                let mut decision = engine::decide(&app, handoff, state, now);
                headroom_used = decision.headroom_used;
                if replay_only {
                    decision.ranked.clear();
                    decision.fallback = true;
                    decision
                        .reason
                        .push_str("; a request answered before, sent again: not decided again");
                }
                if logging {
                    seen = Seen::of(&decision, handoff, state);
                }
                decision
            })
            .await;
        let elapsed = started.elapsed();
        self.metrics.store("assign", elapsed, assignment.is_ok());
        let assignment = assignment?;
        if matches!(assignment, Assignment::Replayed(_)) {
            // A store may decide before it finds the session answered: a replay read nothing.
            seen = Seen::default();
        }
        let elapsed_us = elapsed.as_micros();
        let answer = assignment.answer();
        if answer.group.is_none() && answer.agents.is_empty() {
            return Err(RouterError::NoRoute(handoff.app));
        }
        tracing::info!(
            app = %handoff.app,
            session = %handoff.session,
            rule = %answer.rule,
            strategy = answer.strategy.map(|s| s.as_str()),
            group = answer.group.map(|g| g.get()),
            agents = answer.agents.len(),
            reserved = answer.reserved.as_ref().map(|a| a.as_str()),
            fallback = answer.fallback,
            replayed = matches!(assignment, Assignment::Replayed(_)),
            elapsed_us,
            "assigned"
        );
        let followed = self.followed();
        if self.decision_log.is_some() || followed {
            let entry = Entry::decision(handoff, now, &assignment, seen);
            if followed {
                let micros = u64::try_from(elapsed_us).unwrap_or(u64::MAX);
                let _ = self.feed.send(Arc::new(Fed {
                    entry: entry.clone(),
                    micros: Some(micros),
                }));
            }
            if let Some(log) = &self.decision_log {
                log.record(entry);
            }
        }
        self.metrics.decided(handoff.app, &assignment);
        if let Assignment::Fresh(answer) = &assignment {
            let minute = engine::unix_ms(now) / 60_000;
            self.recent.lock().entry(handoff.app).or_default().note(
                minute,
                answer.reserved.is_some(),
                answer.fallback,
            );
        }
        if let (Some(group), Assignment::Fresh(answer)) = (headroom_used, &assignment)
            && answer.reserved.is_some()
        {
            self.metrics
                .headroom_used
                .get_or_create(&GroupLabels {
                    app: handoff.app.get(),
                    group: group.get(),
                })
                .inc();
        }
        Ok(assignment)
    }

    /// The decision AssignHuman would make now (or at `at`: the clock rules, hours and
    /// shifts read; the state is as it is now), its answer, and the sessions that hold
    /// seats (where agents' load comes from), changing nothing.
    pub async fn explain(
        &self,
        handoff: &Handoff,
        at: Option<SystemTime>,
    ) -> Result<Explanation, RouterError> {
        let app = self.app(handoff.app)?;
        let now = self.clock.now();
        let at = at.unwrap_or(now);
        let look = Look {
            customer: Some(&handoff.client_user),
            sessions: true,
        };
        let (decision, sessions, agents) = self
            .inspect(&app, look, now, |state| {
                let decision = engine::decide_fully(&app, handoff, state, at);
                let named = decision
                    .ranked
                    .iter()
                    .map(|candidate| &candidate.agent)
                    .chain(
                        decision
                            .targets
                            .iter()
                            .flat_map(|trace| trace.excluded.iter().map(|left| &left.agent)),
                    );
                let mut agents = std::collections::BTreeMap::new();
                for id in named {
                    if let Some(agent) = engine::agent(&app, state.roster_changes(), id) {
                        agents.insert(id.clone(), (agent.sources, state.load(id).unattributed));
                    }
                }
                (decision, state.sessions(), agents)
            })
            .await?;
        // Within one look at the state every candidate is below capacity, so AssignHuman
        // would reserve the first.
        let answer = if decision.wants_reservation() {
            decision.reserve_at(0)
        } else {
            decision.without_reservation()
        };
        Ok(Explanation {
            decision,
            answer,
            sessions,
            agents,
        })
    }

    /// Adds or replaces an agent of `app`, checked as the config file's agents are.
    pub async fn upsert_agent(
        &self,
        app: SdkAppId,
        config: AgentConfig,
        by: Option<&str>,
    ) -> Result<Arc<Agent>, RouterError> {
        let app = self.app(app)?;
        let agent = app.check_agent(&config).map_err(|fault| {
            RouterError::invalid_owned(format!("agent.{}", api_field(fault.field)), fault.message)
        })?;
        let agent = Arc::new(agent);
        self.apply(&app, Change::PutAgent(agent.clone()), by)
            .await?;
        tracing::info!(app = %app.id, agent = %agent.id, by, "agent upserted");
        Ok(agent)
    }

    /// Removes an agent from `app`'s routing.
    pub async fn remove_agent(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        by: Option<&str>,
    ) -> Result<(), RouterError> {
        let app = self.app(app)?;
        self.require_agent(&app, agent).await?;
        self.apply(&app, Change::RemoveAgent(agent.clone()), by)
            .await?;
        tracing::info!(app = %app.id, %agent, by, "agent removed");
        Ok(())
    }

    /// Sets an agent's live status, unless `report` is older than the status known.
    pub async fn set_status(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        status: AgentStatus,
        report: Report,
    ) -> Result<Applied, RouterError> {
        let app = self.app(app)?;
        self.require_agent(&app, agent).await?;
        let now = self.clock.now();
        let at = report.at.unwrap_or(now);
        let applied = if app.reports.plausible(at, now) {
            let change = Change::SetStatus {
                agent: agent.clone(),
                status,
                at,
                id: report.id,
                desk: false,
            };
            self.apply(&app, change, report.by.as_deref()).await?
        } else {
            implausible(&app, "status", at, now);
            Applied::Implausible
        };
        let by = report.by.as_deref();
        tracing::info!(app = %app.id, %agent, ?status, ?applied, by, "agent status");
        self.metrics.status_reported(app.id, status, applied);
        Ok(applied)
    }

    /// Releases the seat `session` of `app` holds, as an operator's word that it is over
    /// (`by`, who said so): recorded as a `reconciled` session event dated now, so that
    /// it starts no wrap-up, is in the decision log and replays.
    pub async fn release_seat(
        &self,
        app: SdkAppId,
        session: &SessionId,
        by: &str,
    ) -> Result<Applied, RouterError> {
        let app = self.app(app)?;
        let event = SessionEvent {
            session: session.clone(),
            kind: crate::store::SessionEventKind::Reconciled,
            agent: None,
            from_agent: None,
            customer: None,
            at: self.clock.now(),
            id: None,
        };
        let applied = self.apply(&app, Change::Session(event), Some(by)).await?;
        tracing::info!(app = %app.id, %session, by, ?applied, "seat released by hand");
        Ok(applied)
    }

    /// Records what happened to a session of `app`: an agent took it, it moved, it ended.
    /// An event dated implausibly far from the router's clock is ignored; one naming an agent
    /// the app does not have seats nobody (see [`crate::store::session::weigh`]).
    pub async fn report_session(
        &self,
        app: SdkAppId,
        event: SessionEvent,
    ) -> Result<Applied, RouterError> {
        let app = self.app(app)?;
        let (session, kind, agent) = (event.session.clone(), event.kind, event.agent.clone());
        let now = self.clock.now();
        let applied = if app.reports.plausible(event.at, now) {
            self.apply(&app, Change::Session(event), None).await?
        } else {
            implausible(&app, "session event", event.at, now);
            Applied::Implausible
        };
        let agent = agent.as_ref().map(AgentId::as_str);
        if applied == Applied::UnknownAgent {
            static UNKNOWN: Throttle = Throttle::new(1);
            if let Some(left_out) = UNKNOWN.admit() {
                tracing::warn!(app = %app.id, %session, agent, left_out, "Tencent assigned an agent handoff does not know: it seats nobody (add the agent to the app)");
            }
        }
        tracing::info!(
            app = %app.id,
            %session,
            event = kind.as_str(),
            agent,
            ?applied,
            "session event"
        );
        self.metrics.session_reported(app.id, kind, applied);
        Ok(applied)
    }

    /// A page of the sessions of `app` that hold seats (of `agent`, when given), by session
    /// id, and the last session of the page when more follow.
    pub async fn list_sessions(
        &self,
        app: SdkAppId,
        agent: Option<&AgentId>,
        page: Page,
    ) -> Result<(Vec<LiveSession>, Option<SessionId>), RouterError> {
        let app = self.app(app)?;
        let look = Look {
            customer: None,
            sessions: true,
        };
        let sessions = self
            .inspect(&app, look, self.clock.now(), |state| state.sessions())
            .await?;
        let mut listed = sessions
            .into_iter()
            .filter(|session| agent.is_none_or(|agent| session.agent.as_ref() == Some(agent)))
            .filter(|session| {
                page.after
                    .as_ref()
                    .is_none_or(|after| session.session > *after)
            });
        let sessions: Vec<LiveSession> = listed.by_ref().take(page.size).collect();
        let next = listed
            .next()
            .and_then(|_| sessions.last().map(|last| last.session.clone()));
        Ok((sessions, next))
    }

    /// Records what is known of a customer.
    pub async fn upsert_customer(
        &self,
        app: SdkAppId,
        config: CustomerConfig,
        by: Option<&str>,
    ) -> Result<Customer, RouterError> {
        let app = self.app(app)?;
        if let Some(owner) = &config.owner {
            // An unknown owner is the caller's mistake; a store outage is not, and is
            // reported as what it is.
            self.require_agent(&app, owner)
                .await
                .map_err(|err| match err {
                    RouterError::UnknownAgent(app, agent) => RouterError::invalid(
                        "customer.owner_agent_id",
                        format!("agent {agent} is not an agent of app {app}"),
                    ),
                    other => other,
                })?;
        }
        let customer = Customer::from_config(&config);
        self.apply(&app, Change::PutCustomer(customer.clone()), by)
            .await?;
        tracing::info!(app = %app.id, customer = %customer.id, by, "customer upserted");
        Ok(customer)
    }

    /// Reads `app`'s state through the store, timed.
    async fn inspect<F, R>(
        &self,
        app: &App,
        look: Look<'_>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        let started = std::time::Instant::now();
        let result = self.store.inspect(app, look, now, read).await;
        self.metrics
            .store("inspect", started.elapsed(), result.is_ok());
        result
    }

    /// Applies `change` to `app` through the store, timed, and logs it (with `by`, the
    /// router token it came with) in the decision log.
    async fn apply(
        &self,
        app: &App,
        change: Change,
        by: Option<&str>,
    ) -> Result<Applied, RouterError> {
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let followed = self.followed();
        let entry = (self.decision_log.is_some() || followed).then(|| change.clone());
        let applied = self.store.apply(app, change, now).await;
        self.metrics
            .store("apply", started.elapsed(), applied.is_ok());
        let applied = applied?;
        if let Some(change) = entry {
            let entry = Entry::change(app.id, now, &change, applied, by);
            if followed {
                let _ = self.feed.send(Arc::new(Fed {
                    entry: entry.clone(),
                    micros: None,
                }));
            }
            if let Some(log) = &self.decision_log {
                log.record(entry);
            }
        }
        Ok(applied)
    }

    /// The agents of `app` (of `group`, when given) with their live state.
    pub async fn list_agents(
        &self,
        app: SdkAppId,
        group: Option<GroupId>,
    ) -> Result<Vec<AgentListing>, RouterError> {
        let app = self.app(app)?;
        // With Desk sync, a group may be Desk's alone.
        if let Some(group) = group.filter(|id| !app.desk_sync && app.group(*id).is_none()) {
            return Err(RouterError::invalid(
                "group_id",
                format!("group {group} is not defined for app {}", app.id),
            ));
        }
        let now = self.clock.now();
        let listings = self
            .inspect(&app, Look::default(), now, |state| {
                engine::roster(&app, state.roster_changes())
                    .into_iter()
                    .filter(|agent| group.is_none_or(|g| agent.groups.contains(&g)))
                    .map(|agent| AgentListing {
                        agent: agent.clone(),
                        status: state.status(&agent.id).unwrap_or(agent.status),
                        status_source: state
                            .status_source(&agent.id)
                            .unwrap_or(agent.sources.profile),
                        parked: engine::parked(&app, state, &agent.id, now),
                        missed: engine::missed(state, &agent.id),
                        fair_share_taken: engine::fair_share_taken(&app, state, &agent.id, now),
                        status_since: state.status_since(&agent.id),
                        load: state.load(&agent.id),
                        on_shift: agent.shift.as_ref().is_none_or(|shift| shift.is_open(now)),
                        source: match (
                            agent.sources.groups == engine::desk::Source::Desk,
                            state.roster_changes().contains_key(&agent.id),
                            app.agent(&agent.id).is_some(),
                        ) {
                            (true, _, _) => AgentSource::Desk,
                            (false, false, _) => AgentSource::File,
                            (false, true, false) => AgentSource::Runtime,
                            (false, true, true) => AgentSource::RuntimeOverFile,
                        },
                    })
                    .collect()
            })
            .await?;
        Ok(listings)
    }

    /// The groups of `app` (`group` alone, when given), the file's and Desk's, with their
    /// live measures.
    pub async fn list_groups(
        &self,
        app: SdkAppId,
        group: Option<GroupId>,
    ) -> Result<Vec<GroupListing>, RouterError> {
        let app = self.app(app)?;
        let now = self.clock.now();
        self.inspect(&app, Look::default(), now, |state| {
            let mut ids: Vec<GroupId> = app.groups().iter().map(|group| group.id).collect();
            if let Some(desk) = state.desk() {
                ids.extend(desk.groups.iter().flatten().map(|group| group.id));
            }
            ids.sort_unstable();
            ids.dedup();
            let free = engine::free_seats(&app, state);
            ids.into_iter()
                .filter(|id| group.is_none_or(|group| group == *id))
                .map(|id| GroupListing {
                    id,
                    free_seats: free.get(&id).copied().unwrap_or(0),
                    estimated_wait: state.wait(Some(id), now),
                })
                .collect()
        })
        .await
        .map_err(RouterError::from)
    }

    /// Fails with [`RouterError::UnknownAgent`] unless `agent` is one of `app`'s now.
    async fn require_agent(&self, app: &App, agent: &AgentId) -> Result<(), RouterError> {
        let known = self
            .inspect(app, Look::default(), self.clock.now(), |state| {
                engine::roster(app, state.roster_changes())
                    .iter()
                    .any(|a| &a.id == agent)
            })
            .await?;
        if known {
            Ok(())
        } else {
            Err(RouterError::UnknownAgent(app.id, agent.clone()))
        }
    }
}

/// Logs what in Redis's settings puts the router's state at risk, and whether handoff's
/// data is there (writing its epoch on a first start); a Redis that cannot be reached now is
/// said so, and the router serves on (its health says NOT_SERVING until Redis answers).
async fn audit_redis(redis: &crate::store::RedisStore) {
    match redis.audit().await {
        Ok(warnings) => {
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            if let Err(err) = redis.ping().await {
                tracing::warn!(error = %err, "cannot check Redis for handoff's state");
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "Redis cannot be reached now: the router starts anyway, answers UNAVAILABLE (the gateway its fallback) and connects once Redis is up")
        }
    }
}

/// Logs, at most once a second, a report ignored for its time.
fn implausible(app: &App, what: &'static str, at: SystemTime, now: SystemTime) {
    static IMPLAUSIBLE: Throttle = Throttle::new(1);
    if let Some(left_out) = IMPLAUSIBLE.admit() {
        let offset_s = match at.duration_since(now) {
            Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
            Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
        };
        tracing::warn!(app = %app.id, what, offset_s, left_out, "a report dated outside [router] max_event_age / max_clock_skew of the router's clock, ignored");
    }
}

/// The name `handoff.router.v1.Agent` gives an agent definition's field.
fn api_field(field: AgentField) -> &'static str {
    match field {
        AgentField::Capacity => "capacity",
        AgentField::Groups => "group_ids",
        AgentField::Skills => "skills",
        AgentField::Shift => "shift",
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, future::Future, time::Duration};

    use handoff_core::id::ClientUserId;
    use proptest::prelude::*;

    use super::*;
    use crate::{
        error::ErrorKind,
        store::LocalStore,
        testing::{self, Error, app_id, catalog},
    };

    /// A clock that says what the test says.
    struct FixedClock(SystemTime);

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            self.0
        }
    }

    fn router() -> Result<Router<LocalStore>, Error> {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let store = LocalStore::in_memory(testing::lifetimes(Duration::from_secs(60)));
        Ok(Router::new(catalog()?, store, Arc::new(FixedClock(now))))
    }

    fn handoff(session: &str) -> Result<Handoff, Error> {
        testing::handoff(session, SystemTime::UNIX_EPOCH)
    }

    fn block_on<T>(work: impl Future<Output = Result<T, Error>>) -> Result<T, TestCaseError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?
            .block_on(work)
            .map_err(|e| TestCaseError::fail(e.to_string()))
    }

    proptest! {
        /// Whatever the prior load and statuses, what ExplainAssignment predicts is exactly
        /// what AssignHuman then answers, through the router's own two paths.
        #[test]
        fn explain_predicts_assign(prior in 0usize..6, ann in 0usize..3, bob in 0usize..3) {
            let statuses = [AgentStatus::Available, AgentStatus::Away, AgentStatus::Offline];
            let (predicted, assigned) = block_on(async {
                let router = router()?;
                for n in 0..prior {
                    router.assign(&handoff(&format!("prior-{n}"))?).await?;
                }
                let app = app_id()?;
                for (agent, status) in [("ann@example.com", ann), ("bob@example.com", bob)] {
                    let report = Report::default();
                    router.set_status(app, &AgentId::parse(agent)?, statuses[status], report).await?;
                }
                let probe = handoff("probe")?;
                let predicted = router.explain(&probe, None).await?.answer;
                let assigned = router.assign(&probe).await;
                Ok((predicted, assigned.map_err(|e| e.kind())))
            })?;
            prop_assert_eq!(assigned, Ok(Assignment::Fresh(predicted)));
        }
    }

    #[tokio::test]
    async fn reports_dated_far_from_the_routers_clock_are_ignored_and_freeze_nothing()
    -> Result<(), Error> {
        use crate::store::{SessionEvent, SessionEventKind};
        use handoff_core::id::SessionId;
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let store = LocalStore::in_memory(testing::lifetimes(Duration::from_secs(60)));
        let router = Router::new(catalog()?, store, Arc::new(FixedClock(now)));
        let (app, ann) = (app_id()?, AgentId::parse("ann@example.com")?);
        let year = Duration::from_secs(366 * 24 * 3600);
        let report = |at| Report {
            at: Some(at),
            ..Report::default()
        };
        // Next year, and two days ago: ignored. Within the skew ahead: taken.
        for (at, expected) in [
            (now + year, Applied::Implausible),
            (
                now - Duration::from_secs(2 * 24 * 3600),
                Applied::Implausible,
            ),
            (now + Duration::from_secs(30), Applied::Recorded),
        ] {
            let applied = router
                .set_status(app, &ann, AgentStatus::Offline, report(at))
                .await?;
            assert_eq!(applied, expected, "a status dated {at:?}");
        }
        // The far-future report froze nothing: one dated after the last taken counts.
        let later = now + Duration::from_secs(45);
        let applied = router
            .set_status(app, &ann, AgentStatus::Away, report(later))
            .await?;
        assert_eq!(applied, Applied::Recorded);
        // The same for sessions: a far-future end is ignored, the assignment then counts.
        let session = SessionId::parse("s-1")?;
        let event = |kind, agent: Option<&AgentId>, at| SessionEvent {
            session: session.clone(),
            kind,
            agent: agent.cloned(),
            from_agent: None,
            customer: None,
            at,
            id: None,
        };
        let end = event(SessionEventKind::Ended, None, now + year);
        assert_eq!(router.report_session(app, end).await?, Applied::Implausible);
        let taken = event(SessionEventKind::Assigned, Some(&ann), now);
        assert_eq!(router.report_session(app, taken).await?, Applied::Recorded);
        let (sessions, _) = router.list_sessions(app, None, Page::default()).await?;
        assert_eq!(sessions.len(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn an_unknown_owner_or_agent_is_named_by_the_callers_field() -> Result<(), Error> {
        let (router, app) = (router()?, app_id()?);
        let ghost = AgentId::parse("ghost@example.com")?;
        let customer = CustomerConfig {
            id: ClientUserId::parse("c-1")?,
            tier: None,
            language: None,
            region: None,
            tags: Vec::new(),
            owner: Some(ghost.clone()),
            attributes: BTreeMap::new(),
        };
        let err = router.upsert_customer(app, customer, None).await.err();
        let err = err.ok_or("took a ghost owner")?;
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(
            err.to_string().starts_with("customer.owner_agent_id: "),
            "{err}"
        );
        let away = AgentStatus::Away;
        let err = router
            .set_status(app, &ghost, away, Report::default())
            .await
            .err();
        let err = err.ok_or("set a ghost's status")?;
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().starts_with("agent_id: "), "{err}");
        let in_no_group = AgentConfig {
            id: ghost,
            name: None,
            groups: vec![GroupId::new(7)?],
            capacity: 1,
            status: AgentStatus::Available,
            skills: BTreeMap::new(),
            attributes: BTreeMap::new(),
            shift: None,
        };
        let err = router.upsert_agent(app, in_no_group, None).await.err();
        let err = err.ok_or("took an agent of an unknown group")?;
        assert!(
            err.to_string().starts_with("agent.group_ids: group 7"),
            "{err}"
        );
        Ok(())
    }
}
