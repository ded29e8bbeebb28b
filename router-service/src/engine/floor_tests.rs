//! The ranked floor against the full scan: on random floors, with random loads, statuses,
//! shifts, filters and sticky customers, and after random changes told to the floor one by
//! one, a decision over the floor answers exactly what examining every agent answers.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};
use proptest::{
    prelude::{ProptestConfig, TestCaseError, any, prop_assert_eq, proptest},
    strategy::Strategy as _,
};

use super::*;

/// An agent of a random floor.
#[derive(Debug, Clone)]
struct Spec {
    groups: Vec<u64>,
    capacity: u32,
    skill: u32,
    night_shift: bool,
    senior: bool,
}

fn spec() -> impl proptest::strategy::Strategy<Value = Spec> {
    (
        proptest::sample::subsequence(vec![1u64, 2, 3], 1..=3),
        1u32..5,
        0u32..6,
        proptest::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(groups, capacity, skill, night_shift, senior)| Spec {
            groups,
            capacity,
            skill,
            night_shift,
            senior,
        })
}

/// What one agent carries: active sessions, seconds since an arbitrary start of its last
/// assignment (if any), and its live status.
#[derive(Debug, Clone, Copy)]
struct Live {
    active: u32,
    last: Option<u64>,
    status: u8,
}

fn live() -> impl proptest::strategy::Strategy<Value = Live> {
    (0u32..5, proptest::option::of(0u64..20), 0u8..6).prop_map(|(active, last, status)| Live {
        active,
        last,
        status,
    })
}

/// Every strategy there is: a new one is in the property at once.
const STRATEGIES: [handoff_core::config::Strategy; 6] = handoff_core::config::Strategy::ALL;

/// A config with `agents`, whose default rule targets group `group` (0: every agent) with
/// `strategy`, maybe an agent filter, and an overflow to group 3.
/// `filter`: 0 none, 1 one that reads only the agent (its verdicts known ahead), 2 one that
/// also reads the customer (evaluated as the walk goes).
fn config(agents: &[Spec], strategy: &str, group: u64, filter: u8, candidates: u32) -> String {
    featured(
        agents,
        strategy,
        group,
        filter,
        candidates,
        Features::default(),
    )
}

/// What a random floor's rule adds of the features beyond the peers: its sessions' weight,
/// the headroom groups 1 and 2 keep and whether the rule may fill it, tiers (0 none, 1 two
/// that read only the agent, 2 one that reads the customer too), and an overflow when
/// fewer seats than this are free (0: none).
#[derive(Debug, Clone, Copy, Default)]
struct Features {
    weight: u32,
    headroom: u32,
    use_headroom: bool,
    tiers: u8,
    free_below: u32,
    /// A `vip` rule before the default over the same group with this strategy: two
    /// strategies ranking the same agents, so the floor keeps both orders of one ranking.
    vip: Option<&'static str>,
}

