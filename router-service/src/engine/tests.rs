//! Engine tests over catalogs written as operators write them (TOML), against a fake state.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use chrono::{DateTime, Utc};
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;
type Error = Box<dyn std::error::Error>;

/// A support floor: general (6521), billing with hours (6522), vip (6523).
const FLOOR: &str = r#"
[[apps]]
sdk_app_id = 1400000001
fallback_group_id = 9000
time_zone = "Asia/Shanghai"
sticky_ttl = "1h"

[[apps.groups]]
id = 6521
name = "general"
[[apps.groups]]
id = 6522
name = "billing"
hours = { weekly = ["mon-fri 09:00-18:00"], closed = ["2026-10-01"] }
[[apps.groups]]
id = 6523
name = "vip"

[[apps.agents]]
id = "ann@example.com"
groups = [6521, 6523]
capacity = 2
skills = { "language.zh" = 5, billing = 1 }
attributes = { seniority = "senior" }
[[apps.agents]]
id = "bob@example.com"
groups = [6521, 6522]
capacity = 4
skills = { "language.zh" = 2, billing = 5 }
[[apps.agents]]
id = "cat@example.com"
groups = [6521, 6522]
capacity = 1
skills = { "language.en" = 5, billing = 3 }
[[apps.agents]]
id = "dan@example.com"
groups = [6521]
status = "away"
[[apps.agents]]
id = "eve@example.com"
groups = [6521, 6523]
capacity = 3
skills = { "language.zh" = 3 }
attributes = { seniority = "junior" }
shift = { time_zone = "Europe/Paris", weekly = ["mon-fri 22:00-06:00"] }

[[apps.customers]]
id = "vip-1"
tier = "vip"
language = "zh"
owner = "eve@example.com"

[[apps.rules]]
name = "vip"
when = 'customer.tier == "vip"'
group = 6523
strategy = "most_skilled"
skills = ["language.zh"]
candidates = 2
overflow = [{ group = 6521, strategy = "least_loaded" }]

[[apps.rules]]
name = "billing"
when = 'session.attributes.topic == "billing"'
group = 6522
strategy = "most_skilled"
skills = ["billing"]
overflow = [{ group = 6521, agents = 'agent.skills["billing"] >= 1' }]

[[apps.rules]]
name = "chinese"
when = 'customer.language == "zh" || session.attributes.language == "zh"'
agents = '"language.zh" in agent.skills && agent.skills["language.zh"] >= 3'
strategy = "fixed_order"

[[apps.rules]]
name = "default"
group = 6521
"#;

fn app_from(text: &str) -> Result<Arc<App>, Error> {
    let config = handoff_core::config::parse(text, Path::new("test.toml"), Vec::new())?;
    let catalog = Catalog::from_config(&config, Path::new("test.toml"))?;
    Ok(catalog
        .app(SdkAppId::new(1_400_000_001)?)
        .ok_or("no app")?
        .clone())
}

/// An instant given as RFC 3339.
fn at(text: &str) -> Result<SystemTime, Error> {
    Ok(DateTime::parse_from_rfc3339(text)?
        .with_timezone(&Utc)
        .into())
}

/// A Wednesday, 14:00 in Shanghai (06:00 UTC): billing is open, the Paris night shift is over.
const WEDNESDAY_MORNING: &str = "2026-11-25T06:00:00Z";

fn handoff(customer: &str, attributes: &[(&str, &str)]) -> Result<Handoff, Error> {
    Ok(Handoff {
        app: SdkAppId::new(1_400_000_001)?,
        session: SessionId::parse(format!("s-{customer}"))?,
        client_user: ClientUserId::parse(customer)?,
        event_time: SystemTime::UNIX_EPOCH,
        platform: "ios".into(),
        channel: "chat".into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect(),
    })
}

/// The router's state, as a test sets it.
#[derive(Default)]
struct FakeState {
    loads: HashMap<String, AgentLoad>,
    statuses: HashMap<String, AgentStatus>,
    customers: HashMap<ClientUserId, Customer>,
    history: HashMap<ClientUserId, (AgentId, SystemTime)>,
    changes: RosterChanges,
}

