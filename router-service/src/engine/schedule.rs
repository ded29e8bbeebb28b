//! Opening hours: a group's business hours or an agent's personal shift.
//!
//! A [`Schedule`] is parsed once from config text into per-weekday minute intervals in one
//! IANA time zone plus a sorted list of closed local dates, so that [`Schedule::is_open`]
//! only converts the instant to wall-clock time and looks it up. Nothing here does I/O or
//! reads the clock: the caller supplies the instant.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Weekday};
use chrono_tz::Tz;

/// Minutes in a day; also the value of `24:00`.
const DAY: u32 = 24 * 60;

/// Half-open `[start, end)` minute-of-day intervals, sorted and non-overlapping.
type Intervals = Vec<(u32, u32)>;

/// Weekly opening hours in one time zone, with whole local dates closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    zone: Tz,
    /// Open intervals per local weekday, indexed from Monday; overnight ranges are split.
    week: [Intervals; 7],
    /// Closed local dates, sorted and deduplicated.
    closed: Vec<NaiveDate>,
}

impl Schedule {
    /// Builds a schedule from config text. Errors are one human-readable line naming the bad
    /// piece, e.g. `unknown time zone "Mars/Base"`, `"mon-fri 9-18": expected HH:MM-HH:MM`,
    /// `unknown day "mox" in "mox 09:00-18:00"`, `invalid date "2026-13-01" (expected YYYY-MM-DD)`.
    pub fn parse(
        time_zone: &str,
        weekly: &[String],
        closed: &[String],
    ) -> Result<Schedule, String> {
        let zone = time_zone
            .trim()
            .parse::<Tz>()
            .map_err(|_| format!("unknown time zone {time_zone:?}"))?;
        if weekly.is_empty() {
            return Err("weekly must list at least one entry".to_owned());
        }
        let mut week: [Intervals; 7] = Default::default();
        for entry in weekly {
            add_entry(&mut week, entry.trim())?;
        }
        week.iter_mut().for_each(normalize);
        let mut closed = closed
            .iter()
            .map(|d| parse_date(d))
            .collect::<Result<Vec<_>, _>>()?;
        closed.sort_unstable();
        closed.dedup();
        Ok(Schedule { zone, week, closed })
    }

    /// Whether the schedule is open at `at` (wall-clock time in the schedule's zone).
    ///
    /// Instants outside the range chrono can represent (hundreds of millennia away) are
    /// reported closed.
    pub fn is_open(&self, at: SystemTime) -> bool {
        let Some(utc) = utc_seconds(at).and_then(|s| DateTime::from_timestamp(s, 0)) else {
            return false;
        };
        let local = utc.with_timezone(&self.zone).naive_local();
        if self.closed.binary_search(&local.date()).is_ok() {
            return false;
        }
        let minute = local.hour() * 60 + local.minute();
        let day = &self.week[local.weekday().num_days_from_monday() as usize];
        let after = day.partition_point(|&(start, _)| start <= minute);
        after
            .checked_sub(1)
            .and_then(|i| day.get(i))
            .is_some_and(|&(_, end)| minute < end)
    }

    /// The IANA name of the zone, e.g. "Asia/Shanghai".
    pub fn time_zone(&self) -> &str {
        self.zone.name()
    }
}

/// Parses one `<days> <range> [<range> ...]` entry and adds its intervals to `week`.
fn add_entry(week: &mut [Intervals; 7], entry: &str) -> Result<(), String> {
    let mut words = entry.split_whitespace();
    let Some(days_text) = words.next() else {
        return Err("weekly entry is empty".to_owned());
    };
    let days = parse_days(days_text, entry)?;
    let ranges = words
        .map(|w| parse_range(w, entry))
        .collect::<Result<Vec<_>, _>>()?;
    if ranges.is_empty() {
        return Err(format!("{entry:?}: expected HH:MM-HH:MM"));
    }
    for day in (0..7).filter(|d| days & (1 << d) != 0) {
        for &(start, end) in &ranges {
            if start < end {
                week[day].push((start, end));
            } else {
                week[day].push((start, DAY));
                if end > 0 {
                    week[(day + 1) % 7].push((0, end));
                }
            }
        }
    }
    Ok(())
}

