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
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let entry = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: not a log line: {e}", log.display(), n + 1))?;
            entries.push(entry);
        }
    }
    let report = replay(&catalog, Lifetimes::of(&config.router), entries).await?;
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
}
