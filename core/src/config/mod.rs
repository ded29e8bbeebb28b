//! The one TOML file that the router, the gateway and the all-in-one read.
//!
//! [`load`] reads the file, applies `HANDOFF__SECTION__KEY` overrides from an environment
//! passed in by the caller, deserializes it into [`Config`] and validates it whole. Every
//! error names the file, the key and the problem. Each binary reads only the sections it
//! needs, but all of them refuse a file that is wrong anywhere, so a typo cannot hide.

mod duration;
mod load;
mod secret;
mod validate;

use std::net::SocketAddr;

use serde::Deserialize;

pub use duration::ConfigDuration;
pub use load::{ConfigError, ENV_PREFIX, load, parse};
pub use secret::Secret;

use crate::id::{AgentId, GroupId, SdkAppId};

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
    /// How long in-flight calls may take to finish after a shutdown signal.
    pub shutdown_grace: ConfigDuration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            assignment_ttl: ConfigDuration::from_secs(30 * 60),
            shutdown_grace: ConfigDuration::from_secs(10),
        }
    }
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
        }
    }
}

/// `[[apps]]`: one Tencent app and the agents who serve it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Tencent's SdkAppid.
    pub sdk_app_id: SdkAppId,
    /// A name for people reading logs.
    #[serde(default)]
    pub name: Option<String>,
    /// The callback authentication token set in Tencent's console; when present, callbacks
    /// must carry a valid `Sign` and a fresh `RequestTime`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Group answered when the router cannot decide (down, too slow, nobody eligible).
    #[serde(default)]
    pub fallback_group_id: Option<GroupId>,
    /// The group a handoff targets; defaults to the first group listed.
    #[serde(default)]
    pub default_group_id: Option<GroupId>,
    /// `[[apps.groups]]`.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// `[[apps.agents]]`.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
}

impl AppConfig {
    /// The group a handoff targets: `default_group_id`, else the first group listed.
    pub fn target_group_id(&self) -> Option<GroupId> {
        self.default_group_id
            .or_else(|| self.groups.first().map(|group| group.id))
    }
}

/// `[[apps.groups]]`: a Tencent agent group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Tencent's AgentGroupId.
    pub id: GroupId,
    /// A name for people reading decisions.
    pub name: String,
}

/// `[[apps.agents]]`: a human agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The agent's e-mail, which is Tencent's agent id.
    pub id: AgentId,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Groups the agent belongs to.
    #[serde(default)]
    pub groups: Vec<GroupId>,
    /// Most sessions the agent takes at once.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Whether the agent takes sessions now.
    #[serde(default)]
    pub status: AgentStatus,
}

fn default_capacity() -> u32 {
    1
}

/// Whether an agent takes sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// Takes sessions.
    #[default]
    Available,
    /// Signed in but not taking sessions.
    Away,
    /// Signed out.
    Offline,
}
