//! Keeping each app's floor in step with Tencent Desk, for apps with `[apps.desk]`: a loop
//! per app reads the roster (groups, members, reception limits) every `roster_every` and
//! the live statuses and loads every `status_every`, and turns what differs from the
//! store's state into [`Change`]s through the router's one entry, so that each is logged,
//! replayable and the same on every store. On Redis one replica syncs an app at a time
//! (the store's lease); the others route on what it writes.
//!
//! Desk being unreachable, slow or refusing changes nothing but the sync: routing goes on
//! with the last roster, health stays SERVING, and the age of the last good round is a
//! metric. A failure is logged once when it starts (and once when it clears), counted
//! always; rate limits are waited out with jitter.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

use handoff_core::{
    config::DeskConfig,
    id::{AgentId, GroupId, SdkAppId},
    throttle::Throttle,
};
use tokio::time::Instant;

use super::Router;
use crate::{
    desk::{
        api::{DeskError, Endpoint},
        client::{self, DeskClient, jittered},
    },
    engine::LiveSession,
    engine::{
        self, App,
        desk::{DeskGroup, DeskMember, DeskRoster},
    },
    metrics::{DeskChangeLabels, DeskCodeLabels, DeskLabels, DeskSyncLabels},
    store::{Applied, Change, Look, SessionEvent, SessionEventKind, Store},
};

/// The store lease that says which replica syncs an app.
const LEASE: &str = "desk";

/// Who made the changes a sync makes, in the decision log.
pub const BY_DESK: &str = "desk";

/// What a roster round changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RosterSynced {
    /// Members Desk added since the last round.
    pub added: usize,
    /// Members Desk no longer lists.
    pub removed: usize,
    /// Members whose groups, limit or name changed.
    pub changed: usize,
    /// Whether Desk's groups changed (or arrived for the first time).
    pub groups: bool,
    /// Whether Desk's business hours changed.
    pub hours: bool,
    /// Seats released because their agent left Desk.
    pub released: usize,
}

/// What a roster round found, besides what it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RosterRead {
    /// What it changed.
    pub synced: RosterSynced,
    /// The groups the app's rules or fallback name that Desk does not have.
    pub missing: Vec<GroupId>,
}

/// What a status round changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusSynced {
    /// Statuses set to what Desk shows.
    pub statuses: usize,
    /// Whether the unattributed load changed.
    pub load: bool,
    /// Seats released because Desk no longer counts their sessions.
    pub released: usize,
    /// Members whose status code `member_status` does not map.
    pub unknown: usize,
    /// Parked agents set to rest in Desk (`rest_parked`).
    pub rested: usize,
}

/// Why a sync round did not finish.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Desk did not answer as asked.
    #[error(transparent)]
    Desk(#[from] DeskError),
    /// The store did not take or show the state.
    #[error("the state store: {0}")]
    Store(String),
}

impl SyncError {
    /// The metrics' outcome label.
    fn outcome(&self) -> &'static str {
        match self {
            SyncError::Desk(DeskError::RateLimited { .. }) => "rate_limited",
            SyncError::Desk(DeskError::BadCredentials { .. }) => "bad_credentials",
            SyncError::Desk(DeskError::NotDesk(_)) => "not_desk",
            SyncError::Desk(DeskError::Unreachable(_)) => "unreachable",
            SyncError::Desk(DeskError::Malformed(_)) => "malformed",
            SyncError::Desk(DeskError::Failed { .. }) => "failed",
            SyncError::Store(_) => "store",
        }
    }

    /// How long to wait before the next try of a round that failed so, when it is due
    /// every `every`.
    fn pause(&self, every: Duration) -> Duration {
        match self {
            SyncError::Desk(DeskError::RateLimited { retry_after, .. }) => jittered(*retry_after),
            // Asking again soon will not fix credentials or the app: try at the roster's pace.
            SyncError::Desk(DeskError::BadCredentials { .. } | DeskError::NotDesk(_)) => {
                jittered(every.max(Duration::from_secs(60)))
            }
            _ => jittered(every),
        }
    }
}

impl From<crate::store::StoreError> for SyncError {
    fn from(err: crate::store::StoreError) -> Self {
        SyncError::Store(err.to_string())
    }
}

impl From<crate::RouterError> for SyncError {
    fn from(err: crate::RouterError) -> Self {
        SyncError::Store(err.to_string())
    }
}

