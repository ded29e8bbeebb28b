//! The writer: a bounded queue in front of one thread that serializes [`Entry`]s, appends
//! them a batch of whole lines at a time and rotates the file by size, beginning each file
//! with the state the router reads for it.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc,
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use handoff_core::{config::DecisionLogConfig, throttle::Throttle};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::Notify;

use super::{Entry, StateReason};
use crate::metrics::ReasonLabels;

/// How many entries may wait for the writer.
const QUEUE: usize = 65_536;

/// How long a new file waits for its state before it is written without one.
const STATE_WAIT: Duration = Duration::from_secs(5);

/// How many bytes of lines are gathered before they are written.
const BATCH_BYTES: usize = 64 << 10;

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
    /// `Start`: the state goes into the file where it ends; `Rotation`: it begins the next.
    reason: StateReason,
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
                reason: StateReason::Start,
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
            if asked.reason == StateReason::Rotation {
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
                        reason: StateReason::Rotation,
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
    use std::time::SystemTime;

    use handoff_core::id::{AgentId, SdkAppId};

    use super::*;
    use crate::store::record::{from_ms, to_ms};

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
            app: SdkAppId::new(1_400_000_001)?,
            agent: AgentId::parse(format!("agent{n:04}@example.com"))?,
            by: None,
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
