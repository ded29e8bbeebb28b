//! The decision log: every AssignHuman decision (its inputs, the agents it considered as it
//! saw them, its answer and explanation) and every state change (session events, statuses,
//! roster and customer changes), in the order the router made them, as JSON lines.
//!
//! Written off the hot path: a call hands its entry to a bounded queue and goes on; one
//! thread serializes and appends, flushing whenever the queue runs dry, and rotates the
//! file by size (`FILE` -> `FILE.1` -> ... -> `FILE.<keep>`). When the queue is full the
//! entry is counted as dropped, never waited for.
//!
//! A full or failing disk loses lines, never the file's shape: lines are written whole,
//! in batches; a batch the disk does not take is truncated off again (so no torn line
//! stays), its lines are counted as dropped (`io`), the failure is logged at most once a
//! second, and the next batch tries again, so writing resumes by itself once there is
//! room.
//!
//! Every file begins with a `state` entry (and the router's start writes one where it
//! begins in a file): the seats held, live statuses, run-time roster changes and idle
//! clocks as the store had them, so a file replays on its own even after older ones are
//! gone or the router restarted with state it kept. When a file is full the writer raises
//! [`DecisionLog::state_wanted`]; a task of the router's reads the state through the store
//! like any other read and records it, and the writer rotates on it.
//! Customers and their previous agents are not in it (there may be millions): each
//! decision carries what it saw of its own customer.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use handoff_core::{
    config::{AgentConfig, AgentStatus, DecisionLogConfig},
    id::{AgentId, ClientUserId, SessionId},
    throttle::Throttle,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use crate::store::snapshot::AppSnapshot;
use crate::{
    engine::{Decision, Handoff, StateView},
    metrics::ReasonLabels,
    store::{
        Applied, Assignment, Change,
        record::{CustomerRecord, to_ms},
    },
};

/// How many entries may wait for the writer.
const QUEUE: usize = 65_536;

/// How long a new file waits for its state before it is written without one.
const STATE_WAIT: Duration = Duration::from_secs(5);

/// How many bytes of lines are gathered before they are written.
const BATCH_BYTES: usize = 64 << 10;

/// A customer's previous agent as a decision saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    /// The agent.
    pub agent: AgentId,
    /// When the link was made, Unix milliseconds.
    pub at_ms: u64,
}

/// What a decision saw of its customer, besides the handoff itself: the pushed profile
/// and the previous agent.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The agents it considered.
    pub considered: Vec<Considered>,
    /// The customer's pushed profile.
    pub profile: Option<Box<CustomerRecord>>,
    /// The customer's previous agent.
    pub previous: Option<Previous>,
}

impl Seen {
    /// What `decision`, made over `state` for `handoff`, saw.
    pub fn of(decision: &Decision, handoff: &Handoff, state: &dyn StateView) -> Self {
        Self {
            considered: Considered::of(decision),
            profile: state
                .customer(&handoff.client_user)
                .map(|customer| Box::new(CustomerRecord::from(customer))),
            previous: state
                .last_agent(&handoff.client_user)
                .map(|(agent, at)| Previous {
                    agent: agent.clone(),
                    at_ms: to_ms(at),
                }),
        }
    }
}

/// An agent a decision considered, as it saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Considered {
    /// The agent.
    pub agent: AgentId,
    /// Sessions holding its seats.
    pub active: u32,
    /// Its capacity.
    pub capacity: u32,
    /// When it was last assigned a session, Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_assigned_ms: Option<u64>,
    /// The strategy's score.
    pub score: f64,
}

impl Considered {
    /// The candidates `decision` ranked, as it saw them.
    pub fn of(decision: &Decision) -> Vec<Considered> {
        decision
            .ranked
            .iter()
            .map(|candidate| Considered {
                agent: candidate.agent.clone(),
                active: candidate.active,
                capacity: candidate.capacity,
                last_assigned_ms: candidate.last_assigned.map(to_ms),
                score: candidate.score,
            })
            .collect()
    }
}