impl FakeState {
    fn load(mut self, agent: &str, active: u32, last: Option<SystemTime>) -> Self {
        self.loads.insert(
            agent.into(),
            AgentLoad {
                active,
                weighted: 0,
                unattributed: 0,
                confirmed: 0,
                last_assigned: last,
                ..AgentLoad::default()
            },
        );
        self
    }

    fn status(mut self, agent: &str, status: AgentStatus) -> Self {
        self.statuses.insert(agent.into(), status);
        self
    }

    fn previous(mut self, customer: &str, agent: &str, at: SystemTime) -> Result<Self, Error> {
        self.history
            .insert(ClientUserId::parse(customer)?, (AgentId::parse(agent)?, at));
        Ok(self)
    }
}

impl StateView for FakeState {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent.as_str()).copied().unwrap_or_default()
    }
    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent.as_str()).copied()
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
}

fn ranked(decision: &Decision) -> Vec<&str> {
    decision.ranked.iter().map(|c| c.agent.as_str()).collect()
}

fn excluded(trace: &TargetTrace) -> Vec<(String, String)> {
    trace
        .excluded
        .iter()
        .map(|e| (e.agent.to_string(), e.reason.to_string()))
        .collect()
}

fn secs(n: u64) -> Option<SystemTime> {
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(n))
}

/// One target over the five agents of group 6521 with `strategy`.
fn strategy_app(strategy: &str, extra: &str) -> Result<Arc<App>, Error> {
    let text = FLOOR.replace(
        "[[apps.rules]]\nname = \"default\"\ngroup = 6521",
        &format!("[[apps.rules]]\nname = \"default\"\ngroup = 6521\nstrategy = \"{strategy}\"\ncandidates = 10\n{extra}"),
    );
    app_from(&text)
}

#[test]
fn each_strategy_orders_as_documented() -> TestResult {
    let now = at(WEDNESDAY_MORNING)?;
    // ann 1/2 assigned at 100 s, bob 1/4 at 300 s (most recently), cat 0/1 at 200 s; eve is
    // off shift, dan away. Built so that each strategy alone gives its order: swapping two
    // strategies' code fails here.
    let state = || {
        FakeState::default()
            .load("ann@example.com", 1, secs(100))
            .load("bob@example.com", 1, secs(300))
            .load("cat@example.com", 0, secs(200))
    };
    let mut orders = std::collections::BTreeSet::new();
    // Every strategy, by a match the compiler holds complete.
    for strategy in Strategy::ALL {
        let (extra, expected): (&str, [&str; 3]) = match strategy {
            // Load ratios 0 (cat) < 1/4 (bob) < 1/2 (ann).
            Strategy::LeastLoaded => ("", ["cat", "bob", "ann"]),
            // Idle since 100 s (ann), 200 s (cat), 300 s (bob).
            Strategy::LongestIdle => ("", ["ann", "cat", "bob"]),
            // bob (position 1) was assigned last: the turn passes to cat, then ann, then bob.
            Strategy::RoundRobin => ("", ["cat", "ann", "bob"]),
            // billing 5 (bob), 3 (cat), 1 (ann).
            Strategy::MostSkilled => ("skills = [\"billing\"]", ["bob", "cat", "ann"]),
            // As listed.
            Strategy::FixedOrder => ("", ["ann", "bob", "cat"]),
            // The one order left, for this seed and session.
            Strategy::Random => ("seed = RANDOM_SEED", ["bob", "ann", "cat"]),
        };
        let app = strategy_app(
            strategy.as_str(),
            &extra.replace("RANDOM_SEED", &RANDOM_SEED.to_string()),
        )?;
        let decision = decide(&app, &handoff("walk-in", &[])?, &state(), now);
        let expected: Vec<String> = expected
            .iter()
            .map(|a| format!("{a}@example.com"))
            .collect();
        assert_eq!(ranked(&decision), expected, "{strategy:?}");
        assert_eq!(decision.strategy, Some(strategy));
        assert!(
            orders.insert(expected),
            "{strategy:?} repeats another's order"
        );
    }
    Ok(())
}

/// A `random` seed that orders ann, bob and cat as no other strategy does in
/// `each_strategy_orders_as_documented`.
const RANDOM_SEED: u64 = 1;

