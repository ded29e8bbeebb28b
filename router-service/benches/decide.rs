//! How long the engine takes to decide, on the example config's scenarios and on large
//! floors, against a baseline measured in the same run: one rule, no CEL, least_loaded over
//! the same agents. Read the results as ratios to the baseline.
//!
//! The `floor` group decides over 100 to 100,000 agents in the target group, ranked ahead
//! (what AssignHuman does) and examined one by one (what ExplainAssignment does), with and
//! without an agent filter and with 10,000 agents outside the group; `store` runs the local
//! store's AssignHuman with seats taken and released as it goes.
//!
//! `features` decides over 10,000 agents without, then with, every feature beyond the peers.
//!
//! `cargo bench -p handoff-router --bench decide`

use std::{
    collections::{BTreeMap, HashMap},
    hint::black_box,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use criterion::{Criterion, criterion_group, criterion_main};

/// The stores' own map (foldhash), so that lookups cost here what they cost there.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, GroupId, SdkAppId, SessionId},
};
use handoff_router::{
    engine::{
        AgentLoad, App, Catalog, Customer, Floor, Handoff, Misses, RosterChanges, StateView, Taken,
        WaitSummary, Waits, decide, decide_fully, unix_ms,
    },
    store::{Change, Lifetimes, LocalStore, SessionEvent, SessionEventKind, Store},
};

/// A state where every agent carries some load and was assigned at some point, with the
/// floor a store would keep ranked.
struct Loaded {
    loads: FastMap<AgentId, AgentLoad>,
    changes: RosterChanges,
    floor: Option<Floor>,
    misses: FastMap<AgentId, Misses>,
    taken: FastMap<AgentId, Taken>,
    waits: FastMap<String, Waits>,
    /// The same summed ahead, as the stores keep them.
    wait_summaries: FastMap<Option<GroupId>, WaitSummary>,
}

impl StateView for Loaded {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.loads.get(agent).copied().unwrap_or_default()
    }
    fn status(&self, _: &AgentId) -> Option<AgentStatus> {
        None
    }
    fn customer(&self, _: &ClientUserId) -> Option<&Customer> {
        None
    }
    fn last_agent(&self, _: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        None
    }
    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }
    fn floor(&self) -> Option<&Floor> {
        self.floor.as_ref()
    }
    fn misses(&self, agent: &AgentId) -> Option<&Misses> {
        self.misses.get(agent)
    }
    fn waits_of(&self, key: &str) -> Option<&Waits> {
        self.waits.get(key)
    }
    fn wait(&self, group: Option<GroupId>, now: SystemTime) -> Option<Duration> {
        self.wait_summaries.get(&group)?.estimate(unix_ms(now))
    }
    fn taken(&self, agent: &AgentId) -> Option<&Taken> {
        self.taken.get(agent)
    }
}

fn loaded(app: &App) -> Loaded {
    let loads = app
        .agents()
        .iter()
        .enumerate()
        .map(|(n, agent)| {
            let load = AgentLoad {
                active: (n % 3) as u32,
                weighted: 0,
                unattributed: 0,
                confirmed: (n % 2) as u32,
                last_assigned: Some(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(n as u64 * 7 % 101),
                ),
                ..AgentLoad::default()
            };
            (agent.id.clone(), load)
        })
        .collect();
    let mut state = Loaded {
        loads,
        changes: RosterChanges::new(),
        floor: None,
        misses: FastMap::default(),
        taken: FastMap::default(),
        waits: FastMap::default(),
        wait_summaries: FastMap::default(),
    };
    state.floor = Some(Floor::build(app, 0, &state));
    state
}