/// One line of the log.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// An AssignHuman decision.
    Decision {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The session.
        session: SessionId,
        /// The customer.
        customer: ClientUserId,
        /// When the user asked, by the caller's clock.
        event_time_ms: u64,
        /// The caller's platform.
        #[serde(skip_serializing_if = "String::is_empty")]
        platform: String,
        /// The channel.
        #[serde(skip_serializing_if = "String::is_empty")]
        channel: String,
        /// Free attributes.
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        attributes: BTreeMap<String, String>,
        /// The rule that decided.
        rule: String,
        /// Its strategy.
        #[serde(skip_serializing_if = "Option::is_none")]
        strategy: Option<&'static str>,
        /// The group answered.
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<u64>,
        /// The agents answered, best first.
        agents: Vec<AgentId>,
        /// The agent whose seat was reserved.
        #[serde(skip_serializing_if = "Option::is_none")]
        reserved: Option<AgentId>,
        /// Whether no agent could be ranked.
        fallback: bool,
        /// Whether this is a retry's answer, replayed.
        replayed: bool,
        /// The explanation.
        reason: String,
        /// The agents the decision considered, as it saw them (none when replayed).
        considered: Vec<Considered>,
        /// The customer's pushed profile, as the decision saw it.
        #[serde(skip_serializing_if = "Option::is_none")]
        profile: Option<Box<CustomerRecord>>,
        /// The customer's previous agent, as the decision saw it.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<Previous>,
    },
    /// The live state a file starts with.
    State {
        /// When it was read, by the router's clock.
        at_ms: u64,
        /// Why a file starts here: `start` (the router started) or `rotation`.
        reason: &'static str,
        /// Each app's state.
        apps: Vec<AppSnapshot>,
    },
    /// A session event.
    SessionEvent {
        /// When it was recorded, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The session.
        session: SessionId,
        /// What happened.
        event: &'static str,
        /// The agent serving the session after it.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<AgentId>,
        /// The agent it came from.
        #[serde(skip_serializing_if = "Option::is_none")]
        from_agent: Option<AgentId>,
        /// The customer.
        #[serde(skip_serializing_if = "Option::is_none")]
        customer: Option<ClientUserId>,
        /// When it happened, by the reporter's clock.
        event_time_ms: u64,
        /// The report's identity.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// What the router made of it.
        outcome: &'static str,
    },
    /// An agent's status.
    Status {
        /// When it was recorded, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The agent.
        agent: AgentId,
        /// The status.
        status: AgentStatus,
        /// When it was set, by the reporter's clock.
        event_time_ms: u64,
        /// The report's identity.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// What the router made of it.
        outcome: &'static str,
    },
    /// An agent added or replaced at run time.
    AgentPut {
        /// When, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The definition, in the config file's shape.
        agent: AgentConfig,
    },
    /// An agent removed at run time.
    AgentRemoved {
        /// When, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The agent.
        agent: AgentId,
    },
    /// Customers' previous agents linked before a time, forgotten (past `sticky_ttl`).
    LinksForgotten {
        /// When, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// Links recorded before this were forgotten.
        before_ms: u64,
    },
    /// What is known of a customer, pushed at run time.
    Customer {
        /// When, by the router's clock.
        at_ms: u64,
        /// The app.
        app: u64,
        /// The profile, as stored.
        customer: CustomerRecord,
    },
}