#[test]
fn least_loaded_breaks_ties_by_idle_time_then_position() -> TestResult {
    let app = strategy_app("least_loaded", "")?;
    let now = at(WEDNESDAY_MORNING)?;
    let state = FakeState::default()
        .load("ann@example.com", 1, secs(50))
        .load("bob@example.com", 2, secs(40));
    let decision = decide(&app, &handoff("walk-in", &[])?, &state, now);
    // cat 0/1 first; ann 1/2 and bob 2/4 tie at one half, bob idle longer.
    assert_eq!(
        ranked(&decision),
        ["cat@example.com", "bob@example.com", "ann@example.com"]
    );
    let scores: Vec<f64> = decision.ranked.iter().map(|c| c.score).collect();
    assert_eq!(scores, [0.0, 0.5, 0.5]);
    Ok(())
}

#[test]
fn random_is_a_seeded_deterministic_shuffle() -> TestResult {
    let now = at(WEDNESDAY_MORNING)?;
    let mut orders = std::collections::BTreeSet::new();
    for seed in 0..16 {
        let app = strategy_app("random", &format!("seed = {seed}"))?;
        let first = decide(&app, &handoff("walk-in", &[])?, &FakeState::default(), now);
        let again = decide(&app, &handoff("walk-in", &[])?, &FakeState::default(), now);
        assert_eq!(ranked(&first), ranked(&again), "seed {seed}");
        let mut sorted = ranked(&first);
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            ["ann@example.com", "bob@example.com", "cat@example.com"]
        );
        orders.insert(ranked(&first).join(","));
    }
    assert!(orders.len() > 1, "16 seeds gave one order: {orders:?}");
    Ok(())
}

#[test]
fn the_first_matching_rule_decides_and_earlier_ones_say_why_not() -> TestResult {
    let app = app_from(FLOOR)?;
    let now = at(WEDNESDAY_MORNING)?;
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        ("vip-1", &[], "vip"),
        ("walk-in", &[("topic", "billing")], "billing"),
        ("walk-in", &[("language", "zh")], "chinese"),
        ("walk-in", &[], "default"),
    ];
    for (customer, attributes, rule) in cases {
        let decision = decide(
            &app,
            &handoff(customer, attributes)?,
            &FakeState::default(),
            now,
        );
        assert_eq!(decision.rule, rule, "{customer} {attributes:?}");
        let last = decision.rules.last().map(|t| (&t.rule, &t.outcome));
        assert_eq!(last, Some((&rule.to_owned(), &RuleOutcome::Matched)));
    }
    // `session.attributes.topic` does not exist for a plain walk-in: the billing rule's
    // condition fails and is reported, and routing goes on.
    let decision = decide(&app, &handoff("walk-in", &[])?, &FakeState::default(), now);
    let billing = decision
        .rules
        .iter()
        .find(|t| t.rule == "billing")
        .ok_or("no billing trace")?;
    assert!(
        matches!(&billing.outcome, RuleOutcome::Failed(e) if e.contains("topic")),
        "{billing:?}"
    );
    assert_eq!(decision.rules[0].outcome, RuleOutcome::NotMatched);
    Ok(())
}

