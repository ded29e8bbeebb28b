//! Engine tests over small catalogs built from TOML, as operators write them.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    time::{Duration, SystemTime},
};

use handoff_core::id::{AgentId, ClientUserId, IdError, SdkAppId, SessionId};

use super::*;

const APP: &str = r#"
    [[apps]]
    sdk_app_id = 1400000001
    fallback_group_id = 9000
    [[apps.groups]]
    id = 6521
    name = "general"
    [[apps.groups]]
    id = 7000
    name = "billing"
    [[apps.agents]]
    id = "ann@example.com"
    groups = [6521]
    capacity = 2
    [[apps.agents]]
    id = "bob@example.com"
    groups = [6521]
    capacity = 4
    [[apps.agents]]
    id = "cat@example.com"
    groups = [6521, 7000]
    capacity = 1
    [[apps.agents]]
    id = "dan@example.com"
    groups = [6521]
    status = "away"
    [[apps.agents]]
    id = "eve@example.com"
    groups = [6521]
    status = "offline"
    [[apps.agents]]
    id = "fay@example.com"
    groups = [7000]
"#;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn app_from(text: &str) -> Result<App, Box<dyn std::error::Error>> {
    let config = handoff_core::config::parse(text, Path::new("test.toml"), Vec::new())?;
    let catalog = Catalog::from_config(&config);
    let app = catalog.app(SdkAppId::new(1_400_000_001)?).ok_or("no app")?;
    Ok(app.clone())
}

fn handoff() -> Result<Handoff, IdError> {
    Ok(Handoff {
        app: SdkAppId::new(1_400_000_001)?,
        session: SessionId::parse("s-1")?,
        client_user: ClientUserId::parse("u-1")?,
        event_time: SystemTime::UNIX_EPOCH,
        platform: String::new(),
        channel: "chat".into(),
        attributes: BTreeMap::new(),
    })
}

/// Loads by agent: `(active, seconds since epoch of the last assignment)`.
struct Loads(HashMap<String, (u32, Option<u64>)>);

impl Loads {
    fn of(entries: &[(&str, u32, Option<u64>)]) -> Self {
        Self(
            entries
                .iter()
                .map(|(id, active, last)| ((*id).to_owned(), (*active, *last)))
                .collect(),
        )
    }
}

impl LoadView for Loads {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        let (active, last) = self.0.get(agent.as_str()).copied().unwrap_or_default();
        AgentLoad {
            active,
            last_assigned: last.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        }
    }
}

fn ranked(decision: &Decision) -> Vec<&str> {
    decision
        .candidates
        .iter()
        .map(|c| c.agent.as_str())
        .collect()
}

#[test]
fn least_loaded_orders_by_load_relative_to_capacity_then_idle_time() -> TestResult {
    let app = app_from(APP)?;
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
    let cases: [(&str, Loads, &[&str]); 5] = [
        (
            "nobody busy: config order",
            Loads::of(&[]),
            &["ann@example.com", "bob@example.com", "cat@example.com"],
        ),
        (
            "ann 1/2 is busier than bob 1/4",
            Loads::of(&[
                ("ann@example.com", 1, Some(1)),
                ("bob@example.com", 1, Some(2)),
            ]),
            &["cat@example.com", "bob@example.com", "ann@example.com"],
        ),
        (
            "equal ratios: the longest idle first",
            Loads::of(&[
                ("ann@example.com", 1, Some(50)),
                ("bob@example.com", 2, Some(40)),
            ]),
            &["cat@example.com", "bob@example.com", "ann@example.com"],
        ),
        (
            "never assigned beats idle since long ago",
            Loads::of(&[
                ("ann@example.com", 0, Some(1)),
                ("bob@example.com", 0, None),
            ]),
            &["bob@example.com", "cat@example.com", "ann@example.com"],
        ),
        (
            "at capacity is never offered",
            Loads::of(&[
                ("cat@example.com", 1, Some(1)),
                ("bob@example.com", 4, Some(1)),
            ]),
            &["ann@example.com"],
        ),
    ];
    for (name, loads, expected) in cases {
        let decision = decide(&app, &handoff()?, &loads, now);
        assert_eq!(ranked(&decision), expected, "{name}");
        assert_eq!(decision.group.map(|g| g.get()), Some(6521), "{name}");
        assert!(!decision.fallback, "{name}");
    }
    Ok(())
}

