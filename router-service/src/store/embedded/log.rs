//! The journal's log: what the writer appends and syncs before a change is acknowledged.
//!
//! Appending a few hundred bytes per change and syncing them is far cheaper than a B-tree
//! commit per group of changes (which writes every page it touches, scattered over the
//! file); the redb file is brought up to date from the log later, in bulk, by
//! [`fold`]. The log is a directory of numbered segments next to the redb file
//! (`handoff.redb.journal/00000000000000000001.log`, ...), each a run of frames:
//!
//! ```text
//! frame = payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload
//! payload = op*
//! op = kind (u8) | app (u64 LE) | key length (u32 LE) | key | 0 (delete)
//!    | kind (u8) | app (u64 LE) | key length (u32 LE) | key | 1 | value length (u32 LE) | value
//! ```
//!
//! A frame is one commit: it is acknowledged only after it is synced, so a frame cut short
//! by a crash (its length or checksum does not hold) was never acknowledged, and reading a
//! segment stops there. After a failed write the writer moves to a new segment, so nothing
//! acknowledged ever follows a damaged frame in the same segment.
//!
//! A segment starts as a file of zeros ([`prepare_spare`], done by the folder ahead of
//! time): a sync then writes only the data, never the file's size, which roughly halves
//! its cost. Reading stops at the first zero length, where nothing was written yet.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use redb::Database;

use super::{Kind, Op};

/// The size at which the writer starts a new segment and hands the full one to be folded.
pub(super) const SEGMENT_BYTES: u64 = 8 << 20;

/// The log's directory for the redb file at `path`.
pub(super) fn directory(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".journal");
    path.with_file_name(name)
}

fn segment_path(directory: &Path, number: u64) -> PathBuf {
    directory.join(format!("{number:020}.log"))
}

/// The zero-filled file the next segment starts as, and where it is written first.
const SPARE: &str = "spare";
const SPARE_WRITING: &str = "spare.tmp";

/// Makes sure a zero-filled spare segment is ready for the writer's next segment.
pub(super) fn prepare_spare(directory: &Path) -> io::Result<()> {
    let spare = directory.join(SPARE);
    if spare.exists() {
        return Ok(());
    }
    let writing = directory.join(SPARE_WRITING);
    let mut file = File::create(&writing)?;
    let zeros = vec![0; 1 << 20];
    for _ in 0..SEGMENT_BYTES / zeros.len() as u64 {
        file.write_all(&zeros)?;
    }
    file.sync_all()?;
    std::fs::rename(&writing, &spare)
}

/// The segments in `directory`, oldest first.
pub(super) fn segments(directory: &Path) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(directory)? {
        let name = entry?.file_name();
        let Some(number) = name
            .to_str()
            .and_then(|name| name.strip_suffix(".log"))
            .and_then(|number| number.parse().ok())
        else {
            continue;
        };
        numbers.push(number);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Deletes segments once the redb file holds what they recorded.
pub(super) fn remove(directory: &Path, numbers: &[u64]) {
    for &number in numbers {
        let path = segment_path(directory, number);
        if let Err(err) = std::fs::remove_file(&path) {
            tracing::warn!(file = %path.display(), error = %err, "cannot delete a folded journal segment");
        }
    }
}

/// The segment being appended to.
pub(super) struct Segment {
    directory: PathBuf,
    number: u64,
    file: File,
    len: u64,
}

impl Segment {
    /// Creates segment `number` from the spare if one is ready (else empty), durably: its
    /// directory entry is synced too.
    pub(super) fn create(directory: &Path, number: u64) -> io::Result<Self> {
        let path = segment_path(directory, number);
        if std::fs::rename(directory.join(SPARE), &path).is_err() {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)?;
        }
        let file = OpenOptions::new().write(true).open(&path)?;
        File::open(directory)?.sync_all()?;
        Ok(Self {
            directory: directory.to_owned(),
            number,
            file,
            len: 0,
        })
    }

    pub(super) fn number(&self) -> u64 {
        self.number
    }

    /// Whether the segment has grown enough to hand over.
    pub(super) fn is_full(&self) -> bool {
        self.len >= SEGMENT_BYTES
    }

    /// Appends one frame and syncs it to disk.
    pub(super) fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        self.file.write_all(frame)?;
        self.file.sync_data()?;
        self.len += frame.len() as u64;
        Ok(())
    }

    /// The next segment.
    pub(super) fn next(&self) -> io::Result<Self> {
        Self::create(&self.directory, self.number + 1)
    }
}

