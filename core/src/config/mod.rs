//! The one TOML file that the router, the gateway and the all-in-one read.
//!
//! [`load`] reads the file, applies `HANDOFF__SECTION__KEY` overrides from an environment
//! passed in by the caller, deserializes it into [`Config`] and validates it whole. Every
//! error names the file, the key and the problem. Each binary reads only the sections it
//! needs, but all of them refuse a file that is wrong anywhere, so a typo cannot hide.

mod app;
mod duration;
mod load;
mod secret;
mod validate;

use std::net::SocketAddr;

use serde::Deserialize;

pub use app::{
    AgentConfig, AgentStatus, AppConfig, CustomerConfig, DEFAULT_CANDIDATES, DEFAULT_STICKY,
    DeskConfig, FairShareConfig, GroupConfig, MAX_CANDIDATES, MAX_FAIR_SHARE, MAX_HEADROOM,
    MAX_MISSES, MAX_TIERS, MAX_WEIGHT, OverflowWhen, RuleConfig, ScheduleConfig, Strategy,
    TargetConfig,
};
pub use duration::ConfigDuration;
pub use load::{ConfigError, ENV_PREFIX, load, parse};
pub use secret::Secret;

use crate::id::SdkAppId;

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[router]`: the gRPC routing service.
    #[serde(default)]
    pub router: RouterConfig,
    /// `[gateway]`: the Tencent callback endpoint.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// `[[apps]]`: one entry per Tencent SdkAppid served.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

impl Config {
    /// The settings read only when a binary starts, by key: what a reload of the file
    /// cannot change (the secret in a Redis URL compared, never shown).
    ///
    /// Every field of `[router]`, `[router.store]` and `[gateway]` is named here, either
    /// as a key needing a restart or as live (`_`, with where a reload applies it): a new
    /// field does not compile until it is classed, so no key is ever ignored by a reload
    /// in silence. Everything under `[[apps]]` is live (the catalog is rebuilt).
    pub fn startup_settings(&self) -> Vec<(&'static str, String)> {
        let RouterConfig {
            listen,
            assignment_ttl,
            max_session,
            shutdown_grace,
            metrics_listen,
            store,
            decision_log,
            // Live: `Router::reload` rebuilds the access policy.
            auth: _,
            tls,
            max_concurrent_calls,
            // Live: compiled into each app of the catalog a reload builds.
            max_event_age: _,
            max_clock_skew: _,
            capacity_margin: _,
            max_connections,
            preface_timeout,
            idle_timeout,
            keepalive,
            console,
        } = &self.router;
        let StoreConfig {
            kind,
            path,
            url,
            cluster,
            timeout,
            tls_ca,
            tls_cert,
            tls_key,
        } = store;
        let GatewayConfig {
            listen: gateway_listen,
            router_url,
            path: gateway_path,
            router_timeout,
            max_body_bytes,
            // Live: `Gateway::reload`.
            max_clock_skew: _,
            shutdown_grace: gateway_grace,
            deadline,
            header_timeout,
            max_connections: gateway_connections,
            max_header_bytes,
            max_in_flight,
            allow_from,
            trusted_proxies,
            router_token,
            router_ca,
            router_cert,
            router_key,
            tls: gateway_tls,
            // Live: `Gateway::reload`.
            session_events: _,
        } = &self.gateway;
        let debug = |value: &dyn std::fmt::Debug| format!("{value:?}");
        let secret = |value: &Option<Secret>| {
            value
                .as_ref()
                .map(|secret| secret.expose().to_owned())
                .unwrap_or_default()
        };
        vec![
            ("router.listen", listen.to_string()),
            ("router.assignment_ttl", debug(&assignment_ttl.get())),
            ("router.max_session", debug(&max_session.get())),
            ("router.shutdown_grace", debug(&shutdown_grace.get())),
            ("router.metrics_listen", debug(metrics_listen)),
            ("router.decision_log", debug(decision_log)),
            ("router.tls", debug(tls)),
            (
                "router.max_concurrent_calls",
                max_concurrent_calls.to_string(),
            ),
            ("router.max_connections", max_connections.to_string()),
            ("router.preface_timeout", debug(&preface_timeout.get())),
            ("router.idle_timeout", debug(&idle_timeout.get())),
            ("router.keepalive", debug(&keepalive.get())),
            ("router.console", debug(console)),
            ("router.store.kind", debug(kind)),
            ("router.store.path", path.display().to_string()),
            ("router.store.url", secret(url)),
            ("router.store.cluster", cluster.to_string()),
            ("router.store.timeout", debug(&timeout.get())),
            ("router.store.tls_ca", debug(tls_ca)),
            ("router.store.tls_cert", debug(tls_cert)),
            ("router.store.tls_key", debug(tls_key)),
            ("gateway.listen", gateway_listen.to_string()),
            ("gateway.router_url", router_url.clone()),
            ("gateway.path", gateway_path.clone()),
            ("gateway.router_timeout", debug(&router_timeout.get())),
            ("gateway.max_body_bytes", max_body_bytes.to_string()),
            ("gateway.shutdown_grace", debug(&gateway_grace.get())),
            ("gateway.deadline", debug(&deadline.get())),
            ("gateway.header_timeout", debug(&header_timeout.get())),
            ("gateway.max_connections", gateway_connections.to_string()),
            ("gateway.max_header_bytes", max_header_bytes.to_string()),
            ("gateway.max_in_flight", max_in_flight.to_string()),
            ("gateway.allow_from", debug(allow_from)),
            ("gateway.trusted_proxies", debug(trusted_proxies)),
            ("gateway.router_token", secret(router_token)),
            ("gateway.router_ca", debug(router_ca)),
            ("gateway.router_cert", debug(router_cert)),
            ("gateway.router_key", debug(router_key)),
            ("gateway.tls", debug(gateway_tls)),
        ]
    }

    /// The keys of [`Config::startup_settings`] that differ between `self` and `running`.
    pub fn needs_restart(&self, running: &Config) -> Vec<&'static str> {
        self.startup_settings()
            .into_iter()
            .zip(running.startup_settings())
            .filter(|((_, new), (_, old))| new != old)
            .map(|((key, _), _)| key)
            .collect()
    }

    /// Finds the app configured for `id`.
    pub fn app(&self, id: SdkAppId) -> Option<&AppConfig> {
        self.apps.iter().find(|app| app.sdk_app_id == id)
    }
}

/// `[router]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterConfig {
    /// Address the gRPC server binds.
    pub listen: SocketAddr,
    /// How long an assignment counts against its agent's capacity, and how long a repeated
    /// AssignHuman for the same session replays the same answer.
    pub assignment_ttl: ConfigDuration,
    /// How long a confirmed session holds its agent's seat when its end is never reported
    /// (a lost event), and how long an ended session is remembered so that its late events
    /// change nothing.
    pub max_session: ConfigDuration,
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace: ConfigDuration,
    /// Where the router serves its Prometheus metrics over HTTP (`GET /metrics`); none
    /// when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// `[router.store]`: where the router keeps its state.
    pub store: StoreConfig,
    /// `[router.decision_log]`: every decision and state change, as JSON lines.
    pub decision_log: DecisionLogConfig,
    /// `[router.auth]`: who may call the router's gRPC port, and what.
    pub auth: RouterAuth,
    /// `[router.tls]`: serve gRPC over TLS (plaintext when absent).
    pub tls: Option<TlsConfig>,
    /// How many calls one connection may have in flight; more are refused at once
    /// (UNAVAILABLE) rather than queued.
    pub max_concurrent_calls: usize,
    /// How old a reported event (a session event, a status) may be by the router's clock;
    /// an older one is acknowledged, counted and ignored.
    pub max_event_age: ConfigDuration,
    /// How far ahead of the router's clock a reported event may be dated; a later one is
    /// acknowledged, counted and ignored, so no fact is ever dated past now plus this.
    pub max_clock_skew: ConfigDuration,
    /// How many sessions beyond an agent's capacity the router counts for sessions it did
    /// not reserve (Tencent's own choices); past it, such sessions are not counted.
    pub capacity_margin: u32,
    /// How many gRPC connections the router holds at once; more are closed on arrival.
    pub max_connections: usize,
    /// How long a connection may take to be ready (TLS handshake, HTTP/2 preface) and to
    /// make its first call the access check lets through.
    pub preface_timeout: ConfigDuration,
    /// How long a connection may go without a call in flight before it is closed.
    pub idle_timeout: ConfigDuration,
    /// How often the router pings each connection (a peer that does not answer is dropped).
    pub keepalive: ConfigDuration,
    /// `[router.console]`: the operator console in the browser.
    pub console: ConsoleConfig,
}

