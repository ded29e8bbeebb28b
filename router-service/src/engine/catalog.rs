//! The routing model compiled from the config: apps with their groups (and hours), agents
//! (skills, attributes, shifts), known customers and rules (CEL compiled), checked and
//! indexed once so that deciding never parses or re-validates.

use std::{path::Path, sync::Arc};

use chrono_tz::Tz;
use handoff_core::{
    config::{
        AgentConfig, AgentStatus, AppConfig, Config, ConfigError, DEFAULT_CANDIDATES,
        DEFAULT_STICKY, DeskConfig, RuleConfig, ScheduleConfig, Strategy, TargetConfig,
    },
    id::{AgentId, ClientUserId, GroupId, SdkAppId},
};

use crate::hash::FastMap;

use super::{
    Customer,
    desk::{Source, Sources},
    expr::{AgentValue, Cel, Expression, Kind, agent_value},
    schedule::Schedule,
};

/// The name of the rule added after an app's own rules, so that every handoff matches one.
pub const DEFAULT_RULE: &str = "default";

/// Every app the router serves.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    apps: FastMap<SdkAppId, Arc<App>>,
}

impl Catalog {
    /// Every app's expressions that cannot decide anything (see [`App::lint`]), keyed
    /// `apps[N]...` as the config file has them.
    pub fn lint(&self, config: &Config, now: std::time::SystemTime) -> Vec<(String, String)> {
        config
            .apps
            .iter()
            .enumerate()
            .filter_map(|(index, app)| Some((index, self.apps.get(&app.sdk_app_id)?)))
            .flat_map(|(index, app)| {
                app.lint(now)
                    .into_iter()
                    .map(move |(key, message)| (format!("apps[{index}].{key}"), message))
            })
            .collect()
    }

    /// Compiles `config` (read from `origin`), refusing bad CEL, time zones and schedules with
    /// the key at fault.
    pub fn from_config(config: &Config, origin: &Path) -> Result<Self, ConfigError> {
        let cel = Cel::default();
        let mut apps = FastMap::default();
        for (index, app) in config.apps.iter().enumerate() {
            let mut compiled = App::compile(app, &cel).map_err(|(key, message)| {
                ConfigError::new(origin, format!("apps[{index}].{key}"), message)
            })?;
            compiled.reports = Reports::of(&config.router);
            apps.insert(app.sdk_app_id, Arc::new(compiled));
        }
        Ok(Self { apps })
    }

    /// The app with this id.
    pub fn app(&self, id: SdkAppId) -> Option<&Arc<App>> {
        self.apps.get(&id)
    }

    /// Every app.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<App>> {
        self.apps.values()
    }
}

/// A key inside the app and what is wrong with it.
type Fault = (String, String);

/// One Tencent app.
#[derive(Debug)]
pub struct App {
    /// The app's SdkAppid.
    pub id: SdkAppId,
    /// The app's time zone, for `clock` and schedules without their own.
    pub zone: Tz,
    /// How long a previous agent stays sticky.
    pub sticky_ttl: std::time::Duration,
    /// How long a reservation waits for a session event to confirm it; `None` holds it for
    /// the router's `assignment_ttl`.
    pub confirm_timeout: Option<std::time::Duration>,
    /// Wrap-up after a session ends, unless the group or rule says otherwise (zero: none).
    pub wrap_up: std::time::Duration,
    /// Offers missed in a row that park an agent (0: never).
    pub max_missed: u32,
    /// How long a parked agent stays out, from the last miss.
    pub park_for: std::time::Duration,
    /// Fair share: at most this many new sessions per agent within the window.
    pub fair_share: Option<(u32, std::time::Duration)>,
    /// Whether a target of its rules overflows on the estimated wait, so that the stores
    /// keep each group's latest waits.
    pub tracks_waits: bool,
    /// What the router believes of reported events (`[router]`, the same for every app).
    pub reports: Reports,
    /// Whether the app's floor is synced from Tencent Desk (`[apps.desk]`): once a roster
    /// arrived, Desk decides who is on it (see [`super::desk`]).
    pub desk_sync: bool,
    /// `[apps.desk]`, for the sync: where Desk is, as whom, how often, and what its status
    /// codes mean.
    pub desk: Option<Arc<DeskConfig>>,
    groups: Vec<Group>,
    agents: Vec<Arc<Agent>>,
    /// Each agent of the file by id: its index in `agents`.
    agent_index: FastMap<AgentId, usize>,
    /// Each agent of the file by lower-cased id, as Desk members are matched.
    agent_keys: FastMap<String, usize>,
    customers: FastMap<ClientUserId, Customer>,
    rules: Vec<ConditionalRule>,
    default_rule: Rule,
    fallback_group: Option<GroupId>,
    cel: Cel,
    version: u64,
}

