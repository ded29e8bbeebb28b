//! Direct checks against CEL on random expressions and data: wherever CEL gives a bool, the
//! check gives the same; wherever CEL fails, the check is undecided (and CEL runs).

use std::time::{Duration, SystemTime};

use handoff_core::id::{AgentId, ClientUserId, SdkAppId, SessionId};
use proptest::prelude::*;

use super::*;

/// Values drawn from small pools, so that comparisons hold about as often as not.
const WORDS: &[&str] = &[
    "vip", "gold", "zh", "en", "billing", "", "ios", "chat", "mon",
];
const KEYS: &[&str] = &["topic", "language", "seniority", "billing", "language.zh"];
const TEXT_FIELDS: &[&str] = &[
    "customer.id",
    "customer.tier",
    "customer.language",
    "customer.region",
    "customer.owner",
    "session.id",
    "session.platform",
    "session.channel",
    "agent.id",
    "agent.name",
    "clock.weekday",
    "clock.zone",
];
const NUMBER_FIELDS: &[&str] = &["clock.hour", "clock.minute", "agent.capacity"];
const OPS: &[&str] = &["==", "!=", "<", "<=", ">", ">="];

fn word() -> impl Strategy<Value = &'static str> {
    prop::sample::select(WORDS)
}

fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(KEYS)
}

fn map_of() -> impl Strategy<Value = &'static str> {
    prop::sample::select(&["customer", "session", "agent"][..])
}

