//! The embedded store's durability: a journal of every change to the local store's state,
//! made durable before the call that made the change is answered, kept in a redb file, and
//! read back when the router starts. The file's layout lives here alone: [`ops`] says which
//! writes record each [`Change`], [`session`], [`last_assigned`], [`history`] and [`seen`]
//! those the local store makes as sessions change.
//!
//! Changes are queued in the order the in-memory state made them; one writer thread appends
//! whatever has queued as one frame to the journal's [`log`] and syncs it, so concurrent
//! calls share a sync, then answers them. A second thread folds each full log segment into
//! the redb file in one transaction and deletes it; at start, segments not yet folded are
//! folded before the file is read. A kill at any point loses only changes that were never
//! acknowledged.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, mpsc},
    thread::JoinHandle,
    time::SystemTime,
};

use handoff_core::id::{AgentId, ClientUserId, SdkAppId, SessionId};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use tokio::sync::oneshot;

use super::{
    Change, StoreError,
    record::{self, CustomerRecord, HistoryRecord, RosterRecord, StatusRecord, to_ms},
    session::SessionRecord,
};

mod log;

type Table = TableDefinition<'static, (u64, &'static str), &'static [u8]>;

/// The journal's own bookkeeping: `folded_through`, the last log segment the tables hold.
const META: TableDefinition<'static, &'static str, u64> = TableDefinition::new("journal");
const FOLDED_THROUGH: &str = "folded_through";

/// The tables, each keyed by (app, id), each value a JSON record of [`record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// Sessions: [`SessionRecord`] (the table kept its first name).
    Assignments,
    /// Each agent's last assignment, Unix milliseconds.
    LastAssigned,
    /// Each customer's previous agent: [`HistoryRecord`].
    History,
    /// Live statuses by agent: [`StatusRecord`].
    Statuses,
    /// Run-time roster changes by agent: [`RosterRecord`].
    Roster,
    /// Customers pushed over gRPC: [`CustomerRecord`].
    Customers,
    /// Identities of reports recorded, for recognising retries: when to forget each, Unix
    /// milliseconds.
    Seen,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Assignments,
        Kind::LastAssigned,
        Kind::History,
        Kind::Statuses,
        Kind::Roster,
        Kind::Customers,
        Kind::Seen,
    ];

    fn table(self) -> Table {
        TableDefinition::new(match self {
            Kind::Assignments => "assignments",
            Kind::LastAssigned => "last_assigned",
            Kind::History => "history",
            Kind::Statuses => "statuses",
            Kind::Roster => "roster",
            Kind::Customers => "customers",
            Kind::Seen => "seen",
        })
    }
}

/// One write to the file: a put, or a delete when `value` is `None`.
#[derive(Debug, Clone)]
pub(super) struct Op {
    kind: Kind,
    app: u64,
    key: String,
    value: Option<Vec<u8>>,
}

impl Op {
    /// Whether the op writes a value (rather than deleting one).
    pub(super) fn is_put(&self) -> bool {
        self.value.is_some()
    }

    fn put(kind: Kind, app: SdkAppId, key: &str, value: &impl Serialize) -> Self {
        Self {
            kind,
            app: app.get(),
            key: key.to_owned(),
            value: Some(record::encode(value).into_bytes()),
        }
    }

    fn delete(kind: Kind, app: SdkAppId, key: &str) -> Self {
        Self {
            kind,
            app: app.get(),
            key: key.to_owned(),
            value: None,
        }
    }
}

/// The writes that record `change` to `app`. A session event's writes (and which links
/// are forgotten) depend on the state they meet, so the local store writes their outcome
/// with [`session`], [`last_assigned`] and [`history`] instead.
pub(super) fn ops(app: SdkAppId, change: &Change) -> Vec<Op> {
    match change {
        Change::SetStatus {
            agent, status, at, ..
        } => {
            let record = StatusRecord::Timed {
                status: *status,
                at_ms: to_ms(*at),
            };
            vec![Op::put(Kind::Statuses, app, agent.as_str(), &record)]
        }
        Change::PutAgent(agent) => vec![
            Op::put(Kind::Roster, app, agent.id.as_str(), &Some(&agent.spec)),
            Op::delete(Kind::Statuses, app, agent.id.as_str()),
        ],
        Change::RemoveAgent(agent) => vec![
            Op::put(Kind::Roster, app, agent.as_str(), &None::<()>),
            Op::delete(Kind::Statuses, app, agent.as_str()),
        ],
        Change::PutCustomer(customer) => vec![Op::put(
            Kind::Customers,
            app,
            customer.id.as_str(),
            &CustomerRecord::from(customer),
        )],
        Change::Session(_) | Change::ForgetLinks { .. } => Vec::new(),
    }
}

