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
//!
//! A full or failing disk: a write the log does not take fails its callers (UNAVAILABLE:
//! nothing is acknowledged that is not on disk), and the journal reports itself unhealthy
//! ([`Journal::healthy`]) until a write succeeds again, which the store's health check
//! probes for. A fold that fails reopens the redb file and tries again with backoff, so
//! the log shrinks again by itself once there is room.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use handoff_core::{
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
    throttle::Throttle,
};
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
/// The layout of the file's tables and the journal's frames, under [`META`].
const FORMAT_KEY: &str = "format";

/// The layout of the embedded file and its journal this build writes and the newest it
/// reads. 1 is the layout as first released: a file without a format is of it; 2 adds the
/// `desk`, `last_finished`, `misses` and `taken` tables (an older build cannot read their journal frames, so
/// it refuses the file); 3 the `waits` table, sessions' `weight` and missed offers kept per
/// session (an older build would give back one seat of a weighted session).
pub const FORMAT: u64 = 3;

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
    /// What roster syncs read from Desk: each member by lower-cased e-mail
    /// ([`crate::engine::desk::DeskMember`]), and Desk's groups under [`DESK_GROUPS`].
    Desk,
    /// When each agent last finished serving a session, Unix milliseconds (wrap-up).
    LastFinished,
    /// Each agent's missed offers: [`crate::engine::Misses`].
    Misses,
    /// The sessions each agent lately took, for fair share: [`crate::engine::Taken`].
    Taken,
    /// Each group's latest waits, by [`crate::engine::waits_key`]: [`crate::engine::Waits`].
    Waits,
}

/// The key of Desk's groups in the `desk` table (never an e-mail).
const DESK_GROUPS: &str = "groups";
/// The key of Desk's business hours in the `desk` table (never an e-mail).
const DESK_HOURS: &str = "hours";

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::Assignments,
        Kind::LastAssigned,
        Kind::History,
        Kind::Statuses,
        Kind::Roster,
        Kind::Customers,
        Kind::Seen,
        Kind::Desk,
        Kind::LastFinished,
        Kind::Misses,
        Kind::Taken,
        Kind::Waits,
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
            Kind::Desk => "desk",
            Kind::LastFinished => "last_finished",
            Kind::Misses => "misses",
            Kind::Taken => "taken",
            Kind::Waits => "waits",
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
            agent,
            status,
            at,
            desk,
            ..
        } => vec![self::status(
            app,
            agent,
            StatusRecord::timed(*status, *at, *desk),
        )],
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
        Change::DeskRoster(delta) => desk(app, delta),
        // Not kept: the next status poll counts the load again.
        Change::DeskLoad(_) => Vec::new(),
        Change::Session(_) | Change::ForgetLinks { .. } => Vec::new(),
    }
}

/// The writes of a Desk roster sync's changes.
pub(super) fn desk(app: SdkAppId, delta: &crate::engine::desk::DeskDelta) -> Vec<Op> {
    let mut ops: Vec<Op> = delta
        .members
        .iter()
        .map(|(key, member)| match member {
            Some(member) => Op::put(Kind::Desk, app, key, member),
            None => Op::delete(Kind::Desk, app, key),
        })
        .collect();
    if let Some(groups) = &delta.groups {
        ops.push(Op::put(Kind::Desk, app, DESK_GROUPS, groups));
    }
    if let Some(hours) = &delta.hours {
        ops.push(Op::put(Kind::Desk, app, DESK_HOURS, hours));
    }
    ops
}

