//! The decision log: the all-in-one writes every decision (with the agents it considered)
//! and every state change, in order, as JSON lines, and nothing secret.

use std::time::Duration;

use handoff_core::config::AgentStatus;
use handoff_router::{
    decision_log::{Entry, StateReason},
    store::{Applied, SessionEventKind},
};

use crate::{
    support::{TestResult, body, body_from, now_secs, request, signed_uri},
    traces::{field, memory_config, own_ports, spawn},
};

/// A binary's listeners on ports of their own, and its decision log at `log`.
fn logging_to(log: &std::path::Path) -> Vec<(&'static str, String)> {
    own_ports(&[(
        "HANDOFF__ROUTER__DECISION_LOG__PATH",
        log.display().to_string(),
    )])
}

/// The lines of `log` once it has at least `count` (written off the hot path, so this
/// waits a little), or as many as it has after a few seconds.
pub async fn lines_of(log: &std::path::Path, count: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lines
}

#[tokio::test]
async fn decisions_and_changes_are_logged_in_order_as_json_lines() -> TestResult {
    let dir = crate::support::Scratch::new("dlog")?;
    let config = dir.join("handoff.toml");
    let log = dir.join("decisions.jsonl");
    std::fs::write(&config, memory_config())?;
    let env = logging_to(&log);
    let result = async {
        let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &env)?;
        let gateway = field(&line, "gateway")?.parse()?;
        let reply = request(gateway, "POST", &signed_uri(now_secs()), body("d-1")).await?;
        let reserved = reply.agents().first().cloned().unwrap_or_default();
        let at = now_secs() * 1000;
        let uri = |command: &str| signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", command);
        let ended = format!(
            r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"d-1","Event":"SessionEnd","EventTime":{at},"ChannelType":"SDK","ClientUserId":"user-d-1","AgentId":"{reserved}"}}"#
        );
        request(gateway, "POST", &uri("Desk.SessionEventNotify"), ended).await?;
        let away = format!(
            r#"{{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"bob@example.com","Status":"rest","EventTime":{}}}"#,
            at + 1
        );
        request(gateway, "POST", &uri("Member.EventNotify"), away).await?;
        let lines = lines_of(&log, 4).await;
        Ok::<_, crate::support::Error>((lines, reserved))
    }
    .await;
    let (lines, reserved) = result?;

    // Read as replay reads them: each line is an entry of the log's one format.
    let entries: Vec<Entry> = lines
        .iter()
        .map(|line| serde_json::from_str(line))
        .collect::<Result<_, _>>()?;
    let [state, decision, ended, away] = entries.as_slice() else {
        return Err(format!("four entries, not {lines:?}").into());
    };
    // The state the router started with: both apps, nothing held yet.
    let Entry::State { reason, apps, .. } = state else {
        return Err(format!("a state first: {lines:?}").into());
    };
    assert_eq!(*reason, StateReason::Start);
    let ids: Vec<u64> = apps.iter().map(|snapshot| snapshot.app).collect();
    assert_eq!(ids, [1_400_000_001, 1_400_000_002]);
    assert!(apps[0].seats.is_empty());
    let Entry::Decision(decision) = decision else {
        return Err(format!("then the decision: {lines:?}").into());
    };
    assert_eq!(decision.app.get(), 1_400_000_001);
    assert_eq!(decision.session.as_str(), "d-1");
    assert_eq!(decision.customer.as_str(), "user-d-1");
    assert_eq!(decision.rule, "default");
    assert_eq!(
        decision.reserved.as_ref().map(|a| a.as_str()),
        Some(reserved.as_str())
    );
    assert!(!decision.reason.is_empty());
    assert!(
        decision
            .considered
            .iter()
            .any(|agent| agent.agent.as_str() == reserved && agent.active == 0),
        "the agents considered, as the decision saw them: {:?}",
        decision.considered
    );
    assert!(
        matches!(
            ended,
            Entry::SessionEvent {
                event: SessionEventKind::Ended,
                outcome: Applied::Recorded,
                ..
            }
        ),
        "{ended:?}"
    );
    assert!(
        matches!(
            away,
            Entry::Status { agent, status: AgentStatus::Away, .. } if agent.as_str() == "bob@example.com"
        ),
        "{away:?}"
    );
    let everything = lines.join("\n");
    assert!(
        !everything.contains("xxxxyyyy"),
        "the app's token was logged"
    );
    Ok(())
}

