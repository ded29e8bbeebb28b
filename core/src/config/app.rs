//! `[[apps]]`: one Tencent app with its groups, agents, known customers and routing rules.
//!
//! These are the file's shapes only. Rules' CEL expressions and schedules' time zones are
//! text here; the router compiles them and refuses the file when they do not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ConfigDuration, Secret};
use crate::id::{AgentId, ClientUserId, GroupId, SdkAppId};

/// `[[apps]]`.
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
    /// During a rotation, the token being replaced (or the one coming): callbacks signed
    /// with either are accepted until it is removed.
    #[serde(default)]
    pub previous_token: Option<Secret>,
    /// Group answered when the router cannot decide (down, too slow, nobody eligible).
    #[serde(default)]
    pub fallback_group_id: Option<GroupId>,
    /// The group the implicit default rule targets; defaults to the first group listed.
    #[serde(default)]
    pub default_group_id: Option<GroupId>,
    /// The app's own time zone (IANA), for rules' `clock` and schedules without a zone.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// How long a customer's previous agent stays sticky after their last assignment.
    #[serde(default = "default_sticky_ttl")]
    pub sticky_ttl: ConfigDuration,
    /// How long a reservation waits for Tencent's session events to confirm it (an agent took
    /// the session) before its seat is released: Tencent queued the user or gave the session
    /// to nobody. Without it a reservation holds its seat for `[router] assignment_ttl`, which
    /// is what an app without session events wants.
    #[serde(default)]
    pub confirm_timeout: Option<ConfigDuration>,
    /// How long an agent is kept out of answers after a session they served ends or is
    /// transferred away (after-call work), unless their group or the deciding rule says
    /// otherwise; none by default.
    #[serde(default)]
    pub wrap_up: Option<ConfigDuration>,
    /// After this many offers in a row an agent let pass (handoff reserved them, Tencent's
    /// events show the session went to someone else), the agent is parked: left out of
    /// answers for `park_for`, or until their status is set available again. 0: never.
    #[serde(default)]
    pub max_missed: u32,
    /// How long a parked agent stays out, from their last missed offer.
    #[serde(default = "default_park_for")]
    pub park_for: ConfigDuration,
    /// At most this many new sessions per agent within a window, so that least-loaded and
    /// longest-idle do not pile work on a fast agent.
    #[serde(default)]
    pub fair_share: Option<FairShareConfig>,
    /// `[[apps.groups]]`.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// `[[apps.agents]]`.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// `[[apps.customers]]`: customers known ahead of time (internal systems add more).
    #[serde(default)]
    pub customers: Vec<CustomerConfig>,
    /// `[[apps.rules]]`: tried in order, the first whose `when` holds decides.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// `[apps.desk]`: keep the floor in step with Tencent Desk over its REST API.
    #[serde(default)]
    pub desk: Option<DeskConfig>,
}

/// `[apps.desk]`: where the app's Desk REST API is and as whom handoff calls it, how often it
/// reads the roster and the live statuses, and what Desk's status codes mean.
///
/// With it, Desk is the truth for who exists, which groups they are in and how many
/// sessions they take; the file and gRPC add what Desk does not know (skills, attributes,
/// shifts, names, owners, rules).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeskConfig {
    /// The app's region REST domain with its scheme, e.g.
    /// `https://adminapisgp.im.qcloud.com`; `http://` only for a loopback address.
    pub api: String,
    /// An App admin account, the identifier every command is signed for.
    pub admin: String,
    /// The app's secret key, from which handoff mints the admin's UserSig; normally set by
    /// `HANDOFF__APPS__<n>__DESK__SECRET_KEY` rather than in the file.
    pub secret_key: Secret,
    /// How often groups, members and reception limits are read.
    #[serde(default = "default_roster_every")]
    pub roster_every: ConfigDuration,
    /// How often members' statuses and live counts are read.
    #[serde(default = "default_status_every")]
    pub status_every: ConfigDuration,
    /// Desk's `MemberStatus` codes (as text keys, `"1"`) and what each means to routing; a
    /// code missing here is counted and logged, never guessed.
    #[serde(default)]
    pub member_status: BTreeMap<String, AgentStatus>,
    /// Whether groups without hours of their own in the file take Desk's `WorkTimeConfig`.
    #[serde(default)]
    pub hours: bool,
    /// Whether an agent handoff parks after missed offers (`max_missed`) is also set to rest
    /// in Desk (`set_member_status` `STATUS_REST`), so that Tencent stops offering them too.
    #[serde(default)]
    pub rest_parked: bool,
    /// How long a seat handoff holds and Desk does not count may stay before it is released
    /// (reason "reconciled"): long enough for an answer to reach the agent.
    #[serde(default = "default_reconcile_after")]
    pub reconcile_after: ConfigDuration,
    /// The longest one Desk call may take, connection and answer included.
    #[serde(default = "default_desk_timeout")]
    pub timeout: ConfigDuration,
}

fn default_roster_every() -> ConfigDuration {
    ConfigDuration::from_secs(300)
}