/// `[router.console]`: the operator console, served by the router (where the state is): the
/// floor, the decisions as they are made, explanations, what-ifs and actions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Where it listens (HTTP, or HTTPS with `[router.tls]`); off when unset.
    pub listen: Option<SocketAddr>,
    /// How long a sign-in lasts.
    pub session_ttl: ConfigDuration,
    /// The folder whose `*.toml` files the what-if page offers to replay; none when unset.
    pub drafts: Option<std::path::PathBuf>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: None,
            session_ttl: ConfigDuration::from_secs(8 * 3600),
            drafts: None,
        }
    }
}

/// `[router.tls]` / `[gateway.tls]`: a certificate chain and its key, PEM files read again
/// when they change, and optionally the CA whose client certificates are required (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// Its private key.
    pub key: std::path::PathBuf,
    /// Clients must present a certificate signed by this CA.
    #[serde(default)]
    pub client_ca: Option<std::path::PathBuf>,
}

/// The router's methods each grant names, by group: `decisions` (what routes a session and
/// follows it), `management` (what changes or lists the roster and customers). `Multiplex`
/// only carries calls: each call on it needs its own method's grant.
pub const METHOD_GROUPS: [(&str, &[&str]); 2] = [
    (
        "decisions",
        &[
            "AssignHuman",
            "ExplainAssignment",
            "ReportSessionEvent",
            "ListSessions",
            "Multiplex",
        ],
    ),
    (
        "management",
        &[
            "UpsertAgent",
            "RemoveAgent",
            "SetAgentStatus",
            "UpsertCustomer",
            "ListAgents",
            "GetStatus",
        ],
    ),
];

