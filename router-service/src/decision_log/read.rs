//! Reading the decision log back: files as written, oldest first, for replay (the `handoff
//! replay` command and the console's what-if) and the console's search.

use std::path::Path;

use super::{Entry, rotated};

/// A log line: where it was read (`FILE:LINE`) and what it says.
pub type Line = (String, Entry);

/// The entries of the log `name` holding `text`. A last line cut short (the router stopped
/// or the disk filled in the middle of writing it) is skipped, with a warning in `warnings`;
/// any other line that is not an entry is an error naming the file and line.
pub fn read_text(name: &str, text: &str, warnings: &mut Vec<String>) -> Result<Vec<Line>, String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (at, (n, line)) in lines.iter().enumerate() {
        let place = format!("{name}:{}", n + 1);
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) => entries.push((place, entry)),
            Err(e) if at + 1 == lines.len() && !text.ends_with('\n') && e.is_eof() => {
                warnings.push(format!(
                    "{place}: the last line is cut short (a write the router did not finish), skipped"
                ));
            }
            Err(e) => return Err(format!("{place}: not a decision log entry: {e}")),
        }
    }
    Ok(entries)
}

/// The entries of several files, oldest file first whatever order they were given in (a
/// rotated log is `FILE.2 FILE.1 FILE`): files are ordered by their first entry's time,
/// with a warning when that is not the order given. Files whose times overlap are not one
/// log rotated, and are refused.
pub fn oldest_first(
    mut files: Vec<Vec<Line>>,
    warnings: &mut Vec<String>,
) -> Result<Vec<Line>, String> {
    let span = |file: &[Line]| {
        let first = file.first().map(|(_, e)| e.at_ms()).unwrap_or(0);
        let last = file.last().map(|(_, e)| e.at_ms()).unwrap_or(0);
        (first, last)
    };
    let name = |file: &[Line]| {
        file.first()
            .and_then(|(place, _)| place.rsplit_once(':'))
            .map_or(String::new(), |(name, _)| name.to_owned())
    };
    files.retain(|file| !file.is_empty());
    let given: Vec<String> = files.iter().map(|f| name(f)).collect();
    files.sort_by_key(|file| span(file));
    let sorted: Vec<String> = files.iter().map(|f| name(f)).collect();
    if given != sorted {
        warnings.push(format!(
            "the files were given newest first or out of order; replayed oldest first: {}",
            sorted.join(" ")
        ));
    }
    for pair in files.windows(2) {
        let (before, after) = (span(&pair[0]), span(&pair[1]));
        if before.1 > after.0 {
            return Err(format!(
                "{} and {} overlap in time: they are not files of one rotated log",
                name(&pair[0]),
                name(&pair[1])
            ));
        }
    }
    Ok(files.into_iter().flatten().collect())
}

/// The log at `path` with its rotated files (`FILE.<keep>` .. `FILE.1`, those there are),
/// oldest first.
pub fn read_log(path: &Path, keep: usize, warnings: &mut Vec<String>) -> Result<Vec<Line>, String> {
    let mut files = Vec::new();
    for n in (1..=keep).rev() {
        let file = rotated(path, n);
        if let Ok(text) = std::fs::read_to_string(&file) {
            files.push(read_text(&file.display().to_string(), &text, warnings)?);
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => files.push(read_text(&path.display().to_string(), &text, warnings)?),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(format!("{}: {err}", path.display())),
    }
    oldest_first(files, warnings)
}

/// The entries from `since_ms` on, starting at the last `state` line at or before it (what
/// a replay needs to begin from the floor as it stood); all of them when none is.
pub fn since(entries: Vec<Line>, since_ms: u64) -> Vec<Line> {
    let start = entries
        .iter()
        .rposition(|(_, entry)| matches!(entry, Entry::State { .. }) && entry.at_ms() <= since_ms)
        .unwrap_or(0);
    entries.into_iter().skip(start).collect()
}