/// What the router believes of reported events (session events, statuses): how far from
/// its own clock they may be dated, and how far past capacity sessions it did not reserve
/// may load an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reports {
    /// The oldest an event may be, by the router's clock.
    pub max_age: std::time::Duration,
    /// How far ahead of the router's clock an event may be dated.
    pub max_skew: std::time::Duration,
    /// Sessions beyond capacity counted for sessions the router did not reserve.
    pub capacity_margin: u32,
}

impl Reports {
    /// The bounds `[router]` sets.
    pub fn of(config: &handoff_core::config::RouterConfig) -> Self {
        Self {
            max_age: config.max_event_age.get(),
            max_skew: config.max_clock_skew.get(),
            capacity_margin: config.capacity_margin,
        }
    }

    /// Whether an event dated `at` is plausible at `now`: neither older than `max_age`
    /// nor later than `max_skew` ahead.
    pub fn plausible(&self, at: std::time::SystemTime, now: std::time::SystemTime) -> bool {
        let oldest = now
            .checked_sub(self.max_age)
            .unwrap_or(std::time::UNIX_EPOCH);
        at >= oldest && !self.ahead(at, now)
    }

    /// Whether `at` is later than `max_skew` ahead of `now`.
    pub fn ahead(&self, at: std::time::SystemTime, now: std::time::SystemTime) -> bool {
        at > now + self.max_skew
    }
}

impl Default for Reports {
    fn default() -> Self {
        Self::of(&handoff_core::config::RouterConfig::default())
    }
}

/// Each compiled app's number: a store's ranked floor is only good for the app it was
/// built for.
static VERSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The most sessions one agent may take at once (ranking keys rely on it being below 2^16).
pub const MAX_CAPACITY: u32 = 10_000;