/// Encodes `ops` as one frame into `buf` (cleared first).
pub(super) fn frame<'a>(ops: impl IntoIterator<Item = &'a Op>, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&[0; 8]);
    for op in ops {
        buf.push(op.kind as u8);
        buf.extend_from_slice(&op.app.to_le_bytes());
        put_bytes(buf, op.key.as_bytes());
        match &op.value {
            None => buf.push(0),
            Some(value) => {
                buf.push(1);
                put_bytes(buf, value);
            }
        }
    }
    let payload = &buf[8..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// The ops of segment `number`'s whole frames, in order, and whether it ended on a damaged
/// frame (a write cut short).
pub(super) fn read(directory: &Path, number: u64) -> io::Result<(Vec<Op>, bool)> {
    let bytes = std::fs::read(segment_path(directory, number))?;
    let mut ops = Vec::new();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some(payload) = whole_frame(&mut rest) else {
            let unwritten = rest.iter().all(|&byte| byte == 0);
            return Ok((ops, !unwritten));
        };
        let Some(frame_ops) = decode(payload) else {
            return Ok((ops, true));
        };
        ops.extend(frame_ops);
    }
    Ok((ops, false))
}

/// The next frame's payload if it is whole and its checksum holds.
fn whole_frame<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if len == 0 {
        return None;
    }
    let crc = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    let payload = rest.get(8..8 + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    *rest = &rest[8 + len..];
    Some(payload)
}

fn decode(mut payload: &[u8]) -> Option<Vec<Op>> {
    let mut ops = Vec::new();
    while !payload.is_empty() {
        let kind = *Kind::ALL.get(usize::from(take(&mut payload, 1)?[0]))?;
        let app = u64::from_le_bytes(take(&mut payload, 8)?.try_into().ok()?);
        let key = String::from_utf8(take_bytes(&mut payload)?.to_vec()).ok()?;
        let value = match take(&mut payload, 1)?[0] {
            0 => None,
            1 => Some(take_bytes(&mut payload)?.to_vec()),
            _ => return None,
        };
        ops.push(Op {
            kind,
            app,
            key,
            value,
        });
    }
    Some(ops)
}

fn take<'a>(payload: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = payload.split_at_checked(n)?;
    *payload = tail;
    Some(head)
}

fn take_bytes<'a>(payload: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(take(payload, 4)?.try_into().ok()?) as usize;
    take(payload, len)
}