/// The write of an agent's live status.
pub(super) fn status(app: SdkAppId, agent: &AgentId, record: StatusRecord) -> Op {
    Op::put(Kind::Statuses, app, agent.as_str(), &record)
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

/// The write of when an agent last finished serving a session.
pub(super) fn last_finished(app: SdkAppId, agent: &AgentId, at: SystemTime) -> Op {
    Op::put(Kind::LastFinished, app, agent.as_str(), &to_ms(at))
}

/// The write of an agent's missed offers.
pub(super) fn misses(app: SdkAppId, agent: &AgentId, record: &crate::engine::Misses) -> Op {
    Op::put(Kind::Misses, app, agent.as_str(), record)
}

/// The write of the sessions an agent lately took.
pub(super) fn taken(app: SdkAppId, agent: &AgentId, record: &crate::engine::Taken) -> Op {
    Op::put(Kind::Taken, app, agent.as_str(), record)
}

/// The write of a group's latest waits.
pub(super) fn waits(app: SdkAppId, group: &str, record: &crate::engine::Waits) -> Op {
    Op::put(Kind::Waits, app, group, record)
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

/// A write that changes nothing (deletes a report identity of no app): what the store's
/// health check writes to learn whether the journal takes writes again.
pub(super) fn probe() -> Op {
    Op {
        kind: Kind::Seen,
        app: 0,
        key: String::new(),
        value: None,
    }
}

/// Everything the file held for one app when the router started, as records.
#[derive(Debug, Default)]
pub(super) struct LoadedApp {
    pub(super) sessions: Vec<(SessionId, SessionRecord)>,
    pub(super) last_assigned: Vec<(AgentId, u64)>,
    pub(super) last_finished: Vec<(AgentId, u64)>,
    pub(super) misses: Vec<(AgentId, crate::engine::Misses)>,
    pub(super) taken: Vec<(AgentId, crate::engine::Taken)>,
    pub(super) waits: Vec<(String, crate::engine::Waits)>,
    pub(super) history: Vec<(ClientUserId, HistoryRecord)>,
    pub(super) statuses: Vec<(AgentId, StatusRecord)>,
    pub(super) roster: Vec<(AgentId, RosterRecord)>,
    pub(super) customers: Vec<CustomerRecord>,
    pub(super) seen: Vec<(String, u64)>,
    pub(super) desk: crate::engine::desk::DeskRoster,
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
    /// Whether the last write to the log succeeded.
    healthy: Arc<AtomicBool>,
    directory: PathBuf,
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
        let format = create_tables(&db).map_err(|e| unavailable("creating tables", &e))?;
        if format > FORMAT {
            // Before its journal is folded: a newer layout's frames are not read as ours.
            return Err(StoreError::Unavailable(format!(
                "embedded store {}: written by a newer handoff (format {format}); this one reads up to format {FORMAT}: run the newer version, or restore a backup made with this one",
                path.display()
            )));
        }
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

        let (queue, batches) = mpsc::channel();
        let (full, fulls) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let writing = Arc::clone(&healthy);
        let (file, folding) = (path.to_owned(), directory.clone());
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map_err(|e| unavailable("starting its writer", &e))
        };
        let writer = spawn(
            "handoff-journal",
            Box::new(move || write_batches(segment, batches, full, &writing)),
        )?;
        let folder = spawn(
            "handoff-fold",
            Box::new(move || fold_segments(db, &file, &folding, fulls)),
        )?;
        Ok((
            Self {
                queue: Some(queue),
                threads: vec![writer, folder],
                healthy,
                directory,
            },
            loaded,
        ))
    }

    /// Whether the last write to the log succeeded: while not, nothing can be acknowledged.
    pub(super) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// The bytes the log's segments take on disk (what is not folded into the file yet,
    /// and the segment being written).
    pub(super) fn bytes(&self) -> u64 {
        let Ok(entries) = std::fs::read_dir(&self.directory) else {
            return 0;
        };
        entries
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
            .filter_map(|entry| entry.metadata().ok())
            .map(|metadata| metadata.len())
            .sum()
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

/// Creates the tables a file lacks, and records the layout: [`FORMAT`] for a new file or
/// one of an older layout (which this build reads, and from now on writes as its own, so
/// that an older build refuses it rather than misread it); the file's own when newer.
fn create_tables(db: &Database) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    for kind in Kind::ALL {
        txn.open_table(kind.table())?;
    }
    let format = {
        let mut meta = txn.open_table(META)?;
        let recorded = meta.get(FORMAT_KEY)?.map(|value| value.value());
        match recorded {
            Some(format) if format >= FORMAT => format,
            _ => {
                meta.insert(FORMAT_KEY, FORMAT)?;
                FORMAT
            }
        }
    };
    txn.commit()?;
    Ok(format)
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
    healthy: &AtomicBool,
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
        healthy.store(written.is_ok(), Ordering::Release);
        let result = written.as_ref().map(|_| ()).map_err(|err| {
            static FAILED: Throttle = Throttle::new(1);
            if let Some(left_out) = FAILED.admit() {
                tracing::error!(error = %err, left_out, "embedded store journal write failed: its callers get UNAVAILABLE");
            }
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
                    static FAILED: Throttle = Throttle::new(1);
                    if let Some(left_out) = FAILED.admit() {
                        tracing::error!(error = %err, left_out, "cannot start a new journal segment");
                    }
                }
            }
        }
    }
}