impl Entry {
    /// A decision's entry.
    pub fn decision(
        handoff: &Handoff,
        now: SystemTime,
        assignment: &Assignment,
        seen: Seen,
    ) -> Self {
        let (answer, replayed) = match assignment {
            Assignment::Fresh(answer) => (answer, false),
            Assignment::Replayed(answer) => (answer, true),
        };
        Entry::Decision {
            at_ms: to_ms(now),
            app: handoff.app.get(),
            session: handoff.session.clone(),
            customer: handoff.client_user.clone(),
            event_time_ms: to_ms(handoff.event_time),
            platform: handoff.platform.clone(),
            channel: handoff.channel.clone(),
            attributes: handoff.attributes.clone(),
            rule: answer.rule.clone(),
            strategy: answer.strategy.map(|s| s.as_str()),
            group: answer.group.map(|g| g.get()),
            agents: answer.agents.clone(),
            reserved: answer.reserved.clone(),
            fallback: answer.fallback,
            replayed,
            reason: answer.reason.clone(),
            considered: seen.considered,
            profile: seen.profile,
            previous: seen.previous,
        }
    }

    /// A `state` entry for a new file, read at `now` (the writer says why it starts).
    pub fn state(now: SystemTime, apps: Vec<AppSnapshot>) -> Self {
        Entry::State {
            at_ms: to_ms(now),
            reason: "",
            apps,
        }
    }

    /// A state change's entry.
    pub fn change(app: u64, now: SystemTime, change: &Change, applied: Applied) -> Self {
        let at_ms = to_ms(now);
        match change {
            Change::SetStatus {
                agent,
                status,
                at,
                id,
            } => Entry::Status {
                at_ms,
                app,
                agent: agent.clone(),
                status: *status,
                event_time_ms: to_ms(*at),
                id: id.clone(),
                outcome: applied.as_str(),
            },
            Change::PutAgent(agent) => Entry::AgentPut {
                at_ms,
                app,
                agent: agent.spec.clone(),
            },
            Change::RemoveAgent(agent) => Entry::AgentRemoved {
                at_ms,
                app,
                agent: agent.clone(),
            },
            Change::PutCustomer(customer) => Entry::Customer {
                at_ms,
                app,
                customer: CustomerRecord::from(customer),
            },
            Change::ForgetLinks { before } => Entry::LinksForgotten {
                at_ms,
                app,
                before_ms: to_ms(*before),
            },
            Change::Session(event) => Entry::SessionEvent {
                at_ms,
                app,
                session: event.session.clone(),
                event: event.kind.as_str(),
                agent: event.agent.clone(),
                from_agent: event.from_agent.clone(),
                customer: event.customer.clone(),
                event_time_ms: to_ms(event.at),
                id: event.id.clone(),
                outcome: applied.as_str(),
            },
        }
    }
}

/// The log: a bounded queue in front of a writer thread.
pub struct DecisionLog {
    queue: Option<SyncSender<Entry>>,
    writer: Option<JoinHandle<()>>,
    /// Entries dropped because the queue was full.
    dropped: Counter,
    /// Notified by the writer when a full file waits for its state.
    wanted: Arc<Notify>,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionLog")
    }
}

impl DecisionLog {
    /// Opens the log `config` names (none without a path), counting what it writes in
    /// `written` and what it drops in `dropped`, by reason (`queue_full`: the writer fell
    /// behind; `io`: the disk did not take it).
    pub fn open(
        config: &DecisionLogConfig,
        written: Counter,
        dropped: Family<ReasonLabels, Counter>,
    ) -> io::Result<Option<Self>> {
        let Some(path) = &config.path else {
            return Ok(None);
        };
        let file = Rotating::open(path.clone(), config.max_bytes, config.keep)?;
        let (queue, entries) = mpsc::sync_channel(QUEUE);
        let wanted = Arc::new(Notify::new());
        let lost = dropped
            .get_or_create(&ReasonLabels { reason: "io" })
            .clone();
        let dropped = dropped
            .get_or_create(&ReasonLabels {
                reason: "queue_full",
            })
            .clone();
        let writer = Writer::new(file, written, lost, Arc::clone(&wanted));
        let writer = std::thread::Builder::new()
            .name("handoff-decision-log".into())
            .spawn(move || writer.run(entries))?;
        Ok(Some(Self {
            queue: Some(queue),
            writer: Some(writer),
            dropped,
            wanted,
        }))
    }

