//! Starting the stack and talking to it.

use std::{
    net::SocketAddr,
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use handoff::{Application, Listeners, Reloader};
use handoff_core::shutdown::Stop;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The app, token and agents most tests use.
pub const CONFIG: &str = r#"
[gateway]
path = "/tencent/callback"
router_timeout = "500ms"

[[apps]]
sdk_app_id = 1400000001
token = "xxxxyyyy"
fallback_group_id = 9000
[[apps.groups]]
id = 6521
name = "general"
[[apps.agents]]
id = "ann@example.com"
groups = [6521]
capacity = 2
[[apps.agents]]
id = "bob@example.com"
groups = [6521]
capacity = 1
[[apps.agents]]
id = "cy@example.com"
groups = [6521]
status = "offline"

[[apps]]
sdk_app_id = 1400000002
[[apps.groups]]
id = 7000
name = "unsigned"
[[apps.agents]]
id = "dee@example.com"
groups = [7000]
"#;

/// The TOML of app 1400000001 with one group and `agents` (id, capacity) in it: `head` is
/// what comes before the app (`[router]`, `[gateway]`), `keys` the app's own keys after its
/// `sdk_app_id`. The tests' floors differ in those and nothing else.
pub fn one_app(head: &str, keys: &str, group: (u64, &str), agents: &[(&str, u32)]) -> String {
    let mut text = format!(
        "{head}\n[[apps]]\nsdk_app_id = 1400000001\n{keys}\n[[apps.groups]]\nid = {}\nname = \"{}\"\n",
        group.0, group.1
    );
    for (id, capacity) in agents {
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"{id}\"\ngroups = [{}]\ncapacity = {capacity}\n",
            group.0
        ));
    }
    text
}

/// A running router and gateway, built as the binaries build them; both stop when this is
/// dropped.
pub struct Stack {
    /// The gateway's HTTP address.
    pub http: SocketAddr,
    /// The router's gRPC address.
    pub grpc: SocketAddr,
    /// Applies a changed config to the running parts, as a reload does.
    pub reloader: Reloader,
    stop: Stop,
    /// The router's own stop, when it runs apart from the gateway.
    router_stop: Option<Stop>,
}

