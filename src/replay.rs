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
    let mut entries = Vec::new();
    for log in &args.logs {
        let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
        entries.extend(read_log(&log.display().to_string(), &text)?);
    }
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

/// The entries of the log `name` holding `text`. A last line cut short (the router stopped
/// or the disk filled in the middle of writing it) is skipped with a warning; any other
/// line that is not an entry is an error.
fn read_log(name: &str, text: &str) -> Result<Vec<serde_json::Value>, String> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut entries = Vec::with_capacity(lines.len());
    for (at, (n, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(entry) => entries.push(entry),
            Err(_) if at + 1 == lines.len() && !text.ends_with('\n') => {
                eprintln!(
                    "handoff replay: warning: {name}:{}: the last line is cut short (a write the router did not finish), skipped",
                    n + 1
                );
            }
            Err(e) => return Err(format!("{name}:{}: not a log line: {e}", n + 1)),
        }
    }
    Ok(entries)
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
    warnings
}

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
    for (rule, count) in &report.changed_by_rule {
        let _ = writeln!(out, "  rule {rule:?}: {count} changed");
    }
    let _ = writeln!(
        out,
        "fallbacks: {} as logged, {} under the new config",
        report.fallbacks_before, report.fallbacks_after
    );
    for changed in report.changed.iter().take(5) {
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
            "  {group}: {} / {:.1} -> {} / {:.1}",
            before.peak, before.average, after.peak, after.average
        );
    }
    let _ = writeln!(out, "busiest agents (peak seats): new (as logged)");
    for (agent, new, old) in &report.busiest {
        let _ = writeln!(out, "  {agent}: {new} ({old})");
    }
    out
}

/// A self-contained HTML page of the report: the text, and per group a chart of seats in
/// use over time, as logged (grey) against new (green).
fn page(report: &Report) -> String {
    let escape = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let (width, height) = (720.0, 180.0);
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
        let line = |pick: fn(&(u64, u32, u32)) -> u32| {
            points
                .iter()
                .map(|p| {
                    let x = (p.0 - first.0) as f64 / span * width;
                    let y = height - f64::from(pick(p)) / top * (height - 10.0);
                    format!("{x:.1},{y:.1}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            charts,
            "<h3>{}</h3><svg width=\"{width}\" height=\"{height}\" style=\"border:1px solid #ccc\">\
             <polyline fill=\"none\" stroke=\"#999\" stroke-width=\"2\" points=\"{}\"/>\
             <polyline fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\" points=\"{}\"/>\
             <text x=\"4\" y=\"14\" font-size=\"12\">{top} seats</text></svg>",
            escape(group),
            line(|p| p.1),
            line(|p| p.2),
        );
    }
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>handoff replay</title>\
         <style>body{{font-family:sans-serif}}</style>\
         <h1>handoff replay</h1><pre>{}</pre>\
         <h2>Seats in use per group over time: grey as logged, green under the new config</h2>{charts}",
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

    #[test]
    fn a_last_line_cut_short_is_skipped_and_any_other_bad_line_refused() {
        let whole = "{\"kind\":\"state\"}\n{\"kind\":\"decision\"}\n";
        let torn = format!("{whole}{{\"kind\":\"deci");
        assert_eq!(read_log("log", &torn).map(|e| e.len()), Ok(2));
        assert_eq!(read_log("log", whole).map(|e| e.len()), Ok(2));
        // Cut short but followed by a newline, or in the middle: not a torn write.
        let ended = format!("{torn}\n");
        assert!(read_log("log", &ended).is_err());
        let middle = format!("{{\"kind\":\"deci\n{whole}");
        assert!(read_log("log", &middle).is_err());
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
}
