//! Resident memory of the local store with 100,000 agents on the floor and 1,000,000
//! customers known (pushed as UpsertCustomer would, each with a tier, a language, a tag, an
//! owner and an attribute, and each with a previous agent from one session), reported per
//! customer; then what sessions cost while they are remembered, per session. Printed
//! figures, not a test.
//!
//! `cargo bench -p handoff-router --bench memory`

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime},
};

use handoff_core::id::{AgentId, ClientUserId, SdkAppId, SessionId};
use handoff_router::{
    engine::{Catalog, Customer, Handoff, decide},
    store::{Change, Lifetimes, LocalStore, Store},
};

const AGENTS: usize = 100_000;
const CUSTOMERS: usize = 1_000_000;
const SESSIONS: usize = 100_000;

/// Resident set size in bytes, from /proc.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_default();
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut text = String::from(
        "[[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = 1\nname = \"floor\"\n",
    );
    for n in 0..AGENTS {
        text.push_str(&format!(
            "[[apps.agents]]\nid = \"agent{n}@example.com\"\ngroups = [1]\ncapacity = 10000\n"
        ));
    }
    let start = resident();
    let config = handoff_core::config::parse(&text, Path::new("m.toml"), Vec::new())
        .unwrap_or_else(|e| panic!("{e}"));
    drop(text);
    let catalog =
        Catalog::from_config(&config, Path::new("m.toml")).unwrap_or_else(|e| panic!("{e}"));
    drop(config);
    let app = catalog
        .app(SdkAppId::new(1_400_000_001).unwrap_or_else(|e| panic!("{e}")))
        .unwrap_or_else(|| panic!("no app"))
        .clone();
    let store = LocalStore::in_memory(Lifetimes {
        assignment_ttl: Duration::from_secs(60),
        max_session: Duration::from_secs(60),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    // The floor is built on the first look.
    runtime.block_on(async {
        let handoff = handoff(0, "s-first", now);
        let _ = store
            .assign(&app, &handoff, now, |state| {
                decide(&app, &handoff, state, now)
            })
            .await;
    });
    let floor = resident();
    runtime.block_on(async {
        for n in 0..CUSTOMERS {
            let id =
                ClientUserId::parse(format!("customer-{n:07}")).unwrap_or_else(|e| panic!("{e}"));
            let mut customer = Customer::unknown(id);
            customer.known = true;
            customer.tier = Some(["gold", "silver", "vip"][n % 3].to_owned());
            customer.language = Some("zh".to_owned());
            customer.tags = vec!["returning".to_owned()];
            customer.owner = AgentId::parse(format!("agent{}@example.com", n % AGENTS)).ok();
            customer.attributes = vec![("segment".to_owned(), "retail".to_owned())];
            let _ = store.apply(&app, Change::PutCustomer(customer), now).await;
        }
    });
    let customers = resident();
    // One session each, spread over a day and a bit (one every 100 ms), as a day's traffic
    // comes: each is released a minute after it was reserved and forgotten a minute later,
    // so what stays is each customer's previous agent, not a million sessions at once
    // (those are measured apart below).
    runtime.block_on(async {
        for n in 0..CUSTOMERS {
            let at = now + Duration::from_secs(120) + Duration::from_millis(100 * n as u64);
            let handoff = handoff(n, &format!("s-{n}"), at);
            let _ = store
                .assign(&app, &handoff, at, |state| {
                    decide(&app, &handoff, state, at)
                })
                .await;
        }
    });
    let later = now + Duration::from_secs(120) + Duration::from_millis(100 * CUSTOMERS as u64);
    let history = resident();
    // Sessions remembered at once: each is kept until max_session after its seat runs out.
    runtime.block_on(async {
        for n in 0..SESSIONS {
            let at = later + Duration::from_secs(3600);
            let handoff = handoff(n, &format!("t-{n}"), at);
            let _ = store
                .assign(&app, &handoff, at, |state| {
                    decide(&app, &handoff, state, at)
                })
                .await;
        }
    });
    let sessions = resident();
    println!("resident memory, local store ({AGENTS} agents, {CUSTOMERS} customers):");
    println!(
        "  the floor of {AGENTS} agents, compiled and ranked: {:.1} MiB",
        mib(floor.saturating_sub(start))
    );
    println!(
        "  {CUSTOMERS} customers known: {:.1} MiB, {:.0} bytes per customer",
        mib(customers.saturating_sub(floor)),
        customers.saturating_sub(floor) as f64 / CUSTOMERS as f64
    );
    println!(
        "  and a previous agent each (after a session each over a day): {:.1} MiB more, {:.0} bytes per customer",
        mib(history.saturating_sub(customers)),
        history.saturating_sub(customers) as f64 / CUSTOMERS as f64
    );
    println!(
        "  in all, per customer known: {:.0} bytes",
        history.saturating_sub(floor) as f64 / CUSTOMERS as f64
    );
    println!(
        "  {SESSIONS} sessions held at once: {:.1} MiB, {:.0} bytes per session",
        mib(sessions.saturating_sub(history)),
        sessions.saturating_sub(history) as f64 / SESSIONS as f64
    );
}

fn handoff(n: usize, session: &str, at: SystemTime) -> Handoff {
    Handoff {
        app: SdkAppId::new(1_400_000_001).unwrap_or_else(|e| panic!("{e}")),
        session: SessionId::parse(session).unwrap_or_else(|e| panic!("{e}")),
        client_user: ClientUserId::parse(format!("customer-{n:07}"))
            .unwrap_or_else(|e| panic!("{e}")),
        event_time: at,
        platform: String::new(),
        channel: String::new(),
        attributes: BTreeMap::new(),
    }
}