/// Runs `handoff replay` with `args`; its stdout.
fn replay(args: &[&std::ffi::OsStr]) -> Result<String, crate::support::Error> {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("replay")
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned().into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn replay_reports_nothing_under_the_same_config_and_exactly_what_a_new_rule_changes()
-> TestResult {
    let dir = crate::support::Scratch::new("replay")?;
    let (config, renamed, desk, log, html) = (
        dir.join("handoff.toml"),
        dir.join("renamed.toml"),
        dir.join("desk.toml"),
        dir.join("decisions.jsonl"),
        dir.join("report.html"),
    );
    let text = memory_config();
    std::fs::write(&config, &text)?;
    // One customer gets a rule of their own: routed the same way (only the rule's name
    // changes), or answered with the group alone (no seat reserved for them).
    let rule = |extra: &str| {
        text.replacen(
            "[[apps.agents]]",
            &format!(
                "[[apps.rules]]\nname = \"r2-desk\"\nwhen = 'customer.id == \"user-r-2\"'\ngroup = 6521\n{extra}[[apps.agents]]"
            ),
            1,
        )
    };
    std::fs::write(&renamed, rule(""))?;
    std::fs::write(&desk, rule("group_only = true\n"))?;
    let env = logging_to(&log);
    let result = async {
        {
            let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &env)?;
            let gateway = field(&line, "gateway")?.parse()?;
            for session in ["r-1", "r-2", "r-3"] {
                request(gateway, "POST", &signed_uri(now_secs()), body(session)).await?;
            }
            let lines = lines_of(&log, 4).await.len();
            assert_eq!(lines, 4, "the state and three decisions logged");
        }
        let same = replay(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
        ])?;
        let renamed = replay(&[
            "--config".as_ref(),
            renamed.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ])?;
        let json = replay(&[
            "--config".as_ref(),
            desk.as_os_str(),
            "--log".as_ref(),
            log.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
            "--html".as_ref(),
            html.as_os_str(),
        ])?;
        let page = std::fs::read_to_string(&html)?;
        Ok::<_, crate::support::Error>((same, renamed, json, page))
    }
    .await;
    let (same, renamed, json, page) = result?;

    assert!(
        same.starts_with("3 decisions replayed (0 state changes); 0 decided differently"),
        "{same}"
    );
    // A rule that routes one customer as before changes exactly that decision.
    let report: serde_json::Value = serde_json::from_str(&renamed)?;
    assert_eq!(report["changed_total"], 1, "{renamed}");
    assert_eq!(report["changed"][0]["session"], "r-2");
    assert_eq!(report["changed"][0]["after"]["rule"], "r2-desk");
    assert_eq!(
        report["changed"][0]["after"]["agents"],
        report["changed"][0]["before"]["agents"]
    );
    // One that answers them with the group alone changes theirs, and, since no seat is
    // reserved for them, the next customer's too: load evolves as the new decisions make it.
    let report: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(report["decisions"], 3);
    assert_eq!(report["changed_total"], 2, "{json}");
    assert_eq!(report["changed_by_rule"]["default"], 2);
    let change = &report["changed"][0];
    assert_eq!(change["session"], "r-2");
    assert_eq!(change["before"]["rule"], "default");
    assert_eq!(change["after"]["rule"], "r2-desk");
    assert_eq!(change["after"]["agents"], serde_json::json!([]));
    assert_eq!(report["changed"][1]["session"], "r-3");
    assert_eq!(report["changed"][1]["after"]["rule"], "default");
    // Seats: the new rule reserves nobody for r-2, so the group holds one seat fewer.
    let group = &report["groups"]["1400000001/6521"];
    assert_eq!(group[0]["peak"], 3);
    assert_eq!(group[1]["peak"], 2);
    assert!(page.contains("<h1>handoff replay</h1>") && page.contains("1400000001/6521"));
    assert_eq!(
        page.matches("<polyline").count(),
        2,
        "old and new seats over time"
    );
    let series = report["series"]["1400000001/6521"]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let seats: Vec<(u64, u64)> = series
        .iter()
        .map(|p| (p[1].as_u64().unwrap_or(99), p[2].as_u64().unwrap_or(99)))
        .collect();
    assert_eq!(
        seats,
        [(1, 1), (2, 1), (3, 2)],
        "after each logged decision"
    );
    Ok(())
}