/// The longest the folder waits before trying a failed fold again.
const FOLD_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Folds each segment handed over into the redb file at `path`, in order. A fold that
/// fails (a full or failing disk) leaves its segments in the log; the folder then reopens
/// the file (redb refuses every write after a failed one) and tries again after a backoff
/// that doubles up to [`FOLD_BACKOFF_MAX`], new segments or not.
fn fold_segments(db: Database, path: &Path, directory: &Path, fulls: mpsc::Receiver<u64>) {
    let mut db = Some(db);
    let mut waiting = Vec::new();
    let mut backoff = Duration::ZERO;
    loop {
        if let Err(err) = log::prepare_spare(directory) {
            static FAILED: Throttle = Throttle::new(1);
            if let Some(left_out) = FAILED.admit() {
                tracing::warn!(error = %err, left_out, "cannot prepare the next journal segment; it will start empty");
            }
        }
        let next = if waiting.is_empty() {
            fulls
                .recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        } else {
            fulls.recv_timeout(backoff)
        };
        match next {
            Ok(number) => waiting.push(number),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if waiting.is_empty() => break,
            // Stopping: one last try, and a restart folds what is left.
            Err(mpsc::RecvTimeoutError::Disconnected) => backoff = Duration::MAX,
        }
        waiting.extend(fulls.try_iter());
        if db.is_none() {
            db = Database::create(path)
                .inspect_err(|err| {
                    tracing::warn!(error = %err, "cannot reopen the embedded store's file to fold the journal");
                })
                .ok();
        }
        let folded = match &db {
            Some(db) => log::fold(db, directory, &waiting),
            None => Err("the file is not open".into()),
        };
        match folded {
            Ok(()) => {
                if !backoff.is_zero() {
                    tracing::info!("the journal folds into the embedded store again");
                }
                waiting.clear();
                backoff = Duration::ZERO;
            }
            Err(_) if backoff == Duration::MAX => break,
            Err(err) => {
                static FAILED: Throttle = Throttle::new(1);
                if let Some(left_out) = FAILED.admit() {
                    tracing::error!(error = %err, left_out, "folding the journal into the embedded store failed; it stays in the log, and the fold is tried again");
                }
                db = None;
                backoff = (backoff * 2).clamp(Duration::from_millis(250), FOLD_BACKOFF_MAX);
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
        Kind::LastFinished => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.last_finished.push((agent, record::decode(value)?));
        }
        Kind::Misses => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.misses.push((agent, record::decode(value)?));
        }
        Kind::Taken => {
            let agent = AgentId::parse(id).map_err(text)?;
            loaded.taken.push((agent, record::decode(value)?));
        }
        Kind::Waits => {
            loaded.waits.push((id.to_owned(), record::decode(value)?));
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
        Kind::Desk if id == DESK_GROUPS => {
            loaded.desk.groups = Some(record::decode(value)?);
        }
        Kind::Desk if id == DESK_HOURS => {
            loaded.desk.hours = record::decode(value)?;
        }
        Kind::Desk => {
            loaded
                .desk
                .members
                .insert(id.to_owned(), record::decode(value)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Kind;

    /// Frames name a table by its number, and the fold finds it at that place in `ALL`.
    #[test]
    fn each_table_is_at_its_own_number() {
        for (place, kind) in Kind::ALL.iter().enumerate() {
            assert_eq!(*kind as usize, place, "{kind:?}");
        }
    }
}
