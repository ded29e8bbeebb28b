//! What the console costs to render on a big floor: the floor page (each group's counts)
//! and the agents page (sorted, first hundred) over 10,000 agents in 20 groups, with loads,
//! through a router on the memory store, as `GET /floor` and `GET /agents` serve them.
//!
//! `cargo bench -p handoff-router --bench console`

use std::{path::Path, sync::Arc, time::SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use handoff_core::id::SdkAppId;
use handoff_router::{
    Router, SystemClock, console,
    engine::{Catalog, Handoff},
    store::{Lifetimes, LocalStore},
};

fn floor(agents: usize, groups: usize) -> String {
    let mut text = String::from("[[apps]]\nsdk_app_id = 1400000001\n");
    for g in 1..=groups {
        text.push_str(&format!(
            "[[apps.groups]]\nid = {g}\nname = \"group {g}\"\n"
        ));
    }
    for n in 0..agents {
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"agent{n}@example.com\"\nname = \"Agent {n}\"\ngroups = [{}]\ncapacity = 4\n",
            n % groups + 1
        ));
    }
    text
}

fn render(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = floor(10_000, 20);
    let config = handoff_core::config::parse(&text, Path::new("bench.toml"), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let catalog =
        Catalog::from_config(&config, Path::new("bench.toml")).unwrap_or_else(|e| panic!("{e}"));
    let store = LocalStore::in_memory(Lifetimes::of(&config.router));
    let router = Arc::new(Router::new(catalog, store, Arc::new(SystemClock)));
    let app = SdkAppId::new(1_400_000_001).unwrap_or_else(|e| panic!("{e}"));
    // Some load: 5,000 sessions reserved.
    runtime.block_on(async {
        for n in 0..5_000 {
            let handoff = Handoff {
                app,
                session: handoff_core::id::SessionId::parse(format!("s{n}"))
                    .unwrap_or_else(|e| panic!("{e}")),
                client_user: handoff_core::id::ClientUserId::parse(format!("c{n}"))
                    .unwrap_or_else(|e| panic!("{e}")),
                event_time: SystemTime::now(),
                platform: String::new(),
                channel: String::new(),
                attributes: Default::default(),
            };
            router
                .assign(&handoff)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
    let mut group = c.benchmark_group("console");
    group.sample_size(20);
    group.bench_function("floor and agents pages, 10000 agents in 20 groups", |b| {
        b.iter(|| {
            runtime
                .block_on(console::render_floor_and_agents(router.clone(), app))
                .unwrap_or_else(|e| panic!("{e}"))
        })
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