    /// What the writer notifies when a full file waits for its state: whoever waits on it
    /// reads the state and records [`Entry::state`]. The router's start records one
    /// without being asked.
    pub fn state_wanted(&self) -> Arc<Notify> {
        Arc::clone(&self.wanted)
    }

    /// Hands `entry` to the writer, or counts it as dropped when the queue is full.
    pub fn record(&self, entry: Entry) {
        if let Some(queue) = &self.queue
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                queue.try_send(entry)
        {
            self.dropped.inc();
        }
    }
}

impl Drop for DecisionLog {
    fn drop(&mut self) {
        // Closing the queue lets the writer write what is queued, flush and stop.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// A state the writer has asked for and not yet written.
struct Asked {
    /// `start`: the state goes into the file as it is; `rotation`: it begins the next one.
    reason: &'static str,
    since: Instant,
}

/// The writer thread's side: serializes entries, and begins each file with its state.
///
/// A full file is not rotated at once: the writer asks for the state and goes on writing
/// to it, and rotates when the state comes, making it the new file's first line. Whatever
/// was recorded before the state was read is in the old file, so the state already holds
/// its effects and nothing is counted twice. If no state comes within [`STATE_WAIT`] (the
/// store is down), the file rotates without one.
struct Writer {
    file: Rotating,
    written: Counter,
    /// Lines the disk did not take.
    lost: Counter,
    wanted: Arc<Notify>,
    line: Vec<u8>,
    asked: Option<Asked>,
    wait: Duration,
}

impl Writer {
    fn new(file: Rotating, written: Counter, lost: Counter, wanted: Arc<Notify>) -> Self {
        Self {
            file,
            written,
            lost,
            wanted,
            line: Vec::new(),
            asked: Some(Asked {
                reason: "start",
                since: Instant::now(),
            }),
            wait: STATE_WAIT,
        }
    }

    fn run(mut self, entries: Receiver<Entry>) {
        while let Ok(entry) = entries.recv() {
            let mut next = Some(entry);
            while let Some(entry) = next {
                self.take(entry);
                next = entries.try_recv().ok();
            }
            self.flush();
        }
        self.flush();
    }

    /// Writes the lines gathered so far, counting them as written or lost.
    fn flush(&mut self) {
        match self.file.flush() {
            Ok(lines) => {
                self.written.inc_by(lines);
            }
            Err((err, lines)) => {
                self.lost.inc_by(lines);
                static FAILED: Throttle = Throttle::new(1);
                if let Some(left_out) = FAILED.admit() {
                    tracing::error!(path = %self.file.path.display(), error = %err, lines, left_out, "decision log write failed: its lines are dropped (counted), and writing resumes once the disk takes them");
                }
            }
        }
    }

    fn take(&mut self, mut entry: Entry) {
        if let Entry::State { reason, .. } = &mut entry {
            // A state nobody asked for (a retry that came late) is not written.
            let Some(asked) = self.asked.take() else {
                return;
            };
            *reason = asked.reason;
            if asked.reason != "start" {
                self.rotate();
            }
            if self.serialize(&entry) {
                self.write(false);
            }
            return;
        }
        if !self.serialize(&entry) {
            return;
        }
        if self.file.full_for(self.line.len()) {
            match &self.asked {
                None => {
                    self.asked = Some(Asked {
                        reason: "rotation",
                        since: Instant::now(),
                    });
                    self.wanted.notify_one();
                }
                Some(asked) if asked.since.elapsed() >= self.wait => {
                    tracing::warn!(
                        path = %self.file.path.display(),
                        "the decision log's state did not come in time: the next file starts without it, and replaying it alone assumes no seats held"
                    );
                    self.asked = None;
                    self.rotate();
                }
                Some(_) => {}
            }
        }
        self.write(true);
    }

    fn rotate(&mut self) {
        self.flush();
        if let Err(err) = self.file.rotate() {
            static FAILED: Throttle = Throttle::new(1);
            if let Some(left_out) = FAILED.admit() {
                tracing::error!(path = %self.file.path.display(), error = %err, left_out, "decision log rotation failed: writing on to the full file");
            }
        }
    }

    fn serialize(&mut self, entry: &Entry) -> bool {
        self.line.clear();
        if serde_json::to_writer(&mut self.line, entry).is_err() {
            return false;
        }
        self.line.push(b'\n');
        true
    }

    /// Adds the serialized line (an entry's, or a file's state when not `entry`) to the
    /// batch, writing the batch once it is large.
    fn write(&mut self, entry: bool) {
        self.file.append(&self.line, entry);
        if self.file.pending.len() >= BATCH_BYTES {
            self.flush();
        }
    }
}

/// A file rotated by size, written a batch of whole lines at a time.
struct Rotating {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    /// The file's length: whole lines only.
    len: u64,
    /// Whether a failed write may have left part of a batch after `len`.
    torn: bool,
    /// Lines not written yet, and how many.
    pending: Vec<u8>,
    pending_lines: u64,
    /// Whether the file holds an entry besides its state (a file is full only then, so a
    /// state larger than `max_bytes` cannot make every entry a file of its own).
    has_entries: bool,
}

impl Rotating {
    fn open(path: PathBuf, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            path,
            max_bytes,
            keep,
            file,
            len,
            // A line a crash cut short, if any, is cut off before the next batch.
            torn: len > 0,
            pending: Vec::new(),
            pending_lines: 0,
            has_entries: len > 0,
        })
    }

