//! The console in a real headless Chromium (Debian's `chromium` and `chromium-driver`),
//! driven over WebDriver: sign in, watch the floor follow a callback and a session event,
//! open a decision's explanation from the live tail, set an agent away and see the next
//! callback skip them, and a read-only token without the buttons. Each test starts its own
//! `chromedriver --port=0`, so they run in parallel; a failing test saves a screenshot in
//! `target/tmp/`. With `UPDATE_SCREENSHOTS=1` the pages are saved as README's screenshots
//! (`docs/console/*.png`).

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{
    CONFIG, Error, Running, TestResult, body, launch, now_secs, signed_uri, tool,
};

const OPS: &str = "browser-ops-token-0123456789";
const VIEWER: &str = "browser-viewer-token-0123456789";

fn config() -> String {
    format!(
        "{CONFIG}\n[[router.auth.tokens]]\nname = \"ops\"\ntoken = \"{OPS}\"\ngrants = [\"all\"]\n\n\
         [[router.auth.tokens]]\nname = \"wall\"\ntoken = \"{VIEWER}\"\ngrants = [\"ListAgents\", \"GetStatus\"]\n"
    )
}

/// A `chromedriver` of the test's own, on the port it chose itself.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Result<Option<Self>, Error> {
        if !tool(
            "chromedriver",
            "--version",
            "apt-get install chromium chromium-driver",
        )? {
            return Ok(None);
        }
        let mut child = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 40123."
        let port = loop {
            let line = lines.next().ok_or("chromedriver said nothing")??;
            if let Some(rest) = line.split("successfully on port ").nth(1) {
                break rest.trim_end_matches('.').trim().parse()?;
            }
        };
        // Keep reading so that chromedriver never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Some(Self { child, port }))
    }

    async fn browser(&self) -> Result<Client, Error> {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await?)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `steps` in a browser against a console of its own; on failure, a screenshot.