/// Parses `daily` or a comma-separated list of days and wrapping day ranges into a bit set
/// (bit 0 is Monday).
fn parse_days(text: &str, entry: &str) -> Result<u8, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok(0x7f);
    }
    let mut days = 0u8;
    for item in text.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_day(a, entry)?, parse_day(b, entry)?),
            None => {
                let day = parse_day(item, entry)?;
                (day, day)
            }
        };
        let mut day = first;
        loop {
            days |= 1 << day;
            if day == last {
                break;
            }
            day = (day + 1) % 7;
        }
    }
    Ok(days)
}

/// Parses a day name (`mon` or `monday`, any case) into its index from Monday.
fn parse_day(text: &str, entry: &str) -> Result<u8, String> {
    text.parse::<Weekday>()
        .map(|d| d.num_days_from_monday() as u8)
        .map_err(|_| format!("unknown day {text:?} in {entry:?}"))
}

/// Parses `HH:MM-HH:MM` into minutes of the day; an end before the start crosses midnight.
fn parse_range(text: &str, entry: &str) -> Result<(u32, u32), String> {
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("{entry:?}: expected HH:MM-HH:MM"))?;
    let (start, end) = (parse_clock(start, entry)?, parse_clock(end, entry)?);
    if start == DAY {
        return Err(format!("{entry:?}: a range cannot start at 24:00"));
    }
    if start == end {
        return Err(format!("{entry:?}: empty range {text:?}"));
    }
    Ok((start, end))
}

/// Parses `HH:MM` (00:00 to 24:00) into minutes of the day.
fn parse_clock(text: &str, entry: &str) -> Result<u32, String> {
    let shape = || format!("{entry:?}: expected HH:MM-HH:MM");
    let (hour, minute) = text.split_once(':').ok_or_else(shape)?;
    let hour = digits(hour, 2).ok_or_else(shape)?;
    let minute = digits(minute, 2).ok_or_else(shape)?;
    if minute > 59 || hour > 24 || (hour == 24 && minute > 0) {
        return Err(format!("{entry:?}: invalid time {text:?}"));
    }
    Ok(hour * 60 + minute)
}

/// Parses a `YYYY-MM-DD` calendar date.
fn parse_date(text: &str) -> Result<NaiveDate, String> {
    let mut parts = text.split('-');
    let mut next = |width| parts.next().and_then(|p| digits(p, width));
    let date = match (next(4), next(2), next(2), parts.next()) {
        (Some(y), Some(m), Some(d), None) => i32::try_from(y)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    };
    date.ok_or_else(|| format!("invalid date {text:?} (expected YYYY-MM-DD)"))
}

