//! Starting the stack and talking to it.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use handoff_gateway::Gateway;
use handoff_router::Router;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

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

/// A running router and gateway; both stop when this is dropped.
pub struct Stack {
    /// The gateway's HTTP address.
    pub http: SocketAddr,
    /// The router's gRPC address.
    pub grpc: SocketAddr,
    stop: watch::Sender<bool>,
    _tasks: Vec<JoinHandle<()>>,
}

impl Stack {
    /// Router and gateway over `config`, the gateway pointed at the router.
    pub async fn start(config: &str) -> Result<Self, Error> {
        let router_listener = TcpListener::bind("127.0.0.1:0").await?;
        let grpc = router_listener.local_addr()?;
        Self::start_with_router(config, grpc, Some(router_listener)).await
    }

    /// A gateway over `config` asking the router at `router`, plus the real router on
    /// `router_listener` when given.
    pub async fn start_with_router(
        config: &str,
        router: SocketAddr,
        router_listener: Option<TcpListener>,
    ) -> Result<Self, Error> {
        let env = [
            (
                "HANDOFF__GATEWAY__ROUTER_URL".to_owned(),
                format!("http://{router}"),
            ),
            (
                "HANDOFF__ROUTER__STORE__KIND".to_owned(),
                "memory".to_owned(),
            ),
        ];
        let config = handoff_core::config::parse(config, Path::new("e2e.toml"), env)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        if let Some(listener) = router_listener {
            let router = Router::open(&config, Path::new("e2e.toml")).await?;
            let serve = handoff_router::serve(
                listener,
                Arc::new(router),
                config.router.shutdown_grace.get(),
                until(stopped.clone()),
            );
            tasks.push(tokio::spawn(async move {
                if let Err(err) = serve.await {
                    eprintln!("router: {err}");
                }
            }));
        }
        let gateway_listener = TcpListener::bind("127.0.0.1:0").await?;
        let http = gateway_listener.local_addr()?;
        let serve = handoff_gateway::serve(
            gateway_listener,
            Arc::new(Gateway::from_config(&config)?),
            config.gateway.shutdown_grace.get(),
            until(stopped),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(err) = serve.await {
                eprintln!("gateway: {err}");
            }
        }));
        Ok(Self {
            http,
            grpc: router,
            stop,
            _tasks: tasks,
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
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.http))
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
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

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
