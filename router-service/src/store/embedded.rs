//! The embedded store's durability: a journal of every change to the in-memory state,
//! written to a redb file and committed (fsync) before the call that made the change is
//! answered, and read back when the router starts.
//!
//! Changes are queued in the order the in-memory state made them; one writer thread commits
//! whatever has queued in a single transaction, so concurrent calls share an fsync. A kill
//! at any point loses only changes that were never acknowledged.

use std::{
    collections::HashMap,
    path::Path,
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use handoff_core::{
    config::{AgentConfig, AgentStatus},
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::StoreError;
use crate::engine::{Answer, Customer};

type Table = TableDefinition<'static, (u64, &'static str), &'static [u8]>;

/// The tables, each keyed by (app, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Live assignments by session: [`AssignmentRecord`].
    Assignments,
    /// Each agent's last assignment, Unix milliseconds (big-endian u64).
    LastAssigned,
    /// Each customer's previous agent: [`HistoryRecord`].
    History,
    /// Live statuses by agent: [`AgentStatus`].
    Statuses,
    /// Run-time roster changes by agent: `Option<AgentConfig>` (`None` removes).
    Roster,
    /// Customers pushed over gRPC: [`Customer`].
    Customers,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Assignments,
        Kind::LastAssigned,
        Kind::History,
        Kind::Statuses,
        Kind::Roster,
        Kind::Customers,
    ];

    fn table(self) -> Table {
        TableDefinition::new(match self {
            Kind::Assignments => "assignments",
            Kind::LastAssigned => "last_assigned",
            Kind::History => "history",
            Kind::Statuses => "statuses",
            Kind::Roster => "roster",
            Kind::Customers => "customers",
        })
    }
}

/// One change: a put, or a delete when `value` is `None`.
#[derive(Debug, Clone)]
pub(super) struct Op {
    kind: Kind,
    app: u64,
    key: String,
    value: Option<Vec<u8>>,
}

impl Op {
    /// Stores `value` as JSON under `(app, key)`.
    pub(super) fn put(kind: Kind, app: SdkAppId, key: &str, value: &impl Serialize) -> Self {
        Self {
            kind,
            app: app.get(),
            key: key.to_owned(),
            // These records are plain data: serializing them cannot fail.
            value: Some(serde_json::to_vec(value).unwrap_or_default()),
        }
    }

    /// Deletes `(app, key)`.
    pub(super) fn delete(kind: Kind, app: SdkAppId, key: &str) -> Self {
        Self {
            kind,
            app: app.get(),
            key: key.to_owned(),
            value: None,
        }
    }
}

/// A live assignment as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AssignmentRecord {
    pub(super) answer: Answer,
    pub(super) expires_at_ms: u64,
}

/// A customer's previous agent as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct HistoryRecord {
    pub(super) agent: AgentId,
    pub(super) at_ms: u64,
}

/// Milliseconds since the Unix epoch.
pub(super) fn to_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The instant `ms` milliseconds after the Unix epoch.
pub(super) fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// Everything the journal held for one app when the router started.
#[derive(Debug, Default)]
pub(super) struct LoadedApp {
    pub(super) assignments: Vec<(SessionId, AssignmentRecord)>,
    pub(super) last_assigned: Vec<(AgentId, SystemTime)>,
    pub(super) history: Vec<(ClientUserId, HistoryRecord)>,
    pub(super) statuses: Vec<(AgentId, AgentStatus)>,
    pub(super) roster: Vec<(AgentId, Option<AgentConfig>)>,
    pub(super) customers: Vec<Customer>,
}

struct Batch {
    ops: Vec<Op>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The journal: a writer thread over the redb file.
pub(super) struct Journal {
    queue: Option<mpsc::Sender<Batch>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Journal")
    }
}

impl Journal {
    /// Opens (or creates) the file at `path` and reads back everything it holds.
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
        let loaded = load(&db).map_err(|e| unavailable("reading", &e))?;
        let (queue, batches) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("handoff-journal".into())
            .spawn(move || write_batches(db, batches))
            .map_err(|e| unavailable("starting its writer", &e))?;
        Ok((
            Self {
                queue: Some(queue),
                writer: Some(writer),
            },
            loaded,
        ))
    }

    /// Queues `ops`; the receiver resolves once they are committed to disk.
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
        // Closing the queue lets the writer finish what is queued, then release the file.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn create_tables(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    for kind in Kind::ALL {
        txn.open_table(kind.table())?;
    }
    txn.commit()?;
    Ok(())
}

/// Commits each run of queued batches in one transaction, then tells their callers.
fn write_batches(db: Database, batches: mpsc::Receiver<Batch>) {
    while let Ok(first) = batches.recv() {
        let mut run = vec![first];
        while run.len() < 1024 {
            match batches.try_recv() {
                Ok(next) => run.push(next),
                Err(_) => break,
            }
        }
        let result = commit(&db, &run).map_err(|err| {
            tracing::error!(error = %err, "embedded store commit failed");
            format!("embedded store commit failed: {err}")
        });
        for batch in run {
            let _ = batch.done.send(result.clone());
        }
    }
}

fn commit(db: &Database, run: &[Batch]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut tables = Vec::with_capacity(Kind::ALL.len());
        for kind in Kind::ALL {
            tables.push((kind, txn.open_table(kind.table())?));
        }
        for op in run.iter().flat_map(|batch| &batch.ops) {
            let Some((_, table)) = tables.iter_mut().find(|(kind, _)| *kind == op.kind) else {
                continue;
            };
            match &op.value {
                Some(value) => {
                    table.insert((op.app, op.key.as_str()), value.as_slice())?;
                }
                None => {
                    table.remove((op.app, op.key.as_str()))?;
                }
            }
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
    let text = |e: &dyn std::fmt::Display| e.to_string();
    match kind {
        Kind::Assignments => {
            let session = SessionId::parse(id).map_err(|e| text(&e))?;
            loaded.assignments.push((
                session,
                serde_json::from_slice(value).map_err(|e| text(&e))?,
            ));
        }
        Kind::LastAssigned => {
            let agent = AgentId::parse(id).map_err(|e| text(&e))?;
            let ms: u64 = serde_json::from_slice(value).map_err(|e| text(&e))?;
            loaded.last_assigned.push((agent, from_ms(ms)));
        }
        Kind::History => {
            let customer = ClientUserId::parse(id).map_err(|e| text(&e))?;
            loaded.history.push((
                customer,
                serde_json::from_slice(value).map_err(|e| text(&e))?,
            ));
        }
        Kind::Statuses => {
            let agent = AgentId::parse(id).map_err(|e| text(&e))?;
            loaded
                .statuses
                .push((agent, serde_json::from_slice(value).map_err(|e| text(&e))?));
        }
        Kind::Roster => {
            let agent = AgentId::parse(id).map_err(|e| text(&e))?;
            loaded
                .roster
                .push((agent, serde_json::from_slice(value).map_err(|e| text(&e))?));
        }
        Kind::Customers => {
            loaded
                .customers
                .push(serde_json::from_slice(value).map_err(|e| text(&e))?);
        }
    }
    Ok(())
}
