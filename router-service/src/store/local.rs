//! The local store: every app's state in this process under one mutex, either in memory
//! only (`memory`) or made durable by a [`Journal`] in a redb file (`embedded`).
//!
//! Sessions follow [`session`]'s rules; their deadlines sit in a heap, and whatever is due
//! is released before each look or change.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, VecDeque},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::SystemTime,
};

use chrono_tz::Tz;
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use super::{
    Applied, Assignment, Change, DEDUP_WINDOW, Lifetimes, Look, Store, StoreError,
    embedded::{self, Journal, LoadedApp, Op},
    record::{HistoryRecord, StatusRecord, from_ms, to_ms},
    session::{self, Effects, SessionRecord},
};
use crate::engine::{
    Agent, AgentLoad, App, Catalog, Customer, Decision, Floor, Handoff, LiveSession, RosterChanges,
    StateView,
};

/// Router state held in this process, optionally journaled to disk.
#[derive(Debug)]
pub struct LocalStore {
    lifetimes: Lifetimes,
    apps: Mutex<HashMap<SdkAppId, AppState>>,
    journal: Option<Journal>,
}

impl LocalStore {
    /// The `memory` store: nothing is kept across restarts.
    pub fn in_memory(lifetimes: Lifetimes) -> Self {
        Self {
            lifetimes,
            apps: Mutex::new(HashMap::new()),
            journal: None,
        }
    }

    /// The `embedded` store: state journaled to the redb file at `path` and read back from
    /// it, with agents added at run time compiled in their app's zone from `catalog`.
    pub fn embedded(
        path: &Path,
        lifetimes: Lifetimes,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let (journal, loaded) = Journal::open(path)?;
        let mut apps = HashMap::new();
        let mut due = Vec::new();
        for (app, loaded) in loaded {
            let zone = catalog.app(app).map_or(chrono_tz::UTC, |app| app.zone);
            let mut state = AppState::restore(app, loaded, zone);
            let mut writes = Writes(Some(Vec::new()));
            state.expire(app, now, lifetimes, &mut writes);
            due.extend(writes.0.unwrap_or_default());
            apps.insert(app, state);
        }
        if !due.is_empty() {
            // Due while the router was down: record their release too.
            drop(journal.submit(due));
        }
        Ok(Self {
            lifetimes,
            apps: Mutex::new(apps),
            journal: Some(journal),
        })
    }

    /// Runs `read` over `app`'s state at `now`, changing nothing but what time released.
    fn with_app<R>(&self, app: &App, now: SystemTime, read: impl FnOnce(&mut AppState) -> R) -> R {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let state = apps
            .entry(app.id)
            .or_insert_with(|| AppState::new(app.zone));
        state.follow(app);
        let mut writes = Writes(self.journal.as_ref().map(|_| Vec::new()));
        state.expire(app.id, now, self.lifetimes, &mut writes);
        state.pending.extend(writes.0.unwrap_or_default());
        state.rank(app);
        read(state)
    }

    /// Runs `change` over `app`'s state at `now` and, for the embedded store, waits until
    /// the writes it recorded in its [`Writes`] are on disk.
    ///
    /// If the commit fails (a full or broken disk) the caller gets UNAVAILABLE and the change
    /// stays in memory only: a reservation then holds its seat until its deadline, and the
    /// file lacks it after a restart. Nothing acknowledged is ever missing from the file.
    async fn mutate<R>(
        &self,
        app: &App,
        now: SystemTime,
        change: impl FnOnce(&mut AppState, &mut Writes) -> R,
    ) -> Result<R, StoreError> {
        let (result, committed) = {
            let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            let state = apps
                .entry(app.id)
                .or_insert_with(|| AppState::new(app.zone));
            state.follow(app);
            let mut writes = Writes(
                self.journal
                    .as_ref()
                    .map(|_| std::mem::take(&mut state.pending)),
            );
            state.expire(app.id, now, self.lifetimes, &mut writes);
            state.rank(app);
            let result = change(state, &mut writes);
            // Queued under the lock, so the file sees changes in the order memory did.
            let committed = match (&self.journal, writes.0) {
                (Some(journal), Some(ops)) if !ops.is_empty() => Some(journal.submit(ops)),
                _ => None,
            };
            (result, committed)
        };
        if let Some(committed) = committed {
            committed
                .await
                .map_err(|_| StoreError::Unavailable("the embedded store's writer stopped".into()))?
                .map_err(StoreError::Unavailable)?;
        }
        Ok(result)
    }
}