#[test]
fn an_agent_filter_narrows_the_target_and_says_who_failed_it() -> TestResult {
    let app = app_from(FLOOR)?;
    let decision = decide(
        &app,
        &handoff("walk-in", &[("language", "zh")])?,
        &FakeState::default(),
        at(WEDNESDAY_MORNING)?,
    );
    assert_eq!(decision.rule, "chinese");
    assert_eq!(
        decision.group, None,
        "a filter-only target answers no group"
    );
    assert_eq!(ranked(&decision), ["ann@example.com"]);
    let reasons = excluded(&decision.targets[0]);
    assert!(
        reasons.contains(&("bob@example.com".into(), "filter false".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("cat@example.com".into(), "filter false".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("dan@example.com".into(), "away".into())),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&("eve@example.com".into(), "off shift".into())),
        "{reasons:?}"
    );
    Ok(())
}

#[test]
fn overflow_walks_the_chain_and_falls_back_when_it_runs_out() -> TestResult {
    let app = app_from(FLOOR)?;
    let vip = handoff("vip-1", &[])?;
    let now = at(WEDNESDAY_MORNING)?;
    // vip group: ann at capacity and eve off shift, so the overflow to general answers.
    let state = FakeState::default().load("ann@example.com", 2, secs(1));
    let decision = decide(&app, &vip, &state, now);
    assert_eq!(decision.targets.len(), 2);
    assert_eq!(decision.targets[0].outcome, TargetOutcome::NoEligible);
    assert_eq!(
        excluded(&decision.targets[0]),
        [
            ("ann@example.com".into(), "at capacity (2/2)".into()),
            ("eve@example.com".into(), "off shift".into()),
        ]
    );
    assert_eq!(decision.targets[1].outcome, TargetOutcome::Chosen);
    assert_eq!(decision.group.map(|g| g.get()), Some(6521));
    assert_eq!(ranked(&decision), ["bob@example.com", "cat@example.com"]);
    assert!(
        decision
            .reason
            .contains("overflow[0]: group 6521 (general)"),
        "{}",
        decision.reason
    );

    // Everyone busy: the chain runs out and the app's fallback group answers.
    let state = FakeState::default()
        .load("ann@example.com", 2, secs(1))
        .load("bob@example.com", 4, secs(1))
        .load("cat@example.com", 1, secs(1));
    let decision = decide(&app, &vip, &state, now);
    assert!(decision.fallback);
    assert_eq!(decision.group.map(|g| g.get()), Some(9000));
    assert!(decision.ranked.is_empty());
    assert!(
        decision.reason.contains("answered group 9000 alone"),
        "{}",
        decision.reason
    );
    Ok(())
}

#[test]
fn a_closed_group_overflows_outside_hours_and_on_holidays() -> TestResult {
    let app = app_from(FLOOR)?;
    let billing = handoff("walk-in", &[("topic", "billing")])?;
    let cases = [
        (WEDNESDAY_MORNING, TargetOutcome::Chosen),
        ("2026-11-25T11:00:00Z", TargetOutcome::Closed), // 19:00 in Shanghai
        ("2026-11-28T02:00:00Z", TargetOutcome::Closed), // Saturday
        ("2026-10-01T02:00:00Z", TargetOutcome::Closed), // a closed date, a Thursday
    ];
    for (when, outcome) in cases {
        let decision = decide(&app, &billing, &FakeState::default(), at(when)?);
        assert_eq!(decision.targets[0].outcome, outcome, "{when}");
        if outcome == TargetOutcome::Closed {
            assert!(
                decision.targets[0]
                    .excluded
                    .iter()
                    .all(|e| e.reason == Exclusion::GroupClosed)
            );
            assert_eq!(
                decision.group.map(|g| g.get()),
                Some(6521),
                "{when}: overflow to general"
            );
            // The overflow's filter keeps those with any billing skill: ann, bob, cat.
            assert_eq!(ranked(&decision).len(), 3, "{when}");
        } else {
            assert_eq!(ranked(&decision), ["bob@example.com", "cat@example.com"]);
        }
    }
    Ok(())
}

#[test]
fn shifts_follow_the_agents_own_zone_across_dst() -> TestResult {
    // eve works mon-fri 22:00-06:00 Paris time. Paris leaves summer time on 2026-10-25.
    let app = app_from(FLOOR)?;
    let vip = handoff("vip-1", &[])?;
    let cases = [
        ("2026-10-22T20:30:00Z", true),  // Thu 22:30 CEST
        ("2026-10-22T19:30:00Z", false), // Thu 21:30 CEST
        ("2026-10-29T20:30:00Z", false), // Thu 21:30 CET: the same UTC hour is before the shift
        ("2026-10-29T21:30:00Z", true),  // Thu 22:30 CET
        ("2026-10-24T21:30:00Z", false), // Sat 23:30: no Saturday shift
    ];
    for (when, on_shift) in cases {
        let decision = decide(&app, &vip, &FakeState::default(), at(when)?);
        let eve_offered = decision.targets[0]
            .excluded
            .iter()
            .all(|e| e.agent.as_str() != "eve@example.com");
        assert_eq!(eve_offered, on_shift, "{when}: {:?}", decision.targets[0]);
    }
    Ok(())
}

#[test]
fn stickiness_puts_the_owner_then_the_previous_agent_first() -> TestResult {
    let app = app_from(FLOOR)?;
    let night = at("2026-11-25T22:00:00Z")?; // Wed 23:00 Paris: eve on shift
    let vip = handoff("vip-1", &[])?;
    // eve owns vip-1 and comes first although ann is more skilled.
    let decision = decide(&app, &vip, &FakeState::default(), night);
    assert_eq!(ranked(&decision), ["eve@example.com", "ann@example.com"]);
    assert_eq!(decision.ranked[0].sticky, Some(Sticky::Owner));
    // An owner who also served them last is first as their owner.
    let served_by_owner = FakeState::default().previous(
        "vip-1",
        "eve@example.com",
        night - Duration::from_secs(60),
    )?;
    let decision = decide(&app, &vip, &served_by_owner, night);
    assert_eq!(ranked(&decision)[0], "eve@example.com");
    assert_eq!(decision.ranked[0].sticky, Some(Sticky::Owner));

    // A walk-in served by cat 30 minutes ago gets cat first again, within the 1 h TTL ...
    let walk_in = handoff("walk-in", &[])?;
    let served = night - Duration::from_secs(1800);
    let state = FakeState::default().previous("walk-in", "cat@example.com", served)?;
    let decision = decide(&app, &walk_in, &state, night);
    assert_eq!(ranked(&decision)[0], "cat@example.com");
    assert_eq!(decision.ranked[0].sticky, Some(Sticky::Previous));
    assert!(
        decision
            .reason
            .contains("previous agent cat@example.com first"),
        "{}",
        decision.reason
    );
    // ... but not once the TTL has passed,
    let decision = decide(&app, &walk_in, &state, night + Duration::from_secs(3600));
    assert_eq!(ranked(&decision)[0], "ann@example.com");
    // nor when the previous agent is not eligible,
    let busy = FakeState::default()
        .previous("walk-in", "cat@example.com", served)?
        .load("cat@example.com", 1, Some(served));
    assert!(!ranked(&decide(&app, &walk_in, &busy, night)).contains(&"cat@example.com"));
    // nor under a rule that is not sticky.
    let app = app_from(&FLOOR.replace(
        "name = \"default\"\ngroup = 6521",
        "name = \"default\"\ngroup = 6521\nsticky = false",
    ))?;
    let decision = decide(&app, &walk_in, &state, night);
    assert_eq!(ranked(&decision)[0], "ann@example.com");
    Ok(())
}

#[test]
fn live_status_and_roster_changes_take_effect() -> TestResult {
    let app = app_from(FLOOR)?;
    let now = at(WEDNESDAY_MORNING)?;
    let mut state = FakeState::default()
        .status("ann@example.com", AgentStatus::Offline)
        .status("dan@example.com", AgentStatus::Available);
    let spec = handoff_core::config::AgentConfig {
        id: AgentId::parse("zoe@example.com")?,
        name: None,
        groups: vec![handoff_core::id::GroupId::new(6521)?],
        capacity: 2,
        status: AgentStatus::Available,
        skills: BTreeMap::new(),
        attributes: BTreeMap::new(),
        shift: None,
    };
    let zoe = Agent::compile(&spec, app.zone).map_err(|fault| fault.message)?;
    state.changes.insert(zoe.id.clone(), Some(Arc::new(zoe)));
    state
        .changes
        .insert(AgentId::parse("cat@example.com")?, None);
    let decision = decide(&app, &handoff("walk-in", &[])?, &state, now);
    assert_eq!(
        ranked(&decision),
        ["bob@example.com", "dan@example.com", "zoe@example.com"]
    );
    Ok(())
}

#[test]
fn group_only_rules_answer_the_group_without_a_reservation() -> TestResult {
    let app = app_from(&FLOOR.replace(
        "name = \"default\"\ngroup = 6521",
        "name = \"default\"\ngroup = 6521\ngroup_only = true",
    ))?;
    let decision = decide(
        &app,
        &handoff("walk-in", &[])?,
        &FakeState::default(),
        at(WEDNESDAY_MORNING)?,
    );
    assert!(decision.group_only && !decision.wants_reservation());
    let answer = decision.without_reservation();
    assert_eq!(answer.group.map(|g| g.get()), Some(6521));
    assert!(answer.agents.is_empty() && !answer.fallback);
    Ok(())
}

#[test]
fn the_answer_lists_at_most_the_rules_candidates() -> TestResult {
    let app = app_from(FLOOR)?;
    let night = at("2026-11-25T22:00:00Z")?;
    let decision = decide(&app, &handoff("vip-1", &[])?, &FakeState::default(), night);
    assert_eq!(decision.max_agents, 2);
    let answer = decision.reserve_at(0);
    assert_eq!(answer.agents.len(), 2);
    assert_eq!(
        answer.reserved.as_ref().map(AgentId::as_str),
        Some("eve@example.com")
    );
    Ok(())
}

#[test]
fn bad_rules_and_schedules_are_refused_with_the_key() -> TestResult {
    let cases = [
        (
            FLOOR.replace("customer.tier == \"vip\"", "customer.tier =="),
            "apps[0].rules[0].when",
            "does not compile",
        ),
        (
            FLOOR.replace("customer.tier == \"vip\"", "custmer.tier == \"vip\""),
            "apps[0].rules[0].when",
            "unknown variable `custmer`",
        ),
        (
            FLOOR.replace(
                "when = 'customer.tier == \"vip\"'",
                "when = 'agent.id == \"x\"'",
            ),
            "apps[0].rules[0].when",
            "unknown variable `agent`",
        ),
        (
            FLOOR.replace(
                "agents = 'agent.skills[\"billing\"] >= 1'",
                "agents = 'agent.skills['",
            ),
            "apps[0].rules[1].overflow[0].agents",
            "does not compile",
        ),
        (
            FLOOR.replace("Europe/Paris", "Europe/Pariss"),
            "apps[0].agents[4].shift",
            "unknown time zone",
        ),
        (
            FLOOR.replace("\"mon-fri 09:00-18:00\"", "\"mon-fri 9-18\""),
            "apps[0].groups[1].hours",
            "expected HH:MM-HH:MM",
        ),
        (
            FLOOR.replace(
                "time_zone = \"Asia/Shanghai\"",
                "time_zone = \"Asia/Shangai\"",
            ),
            "apps[0].time_zone",
            "unknown time zone",
        ),
        (
            FLOOR.replace("capacity = 4", "capacity = 0"),
            "apps[0].agents[1].capacity",
            "must be from 1 to 10000",
        ),
        (
            FLOOR.replace(
                "groups = [6521, 6522]\ncapacity = 4",
                "groups = []\ncapacity = 4",
            ),
            "apps[0].agents[1].groups",
            "must name at least one group",
        ),
        (
            FLOOR.replace(
                "groups = [6521, 6522]\ncapacity = 4",
                "groups = [6521, 7]\ncapacity = 4",
            ),
            "apps[0].agents[1].groups",
            "group 7 is not defined",
        ),
        (
            FLOOR.replace("billing = 5 }", "\" \" = 5 }"),
            "apps[0].agents[1].skills",
            "skill names must not be empty",
        ),
    ];
    for (text, key, message) in cases {
        let config = handoff_core::config::parse(&text, Path::new("f.toml"), Vec::new())?;
        match Catalog::from_config(&config, Path::new("f.toml")) {
            Ok(_) => return Err(format!("accepted a bad {key}").into()),
            Err(err) => {
                assert_eq!(err.key, key, "{err}");
                assert!(err.message.contains(message), "{err}");
            }
        }
    }
    Ok(())
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the loads and the time, no agent at capacity, away, offline or off shift
        /// is offered, and the same state and clock give the same decision.
        #[test]
        fn never_offers_an_ineligible_agent_and_is_deterministic(
            active in proptest::collection::vec(0u32..6, 5),
            last in proptest::collection::vec(proptest::option::of(0u64..100), 5),
            hour in 0u64..(24 * 14),
            customer in prop_oneof![Just("vip-1"), Just("walk-in")],
            topic in prop_oneof![Just(""), Just("billing")],
        ) {
            let fail = |e: Error| TestCaseError::fail(e.to_string());
            let app = app_from(FLOOR).map_err(fail)?;
            let now = at(WEDNESDAY_MORNING).map_err(fail)? + Duration::from_secs(hour * 3600);
            let names = ["ann", "bob", "cat", "dan", "eve"];
            let mut state = FakeState::default();
            for (n, name) in names.iter().enumerate() {
                state = state.load(&format!("{name}@example.com"), active[n], last[n].and_then(secs));
            }
            let attributes: &[(&str, &str)] = if topic.is_empty() { &[] } else { &[("topic", topic)] };
            let handoff = handoff(customer, attributes).map_err(fail)?;
            let first = decide(&app, &handoff, &state, now);
            for candidate in &first.ranked {
                prop_assert!(candidate.active < candidate.capacity);
                let agent = app.agents().iter().find(|a| a.id == candidate.agent);
                prop_assert!(agent.is_some_and(|a| a.status == AgentStatus::Available));
                prop_assert!(agent.is_some_and(|a| a.shift.as_ref().is_none_or(|s| s.is_open(now))));
            }
            prop_assert_eq!(&first, &decide(&app, &handoff, &state, now));
        }
    }
}