/// Applies segments `numbers` (oldest first) to the redb file in one transaction that also
/// records the last of them as folded, then deletes them.
pub(super) fn fold(db: &Database, directory: &Path, numbers: &[u64]) -> Result<(), String> {
    let Some(&last) = numbers.last() else {
        return Ok(());
    };
    let mut ops = Vec::new();
    for &number in numbers {
        let (segment, damaged) = read(directory, number)
            .map_err(|e| format!("reading journal segment {number}: {e}"))?;
        if damaged {
            tracing::warn!(
                segment = number,
                "a journal segment ends in a damaged frame (a write cut short); its whole frames are kept"
            );
        }
        ops.extend(segment);
    }
    let started = std::time::Instant::now();
    super::commit(db, &ops, Some(last)).map_err(|e| e.to_string())?;
    remove(directory, numbers);
    tracing::debug!(
        segments = ?numbers,
        writes = ops.len(),
        elapsed = ?started.elapsed(),
        "journal folded into the embedded store"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::{error::Error, fs, io::Write};

    use handoff_core::id::{ClientUserId, SdkAppId};

    use super::*;
    use crate::{
        engine::Customer,
        store::{
            embedded::{Journal, Kind, Op},
            record::CustomerRecord,
        },
    };

    type TestResult = Result<(), Box<dyn Error>>;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "handoff-log-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ))
    }

    fn app() -> Result<SdkAppId, Box<dyn Error>> {
        Ok(SdkAppId::new(1_400_000_001)?)
    }

    fn put(key: &str, value: &str) -> Result<Op, Box<dyn Error>> {
        Ok(Op::put(Kind::Customers, app()?, key, &value))
    }

    fn keys(ops: &[Op]) -> Vec<(String, Option<Vec<u8>>)> {
        ops.iter()
            .map(|op| (op.key.clone(), op.value.clone()))
            .collect()
    }

    #[test]
    fn a_frame_cut_short_is_dropped_and_the_whole_frames_before_it_are_read() -> TestResult {
        let dir = scratch("torn");
        fs::create_dir_all(&dir)?;
        let first = vec![put("a", "1")?, Op::delete(Kind::Seen, app()?, "b")];
        let second = vec![put("c", "3")?];
        let mut segment = Segment::create(&dir, 1)?;
        let mut buf = Vec::new();
        frame(&first, &mut buf);
        segment.append(&buf)?;
        let whole = fs::read(segment_path(&dir, 1))?;
        frame(&second, &mut buf);
        segment.append(&buf)?;
        drop(segment);
        let (read_whole, damaged_whole) = read(&dir, 1)?;

        // A crash in the middle of the second frame.
        let mut cut = whole.clone();
        cut.extend_from_slice(&buf[..buf.len() - 3]);
        fs::write(segment_path(&dir, 2), &cut)?;
        let (read_cut, damaged_cut) = read(&dir, 2)?;
        // A frame whose bytes are all there but wrong.
        let mut flipped = whole.clone();
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        flipped.extend_from_slice(&bad);
        fs::write(segment_path(&dir, 3), &flipped)?;
        let (read_flipped, _) = read(&dir, 3)?;
        // The zeros of a spare nobody wrote to yet.
        let mut spare = whole;
        spare.extend_from_slice(&[0; 4096]);
        fs::write(segment_path(&dir, 4), &spare)?;
        let (read_spare, damaged_spare) = read(&dir, 4)?;
        fs::remove_dir_all(&dir)?;

        let all: Vec<Op> = first.iter().chain(&second).cloned().collect();
        assert_eq!(keys(&read_whole), keys(&all));
        assert!(!damaged_whole);
        assert_eq!(keys(&read_cut), keys(&first));
        assert!(damaged_cut);
        assert_eq!(keys(&read_flipped), keys(&first));
        assert_eq!(keys(&read_spare), keys(&first));
        assert!(!damaged_spare, "zeros are where nothing was written yet");
        Ok(())
    }

    /// A customer's record: `tier` stands for whatever it holds.
    fn customer(id: &str, tier: &str) -> Result<Op, Box<dyn Error>> {
        let mut customer = Customer::unknown(ClientUserId::parse(id)?);
        customer.tier = Some(tier.to_owned());
        Ok(Op::put(
            Kind::Customers,
            app()?,
            id,
            &CustomerRecord::from(&customer),
        ))
    }

    #[test]
    fn full_segments_are_folded_into_the_file_and_a_folded_segment_is_never_applied_again()
    -> TestResult {
        let dir = scratch("fold");
        let path = dir.join("state.redb");
        let (journal, _) = Journal::open(&path)?;
        // More than a segment's worth, in commits of a quarter mebibyte.
        let filler = "x".repeat(256 << 10);
        let mut waits = Vec::new();
        for n in 0..(SEGMENT_BYTES / (256 << 10)) + 4 {
            waits.push(journal.submit(vec![customer(&format!("c{n:03}"), &filler)?]));
        }
        for wait in waits {
            wait.blocking_recv()??;
        }
        drop(journal);
        let directory = directory(&path);
        let left = segments(&directory)?;
        let db = Database::create(&path)?;
        let folded = super::super::folded_through(&db)?;
        drop(db);
        // A folded segment the folder did not get to delete, with a stale record.
        let _ = fs::remove_file(segment_path(&directory, folded));
        let mut stale = Segment::create(&directory, folded)?;
        let mut buf = Vec::new();
        frame(&[customer("c000", "stale")?], &mut buf);
        stale.append(&buf)?;
        drop(stale);
        let (journal, loaded) = Journal::open(&path)?;
        drop(journal);
        let after = segments(&directory)?;
        fs::remove_dir_all(&dir)?;

        assert!(folded >= 1, "a full segment was folded");
        assert!(!left.contains(&folded), "and deleted once folded");
        assert!(
            after.len() <= 1,
            "opening folds every segment left: {after:?}"
        );
        let first = loaded
            .get(&app()?)
            .and_then(|app| {
                app.customers
                    .iter()
                    .map(|record| Customer::from(record.clone()))
                    .find(|customer| customer.id.as_str() == "c000")
            })
            .and_then(|customer| customer.tier);
        assert_eq!(first, Some(filler), "the folded segment was applied again");
        Ok(())
    }

    #[test]
    fn a_spare_is_whole_or_absent() -> TestResult {
        let dir = scratch("spare");
        fs::create_dir_all(&dir)?;
        prepare_spare(&dir)?;
        let len = fs::metadata(dir.join(SPARE))?.len();
        let mut segment = Segment::create(&dir, 7)?;
        let taken = !dir.join(SPARE).exists();
        segment.append(b"")?;
        segment.file.flush()?;
        let grown = fs::metadata(segment_path(&dir, 7))?.len();
        fs::remove_dir_all(&dir)?;
        assert_eq!(len, SEGMENT_BYTES);
        assert!(taken, "the next segment starts as the spare");
        assert_eq!(grown, SEGMENT_BYTES, "and writing into it does not grow it");
        Ok(())
    }
}