/// `[router.auth]`: bearer tokens for the router's gRPC port (`authorization: Bearer
/// <token>`). With none listed the port is open to whoever reaches it, and the router says
/// so when it starts. The all-in-one's gateway calls its router in process and needs none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouterAuth {
    /// `[[router.auth.tokens]]`: each caller's token and what it may call.
    pub tokens: Vec<RouterToken>,
    /// Whether `grpc.health.v1` answers callers without a token.
    pub open_health: bool,
    /// Whether server reflection answers callers without a token.
    pub open_reflection: bool,
}

impl Default for RouterAuth {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            open_health: true,
            open_reflection: false,
        }
    }
}

/// `[[router.auth.tokens]]`: one caller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterToken {
    /// Who it is, for logs and metrics (never the token).
    pub name: String,
    /// The bearer token (at least 16 characters).
    pub token: Secret,
    /// What it may call: `decisions`, `management`, `all`, or single method names
    /// (`SetAgentStatus`); health and reflection are always allowed with a valid token.
    pub grants: Vec<String>,
}

/// `[router.decision_log]`: every AssignHuman decision (its inputs, the agents it
/// considered as it saw them, its answer and explanation) and every state change, in
/// order, as JSON lines, written off the hot path and rotated by size.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecisionLogConfig {
    /// The file; rotated files sit beside it as `FILE.1` (the newest) to `FILE.<keep>`.
    /// None: no log.
    pub path: Option<std::path::PathBuf>,
    /// The size at which the file is rotated.
    pub max_bytes: u64,
    /// How many rotated files are kept.
    pub keep: usize,
}