#[test]
fn lint_names_expressions_that_fail_never_hold_or_are_not_bools() -> Result<(), Error> {
    let app = app_from(
        r#"
[[apps]]
sdk_app_id = 1400000001
[[apps.groups]]
id = 1
name = "g"
[[apps.agents]]
id = "a@example.com"
groups = [1]
[apps.agents.attributes]
seniority = "senior"
[[apps.agents]]
id = "b@example.com"
groups = [1]
[[apps.rules]]
name = "number"
when = 'customer.tier == 3'
group = 1
[[apps.rules]]
name = "text"
when = 'customer.tier'
group = 1
[[apps.rules]]
name = "fine"
when = 'customer.attributes.vip == "yes" || session.channel == "email"'
group = 1
agents = 'agent.attributes.seniority == "senior"'
[[apps.rules]]
name = "filter"
when = 'clock.hour >= 22'
group = 1
agents = 'agent.capacity > "2"'
[[apps.rules]]
name = "skills"
when = 'true'
group = 1
agents = 'agent.skills.billing != "3"'
"#,
    )?;
    let problems: Vec<String> = app
        .lint(SystemTime::now())
        .into_iter()
        .map(|(key, message)| format!("{key}: {message}"))
        .collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].starts_with("rules[0].when: `customer.tier == 3` compares text"));
    assert!(problems[1].starts_with("rules[1].when:") && problems[1].contains("not a bool"));
    // A missing attribute is data that may come: `fine` is fine.
    assert!(problems[2].starts_with("rules[3].agents:") && problems[2].contains("overload"));
    assert!(
        problems[3].starts_with("rules[4].agents:") && problems[3].contains("a number with text")
    );
    Ok(())
}