impl Stack {
    /// Router and gateway over `config`, the router keeping its state in memory.
    pub async fn start(config: &str) -> Result<Self, Error> {
        let env = [("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
        let running = launch(config, &env, true, true).await?;
        Ok(Self {
            http: running.gateway.ok_or("no gateway")?,
            grpc: running.router.ok_or("no router")?,
            reloader: running.reloader,
            stop: running.stop,
            router_stop: None,
        })
    }

    /// Router and gateway over `config` as two deployments apart: the router alone (state
    /// in memory) and a gateway alone asking it over gRPC, as `handoff-router` and
    /// `handoff-gateway` run.
    pub async fn apart(config: &str) -> Result<Self, Error> {
        let env = [("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
        let router = launch(config, &env, true, false).await?;
        let grpc = router.router.ok_or("no router")?;
        let mut stack = Self::gateway_only(config, grpc).await?;
        stack.router_stop = Some(router.stop);
        Ok(stack)
    }

    /// A gateway alone over `config`, asking the router at `router`.
    pub async fn gateway_only(config: &str, router: SocketAddr) -> Result<Self, Error> {
        let env = [("HANDOFF__GATEWAY__ROUTER_URL", format!("http://{router}"))];
        let running = launch(config, &env, false, true).await?;
        Ok(Self {
            http: running.gateway.ok_or("no gateway")?,
            grpc: router,
            reloader: running.reloader,
            stop: running.stop,
            router_stop: None,
        })
    }

    /// POSTs `body` to `path_and_query` on the gateway.
    pub async fn post(&self, path_and_query: &str, body: &str) -> Result<Reply, Error> {
        self.request("POST", path_and_query, body.to_owned()).await
    }

    /// Sends any request to the gateway.
    pub async fn request(
        &self,
        method: &str,
        path_and_query: &str,
        body: String,
    ) -> Result<Reply, Error> {
        request(self.http, method, path_and_query, body).await
    }
}

/// Sends a request to the gateway at `http` and reads its JSON answer.
pub async fn request(
    http: SocketAddr,
    method: &str,
    path_and_query: &str,
    body: String,
) -> Result<Reply, Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{http}{path_and_query}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.into_body().collect().await?.to_bytes();
    let json = serde_json::from_slice(&bytes)
        .map_err(|err| format!("not JSON ({err}): {}", String::from_utf8_lossy(&bytes)))?;
    Ok(Reply {
        status,
        content_type,
        json,
    })
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(router) = &self.router_stop {
            router.stop();
        }
    }
}

/// Parts of the system running in this process, as the binaries run them.
pub struct Running {
    /// The router's gRPC address, when it runs.
    pub router: Option<SocketAddr>,
    /// The gateway's HTTP address, when it runs.
    pub gateway: Option<SocketAddr>,
    /// The router's metrics address, when it runs.
    pub metrics: Option<SocketAddr>,
    /// The router's console address, when it runs.
    pub console: Option<SocketAddr>,
    /// Applies a changed config to the running parts, as a reload does.
    pub reloader: Reloader,
    /// Stops them.
    pub stop: Stop,
    /// The run, which ends once they have stopped.
    pub run: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops the parts and waits until they have let go of their listeners and store.
    pub async fn shutdown(self) -> Result<(), Error> {
        self.stop.stop();
        self.run.await?;
        Ok(())
    }
}

/// Builds the parts asked for over `config` (with `env`'s overrides) on port-0 listeners
/// through the binaries' [`Application`], and runs them until `stop`.
pub async fn launch(
    config: &str,
    env: &[(&str, String)],
    router: bool,
    gateway: bool,
) -> Result<Running, Error> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    let config = handoff_core::config::parse(config, Path::new(ORIGIN), env)?;
    let listeners = Listeners {
        router: if router {
            Some(TcpListener::bind("127.0.0.1:0").await?)
        } else {
            None
        },
        gateway: if gateway {
            Some(TcpListener::bind("127.0.0.1:0").await?)
        } else {
            None
        },
        metrics: if router {
            Some(TcpListener::bind("127.0.0.1:0").await?)
        } else {
            None
        },
        console: if router {
            Some(TcpListener::bind("127.0.0.1:0").await?)
        } else {
            None
        },
    };
    let metrics = listeners
        .metrics
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let console = listeners
        .console
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let app = Application::build(config, Path::new(ORIGIN), listeners).await?;
    let stop = Stop::new();
    let (router, gateway, reloader) = (app.router_addr(), app.gateway_addr(), app.reloader());
    let stopped = stop.stopped();
    let run = tokio::spawn(async move {
        if let Err(err) = app.run(stopped).await {
            eprintln!("handoff: {err}");
        }
    });
    Ok(Running {
        router,
        gateway,
        metrics,
        console,
        reloader,
        stop,
        run,
    })
}

/// The file name the tests' configs are reported under.
pub const ORIGIN: &str = "e2e.toml";

/// What the gateway answered.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub json: serde_json::Value,
}

impl Reply {
    /// Asserts a Tencent-shaped failure with this status and code.
    pub fn assert_fail(&self, status: u16, code: u64) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/json", "{self:?}");
        assert_eq!(self.json["ActionStatus"], "FAIL", "{self:?}");
        assert_eq!(self.json["ErrorCode"], code, "{self:?}");
        assert!(
            self.json["ErrorInfo"]
                .as_str()
                .is_some_and(|info| !info.is_empty()),
            "{self:?}"
        );
    }

    /// The AgentIdList.
    pub fn agents(&self) -> Vec<String> {
        self.json["AgentIdList"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Tencent's signature: lowercase hex of SHA-256(token + RequestTime).
pub fn sign(token: &str, request_time: &str) -> String {
    hex::encode(Sha256::digest(format!("{token}{request_time}")))
}

/// A signed callback URL for app 1400000001 at `request_time`.
pub fn signed_uri(request_time: u64) -> String {
    let time = request_time.to_string();
    format!(
        "/tencent/callback?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&ClientIP=203.0.113.7&OptPlatform=iOS&Sign={}&RequestTime={time}",
        sign("xxxxyyyy", &time)
    )
}

/// An OnAssignHuman body for `session`, from a customer of its own.
pub fn body(session: &str) -> String {
    body_from(session, &format!("user-{session}"))
}

/// An OnAssignHuman body for `session` from `customer`.
pub fn body_from(session: &str, customer: &str) -> String {
    format!(
        r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"{session}","ClientUserId":"{customer}","EventTime":1670574414123}}"#
    )
}