fn featured(
    agents: &[Spec],
    strategy: &str,
    group: u64,
    filter: u8,
    candidates: u32,
    features: Features,
) -> String {
    let headroom = format!("headroom = {}\n", features.headroom);
    let mut text = format!(
        "[[apps]]\nsdk_app_id = 1400000001\ntime_zone = \"UTC\"\n\
         [[apps.groups]]\nid = 1\nname = \"one\"\n{headroom}\
         [[apps.groups]]\nid = 2\nname = \"two\"\n{headroom}\
         [[apps.groups]]\nid = 3\nname = \"three\"\n",
    );
    for (n, agent) in agents.iter().enumerate() {
        let groups: Vec<String> = agent.groups.iter().map(u64::to_string).collect();
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"a{n}@example.com\"\ngroups = [{}]\ncapacity = {}\n\
             skills = {{ zh = {} }}\nattributes = {{ seniority = \"{}\" }}\n",
            groups.join(", "),
            agent.capacity,
            agent.skill,
            if agent.senior { "senior" } else { "junior" },
        ));
        if agent.night_shift {
            text.push_str("shift = { weekly = [\"daily 22:00-06:00\"] }\n");
        }
    }
    if let Some(vip) = features.vip {
        text.push_str(&format!(
            "[[apps.rules]]\nname = \"vip\"\nwhen = 'customer.tier == \"vip\"'\nstrategy = \"{vip}\"\n"
        ));
        if group > 0 {
            text.push_str(&format!("group = {group}\n"));
        }
        if vip == "most_skilled" {
            text.push_str("skills = [\"zh\"]\n");
        }
    }
    text.push_str("[[apps.rules]]\nname = \"default\"\n");
    if group > 0 {
        text.push_str(&format!("group = {group}\n"));
    }
    text.push_str(&format!(
        "strategy = \"{strategy}\"\ncandidates = {candidates}\n"
    ));
    if strategy == "most_skilled" {
        text.push_str("skills = [\"zh\"]\n");
    }
    match filter {
        1 => text.push_str("agents = 'agent.attributes.seniority == \"senior\"'\n"),
        2 => text.push_str(
            "agents = 'agent.attributes.seniority == \"senior\" || customer.tier == \"vip\"'\n",
        ),
        _ => {}
    }
    text.push_str(&format!(
        "weight = {}\nuse_headroom = {}\n",
        features.weight.max(1),
        features.use_headroom
    ));
    match features.tiers {
        1 => text.push_str(
            "tiers = ['agent.attributes.seniority == \"senior\"', 'agent.skills[\"zh\"] >= 3']\n",
        ),
        2 => text.push_str("tiers = ['customer.tier == \"vip\" || agent.skills[\"zh\"] >= 3']\n"),
        _ => {}
    }
    if features.free_below > 0 {
        text.push_str(&format!(
            "overflow_when = {{ free_seats_below = {} }}\n",
            features.free_below
        ));
    }
    text.push_str("overflow = [{ group = 3, strategy = \"longest_idle\" }]\n");
    text
}

/// The live state as a test sets it, with the floor a store would keep.
#[derive(Default)]
struct Floorful {
    loads: HashMap<AgentId, AgentLoad>,
    statuses: HashMap<AgentId, AgentStatus>,
    history: HashMap<ClientUserId, (AgentId, SystemTime)>,
    customers: HashMap<ClientUserId, Customer>,
    changes: RosterChanges,
    floor: Option<Floor>,
}

