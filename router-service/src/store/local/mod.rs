//! The local store: every app's state in this process under one mutex, either in memory
//! only (`memory`) or made durable by a [`Journal`] in a redb file (`embedded`).
//!
//! Sessions follow [`session`]'s rules; their deadlines sit in a heap, and whatever is due
//! is released before each look or change.

use std::{path::Path, time::SystemTime};

use handoff_core::id::{ClientUserId, SdkAppId};
use parking_lot::Mutex;

mod state;

use state::AppState;

use super::{
    Applied, Assignment, Change, DEDUP_WINDOW, Lifetimes, Look, Store, StoreError,
    embedded::{self, Journal, Op},
    record::{HistoryRecord, StatusRecord, to_ms},
    session::{self, SessionRecord, Weighed},
    snapshot::AppSnapshot,
};
use crate::{
    engine::{self, App, Catalog, Customer, Decision, Handoff, StateView},
    hash::FastMap,
};

/// Router state held in this process, optionally journaled to disk.
#[derive(Debug)]
pub struct LocalStore {
    lifetimes: Lifetimes,
    apps: Mutex<FastMap<SdkAppId, AppState>>,
    journal: Option<Journal>,
}

impl LocalStore {
    /// The `memory` store: nothing is kept across restarts.
    pub fn in_memory(lifetimes: Lifetimes) -> Self {
        Self {
            lifetimes,
            apps: Mutex::new(FastMap::default()),
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
        let mut apps = FastMap::default();
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
        let mut apps = self.apps.lock();
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
            let mut apps = self.apps.lock();
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

/// For replay: a memory store set to a logged state.
impl LocalStore {
    /// Replaces `app`'s state with `snapshot` (its customers and previous agents too are
    /// forgotten: each logged decision brings its own, see [`LocalStore::adopt`]).
    pub fn restore(&self, app: &App, snapshot: &AppSnapshot, now: SystemTime) {
        let loaded = embedded::LoadedApp {
            sessions: snapshot
                .seats
                .iter()
                .map(|seat| (seat.session.clone(), seat.record()))
                .collect(),
            last_assigned: snapshot
                .last_assigned
                .iter()
                .map(|idle| (idle.agent.clone(), idle.at_ms))
                .collect(),
            // A bare status: any report after the snapshot supersedes it.
            statuses: snapshot
                .statuses
                .iter()
                .map(|live| (live.agent.clone(), StatusRecord::Bare(live.status)))
                .collect(),
            roster: snapshot
                .roster
                .iter()
                .map(|change| (change.agent.clone(), change.definition.clone()))
                .collect(),
            last_finished: snapshot
                .last_finished
                .iter()
                .map(|idle| (idle.agent.clone(), idle.at_ms))
                .collect(),
            misses: snapshot.misses.clone(),
            taken: snapshot.taken.clone(),
            waits: snapshot.waits.clone(),
            desk: snapshot.desk.clone(),
            ..embedded::LoadedApp::default()
        };
        let mut state = AppState::restore(app.id, loaded, app.zone);
        state.unattributed = snapshot.unattributed.iter().cloned().collect();
        state.expire(app.id, now, self.lifetimes, &mut Writes(None));
        self.apps.lock().insert(app.id, state);
    }

    /// Takes what a logged decision saw of its customer (pushed profile, previous agent)
    /// where this store knows nothing of them yet: what happened before the log began.
    pub fn adopt(
        &self,
        app: &App,
        customer: &ClientUserId,
        profile: Option<Customer>,
        previous: Option<HistoryRecord>,
    ) {
        let mut apps = self.apps.lock();
        let state = apps
            .entry(app.id)
            .or_insert_with(|| AppState::new(app.zone));
        if let Some(profile) = profile {
            state
                .customers
                .entry(customer.clone())
                .or_insert_with(|| Box::new(profile));
        }
        if let Some(previous) = previous
            && !state.history.contains_key(customer)
        {
            state.links.push_back((previous.at_ms, customer.clone()));
            state.history.insert(customer.clone(), previous);
        }
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
        mut decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnMut(&dyn StateView) -> Decision + Send,
    {
        let hold = self.lifetimes.hold(app);
        self.mutate(app, now, |state, writes| {
            let old = state
                .sessions
                .get(&handoff.session)
                .map(|record| (**record).clone());
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
            state.note_taken(app, &handoff.session, &effects, writes);
            state.put_session(app.id, &handoff.session, record, &effects, now, writes);
            Assignment::Fresh(answer)
        })
        .await
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
        // Everything, sessions included, is in memory: nothing to fetch for the look.
        _look: Look<'_>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        Ok(self.with_app(app, now, |state| read(state)))
    }

    async fn apply(
        &self,
        app: &App,
        change: Change,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
        let max_session = self.lifetimes.max_session;
        self.mutate(app, now, |state, writes| {
            let mut id = change.identity();
            if let Some(id) = &id
                && state.seen(id, now)
            {
                return Applied::Duplicate;
            }
            let applied = match change {
                Change::SetStatus {
                    agent,
                    status,
                    at,
                    desk,
                    ..
                } => {
                    if state
                        .statuses
                        .get(&agent)
                        .is_some_and(|known| known.at_ms() > to_ms(at))
                    {
                        Applied::Superseded
                    } else {
                        let record = StatusRecord::timed(status, at, desk);
                        writes.record(|| [embedded::status(app.id, &agent, record)]);
                        state.statuses.insert(agent.clone(), record);
                        state.rerank(&agent);
                        Applied::Recorded
                    }
                }
                Change::PutAgent(agent) => {
                    writes.record(|| embedded::ops(app.id, &Change::PutAgent(agent.clone())));
                    state.statuses.remove(&agent.id);
                    state.overlays.insert(agent.id.clone(), Some(agent));
                    state.compose(app);
                    Applied::Recorded
                }
                Change::RemoveAgent(agent) => {
                    writes.record(|| embedded::ops(app.id, &Change::RemoveAgent(agent.clone())));
                    state.statuses.remove(&agent);
                    state.overlays.insert(agent, None);
                    state.compose(app);
                    Applied::Recorded
                }
                Change::DeskRoster(delta) => {
                    state.take_desk(app, &delta, writes);
                    Applied::Recorded
                }
                Change::DeskLoad(serving) => {
                    state.take_desk_load(&serving);
                    Applied::Recorded
                }
                Change::PutCustomer(customer) => {
                    writes.record(|| embedded::ops(app.id, &Change::PutCustomer(customer.clone())));
                    state
                        .customers
                        .insert(customer.id.clone(), Box::new(customer));
                    Applied::Recorded
                }
                Change::ForgetLinks { before } => {
                    let forgotten = state.forget_links(app.id, to_ms(before), writes);
                    tracing::debug!(app = %app.id, forgotten, "previous agents forgotten");
                    Applied::Recorded
                }
                Change::Session(event) => {
                    let old = state
                        .sessions
                        .get(&event.session)
                        .map(|record| (**record).clone());
                    let capacity = |agent: &_| {
                        engine::agent(app, &state.changes, agent).map(|agent| agent.capacity)
                    };
                    let margin = app.reports.capacity_margin;
                    match session::weigh(old, &event, now, max_session, margin, capacity) {
                        Weighed::Nothing(Applied::Superseded) => Applied::Superseded,
                        Weighed::Nothing(outcome) => {
                            // Nothing stored, so nothing to remember: a retry is answered
                            // alike.
                            id = None;
                            outcome
                        }
                        Weighed::Changes {
                            limit: Some((agent, most)),
                            ..
                        } if state.load(&agent).active >= most => {
                            id = None;
                            Applied::OverCapacity
                        }
                        Weighed::Changes {
                            record,
                            effects,
                            outcome,
                            ..
                        } => {
                            state.note_taken(app, &event.session, &effects, writes);
                            state.note_waited(app, &event.session, &effects, writes);
                            state.put_session(
                                app.id,
                                &event.session,
                                *record,
                                &effects,
                                now,
                                writes,
                            );
                            outcome
                        }
                    }
                }
            };
            if let Some(id) = id {
                state.remember(app.id, id, now + DEDUP_WINDOW, writes);
            }
            applied
        })
        .await
    }

    /// The memory store is always there; the embedded one while its journal takes writes.
    /// After a failed write the check writes a probe (deleting a report identity nobody
    /// has), so that it turns healthy again by itself once the disk takes writes, calls
    /// or none.
    async fn ping(&self) -> Result<(), StoreError> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        if journal.healthy() {
            return Ok(());
        }
        let probe = embedded::probe();
        match journal.submit(vec![probe]).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(StoreError::Unavailable(format!(
                "acknowledged writes cannot be made durable: {err}"
            ))),
            Err(_) => Err(StoreError::Unavailable(
                "the embedded store's writer stopped".into(),
            )),
        }
    }

    fn journal_bytes(&self) -> Option<u64> {
        self.journal.as_ref().map(Journal::bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, sync::Arc, time::Duration};

    use handoff_core::id::AgentId;

    use super::*;
    use crate::{
        engine::{self, Catalog, Customer},
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
    async fn the_session_table_gives_memory_back_once_its_sessions_are_forgotten() -> TestResult {
        let short = Lifetimes {
            assignment_ttl: Duration::from_secs(1),
            max_session: Duration::from_secs(1),
        };
        let roomy = testing::TWO_AGENTS
            .replace("capacity = 2", "capacity = 10000")
            .replace("capacity = 3", "capacity = 10000");
        let config = handoff_core::config::parse(&roomy, Path::new("t.toml"), Vec::new())?;
        let catalog = Catalog::from_config(&config, Path::new("t.toml"))?;
        let store = LocalStore::in_memory(short);
        let app = catalog.app(app_id()?).ok_or("no app")?;
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        for n in 0..20_000 {
            assign(&store, &catalog, &format!("s{n}"), start).await?;
        }
        let (held, grown) = store.with_app(app, start, |state| {
            (state.sessions.len(), state.sessions.capacity())
        });
        assert_eq!(held, 20_000);
        // Reservations run out after 1 s, their records are forgotten 1 s later.
        let later = start + Duration::from_secs(5);
        let (left, capacity, deadlines) = store.with_app(app, later, |state| {
            let sessions = &state.sessions;
            (
                sessions.len(),
                sessions.capacity(),
                state.deadlines.capacity(),
            )
        });
        assert_eq!(left, 0);
        assert!(
            capacity < grown / 8 && deadlines < 20_000 / 8,
            "the tables kept {capacity} and {deadlines} slots of {grown}"
        );
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

    #[tokio::test]
    async fn a_file_of_a_newer_format_is_refused_before_its_journal_is_read() -> TestResult {
        let dir = std::env::temp_dir().join(format!(
            "handoff-format-{}-{:?}",
            std::process::id(),
            SystemTime::now()
        ));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("state.redb");
        let (catalog, now) = (catalog()?, SystemTime::UNIX_EPOCH + Duration::from_secs(10));
        let result = async {
            let store =
                LocalStore::embedded(&path, lifetimes(Duration::from_secs(60)), &catalog, now)?;
            assign(&store, &catalog, "kept", now).await?;
            drop(store);
            // A newer handoff wrote the file since.
            {
                use redb::ReadableTable;
                let db = redb::Database::create(&path)?;
                let txn = db.begin_write()?;
                let meta: redb::TableDefinition<'static, &'static str, u64> =
                    redb::TableDefinition::new("journal");
                assert_eq!(
                    txn.open_table(meta)?.get("format")?.map(|v| v.value()),
                    Some(embedded::FORMAT),
                    "a new file records its format"
                );
                txn.open_table(meta)?
                    .insert("format", embedded::FORMAT + 1)?;
                txn.commit()?;
            }
            let refused =
                LocalStore::embedded(&path, lifetimes(Duration::from_secs(60)), &catalog, now)
                    .err()
                    .ok_or("opened a file of a newer format")?;
            Ok::<_, testing::Error>(refused.to_string())
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        let refused = result?;
        let newer = format!("newer handoff (format {})", embedded::FORMAT + 1);
        assert!(refused.contains(&newer), "{refused}");
        Ok(())
    }

    #[tokio::test]
    async fn a_full_disk_fails_writes_and_health_then_both_recover_and_the_journal_folds_again()
    -> TestResult {
        let Some(disk) = testing::SmallDisk::mount("embedded", 48 << 20)? else {
            return Ok(());
        };
        let catalog = catalog()?;
        let app = catalog.app(app_id()?).ok_or("no app")?;
        let path = disk.path().join("state.redb");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10);
        let store = LocalStore::embedded(&path, lifetimes(Duration::from_secs(60)), &catalog, now)?;
        // The folder prepares the next segment ahead: the log's reserve.
        let spare = path.with_file_name("state.redb.journal").join("spare");
        for _ in 0..200 {
            if spare.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tier = "x".repeat(256 << 10);
        let customer = |n: usize| -> Result<Change, testing::Error> {
            let mut customer = Customer::unknown(ClientUserId::parse(format!("c{n}"))?);
            customer.tier = Some(tier.clone());
            Ok(Change::PutCustomer(customer))
        };
        let mut acknowledged = Vec::new();
        store.apply(app, customer(0)?, now).await?;
        acknowledged.push(0);
        assert!(store.ping().await.is_ok());

        // The disk fills: writes go on into the reserve segment, then fail.
        disk.fill()?;
        let mut failures = 0;
        for n in 1..200 {
            match store.apply(app, customer(n)?, now).await {
                Ok(_) => acknowledged.push(n),
                Err(StoreError::Unavailable(_)) => failures += 1,
            }
            if failures >= 3 {
                break;
            }
        }
        assert!(
            failures >= 3,
            "the journal kept taking writes on a full disk"
        );
        assert!(
            store.ping().await.is_err(),
            "healthy while nothing can be made durable"
        );
        let stuck = store.journal_bytes().ok_or("no journal")?;

        // Room again: health turns by itself, writes are taken, and the log folds again.
        disk.free()?;
        assert!(store.ping().await.is_ok());
        store.apply(app, customer(999)?, now).await?;
        acknowledged.push(999);
        let mut folded = false;
        for _ in 0..150 {
            if store.journal_bytes().is_some_and(|bytes| bytes < stuck) {
                folded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(folded, "the journal ({stuck} bytes) never folded again");

        // Every acknowledged write is in the file after a restart.
        drop(store);
        let store = LocalStore::embedded(&path, lifetimes(Duration::from_secs(60)), &catalog, now)?;
        let missing: Vec<usize> = store.with_app(app, now, |state| {
            acknowledged
                .iter()
                .copied()
                .filter(|n| {
                    ClientUserId::parse(format!("c{n}"))
                        .ok()
                        .and_then(|id| state.customer(&id).map(|c| c.tier.is_some()))
                        != Some(true)
                })
                .collect()
        });
        assert_eq!(missing, Vec::<usize>::new());
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
