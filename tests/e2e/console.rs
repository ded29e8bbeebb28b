//! The operator console over HTTP, as a browser speaks to it: sign-in and its cookie, the
//! floor and agents pages, an action with and without its CSRF token, a read-only token's
//! refusal, the live tail of decisions over Server-Sent Events, and an explanation.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::support::{CONFIG, Running, TestResult, body, launch, now_secs, signed_uri};

const OPS: &str = "console-ops-token-0123456789";
const VIEWER: &str = "console-viewer-token-0123456789";

fn config() -> String {
    format!(
        "{CONFIG}\n[[router.auth.tokens]]\nname = \"ops\"\ntoken = \"{OPS}\"\ngrants = [\"all\"]\n\n\
         [[router.auth.tokens]]\nname = \"wall\"\ntoken = \"{VIEWER}\"\ngrants = [\"ListAgents\", \"GetStatus\"]\n"
    )
}

/// An answer: status, headers (lower-case names) and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// One request over its own connection, as a browser would send it.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
) -> Result<Answer, crate::support::Error> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: console\r\nConnection: close\r\n");
    if let Some(cookie) = cookie {
        request.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    let form = form.unwrap_or_default();
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            form.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(form);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("no status")?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim().to_lowercase(), value.trim().to_owned()))
        .collect();
    Ok(Answer {
        status,
        headers,
        body: body.to_owned(),
    })
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in with `token`; the cookie to send back.
async fn sign_in(addr: SocketAddr, token: &str) -> Result<String, crate::support::Error> {
    let answer = http(
        addr,
        "POST",
        "/signin",
        None,
        Some(&format!("token={}", form_encode(token))),
    )
    .await?;
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie = answer.header("set-cookie").ok_or("no cookie")?;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// The CSRF token a page's forms carry.
pub(crate) fn csrf_of(page: &str) -> Option<String> {
    let at = page.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(page[at..].split('"').next()?.to_owned())
}

async fn console() -> Result<(Running, SocketAddr), crate::support::Error> {
    let env = [("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
    let running = launch(&config(), &env, true, true).await?;
    let addr = running.console.ok_or("no console")?;
    Ok((running, addr))
}

#[tokio::test]
async fn signing_in_shows_the_floor_and_nothing_shows_without_it() -> TestResult {
    let (running, addr) = console().await?;
    let anonymous = http(addr, "GET", "/floor", None, None).await?;
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/signin"));
    let wrong = http(
        addr,
        "POST",
        "/signin",
        None,
        Some("token=not-a-token-at-all-000"),
    )
    .await?;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());

    let cookie = sign_in(addr, OPS).await?;
    let floor = http(addr, "GET", "/floor", Some(&cookie), None).await?;
    assert_eq!(floor.status, 200, "{}", floor.body);
    assert!(floor.body.contains("general"), "{}", floor.body);
    assert!(
        floor
            .header("content-security-policy")
            .is_some_and(|csp| csp.contains("script-src 'self'")),
        "scripts from the console itself only"
    );
    // The floor's own fragment moves with a callback: one seat taken.
    let gateway = running.gateway.ok_or("no gateway")?;
    let live = http(
        addr,
        "GET",
        "/floor/live?app=1400000001",
        Some(&cookie),
        None,
    )
    .await?;
    assert!(live.body.contains("0 / 4"), "{}", live.body);
    crate::support::request(gateway, "POST", &signed_uri(now_secs()), body("c-1")).await?;
    let live = http(
        addr,
        "GET",
        "/floor/live?app=1400000001",
        Some(&cookie),
        None,
    )
    .await?;
    assert!(live.body.contains("1 / 4"), "{}", live.body);
    assert!(
        live.body.contains(r#"data-count="assigned">1<"#),
        "the last minutes' assignments: {}",
        live.body
    );
    running.shutdown().await
}

#[tokio::test]
async fn setting_an_agent_away_needs_the_sessions_csrf_token_and_a_managing_token() -> TestResult {
    let (running, addr) = console().await?;
    let cookie = sign_in(addr, OPS).await?;
    let agents = http(addr, "GET", "/agents?app=1400000001", Some(&cookie), None).await?;
    assert!(agents.body.contains("ann@example.com"), "{}", agents.body);
    let csrf = csrf_of(&agents.body).ok_or("no csrf token in the page")?;
    let set_away =
        |csrf: &str| format!("app=1400000001&agent=ann%40example.com&status=away&csrf={csrf}");
    let forged = http(
        addr,
        "POST",
        "/agents/status",
        Some(&cookie),
        Some(&set_away("")),
    )
    .await?;
    assert_eq!(forged.status, 403, "no CSRF token: {}", forged.body);
    let done = http(
        addr,
        "POST",
        "/agents/status",
        Some(&cookie),
        Some(&set_away(&csrf)),
    )
    .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let page = http(addr, "GET", "/agents?app=1400000001", Some(&cookie), None).await?;
    assert!(
        page.body
            .contains(r#"data-status="away">away<br><span class="muted">by grpc, "#)
            && page.body.contains("s ago</span>"),
        "the status, who set it and since when: {}",
        page.body
    );
    // The next callback skips Ann.
    let gateway = running.gateway.ok_or("no gateway")?;
    let answer =
        crate::support::request(gateway, "POST", &signed_uri(now_secs()), body("c-2")).await?;
    assert_eq!(answer.agents(), ["bob@example.com"], "{answer:?}");

    // A token that may list agents but not set statuses sees no buttons, and is refused
    // anyway with its own session's CSRF token.
    let viewer = sign_in(addr, VIEWER).await?;
    let page = http(addr, "GET", "/agents?app=1400000001", Some(&viewer), None).await?;
    assert!(page.body.contains("read-only"), "{}", page.body);
    assert!(!page.body.contains("/agents/status"), "no action forms");
    let csrf = csrf_of(&page.body).ok_or("the sign-out form's csrf")?;
    let refused = http(
        addr,
        "POST",
        "/agents/status",
        Some(&viewer),
        Some(&set_away(&csrf)),
    )
    .await?;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("SetAgentStatus"), "{}", refused.body);
    running.shutdown().await
}

#[tokio::test]
async fn the_decisions_tail_streams_each_decision_as_it_is_made() -> TestResult {
    let (running, addr) = console().await?;
    let cookie = sign_in(addr, OPS).await?;
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!(
                "GET /decisions/stream?app=1400000001 HTTP/1.1\r\nHost: console\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    assert!(line.contains("200"), "{line}");
    // Subscribed once the head is out; a callback now is in the tail.
    let gateway = running.gateway.ok_or("no gateway")?;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    crate::support::request(gateway, "POST", &signed_uri(now_secs()), body("tail-1")).await?;
    let found = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                return Err::<String, crate::support::Error>("the stream ended".into());
            }
            if line.starts_with("data:") && line.contains("tail-1") {
                return Ok(line.clone());
            }
        }
    })
    .await??;
    assert!(
        found.contains("decision") && found.contains("ann@example.com"),
        "{found}"
    );
    running.shutdown().await
}