impl App {
    fn compile(config: &AppConfig, cel: &Cel) -> Result<Self, Fault> {
        let zone: Tz = config.time_zone.parse().map_err(|_| {
            (
                "time_zone".to_owned(),
                format!("unknown time zone {:?}", config.time_zone),
            )
        })?;
        let mut groups = Vec::with_capacity(config.groups.len());
        for (index, group) in config.groups.iter().enumerate() {
            let hours = group
                .hours
                .as_ref()
                .map(|hours| schedule(hours, zone))
                .transpose()
                .map_err(|message| (format!("groups[{index}].hours"), message))?;
            groups.push(Group {
                id: group.id,
                name: group.name.clone(),
                hours,
                wrap_up: group.wrap_up.map(|wrap_up| wrap_up.get()),
                headroom: group.headroom,
            });
        }
        let mut agents = Vec::with_capacity(config.agents.len());
        for (index, agent) in config.agents.iter().enumerate() {
            let known = (config.desk.is_none()).then_some(groups.as_slice());
            let compiled = Agent::check(agent, zone, known).map_err(|fault| {
                (
                    format!("agents[{index}].{}", fault.field.config_key()),
                    fault.message,
                )
            })?;
            agents.push(Arc::new(compiled));
        }
        let agent_index = agents
            .iter()
            .enumerate()
            .map(|(index, agent)| (agent.id.clone(), index))
            .collect();
        let agent_keys = agents
            .iter()
            .enumerate()
            .map(|(index, agent)| (super::desk::member_key(&agent.id), index))
            .collect();
        let customers = config
            .customers
            .iter()
            .map(|customer| (customer.id.clone(), Customer::from_config(customer)))
            .collect();
        let mut rules = Vec::with_capacity(config.rules.len());
        let mut default_rule = None;
        for (index, rule) in config.rules.iter().enumerate() {
            let fault = |(key, message): Fault| (format!("rules[{index}].{key}"), message);
            let when = rule
                .when
                .as_deref()
                .map(|source| cel.compile(source, Kind::When))
                .transpose()
                .map_err(|message| fault(("when".to_owned(), message)))?;
            let compiled = Rule::compile(rule, cel).map_err(fault)?;
            match when {
                Some(when) => rules.push(ConditionalRule {
                    when,
                    rule: compiled,
                }),
                // The config's validation allows a rule without `when` only last.
                None => default_rule = Some(compiled),
            }
        }
        let mut default_rule =
            default_rule.unwrap_or_else(|| Rule::implicit_default(config.target_group_id()));
        // Each target's wrap-up, resolved once: the rule's, else its group's, else the app's.
        let app_wrap_up = config
            .wrap_up
            .map(|wrap_up| wrap_up.get())
            .unwrap_or_default();
        let rules_mut = rules
            .iter_mut()
            .map(|conditional| &mut conditional.rule)
            .chain(std::iter::once(&mut default_rule));
        for rule in rules_mut {
            for target in &mut rule.targets {
                target.wrap_up = rule
                    .wrap_up
                    .or_else(|| {
                        let id = target.group?;
                        groups.iter().find(|group| group.id == id)?.wrap_up
                    })
                    .unwrap_or(app_wrap_up);
                // The seats the target's group keeps, unless the rule may fill them.
                target.headroom = match target.group {
                    Some(id) if !rule.use_headroom => groups
                        .iter()
                        .find(|group| group.id == id)
                        .map_or(0, |group| group.headroom),
                    _ => 0,
                };
            }
        }
        Ok(Self {
            id: config.sdk_app_id,
            zone,
            sticky_ttl: config.sticky_ttl.get(),
            confirm_timeout: config.confirm_timeout.map(|timeout| timeout.get()),
            wrap_up: config
                .wrap_up
                .map(|wrap_up| wrap_up.get())
                .unwrap_or_default(),
            max_missed: config.max_missed,
            park_for: config.park_for.get(),
            fair_share: config
                .fair_share
                .map(|fair| (fair.sessions, fair.window.get())),
            reports: Reports::default(),
            tracks_waits: rules
                .iter()
                .map(|conditional| &conditional.rule)
                .chain(std::iter::once(&default_rule))
                .flat_map(|rule| &rule.targets)
                .any(|target| target.overflow_when.wait_above.is_some()),
            desk_sync: config.desk.is_some(),
            desk: config.desk.clone().map(Arc::new),
            groups,
            agents,
            agent_index,
            agent_keys,
            customers,
            rules,
            default_rule,
            fallback_group: config.fallback_group_id,
            cel: cel.clone(),
            version: VERSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// The app's groups, as configured.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group with this id.
    pub fn group(&self, id: GroupId) -> Option<&Group> {
        self.groups.iter().find(|group| group.id == id)
    }

    /// The agents of the config file, in order.
    pub fn agents(&self) -> &[Arc<Agent>] {
        &self.agents
    }

    /// The agent of the config file with this id.
    pub fn agent(&self, id: &AgentId) -> Option<&Arc<Agent>> {
        self.agent_index.get(id).map(|index| &self.agents[*index])
    }

    /// The agent of the config file whose lower-cased id is `key`.
    pub fn agent_by_key(&self, key: &str) -> Option<&Arc<Agent>> {
        self.agent_keys.get(key).map(|index| &self.agents[*index])
    }

    /// A customer the config file knows.
    pub fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customers.get(id)
    }

    /// The rules with a `when`, in order.
    pub fn rules(&self) -> &[ConditionalRule] {
        &self.rules
    }

    /// The rule that decides when no rule's `when` holds: the config's last rule when it
    /// has no `when`, else the implicit [`DEFAULT_RULE`].
    pub fn default_rule(&self) -> &Rule {
        &self.default_rule
    }

    /// Checks and compiles an agent defined at run time against this app's groups and zone
    /// (any groups, with Desk sync: Desk's groups are not the file's to know).
    pub fn check_agent(&self, config: &AgentConfig) -> Result<Agent, AgentFault> {
        let known = (!self.desk_sync).then_some(self.groups.as_slice());
        let mut agent = Agent::check(config, self.zone, known)?;
        agent.sources = Sources::all(Source::Grpc);
        Ok(agent)
    }

    /// How long an agent of `target` of `rule` wraps up after a session: the rule's
    /// `wrap_up`, else its group's, else the app's (resolved when the app was compiled).
    pub fn wrap_up(&self, rule: &Rule, target: &Target) -> std::time::Duration {
        let _ = rule;
        target.wrap_up
    }

    /// The group answered when nobody can be chosen.
    pub fn fallback_group(&self) -> Option<GroupId> {
        self.fallback_group
    }

    /// This compilation's number, unique in the process.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The CEL environment the app's expressions were compiled in.
    pub fn cel(&self) -> &Cel {
        &self.cel
    }

    /// Expressions that cannot decide anything: every `when` and agent filter evaluated
    /// at `now` for a synthetic known customer and session (and each agent of the file),
    /// each one that fails or gives something other than a bool, as (key, what is wrong).
    /// `customer.tier == 3` (a string against a number) and `when = 'customer.tier'` (not
    /// a bool) compile, and would never match.
    pub fn lint(&self, now: std::time::SystemTime) -> Vec<(String, String)> {
        let (Ok(session), Ok(customer_id)) = (
            handoff_core::id::SessionId::parse("lint-session"),
            ClientUserId::parse("lint-customer"),
        ) else {
            return Vec::new();
        };
        let handoff = super::Handoff {
            app: self.id,
            session,
            client_user: customer_id.clone(),
            event_time: now,
            platform: "web".to_owned(),
            channel: "chat".to_owned(),
            attributes: [("topic".to_owned(), "lint".to_owned())].into(),
        };
        let customer = Customer {
            id: customer_id,
            known: true,
            tier: Some("gold".to_owned()),
            language: Some("en".to_owned()),
            region: Some("east".to_owned()),
            tags: vec!["lint".to_owned()],
            owner: self.agents.first().map(|agent| agent.id.clone()),
            attributes: vec![("segment".to_owned(), "lint".to_owned())],
        };
        let scope = self.cel.scope(&handoff, &customer, now, self.zone);
        let mut problems = Vec::new();
        let rules = self
            .rules
            .iter()
            .map(|conditional| (Some(&conditional.when), &conditional.rule))
            .chain(std::iter::once((None, &self.default_rule)));
        for (index, (when, rule)) in rules.enumerate() {
            if let Some(Err(message)) = when.map(|when| scope.lint_when(when)) {
                problems.push((format!("rules[{index}].when"), message));
            }
            let uses_headroom = rule.targets.iter().any(|target| {
                target
                    .group
                    .and_then(|id| self.group(id))
                    .is_some_and(|group| group.headroom > 0)
            });
            if rule.use_headroom && !uses_headroom && !self.desk_sync {
                problems.push((
                    format!("rules[{index}].use_headroom"),
                    "none of the rule's groups keeps headroom: it changes nothing".to_owned(),
                ));
            }
            for (position, target) in rule.targets.iter().enumerate() {
                let key = |field: &str| match position {
                    0 => format!("rules[{index}].{field}"),
                    n => format!("rules[{index}].overflow[{}].{field}", n - 1),
                };
                let members: Vec<&Arc<Agent>> = self
                    .agents
                    .iter()
                    .filter(|agent| target.group.is_none_or(|id| agent.groups.contains(&id)))
                    .collect();
                if rule.weight > 1
                    && !members.is_empty()
                    && members.iter().all(|agent| agent.capacity < rule.weight)
                {
                    problems.push((
                        format!("rules[{index}].weight"),
                        format!(
                            "every agent of {} has fewer than {} seats: none can take the rule's sessions",
                            if position == 0 { "the target" } else { "this overflow target" },
                            rule.weight
                        ),
                    ));
                }
                let filters = target
                    .filter
                    .iter()
                    .map(|filter| (key("agents"), filter))
                    .chain(
                        target
                            .tiers
                            .iter()
                            .enumerate()
                            .map(|(n, tier)| (key(&format!("tiers[{n}]")), tier)),
                    );
                for (key, filter) in filters {
                    let failed = self.agents.iter().find_map(|agent| {
                        scope
                            .lint_filter(filter, agent.cel_value())
                            .err()
                            .map(|message| format!("{message} (agent {})", agent.id))
                    });
                    if let Some(message) = failed {
                        problems.push((key, message));
                    }
                }
            }
        }
        problems
    }
}

fn schedule(config: &ScheduleConfig, app_zone: Tz) -> Result<Schedule, String> {
    let zone = config.time_zone.as_deref().unwrap_or(app_zone.name());
    Schedule::parse(zone, &config.weekly, &config.closed)
}

/// A Tencent agent group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Tencent's AgentGroupId.
    pub id: GroupId,
    /// Display name.
    pub name: String,
    /// Business hours; `None` is always open.
    pub hours: Option<Schedule>,
    /// Wrap-up for the group's targets, over the app's.
    pub wrap_up: Option<std::time::Duration>,
    /// Seats only rules with `use_headroom` may fill.
    pub headroom: u32,
}

/// A human agent, ready for deciding.
#[derive(Debug, Clone)]
pub struct Agent {
    /// E-mail, Tencent's agent id.
    pub id: AgentId,
    /// Display name.
    pub name: Option<String>,
    /// Groups the agent belongs to.
    pub groups: Vec<GroupId>,
    /// Most sessions at once.
    pub capacity: u32,
    /// The status the definition gives; a live status set over gRPC overrides it.
    pub status: AgentStatus,
    /// Skills and proficiency.
    pub skills: std::collections::BTreeMap<String, u32>,
    /// Free attributes.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// Personal shift; `None` is always on shift.
    pub shift: Option<Schedule>,
    /// The definition this was compiled from, for listing and persistence.
    pub spec: AgentConfig,
    /// Where each field comes from: the file, gRPC or Desk.
    pub sources: Sources,
    cel: AgentValue,
}

/// The part of an agent definition at fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentField {
    /// How many sessions the agent takes at once.
    Capacity,
    /// The agent's groups.
    Groups,
    /// The agent's skills.
    Skills,
    /// The agent's shift.
    Shift,
}