/// Desk's members as the store keeps them: valid e-mails only (others are skipped, with a
/// warning now and then), groups by id.
fn members(app: SdkAppId, read: Vec<client::DeskMember>) -> Vec<DeskMember> {
    static INVALID: Throttle = Throttle::new(1);
    read.into_iter()
        .filter_map(|member| {
            let Ok(id) = AgentId::parse(member.mail.trim()) else {
                if let Some(left_out) = INVALID.admit() {
                    tracing::warn!(%app, mail = member.mail, left_out, "a Desk member without a valid e-mail is skipped");
                }
                return None;
            };
            let nick = member.nick_name.trim();
            Some(DeskMember {
                id,
                name: (!nick.is_empty()).then(|| nick.to_owned()),
                groups: member
                    .groups
                    .iter()
                    .filter_map(|group| GroupId::new(*group).ok())
                    .collect(),
                capacity: member.effective_limit,
            })
        })
        .collect()
}

fn groups(read: Vec<client::DeskGroup>) -> Vec<DeskGroup> {
    let mut groups: Vec<DeskGroup> = read
        .into_iter()
        .filter_map(|group| {
            Some(DeskGroup {
                id: GroupId::new(group.id).ok()?,
                name: group.name,
                capacity: group.reception_limit,
            })
        })
        .collect();
    groups.sort_by_key(|group| group.id);
    groups
}

/// The groups `app`'s rules and fallback name that `desk` does not have.
pub fn groups_missing(app: &App, desk: &[DeskGroup]) -> Vec<GroupId> {
    let mut named: BTreeSet<GroupId> = app.fallback_group().into_iter().collect();
    let rules = app
        .rules()
        .iter()
        .map(|conditional| &conditional.rule)
        .chain(std::iter::once(app.default_rule()));
    for rule in rules {
        named.extend(rule.targets.iter().filter_map(|target| target.group));
    }
    named
        .into_iter()
        .filter(|id| !desk.iter().any(|group| group.id == *id))
        .collect()
}

impl<S: Store> Router<S> {
    /// One roster round for `app`: reads Desk's groups and members, and records what
    /// differs from the store's copy as one [`Change::DeskRoster`]; then releases the seats
    /// members Desk removed held.
    pub async fn sync_roster(
        &self,
        app: &App,
        client: &DeskClient,
    ) -> Result<RosterRead, SyncError> {
        let groups = groups(client.groups().await?);
        let members = members(app.id, client.members().await?);
        let hours = if app.desk.as_ref().is_some_and(|desk| desk.hours) {
            let read = client.work_time().await?;
            Some(read.map_or_else(Vec::new, |hours| {
                crate::engine::desk::weekly_entries(&hours.days)
            }))
        } else {
            None
        };
        let now = self.clock.now();
        let missing = groups_missing(app, &groups);
        let (delta, mut synced, gone) = self
            .inspect(app, Look::default(), now, |state| {
                let empty = DeskRoster::default();
                let old = state.desk().unwrap_or(&empty);
                let mut delta = old.diff(members, groups);
                if let Some(hours) = hours {
                    delta = old.with_hours(delta, hours);
                }
                let mut synced = RosterSynced {
                    groups: delta.groups.is_some(),
                    hours: delta.hours.is_some(),
                    ..RosterSynced::default()
                };
                let mut gone = HashSet::new();
                for (key, member) in &delta.members {
                    match (old.members.get(key), member) {
                        (None, _) => synced.added += 1,
                        (Some(before), None) => {
                            synced.removed += 1;
                            gone.insert(before.id.clone());
                        }
                        (Some(_), Some(_)) => synced.changed += 1,
                    }
                }
                (delta, synced, gone)
            })
            .await?;
        if delta.is_empty() {
            return Ok(RosterRead { synced, missing });
        }
        self.apply(app, Change::DeskRoster(delta), Some(BY_DESK))
            .await?;
        if !gone.is_empty() {
            synced.released = self
                .release(app, |session| {
                    let agent = session.agent.as_ref()?;
                    gone.contains(agent).then_some(usize::MAX)
                })
                .await?;
        }
        Ok(RosterRead { synced, missing })
    }