    /// Whether `line` no longer fits in the file (its state counted).
    fn full_for(&self, line: usize) -> bool {
        self.has_entries && self.len + (self.pending.len() + line) as u64 > self.max_bytes
    }

    /// Adds a whole line to the batch; `entry` is false for the file's state.
    fn append(&mut self, line: &[u8], entry: bool) {
        self.pending.extend_from_slice(line);
        self.pending_lines += 1;
        self.has_entries |= entry;
    }

    /// Writes the batch: how many lines were written, or the error and how many were lost
    /// (cut off the file again, so that it ends with a whole line).
    fn flush(&mut self) -> Result<u64, (io::Error, u64)> {
        let lines = std::mem::take(&mut self.pending_lines);
        if lines == 0 {
            return Ok(0);
        }
        let written = self.write_pending();
        self.pending.clear();
        match written {
            Ok(()) => Ok(lines),
            Err(err) => Err((err, lines)),
        }
    }

    fn write_pending(&mut self) -> io::Result<()> {
        if self.torn {
            self.cut_to_whole_lines()?;
        }
        if let Err(err) = self.file.write_all(&self.pending) {
            self.torn = true;
            // Truncating takes no room: the file ends with a whole line again at once.
            if self.file.set_len(self.len).is_ok() {
                self.torn = false;
            }
            return Err(err);
        }
        self.len += self.pending.len() as u64;
        Ok(())
    }

    /// Cuts off whatever follows the file's last newline (a write cut short).
    fn cut_to_whole_lines(&mut self) -> io::Result<()> {
        let actual = self.file.metadata()?.len();
        let mut whole = actual.min(self.len);
        if whole == actual && whole > 0 {
            // Opened on a file whose end is not known to be a whole line: find its last
            // newline.
            use std::io::{Read, Seek, SeekFrom};
            let mut reader = File::open(&self.path)?;
            let from = actual.saturating_sub(64 << 10);
            reader.seek(SeekFrom::Start(from))?;
            let mut tail = Vec::new();
            reader.read_to_end(&mut tail)?;
            whole = tail
                .iter()
                .rposition(|&byte| byte == b'\n')
                .map_or(from, |at| from + at as u64 + 1);
        }
        if whole != actual {
            self.file.set_len(whole)?;
        }
        self.len = whole;
        self.torn = false;
        Ok(())
    }

