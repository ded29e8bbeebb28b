//! The in-process store: one mutex over every app's state, made durable by an optional
//! [`Journal`] (the embedded store).
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

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use super::{
    Assignment, Store, StoreError,
    embedded::{AssignmentRecord, HistoryRecord, Journal, Kind, LoadedApp, Op, from_ms, to_ms},
};
use crate::engine::{
    Agent, AgentLoad, Answer, Catalog, Customer, Decision, RosterChanges, StateView,
};

/// Router state held in memory, optionally journaled to disk.
#[derive(Debug)]
pub struct MemoryStore {
    ttl: Duration,
    apps: Mutex<HashMap<SdkAppId, AppState>>,
    journal: Option<Journal>,
}

impl MemoryStore {
    /// A store whose assignments count against capacity for `ttl`, kept in memory only.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            apps: Mutex::new(HashMap::new()),
            journal: None,
        }
    }

    /// The embedded store: state journaled to the redb file at `path` and read back from it,
    /// with agents added at run time compiled against `catalog`.
    pub fn open(
        path: &Path,
        ttl: Duration,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let (journal, loaded) = Journal::open(path)?;
        let mut apps = HashMap::new();
        let mut stale = Vec::new();
        for (app, loaded) in loaded {
            apps.insert(
                app,
                AppState::restore(app, loaded, catalog, now, &mut stale),
            );
        }
        let store = Self {
            ttl,
            apps: Mutex::new(apps),
            journal: Some(journal),
        };
        if !stale.is_empty()
            && let Some(journal) = &store.journal
        {
            // Expired while the router was down: drop them from the file too.
            drop(journal.submit(stale));
        }
        Ok(store)
    }

    /// Runs `read` over `app`'s state at `now`, changing nothing but expiring assignments.
    fn with_app<R>(
        &self,
        app: SdkAppId,
        now: SystemTime,
        read: impl FnOnce(&mut AppState) -> R,
    ) -> R {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let state = apps.entry(app).or_default();
        let mut expired = Vec::new();
        state.expire(app, now, &mut expired);
        if self.journal.is_some() {
            state.pending.extend(expired);
        }
        read(state)
    }

    /// Runs `change` over `app`'s state at `now` and, for the embedded store, waits until
    /// the changes it recorded are on disk.
    ///
    /// If the commit fails (a full or broken disk) the caller gets UNAVAILABLE and the change
    /// stays in memory only: a reservation then holds its seat until its TTL, and the file
    /// lacks it after a restart. Nothing acknowledged is ever missing from the file.
    async fn mutate<R>(
        &self,
        app: SdkAppId,
        now: SystemTime,
        change: impl FnOnce(&mut AppState, &mut Vec<Op>) -> R,
    ) -> Result<R, StoreError> {
        let (result, committed) = {
            let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
            let state = apps.entry(app).or_default();
            let mut ops = std::mem::take(&mut state.pending);
            state.expire(app, now, &mut ops);
            let result = change(state, &mut ops);
            // Queued under the lock, so the file sees changes in the order memory did.
            let committed = match &self.journal {
                Some(journal) if !ops.is_empty() => Some(journal.submit(ops)),
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

impl Store for MemoryStore {
    async fn assign<F>(
        &self,
        app: SdkAppId,
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        let ttl = self.ttl;
        self.mutate(app, now, |state, ops| {
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
                let record = AssignmentRecord {
                    answer: answer.clone(),
                    expires_at_ms: to_ms(expires_at),
                };
                let history = HistoryRecord {
                    agent: agent.clone(),
                    at_ms: to_ms(now),
                };
                ops.push(Op::put(Kind::Assignments, app, session.as_str(), &record));
                ops.push(Op::put(
                    Kind::LastAssigned,
                    app,
                    agent.as_str(),
                    &to_ms(now),
                ));
                ops.push(Op::put(Kind::History, app, customer.as_str(), &history));
            }
            Assignment::Fresh(answer)
        })
        .await
    }

    async fn inspect<F, R>(
        &self,
        app: SdkAppId,
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

    async fn set_status(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        status: AgentStatus,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.mutate(app, now, |state, ops| {
            state.statuses.insert(agent.clone(), status);
            ops.push(Op::put(Kind::Statuses, app, agent.as_str(), &status));
        })
        .await
    }

    async fn upsert_agent(
        &self,
        app: SdkAppId,
        agent: Arc<Agent>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.mutate(app, now, |state, ops| {
            ops.push(Op::put(
                Kind::Roster,
                app,
                agent.id.as_str(),
                &Some(&agent.spec),
            ));
            ops.push(Op::delete(Kind::Statuses, app, agent.id.as_str()));
            state.statuses.remove(&agent.id);
            state.changes.insert(agent.id.clone(), Some(agent));
        })
        .await
    }

    async fn remove_agent(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.mutate(app, now, |state, ops| {
            ops.push(Op::put(Kind::Roster, app, agent.as_str(), &None::<()>));
            ops.push(Op::delete(Kind::Statuses, app, agent.as_str()));
            state.statuses.remove(agent);
            state.changes.insert(agent.clone(), None);
        })
        .await
    }

    async fn upsert_customer(
        &self,
        app: SdkAppId,
        customer: Customer,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.mutate(app, now, |state, ops| {
            ops.push(Op::put(
                Kind::Customers,
                app,
                customer.id.as_str(),
                &customer,
            ));
            state.customers.insert(customer.id.clone(), customer);
        })
        .await
    }
}

/// One app's live state.
#[derive(Debug, Default)]
struct AppState {
    loads: HashMap<AgentId, AgentLoad>,
    statuses: HashMap<AgentId, AgentStatus>,
    customers: HashMap<ClientUserId, Customer>,
    history: HashMap<ClientUserId, (AgentId, SystemTime)>,
    changes: RosterChanges,
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
    /// Rebuilds an app's state from the journal; assignments expired by `now` are left out
    /// and their deletions added to `stale`.
    fn restore(
        app: SdkAppId,
        loaded: LoadedApp,
        catalog: &Catalog,
        now: SystemTime,
        stale: &mut Vec<Op>,
    ) -> Self {
        let mut state = AppState::default();
        for (agent, at) in loaded.last_assigned {
            state.loads.entry(agent).or_default().last_assigned = Some(at);
        }
        for (session, record) in loaded.assignments {
            let expires_at = from_ms(record.expires_at_ms);
            if expires_at <= now {
                stale.push(Op::delete(Kind::Assignments, app, session.as_str()));
                continue;
            }
            if let Some(agent) = &record.answer.reserved {
                state.loads.entry(agent.clone()).or_default().active += 1;
            }
            state.expiries.push(Reverse((expires_at, session.clone())));
            state.sessions.insert(
                session,
                Record {
                    answer: record.answer,
                    expires_at,
                },
            );
        }
        for (customer, record) in loaded.history {
            state
                .history
                .insert(customer, (record.agent, from_ms(record.at_ms)));
        }
        state.statuses.extend(loaded.statuses);
        for customer in loaded.customers {
            state.customers.insert(customer.id.clone(), customer);
        }
        let zone = catalog.app(app).map(|app| app.zone);
        for (id, spec) in loaded.roster {
            let change = match (spec, zone) {
                (None, _) => None,
                (Some(spec), Some(zone)) => match Agent::compile(&spec, zone) {
                    Ok(agent) => Some(Arc::new(agent)),
                    Err((key, message)) => {
                        tracing::warn!(%app, agent = %id, key, message, "dropping a stored agent that no longer compiles");
                        continue;
                    }
                },
                (Some(_), None) => continue,
            };
            state.changes.insert(id, change);
        }
        state
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

    /// Releases every assignment whose TTL has run out by `now`, recording their deletion.
    fn expire(&mut self, app: SdkAppId, now: SystemTime, ops: &mut Vec<Op>) {
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
            ops.push(Op::delete(Kind::Assignments, app, session.as_str()));
            if let Some(load) = record
                .answer
                .reserved
                .as_ref()
                .and_then(|agent| self.loads.get_mut(agent))
            {
                load.active = load.active.saturating_sub(1);
            }
        }
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
    use std::{collections::BTreeMap, path::Path, sync::Arc};

    use handoff_core::id::ClientUserId;

    use super::*;
    use crate::engine::{self, Catalog, Handoff};

    const CONFIG: &str = r#"
        [[apps]]
        sdk_app_id = 1400000001
        [[apps.groups]]
        id = 6521
        name = "general"
        [[apps.agents]]
        id = "ann@example.com"
        groups = [6521]
        capacity = 2
        [[apps.agents]]
        id = "bob@example.com"
        groups = [6521]
        capacity = 3
    "#;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn catalog() -> Result<Catalog, Box<dyn std::error::Error>> {
        let config = handoff_core::config::parse(CONFIG, Path::new("t.toml"), Vec::new())?;
        Ok(Catalog::from_config(&config, Path::new("t.toml"))?)
    }

    async fn assign(
        store: &MemoryStore,
        catalog: &Catalog,
        session: &str,
        now: SystemTime,
    ) -> Result<Assignment, Box<dyn std::error::Error>> {
        let app_id = SdkAppId::new(1_400_000_001)?;
        let app = catalog.app(app_id).ok_or("no app")?;
        let handoff = Handoff {
            app: app_id,
            session: SessionId::parse(session)?,
            client_user: ClientUserId::parse(format!("customer-of-{session}"))?,
            event_time: now,
            platform: String::new(),
            channel: String::new(),
            attributes: BTreeMap::new(),
        };
        let assignment = store
            .assign(
                app_id,
                &handoff.client_user,
                &handoff.session,
                now,
                |state| engine::decide(app, &handoff, state, now),
            )
            .await?;
        Ok(assignment)
    }

    /// The sessions `store` holds against agents' capacity in the test app at `now`.
    fn active_total(
        store: &MemoryStore,
        now: SystemTime,
    ) -> Result<u32, Box<dyn std::error::Error>> {
        let app = SdkAppId::new(1_400_000_001)?;
        Ok(store.with_app(app, now, |state| {
            state.loads.values().map(|load| load.active).sum()
        }))
    }

    fn reserved(assignment: &Assignment) -> Option<&str> {
        assignment.answer().reserved.as_ref().map(AgentId::as_str)
    }

    #[tokio::test]
    async fn a_repeated_session_replays_its_answer_and_counts_once() -> TestResult {
        let (store, catalog) = (MemoryStore::new(Duration::from_secs(60)), catalog()?);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let first = assign(&store, &catalog, "s1", now).await?;
        let again = assign(&store, &catalog, "s1", now + Duration::from_secs(1)).await?;
        assert!(matches!(first, Assignment::Fresh(_)));
        assert_eq!(again, Assignment::Replayed(first.answer().clone()));
        assert_eq!(active_total(&store, now)?, 1);
        Ok(())
    }

    #[tokio::test]
    async fn load_spreads_then_fills_then_expires() -> TestResult {
        let (store, catalog) = (MemoryStore::new(Duration::from_secs(60)), catalog()?);
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
        assert_eq!(active_total(&store, later)?, 1);
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_assignments_never_exceed_capacity() -> TestResult {
        let store = Arc::new(MemoryStore::new(Duration::from_secs(600)));
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

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Whatever the prior load and statuses, what Explain predicts (deciding over the
            /// same state without reserving) is exactly what AssignHuman answers.
            #[test]
            fn explain_predicts_assign(
                prior in proptest::collection::vec(0usize..6, 0..8),
                away in proptest::bool::ANY,
            ) {
                let fail = |e: Box<dyn std::error::Error>| TestCaseError::fail(e.to_string());
                let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| TestCaseError::fail(e.to_string()))?;
                runtime.block_on(async {
                    let (store, catalog) = (MemoryStore::new(Duration::from_secs(60)), catalog().map_err(fail)?);
                    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
                    for (n, _) in prior.iter().enumerate() {
                        assign(&store, &catalog, &format!("prior-{n}"), now).await.map_err(fail)?;
                    }
                    let app_id = SdkAppId::new(1_400_000_001).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    if away {
                        let ann = AgentId::parse("ann@example.com").map_err(|e| TestCaseError::fail(e.to_string()))?;
                        store.set_status(app_id, &ann, AgentStatus::Away, now).await.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    }
                    let app = catalog.app(app_id).ok_or_else(|| TestCaseError::fail("no app"))?.clone();
                    let handoff = Handoff {
                        app: app_id,
                        session: SessionId::parse("probe").map_err(|e| TestCaseError::fail(e.to_string()))?,
                        client_user: ClientUserId::parse("probe").map_err(|e| TestCaseError::fail(e.to_string()))?,
                        event_time: now,
                        platform: String::new(),
                        channel: String::new(),
                        attributes: BTreeMap::new(),
                    };
                    let predicted = store
                        .inspect(app_id, Some(&handoff.client_user), now, |state| engine::decide(&app, &handoff, state, now))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let predicted = if predicted.wants_reservation() { predicted.reserve_at(0) } else { predicted.without_reservation() };
                    let assigned = store
                        .assign(app_id, &handoff.client_user, &handoff.session, now, |state| engine::decide(&app, &handoff, state, now))
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(assigned, Assignment::Fresh(predicted));
                    Ok(())
                })?;
            }
        }
    }
}