    /// Releases the seats `pick` picks, oldest first, as [`SessionEventKind::Reconciled`]
    /// events: `pick` gives, for a session holding a seat, how many of its agent's seats
    /// may go at most (`None`: not this one). How many went.
    async fn release(
        &self,
        app: &App,
        pick: impl Fn(&LiveSession) -> Option<usize> + Send + Sync,
    ) -> Result<usize, SyncError> {
        let now = self.clock.now();
        let look = Look {
            customer: None,
            sessions: true,
        };
        let mut held: Vec<(LiveSession, usize)> = self
            .inspect(app, look, now, |state| {
                state
                    .sessions()
                    .into_iter()
                    .filter_map(|session| Some((pick(&session)?, session)))
                    .map(|(most, session)| (session, most))
                    .collect()
            })
            .await?;
        held.sort_by_key(|(session, _)| session.since);
        let mut per_agent: BTreeMap<AgentId, usize> = BTreeMap::new();
        let mut released = 0;
        for (session, most) in held {
            let Some(agent) = session.agent else { continue };
            let count = per_agent.entry(agent.clone()).or_default();
            if *count >= most {
                continue;
            }
            *count += 1;
            let event = SessionEvent {
                session: session.session,
                kind: SessionEventKind::Reconciled,
                agent: Some(agent),
                from_agent: None,
                customer: None,
                at: now,
                id: None,
            };
            if self
                .apply(app, Change::Session(event), Some(BY_DESK))
                .await?
                == Applied::Recorded
            {
                released += 1;
            }
        }
        Ok(released)
    }