/// The write of a session's record, or its deletion.
pub(super) fn session(app: SdkAppId, session: &SessionId, record: Option<&SessionRecord>) -> Op {
    match record {
        Some(record) => Op::put(Kind::Assignments, app, session.as_str(), record),
        None => Op::delete(Kind::Assignments, app, session.as_str()),
    }
}

/// The write of an agent's idle clock.
pub(super) fn last_assigned(app: SdkAppId, agent: &AgentId, at: SystemTime) -> Op {
    Op::put(Kind::LastAssigned, app, agent.as_str(), &to_ms(at))
}

/// The write of a customer's previous agent (or its deletion, `None`).
pub(super) fn history(
    app: SdkAppId,
    customer: &ClientUserId,
    record: Option<&HistoryRecord>,
) -> Op {
    match record {
        Some(record) => Op::put(Kind::History, app, customer.as_str(), record),
        None => Op::delete(Kind::History, app, customer.as_str()),
    }
}

/// The write that remembers a report's identity until `until` (or forgets it, `None`).
pub(super) fn seen(app: SdkAppId, id: &str, until: Option<SystemTime>) -> Op {
    match until {
        Some(until) => Op::put(Kind::Seen, app, id, &to_ms(until)),
        None => Op::delete(Kind::Seen, app, id),
    }
}

/// Everything the file held for one app when the router started, as records.
#[derive(Debug, Default)]
pub(super) struct LoadedApp {
    pub(super) sessions: Vec<(SessionId, SessionRecord)>,
    pub(super) last_assigned: Vec<(AgentId, u64)>,
    pub(super) history: Vec<(ClientUserId, HistoryRecord)>,
    pub(super) statuses: Vec<(AgentId, StatusRecord)>,
    pub(super) roster: Vec<(AgentId, RosterRecord)>,
    pub(super) customers: Vec<CustomerRecord>,
    pub(super) seen: Vec<(String, u64)>,
}

struct Batch {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The journal: a writer thread appending to the log, and a folder thread bringing the redb
/// file up to date from it.
pub(super) struct Journal {
    queue: Option<mpsc::Sender<Batch>>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Opens (or creates) the file at `path` and its log, folds what the log holds into
    /// the file, and reads back everything the file holds.
    pub(super) fn open(path: &Path) -> Result<(Self, HashMap<SdkAppId, LoadedApp>), StoreError> {
        let unavailable = |what: &str, err: &dyn std::fmt::Display| {
            StoreError::Unavailable(format!("embedded store {}: {what}: {err}", path.display()))
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| unavailable("creating its directory", &e))?;
        }
        let db = Database::create(path).map_err(|e| unavailable("opening", &e))?;
        create_tables(&db).map_err(|e| unavailable("creating tables", &e))?;
        let directory = log::directory(path);
        std::fs::create_dir_all(&directory)
            .map_err(|e| unavailable("creating its journal directory", &e))?;
        let segments =
            log::segments(&directory).map_err(|e| unavailable("listing its journal", &e))?;
        let folded = folded_through(&db).map_err(|e| unavailable("reading", &e))?;
        let (done, unfolded): (Vec<u64>, Vec<u64>) =
            segments.iter().partition(|&&number| number <= folded);
        log::remove(&directory, &done);
        log::fold(&db, &directory, &unfolded)
            .map_err(|e| unavailable("folding its journal", &e))?;
        let loaded = load(&db).map_err(|e| unavailable("reading", &e))?;
        let first = segments.last().map_or(folded, |&last| last.max(folded)) + 1;
        let segment = log::Segment::create(&directory, first)
            .map_err(|e| unavailable("starting a journal segment", &e))?;