impl AgentField {
    /// The key the config file gives the field (`[[apps.agents]]`).
    pub fn config_key(self) -> &'static str {
        match self {
            AgentField::Capacity => "capacity",
            AgentField::Groups => "groups",
            AgentField::Skills => "skills",
            AgentField::Shift => "shift",
        }
    }
}

/// What is wrong with an agent definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFault {
    /// The field at fault.
    pub field: AgentField,
    /// What is wrong with it.
    pub message: String,
}

impl AgentFault {
    fn new(field: AgentField, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl Agent {
    /// The one check of a new agent definition, for the config file and for agents defined
    /// at run time alike: a capacity of at least one, at least one group and only groups of
    /// the app, named skills, and a shift that compiles (`app_zone` stands in for a shift
    /// without a zone of its own). With `groups` `None` (an app synced from Desk, whose
    /// groups Desk gives) any groups, or none, will do.
    pub fn check(
        config: &AgentConfig,
        app_zone: Tz,
        groups: Option<&[Group]>,
    ) -> Result<Self, AgentFault> {
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            return Err(AgentFault::new(
                AgentField::Capacity,
                format!("must be from 1 to {MAX_CAPACITY}"),
            ));
        }
        if let Some(groups) = groups {
            Self::check_groups(config, groups)?;
        }
        if config.skills.keys().any(|skill| skill.trim().is_empty()) {
            return Err(AgentFault::new(
                AgentField::Skills,
                "skill names must not be empty",
            ));
        }
        Self::compile(config, app_zone)
    }

    fn check_groups(config: &AgentConfig, groups: &[Group]) -> Result<(), AgentFault> {
        if config.groups.is_empty() {
            return Err(AgentFault::new(
                AgentField::Groups,
                "must name at least one group",
            ));
        }
        if let Some(unknown) = config
            .groups
            .iter()
            .find(|id| !groups.iter().any(|group| group.id == **id))
        {
            return Err(AgentFault::new(
                AgentField::Groups,
                format!("group {unknown} is not defined in the app's groups"),
            ));
        }
        Ok(())
    }

    /// Compiles a stored definition gRPC gave (see [`Agent::compile`]).
    pub fn compile_overlay(config: &AgentConfig, app_zone: Tz) -> Result<Self, AgentFault> {
        let mut agent = Self::compile(config, app_zone)?;
        agent.sources = Sources::all(Source::Grpc);
        Ok(agent)
    }

    /// Compiles a definition that passed [`Agent::check`] when it was made (a stored one)
    /// in the app's zone as it is now; only its shift can fail.
    pub fn compile(config: &AgentConfig, app_zone: Tz) -> Result<Self, AgentFault> {
        let shift = config
            .shift
            .as_ref()
            .map(|shift| schedule(shift, app_zone))
            .transpose()
            .map_err(|message| AgentFault::new(AgentField::Shift, message))?;
        let groups: Vec<u64> = config.groups.iter().map(|group| group.get()).collect();
        let cel = agent_value(
            config.id.as_str(),
            config.name.as_deref(),
            &groups,
            &config.skills,
            &config.attributes,
            config.capacity,
        );
        Ok(Self {
            id: config.id.clone(),
            name: config.name.clone(),
            groups: config.groups.clone(),
            capacity: config.capacity,
            status: config.status,
            skills: config.skills.clone(),
            attributes: config.attributes.clone(),
            shift,
            spec: config.clone(),
            sources: Sources::default(),
            cel,
        })
    }

    /// The agent as agent filters see it.
    pub fn cel_value(&self) -> &AgentValue {
        &self.cel
    }

    /// The agent's level in `skill`, 0 without it.
    pub fn skill(&self, skill: &str) -> u32 {
        self.skills.get(skill).copied().unwrap_or_default()
    }
}

/// A rule with a condition: it decides when its `when` holds and no rule before it did.
#[derive(Debug)]
pub struct ConditionalRule {
    /// The condition.
    pub when: Expression,
    /// What the rule does.
    pub rule: Rule,
}

/// What a rule does once it decides.
#[derive(Debug)]
pub struct Rule {
    /// Unique in the app.
    pub name: String,
    /// The rule's own target, then its overflow targets in order.
    pub targets: Vec<Target>,
    /// How many agents an answer lists (the config's `candidates`).
    pub max_agents: usize,
    /// Whether the owner, then the previous agent, goes first.
    pub sticky: bool,
    /// Whether the answer is the group alone.
    pub group_only: bool,
    /// Wrap-up for the rule's targets, over their groups' and the app's.
    pub wrap_up: Option<std::time::Duration>,
    /// The seats each session it routes takes.
    pub weight: u32,
    /// Whether it may fill its groups' headroom.
    pub use_headroom: bool,
}

impl Rule {
    fn compile(config: &RuleConfig, cel: &Cel) -> Result<Self, Fault> {
        let mut targets = vec![Target::compile(&config.target(), cel)?];
        for (index, overflow) in config.overflow.iter().enumerate() {
            targets.push(
                Target::compile(overflow, cel)
                    .map_err(|(key, message)| (format!("overflow[{index}].{key}"), message))?,
            );
        }
        Ok(Self {
            name: config.name.clone(),
            targets,
            max_agents: config.candidates as usize,
            sticky: config.sticky,
            group_only: config.group_only,
            wrap_up: config.wrap_up.map(|wrap_up| wrap_up.get()),
            weight: config.weight,
            use_headroom: config.use_headroom,
        })
    }