fn default_status_every() -> ConfigDuration {
    ConfigDuration::from_secs(15)
}

fn default_reconcile_after() -> ConfigDuration {
    ConfigDuration::from_secs(60)
}

fn default_desk_timeout() -> ConfigDuration {
    ConfigDuration::from_secs(10)
}

impl DeskConfig {
    /// What Desk's status `code` means, if `member_status` says.
    pub fn status_of(&self, code: i64) -> Option<AgentStatus> {
        self.member_status.get(&code.to_string()).copied()
    }
}

fn default_time_zone() -> String {
    "UTC".to_owned()
}

/// `[apps.fair_share]`: at most `sessions` new sessions per agent in any `window`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FairShareConfig {
    /// New sessions an agent may take within the window.
    pub sessions: u32,
    /// The window, up to a day.
    pub window: ConfigDuration,
}

/// The most new sessions an agent's fair-share record keeps (the most `sessions` may be).
pub const MAX_FAIR_SHARE: u32 = 500;

/// The most seats a group may keep as headroom.
pub const MAX_HEADROOM: u32 = 10_000;

/// The most missed offers an agent's record keeps (the most `max_missed` may be).
pub const MAX_MISSES: u32 = 16;

fn default_park_for() -> ConfigDuration {
    ConfigDuration::from_secs(600)
}

fn default_sticky_ttl() -> ConfigDuration {
    ConfigDuration::from_secs(24 * 3600)
}

impl AppConfig {
    /// The group the implicit default rule targets: `default_group_id`, else the first group.
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
    /// Business hours; a group without them is always open.
    #[serde(default)]
    pub hours: Option<ScheduleConfig>,
    /// Wrap-up for the group's targets, over the app's `wrap_up`.
    #[serde(default)]
    pub wrap_up: Option<ConfigDuration>,
    /// Seats of the group's available agents that only rules with `use_headroom = true`
    /// may fill: a rule without it passes the group over once fewer than this many would
    /// stay free after its session (the one-shot stand-in for queue priority). 0: none.
    #[serde(default)]
    pub headroom: u32,
}

/// Weekly hours in a time zone, with closed dates: a group's business hours or an agent's
/// shift.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// IANA zone; defaults to the app's `time_zone`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Entries such as `"mon-fri 09:00-18:00"`, `"sat,sun 10:00-14:00"`, `"fri 22:00-06:00"`.
    pub weekly: Vec<String>,
    /// Whole local dates closed (`YYYY-MM-DD`): holidays, days off.
    #[serde(default)]
    pub closed: Vec<String>,
}

/// `[[apps.agents]]`: a human agent.
#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// Skills with proficiency levels, e.g. `"language.zh" = 5`.
    #[serde(default)]
    pub skills: BTreeMap<String, u32>,
    /// Free attributes for rules' agent filters, e.g. `seniority = "senior"`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The agent's personal shift; an agent without one is always on shift.
    #[serde(default)]
    pub shift: Option<ScheduleConfig>,
}

fn default_capacity() -> u32 {
    1
}

/// Whether an agent takes sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
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

impl AgentStatus {
    /// The name the config file and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Available => "available",
            AgentStatus::Away => "away",
            AgentStatus::Offline => "offline",
        }
    }
}

/// `[[apps.customers]]`: what internal systems know of a customer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerConfig {
    /// Tencent's ClientUserId.
    pub id: ClientUserId,
    /// Service tier, e.g. `vip`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Preferred language, e.g. `zh`.
    #[serde(default)]
    pub language: Option<String>,
    /// Region, e.g. `apac`.
    #[serde(default)]
    pub region: Option<String>,
    /// Free tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The agent who owns the relationship; goes first when eligible and the rule is sticky.
    #[serde(default)]
    pub owner: Option<AgentId>,
    /// Free attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `[[apps.rules]]`: when a handoff matches `when`, route it to a target, overflowing in
