//! The `handoff` binary itself, as the README runs it: `check`, serving, SIGHUP, SIGTERM.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use handoff_proto::router::v1::{
    AssignHumanRequest, ExplainAssignmentRequest, router_service_client::RouterServiceClient,
};

use crate::support::{Error, TestResult};

const BIN: &str = env!("CARGO_BIN_EXE_handoff");

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/handoff.example.toml")
}

/// A file of its own under the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> std::io::Result<Self> {
        let path = std::env::temp_dir().join(format!("handoff-{}-{name}", std::process::id()));
        std::fs::write(&path, text)?;
        Ok(Self(path))
    }

    /// Where a test's embedded store lives: beside the config, removed with it.
    fn store(&self) -> PathBuf {
        self.0.with_extension("redb")
    }
}

/// The embedded store's journal directory beside its file.
fn journal(store: &std::path::Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let store = self.store();
        let _ = std::fs::remove_file(&store);
        let _ = std::fs::remove_dir_all(journal(&store));
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn check_accepts_the_example_and_names_what_is_wrong_in_a_bad_file() -> TestResult {
    let ok = Command::new(BIN)
        .args(["check", "--config"])
        .arg(example())
        .output()?;
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8(ok.stdout)?.contains("ok (1 apps)"));

    let text =
        std::fs::read_to_string(example())?.replace("customer.tier == \"vip\"", "customer.tier ==");
    let stderr = refused_by_check("bad-check.toml", &text)?;
    assert!(
        stderr.contains("apps[0].rules[0].when: CEL does not compile"),
        "{stderr}"
    );

    // Compiles, but can never decide: a text field against a number, and a text where
    // `||` needs a bool.
    let text = std::fs::read_to_string(example())?
        .replace("customer.tier == \"vip\"", "customer.tier == 3")
        .replace("customer.language == \"zh\"", "customer.language");
    let stderr = refused_by_check("never-check.toml", &text)?;
    assert!(
        stderr.contains("apps[0].rules[0].when: `customer.tier == 3` compares text with a number"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps[0].rules[2].when: `customer.language ||"),
        "{stderr}"
    );
    Ok(())
}

/// `check` run on `text` (written as `name`): it must exit 1; what it printed on stderr.
fn refused_by_check(name: &str, text: &str) -> Result<String, Error> {
    let file = TempFile::new(name, text)?;
    let refused = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&file.0)
        .output()?;
    assert_eq!(refused.status.code(), Some(1));
    Ok(String::from_utf8(refused.stderr)?)
}

/// Removes a directory on drop.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The binary serving `config` on port 0, with the addresses it logged.
struct Running {
    child: Child,
    router: String,
    gateway: String,
}

impl Running {
    fn start(config: &TempFile) -> Result<Self, Error> {
        Self::start_at(&config.0, &config.store())
    }

    /// Serves the config at `config` (which may be a symlink), keeping state in `store`.
    fn start_at(config: &Path, store: &Path) -> Result<Self, Error> {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .env("HANDOFF__ROUTER__STORE__PATH", store)
            .env("HANDOFF__ROUTER__LISTEN", "127.0.0.1:0")
            .env("HANDOFF__GATEWAY__LISTEN", "127.0.0.1:0")
            .env("HANDOFF__ROUTER__CONSOLE__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let field = |line: &str, name: &str| {
            let rest = line.split(&format!("{name}=")).nth(1)?;
            rest.split_whitespace().next().map(str::to_owned)
        };
        let (router, gateway) = loop {
            let line = lines.next().ok_or("exited before listening")??;
            if let (Some(router), Some(gateway)) = (field(&line, "router"), field(&line, "gateway"))
            {
                break (router, gateway);
            }
        };
        // Keep draining the log so the child never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            router,
            gateway,
        })
    }

    fn signal(&self, name: &str) -> Result<(), Error> {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()?;
        if !status.success() {
            return Err(format!("kill -{name} failed").into());
        }
        Ok(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example config's token for operators (`grants = ["all"]`).
const OPS_TOKEN: &str = "Bearer try-handoff-ops-token";

/// A router client presenting the example config's operator token.
async fn ops_client(
    router: &str,
) -> Result<
    RouterServiceClient<
        tonic::service::interceptor::InterceptedService<
            tonic::transport::Channel,
            impl tonic::service::Interceptor + use<>,
        >,
    >,
    Error,
> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{router}"))?
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = OPS_TOKEN.parse()?;
    Ok(RouterServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        },
    ))
}

async fn explained_group(router: &str) -> Result<Option<u64>, Error> {
    let mut client = ops_client(router).await?;
    let request = ExplainAssignmentRequest {
        handoff: Some(AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: "probe".into(),
            client_user_id: "probe".into(),
            ..AssignHumanRequest::default()
        }),
        at: None,
    };
    let answer = client
        .explain_assignment(request)
        .await?
        .into_inner()
        .answer;
    Ok(answer.and_then(|a| a.agent_group_id))
}

/// POSTs a callback for app 1400000001 signed with `token`; the HTTP status.
fn post_signed(gateway: &str, token: &str) -> Result<u16, Error> {
    use std::io::{Read, Write};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        .to_string();
    let sign = crate::support::sign(token, &now);
    let body = crate::support::body("rotation");
    let request = format!(
        "POST /?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&Sign={sign}&RequestTime={now} HTTP/1.1\r\n\
         Host: {gateway}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(gateway)?;
    stream.write_all(request.as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply.split_whitespace().nth(1).ok_or("no status line")?;
    Ok(status.parse()?)
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops_cleanly() -> TestResult {
    let config = |group: u64| {
        let token = if group == 6521 {
            "old-token"
        } else {
            "new-token"
        };
        format!(
            "[[apps]]\nsdk_app_id = 1400000001\ntoken = \"{token}\"\n[[apps.groups]]\nid = {group}\nname = \"g\"\n\
             [[apps.agents]]\nid = \"ann@example.com\"\ngroups = [{group}]\ncapacity = 9\n"
        )
    };
    // The binary reads the config through a symlink in a directory of its own, and the test
    // rewrites the target elsewhere: the file watcher (on the symlink's directory) sees
    // nothing, so only SIGHUP can reload it.
    let file = TempFile::new("sighup.toml", &config(6521))?;
    let link_dir = std::env::temp_dir().join(format!("handoff-{}-sighup-link", std::process::id()));
    std::fs::create_dir_all(&link_dir)?;
    let _cleanup = RemoveDir(link_dir.clone());
    let link = link_dir.join("handoff.toml");
    std::os::unix::fs::symlink(&file.0, &link)?;
    let mut running = Running::start_at(&link, &file.store())?;
    assert_eq!(explained_group(&running.router).await?, Some(6521));
    let gateway = running.gateway.clone();
    let status = tokio::task::spawn_blocking(move || post_signed(&gateway, "old-token")).await??;
    assert_eq!(status, 200);

    std::fs::write(&file.0, config(7000))?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        explained_group(&running.router).await?,
        Some(6521),
        "reloaded before SIGHUP"
    );
    running.signal("HUP")?;
    let mut group = None;
    for _ in 0..100 {
        group = explained_group(&running.router).await?;
        if group == Some(7000) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(group, Some(7000));
    // The gateway took the rotated token with the same reload.
    let gateway = running.gateway.clone();
    let statuses = tokio::task::spawn_blocking(move || -> Result<(u16, u16), Error> {
        Ok((
            post_signed(&gateway, "old-token")?,
            post_signed(&gateway, "new-token")?,
        ))
    })
    .await??;
    assert_eq!(statuses, (401, 200));

    running.signal("TERM")?;
    let mut status = None;
    for _ in 0..200 {
        status = running.child.try_wait()?;
        if status.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_embedded_store_keeps_every_acknowledged_write_across_sigkill() -> TestResult {
    use handoff_proto::router::v1::{
        Agent, AgentStatus, Customer, ListAgentsRequest, SetAgentStatusRequest, StickyReason,
        UpsertAgentRequest, UpsertCustomerRequest,
    };
    let config = "[[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = 1\nname = \"g\"\n\
                  [[apps.agents]]\nid = \"ann@example.com\"\ngroups = [1]\ncapacity = 5\n\
                  [[apps.agents]]\nid = \"bob@example.com\"\ngroups = [1]\ncapacity = 5\n";
    let file = TempFile::new("sigkill.toml", config)?;
    let assign = |session: &str, customer: &str| AssignHumanRequest {
        sdk_app_id: 1_400_000_001,
        session_id: session.into(),
        client_user_id: customer.into(),
        ..AssignHumanRequest::default()
    };

    let mut before = Vec::new();
    {
        let mut running = Running::start(&file)?;
        let mut client = ops_client(&running.router).await?;
        for n in 0..4 {
            let answer = client
                .assign_human(assign(&format!("s-{n}"), &format!("c-{n}")))
                .await?
                .into_inner();
            before.push(answer);
        }
        client
            .upsert_agent(UpsertAgentRequest {
                sdk_app_id: 1_400_000_001,
                agent: Some(Agent {
                    id: "zoe@example.com".into(),
                    group_ids: vec![1],
                    capacity: 2,
                    ..Agent::default()
                }),
            })
            .await?;
        client
            .set_agent_status(SetAgentStatusRequest {
                sdk_app_id: 1_400_000_001,
                agent_id: "bob@example.com".into(),
                status: AgentStatus::Away.into(),
                ..SetAgentStatusRequest::default()
            })
            .await?;
        client
            .upsert_customer(UpsertCustomerRequest {
                sdk_app_id: 1_400_000_001,
                customer: Some(Customer {
                    id: "vip".into(),
                    owner_agent_id: "zoe@example.com".into(),
                    ..Customer::default()
                }),
            })
            .await?;
        // std's kill is SIGKILL: no chance to flush or close anything.
        running.child.kill()?;
        running.child.wait()?;
    }

    let running = Running::start(&file)?;
    let mut client = ops_client(&running.router).await?;
    // Retries of acknowledged sessions replay the very same answers, counted once.
    for (n, earlier) in before.iter().enumerate() {
        let again = client
            .assign_human(assign(&format!("s-{n}"), &format!("c-{n}")))
            .await?
            .into_inner();
        assert_eq!(again.agent_ids, earlier.agent_ids, "s-{n}");
        assert!(
            again.decision.is_some_and(|d| d.replayed),
            "s-{n} was not replayed"
        );
    }
    let agents = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner()
        .agents;
    let rows: Vec<(String, i32, u32)> = agents
        .iter()
        .filter_map(|row| {
            row.agent
                .as_ref()
                .map(|a| (a.id.clone(), a.status, row.active))
        })
        .collect();
    assert_eq!(
        rows,
        [
            (
                "ann@example.com".to_owned(),
                AgentStatus::Available as i32,
                2
            ),
            ("bob@example.com".to_owned(), AgentStatus::Away as i32, 2),
            (
                "zoe@example.com".to_owned(),
                AgentStatus::Available as i32,
                0
            ),
        ]
    );
    // The pushed customer and their owner survived too.
    let explained = client
        .explain_assignment(ExplainAssignmentRequest {
            handoff: Some(assign("after", "vip")),
            at: None,
        })
        .await?
        .into_inner();
    assert_eq!(
        explained
            .candidates
            .first()
            .map(|c| (c.agent_id.as_str(), c.sticky())),
        Some(("zoe@example.com", StickyReason::Owner))
    );
    // And a returning customer still finds their previous agent.
    let previous = before[0]
        .decision
        .as_ref()
        .map(|d| d.reserved_agent_id.clone())
        .unwrap_or_default();
    let explained = client
        .explain_assignment(ExplainAssignmentRequest {
            handoff: Some(assign("later", "c-0")),
            at: None,
        })
        .await?
        .into_inner();
    assert_eq!(
        explained.candidates.first().map(|c| c.agent_id.clone()),
        Some(previous)
    );
    Ok(())
}

#[test]
fn json_logs_are_one_object_per_line_with_the_fields_as_keys() -> TestResult {
    let env = crate::traces::own_ports(&[
        ("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned()),
        ("HANDOFF_LOG_FORMAT", "json".to_owned()),
    ]);
    // The listening line is the first one, and the one `spawn` waits for.
    let (_running, first) = crate::traces::spawn(BIN, &example(), &env)?;
    let line: serde_json::Value =
        serde_json::from_str(&first).map_err(|err| format!("not a JSON line ({err}): {first}"))?;
    assert_eq!(line["message"], "handoff listening", "{first}");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["store"], "memory");
    assert_eq!(line["apps"], "1400000001");
    assert!(
        line["router"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{first}"
    );
    Ok(())
}

#[tokio::test]
async fn a_reload_that_changes_a_startup_setting_names_it() -> TestResult {
    let text = |limit: u32| {
        format!(
            "[gateway]\nmax_body_bytes = {limit}\n[router.store]\nkind = \"memory\"\n\
             [[apps]]\nsdk_app_id = 1400000001\ntoken = \"t\"\n[[apps.groups]]\nid = 1\nname = \"g\"\n\
             [[apps.agents]]\nid = \"ann@example.com\"\ngroups = [1]\n"
        )
    };
    let file = TempFile::new("restart-keys.toml", &text(16384))?;
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&file.0)
        .env("HANDOFF__ROUTER__LISTEN", "127.0.0.1:0")
        .env("HANDOFF__GATEWAY__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match received.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    wait_for("handoff listening").ok_or("never started")?;
    // At once, before it is serving: a SIGHUP that early is kept for the reload watcher,
    // not the end of the process.
    std::fs::write(&file.0, text(32768))?;
    let signal = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()?;
    let warned = wait_for("take effect only after a restart");
    let alive = child.try_wait()?.is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(signal.success());
    assert!(alive, "an early SIGHUP ended the process");
    let warned = warned.ok_or("no warning about a setting that needs a restart")?;
    assert!(warned.contains("gateway.max_body_bytes"), "{warned}");
    assert!(!warned.contains("gateway.listen"), "{warned}");
    Ok(())
}

#[test]
fn an_app_without_a_callback_token_is_warned_of_at_start() -> TestResult {
    let config = std::env::temp_dir().join(format!("handoff-unsigned-{}.toml", std::process::id()));
    std::fs::write(&config, crate::traces::memory_config())?;
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .envs(crate::traces::own_ports(&[]))
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    let mut warning = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        match seen.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) if line.contains("without a callback token") => {
                warning = Some(line);
                break;
            }
            Ok(_) | Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&config);
    // The tests' config signs app 1400000001, not 1400000002.
    let warning = warning.ok_or("no warning of the unsigned app")?;
    assert!(
        warning.contains("WARN") && warning.contains("1400000002"),
        "{warning}"
    );
    assert!(!warning.contains("1400000001"), "{warning}");
    Ok(())
}