    /// The rule an app ends with unless its own last rule matches everything.
    fn implicit_default(group: Option<GroupId>) -> Self {
        Self {
            name: DEFAULT_RULE.to_owned(),
            targets: vec![Target {
                group,
                filter: None,
                strategy: Strategy::LeastLoaded,
                skills: Vec::new(),
                seed: 0,
                wrap_up: std::time::Duration::ZERO,
                tiers: Vec::new(),
                overflow_when: OverflowWhen::default(),
                headroom: 0,
            }],
            max_agents: DEFAULT_CANDIDATES as usize,
            sticky: DEFAULT_STICKY,
            group_only: false,
            wrap_up: None,
            weight: 1,
            use_headroom: false,
        }
    }
}

/// Where a rule sends a handoff.
#[derive(Debug)]
pub struct Target {
    /// The group; `None` means every agent of the app.
    pub group: Option<GroupId>,
    /// The agent filter.
    pub filter: Option<Expression>,
    /// The ranking.
    pub strategy: Strategy,
    /// Skills `most_skilled` ranks on.
    pub skills: Vec<String>,
    /// Seed for `random`.
    pub seed: u64,
    /// How long its agents wrap up after a session (see [`App::wrap_up`]).
    pub wrap_up: std::time::Duration,
    /// Agent filters ordering the answer: the first tier's agents first.
    pub tiers: Vec<Expression>,
    /// When it passes a handoff on although it has eligible agents.
    pub overflow_when: OverflowWhen,
    /// The seats its group keeps from this target's rule (0 when the rule may fill them).
    pub headroom: u32,
}

/// A target's `overflow_when`, compiled: 0 and `None` are off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverflowWhen {
    /// Overflow when fewer seats are free.
    pub free_seats_below: u32,
    /// Overflow when the group's estimated wait is longer.
    pub wait_above: Option<std::time::Duration>,
}