/// order when the target has no eligible agent.
///
/// The rule's own target fields repeat [`TargetConfig`]'s rather than `#[serde(flatten)]`
/// it: serde cannot flatten into a struct that denies unknown fields, and a misspelt key in
/// a rule must be refused, not ignored. [`RuleConfig::target`] gathers them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique within the app; shown in every decision.
    pub name: String,
    /// CEL over `customer`, `session`, `now` and `clock`; absent means always (a default
    /// rule, which must be last).
    #[serde(default)]
    pub when: Option<String>,
    /// The target group.
    #[serde(default)]
    pub group: Option<GroupId>,
    /// CEL over `agent` (and the rule's variables) that agents must satisfy.
    #[serde(default)]
    pub agents: Option<String>,
    /// How eligible agents are ranked.
    #[serde(default)]
    pub strategy: Strategy,
    /// The skills `most_skilled` ranks on.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Seed for `random`.
    #[serde(default)]
    pub seed: u64,
    /// How many agents the answer lists, at most [`MAX_CANDIDATES`].
    #[serde(default = "default_candidates")]
    pub candidates: u32,
    /// Whether the customer's owner, then previous agent, goes first when eligible.
    #[serde(default = "default_sticky")]
    pub sticky: bool,
    /// Answer the group alone, leaving the choice of agent to Tencent.
    #[serde(default)]
    pub group_only: bool,
    /// Targets tried in order when the one before has no eligible agent.
    #[serde(default)]
    pub overflow: Vec<TargetConfig>,
    /// Wrap-up for every target of the rule, over its groups' and the app's `wrap_up`.
    #[serde(default)]
    pub wrap_up: Option<ConfigDuration>,
    /// How many seats of its agent a session this rule routes takes (a VIP chat that
    /// counts 2): capacity counts seats, not sessions.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Whether the rule may fill the seats its groups keep as `headroom`.
    #[serde(default)]
    pub use_headroom: bool,
    /// Agent filters (CEL over `agent`) that order the answer: agents of the first tier
    /// first, then the next, then the target's other agents; each tier in the strategy's
    /// order.
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Overflow to the next target on live measures, not only when nobody is eligible.
    #[serde(default)]
    pub overflow_when: Option<OverflowWhen>,
}

/// `overflow_when`: when a target with eligible agents still passes a handoff to the next
/// one. A target passed over this way answers after all when no later target has anyone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverflowWhen {
    /// When fewer seats than this are free among the target's available agents.
    #[serde(default)]
    pub free_seats_below: Option<u32>,
    /// When the target's group's estimated wait (see the README) is above this.
    #[serde(default)]
    pub wait_above: Option<ConfigDuration>,
}

/// The most seats one session may weigh.
pub const MAX_WEIGHT: u32 = 100;

/// The most tiers one target may have.
pub const MAX_TIERS: usize = 8;

fn default_weight() -> u32 {
    1
}

/// How many agents an answer lists when a rule does not say (the implicit default rule
/// included).
pub const DEFAULT_CANDIDATES: u32 = 5;
/// The most agents one answer may list.
pub const MAX_CANDIDATES: u32 = 100;
/// Whether a rule that does not say (the implicit default rule included) is sticky.
pub const DEFAULT_STICKY: bool = true;

fn default_candidates() -> u32 {
    DEFAULT_CANDIDATES
}

fn default_sticky() -> bool {
    DEFAULT_STICKY
}

impl RuleConfig {
    /// The rule's own target, before any overflow.
    pub fn target(&self) -> TargetConfig {
        TargetConfig {
            group: self.group,
            agents: self.agents.clone(),
            strategy: self.strategy,
            skills: self.skills.clone(),
            seed: self.seed,
            tiers: self.tiers.clone(),
            overflow_when: self.overflow_when,
        }
    }
}

/// Where a rule sends a handoff: a group and/or an agent filter, and a ranking.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The group; without one, every agent of the app that passes `agents`.
    #[serde(default)]
    pub group: Option<GroupId>,
    /// CEL over `agent` that agents must satisfy.
    #[serde(default)]
    pub agents: Option<String>,
    /// How eligible agents are ranked.
    #[serde(default)]
    pub strategy: Strategy,
    /// The skills `most_skilled` ranks on.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Seed for `random`.
    #[serde(default)]
    pub seed: u64,
    /// Agent filters that order the answer, first tier first (see [`RuleConfig::tiers`]).
    #[serde(default)]
    pub tiers: Vec<String>,
    /// Overflow to the next target on live measures (see [`OverflowWhen`]).
    #[serde(default)]
    pub overflow_when: Option<OverflowWhen>,
}

/// How a target ranks its eligible agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Fewest active sessions relative to capacity.
    #[default]
    LeastLoaded,
    /// Longest since the last assignment.
    LongestIdle,
    /// In turn, after the agent assigned most recently.
    RoundRobin,
    /// Highest proficiency on the rule's skills.
    MostSkilled,
    /// The order agents are listed in.
    FixedOrder,
    /// Shuffled, deterministically for the rule's seed and the session.
    Random,
}

impl Strategy {
    /// Every strategy, in the order the README lists them.
    pub const ALL: [Strategy; 6] = [
        Strategy::LeastLoaded,
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::MostSkilled,
        Strategy::FixedOrder,
        Strategy::Random,
    ];

    /// The name the config file, decisions and logs use: `least_loaded`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LeastLoaded => "least_loaded",
            Strategy::LongestIdle => "longest_idle",
            Strategy::RoundRobin => "round_robin",
            Strategy::MostSkilled => "most_skilled",
            Strategy::FixedOrder => "fixed_order",
            Strategy::Random => "random",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_are_the_files_and_read_back() -> Result<(), toml::de::Error> {
        #[derive(Deserialize)]
        struct Wrapper {
            strategy: Strategy,
        }
        for strategy in Strategy::ALL {
            let name = strategy.as_str();
            let parsed: Wrapper = toml::from_str(&format!("strategy = \"{name}\""))?;
            assert_eq!(parsed.strategy, strategy);
        }
        Ok(())
    }
}