/// One comparison of a form direct checks compile.
fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(TEXT_FIELDS),
            word(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(field, word, equal, swapped)| {
                let op = if equal { "==" } else { "!=" };
                if swapped {
                    format!(r#""{word}" {op} {field}"#)
                } else {
                    format!(r#"{field} {op} "{word}""#)
                }
            }),
        (
            prop::sample::select(TEXT_FIELDS),
            prop::collection::vec(word(), 0..3)
        )
            .prop_map(|(field, words)| format!("{field} in {words:?}")),
        (
            prop::sample::select(NUMBER_FIELDS),
            prop::sample::select(OPS),
            -1i64..26,
            any::<bool>()
        )
            .prop_map(|(field, op, literal, swapped)| if swapped {
                format!("{literal} {op} {field}")
            } else {
                format!("{field} {op} {literal}")
            }),
        (key(), prop::sample::select(OPS), 0i64..6)
            .prop_map(|(skill, op, level)| format!(r#"agent.skills["{skill}"] {op} {level}"#)),
        key().prop_map(|skill| format!(r#""{skill}" in agent.skills"#)),
        (map_of(), key()).prop_map(|(of, key)| format!(r#""{key}" in {of}.attributes"#)),
        (
            map_of(),
            prop::sample::select(&["topic", "language", "seniority"][..])
        )
            .prop_map(|(of, key)| format!("has({of}.attributes.{key})")),
        (map_of(), key(), word(), any::<bool>()).prop_map(|(of, key, word, index)| {
            if index {
                format!(r#"{of}.attributes["{key}"] == "{word}""#)
            } else {
                format!(r#"{of}["attributes"]["{key}"] != "{word}""#)
            }
        }),
        word().prop_map(|tag| format!(r#""{tag}" in customer.tags"#)),
        (0i64..4).prop_map(|group| format!("{group} in agent.groups")),
        Just("customer.known".to_owned()),
        any::<bool>().prop_map(|value| format!("customer.known == {value}")),
        any::<bool>().prop_map(|value| value.to_string()),
    ]
}

/// A comparison that reads only `agent`.
fn agent_leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            prop::sample::select(&["agent.id", "agent.name"][..]),
            word()
        )
            .prop_map(|(field, word)| format!(r#"{field} == "{word}""#)),
        (prop::sample::select(OPS), 0i64..6)
            .prop_map(|(op, capacity)| format!("agent.capacity {op} {capacity}")),
        (key(), prop::sample::select(OPS), 0i64..6)
            .prop_map(|(skill, op, level)| format!(r#"agent.skills["{skill}"] {op} {level}"#)),
        key().prop_map(|skill| format!(r#""{skill}" in agent.skills"#)),
        key().prop_map(|key| format!(r#""{key}" in agent.attributes"#)),
        (key(), word()).prop_map(|(key, word)| format!(r#"agent.attributes["{key}"] == "{word}""#)),
        (0i64..4).prop_map(|group| format!("{group} in agent.groups")),
    ]
}

/// Leaves joined by `&&`, `||` and `!`.
fn expression() -> impl Strategy<Value = String> {
    joined(leaf())
}

fn joined(leaf: impl Strategy<Value = String> + 'static) -> impl Strategy<Value = String> {
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
            inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

/// Some of the pool's words, keyed.
fn attributes() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        key().prop_map(str::to_owned),
        word().prop_map(str::to_owned),
        0..4,
    )
}

fn optional_word() -> impl Strategy<Value = Option<String>> {
    prop::option::of(word().prop_map(str::to_owned))
}

#[derive(Debug)]
struct World {
    customer: Customer,
    handoff: Handoff,
    now: SystemTime,
    zone: Tz,
    agent: AgentValue,
}

fn world() -> impl Strategy<Value = World> {
    let customer = (
        any::<bool>(),
        optional_word(),
        optional_word(),
        optional_word(),
        prop::collection::vec(word().prop_map(str::to_owned), 0..3),
        any::<bool>(),
        attributes(),
    );
    let session = (word(), word(), attributes());
    let agent = (
        optional_word(),
        prop::collection::vec(0u64..4, 0..3),
        prop::collection::btree_map(key().prop_map(str::to_owned), 0u32..6, 0..4),
        attributes(),
        1u32..6,
    );
    let clock = (0u64..14 * 86_400, any::<bool>());
    (customer, session, agent, clock).prop_map(
        |(
            (known, tier, language, region, tags, owned, attributes),
            (platform, channel, session_attributes),
            (name, groups, skills, agent_attributes, capacity),
            (seconds, shanghai),
        )| {
            let parse = |text: &str| ClientUserId::parse(text).expect("a valid id");
            World {
                customer: Customer {
                    id: parse("vip"),
                    known,
                    tier,
                    language,
                    region,
                    tags,
                    owner: owned.then(|| AgentId::parse("ann@example.com").expect("valid")),
                    attributes: attributes.into_iter().collect(),
                },
                handoff: Handoff {
                    app: SdkAppId::new(1_400_000_001).expect("a valid app"),
                    session: SessionId::parse("chat").expect("a valid session"),
                    client_user: parse("vip"),
                    event_time: SystemTime::UNIX_EPOCH,
                    platform: platform.to_owned(),
                    channel: channel.to_owned(),
                    attributes: session_attributes,
                },
                now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000 + seconds),
                zone: if shanghai {
                    chrono_tz::Asia::Shanghai
                } else {
                    chrono_tz::UTC
                },
                agent: agent_value(
                    "ann@example.com",
                    name.as_deref(),
                    &groups,
                    &skills,
                    &agent_attributes,
                    capacity,
                ),
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn direct_checks_agree_with_cel(source in expression(), world in world()) {
        let cel = Cel::default();
        let expression = cel.compile(&source, Kind::AgentFilter).expect("compiles");
        let check = expression.direct.as_ref();
        prop_assert!(check.is_some(), "`{source}` has no direct check");
        let scope = cel.scope(&world.handoff, &world.customer, world.now, world.zone);
        let by_cel = scope.run(&expression, Some(&world.agent));
        let direct = check.map(|check| check.eval(&scope.data(Some(&world.agent))));
        match (by_cel, direct) {
            (Ok(Value::Bool(cel)), Some(Ok(direct))) => prop_assert_eq!(cel, direct, "`{}`", source),
            (Err(_), Some(Err(_))) => {}
            (cel, direct) => prop_assert!(false, "`{source}`: CEL {cel:?}, direct {direct:?}"),
        }
        // And the answer a decision gets, errors included, is CEL's.
        let by_cel = expect_bool(&expression, scope.run(&expression, Some(&world.agent)));
        prop_assert_eq!(scope.admits(&expression, &world.agent), by_cel);
    }

    #[test]
    fn agent_only_filters_agree_with_cel(source in joined(agent_leaf()), world in world()) {
        let cel = Cel::default();
        let expression = cel.compile(&source, Kind::AgentFilter).expect("compiles");
        prop_assert!(expression.agent_only() && expression.direct.is_some(), "`{}`", source);
        let scope = cel.scope(&world.handoff, &world.customer, world.now, world.zone);
        let by_cel = expect_bool(&expression, scope.run(&expression, Some(&world.agent)));
        prop_assert_eq!(cel.admits_agent(&expression, &world.agent), by_cel);
    }
}

#[test]
fn the_example_rules_compile_to_direct_checks() {
    let cel = Cel::default();
    for source in [
        r#"customer.tier == "vip""#,
        r#""topic" in session.attributes && session.attributes.topic == "billing""#,
        r#"customer.language == "zh" || ("language" in session.attributes && session.attributes.language == "zh")"#,
        "clock.hour >= 22 || clock.hour < 8",
        r#""language.zh" in agent.skills && agent.skills["language.zh"] >= 3"#,
        r#""billing" in agent.skills"#,
        r#"agent.attributes.seniority == "senior""#,
        r#"clock.weekday in ["sat", "sun"]"#,
    ] {
        let expression = cel.compile(source, Kind::AgentFilter).expect("compiles");
        assert!(
            expression.direct.is_some(),
            "`{source}` has no direct check"
        );
    }
}

#[test]
fn other_forms_are_left_to_cel() {
    let cel = Cel::default();
    for source in [
        "size(customer.tags) > 0",
        r#"customer.tier.startsWith("v")"#,
        "clock.hour >= 22.0",
        "clock.hour == 22u",
        r#"customer.tier == "vip" ? true : false"#,
        "customer.tier == 3",
        "1 in customer.tags",
    ] {
        let expression = cel.compile(source, Kind::AgentFilter).expect("compiles");
        assert!(expression.direct.is_none(), "`{source}` was compiled");
    }
}

#[test]
fn a_missing_key_fails_with_cels_own_error() {
    let cel = Cel::default();
    let expression = cel
        .compile(r#"session.attributes.topic == "billing""#, Kind::When)
        .expect("compiles");
    let customer = Customer::unknown(ClientUserId::parse("u").expect("valid"));
    let handoff = Handoff {
        app: SdkAppId::new(1_400_000_001).expect("valid"),
        session: SessionId::parse("s").expect("valid"),
        client_user: customer.id.clone(),
        event_time: SystemTime::UNIX_EPOCH,
        platform: String::new(),
        channel: String::new(),
        attributes: BTreeMap::new(),
    };
    let scope = cel.scope(&handoff, &customer, SystemTime::UNIX_EPOCH, chrono_tz::UTC);
    let error = scope.holds(&expression).expect_err("no topic");
    assert!(error.contains("failed"), "{error}");
    assert!(error.contains("topic"), "{error}");
}