    /// One status round for `app`: reads each member's status and live count, sets the
    /// statuses Desk shows where they differ (mapped by `member_status`; events dated
    /// after the poll began still win), records Desk's counts as unattributed load where
    /// they exceed the seats held, and releases seats Desk has not counted for longer than
    /// `reconcile_after`. `unknown` remembers the (member, code) pairs already logged.
    pub async fn sync_status(
        &self,
        app: &App,
        desk: &DeskConfig,
        client: &DeskClient,
        unknown: &mut HashSet<(AgentId, i64)>,
        rested: &mut BTreeMap<AgentId, SystemTime>,
    ) -> Result<StatusSynced, SyncError> {
        let asked = self.clock.now();
        let rows = client.realtime().await?;
        let mut synced = StatusSynced::default();
        let mut serving: Vec<(AgentId, u32)> = Vec::with_capacity(rows.len());
        let mut codes: Vec<(AgentId, i64)> = Vec::with_capacity(rows.len());
        for row in rows {
            if let Ok(agent) = AgentId::parse(row.mail.trim()) {
                serving.push((agent.clone(), row.serving));
                codes.push((agent, row.status));
            }
        }
        let now = self.clock.now();
        let grace = desk.reconcile_after.get();
        let look = Look {
            customer: None,
            sessions: true,
        };
        let (statuses, load_changed, over, parked) = self
            .inspect(app, look, now, |state| {
                let roster = state.roster_changes();
                // Parked agents to set to rest in Desk: once per park (by when it ends).
                let parked: Vec<(AgentId, SystemTime)> = if desk.rest_parked {
                    engine::roster(app, roster)
                        .iter()
                        .filter_map(|agent| {
                            let (_, until) = engine::parked(app, state, &agent.id, now)?;
                            Some((agent.id.clone(), until))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let mut statuses = Vec::new();
                for (agent, code) in &codes {
                    let Some(defined) = engine::agent(app, roster, agent) else {
                        continue;
                    };
                    let Some(status) = desk.status_of(*code) else {
                        continue;
                    };
                    if state.status(agent).unwrap_or(defined.status) != status {
                        statuses.push((agent.clone(), status));
                    }
                }
                let mut load_changed = false;
                let mut over = BTreeMap::new();
                let counted: BTreeMap<&AgentId, u32> =
                    serving.iter().map(|(agent, n)| (agent, *n)).collect();
                for (agent, count) in &serving {
                    let load = state.load(agent);
                    let seats = load.sessions_held();
                    if count.saturating_sub(seats) != load.unattributed {
                        load_changed = true;
                    }
                    if seats > *count {
                        over.insert(agent.clone(), (seats - count) as usize);
                    }
                }
                // Members whose unattributed load Desk no longer reports.
                if !load_changed {
                    load_changed = engine::roster(app, roster).iter().any(|agent| {
                        state.load(&agent.id).unattributed > 0 && !counted.contains_key(&agent.id)
                    });
                }
                (statuses, load_changed, over, parked)
            })
            .await?;
        for (agent, code) in &codes {
            if desk.status_of(*code).is_none() {
                synced.unknown += 1;
                self.metrics
                    .desk_unknown_status
                    .get_or_create(&DeskCodeLabels {
                        app: app.id.get(),
                        code: *code,
                    })
                    .inc();
                if unknown.insert((agent.clone(), *code)) {
                    tracing::warn!(app = %app.id, %agent, code, "Desk shows a MemberStatus code [apps.desk] member_status does not map: the status is left as it is (run `handoff desk` to see every member's code)");
                }
            }
        }
        for (agent, status) in statuses {
            let change = Change::SetStatus {
                agent,
                status,
                at: asked,
                id: None,
                desk: true,
            };
            if self.apply(app, change, Some(BY_DESK)).await? == Applied::Recorded {
                synced.statuses += 1;
            }
        }
        rested.retain(|_, until| *until > now);
        for (agent, until) in parked {
            if rested.get(&agent) == Some(&until) {
                continue;
            }
            client
                .set_member_status(agent.as_str(), "STATUS_REST")
                .await?;
            tracing::info!(app = %app.id, %agent, "parked after missed offers: set to rest in Desk");
            rested.insert(agent, until);
            synced.rested += 1;
        }
        if load_changed {
            self.apply(app, Change::DeskLoad(serving), Some(BY_DESK))
                .await?;
            synced.load = true;
        }
        if !over.is_empty() {
            // Only seats older than the grace: a fresh reservation is not counted yet.
            let before = asked.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
            synced.released = self
                .release(app, |session| {
                    let excess = over.get(session.agent.as_ref()?)?;
                    (session.since <= before).then_some(*excess)
                })
                .await?;
        }
        Ok(synced)
    }

    /// Counts a round of `sync` for `app` that took `took` and ended in `result`.
    fn count_sync<T>(
        &self,
        app: SdkAppId,
        sync: &'static str,
        took: Duration,
        result: &Result<T, SyncError>,
    ) {
        let outcome = result.as_ref().err().map_or("ok", SyncError::outcome);
        self.metrics
            .desk_syncs
            .get_or_create(&DeskLabels {
                app: app.get(),
                sync,
                outcome,
            })
            .inc();
        let labels = DeskSyncLabels {
            app: app.get(),
            sync,
        };
        self.metrics
            .desk_sync_seconds
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if result.is_ok() {
            let now = self
                .clock
                .now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            self.metrics
                .desk_last_sync
                .get_or_create(&labels)
                .set(i64::try_from(now).unwrap_or(i64::MAX));
        }
    }

    fn count_change(&self, app: SdkAppId, change: &'static str, n: usize) {
        if n > 0 {
            self.metrics
                .desk_changes
                .get_or_create(&DeskChangeLabels {
                    app: app.get(),
                    change,
                })
                .inc_by(n as u64);
        }
    }
}

/// How an app's Desk sync stands on this router, for GetStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeskHealth {
    /// Whether this router holds the app's sync lease.
    pub syncing: bool,
    /// When a roster round last succeeded here.
    pub last_roster: Option<SystemTime>,
    /// When a status round last succeeded here.
    pub last_status: Option<SystemTime>,
    /// While rounds fail, the last one's error.
    pub error: Option<String>,
    /// Tencent's sessions queued at the last status round (`CurrentQueueCnt`), when Desk
    /// answers it.
    pub queued: Option<u32>,
}

impl<S: Store> Router<S> {
    /// Updates app `id`'s [`DeskHealth`] with `change`.
    fn desk_health(&self, id: SdkAppId, change: impl FnOnce(&mut DeskHealth)) {
        let mut health = self
            .desk_health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(health.entry(id).or_default());
    }

    /// Notes a round of `sync` (0 roster, 1 status) that ended in `result`.
    fn note_round<T>(&self, id: SdkAppId, sync: usize, result: &Result<T, SyncError>) {
        let now = self.clock.now();
        self.desk_health(id, |health| match result {
            Ok(_) => {
                if sync == 0 {
                    health.last_roster = Some(now);
                } else {
                    health.last_status = Some(now);
                }
                health.error = None;
            }
            Err(err) => health.error = Some(err.to_string()),
        });
    }
}

/// What one app's loop keeps between rounds.
struct AppSync {
    app: SdkAppId,
    /// The client, and the settings it was made for (remade when a reload changes them).
    client: Option<(ClientSettings, Arc<DeskClient>)>,
    next_roster: Instant,
    next_status: Instant,
    /// The failure last logged for each sync, so that a failure is logged once.
    failing: [Option<String>; 2],
    unknown: HashSet<(AgentId, i64)>,
    /// Parked agents set to rest in Desk, and when their park ends.
    rested: BTreeMap<AgentId, SystemTime>,
    /// The groups the rules name that Desk lacked at the last roster round, warned of.
    missing: Vec<GroupId>,
    holder: String,
    leading: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientSettings {
    api: String,
    admin: String,
    key: String,
    timeout: Duration,
}

impl ClientSettings {
    fn of(desk: &DeskConfig) -> Self {
        Self {
            api: desk.api.clone(),
            admin: desk.admin.clone(),
            key: desk.secret_key.expose().to_owned(),
            timeout: desk.timeout.get(),
        }
    }
}

impl<S: Store> Router<S> {
    /// Sets `agent`'s status in Desk too, for an app that syncs with Desk: `available` is
    /// `STATUS_FREE`, `away` `STATUS_REST`. Desk's own status would otherwise come back at
    /// the next status poll. `offline` is not Desk's to be told (a member signs out there
    /// themselves): refused, with the reason. An app without Desk sync: nothing to do.
    pub async fn push_status_to_desk(
        &self,
        app: &App,
        agent: &AgentId,
        status: handoff_core::config::AgentStatus,
    ) -> Result<(), String> {
        let Some(desk) = &app.desk else {
            return Ok(());
        };
        let code = match status {
            handoff_core::config::AgentStatus::Available => "STATUS_FREE",
            handoff_core::config::AgentStatus::Away => "STATUS_REST",
            handoff_core::config::AgentStatus::Offline => {
                return Err(
                    "with Desk sync, an agent goes offline by signing out of Desk: handoff cannot set it there"
                        .to_owned(),
                );
            }
        };
        let endpoint = Endpoint {
            api: desk.api.clone(),
            sdk_app_id: app.id.get(),
            admin: desk.admin.clone(),
        };
        let client = DeskClient::new(endpoint, desk.secret_key.clone(), desk.timeout.get())
            .map_err(|err| err.to_string())?;
        client
            .set_member_status(agent.as_str(), code)
            .await
            .map_err(|err| format!("Desk refused the status: {err}"))
    }
}

impl AppSync {
    fn client(&mut self, app: &App, desk: &DeskConfig) -> Result<Arc<DeskClient>, DeskError> {
        let settings = ClientSettings::of(desk);
        if let Some((known, client)) = &self.client
            && *known == settings
        {
            return Ok(client.clone());
        }
        let endpoint = Endpoint {
            api: desk.api.clone(),
            sdk_app_id: app.id.get(),
            admin: desk.admin.clone(),
        };
        let client = Arc::new(DeskClient::new(
            endpoint,
            desk.secret_key.clone(),
            desk.timeout.get(),
        )?);
        self.client = Some((settings, client.clone()));
        Ok(client)
    }

    /// Logs `result` of `sync` if it starts or ends a failure.
    fn note<T>(&mut self, sync: usize, name: &str, result: &Result<T, SyncError>) {
        match (result, &self.failing[sync]) {
            (Err(err), known) if known.as_deref() != Some(&err.to_string()) => {
                tracing::error!(app = %self.app, sync = name, error = %err, "Desk sync failed: routing goes on with the last roster (logged again only when the error changes)");
                self.failing[sync] = Some(err.to_string());
            }
            (Ok(_), Some(_)) => {
                tracing::info!(app = %self.app, sync = name, "Desk sync works again");
                self.failing[sync] = None;
            }
            _ => {}
        }
    }
}

/// Runs the sync of app `id` while `router` lives and the app has `[apps.desk]`.
pub(super) async fn run<S: Store>(router: Weak<Router<S>>, id: SdkAppId, holder: String) {
    let now = Instant::now();
    let mut sync = AppSync {
        app: id,
        client: None,
        next_roster: now,
        next_status: now,
        failing: [None, None],
        unknown: HashSet::new(),
        rested: BTreeMap::new(),
        missing: Vec::new(),
        holder,
        leading: false,
    };
    loop {
        let Some(pause) = round(&router, &mut sync).await else {
            return;
        };
        tokio::time::sleep(pause).await;
    }
}

/// Runs what is due for `sync`'s app; how long to wait before looking again, or `None`
/// when the router or the app's Desk settings are gone.
async fn round<S: Store>(router: &Weak<Router<S>>, sync: &mut AppSync) -> Option<Duration> {
    let router = router.upgrade()?;
    let app = router.catalog.load().app(sync.app)?.clone();
    let desk = app.desk.clone()?;
    let status_every = desk.status_every.get();
    let ttl = (status_every * 3).max(Duration::from_secs(10));
    match router.store.lease(&app, LEASE, &sync.holder, ttl).await {
        Ok(true) => {
            router.desk_health(app.id, |health| health.syncing = true);
            if !sync.leading {
                tracing::info!(app = %app.id, holder = sync.holder, "this router syncs the app with Desk");
                sync.leading = true;
                // A new leader reads the roster first.
                sync.next_roster = Instant::now();
            }
        }
        Ok(false) => {
            router.desk_health(app.id, |health| health.syncing = false);
            sync.leading = false;
            return Some(status_every);
        }
        Err(err) => {
            tracing::debug!(app = %app.id, error = %err, "cannot take the Desk sync lease");
            return Some(status_every);
        }
    }
    let client = match sync.client(&app, &desk) {
        Ok(client) => client,
        Err(err) => {
            let result: Result<(), SyncError> = Err(err.into());
            sync.note(0, "roster", &result);
            router.note_round(app.id, 0, &result);
            return Some(desk.roster_every.get());
        }
    };
    if Instant::now() >= sync.next_roster {
        let started = Instant::now();
        let result = router.sync_roster(&app, &client).await;
        router.count_sync(app.id, "roster", started.elapsed(), &result);
        sync.note(0, "roster", &result);
        router.note_round(app.id, 0, &result);
        sync.next_roster = Instant::now()
            + match &result {
                Ok(read) => {
                    if read.missing != sync.missing {
                        if !read.missing.is_empty() {
                            tracing::warn!(app = %app.id, groups = ?read.missing, "rules or the fallback name groups Desk does not have: they route nobody Desk knows");
                        }
                        sync.missing = read.missing.clone();
                    }
                    let synced = &read.synced;
                    router.count_change(app.id, "member_added", synced.added);
                    router.count_change(app.id, "member_removed", synced.removed);
                    router.count_change(app.id, "member_changed", synced.changed);
                    router.count_change(app.id, "groups", usize::from(synced.groups));
                    router.count_change(app.id, "seat_released", synced.released);
                    if *synced != RosterSynced::default() {
                        tracing::info!(app = %app.id, added = synced.added, removed = synced.removed, changed = synced.changed, groups = synced.groups, hours = synced.hours, released = synced.released, "roster synced from Desk");
                    }
                    desk.roster_every.get()
                }
                Err(err) => err.pause(desk.roster_every.get()),
            };
        if result.is_err() {
            // No roster, no use polling statuses against it now.
            return Some(sync.next_roster.saturating_duration_since(Instant::now()));
        }
    }
    if Instant::now() >= sync.next_status {
        let started = Instant::now();
        let result = router
            .sync_status(&app, &desk, &client, &mut sync.unknown, &mut sync.rested)
            .await;
        router.count_sync(app.id, "status", started.elapsed(), &result);
        sync.note(1, "status", &result);
        router.note_round(app.id, 1, &result);
        sync.next_status = Instant::now()
            + match &result {
                Ok(synced) => {
                    router.count_change(app.id, "status", synced.statuses);
                    router.count_change(app.id, "load", usize::from(synced.load));
                    router.count_change(app.id, "seat_released", synced.released);
                    router.count_change(app.id, "rested", synced.rested);
                    if synced.statuses > 0 || synced.released > 0 {
                        tracing::info!(app = %app.id, statuses = synced.statuses, released = synced.released, "statuses and loads synced from Desk");
                    }
                    // Tencent's queue, for the console's eye: not every edition answers it,
                    // and an answer it cannot give changes nothing of the sync.
                    let queued = client
                        .reception()
                        .await
                        .ok()
                        .map(|reception| reception.queued);
                    router.desk_health(app.id, |health| health.queued = queued);
                    status_every
                }
                Err(err) => err.pause(status_every),
            };
    }
    let next = sync.next_roster.min(sync.next_status);
    Some(
        next.saturating_duration_since(Instant::now())
            .max(Duration::from_millis(50)),
    )
}