#[test]
fn lint_names_weights_no_agent_can_take_headroom_nobody_keeps_and_failing_tiers()
-> Result<(), Error> {
    let app = app_from(
        r#"
[[apps]]
sdk_app_id = 1400000001
[[apps.groups]]
id = 1
name = "g"
[[apps.agents]]
id = "a@example.com"
groups = [1]
capacity = 2
[[apps.rules]]
name = "heavy"
when = 'customer.tier == "vip"'
group = 1
weight = 3
use_headroom = true
tiers = ['agent.capacity > "2"']
[[apps.rules]]
name = "fine"
group = 1
weight = 2
"#,
    )?;
    let problems: Vec<String> = app
        .lint(SystemTime::now())
        .into_iter()
        .map(|(key, message)| format!("{key}: {message}"))
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].starts_with("rules[0].use_headroom: none of the rule's groups"));
    assert!(problems[1].starts_with("rules[0].weight: every agent of the target has fewer than 3"));
    assert!(
        problems[2].starts_with("rules[0].tiers[0]:"),
        "{problems:#?}"
    );
    Ok(())
}

#[test]
fn wrap_up_is_the_rules_else_the_groups_else_the_apps() -> TestResult {
    let app = app_from(
        r#"
[[apps]]
sdk_app_id = 1400000001
wrap_up = "30s"
[[apps.groups]]
id = 1
name = "one"
wrap_up = "2m"
[[apps.groups]]
id = 2
name = "two"
[[apps.rules]]
name = "own"
when = 'session.channel == "email"'
group = 1
wrap_up = "5s"
[[apps.rules]]
name = "groups"
group = 1
overflow = [{ group = 2 }]
"#,
    )?;
    let own = &app.rules()[0].rule;
    assert_eq!(app.wrap_up(own, &own.targets[0]), Duration::from_secs(5));
    let rule = app.default_rule();
    assert_eq!(
        app.wrap_up(rule, &rule.targets[0]),
        Duration::from_secs(120)
    );
    assert_eq!(app.wrap_up(rule, &rule.targets[1]), Duration::from_secs(30));
    Ok(())
}
