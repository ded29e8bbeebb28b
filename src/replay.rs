//! `handoff replay --config NEW.toml --log FILE... [--format text|json] [--html FILE]`:
//! yesterday's decision log run again under a changed config, with a report of what would
//! have been decided differently and what it would have done to the load.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use handoff_router::{
    engine::Catalog,
    replay::{Report, replay},
    store::Lifetimes,
};

/// What `handoff replay` was asked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<PathBuf>,
    logs: Vec<PathBuf>,
    json: bool,
    html: Option<PathBuf>,
}

fn parse(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                parsed.config = Some(args.next().ok_or("--config needs a file")?.into());
            }
            "--log" => {
                let mut any = false;
                while let Some(file) = args.next_if(|next| !next.starts_with("--")) {
                    parsed.logs.push(file.into());
                    any = true;
                }
                if !any {
                    return Err("--log needs one or more files".into());
                }
            }
            "--format" => match args.next().as_deref() {
                Some("text") => parsed.json = false,
                Some("json") => parsed.json = true,
                _ => return Err("--format needs text or json".into()),
            },
            "--html" => parsed.html = Some(args.next().ok_or("--html needs a file")?.into()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if parsed.config.is_none() {
        return Err("missing --config NEW.toml".into());
    }
    if parsed.logs.is_empty() {
        return Err("missing --log FILE... (oldest first: FILE.2 FILE.1 FILE)".into());
    }
    Ok(parsed)
}

/// Runs `handoff replay` with `args` (after `replay`): the whole process.
pub async fn main(args: impl IntoIterator<Item = String>) -> ExitCode {
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("handoff replay: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: impl IntoIterator<Item = String>) -> Result<(), String> {
    let args = parse(args)?;
    let path = args.config.unwrap_or_default();
    let config = handoff_core::config::load(&path, std::env::vars()).map_err(|e| e.to_string())?;
    let catalog = Catalog::from_config(&config, &path).map_err(|e| e.to_string())?;
    let mut files = Vec::new();
    for log in &args.logs {
        let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
        files.push(read_log(&log.display().to_string(), &text)?);
    }
    let entries = oldest_first(files)?;
    let report = replay(&catalog, Lifetimes::of(&config.router), entries).await?;
    for warning in warnings(&report) {
        eprintln!("handoff replay: warning: {warning}");
    }
    if report.decisions == 0 && !report.unknown_apps.is_empty() {
        return Err(format!(
            "no decision of the log is of an app of {}: nothing to compare",
            path.display()
        ));
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", text(&report));
    }
    if let Some(html) = &args.html {
        std::fs::write(html, page(&report)).map_err(|e| format!("{}: {e}", html.display()))?;
    }
    Ok(())
}

/// A log line: where it was read (`FILE:LINE`) and what it says.
type Line = handoff_router::decision_log::read::Line;

/// The entries of the log `name` holding `text` (see
/// [`handoff_router::decision_log::read::read_text`]), warnings on stderr.
fn read_log(name: &str, text: &str) -> Result<Vec<Line>, String> {
    let mut warnings = Vec::new();
    let lines = handoff_router::decision_log::read::read_text(name, text, &mut warnings);
    for warning in warnings {
        eprintln!("handoff replay: warning: {warning}");
    }
    lines
}

/// Several files' entries, oldest file first (see
/// [`handoff_router::decision_log::read::oldest_first`]), warnings on stderr.
fn oldest_first(files: Vec<Vec<Line>>) -> Result<Vec<Line>, String> {
    let mut warnings = Vec::new();
    let lines = handoff_router::decision_log::read::oldest_first(files, &mut warnings);
    for warning in warnings {
        eprintln!("handoff replay: warning: {warning}");
    }
    lines
}

/// What the report says that the reader should know before trusting it.
fn warnings(report: &Report) -> Vec<String> {
    let mut warnings = Vec::new();
    for (app, count) in &report.unknown_apps {
        warnings.push(format!(
            "{count} entries of app {app}, which the new config does not have, were skipped"
        ));
    }
    for (rule, count) in &report.unknown_rules {
        warnings.push(format!(
            "{count} decisions were made by rule {rule}, which the new config does not have (a log from another config, or a rule renamed or removed)"
        ));
    }
    if report.refused_total > 0 {
        warnings.push(format!(
            "{} state changes the new config refuses were skipped, as: {}",
            report.refused_total,
            report.refused.first().map_or("", String::as_str)
        ));
    }
    warnings
}

/// How many changed decisions the text report shows.
const SHOWN: usize = 5;

/// The report for people.
fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} decisions replayed ({} state changes); {} decided differently",
        report.decisions, report.changes, report.changed_total
    );
    if report.states == 0 {
        let _ = writeln!(
            out,
            "  (the log does not begin with a state entry: replayed from no seats held)"
        );
    }
    for warning in warnings(report) {
        let _ = writeln!(out, "  warning: {warning}");
    }
    if !report.changes_by.is_empty() {
        let by: Vec<String> = report
            .changes_by
            .iter()
            .map(|(caller, count)| format!("{caller} {count}"))
            .collect();
        let _ = writeln!(out, "  run-time changes by caller: {}", by.join(", "));
    }
    for (rule, count) in &report.changed_by_rule {
        let _ = writeln!(out, "  rule {rule:?}: {count} changed");
    }
    let _ = writeln!(
        out,
        "fallbacks: {} as logged, {} under the new config",
        report.fallbacks_before, report.fallbacks_after
    );
    let shown = report.changed.len().min(SHOWN);
    if shown > 0 {
        let _ = writeln!(
            out,
            "\n{}:",
            if shown < report.changed_total {
                format!(
                    "the first {shown} of the {} decided differently (--format json lists up to {})",
                    report.changed_total,
                    Report::SHOWN
                )
            } else {
                "decided differently".to_owned()
            }
        );
    }
    for changed in report.changed.iter().take(SHOWN) {
        let _ = writeln!(out, "\nsession {} (app {}):", changed.session, changed.app);
        for (label, side) in [("before", &changed.before), ("after ", &changed.after)] {
            let _ = writeln!(
                out,
                "  {label}: rule {:?}, group {}, agents [{}]\n          {}",
                side.rule,
                side.group.map_or("-".to_owned(), |g| g.to_string()),
                side.agents.join(", "),
                side.reason
            );
        }
    }
    let _ = writeln!(
        out,
        "\nseats in use per group (peak / average): as logged -> new"
    );
    for (group, (before, after)) in &report.groups {
        let _ = writeln!(
            out,
            "  {}: {} / {:.1} -> {} / {:.1}",
            group_label(report, group),
            before.peak,
            before.average,
            after.peak,
            after.average
        );
    }
    let _ = writeln!(out, "busiest agents (peak seats): new (as logged)");
    for (agent, new, old) in &report.busiest {
        let _ = writeln!(out, "  {agent}: {new} ({old})");
    }
    out
}