async fn in_browser<F, Fut>(name: &str, steps: F) -> TestResult
where
    F: FnOnce(Client, Running, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(Client, Running), (Client, Error)>>,
{
    in_browser_with(name, Vec::new(), steps).await
}

/// The same, with `extra` settings for the router.
async fn in_browser_with<F, Fut>(
    name: &str,
    extra: Vec<(&'static str, String)>,
    steps: F,
) -> TestResult
where
    F: FnOnce(Client, Running, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = Result<(Client, Running), (Client, Error)>>,
{
    let Some(driver) = Driver::start()? else {
        return Ok(());
    };
    let mut env = vec![("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
    env.extend(extra);
    let running = launch(&config(), &env, true, true).await?;
    let console = running.console.ok_or("no console")?;
    let browser = driver.browser().await?;
    match steps(browser, running, console).await {
        Ok((browser, running)) => {
            browser.close().await?;
            running.shutdown().await
        }
        Err((browser, error)) => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
            std::fs::create_dir_all(&dir)?;
            if let Ok(png) = browser.screenshot().await {
                let path = dir.join(format!("console-{name}-failed.png"));
                std::fs::write(&path, png)?;
                eprintln!("screenshot of the failure: {}", path.display());
            }
            let _ = browser.close().await;
            Err(error)
        }
    }
}

/// Saves the page as README's screenshot `name`, when asked to.
async fn screenshot(browser: &Client, name: &str) -> Result<(), Error> {
    if std::env::var_os("UPDATE_SCREENSHOTS").is_none() {
        return Ok(());
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.png")), browser.screenshot().await?)?;
    Ok(())
}

async fn sign_in(browser: &Client, console: SocketAddr, token: &str) -> Result<(), Error> {
    browser.goto(&format!("http://{console}/floor")).await?;
    // Sent to the sign-in first.
    browser
        .wait()
        .for_element(Locator::Id("token"))
        .await?
        .send_keys(token)
        .await?;
    browser
        .find(Locator::Css("form[action='/signin'] button"))
        .await?
        .click()
        .await?;
    browser.wait().for_element(Locator::Id("floor")).await?;
    Ok(())
}

/// Waits (up to `within`) until the element at `css` holds `text`.
async fn until_text(
    browser: &Client,
    css: &str,
    text: &str,
    within: Duration,
) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = match browser.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if now.contains(text) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("{css} never showed {text:?} (it shows {now:?})").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Tencent's session event for `session`, through the gateway.
async fn event(running: &Running, session: &str, kind: &str, agent: &str) -> Result<(), Error> {
    let gateway = running.gateway.ok_or("no gateway")?;
    let uri = signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", "Desk.SessionEventNotify");
    let at = now_secs() * 1000 + 1000;
    let body = format!(
        r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"{session}","Event":"{kind}","EventTime":{at},"ChannelType":"SDK","ClientUserId":"user-{session}","AgentId":"{agent}"}}"#
    );
    let ack = crate::support::request(gateway, "POST", &uri, body).await?;
    if ack.json["ActionStatus"] != "OK" {
        return Err(format!("{ack:?}").into());
    }
    Ok(())
}

async fn callback(running: &Running, session: &str) -> Result<Vec<String>, Error> {
    let gateway = running.gateway.ok_or("no gateway")?;
    Ok(
        crate::support::request(gateway, "POST", &signed_uri(now_secs()), body(session))
            .await?
            .agents(),
    )
}

#[tokio::test]
async fn the_floor_follows_callbacks_and_events_within_two_seconds() -> TestResult {
    in_browser("floor", |browser, running, console| async move {
        let steps = async {
            sign_in(&browser, console, OPS).await?;
            until_text(
                &browser,
                "#floor td[data-count='seats']",
                "0 / 4",
                Duration::from_secs(2),
            )
            .await?;
            callback(&running, "f-1").await?;
            until_text(
                &browser,
                "#floor td[data-count='seats']",
                "1 / 4",
                Duration::from_secs(2),
            )
            .await?;
            event(&running, "f-1", "AgentAccept", "ann@example.com").await?;
            event(&running, "f-1", "SessionEnd", "ann@example.com").await?;
            until_text(
                &browser,
                "#floor td[data-count='seats']",
                "0 / 4",
                Duration::from_secs(2),
            )
            .await?;
            callback(&running, "f-2").await?;
            until_text(
                &browser,
                "#floor td[data-count='seats']",
                "1 / 4",
                Duration::from_secs(2),
            )
            .await?;
            screenshot(&browser, "floor").await?;
            Ok::<_, Error>(())
        };
        match steps.await {
            Ok(()) => Ok((browser, running)),
            Err(err) => Err((browser, err)),
        }
    })
    .await
}

#[tokio::test]
async fn the_tail_opens_an_explanation_and_setting_an_agent_away_moves_the_next_callback()
-> TestResult {
    in_browser("actions", |browser, running, console| async move {
        let steps = async {
            sign_in(&browser, console, OPS).await?;
            browser
                .goto(&format!("http://{console}/decisions?app=1400000001"))
                .await?;
            // The stream is open once the page has run its scripts.
            tokio::time::sleep(Duration::from_millis(500)).await;
            callback(&running, "t-1").await?;
            until_text(&browser, "#tail", "t-1", Duration::from_secs(2)).await?;
            screenshot(&browser, "decisions").await?;
            browser
                .find(Locator::Css("#tail a[href^='/explain']"))
                .await?
                .click()
                .await?;
            until_text(&browser, "main", "Rules tried", Duration::from_secs(2)).await?;
            until_text(&browser, "main", "cy@example.com", Duration::from_secs(2)).await?;
            screenshot(&browser, "explain").await?;

            browser
                .goto(&format!("http://{console}/agents?app=1400000001"))
                .await?;
            browser
                .find(Locator::Css(
                    "button[aria-label='Set ann@example.com away']",
                ))
                .await?
                .click()
                .await?;
            until_text(
                &browser,
                "p.done",
                "ann@example.com set away",
                Duration::from_secs(2),
            )
            .await?;
            until_text(
                &browser,
                "#agent-ann\\@example\\.com td[data-status]",
                "away",
                Duration::from_secs(2),
            )
            .await?;
            screenshot(&browser, "agents").await?;
            let next = callback(&running, "t-2").await?;
            if next.iter().any(|agent| agent == "ann@example.com") {
                return Err(format!("ann is away, yet offered: {next:?}").into());
            }
            Ok::<_, Error>(())
        };
        match steps.await {
            Ok(()) => Ok((browser, running)),
            Err(err) => Err((browser, err)),
        }
    })
    .await
}

#[tokio::test]
async fn a_read_only_token_sees_the_floor_without_buttons() -> TestResult {
    in_browser("read-only", |browser, running, console| async move {
        let steps = async {
            sign_in(&browser, console, VIEWER).await?;
            until_text(&browser, "form.who", "read-only", Duration::from_secs(2)).await?;
            browser
                .goto(&format!("http://{console}/agents?app=1400000001"))
                .await?;
            until_text(&browser, "main", "ann@example.com", Duration::from_secs(2)).await?;
            let buttons = browser
                .find_all(Locator::Css("form[action='/agents/status']"))
                .await?;
            if !buttons.is_empty() {
                return Err(format!("{} action forms for a read-only token", buttons.len()).into());
            }
            Ok::<_, Error>(())
        };
        match steps.await {
            Ok(()) => Ok((browser, running)),
            Err(err) => Err((browser, err)),
        }
    })
    .await
}

#[tokio::test]
async fn what_if_replays_a_draft_and_shows_its_report() -> TestResult {
    let dir = std::env::temp_dir().join(format!("handoff-browser-whatif-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("drafts"))?;
    std::fs::write(
        dir.join("drafts/ann-out.toml"),
        CONFIG.replacen("capacity = 2\n", "capacity = 2\nstatus = \"offline\"\n", 1),
    )?;
    let log = dir.join("decisions.jsonl");
    let extra = vec![
        (
            "HANDOFF__ROUTER__DECISION_LOG__PATH",
            log.display().to_string(),
        ),
        (
            "HANDOFF__ROUTER__CONSOLE__DRAFTS",
            dir.join("drafts").display().to_string(),
        ),
    ];
    let result = in_browser_with("whatif", extra, |browser, running, console| async move {
        let steps = async {
            sign_in(&browser, console, OPS).await?;
            callback(&running, "w-1").await?;
            // The writer is a thread of its own: the decision is in the file soon after.
            for _ in 0..50 {
                if std::fs::read_to_string(&log).is_ok_and(|text| text.contains("\"w-1\"")) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            browser
                .goto(&format!("http://{console}/whatif?app=1400000001"))
                .await?;
            browser
                .find(Locator::Css(
                    "select[name='draft'] option[value='ann-out.toml']",
                ))
                .await?
                .click()
                .await?;
            browser
                .find(Locator::Css("form[action='/whatif'] button"))
                .await?
                .click()
                .await?;
            until_text(
                &browser,
                "#report-summary",
                "1 decided differently",
                Duration::from_secs(5),
            )
            .await?;
            until_text(
                &browser,
                "table.changed",
                "bob@example.com",
                Duration::from_secs(2),
            )
            .await?;
            screenshot(&browser, "whatif").await?;
            Ok::<_, Error>(())
        };
        match steps.await {
            Ok(()) => Ok((browser, running)),
            Err(err) => Err((browser, err)),
        }
    })
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A form sent without its CSRF token (as a page of another site would forge it) is
/// refused, and the agent's status stays.
#[tokio::test]
async fn an_action_without_its_csrf_token_is_refused_in_the_browser() -> TestResult {
    in_browser("csrf", |browser, running, console| async move {
        let steps = async {
            sign_in(&browser, console, OPS).await?;
            browser.goto(&format!("http://{console}/agents?app=1400000001")).await?;
            browser
                .execute(
                    "const button = document.querySelector(\"button[aria-label='Set ann@example.com away']\");\
                     button.form.querySelector(\"input[name='csrf']\").value = '';\
                     button.click();",
                    Vec::new(),
                )
                .await?;
            until_text(&browser, "body", "CSRF token is missing", Duration::from_secs(2)).await?;
            browser.goto(&format!("http://{console}/agents?app=1400000001")).await?;
            until_text(&browser, "#agent-ann\\@example\\.com td[data-status]", "available", Duration::from_secs(2)).await?;
            Ok::<_, Error>(())
        };
        match steps.await {
            Ok(()) => Ok((browser, running)),
            Err(err) => Err((browser, err)),
        }
    })
    .await
}