    /// `FILE.<keep-1>` -> `FILE.<keep>`, ..., `FILE` -> `FILE.1`, and a new `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    std::fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        }
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.len = 0;
        self.torn = false;
        self.has_entries = false;
        Ok(())
    }
}

/// The `n`th rotated file of `path`.
pub fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::from_ms;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "handoff-dlog-{name}-{}-{}",
            std::process::id(),
            to_ms(SystemTime::now())
        ))
    }

    fn removal(n: u64) -> Result<Entry, Box<dyn std::error::Error>> {
        Ok(Entry::AgentRemoved {
            at_ms: n,
            app: 1_400_000_001,
            agent: AgentId::parse(format!("agent{n:04}@example.com"))?,
        })
    }

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// A writer over `path`, driven by hand.
    fn writer(path: &Path, max_bytes: u64, keep: usize) -> io::Result<(Writer, Counter)> {
        let file = Rotating::open(path.to_path_buf(), max_bytes, keep)?;
        let written = Counter::default();
        let lost = Counter::default();
        let writer = Writer::new(file, written.clone(), lost, Arc::new(Notify::new()));
        Ok((writer, written))
    }

    /// Gives `writer` the state it waits for, as the router would.
    fn answer(writer: &mut Writer, at_ms: u64) {
        if writer.asked.is_some() {
            writer.take(Entry::state(from_ms(at_ms), Vec::new()));
        }
    }

    #[test]
    fn entries_are_json_lines_in_order_rotated_by_size_each_file_starting_with_the_state()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = scratch("rotate");
        let path = dir.join("decisions.jsonl");
        let (mut writer, written) = writer(&path, 1_000, 2)?;
        answer(&mut writer, 0);
        for n in 0..60 {
            writer.take(removal(n)?);
            answer(&mut writer, n);
        }
        writer.flush();
        let files = [path.clone(), rotated(&path, 1), rotated(&path, 2)];
        let kept: Vec<Vec<serde_json::Value>> = files.iter().map(|f| lines(f)).collect();
        let third = rotated(&path, 3).exists();
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or_default())
            .collect();
        std::fs::remove_dir_all(&dir)?;

        assert!(!third, "only `keep` rotated files are kept");
        // A file may pass its size by the entry that filled it, and its state.
        assert!(sizes.iter().all(|size| *size <= 1_200), "{sizes:?}");
        for file in &kept {
            assert_eq!(file[0]["kind"], "state", "{file:?}");
            assert_eq!(file[0]["reason"], "rotation");
        }
        // Oldest first: FILE.2, FILE.1, FILE, each in order, ending with the last entry.
        let at: Vec<u64> = kept
            .iter()
            .rev()
            .flatten()
            .filter(|line| line["kind"] == "agent_removed")
            .filter_map(|line| line["at_ms"].as_u64())
            .collect();
        assert!(at.windows(2).all(|w| w[1] == w[0] + 1), "{at:?}");
        assert_eq!(at.last(), Some(&59));
        // Each state follows the entry that filled the file before it: it holds its effects.
        let first = at.first().copied().ok_or("no entries")?;
        assert_eq!(kept[2][0]["at_ms"], first - 1);
        assert!(
            written.get() > 60 + 3,
            "the entries and their states are counted"
        );
        Ok(())
    }

    #[test]
    fn the_start_state_goes_where_the_file_ends_and_a_state_nobody_asked_for_is_not_written()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = scratch("start");
        let path = dir.join("decisions.jsonl");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(&path, "{\"kind\":\"agent_removed\",\"at_ms\":1}\n")?;
        let (mut writer, _) = writer(&path, 1_000_000, 2)?;
        answer(&mut writer, 2);
        writer.take(removal(3)?);
        writer.take(Entry::state(from_ms(4), Vec::new()));
        writer.flush();
        let file = lines(&path);
        let rotated = rotated(&path, 1).exists();
        std::fs::remove_dir_all(&dir)?;

        assert!(!rotated);
        let kinds: Vec<(&str, u64)> = file
            .iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap_or(""),
                    l["at_ms"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [("agent_removed", 1), ("state", 2), ("agent_removed", 3)]
        );
        assert_eq!(file[1]["reason"], "start");
        Ok(())
    }

    #[test]
    fn a_full_file_rotates_without_its_state_when_none_comes()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = scratch("nostate");
        let path = dir.join("decisions.jsonl");
        let (mut writer, _) = writer(&path, 100, 2)?;
        writer.wait = Duration::ZERO;
        answer(&mut writer, 0);
        // Fills the file and asks; nobody answers; the next entry rotates without a state.
        for n in 1..=3 {
            writer.take(removal(n)?);
        }
        writer.take(Entry::state(from_ms(9), Vec::new()));
        writer.flush();
        let (old, new) = (lines(&rotated(&path, 1)), lines(&path));
        std::fs::remove_dir_all(&dir)?;

        let at = |file: &[serde_json::Value]| -> Vec<u64> {
            file.iter().filter_map(|l| l["at_ms"].as_u64()).collect()
        };
        assert_eq!(
            at(&old),
            [0, 1, 2],
            "the start state and the entries that filled it"
        );
        assert_eq!(at(&new), [3], "no state, and a late one is not written");
        Ok(())
    }

    #[test]
    fn a_full_disk_loses_whole_lines_counted_and_writing_resumes_when_room_returns()
    -> Result<(), Box<dyn std::error::Error>> {
        let Some(disk) = crate::testing::SmallDisk::mount("dlog", 256 << 10)? else {
            return Ok(());
        };
        let path = disk.path().join("decisions.jsonl");
        let file = Rotating::open(path.clone(), 1 << 30, 1)?;
        let (written, lost) = (Counter::default(), Counter::default());
        let mut writer = Writer::new(file, written.clone(), lost.clone(), Arc::default());
        answer(&mut writer, 0);
        let write = |writer: &mut Writer, from: u64| -> Result<(), Box<dyn std::error::Error>> {
            for n in from..from + 100 {
                writer.take(removal(n)?);
            }
            writer.flush();
            Ok(())
        };
        write(&mut writer, 1)?;
        // Room for part of the next batch only: the disk takes some of it, then refuses.
        disk.leave(4096)?;
        write(&mut writer, 101)?;
        let full = (written.get(), lost.get());
        let during = std::fs::read(&path)?;
        disk.free()?;
        write(&mut writer, 201)?;
        let after = std::fs::read_to_string(&path)?;

        // The state and the first hundred, then a hundred lost, then a hundred again.
        assert_eq!(full, (101, 100));
        assert_eq!((written.get(), lost.get()), (201, 100));
        assert!(during.ends_with(b"\n"), "a torn line was left");
        let at: Vec<u64> = after
            .lines()
            .map(serde_json::from_str::<serde_json::Value>)
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .filter_map(|line| line["at_ms"].as_u64())
            .collect();
        let expected: Vec<u64> = (0..=100).chain(201..301).collect();
        assert_eq!(at, expected);
        Ok(())
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() -> Result<(), Box<dyn std::error::Error>>
    {
        // A writer that never reads: the queue holds one entry, the rest are dropped.
        let (queue, _entries) = mpsc::sync_channel(1);
        let dropped = Counter::default();
        let log = DecisionLog {
            queue: Some(queue),
            writer: None,
            dropped: dropped.clone(),
            wanted: Arc::default(),
        };
        for n in 0..5 {
            log.record(removal(n)?);
        }
        assert_eq!(dropped.get(), 4);
        Ok(())
    }
}