/// A group as people read it: `app/group (name)`.
fn group_label(report: &Report, key: &str) -> String {
    match report.group_names.get(key) {
        Some(name) if !name.is_empty() => format!("{key} ({name})"),
        _ => key.to_owned(),
    }
}

/// A Unix-ms time as UTC `YYYY-MM-DD HH:MM:SS`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A self-contained HTML page of the report: the text, and per group a chart of seats in
/// use over time (UTC), as logged (grey) against new (green), its lines broken where the
/// router started again.
fn page(report: &Report) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let (left, width, height, bottom) = (48.0, 720.0, 180.0, 24.0);
    let mut charts = String::new();
    for (group, series) in &report.series {
        let points = &series.points;
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            continue;
        };
        let span = (last.0.saturating_sub(first.0)).max(1) as f64;
        let top = points
            .iter()
            .map(|p| p.1.max(p.2))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let x = |ms: u64| left + (ms - first.0) as f64 / span * width;
        let y = |seats: u32| height - f64::from(seats) / top * (height - 10.0);
        // One polyline per stretch between restarts.
        let lines = |pick: fn(&(u64, u32, u32)) -> u32, colour: &str| {
            let mut svg = String::new();
            let mut stretch: Vec<String> = Vec::new();
            let mut restarts = report.restarts.iter().peekable();
            for point in points {
                if restarts.next_if(|at| **at <= point.0).is_some() && !stretch.is_empty() {
                    let _ = write!(
                        svg,
                        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                        stretch.join(" ")
                    );
                    stretch.clear();
                }
                stretch.push(format!("{:.1},{:.1}", x(point.0), y(pick(point))));
            }
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                stretch.join(" ")
            );
            svg
        };
        let restarts: String = report
            .restarts
            .iter()
            .filter(|at| (first.0..=last.0).contains(*at))
            .map(|at| {
                format!(
                    "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{height}\" stroke=\"#c33\" stroke-dasharray=\"4\"><title>router started {1} UTC</title></line>",
                    x(*at),
                    utc(*at)
                )
            })
            .collect();
        let label = group_label(report, group);
        let _ = write!(
            charts,
            "<figure><figcaption>{label}</figcaption>\
             <svg role=\"img\" aria-label=\"seats in use in {label} over time\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\">\
             <line x1=\"{left}\" x2=\"{left}\" y1=\"0\" y2=\"{height}\" stroke=\"#666\"/>\
             <line x1=\"{left}\" x2=\"{right}\" y1=\"{height}\" y2=\"{height}\" stroke=\"#666\"/>\
             <text x=\"{tx}\" y=\"14\" font-size=\"12\" text-anchor=\"end\">{top}</text>\
             <text x=\"{tx}\" y=\"{height}\" font-size=\"12\" text-anchor=\"end\">0</text>\
             <text x=\"{left}\" y=\"{ty}\" font-size=\"12\">{start} UTC</text>\
             <text x=\"{right}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{end} UTC</text>\
             {restarts}{logged}{new}</svg></figure>",
            label = escape(&label),
            w = left + width + 8.0,
            h = height + bottom,
            right = left + width,
            tx = left - 4.0,
            ty = height + 16.0,
            start = utc(first.0),
            end = utc(last.0),
            logged = lines(|p| p.1, "#999"),
            new = lines(|p| p.2, "#2a7"),
        );
    }
    format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>handoff replay</title>\
         <style>body{{font-family:sans-serif;max-width:60rem;margin:auto;padding:0 1rem}}\
         pre{{white-space:pre-wrap;overflow-wrap:anywhere}}svg{{max-width:100%;height:auto}}\
         figcaption{{font-weight:bold}}</style>\
         <h1>handoff replay</h1><pre>{}</pre>\
         <h2>Seats in use per group over time</h2>\
         <p>Grey: as logged; green: under the new config; dashed red: the router started again \
         (its state was read anew there).</p>{charts}</html>",
        escape(&text(report))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn reads_config_logs_format_and_html() {
        assert_eq!(
            parse(args(&[
                "--config", "new.toml", "--log", "d.2", "d.1", "d", "--format", "json"
            ])),
            Ok(Args {
                config: Some("new.toml".into()),
                logs: vec!["d.2".into(), "d.1".into(), "d".into()],
                json: true,
                html: None,
            })
        );
        assert!(parse(args(&["--log", "d"])).is_err());
        assert!(parse(args(&["--config", "n.toml"])).is_err());
        assert!(parse(args(&["--config", "n.toml", "--log"])).is_err());
    }

    /// A line removing an agent at `at_ms`.
    fn removal(at_ms: u64) -> String {
        format!(
            "{{\"kind\":\"agent_removed\",\"at_ms\":{at_ms},\"app\":1400000001,\"agent\":\"ann@example.com\"}}\n"
        )
    }

    #[test]
    fn a_last_line_cut_short_is_skipped_and_any_other_bad_line_refused_with_its_place() {
        let whole = format!("{}{}", removal(1), removal(2));
        let torn = format!("{whole}{{\"kind\":\"agent_rem");
        let read = |text: &str| read_log("d.jsonl", text).map(|e| e.len());
        assert_eq!(read(&torn), Ok(2));
        assert_eq!(read(&whole), Ok(2));
        // Cut short but followed by a newline, or in the middle: not a torn write.
        let ended = format!("{torn}\n");
        assert!(
            read(&ended).is_err_and(|e| e.starts_with("d.jsonl:3: ")),
            "{:?}",
            read(&ended)
        );
        let middle = format!("{{\"kind\":\"agent_rem\n{whole}");
        assert!(read(&middle).is_err_and(|e| e.starts_with("d.jsonl:1: ")));
        // A whole line that is not an entry is no torn write either.
        let renamed = format!(
            "{whole}{}",
            removal(3).replace("at_ms", "when_ms").trim_end()
        );
        assert!(read(&renamed).is_err_and(|e| e.contains("d.jsonl:3") && e.contains("at_ms")));
    }

    #[test]
    fn files_are_replayed_oldest_first_whatever_order_they_are_given_in() -> Result<(), String> {
        let newest = read_log("d", &format!("{}{}", removal(30), removal(40)))?;
        let oldest = read_log("d.1", &format!("{}{}", removal(10), removal(20)))?;
        let at: Vec<u64> = oldest_first(vec![newest.clone(), oldest.clone()])?
            .iter()
            .map(|(_, entry)| entry.at_ms())
            .collect();
        assert_eq!(at, [10, 20, 30, 40]);
        let places: Vec<String> = oldest_first(vec![newest, oldest])?
            .into_iter()
            .map(|(place, _)| place)
            .collect();
        assert_eq!(places, ["d.1:1", "d.1:2", "d:1", "d:2"]);
        // Two logs that overlap are not one rotated log.
        let other = read_log("other", &format!("{}{}", removal(15), removal(35)))?;
        let oldest = read_log("d.1", &format!("{}{}", removal(10), removal(20)))?;
        assert!(oldest_first(vec![oldest, other]).is_err_and(|e| e.contains("overlap")));
        Ok(())
    }

    #[test]
    fn the_text_says_when_it_shows_only_some_of_the_changed_decisions() {
        let side = handoff_router::replay::Outcome {
            rule: "default".into(),
            group: Some(6521),
            agents: vec!["ann@example.com".into()],
            fallback: false,
            reason: String::new(),
        };
        let changed = handoff_router::replay::Changed {
            app: 1_400_000_001,
            session: "s".into(),
            before: side.clone(),
            after: side,
        };
        let report = Report {
            changed: vec![changed; 8],
            changed_total: 15,
            ..Report::default()
        };
        let text = text(&report);
        assert!(
            text.contains("the first 5 of the 15 decided differently"),
            "{text}"
        );
        assert_eq!(text.matches("\nsession s (app 1400000001):").count(), 5);
    }

    #[test]
    fn charts_have_a_time_axis_group_names_and_break_at_a_restart() {
        let mut series = handoff_router::replay::Series::default();
        for at in [1_000, 2_000, 3_000, 4_000] {
            series.points.push((at, 1, 2));
        }
        let report = Report {
            series: [("1400000001/6521".to_owned(), series)]
                .into_iter()
                .collect(),
            group_names: [("1400000001/6521".to_owned(), "billing".to_owned())]
                .into_iter()
                .collect(),
            restarts: vec![2_500],
            ..Report::default()
        };
        let html = page(&report);
        assert!(html.contains("1400000001/6521 (billing)"), "{html}");
        assert!(html.contains("1970-01-01 00:00:01 UTC"), "{html}");
        assert!(html.contains("1970-01-01 00:00:04 UTC"), "{html}");
        // Two stretches per line, as logged and new: four polylines.
        assert_eq!(html.matches("<polyline").count(), 4, "{html}");
        assert!(html.contains("white-space:pre-wrap"));
        assert_eq!(utc(1_764_633_600_000 + 3_723_000), "2025-12-02 01:02:03");
    }

    #[test]
    fn entries_of_apps_and_rules_the_new_config_lacks_are_warned_of() {
        let report = Report {
            unknown_apps: [(1_400_000_009, 3)].into_iter().collect(),
            unknown_rules: [("1400000001/night".to_owned(), 2)].into_iter().collect(),
            ..Report::default()
        };
        let warnings = warnings(&report);
        assert_eq!(warnings.len(), 2);
        assert!(warnings[0].contains("app 1400000009"), "{warnings:?}");
        assert!(
            warnings[1].contains("rule 1400000001/night"),
            "{warnings:?}"
        );
        assert!(text(&report).contains("warning: 3 entries of app 1400000009"));
    }

    #[test]
    fn the_text_says_who_made_the_run_time_changes() {
        let report = Report {
            changes_by: [("crm".to_owned(), 3), ("gateway".to_owned(), 1)]
                .into_iter()
                .collect(),
            ..Report::default()
        };
        assert!(
            text(&report).contains("run-time changes by caller: crm 3, gateway 1"),
            "{}",
            text(&report)
        );
    }
}