/// The journal writes a mutation makes; `None` for the `memory` store, which builds none.
struct Writes(Option<Vec<Op>>);

impl Writes {
    /// Adds the writes `ops` makes, building them only when there is a journal.
    fn record<I: IntoIterator<Item = Op>>(&mut self, ops: impl FnOnce() -> I) {
        if let Some(pending) = &mut self.0 {
            pending.extend(ops());
        }
    }
}

impl Store for LocalStore {
    async fn assign<F>(
        &self,
        app: &App,
        handoff: &Handoff,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        let hold = self.lifetimes.hold(app);
        self.mutate(app, now, |state, writes| {
            let old = state.sessions.get(&handoff.session).cloned();
            if let Some(answer) = old.as_ref().and_then(SessionRecord::replay) {
                return Assignment::Replayed(answer);
            }
            let decision = decide(state);
            if !decision.wants_reservation() {
                return Assignment::Fresh(decision.without_reservation());
            }
            // Decided under this same lock: every candidate is below capacity, so the first
            // is the one to reserve (the Redis store, deciding outside its lock, re-checks).
            let answer = decision.reserve_at(0);
            let customer = &handoff.client_user;
            let (record, effects) =
                session::reserve(old, &answer, customer, handoff.event_time, now, hold);
            state.put_session(app.id, &handoff.session, record, &effects, now, writes);
            Assignment::Fresh(answer)
        })
        .await
    }

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
        Ok(self.with_app(app, now, |state| {
            state.list_sessions = look.sessions;
            let result = read(state);
            state.list_sessions = false;
            result
        }))
    }

    async fn apply(
        &self,
        app: &App,
        change: Change,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
        let max_session = self.lifetimes.max_session;
        self.mutate(app, now, |state, writes| {
            let id = match &change {
                Change::SetStatus { id, .. } => id.clone(),
                Change::Session(event) => event.id.clone(),
                _ => None,
            };
            if let Some(id) = &id
                && state.seen(id, now)
            {
                return Applied::Duplicate;
            }
            let applied = match change {
                Change::SetStatus {
                    agent, status, at, ..
                } => {
                    if state
                        .statuses
                        .get(&agent)
                        .is_some_and(|known| known.at_ms() > to_ms(at))
                    {
                        Applied::Superseded
                    } else {
                        writes.record(|| {
                            embedded::ops(
                                app.id,
                                &Change::SetStatus {
                                    agent: agent.clone(),
                                    status,
                                    at,
                                    id: None,
                                },
                            )
                        });
                        let record = StatusRecord::Timed {
                            status,
                            at_ms: to_ms(at),
                        };
                        state.statuses.insert(agent.clone(), record);
                        state.rerank(&agent);
                        Applied::Recorded
                    }
                }
                Change::PutAgent(agent) => {
                    writes.record(|| embedded::ops(app.id, &Change::PutAgent(agent.clone())));
                    state.statuses.remove(&agent.id);
                    state.changes.insert(agent.id.clone(), Some(agent));
                    state.roster_version += 1;
                    Applied::Recorded
                }
                Change::RemoveAgent(agent) => {
                    writes.record(|| embedded::ops(app.id, &Change::RemoveAgent(agent.clone())));
                    state.statuses.remove(&agent);
                    state.changes.insert(agent, None);
                    state.roster_version += 1;
                    Applied::Recorded
                }
                Change::PutCustomer(customer) => {
                    writes.record(|| embedded::ops(app.id, &Change::PutCustomer(customer.clone())));
                    state.customers.insert(customer.id.clone(), customer);
                    Applied::Recorded
                }
                Change::Session(event) => {
                    let old = state.sessions.get(&event.session).cloned();
                    match session::report(old, &event, now, max_session) {
                        None => Applied::Superseded,
                        Some((record, effects)) => {
                            state.put_session(
                                app.id,
                                &event.session,
                                record,
                                &effects,
                                now,
                                writes,
                            );
                            Applied::Recorded
                        }
                    }
                }
            };
            if let Some(id) = id {
                let until = now + DEDUP_WINDOW;
                state.remember(id.clone(), until);
                writes.record(|| [embedded::seen(app.id, &id, Some(until))]);
            }
            applied
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// One app's live state.
#[derive(Debug)]
struct AppState {
    loads: HashMap<AgentId, AgentLoad>,
    statuses: HashMap<AgentId, StatusRecord>,
    customers: HashMap<ClientUserId, Customer>,
    history: HashMap<ClientUserId, HistoryRecord>,
    changes: RosterChanges,
    /// The zone `changes` were compiled in: the app's when they were last used.
    zone: Tz,
    sessions: HashMap<SessionId, SessionRecord>,
    /// Each session's deadline; an entry whose time no longer matches its record is stale.
    deadlines: BinaryHeap<Reverse<(u64, SessionId)>>,
    /// Report identities recorded, and until when they are remembered, oldest first.
    seen: HashMap<String, SystemTime>,
    seen_order: VecDeque<(SystemTime, String)>,
    /// Whether the current look asked for sessions.
    list_sessions: bool,
    /// The agents ranked for the app's targets, kept in step with every change of load,
    /// status or roster; rebuilt after a roster change or a reload.
    floor: Option<Floor>,
    /// How many times the roster changed (agents put or removed, recompiled in a new zone).
    roster_version: u64,
    /// Journal writes of what time released during looks, for the next write.
    pending: Vec<Op>,
}

impl AppState {
    fn new(zone: Tz) -> Self {
        Self {
            loads: HashMap::new(),
            statuses: HashMap::new(),
            customers: HashMap::new(),
            history: HashMap::new(),
            changes: RosterChanges::new(),
            zone,
            sessions: HashMap::new(),
            deadlines: BinaryHeap::new(),
            seen: HashMap::new(),
            seen_order: VecDeque::new(),
            list_sessions: false,
            floor: None,
            roster_version: 0,
            pending: Vec::new(),
        }
    }

    /// Builds the floor again if the app was recompiled or the roster changed since.
    fn rank(&mut self, app: &App) {
        if self
            .floor
            .as_ref()
            .is_some_and(|floor| floor.is_for(app, self.roster_version))
        {
            return;
        }
        self.floor = None;
        let floor = Floor::build(app, self.roster_version, self);
        self.floor = Some(floor);
    }

    /// Tells the floor `agent`'s load and status as they are now.
    fn rerank(&mut self, agent: &AgentId) {
        let load = self.loads.get(agent).copied().unwrap_or_default();
        let status = self.statuses.get(agent).map(|record| record.status());
        if let Some(floor) = &mut self.floor {
            floor.update(agent, load, status);
        }
    }

    /// Rebuilds an app's state from the journal, with roster changes compiled in `zone`;
    /// agents' loads are counted again from the sessions' seats.
    fn restore(app: SdkAppId, loaded: LoadedApp, zone: Tz) -> Self {
        let mut state = AppState::new(zone);
        for (agent, at_ms) in loaded.last_assigned {
            state.loads.entry(agent).or_default().last_assigned = Some(from_ms(at_ms));
        }
        for (session, record) in loaded.sessions {
            if let Some((agent, confirmed)) = record.held() {
                let load = state.loads.entry(agent).or_default();
                load.active += 1;
                load.confirmed += u32::from(confirmed);
            }
            state
                .deadlines
                .push(Reverse((record.expires_at_ms, session.clone())));
            state.sessions.insert(session, record);
        }
        state.history.extend(loaded.history);
        state.statuses.extend(loaded.statuses);
        for customer in loaded.customers {
            let customer = Customer::from(customer);
            state.customers.insert(customer.id.clone(), customer);
        }
        let mut seen: Vec<(SystemTime, String)> = loaded
            .seen
            .into_iter()
            .map(|(id, until)| (from_ms(until), id))
            .collect();
        seen.sort();
        for (until, id) in seen {
            state.remember(id, until);
        }
        for (id, spec) in loaded.roster {
            let change = match spec {
                None => None,
                Some(spec) => match Agent::compile(&spec, zone) {
                    Ok(agent) => Some(Arc::new(agent)),
                    Err(fault) => {
                        tracing::warn!(%app, agent = %id, field = fault.field.config_key(), message = fault.message, "dropping a stored agent that no longer compiles");
                        continue;
                    }
                },
            };
            state.changes.insert(id, change);
        }
        state
    }

    /// Keeps the agents defined at run time compiled in `app`'s zone, which a reload may
    /// have changed since they were compiled (their shifts are read in it).
    fn follow(&mut self, app: &App) {
        if self.zone == app.zone {
            return;
        }
        for agent in self.changes.values_mut().flatten() {
            match Agent::compile(&agent.spec, app.zone) {
                Ok(compiled) => *agent = Arc::new(compiled),
                // The definition compiled before and zones always parse: keep the old one.
                Err(fault) => {
                    tracing::warn!(app = %app.id, agent = %agent.id, message = fault.message, "cannot compile an agent in the app's new zone");
                }
            }
        }
        self.zone = app.zone;
        self.roster_version += 1;
    }

    /// Stores `session`'s new `record` and what it does to loads, idle clocks and the
    /// customer's previous agent, recording all of it in `writes`.
    fn put_session(
        &mut self,
        app: SdkAppId,
        session: &SessionId,
        record: SessionRecord,
        effects: &Effects,
        now: SystemTime,
        writes: &mut Writes,
    ) {
        if effects.moves_seat() {
            if let Some((agent, confirmed)) = &effects.released
                && let Some(load) = self.loads.get_mut(agent)
            {
                load.active = load.active.saturating_sub(1);
                load.confirmed = load.confirmed.saturating_sub(u32::from(*confirmed));
            }
            if let Some((agent, confirmed)) = &effects.taken {
                let load = self.loads.entry(agent.clone()).or_default();
                load.active += 1;
                load.confirmed += u32::from(*confirmed);
            }
        }
        if let Some((agent, at_ms)) = &effects.last_assigned {
            let at = from_ms(*at_ms);
            let load = self.loads.entry(agent.clone()).or_default();
            if load.last_assigned.is_none_or(|known| known < at) {
                load.last_assigned = Some(at);
                writes.record(|| [embedded::last_assigned(app, agent, at)]);
            }
        }
        if let Some((customer, agent, event_ms)) = &effects.history
            && self
                .history
                .get(customer)
                .is_none_or(|known| known.superseded_by(*event_ms))
        {
            let record = HistoryRecord {
                agent: agent.clone(),
                at_ms: to_ms(now),
                event_ms: Some(*event_ms),
            };
            writes.record(|| [embedded::history(app, customer, &record)]);
            self.history.insert(customer.clone(), record);
        }
        for agent in [&effects.released, &effects.taken]
            .into_iter()
            .flatten()
            .map(|(agent, _)| agent)
            .chain(effects.last_assigned.as_ref().map(|(agent, _)| agent))
        {
            self.rerank(agent);
        }
        writes.record(|| [embedded::session(app, session, Some(&record))]);
        self.deadlines
            .push(Reverse((record.expires_at_ms, session.clone())));
        self.sessions.insert(session.clone(), record);
    }

    /// Releases every seat whose deadline has passed by `now`, and forgets sessions and
    /// report identities remembered long enough.
    fn expire(
        &mut self,
        app: SdkAppId,
        now: SystemTime,
        lifetimes: Lifetimes,
        writes: &mut Writes,
    ) {
        let now_ms = to_ms(now);
        while let Some(Reverse((due, _))) = self.deadlines.peek() {
            if *due > now_ms {
                break;
            }
            let Some(Reverse((due, session))) = self.deadlines.pop() else {
                break;
            };
            // Only the deadline the record still has: a later change pushed its own.
            let Some(record) = self
                .sessions
                .get(&session)
                .filter(|record| record.expires_at_ms == due)
                .cloned()
            else {
                continue;
            };
            let released = record.held();
            match session::expire(record, now, lifetimes.max_session) {
                Some(record) => {
                    let effects = Effects {
                        released,
                        ..Effects::default()
                    };
                    self.put_session(app, &session, record, &effects, now, writes);
                }
                None => {
                    self.sessions.remove(&session);
                    writes.record(|| [embedded::session(app, &session, None)]);
                }
            }
        }
        while let Some((until, _)) = self.seen_order.front() {
            if *until > now {
                break;
            }
            let Some((until, id)) = self.seen_order.pop_front() else {
                break;
            };
            if self.seen.get(&id) == Some(&until) {
                self.seen.remove(&id);
                writes.record(|| [embedded::seen(app, &id, None)]);
            }
        }
    }

    /// Whether a report with this identity was recorded within the window.
    fn seen(&self, id: &str, now: SystemTime) -> bool {
        self.seen.get(id).is_some_and(|until| *until > now)
    }

    fn remember(&mut self, id: String, until: SystemTime) {
        self.seen.insert(id.clone(), until);
        self.seen_order.push_back((until, id));
    }
}

impl StateView for AppState {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).map(|record| record.status())
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customers.get(id)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        self.history
            .get(customer)
            .map(|record| (&record.agent, from_ms(record.at_ms)))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }

    fn floor(&self) -> Option<&Floor> {
        self.floor.as_ref()
    }

    fn sessions(&self) -> Vec<LiveSession> {
        if !self.list_sessions {
            return Vec::new();
        }
        let mut live: Vec<LiveSession> = self
            .sessions
            .iter()
            .filter(|(_, record)| record.state().holds_seat())
            .map(|(session, record)| record.live(session))
            .collect();
        live.sort_by(|a, b| a.session.cmp(&b.session));
        live
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc, time::Duration};

    use super::*;
    use crate::{
        engine::{self, Catalog},
        testing::{self, app_id, catalog, handoff, lifetimes},
    };

    type TestResult = Result<(), testing::Error>;

    async fn assign(
        store: &LocalStore,
        catalog: &Catalog,
        session: &str,
        now: SystemTime,
    ) -> Result<Assignment, testing::Error> {
        let app = catalog.app(app_id()?).ok_or("no app")?;
        let handoff = handoff(session, now)?;
        let assignment = store
            .assign(app, &handoff, now, |state| {
                engine::decide(app, &handoff, state, now)
            })
            .await?;
        Ok(assignment)
    }

    /// The sessions `store` holds against agents' capacity in the test app at `now`.
    fn active_total(
        store: &LocalStore,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<u32, testing::Error> {
        let app = catalog.app(app_id()?).ok_or("no app")?;
        Ok(store.with_app(app, now, |state| {
            state.loads.values().map(|load| load.active).sum()
        }))
    }

    fn reserved(assignment: &Assignment) -> Option<&str> {
        assignment.answer().reserved.as_ref().map(AgentId::as_str)
    }

    #[tokio::test]
    async fn a_repeated_session_replays_its_answer_and_counts_once() -> TestResult {
        let (store, catalog) = (
            LocalStore::in_memory(lifetimes(Duration::from_secs(60))),
            catalog()?,
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let first = assign(&store, &catalog, "s1", now).await?;
        let again = assign(&store, &catalog, "s1", now + Duration::from_secs(1)).await?;
        assert!(matches!(first, Assignment::Fresh(_)));
        assert_eq!(again, Assignment::Replayed(first.answer().clone()));
        assert_eq!(active_total(&store, &catalog, now)?, 1);
        Ok(())
    }

    #[tokio::test]
    async fn load_spreads_then_fills_then_expires() -> TestResult {
        let (store, catalog) = (
            LocalStore::in_memory(lifetimes(Duration::from_secs(60))),
            catalog()?,
        );
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let mut order = Vec::new();
        for n in 0..6 {
            let at = start + Duration::from_millis(n);
            let assignment = assign(&store, &catalog, &format!("s{n}"), at).await?;
            order.push(reserved(&assignment).map(str::to_owned));
        }
        let ann = Some("ann@example.com".to_owned());
        let bob = Some("bob@example.com".to_owned());
        // ann 0/2 then bob 0/3, then bob 1/3 < ann 1/2, ann 1/2 (idle longer) ...
        assert_eq!(
            order,
            [
                ann.clone(),
                bob.clone(),
                bob.clone(),
                ann.clone(),
                bob,
                None
            ]
        );
        let full = assign(&store, &catalog, "s-full", start).await?;
        assert!(full.answer().fallback && full.answer().agents.is_empty());
        let later = start + Duration::from_secs(61);
        let after = assign(&store, &catalog, "s-later", later).await?;
        assert_eq!(reserved(&after), ann.as_deref());
        assert_eq!(active_total(&store, &catalog, later)?, 1);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_assignments_never_exceed_capacity() -> TestResult {
        let store = Arc::new(LocalStore::in_memory(lifetimes(Duration::from_secs(600))));
        let catalog = Arc::new(catalog()?);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let (store, catalog) = (store.clone(), catalog.clone());
                tokio::spawn(async move {
                    assign(&store, &catalog, &format!("c{n}"), now)
                        .await
                        .map(|a| reserved(&a).map(str::to_owned))
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for task in tasks {
            if let Some(agent) = task.await?? {
                *counts.entry(agent).or_default() += 1;
            }
        }
        assert_eq!(counts.get("ann@example.com"), Some(&2));
        assert_eq!(counts.get("bob@example.com"), Some(&3));
        Ok(())
    }
}