fn app(text: &str) -> Arc<App> {
    let origin = Path::new("bench.toml");
    let config =
        handoff_core::config::parse(text, origin, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let catalog = Catalog::from_config(&config, origin).unwrap_or_else(|e| panic!("{e}"));
    let id = SdkAppId::new(1_400_000_001).unwrap_or_else(|e| panic!("{e}"));
    catalog.app(id).cloned().unwrap_or_else(|| panic!("no app"))
}

fn handoff(customer: &str, attributes: &[(&str, &str)]) -> Handoff {
    Handoff {
        app: SdkAppId::new(1_400_000_001).unwrap_or_else(|e| panic!("{e}")),
        session: SessionId::parse("bench-session").unwrap_or_else(|e| panic!("{e}")),
        client_user: ClientUserId::parse(customer).unwrap_or_else(|e| panic!("{e}")),
        event_time: SystemTime::UNIX_EPOCH,
        platform: "ios".into(),
        channel: "chat".into(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The example config, and the same floor with its rules stripped (the baseline).
fn example() -> (String, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/handoff.example.toml");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    let cut = text.find("[[apps.rules]]").unwrap_or(text.len());
    let bare = format!(
        "{}\n[[apps.rules]]\nname = \"default\"\ngroup = 6521\n",
        &text[..cut]
    );
    (text, bare)
}

/// One group of `agents` agents with a rule that filters on a skill.
fn large_floor(agents: usize) -> String {
    let mut text = String::from(
        "[[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = 1\nname = \"floor\"\n\
         [[apps.rules]]\nname = \"skilled\"\nwhen = 'customer.language == \"\"'\ngroup = 1\n\
         agents = '\"language.zh\" in agent.skills'\nstrategy = \"most_skilled\"\nskills = [\"language.zh\"]\n",
    );
    for n in 0..agents {
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"agent{n}@example.com\"\ngroups = [1]\ncapacity = 4\nskills = {{ \"language.zh\" = {} }}\n",
            n % 6
        ));
    }
    text
}

fn decisions(c: &mut Criterion) {
    // 10:00 on a Wednesday in Shanghai: every group of the example is open.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_572_000);
    let (example, bare) = example();
    let example = app(&example);
    let bare = app(&bare);
    let state = loaded(&example);
    let mut group = c.benchmark_group("decide");
    group.bench_function("baseline: one rule, no CEL, least_loaded", |b| {
        let handoff = handoff("walk-in", &[]);
        b.iter(|| decide(black_box(&bare), &handoff, &state, now))
    });
    let scenarios = [
        ("example: vip (1 CEL rule, most_skilled)", "vip-8848"),
        ("example: chinese (3 CEL rules, agent filter)", "u-1024"),
        ("example: walk-in (4 CEL rules, default)", "walk-in"),
    ];
    for (name, customer) in scenarios {
        let handoff = handoff(customer, &[]);
        group.bench_function(name, |b| {
            b.iter(|| decide(black_box(&example), &handoff, &state, now))
        });
    }
    let floor = app(&large_floor(500));
    let floor_state = loaded(&floor);
    group.bench_function("500 agents, CEL agent filter, most_skilled", |b| {
        let handoff = handoff("walk-in", &[]);
        b.iter(|| decide(black_box(&floor), &handoff, &floor_state, now))
    });
    group.finish();
}

/// The example's bare floor with `count` `when` rules before its default, none of which
/// matches a walk-in: the example's four shapes in turn (`direct`), or a form that CEL
/// itself runs.
fn unmatched_rules(bare: &str, count: usize, direct: bool) -> String {
    const SHAPES: [&str; 4] = [
        r#"customer.tier == "vip""#,
        r#""topic" in session.attributes && session.attributes.topic == "billing""#,
        r#"customer.language == "zh" || ("language" in session.attributes && session.attributes.language == "zh")"#,
        "clock.hour >= 22 || clock.hour < 8",
    ];
    let cut = bare.find("[[apps.rules]]").unwrap_or(bare.len());
    let mut text = bare[..cut].to_owned();
    for n in 0..count {
        let when = if direct {
            SHAPES[n % SHAPES.len()].to_owned()
        } else {
            format!("size(customer.tags) > {n}")
        };
        text.push_str(&format!(
            "[[apps.rules]]\nname = \"rule{n}\"\nwhen = '{when}'\ngroup = 6521\n"
        ));
    }
    text.push_str(&bare[cut..]);
    text
}

fn rules(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_572_000);
    let (_, bare) = example();
    let handoff = handoff("walk-in", &[]);
    let mut group = c.benchmark_group("rules");
    for (count, direct) in [(0, true), (8, true), (32, true), (8, false), (32, false)] {
        let app = app(&unmatched_rules(&bare, count, direct));
        let state = loaded(&app);
        let kind = if direct {
            "the example's forms"
        } else {
            "a form CEL runs"
        };
        group.bench_function(format!("{count} unmatched when rules, {kind}"), |b| {
            b.iter(|| decide(black_box(&app), &handoff, &state, now))
        });
    }
    group.finish();
}

/// `agents` agents in group 1 and `outside` in group 2; the rule targets group 1 with
/// least_loaded, filtered on the agent's seniority when `filter`.
fn scaled_floor(agents: usize, outside: usize, filter: bool) -> String {
    let mut text = String::from(
        "[[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = 1\nname = \"floor\"\n\
         [[apps.groups]]\nid = 2\nname = \"elsewhere\"\n\
         [[apps.rules]]\nname = \"default\"\ngroup = 1\n",
    );
    if filter {
        text.push_str("agents = 'agent.attributes.seniority == \"senior\"'\n");
    }
    for n in 0..agents + outside {
        let (group, seniority) = (if n < agents { 1 } else { 2 }, ["junior", "senior"][n % 2]);
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"agent{n}@example.com\"\ngroups = [{group}]\ncapacity = 4\n\
             attributes = {{ seniority = \"{seniority}\" }}\n"
        ));
    }
    text
}