/// Whether ListAgents shows an agent added over gRPC on shift, before and after a reload
/// changes its app's time zone. The agent's shift has no zone of its own, so it is read in
/// the app's, and it covers the two hours around now in UTC: on shift while the app is in
/// UTC, off shift once a reload moves the app to `Pacific/Kiritimati` (UTC+14, no DST).
/// `config` must leave app 1400000001 in UTC (the default) and give it `group`.
pub async fn on_shift_across_a_zone_reload(
    config: &str,
    router: SocketAddr,
    reloader: &Reloader,
    group: u64,
) -> Result<(bool, bool), Error> {
    use handoff_proto::router::v1::{
        Agent, ListAgentsRequest, Schedule, UpsertAgentRequest,
        router_service_client::RouterServiceClient,
    };

    let minute_now = now_secs() / 60 % (24 * 60);
    let clock = |minute: u64| format!("{:02}:{:02}", minute / 60, minute % 60);
    let end = match (minute_now + 60) % (24 * 60) {
        0 => "24:00".to_owned(),
        minute => clock(minute),
    };
    let weekly = format!(
        "mon-sun {}-{end}",
        clock((minute_now + 23 * 60) % (24 * 60))
    );
    let mut client = RouterServiceClient::connect(format!("http://{router}")).await?;
    let agent = Agent {
        id: "zoe@example.com".into(),
        group_ids: vec![group],
        capacity: 1,
        shift: Some(Schedule {
            time_zone: String::new(),
            weekly: vec![weekly],
            closed: Vec::new(),
        }),
        ..Agent::default()
    };
    client
        .upsert_agent(UpsertAgentRequest {
            sdk_app_id: 1_400_000_001,
            agent: Some(agent),
        })
        .await?;
    let on_shift = |mut client: RouterServiceClient<_>| async move {
        let listed = client
            .list_agents(ListAgentsRequest {
                sdk_app_id: 1_400_000_001,
                group_id: None,
            })
            .await?
            .into_inner();
        listed
            .agents
            .iter()
            .find(|row| {
                row.agent
                    .as_ref()
                    .is_some_and(|a| a.id == "zoe@example.com")
            })
            .map(|row| row.on_shift)
            .ok_or_else(|| Error::from("zoe is not listed"))
    };
    let before = on_shift(client.clone()).await?;
    let moved = config.replacen(
        "sdk_app_id = 1400000001\n",
        "sdk_app_id = 1400000001\ntime_zone = \"Pacific/Kiritimati\"\n",
        1,
    );
    let moved = handoff_core::config::parse(&moved, Path::new(ORIGIN), Vec::new())?;
    reloader.apply(&moved, Path::new(ORIGIN))?;
    let after = on_shift(client).await?;
    Ok((before, after))
}

/// Whether the tool `name` (run with `version_arg` to see it is there) is installed. A test
/// without it cannot run: under CI (`CI` set, as `.ci/run` sets it) that fails the test;
/// elsewhere the test is skipped, which it says on stderr and records in
/// `target/tmp/skipped-tests` (the test command's summary reads "ok" either way, so
/// `.ci/run` prints and refuses any skip).
pub fn tool(name: &str, version_arg: &str, installs: &str) -> Result<bool, Error> {
    if std::process::Command::new(name)
        .arg(version_arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
    {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        return Err(format!("{name} is not installed ({installs})").into());
    }
    eprintln!("SKIPPED: {name} is not installed ({installs})");
    let skipped = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tests");
    let thread = std::thread::current();
    let line = format!("{}: no {name}\n", thread.name().unwrap_or("a test"));
    use std::io::Write;
    let _ = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(skipped)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    Ok(false)
}

/// A directory of a test's own under the system's temp dir, removed (with what the test
/// wrote in it) when dropped, also when the test fails.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// A new, empty directory named after `name`, this process and now.
    pub fn new(name: &str) -> Result<Self, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("handoff-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    /// A path in the directory.
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
