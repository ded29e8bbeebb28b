//! The local store: every app's state in this process under one mutex, either in memory
//! only (`memory`) or made durable by a [`Journal`] in a redb file (`embedded`).
//!
//! Assignments expire after the configured TTL, which is how an agent's load comes down
//! until session events tell the router when a conversation really ends.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    path::Path,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use chrono_tz::Tz;
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use super::{
    Assignment, Change, Store, StoreError,
    embedded::{self, Journal, LoadedApp, Op},
    record::{AssignmentRecord, from_ms, to_ms},
};
use crate::engine::{
    Agent, AgentLoad, Answer, App, Catalog, Customer, Decision, RosterChanges, StateView,
};

/// Router state held in this process, optionally journaled to disk.
#[derive(Debug)]
pub struct LocalStore {
    ttl: Duration,
    apps: Mutex<HashMap<SdkAppId, AppState>>,
    journal: Option<Journal>,
}

impl LocalStore {
    /// The `memory` store: assignments count against capacity for `ttl`; nothing is kept
    /// across restarts.
    pub fn in_memory(ttl: Duration) -> Self {
        Self {
            ttl,
            apps: Mutex::new(HashMap::new()),
            journal: None,
        }
    }

    /// The `embedded` store: state journaled to the redb file at `path` and read back from
    /// it, with agents added at run time compiled in their app's zone from `catalog`.
    pub fn embedded(
        path: &Path,
        ttl: Duration,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let (journal, loaded) = Journal::open(path)?;
        let mut apps = HashMap::new();
        let mut stale = Vec::new();
        for (app, loaded) in loaded {
            let zone = catalog.app(app).map_or(chrono_tz::UTC, |app| app.zone);
            let (state, expired) = AppState::restore(app, loaded, zone, now);
            stale.extend(
                expired
                    .iter()
                    .map(|session| embedded::expired(app, session)),
            );
            apps.insert(app, state);
        }
        if !stale.is_empty() {
            // Expired while the router was down: drop them from the file too.
            drop(journal.submit(stale));
        }
        Ok(Self {
            ttl,
            apps: Mutex::new(apps),
            journal: Some(journal),
        })
    }

    /// Runs `read` over `app`'s state at `now`, changing nothing but expiring assignments.
    fn with_app<R>(&self, app: &App, now: SystemTime, read: impl FnOnce(&mut AppState) -> R) -> R {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let state = apps
            .entry(app.id)
            .or_insert_with(|| AppState::new(app.zone));
        state.follow(app);
        let expired = state.expire(now);
        if self.journal.is_some() {
            state.pending.extend(
                expired
                    .iter()
                    .map(|session| embedded::expired(app.id, session)),
            );
        }
        read(state)
    }