fn floors(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_572_000);
    let mut group = c.benchmark_group("floor");
    group.sample_size(30);
    let cases: [(usize, usize, bool); 7] = [
        (100, 0, false),
        (1_000, 0, false),
        (10_000, 0, false),
        (100_000, 0, false),
        (10_000, 0, true),
        (100, 10_000, false),
        (10_000, 10_000, true),
    ];
    for (agents, outside, filter) in cases {
        let app = app(&scaled_floor(agents, outside, filter));
        let state = loaded(&app);
        let handoff = handoff("walk-in", &[]);
        let name = format!(
            "{agents} agents{}{}",
            if filter { ", agent filter" } else { "" },
            if outside > 0 {
                format!(", {outside} outside the group")
            } else {
                String::new()
            }
        );
        group.bench_function(format!("ranked: {name}"), |b| {
            b.iter(|| decide(black_box(&app), &handoff, &state, now))
        });
        if agents <= 10_000 {
            group.bench_function(format!("examined one by one: {name}"), |b| {
                b.iter(|| decide_fully(black_box(&app), &handoff, &state, now))
            });
        }
    }
    group.finish();
}

/// A decision over 10,000 agents with none of the features beyond the peers, then with all
/// five on: wrap-up, missed offers and fair share (every tenth agent wrapping up, every
/// tenth others parked, every tenth at its fair share), sessions of two seats with a group
/// headroom, two tiers, and an overflow on free seats and on the estimated wait (over 32
/// waits kept): the cost of the checks, as a ratio of the two in the same run.
fn features(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_572_000);
    let mut group = c.benchmark_group("features");
    group.sample_size(30);
    let plain = app(&scaled_floor(10_000, 0, false));
    let featured = app(&scaled_floor(10_000, 0, false)
        .replacen(
            "sdk_app_id = 1400000001\n",
            "sdk_app_id = 1400000001\nwrap_up = \"60s\"\nmax_missed = 2\nfair_share = { sessions = 5, window = \"1h\" }\n",
            1,
        )
        .replacen("name = \"floor\"\n", "name = \"floor\"\nheadroom = 2\n", 1)
        .replacen(
            "name = \"default\"\ngroup = 1\n",
            "name = \"default\"\ngroup = 1\nweight = 2\n\
             tiers = ['agent.attributes.seniority == \"senior\"']\n\
             overflow_when = { free_seats_below = 2, wait_above = \"10m\" }\n\
             overflow = [{ group = 2 }]\n",
            1,
        ));
    let handoff = handoff("walk-in", &[]);
    let plain_state = loaded(&plain);
    group.bench_function("10000 agents, no features", |b| {
        b.iter(|| decide(black_box(&plain), &handoff, &plain_state, now))
    });
    for (label, every) in [("3%", 100), ("30%", 10)] {
        let state = featured_state(&featured, now, every);
        group.bench_function(
            format!("10000 agents, all five features on, {label} left out by them"),
            |b| b.iter(|| decide(black_box(&featured), &handoff, &state, now)),
        );
    }
    group.finish();
}