impl Default for DecisionLogConfig {
    fn default() -> Self {
        Self {
            path: None,
            max_bytes: 64 << 20,
            keep: 5,
        }
    }
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            assignment_ttl: ConfigDuration::from_secs(30 * 60),
            max_session: ConfigDuration::from_secs(8 * 3600),
            shutdown_grace: ConfigDuration::from_secs(10),
            metrics_listen: None,
            store: StoreConfig::default(),
            decision_log: DecisionLogConfig::default(),
            auth: RouterAuth::default(),
            tls: None,
            max_concurrent_calls: 1024,
            max_event_age: ConfigDuration::from_secs(24 * 3600),
            max_clock_skew: ConfigDuration::from_secs(60),
            capacity_margin: 2,
            max_connections: 4096,
            preface_timeout: ConfigDuration::from_secs(10),
            idle_timeout: ConfigDuration::from_secs(300),
            keepalive: ConfigDuration::from_secs(30),
            console: ConsoleConfig::default(),
        }
    }
}

/// `[router.store]`: where the router keeps agents' load, statuses, customers, sticky
/// history and assignments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (memory, made durable in a redb file), `redis` (shared by replicas) or
    /// `memory` (nothing kept across restarts). Defaults to `redis` when `url` is set,
    /// else `embedded`.
    pub kind: Option<StoreKind>,
    /// The embedded store's file.
    pub path: std::path::PathBuf,
    /// The Redis server, `redis://host:port/db` (or `rediss://`), or a comma-separated list
    /// of cluster nodes with `cluster = true`.
    pub url: Option<Secret>,
    /// Whether `url` names the nodes of a Redis Cluster.
    pub cluster: bool,
    /// How long a Redis command may take before the router answers UNAVAILABLE.
    pub timeout: ConfigDuration,
    /// For `rediss://`: the CA that signs the server's certificate (the system's roots
    /// when unset).
    pub tls_ca: Option<std::path::PathBuf>,
    /// For `rediss://` servers that require client certificates: the router's.
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key.
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: None,
            path: std::path::PathBuf::from("handoff.redb"),
            url: None,
            cluster: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            timeout: ConfigDuration::from_millis(500),
        }
    }
}

impl StoreConfig {
    /// The store to use: `kind`, else `redis` when a URL is given, else `embedded`.
    pub fn kind(&self) -> StoreKind {
        match (self.kind, &self.url) {
            (Some(kind), _) => kind,
            (None, Some(_)) => StoreKind::Redis,
            (None, None) => StoreKind::Embedded,
        }
    }