#[tokio::test]
async fn the_explain_page_shows_rules_targets_and_who_was_left_out() -> TestResult {
    let (running, addr) = console().await?;
    let cookie = sign_in(addr, OPS).await?;
    let page = http(
        addr,
        "GET",
        "/explain?app=1400000001&customer=walk-in",
        Some(&cookie),
        None,
    )
    .await?;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Rules tried"), "{}", page.body);
    assert!(
        page.body.contains("cy@example.com"),
        "the offline agent is listed: {}",
        page.body
    );
    assert!(
        page.body.contains("data-reason=\"offline\""),
        "{}",
        page.body
    );
    // A token without ExplainAssignment is refused the answer.
    let viewer = sign_in(addr, VIEWER).await?;
    let refused = http(
        addr,
        "GET",
        "/explain?app=1400000001&customer=walk-in",
        Some(&viewer),
        None,
    )
    .await?;
    assert_eq!(refused.status, 403);
    running.shutdown().await
}

/// A console whose router writes a decision log and offers `drafts` for what-if.
async fn console_with_log(
    name: &str,
) -> Result<(Running, SocketAddr, std::path::PathBuf), crate::support::Error> {
    let dir = std::env::temp_dir().join(format!("handoff-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("drafts"))?;
    // The draft: Ann signed out, so what went to her goes to Bob.
    std::fs::write(
        dir.join("drafts/ann-out.toml"),
        CONFIG.replacen("capacity = 2\n", "capacity = 2\nstatus = \"offline\"\n", 1),
    )?;
    let env = [
        ("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned()),
        (
            "HANDOFF__ROUTER__DECISION_LOG__PATH",
            dir.join("decisions.jsonl").display().to_string(),
        ),
        (
            "HANDOFF__ROUTER__CONSOLE__DRAFTS",
            dir.join("drafts").display().to_string(),
        ),
    ];
    let running = launch(&config(), &env, true, true).await?;
    let addr = running.console.ok_or("no console")?;
    Ok((running, addr, dir))
}

/// Waits until the decision log holds `text` (the writer is a thread of its own).
async fn logged(dir: &std::path::Path, text: &str) -> Result<(), crate::support::Error> {
    for _ in 0..50 {
        if std::fs::read_to_string(dir.join("decisions.jsonl")).is_ok_and(|log| log.contains(text))
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(format!("the decision log never held {text:?}").into())
}

#[tokio::test]
async fn a_stuck_seat_is_released_and_the_log_is_searched_by_session() -> TestResult {
    let (running, addr, dir) = console_with_log("release").await?;
    let cookie = sign_in(addr, OPS).await?;
    let gateway = running.gateway.ok_or("no gateway")?;
    crate::support::request(gateway, "POST", &signed_uri(now_secs()), body("stuck-1")).await?;
    let sessions = http(addr, "GET", "/sessions?app=1400000001", Some(&cookie), None).await?;
    assert!(
        sessions.body.contains("session-stuck-1"),
        "{}",
        sessions.body
    );
    let csrf = csrf_of(&sessions.body).ok_or("no csrf")?;
    let release = |csrf: &str| format!("app=1400000001&session=stuck-1&csrf={csrf}");
    let forged = http(
        addr,
        "POST",
        "/sessions/release",
        Some(&cookie),
        Some(&release("forged")),
    )
    .await?;
    assert_eq!(forged.status, 403);
    let done = http(
        addr,
        "POST",
        "/sessions/release",
        Some(&cookie),
        Some(&release(&csrf)),
    )
    .await?;
    assert_eq!(done.status, 303, "{}", done.body);
    let live = http(
        addr,
        "GET",
        "/floor/live?app=1400000001",
        Some(&cookie),
        None,
    )
    .await?;
    assert!(
        live.body.contains("0 / 4"),
        "the seat is free again: {}",
        live.body
    );

    logged(&dir, "console:ops").await?;
    let found = http(
        addr,
        "GET",
        "/decisions/search?app=1400000001&q=stuck-1",
        Some(&cookie),
        None,
    )
    .await?;
    assert_eq!(found.status, 200, "{}", found.body);
    assert!(
        found.body.contains("2 entries"),
        "the decision and the release: {}",
        found.body
    );
    assert!(
        found.body.contains("reconciled") && found.body.contains("console:ops"),
        "{}",
        found.body
    );
    running.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[tokio::test]
async fn what_if_replays_the_log_under_a_draft_and_shows_what_it_changes() -> TestResult {
    let (running, addr, dir) = console_with_log("whatif").await?;
    let cookie = sign_in(addr, OPS).await?;
    let gateway = running.gateway.ok_or("no gateway")?;
    crate::support::request(gateway, "POST", &signed_uri(now_secs()), body("w-1")).await?;
    logged(&dir, "\"session\":\"w-1\"").await?;
    let page = http(addr, "GET", "/whatif?app=1400000001", Some(&cookie), None).await?;
    assert!(
        page.body.contains("ann-out.toml"),
        "the drafts are offered: {}",
        page.body
    );
    let csrf = csrf_of(&page.body).ok_or("no csrf")?;
    let report = http(
        addr,
        "POST",
        "/whatif",
        Some(&cookie),
        Some(&format!(
            "app=1400000001&draft=ann-out.toml&hours=2&csrf={csrf}"
        )),
    )
    .await?;
    assert_eq!(report.status, 200, "{}", report.body);
    assert!(
        report.body.contains("1 decided differently"),
        "{}",
        report.body
    );
    assert!(
        report.body.contains("bob@example.com"),
        "w-1 goes to Bob: {}",
        report.body
    );
    // Only the folder's drafts: no path of the caller's choosing.
    let escape = http(
        addr,
        "POST",
        "/whatif",
        Some(&cookie),
        Some(&format!(
            "app=1400000001&draft=..%2Fdecisions.jsonl&csrf={csrf}"
        )),
    )
    .await?;
    assert!(
        escape.body.contains("is not one of the drafts"),
        "{}",
        escape.body
    );
    running.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