    /// Runs `change` over `app`'s state at `now` and, for the embedded store, waits until
    /// the writes it recorded in its [`Writes`] are on disk.
    ///
    /// If the commit fails (a full or broken disk) the caller gets UNAVAILABLE and the change
    /// stays in memory only: a reservation then holds its seat until its TTL, and the file
    /// lacks it after a restart. Nothing acknowledged is ever missing from the file.
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
            let expired = state.expire(now);
            writes.record(|| expired.iter().map(|s| embedded::expired(app.id, s)));
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
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        let ttl = self.ttl;
        self.mutate(app, now, |state, writes| {
            if let Some(record) = state.sessions.get(session) {
                return Assignment::Replayed(record.answer.clone());
            }
            let decision = decide(state);
            if !decision.wants_reservation() {
                return Assignment::Fresh(decision.without_reservation());
            }
            // Decided under this same lock: every candidate is below capacity, so the first
            // is the one to reserve (the Redis store, deciding outside its lock, re-checks).
            let answer = decision.reserve_at(0);
            if let Some(agent) = &answer.reserved {
                let expires_at = now + ttl;
                state.reserve(agent, customer, session, answer.clone(), now, expires_at);
                writes.record(|| {
                    let record = AssignmentRecord {
                        answer: (&answer).into(),
                        expires_at_ms: to_ms(expires_at),
                    };
                    embedded::reserved(app.id, session, customer, agent, &record, now)
                });
            }
            Assignment::Fresh(answer)
        })
        .await
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
        _customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        Ok(self.with_app(app, now, |state| read(state)))
    }

    async fn apply(&self, app: &App, change: Change, now: SystemTime) -> Result<(), StoreError> {
        self.mutate(app, now, |state, writes| {
            writes.record(|| embedded::ops(app.id, &change));
            match change {
                Change::SetStatus { agent, status } => {
                    state.statuses.insert(agent, status);
                }
                Change::PutAgent(agent) => {
                    state.statuses.remove(&agent.id);
                    state.changes.insert(agent.id.clone(), Some(agent));
                }
                Change::RemoveAgent(agent) => {
                    state.statuses.remove(&agent);
                    state.changes.insert(agent, None);
                }
                Change::PutCustomer(customer) => {
                    state.customers.insert(customer.id.clone(), customer);
                }
            }
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
    statuses: HashMap<AgentId, AgentStatus>,
    customers: HashMap<ClientUserId, Customer>,
    history: HashMap<ClientUserId, (AgentId, SystemTime)>,
    changes: RosterChanges,
    /// The zone `changes` were compiled in: the app's when they were last used.
    zone: Tz,
    sessions: HashMap<SessionId, Record>,
    expiries: BinaryHeap<Reverse<(SystemTime, SessionId)>>,
    /// Journal deletions of assignments that expired during reads, for the next write.
    pending: Vec<Op>,
}

#[derive(Debug)]
struct Record {
    answer: Answer,
    expires_at: SystemTime,
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
            expiries: BinaryHeap::new(),
            pending: Vec::new(),
        }
    }

    /// Rebuilds an app's state from the journal, with roster changes compiled in `zone`;
    /// also returns the sessions whose assignments had expired by `now`, left out.
    fn restore(
        app: SdkAppId,
        loaded: LoadedApp,
        zone: Tz,
        now: SystemTime,
    ) -> (Self, Vec<SessionId>) {
        let mut state = AppState::new(zone);
        let mut expired = Vec::new();
        for (agent, at_ms) in loaded.last_assigned {
            state.loads.entry(agent).or_default().last_assigned = Some(from_ms(at_ms));
        }
        for (session, record) in loaded.assignments {
            let expires_at = from_ms(record.expires_at_ms);
            if expires_at <= now {
                expired.push(session);
                continue;
            }
            let answer = Answer::from(record.answer);
            if let Some(agent) = &answer.reserved {
                state.loads.entry(agent.clone()).or_default().active += 1;
            }
            state.expiries.push(Reverse((expires_at, session.clone())));
            state
                .sessions
                .insert(session, Record { answer, expires_at });
        }
        for (customer, record) in loaded.history {
            state
                .history
                .insert(customer, (record.agent, from_ms(record.at_ms)));
        }
        state.statuses.extend(loaded.statuses);
        for customer in loaded.customers {
            let customer = Customer::from(customer);
            state.customers.insert(customer.id.clone(), customer);
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
        (state, expired)
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
    }

    fn reserve(
        &mut self,
        agent: &AgentId,
        customer: &ClientUserId,
        session: &SessionId,
        answer: Answer,
        now: SystemTime,
        expires_at: SystemTime,
    ) {
        let load = self.loads.entry(agent.clone()).or_default();
        load.active += 1;
        load.last_assigned = Some(now);
        self.history.insert(customer.clone(), (agent.clone(), now));
        self.sessions
            .insert(session.clone(), Record { answer, expires_at });
        self.expiries.push(Reverse((expires_at, session.clone())));
    }

    /// Releases every assignment whose TTL has run out by `now`; returns their sessions.
    fn expire(&mut self, now: SystemTime) -> Vec<SessionId> {
        let mut expired = Vec::new();
        while let Some(Reverse((expires_at, _))) = self.expiries.peek() {
            if *expires_at > now {
                break;
            }
            let Some(Reverse((expired_at, session))) = self.expiries.pop() else {
                break;
            };
            // Only the record this heap entry was pushed for: a session assigned again
            // after expiring has a later entry of its own.
            let current = self.sessions.get(&session).map(|record| record.expires_at);
            if current != Some(expired_at) {
                continue;
            }
            let Some(record) = self.sessions.remove(&session) else {
                continue;
            };
            if let Some(load) = record
                .answer
                .reserved
                .as_ref()
                .and_then(|agent| self.loads.get_mut(agent))
            {
                load.active = load.active.saturating_sub(1);
            }
            expired.push(session);
        }
        expired
    }
}

impl StateView for AppState {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).copied()
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customers.get(id)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        self.history.get(customer).map(|(agent, at)| (agent, *at))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc};

    use super::*;
    use crate::{
        engine::{self, Catalog},
        testing::{self, app_id, catalog, handoff},
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
            .assign(app, &handoff.client_user, &handoff.session, now, |state| {
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
        let (store, catalog) = (LocalStore::in_memory(Duration::from_secs(60)), catalog()?);
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
        let (store, catalog) = (LocalStore::in_memory(Duration::from_secs(60)), catalog()?);
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
        let store = Arc::new(LocalStore::in_memory(Duration::from_secs(600)));
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