#[test]
fn excluded_agents_carry_their_reason() -> TestResult {
    let app = app_from(APP)?;
    let loads = Loads::of(&[("cat@example.com", 1, Some(1))]);
    let decision = decide(&app, &handoff()?, &loads, SystemTime::UNIX_EPOCH);
    let reasons: Vec<(String, String)> = decision
        .excluded
        .iter()
        .map(|e| (e.agent.to_string(), e.reason.to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("cat@example.com".into(), "at capacity (1/1)".into()),
            ("dan@example.com".into(), "away".into()),
            ("eve@example.com".into(), "offline".into()),
        ]
    );
    assert!(
        decision.reason.contains("2 of 5 agents eligible"),
        "{}",
        decision.reason
    );
    Ok(())
}

#[test]
fn nobody_eligible_answers_the_group_alone_and_says_why() -> TestResult {
    let app = app_from(APP)?;
    let loads = Loads::of(&[
        ("ann@example.com", 2, Some(1)),
        ("bob@example.com", 4, Some(1)),
        ("cat@example.com", 1, Some(1)),
    ]);
    let decision = decide(&app, &handoff()?, &loads, SystemTime::UNIX_EPOCH);
    assert!(decision.fallback);
    assert!(decision.candidates.is_empty());
    assert_eq!(decision.group.map(|g| g.get()), Some(6521));
    assert!(
        decision.reason.contains("1 offline, 1 away, 3 at capacity"),
        "{}",
        decision.reason
    );
    Ok(())
}

#[test]
fn default_group_id_chooses_the_target() -> TestResult {
    let text = APP.replace("fallback_group_id = 9000", "default_group_id = 7000");
    let app = app_from(&text)?;
    let decision = decide(&app, &handoff()?, &Loads::of(&[]), SystemTime::UNIX_EPOCH);
    assert_eq!(ranked(&decision), ["cat@example.com", "fay@example.com"]);
    assert_eq!(decision.group.map(|g| g.get()), Some(7000));
    Ok(())
}

#[test]
fn an_app_without_groups_answers_its_fallback_group() -> TestResult {
    let app = app_from("[[apps]]\nsdk_app_id = 1400000001\nfallback_group_id = 9000")?;
    let decision = decide(&app, &handoff()?, &Loads::of(&[]), SystemTime::UNIX_EPOCH);
    assert!(decision.fallback);
    assert_eq!(decision.group.map(|g| g.get()), Some(9000));
    Ok(())
}

#[test]
fn reserving_past_filled_candidates_starts_the_answer_at_the_reserved_agent() -> TestResult {
    let app = app_from(APP)?;
    let decision = decide(&app, &handoff()?, &Loads::of(&[]), SystemTime::UNIX_EPOCH);
    let answer = decision.clone().reserve_at(1);
    assert_eq!(
        answer.reserved.as_ref().map(AgentId::as_str),
        Some("bob@example.com")
    );
    assert_eq!(answer.agents.len(), 2);
    let none = decision.without_reservation();
    assert!(none.fallback && none.agents.is_empty() && none.reserved.is_none());
    assert!(
        none.reason.contains("reached capacity meanwhile"),
        "{}",
        none.reason
    );
    Ok(())
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the loads, no agent at or over capacity is offered, every offered agent is
        /// available, and the same inputs give the same order.
        #[test]
        fn never_offers_a_full_agent_and_is_deterministic(
            active in proptest::collection::vec(0u32..6, 6),
            last in proptest::collection::vec(proptest::option::of(0u64..100), 6),
        ) {
            let app = app_from(APP).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ids = ["ann", "bob", "cat", "dan", "eve", "fay"].map(|n| format!("{n}@example.com"));
            let entries: Vec<(&str, u32, Option<u64>)> = ids
                .iter()
                .zip(active.iter().zip(&last))
                .map(|(id, (a, l))| (id.as_str(), *a, *l))
                .collect();
            let loads = Loads::of(&entries);
            let handoff = handoff().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let first = decide(&app, &handoff, &loads, SystemTime::UNIX_EPOCH);
            for candidate in &first.candidates {
                prop_assert!(candidate.active < candidate.capacity);
                let agent = app.agents().iter().find(|a| a.id == candidate.agent);
                prop_assert!(agent.is_some_and(|a| a.status == handoff_core::config::AgentStatus::Available));
            }
            let again = decide(&app, &handoff, &loads, SystemTime::UNIX_EPOCH);
            prop_assert_eq!(first, again);
        }
    }
}