/// `app`'s floor loaded as [`loaded`] does, with what the features keep: every agent took
/// three sessions this hour; of each `every` agents, one at its fair share of five, one
/// wrapping up, one parked after two missed offers; the group's 32 latest waits, a minute
/// or so each, asked over the last half hour. The floor is ranked over all of it.
fn featured_state(app: &App, now: SystemTime, every: usize) -> Loaded {
    let mut state = loaded(app);
    let now_ms = 1_795_572_000_000u64;
    for (n, agent) in app.agents().iter().enumerate() {
        let mut taken = Taken::default();
        for k in 0..(if n % every == 3 { 5 } else { 3 }) {
            taken.took(&format!("s-{n}-{k}"), now_ms - 60_000 * (k + 1), 0, 5);
        }
        let load = state.loads.entry(agent.id.clone()).or_default();
        load.taken_kept = taken.0.len() as u32;
        if n % every == 0 {
            load.last_finished = Some(now - Duration::from_secs(10));
        } else if n % every == 5 {
            let mut misses = Misses::default();
            misses.missed("offered-1", now_ms - 2_000);
            misses.missed("offered-2", now_ms - 1_000);
            load.missed_kept = misses.missed.len() as u32;
            state.misses.insert(agent.id.clone(), misses);
        }
        state.taken.insert(agent.id.clone(), taken);
    }
    let mut waits = Waits::default();
    for k in 0..Waits::KEEP as u64 {
        waits.waited(&format!("w-{k}"), now_ms - 60_000 * k, 50_000 + 1_000 * k);
    }
    state
        .wait_summaries
        .insert(GroupId::new(1).ok(), WaitSummary::of(&waits));
    state.waits.insert("1".to_owned(), waits);
    state.floor = Some(Floor::build(app, 0, &state));
    state
}

/// The local store's AssignHuman over 10,000 agents, each call a new session, with the
/// session of 1,000 calls before ended, so loads stay level and seats move both ways.
fn store(c: &mut Criterion) {
    let app = app(&scaled_floor(10_000, 0, false));
    let lifetimes = Lifetimes {
        assignment_ttl: Duration::from_secs(3600),
        max_session: Duration::from_secs(8 * 3600),
    };
    let store = LocalStore::in_memory(lifetimes);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_572_000);
    let mut n: u64 = 0;
    let mut group = c.benchmark_group("store");
    group.bench_function("memory store: AssignHuman + an end, 10000 agents", |b| {
        b.iter(|| {
            n += 1;
            let mut handoff = handoff("walk-in", &[]);
            handoff.session = SessionId::parse(format!("s{n}")).unwrap_or_else(|e| panic!("{e}"));
            runtime.block_on(async {
                let assigned = store
                    .assign(&app, &handoff, now, |state| {
                        decide(&app, &handoff, state, now)
                    })
                    .await;
                black_box(assigned).ok();
                if n > 1_000 {
                    let ended = SessionEvent {
                        session: SessionId::parse(format!("s{}", n - 1_000))
                            .unwrap_or_else(|e| panic!("{e}")),
                        kind: SessionEventKind::Ended,
                        agent: None,
                        from_agent: None,
                        customer: None,
                        at: now + Duration::from_secs(1),
                        id: None,
                    };
                    black_box(store.apply(&app, Change::Session(ended), now).await).ok();
                }
            })
        })
    });
    group.finish();
}

criterion_group!(benches, decisions, rules, floors, features, store);
criterion_main!(benches);