#[tokio::test]
async fn a_log_that_begins_after_a_restart_replays_from_the_state_it_begins_with() -> TestResult {
    let dir = crate::support::Scratch::new("restart")?;
    let (config, before, after) = (
        dir.join("handoff.toml"),
        dir.join("before.jsonl"),
        dir.join("after.jsonl"),
    );
    std::fs::write(&config, memory_config())?;
    let on_disk = |log: &std::path::Path| {
        let mut env = logging_to(log);
        env.push(("HANDOFF__ROUTER__STORE__KIND", "embedded".to_owned()));
        env.push((
            "HANDOFF__ROUTER__STORE__PATH",
            dir.join("state.redb").display().to_string(),
        ));
        env
    };
    let result = async {
        // Three customers take every seat (ann's two, bob's one); the router stops.
        {
            let (_running, line) =
                spawn(env!("CARGO_BIN_EXE_handoff"), &config, &on_disk(&before))?;
            let gateway = field(&line, "gateway")?.parse()?;
            for session in ["s-1", "s-2", "s-3"] {
                request(gateway, "POST", &signed_uri(now_secs()), body(session)).await?;
            }
            assert_eq!(lines_of(&before, 4).await.len(), 4);
        }
        // It starts again from its file, with another log: the first customer, back in a
        // new session, finds nobody free.
        let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &on_disk(&after))?;
        let gateway = field(&line, "gateway")?.parse()?;
        let again = body_from("s-4", "user-s-1");
        let reply = request(gateway, "POST", &signed_uri(now_secs()), again).await?;
        let lines = lines_of(&after, 2).await;
        let report = replay(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--log".as_ref(),
            after.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ])?;
        Ok::<_, crate::support::Error>((reply.agents(), lines, report))
    }
    .await;
    let (agents, lines, report) = result?;

    assert!(agents.is_empty(), "every seat was taken: {agents:?}");
    let state: serde_json::Value = serde_json::from_str(lines.first().ok_or("no state")?)?;
    assert_eq!(state["kind"], "state");
    let seats: Vec<&str> = state["apps"][0]["seats"]
        .as_array()
        .map(|seats| seats.iter().filter_map(|s| s["session"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(seats, ["s-1", "s-2", "s-3"], "{state}");
    // The decision carries what it saw of its customer: the agent who had them before.
    let decision: serde_json::Value = serde_json::from_str(lines.get(1).ok_or("no decision")?)?;
    assert_eq!(
        decision["previous"]["agent"],
        state["apps"][0]["seats"][0]["agent"]
    );
    // Replayed alone, the second log starts from the seats the router restarted with: the
    // fourth customer finds nobody free under the same config, as they did.
    let report: serde_json::Value = serde_json::from_str(&report)?;
    assert_eq!(report["states"], 1);
    assert_eq!(report["decisions"], 1);
    assert_eq!(report["changed_total"], 0, "{report}");
    let group = &report["groups"]["1400000001/6521"];
    assert_eq!(
        (&group[0]["peak"], &group[1]["peak"]),
        (&3.into(), &3.into())
    );
    Ok(())
}

#[tokio::test]
async fn every_rotated_file_begins_with_the_state_and_replays_alone_without_change() -> TestResult {
    let dir = crate::support::Scratch::new("rotate")?;
    let (config, log) = (dir.join("handoff.toml"), dir.join("decisions.jsonl"));
    std::fs::write(&config, memory_config())?;
    // Every line fills the file: each decision's file is rotated for the next.
    let mut env = logging_to(&log);
    env.push(("HANDOFF__ROUTER__DECISION_LOG__MAX_BYTES", "1".to_owned()));
    env.push(("HANDOFF__ROUTER__DECISION_LOG__KEEP", "20".to_owned()));
    let files = |log: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = (1..=20)
            .rev()
            .map(|n| std::path::PathBuf::from(format!("{}.{n}", log.display())))
            .filter(|file| file.exists())
            .collect();
        files.push(log.to_path_buf());
        files
    };
    let result = async {
        let (_running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &env)?;
        let gateway = field(&line, "gateway")?.parse()?;
        for session in ["f-1", "f-2", "f-3", "f-4"] {
            request(gateway, "POST", &signed_uri(now_secs()), body(session)).await?;
            // Let the writer ask for the state and start the next file.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut texts = Vec::new();
        for _ in 0..100 {
            texts = files(&log)
                .iter()
                .map(std::fs::read_to_string)
                .collect::<Result<Vec<_>, _>>()?;
            if texts
                .iter()
                .map(|t| t.matches("\"decision\"").count())
                .sum::<usize>()
                == 4
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut replays = Vec::new();
        for file in files(&log) {
            let report = replay(&[
                "--config".as_ref(),
                config.as_os_str(),
                "--log".as_ref(),
                file.as_os_str(),
                "--format".as_ref(),
                "json".as_ref(),
            ])?;
            replays.push(serde_json::from_str::<serde_json::Value>(&report)?);
        }
        Ok::<_, crate::support::Error>((texts, replays))
    }
    .await;
    let (texts, replays) = result?;

    assert!(texts.len() >= 3, "the log rotated: {texts:?}");
    let mut held = Vec::new();
    for text in &texts {
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().ok_or("an empty file")?)?;
        assert_eq!(first["kind"], "state", "{text}");
        held.push(first["apps"][0]["seats"].as_array().map_or(0, Vec::len));
    }
    // The states follow the seats as they filled: none at start, all three at the end.
    assert_eq!(held.first(), Some(&0), "{held:?}");
    assert_eq!(held.last(), Some(&3), "{held:?}");
    assert!(held.windows(2).all(|w| w[0] <= w[1]), "{held:?}");
    // Each file alone replays as it happened, from the seats it begins with.
    for report in &replays {
        assert_eq!(report["states"], 1, "{report}");
        assert_eq!(report["changed_total"], 0, "{report}");
    }
    Ok(())
}