/// Parses exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<u32> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Sorts intervals and merges those that overlap or touch.
fn normalize(intervals: &mut Intervals) {
    intervals.sort_unstable();
    let mut merged: Intervals = Vec::with_capacity(intervals.len());
    for &(start, end) in intervals.iter() {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    *intervals = merged;
}

/// Whole seconds since the Unix epoch, rounded down; `None` if they overflow `i64`.
fn utc_seconds(at: SystemTime) -> Option<i64> {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).ok()?;
            let whole = whole.checked_add(i64::from(before.subsec_nanos() > 0))?;
            whole.checked_neg()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{error::Error, time::Duration};

    use proptest::prelude::*;

    use super::*;

    type TestResult = Result<(), Box<dyn Error>>;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn schedule(zone: &str, weekly: &[&str], closed: &[&str]) -> Result<Schedule, String> {
        Schedule::parse(zone, &strings(weekly), &strings(closed))
    }

    /// Parses an RFC 3339 instant, e.g. `2026-05-11T01:00:00Z` or `...T03:00:00+08:00`.
    fn instant(text: &str) -> Result<SystemTime, Box<dyn Error>> {
        Ok(DateTime::parse_from_rfc3339(text)?.into())
    }

    /// Checks `is_open` at every `(instant, expected)` pair.
    fn check(schedule: &Schedule, cases: &[(&str, bool)]) -> TestResult {
        for &(at, open) in cases {
            assert_eq!(schedule.is_open(instant(at)?), open, "is_open at {at}");
        }
        Ok(())
    }

    #[test]
    fn weekday_hours_with_lunch_break_in_shanghai() -> TestResult {
        let s = schedule("Asia/Shanghai", &["mon-fri 09:00-12:00 13:00-18:00"], &[])?;
        assert_eq!(s.time_zone(), "Asia/Shanghai");
        check(
            &s,
            &[
                ("2026-05-11T00:59:59Z", false), // Mon 08:59:59 local
                ("2026-05-11T01:00:00Z", true),  // Mon 09:00
                ("2026-05-11T03:59:59Z", true),  // Mon 11:59:59
                ("2026-05-11T04:00:00Z", false), // Mon 12:00, lunch
                ("2026-05-11T04:59:00Z", false), // Mon 12:59
                ("2026-05-11T05:00:00Z", true),  // Mon 13:00
                ("2026-05-11T09:59:59Z", true),  // Mon 17:59:59
                ("2026-05-11T10:00:00Z", false), // Mon 18:00
                ("2026-05-15T09:00:00Z", true),  // Fri 17:00
                ("2026-05-16T02:00:00Z", false), // Sat 10:00
                ("2026-05-10T17:30:00Z", false), // Mon 01:30 local, Sun in UTC
                ("2026-05-17T01:00:00Z", false), // Sun 09:00
            ],
        )
    }

    #[test]
    fn weekends_daily_and_wrapping_day_ranges() -> TestResult {
        let weekend = schedule("UTC", &["Saturday,SUN 10:00-14:00"], &[])?;
        check(
            &weekend,
            &[
                ("2026-05-16T10:00:00Z", true),  // Sat
                ("2026-05-17T13:59:00Z", true),  // Sun
                ("2026-05-17T14:00:00Z", false), // Sun end
                ("2026-05-15T11:00:00Z", false), // Fri
                ("2026-05-18T11:00:00Z", false), // Mon
            ],
        )?;
        let daily = schedule("UTC", &["daily 00:00-24:00"], &[])?;
        check(
            &daily,
            &[
                ("2026-05-11T00:00:00Z", true),
                ("2026-05-13T12:00:00Z", true),
                ("2026-05-17T23:59:59Z", true),
            ],
        )?;
        let wrap = schedule("UTC", &["fri-mon 10:00-11:00", "wed 10:00-11:00"], &[])?;
        check(
            &wrap,
            &[
                ("2026-05-15T10:30:00Z", true),  // Fri
                ("2026-05-16T10:30:00Z", true),  // Sat
                ("2026-05-17T10:30:00Z", true),  // Sun
                ("2026-05-18T10:30:00Z", true),  // Mon
                ("2026-05-19T10:30:00Z", false), // Tue
                ("2026-05-20T10:30:00Z", true),  // Wed, from the second entry
                ("2026-05-21T10:30:00Z", false), // Thu
                ("2026-05-15T11:00:00Z", false), // Fri, end is exclusive
            ],
        )?;
        let list = schedule("UTC", &["mon,wed-thu 08:00-09:00 08:30-10:00"], &[])?;
        check(
            &list,
            &[
                ("2026-05-11T09:45:00Z", true),  // Mon, overlapping ranges merged
                ("2026-05-12T09:00:00Z", false), // Tue
                ("2026-05-13T08:00:00Z", true),  // Wed
                ("2026-05-14T09:59:00Z", true),  // Thu
                ("2026-05-14T10:00:00Z", false), // Thu end
            ],
        )
    }

    #[test]
    fn overnight_shift_runs_into_the_next_day() -> TestResult {
        let s = schedule("Asia/Shanghai", &["mon-thu 22:00-06:00"], &[])?;
        check(
            &s,
            &[
                ("2026-05-11T21:59:00+08:00", false), // Mon before start
                ("2026-05-11T22:00:00+08:00", true),  // Mon start
                ("2026-05-11T23:59:59+08:00", true),  // Mon before midnight
                ("2026-05-12T03:00:00+08:00", true),  // Tue, from Monday
                ("2026-05-12T06:00:00+08:00", false), // Tue end
                ("2026-05-12T12:00:00+08:00", false), // Tue noon
                ("2026-05-14T23:00:00+08:00", true),  // Thu evening
                ("2026-05-15T03:00:00+08:00", true),  // Fri, started Thursday
                ("2026-05-15T22:30:00+08:00", false), // Fri evening is not listed
                ("2026-05-16T03:00:00+08:00", false), // Sat
                ("2026-05-17T23:00:00+08:00", false), // Sun evening
                ("2026-05-11T03:00:00+08:00", false), // Mon early, Sunday not listed
            ],
        )?;
        let to_midnight = schedule("UTC", &["mon 22:00-00:00"], &[])?;
        check(
            &to_midnight,
            &[
                ("2026-05-11T23:00:00Z", true),
                ("2026-05-12T00:00:00Z", false),
            ],
        )
    }

    #[test]
    fn closed_dates_close_the_whole_local_date() -> TestResult {
        let s = schedule(
            "Asia/Shanghai",
            &["daily 09:00-18:00"],
            &["2026-05-01", "2026-05-01", "2026-05-05"],
        )?;
        check(
            &s,
            &[
                ("2026-04-30T10:00:00+08:00", true),
                ("2026-05-01T10:00:00+08:00", false),
                ("2026-05-02T10:00:00+08:00", true),
                ("2026-05-05T10:00:00+08:00", false),
                ("2026-05-05T02:00:00Z", false), // still 10:00 local on the closed date
                ("2026-05-04T17:00:00Z", false), // 2026-05-05 01:00 local, closed anyway
                ("2026-05-04T02:00:00Z", true),  // 2026-05-04 10:00 local
            ],
        )?;
        let night = schedule("UTC", &["fri 22:00-06:00"], &["2026-05-16", "2026-05-29"])?;
        check(
            &night,
            &[
                ("2026-05-15T23:59:59Z", true),  // Fri, open date
                ("2026-05-16T00:00:00Z", false), // Sat closed cuts the shift at midnight
                ("2026-05-16T03:00:00Z", false),
                ("2026-05-23T03:00:00Z", true), // the next Saturday is open
                ("2026-05-29T23:00:00Z", false), // Fri closed...
                ("2026-05-30T03:00:00Z", true), // ...but Saturday's part is not
            ],
        )
    }

    #[test]
    fn paris_hours_follow_daylight_saving_time() -> TestResult {
        let s = schedule("Europe/Paris", &["daily 09:00-17:00"], &[])?;
        check(
            &s,
            &[
                // Winter (UTC+1): 09:00 local is 08:00 UTC.
                ("2026-03-28T07:59:59Z", false),
                ("2026-03-28T08:00:00Z", true),
                ("2026-03-28T15:59:59Z", true),
                ("2026-03-28T16:00:00Z", false),
                // Summer (UTC+2) from 2026-03-29: 09:00 local is 07:00 UTC.
                ("2026-03-30T06:59:59Z", false),
                ("2026-03-30T07:00:00Z", true),
                ("2026-03-30T14:59:59Z", true),
                ("2026-03-30T15:00:00Z", false),
                // Back to winter from 2026-10-25.
                ("2026-10-24T07:00:00Z", true),
                ("2026-10-26T07:00:00Z", false),
                ("2026-10-26T08:00:00Z", true),
            ],
        )
    }

    #[test]
    fn paris_skipped_and_repeated_hours() -> TestResult {
        let night = schedule("Europe/Paris", &["sun 02:00-03:00"], &[])?;
        check(
            &night,
            &[
                // 2026-03-29: 02:00 CET jumps to 03:00 CEST, the hour is never observed.
                ("2026-03-29T00:59:59Z", false), // 01:59:59 CET
                ("2026-03-29T01:00:00Z", false), // 03:00 CEST
                // 2026-10-25: 03:00 CEST falls back to 02:00 CET, the hour repeats.
                ("2026-10-24T23:59:59Z", false), // 01:59:59 CEST
                ("2026-10-25T00:00:00Z", true),  // 02:00 CEST, first pass
                ("2026-10-25T00:59:59Z", true),  // 02:59:59 CEST
                ("2026-10-25T01:00:00Z", true),  // 02:00 CET, second pass
                ("2026-10-25T01:59:59Z", true),  // 02:59:59 CET
                ("2026-10-25T02:00:00Z", false), // 03:00 CET
            ],
        )?;
        let straddle = schedule("Europe/Paris", &["sun 02:30-03:30"], &[])?;
        check(
            &straddle,
            &[
                ("2026-03-29T00:59:59Z", false), // 01:59:59 CET
                ("2026-03-29T01:00:00Z", true),  // 03:00 CEST
                ("2026-03-29T01:30:00Z", false), // 03:30 CEST
            ],
        )
    }

    #[test]
    fn new_york_hours_follow_daylight_saving_time() -> TestResult {
        let s = schedule(
            "America/New_York",
            &["daily 09:00-17:00", "sun 02:00-03:00"],
            &[],
        )?;
        check(
            &s,
            &[
                // Before 2026-03-08 (EST, UTC-5): 09:00 local is 14:00 UTC.
                ("2026-03-07T13:59:59Z", false),
                ("2026-03-07T14:00:00Z", true),
                ("2026-03-07T21:59:59Z", true),
                ("2026-03-07T22:00:00Z", false),
                // After (EDT, UTC-4): 09:00 local is 13:00 UTC.
                ("2026-03-09T12:59:59Z", false),
                ("2026-03-09T13:00:00Z", true),
                ("2026-03-09T20:59:59Z", true),
                ("2026-03-09T21:00:00Z", false),
                // 02:00-03:00 on 2026-03-08 does not exist.
                ("2026-03-08T06:59:59Z", false), // 01:59:59 EST
                ("2026-03-08T07:00:00Z", false), // 03:00 EDT
                ("2026-03-08T13:00:00Z", true),  // 09:00 EDT
            ],
        )
    }

    #[test]
    fn parse_errors_name_the_bad_piece() {
        let cases: &[(&str, &[&str], &[&str], &str)] = &[
            (
                "Mars/Base",
                &["daily 09:00-18:00"],
                &[],
                r#"unknown time zone "Mars/Base""#,
            ),
            ("", &["daily 09:00-18:00"], &[], r#"unknown time zone """#),
            ("UTC", &[], &[], "weekly must list at least one entry"),
            (
                "UTC",
                &["mon-fri 9-18"],
                &[],
                r#""mon-fri 9-18": expected HH:MM-HH:MM"#,
            ),
            (
                "UTC",
                &["mon 9:00-18:00"],
                &[],
                r#""mon 9:00-18:00": expected HH:MM-HH:MM"#,
            ),
            (
                "UTC",
                &["mon 09:00"],
                &[],
                r#""mon 09:00": expected HH:MM-HH:MM"#,
            ),
            ("UTC", &["mon"], &[], r#""mon": expected HH:MM-HH:MM"#),
            ("UTC", &["   "], &[], "weekly entry is empty"),
            (
                "UTC",
                &["mox 09:00-18:00"],
                &[],
                r#"unknown day "mox" in "mox 09:00-18:00""#,
            ),
            (
                "UTC",
                &["mon-xyz 09:00-18:00"],
                &[],
                r#"unknown day "xyz" in "mon-xyz 09:00-18:00""#,
            ),
            (
                "UTC",
                &["mon,,tue 09:00-18:00"],
                &[],
                r#"unknown day "" in "mon,,tue 09:00-18:00""#,
            ),
            (
                "UTC",
                &["wednes 09:00-18:00"],
                &[],
                r#"unknown day "wednes" in "wednes 09:00-18:00""#,
            ),
            (
                "UTC",
                &["mon 09:00-09:00"],
                &[],
                r#""mon 09:00-09:00": empty range "09:00-09:00""#,
            ),
            (
                "UTC",
                &["mon 00:00-00:00"],
                &[],
                r#""mon 00:00-00:00": empty range "00:00-00:00""#,
            ),
            (
                "UTC",
                &["mon 25:00-26:00"],
                &[],
                r#""mon 25:00-26:00": invalid time "25:00""#,
            ),
            (
                "UTC",
                &["mon 09:60-10:00"],
                &[],
                r#""mon 09:60-10:00": invalid time "09:60""#,
            ),
            (
                "UTC",
                &["mon 09:00-24:30"],
                &[],
                r#""mon 09:00-24:30": invalid time "24:30""#,
            ),
            (
                "UTC",
                &["mon 24:00-06:00"],
                &[],
                r#""mon 24:00-06:00": a range cannot start at 24:00"#,
            ),
            (
                "UTC",
                &["daily 09:00-18:00"],
                &["2026-13-01"],
                r#"invalid date "2026-13-01" (expected YYYY-MM-DD)"#,
            ),
            (
                "UTC",
                &["daily 09:00-18:00"],
                &["2026-02-30"],
                r#"invalid date "2026-02-30" (expected YYYY-MM-DD)"#,
            ),
            (
                "UTC",
                &["daily 09:00-18:00"],
                &["2026-5-01"],
                r#"invalid date "2026-5-01" (expected YYYY-MM-DD)"#,
            ),
            (
                "UTC",
                &["daily 09:00-18:00"],
                &["2026-05-01-02"],
                r#"invalid date "2026-05-01-02" (expected YYYY-MM-DD)"#,
            ),
        ];
        for &(zone, weekly, closed, want) in cases {
            assert_eq!(
                schedule(zone, weekly, closed),
                Err(want.to_owned()),
                "{weekly:?} {closed:?}"
            );
        }
    }

    #[test]
    fn parse_accepts_edge_forms() -> TestResult {
        let s = schedule(
            "UTC",
            &["  MONDAY-tue\t00:00-24:00  ", "sun-sun 23:59-00:00"],
            &[],
        )?;
        check(
            &s,
            &[
                ("2026-05-11T00:00:00Z", true),  // Mon
                ("2026-05-12T23:59:59Z", true),  // Tue
                ("2026-05-13T00:00:00Z", false), // Wed
                ("2026-05-17T23:59:30Z", true),  // Sun's last minute
                ("2026-05-16T23:59:30Z", false), // Sat: sun-sun is one day, not the week
            ],
        )
    }

    #[test]
    fn instants_before_the_epoch_are_looked_up() -> TestResult {
        let s = schedule("UTC", &["thu 00:00-01:00"], &[])?;
        // 1970-01-01 was a Thursday; one nanosecond before the epoch is Wednesday 23:59:59.
        let before = UNIX_EPOCH
            .checked_sub(Duration::from_nanos(1))
            .ok_or("underflow")?;
        assert!(!s.is_open(before));
        assert!(s.is_open(UNIX_EPOCH));
        let week_before = UNIX_EPOCH
            .checked_sub(Duration::from_secs(7 * 86_400))
            .ok_or("underflow")?;
        assert!(s.is_open(week_before));
        Ok(())
    }

    /// An instant `seconds` (may be negative) plus `nanos` from the epoch, if representable.
    fn from_epoch(seconds: i64, nanos: u32) -> Option<SystemTime> {
        let offset = Duration::new(seconds.unsigned_abs(), nanos);
        if seconds >= 0 {
            UNIX_EPOCH.checked_add(offset)
        } else {
            UNIX_EPOCH.checked_sub(offset)
        }
    }

    const YEARS_300: i64 = 300 * 366 * 86_400;

    proptest! {
        #[test]
        fn parse_never_panics(
            zone in ".{0,24}",
            weekly in proptest::collection::vec(".{0,40}", 0..4),
            closed in proptest::collection::vec(".{0,12}", 0..3),
        ) {
            if let Ok(s) = Schedule::parse(&zone, &weekly, &closed) {
                let _ = s.is_open(UNIX_EPOCH);
            }
        }

        #[test]
        fn parse_never_panics_on_near_misses(
            zone in "(UTC|Asia/Shanghai|Europe/Paris|[A-Za-z/_]{0,12})",
            weekly in proptest::collection::vec(
                "[a-zA-Z,-]{0,14}[ \t]{1,2}[0-9:-]{0,12}( [0-9:-]{0,12})?", 0..4),
            closed in proptest::collection::vec("[0-9-]{0,12}", 0..3),
            seconds in -YEARS_300..YEARS_300,
        ) {
            if let (Ok(s), Some(at)) = (Schedule::parse(&zone, &weekly, &closed), from_epoch(seconds, 0)) {
                let _ = s.is_open(at);
            }
        }

        #[test]
        fn is_open_never_panics(seconds in -YEARS_300..YEARS_300, nanos in 0u32..1_000_000_000) {
            let zones = ["UTC", "Asia/Shanghai", "Europe/Paris", "America/New_York"];
            let weekly = strings(&["mon-fri 09:00-12:00 13:00-18:00", "fri-mon 22:00-06:00"]);
            if let Some(at) = from_epoch(seconds, nanos) {
                for zone in zones {
                    let s = Schedule::parse(zone, &weekly, &strings(&["2026-05-01"]));
                    prop_assert!(s.is_ok());
                    if let Ok(s) = s {
                        let _ = s.is_open(at);
                    }
                }
            }
        }

        #[test]
        fn round_the_clock_is_always_open(seconds in -YEARS_300..YEARS_300, nanos in 0u32..1_000_000_000) {
            let s = Schedule::parse("Europe/Paris", &strings(&["daily 00:00-24:00"]), &[]);
            if let (Ok(s), Some(at)) = (s, from_epoch(seconds, nanos)) {
                prop_assert!(s.is_open(at));
            }
        }
    }

    #[test]
    fn far_instants_do_not_panic() -> TestResult {
        let s = schedule("Europe/Paris", &["daily 00:00-24:00"], &[])?;
        let far = [
            UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX / 2)),
            UNIX_EPOCH.checked_sub(Duration::from_secs(u64::MAX / 2)),
            UNIX_EPOCH.checked_add(Duration::from_secs(1 << 62)),
        ];
        for at in far.into_iter().flatten() {
            assert!(!s.is_open(at));
        }
        Ok(())
    }
}
