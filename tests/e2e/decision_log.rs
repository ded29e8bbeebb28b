//! The decision log: the all-in-one writes every decision (with the agents it considered)
//! and every state change, in order, as JSON lines, and nothing secret.

use std::time::Duration;

use crate::{
    support::{CONFIG, TestResult, body, now_secs, request, signed_uri},
    traces::{field, spawn},
};

#[tokio::test]
async fn decisions_and_changes_are_logged_in_order_as_json_lines() -> TestResult {
    let dir = std::env::temp_dir().join(format!("handoff-dlog-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("handoff.toml");
    let log = dir.join("decisions.jsonl");
    std::fs::write(
        &config,
        format!("[router.store]\nkind = \"memory\"\n{CONFIG}"),
    )?;
    let env = [
        ("HANDOFF__ROUTER__LISTEN", "127.0.0.1:0".to_owned()),
        ("HANDOFF__GATEWAY__LISTEN", "127.0.0.1:0".to_owned()),
        (
            "HANDOFF__ROUTER__DECISION_LOG__PATH",
            log.display().to_string(),
        ),
    ];
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
        // Written off the hot path: give the writer a moment.
        let mut lines = Vec::new();
        for _ in 0..50 {
            lines = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect();
            if lines.len() >= 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok::<_, crate::support::Error>((lines, reserved))
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let (lines, reserved) = result?;

    let entries: Vec<serde_json::Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line))
        .collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, ["decision", "session_event", "status"], "{lines:?}");
    let decision = &entries[0];
    assert_eq!(decision["app"], 1_400_000_001);
    assert_eq!(decision["session"], "d-1");
    assert_eq!(decision["customer"], "user-d-1");
    assert_eq!(decision["rule"], "default");
    assert_eq!(decision["reserved"], reserved.as_str());
    assert!(decision["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let considered = decision["considered"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        considered
            .iter()
            .any(|agent| agent["agent"] == reserved.as_str() && agent["active"] == 0),
        "the agents considered, as the decision saw them: {considered:?}"
    );
    assert_eq!(entries[1]["event"], "ended");
    assert_eq!(entries[1]["outcome"], "recorded");
    assert_eq!(entries[2]["agent"], "bob@example.com");
    assert_eq!(entries[2]["status"], "away");
    let everything = lines.join("\n");
    assert!(
        !everything.contains("xxxxyyyy"),
        "the app's token was logged"
    );
    Ok(())
}
