//! The decision log: every AssignHuman decision (its inputs, the agents it considered as it
//! saw them, its answer and explanation) and every state change (session events, statuses,
//! roster and customer changes), in the order the router made them, as JSON lines.
//!
//! Written off the hot path: a call hands its entry to a bounded queue and goes on; one
//! thread serializes and appends, flushing whenever the queue runs dry, and rotates the
//! file by size (`FILE` -> `FILE.1` -> ... -> `FILE.<keep>`). When the queue is full the
//! entry is counted as dropped, never waited for.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::mpsc::{self, Receiver, SyncSender, TrySendError},
    thread::JoinHandle,
    time::SystemTime,
};

use handoff_core::{
    config::{AgentConfig, AgentStatus, DecisionLogConfig},
    id::{AgentId, ClientUserId, SessionId},
};
use prometheus_client::metrics::counter::Counter;
use serde::Serialize;

use crate::{
    engine::{Decision, Handoff},
    store::{
        Applied, Assignment, Change,
        record::{CustomerRecord, to_ms},
    },
};

/// How many entries may wait for the writer.
const QUEUE: usize = 65_536;

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
        considered: Vec<Considered>,
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
            considered,
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
    dropped: Counter,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionLog")
    }
}

impl DecisionLog {
    /// Opens the log `config` names (none without a path), counting what it writes and
    /// drops in `written` and `dropped`.
    pub fn open(
        config: &DecisionLogConfig,
        written: Counter,
        dropped: Counter,
    ) -> io::Result<Option<Self>> {
        let Some(path) = &config.path else {
            return Ok(None);
        };
        let file = Rotating::open(path.clone(), config.max_bytes, config.keep)?;
        let (queue, entries) = mpsc::sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("handoff-decision-log".into())
            .spawn(move || write(file, entries, written))?;
        Ok(Some(Self {
            queue: Some(queue),
            writer: Some(writer),
            dropped,
        }))
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

fn write(mut file: Rotating, entries: Receiver<Entry>, written: Counter) {
    let mut line = Vec::new();
    while let Ok(entry) = entries.recv() {
        let mut next = Some(entry);
        while let Some(entry) = next {
            line.clear();
            if serde_json::to_writer(&mut line, &entry).is_ok() {
                line.push(b'\n');
                match file.append(&line) {
                    Ok(()) => {
                        written.inc();
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "decision log write failed");
                    }
                }
            }
            next = entries.try_recv().ok();
        }
        if let Err(err) = file.flush() {
            tracing::error!(error = %err, "decision log flush failed");
        }
    }
    let _ = file.flush();
}

/// A file rotated by size.
struct Rotating {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: BufWriter<File>,
    len: u64,
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
            file: BufWriter::new(file),
            len,
        })
    }

    fn append(&mut self, line: &[u8]) -> io::Result<()> {
        if self.len > 0 && self.len + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.len += line.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    /// `FILE.<keep-1>` -> `FILE.<keep>`, ..., `FILE` -> `FILE.1`, and a new `FILE`.
    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::new(file);
        self.len = 0;
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

    #[test]
    fn entries_are_json_lines_in_order_rotated_by_size_keeping_keep_files()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = scratch("rotate");
        let path = dir.join("decisions.jsonl");
        let config = DecisionLogConfig {
            path: Some(path.clone()),
            max_bytes: 1_000,
            keep: 2,
        };
        let (written, dropped) = (Counter::default(), Counter::default());
        let log = DecisionLog::open(&config, written.clone(), dropped.clone())?.ok_or("no log")?;
        for n in 0..60 {
            log.record(removal(n)?);
        }
        drop(log);
        let files = [path.clone(), rotated(&path, 1), rotated(&path, 2)];
        let kept: Vec<Vec<serde_json::Value>> = files.iter().map(|f| lines(f)).collect();
        let third = rotated(&path, 3).exists();
        let sizes: Vec<u64> = files
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or_default())
            .collect();
        std::fs::remove_dir_all(&dir)?;

        assert_eq!(written.get(), 60);
        assert_eq!(dropped.get(), 0);
        assert!(!third, "only `keep` rotated files are kept");
        assert!(sizes.iter().all(|size| *size <= 1_000), "{sizes:?}");
        // Oldest first: FILE.2, FILE.1, FILE, each in order, ending with the last entry.
        let at: Vec<u64> = kept
            .iter()
            .rev()
            .flatten()
            .filter_map(|line| line["at_ms"].as_u64())
            .collect();
        assert!(at.windows(2).all(|w| w[1] == w[0] + 1), "{at:?}");
        assert_eq!(at.last(), Some(&59));
        assert_eq!(kept[0][0]["kind"], "agent_removed");
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
        };
        for n in 0..5 {
            log.record(removal(n)?);
        }
        assert_eq!(dropped.get(), 4);
        Ok(())
    }
}