impl StateView for Floorful {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }
    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).copied()
    }
    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customers.get(id)
    }
    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        self.history.get(customer).map(|(agent, at)| (agent, *at))
    }
    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }
    fn floor(&self) -> Option<&Floor> {
        self.floor.as_ref()
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn agent_id(n: usize) -> AgentId {
    AgentId::parse(format!("a{n}@example.com")).unwrap()
}

fn status_of(code: u8) -> Option<AgentStatus> {
    match code {
        0 => Some(AgentStatus::Away),
        1 => Some(AgentStatus::Offline),
        2 => Some(AgentStatus::Available),
        _ => None,
    }
}

fn set(state: &mut Floorful, n: usize, live: Live) {
    let id = agent_id(n);
    let load = AgentLoad {
        active: live.active,
        weighted: 0,
        unattributed: 0,
        confirmed: 0,
        last_assigned: live.last.map(at),
        ..AgentLoad::default()
    };
    state.loads.insert(id.clone(), load);
    match status_of(live.status) {
        Some(status) => state.statuses.insert(id.clone(), status),
        None => state.statuses.remove(&id),
    };
    if let Some(floor) = &mut state.floor {
        floor.update(&id, load, status_of(live.status));
    }
}

fn handoff(customer: &str) -> Handoff {
    Handoff {
        app: SdkAppId::new(1_400_000_001).unwrap(),
        session: SessionId::parse(format!("s-{customer}")).unwrap(),
        client_user: ClientUserId::parse(customer).unwrap(),
        event_time: at(0),
        platform: String::new(),
        channel: String::new(),
        attributes: BTreeMap::new(),
    }
}

/// The answers a store would give, from the ranked and from the full decision.
fn answers(app: &App, state: &Floorful, customer: &str, now: SystemTime) -> (Answer, Answer) {
    let handoff = handoff(customer);
    let answer = |decision: Decision| {
        if decision.wants_reservation() {
            decision.reserve_at(0)
        } else {
            decision.without_reservation()
        }
    };
    (
        answer(decide(app, &handoff, state, now)),
        answer(decide_fully(app, &handoff, state, now)),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_ranked_decision_answers_what_examining_everyone_answers(
        agents in proptest::collection::vec(spec(), 1..160),
        lives in proptest::collection::vec(live(), 160),
        changes in proptest::collection::vec((0usize..160, live()), 0..40),
        strategy in 0usize..STRATEGIES.len(),
        group in 0u64..4,
        filter in 0u8..3,
        candidates in 1u32..6,
        hour in 0u64..24,
        sticky in proptest::option::of((0usize..160, 0usize..160)),
        (weight, headroom, use_headroom, tiers, free_below) in
            (1u32..4, proptest::option::weighted(0.3, 1u32..8), any::<bool>(), 0u8..3,
             proptest::option::weighted(0.3, 1u32..8)),
        vip in proptest::option::of(0usize..STRATEGIES.len()),
    ) {
        let features = Features {
            weight,
            headroom: headroom.unwrap_or(0),
            use_headroom,
            tiers,
            free_below: free_below.unwrap_or(0),
            vip: vip.map(|vip| STRATEGIES[vip].as_str()),
        };
        let text = featured(
            &agents,
            STRATEGIES[strategy].as_str(),
            group,
            filter,
            candidates,
            features,
        );
        let parsed = handoff_core::config::parse(&text, Path::new("f.toml"), Vec::new())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let catalog = Catalog::from_config(&parsed, Path::new("f.toml"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let app: Arc<App> = catalog.app(SdkAppId::new(1_400_000_001).unwrap()).unwrap().clone();
        let mut state = Floorful::default();
        for (n, live) in lives.iter().take(agents.len()).enumerate() {
            set(&mut state, n, *live);
        }
        if let Some((previous, owner)) = sticky {
            let customer = ClientUserId::parse("regular").unwrap();
            state.history.insert(customer.clone(), (agent_id(previous % agents.len()), at(19)));
            let mut known = Customer::unknown(customer.clone());
            known.owner = Some(agent_id(owner % agents.len()));
            known.tier = Some("vip".into());
            state.customers.insert(customer, known);
        }
        state.floor = Some(Floor::build(&app, 0, &state));
        // Midnight plus `hour`: the night shift is on for some hours, off for others.
        let now = at(0) + Duration::from_secs(hour * 3600 + 86_400 - 1_800_000_000 % 86_400);
        for customer in ["walk-in", "regular"] {
            let (ranked, full) = answers(&app, &state, customer, now);
            prop_assert_eq!(ranked, full, "before changes, {}", customer);
        }
        // Changes told to the floor one at a time, as a store tells it.
        for (n, live) in changes {
            set(&mut state, n % agents.len(), live);
        }
        for customer in ["walk-in", "regular"] {
            let (ranked, full) = answers(&app, &state, customer, now);
            prop_assert_eq!(ranked, full, "after changes, {}", customer);
        }
    }
}

#[test]
fn the_floor_is_what_the_decision_walks() {
    let agents: Vec<Spec> = (0..40)
        .map(|n| Spec {
            groups: vec![1],
            capacity: 2,
            skill: n % 6,
            night_shift: false,
            senior: true,
        })
        .collect();
    let text = config(&agents, "least_loaded", 1, 0, 3);
    let parsed = handoff_core::config::parse(&text, Path::new("f.toml"), Vec::new()).unwrap();
    let catalog = Catalog::from_config(&parsed, Path::new("f.toml")).unwrap();
    let app = catalog
        .app(SdkAppId::new(1_400_000_001).unwrap())
        .unwrap()
        .clone();
    let mut state = Floorful::default();
    state.floor = Some(Floor::build(&app, 0, &state));
    // Everyone but a39 gets one session, told only to the floor-keeping path: the decision
    // must follow the floor's order, and looks at no more agents than it needs.
    for n in 0..39 {
        set(
            &mut state,
            n,
            Live {
                active: 1,
                last: Some(5),
                status: 9,
            },
        );
    }
    let decision = decide(&app, &handoff("walk-in"), &state, at(0));
    assert_eq!(decision.ranked[0].agent.as_str(), "a39@example.com");
    assert_eq!(
        decision.ranked.len(),
        6,
        "twice the rule's 3 candidates, then it stops"
    );
    assert!(
        decision.targets[0].excluded.is_empty(),
        "no per-agent lists when assigning"
    );
    let full = decide_fully(&app, &handoff("walk-in"), &state, at(0));
    assert_eq!(full.ranked.len(), 40);
    assert_eq!(full.reserve_at(0), decision.reserve_at(0));
}