        let db = Arc::new(db);
        let (queue, batches) = mpsc::channel();
        let (full, fulls) = mpsc::channel();
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| unavailable("starting its writer", &e))
        };
        let writer = spawn(
            "handoff-journal",
            Box::new(move || write_batches(segment, batches, full)),
        )?;
        let folder = spawn(
            "handoff-fold",
            Box::new(move || fold_segments(&db, &directory, fulls)),
        )?;
        Ok((
            Self {
                queue: Some(queue),
                threads: vec![writer, folder],
            },
            loaded,
        ))
    }

    /// Queues `ops`; the receiver resolves once they are on disk.
    pub(super) fn submit(&self, ops: Vec<Op>) -> oneshot::Receiver<Result<(), String>> {
        let (done, committed) = oneshot::channel();
        let batch = Batch { ops, done };
        if let Some(queue) = &self.queue
            && let Err(mpsc::SendError(batch)) = queue.send(batch)
        {
            let _ = batch
                .done
                .send(Err("the journal writer has stopped".into()));
        }
        committed
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop, which stops the
        // folder once it has folded what it was handed; then the file is released.
        drop(self.queue.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    for kind in Kind::ALL {
        txn.open_table(kind.table())?;
    }
    txn.open_table(META)?;
    txn.commit()?;
    Ok(())
}

/// The last log segment the tables hold (0: none).
fn folded_through(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_read()?;
    let meta = txn.open_table(META)?;
    Ok(meta.get(FOLDED_THROUGH)?.map_or(0, |value| value.value()))
}

/// Appends each run of queued batches to the log as one frame, syncs it, then tells their
/// callers; hands every full segment to the folder.
fn write_batches(
    mut segment: log::Segment,
    batches: mpsc::Receiver<Batch>,
    full: mpsc::Sender<u64>,
) {
    let mut frame = Vec::new();
    while let Ok(first) = batches.recv() {
        let mut run = vec![first];
        while run.len() < 1024 {
            match batches.try_recv() {
                Ok(next) => run.push(next),
                Err(_) => break,
            }
        }
        log::frame(run.iter().flat_map(|batch| &batch.ops), &mut frame);
        let written = segment.append(&frame);
        let result = written.as_ref().map(|_| ()).map_err(|err| {
            tracing::error!(error = %err, "embedded store journal write failed");
            format!("embedded store journal write failed: {err}")
        });
        for batch in run {
            let _ = batch.done.send(result.clone());
        }
        // A failed write may have left part of a frame: nothing more goes after it.
        if written.is_err() || segment.is_full() {
            match segment.next() {
                Ok(next) => {
                    let _ = full.send(segment.number());
                    segment = next;
                }
                Err(err) => {
                    tracing::error!(error = %err, "cannot start a new journal segment");
                }
            }
        }
    }
}

/// Folds each segment handed over into the redb file, in order; a segment that fails to
/// fold is tried again with the next (the log keeps it meanwhile, and a restart folds it).
fn fold_segments(db: &Database, directory: &Path, fulls: mpsc::Receiver<u64>) {
    let mut waiting = Vec::new();
    loop {
        if let Err(err) = log::prepare_spare(directory) {
            tracing::warn!(error = %err, "cannot prepare the next journal segment; it will start empty");
        }
        let Ok(number) = fulls.recv() else { break };
        waiting.push(number);
        waiting.extend(fulls.try_iter());
        match log::fold(db, directory, &waiting) {
            Ok(()) => waiting.clear(),
            Err(err) => {
                tracing::error!(error = %err, "folding the journal into the embedded store failed; it stays in the log")
            }
        }
    }
}

/// Applies `ops` in order in one transaction, recording `folded` as the last segment the
/// tables hold.
fn commit(db: &Database, ops: &[Op], folded: Option<u64>) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut tables = Vec::with_capacity(Kind::ALL.len());
        for kind in Kind::ALL {
            tables.push(txn.open_table(kind.table())?);
        }
        for op in ops {
            let table = &mut tables[op.kind as usize];
            match &op.value {
                Some(value) => {
                    table.insert((op.app, op.key.as_str()), value.as_slice())?;
                }
                None => {
                    table.remove((op.app, op.key.as_str()))?;
                }
            }
        }
        if let Some(folded) = folded {
            txn.open_table(META)?.insert(FOLDED_THROUGH, folded)?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn load(db: &Database) -> Result<HashMap<SdkAppId, LoadedApp>, redb::Error> {
    let txn = db.begin_read()?;
    let mut apps: HashMap<SdkAppId, LoadedApp> = HashMap::new();
    for kind in Kind::ALL {
        let table = txn.open_table(kind.table())?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (app, id) = key.value();
            let Ok(app) = SdkAppId::new(app) else {
                continue;
            };
            let loaded = apps.entry(app).or_default();
            if let Err(err) = read_into(loaded, kind, id, value.value()) {
                tracing::warn!(%app, id, table = ?kind, error = %err, "skipping an unreadable journal entry");
            }
        }
    }
    Ok(apps)
}

fn read_into(loaded: &mut LoadedApp, kind: Kind, id: &str, value: &[u8]) -> Result<(), String> {
    let text = |e: handoff_core::id::IdError| e.to_string();
    match kind {
        Kind::Assignments => {
            let session = SessionId::parse(id).map_err(text)?;
            let record: SessionRecord = record::decode(value)?;
            loaded.sessions.push((session, record.normalized()));
        }
        Kind::LastAssigned => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.last_assigned.push((agent, record::decode(value)?));
        }
        Kind::History => {
            let customer = ClientUserId::parse(id).map_err(text)?;
            loaded.history.push((customer, record::decode(value)?));
        }
        Kind::Statuses => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.statuses.push((agent, record::decode(value)?));
        }
        Kind::Roster => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.roster.push((agent, record::decode(value)?));
        }
        Kind::Customers => {
            loaded.customers.push(record::decode(value)?);
        }
        Kind::Seen => {
            loaded.seen.push((id.to_owned(), record::decode(value)?));
        }
    }
    Ok(())
}
