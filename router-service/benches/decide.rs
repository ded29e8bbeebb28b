//! How long the engine takes to decide, on the example config's scenarios and on a large
//! floor, against a baseline measured in the same run: one rule, no CEL, least_loaded over
//! the same agents. Read the results as ratios to the baseline.
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
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};
use handoff_router::engine::{
    AgentLoad, App, Catalog, Customer, Handoff, RosterChanges, StateView, decide,
};

/// A state where every agent carries some load and was assigned at some point.
struct Loaded {
    loads: HashMap<AgentId, AgentLoad>,
    changes: RosterChanges,
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
}

fn loaded(app: &App) -> Loaded {
    let loads = app
        .agents()
        .iter()
        .enumerate()
        .map(|(n, agent)| {
            let load = AgentLoad {
                active: (n % 3) as u32,
                confirmed: (n % 2) as u32,
                last_assigned: Some(
                    SystemTime::UNIX_EPOCH + Duration::from_secs(n as u64 * 7 % 101),
                ),
            };
            (agent.id.clone(), load)
        })
        .collect();
    Loaded {
        loads,
        changes: RosterChanges::new(),
    }
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

criterion_group!(benches, decisions);
criterion_main!(benches);