impl OverflowWhen {
    /// Whether any live measure is set.
    pub fn is_set(&self) -> bool {
        self.free_seats_below > 0 || self.wait_above.is_some()
    }
}

impl Target {
    fn compile(config: &TargetConfig, cel: &Cel) -> Result<Self, Fault> {
        let filter = config
            .agents
            .as_deref()
            .map(|source| cel.compile(source, Kind::AgentFilter))
            .transpose()
            .map_err(|message| ("agents".to_owned(), message))?;
        let tiers = config
            .tiers
            .iter()
            .enumerate()
            .map(|(n, source)| {
                cel.compile(source, Kind::AgentFilter)
                    .map_err(|message| (format!("tiers[{n}]"), message))
            })
            .collect::<Result<_, _>>()?;
        let overflow_when = config.overflow_when.unwrap_or_default();
        Ok(Self {
            group: config.group,
            filter,
            strategy: config.strategy,
            skills: config.skills.clone(),
            seed: config.seed,
            wrap_up: std::time::Duration::ZERO,
            tiers,
            overflow_when: OverflowWhen {
                free_seats_below: overflow_when.free_seats_below.unwrap_or(0),
                wait_above: overflow_when.wait_above.map(|wait| wait.get()),
            },
            headroom: 0,
        })
    }

    /// Which of the target's tiers `agent` is in (`tiers.len()`: none, the last place),
    /// in `scope`; a tier whose filter fails for the agent does not hold it.
    pub(super) fn tier(&self, scope: &super::expr::Scope<'_>, agent: &Agent) -> usize {
        self.tiers
            .iter()
            .position(|tier| matches!(scope.admits(tier, agent.cel_value()), Ok(true)))
            .unwrap_or(self.tiers.len())
    }
}
