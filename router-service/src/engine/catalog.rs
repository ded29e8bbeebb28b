//! The routing model: apps, their groups and agents, checked and indexed once when the
//! config is loaded so that deciding never re-validates.

use std::collections::HashMap;

use handoff_core::{
    config::{AgentStatus, AppConfig, Config},
    id::{AgentId, GroupId, SdkAppId},
};

/// Every app the router serves.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    apps: HashMap<SdkAppId, App>,
}

impl Catalog {
    /// Builds the catalog from a validated config.
    pub fn from_config(config: &Config) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|app| (app.sdk_app_id, App::from_config(app)))
            .collect();
        Self { apps }
    }

    /// The app with this id.
    pub fn app(&self, id: SdkAppId) -> Option<&App> {
        self.apps.get(&id)
    }
}

/// One Tencent app: its groups and agents.
#[derive(Debug, Clone)]
pub struct App {
    /// The app's SdkAppid.
    pub id: SdkAppId,
    groups: Vec<Group>,
    agents: Vec<Agent>,
    target_group: Option<GroupId>,
    fallback_group: Option<GroupId>,
}

impl App {
    /// Builds an app from its validated config entry.
    pub fn from_config(config: &AppConfig) -> Self {
        let groups = config
            .groups
            .iter()
            .map(|group| Group {
                id: group.id,
                name: group.name.clone(),
            })
            .collect();
        let agents = config
            .agents
            .iter()
            .map(|agent| Agent {
                id: agent.id.clone(),
                name: agent.name.clone(),
                groups: agent.groups.clone(),
                capacity: agent.capacity,
                status: agent.status,
            })
            .collect();
        Self {
            id: config.sdk_app_id,
            groups,
            agents,
            target_group: config.target_group_id(),
            fallback_group: config.fallback_group_id,
        }
    }

    /// The group handoffs target, when the app has one.
    pub fn target_group(&self) -> Option<&Group> {
        let id = self.target_group?;
        self.groups.iter().find(|group| group.id == id)
    }

    /// The group answered when nobody can be chosen.
    pub fn fallback_group(&self) -> Option<GroupId> {
        self.fallback_group
    }

    /// The agents of `group`, each with its position in the app's agent list (the final,
    /// stable tie-break).
    pub fn members(&self, group: GroupId) -> impl Iterator<Item = (usize, &Agent)> {
        self.agents
            .iter()
            .enumerate()
            .filter(move |(_, agent)| agent.groups.contains(&group))
    }

    /// All agents, in config order.
    pub fn agents(&self) -> &[Agent] {
        &self.agents
    }
}

/// A Tencent agent group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Tencent's AgentGroupId.
    pub id: GroupId,
    /// Display name.
    pub name: String,
}

/// A human agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// E-mail, Tencent's agent id.
    pub id: AgentId,
    /// Display name.
    pub name: Option<String>,
    /// Groups the agent belongs to.
    pub groups: Vec<GroupId>,
    /// Most sessions at once.
    pub capacity: u32,
    /// Whether the agent takes sessions.
    pub status: AgentStatus,
}