    /// Where the state lives, for logs: the file, the Redis nodes without credentials, or
    /// `memory`.
    pub fn location(&self) -> String {
        match self.kind() {
            StoreKind::Embedded => self.path.display().to_string(),
            StoreKind::Memory => "memory".to_owned(),
            StoreKind::Redis => self
                .url
                .as_ref()
                .map(|url| {
                    url.expose()
                        .split(',')
                        .map(|node| match node.split_once("://") {
                            Some((scheme, rest)) => {
                                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                                format!("{scheme}://{host}")
                            }
                            None => node.rsplit_once('@').map_or(node, |(_, h)| h).to_owned(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        }
    }
}

/// Where router state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// In memory, every change made durable in a local redb file before it is acknowledged.
    Embedded,
    /// In Redis, shared by every router replica.
    Redis,
    /// In memory only: for tests and trials.
    Memory,
}

/// `[gateway]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// The router's gRPC endpoint, `http://host:port`.
    pub router_url: String,
    /// The path Tencent POSTs callbacks to.
    pub path: String,
    /// Deadline for the router's answer; must stay well inside Tencent's 2 s.
    pub router_timeout: ConfigDuration,
    /// Largest accepted callback body, in bytes.
    pub max_body_bytes: usize,
    /// How far `RequestTime` may be from the gateway's clock.
    pub max_clock_skew: ConfigDuration,
    /// How long in-flight callbacks may take to finish after a shutdown signal.
    pub shutdown_grace: ConfigDuration,
    /// Everything a callback may take, from the moment it arrives to its answer (its body's
    /// upload and the router's answer included); must stay inside Tencent's 2 s.
    pub deadline: ConfigDuration,
    /// How long a connection may take to send a request's headers in full, and how long a
    /// kept-alive connection may sit idle before its next request.
    pub header_timeout: ConfigDuration,
    /// How many connections the gateway holds open at once; more are closed on arrival.
    pub max_connections: usize,
    /// The most a request's line and headers may take, in bytes.
    pub max_header_bytes: usize,
    /// How many callbacks may be in flight at once; more are shed (the fallback group
    /// answers an AssignHuman, an event gets 503 for Tencent to retry).
    pub max_in_flight: usize,
    /// Networks callbacks may come from (`203.0.113.0/24`, `2001:db8::/32`); empty: any.
    pub allow_from: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed: from one of them, the client is the
    /// rightmost forwarded address that is not itself one of them.
    pub trusted_proxies: Vec<String>,
    /// The token the gateway presents to a router elsewhere (`[router.auth]`); the
    /// all-in-one calls its router in process and sends none.
    pub router_token: Option<Secret>,
    /// The CA that signs an `https://` router's certificate (public CAs are trusted too).
    pub router_ca: Option<std::path::PathBuf>,
    /// The certificate the gateway presents to an `https://` router that requires one.
    pub router_cert: Option<std::path::PathBuf>,
    /// Its private key.
    pub router_key: Option<std::path::PathBuf>,
    /// `[gateway.tls]`: serve HTTPS (plain HTTP when absent, e.g. behind a TLS proxy).
    pub tls: Option<TlsConfig>,
    /// `[gateway.session_events]`: what Tencent's session event names mean for routing.
    pub session_events: SessionEventNames,
}

/// `[gateway.session_events]`: which of Tencent's `Desk.SessionEventNotify` `Event` names
/// mean what for routing, matched in any case. Tencent's pages name only some events
/// verbatim and may add more, so the names are configuration; the defaults are the best
/// reading of Tencent's pages (see the README). Whatever the name, an event with both
/// `AgentId` and `ForwardFromAgentId` is a transfer, and any other event naming an `AgentId`
/// proves that agent serves the session.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionEventNames {
    /// An agent took the session (`AgentId`): confirms or moves the reservation.
    pub assigned: Vec<String>,
    /// The session moved from `ForwardFromAgentId` to `AgentId`.
    pub transferred: Vec<String>,
    /// The transfer to a human failed (no agent online): the reservation is released.
    pub failed: Vec<String>,
    /// The session is over (closed, or the user stopped replying): the seat is released.
    pub ended: Vec<String>,
}

impl Default for SessionEventNames {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|name| (*name).to_owned()).collect();
        Self {
            assigned: names(&[
                "TransferToHumanSuccess",
                "TransferToAgentSuccess",
                "Desk.TransferToHumanSuccess",
                "AgentAccept",
                "HumanSessionBegin",
            ]),
            transferred: names(&[
                "AgentTransfer",
                "TransferToOtherAgent",
                "Desk.AgentTransfer",
                "SessionTransfer",
            ]),
            failed: names(&[
                "TransferToHumanFail",
                "TransferToHumanFailed",
                "TransferToAgentFail",
                "Desk.TransferToHumanFail",
            ]),
            ended: names(&[
                "SessionEnd",
                "SessionClose",
                "SessionClosed",
                "Desk.SessionEnd",
                "UserTimeout",
                "UserReplyTimeout",
                "SessionTimeout",
            ]),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            router_url: "http://127.0.0.1:50051".to_owned(),
            path: "/".to_owned(),
            router_timeout: ConfigDuration::from_millis(1500),
            max_body_bytes: 64 * 1024,
            max_clock_skew: ConfigDuration::from_secs(60),
            shutdown_grace: ConfigDuration::from_secs(10),
            deadline: ConfigDuration::from_millis(1800),
            header_timeout: ConfigDuration::from_secs(10),
            max_connections: 4096,
            max_header_bytes: 16 * 1024,
            max_in_flight: 2048,
            allow_from: Vec::new(),
            trusted_proxies: Vec::new(),
            router_token: None,
            router_ca: None,
            router_cert: None,
            router_key: None,
            tls: None,
            session_events: SessionEventNames::default(),
        }
    }
}
