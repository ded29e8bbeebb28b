//! The same day's session events delivered in order, shuffled and repeated, on Redis (the
//! Lua side of the session rules) and on the memory store (the Rust side): every delivery
//! ends in the same loads and sessions, and the two stores agree; with every routing
//! feature beyond the peers on, in the same state of those features too.

use std::{collections::BTreeMap, net::SocketAddr};

use handoff_proto::router::v1::{
    AssignHumanRequest, ListAgentsRequest, ListSessionsRequest, ReportSessionEventRequest,
    SessionEventKind, router_service_client::RouterServiceClient,
};

use crate::{
    redis::RedisServer,
    support::{Error, TestResult, launch},
};

/// Three agents of four seats each.
fn floor() -> String {
    crate::support::one_app(
        "",
        "",
        (1, "floor"),
        &[
            ("ann@example.com", 4),
            ("bob@example.com", 4),
            ("cy@example.com", 4),
        ],
    )
}

/// When the users asked (seconds; ten minutes before the test started, so that the events
/// after it are within the router's max_event_age and not ahead of its clock).
fn asked() -> i64 {
    static ASKED: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *ASKED.get_or_init(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |now| i64::try_from(now.as_secs()).unwrap_or(0)) - 600
    })
}

fn event(
    n: usize,
    session: &str,
    kind: SessionEventKind,
    agent: &str,
    from: &str,
    at_ms: i64,
) -> ReportSessionEventRequest {
    ReportSessionEventRequest {
        sdk_app_id: 1_400_000_001,
        session_id: session.into(),
        kind: kind.into(),
        agent_id: if agent.is_empty() {
            String::new()
        } else {
            format!("{agent}@example.com")
        },
        from_agent_id: if from.is_empty() {
            String::new()
        } else {
            format!("{from}@example.com")
        },
        client_user_id: format!("u-{session}"),
        event_time: Some(prost_types::Timestamp {
            seconds: at_ms / 1000,
            nanos: i32::try_from(at_ms % 1000 * 1_000_000).unwrap_or(0),
        }),
        event_id: format!("e-{n}"),
    }
}

/// A day of six sessions, each event in the order it happened.
fn day() -> Vec<ReportSessionEventRequest> {
    use SessionEventKind::*;
    let t = |s: i64| (asked() + 10) * 1000 + s;
    let plan: [(&str, SessionEventKind, &str, &str, i64); 14] = [
        ("d1", Assigned, "bob", "", t(1)),
        ("d1", Transferred, "cy", "bob", t(5)),
        ("d1", Ended, "", "", t(9)),
        ("d2", Assigned, "ann", "", t(2)),
        ("d2", Assigned, "ann", "", t(3)),
        ("d3", Failed, "", "", t(2)),
        ("d4", Assigned, "cy", "", t(1)),
        ("d4", Transferred, "ann", "cy", t(4)),
        ("d4", Transferred, "bob", "ann", t(6)),
        ("d5", Ended, "", "", t(7)),
        ("d5", Assigned, "bob", "", t(3)),
        ("d6", Assigned, "ann", "", t(2)),
        ("d6", Ended, "", "", t(8)),
        ("d6", Assigned, "cy", "", t(9)),
    ];
    plan.iter()
        .enumerate()
        .map(|(n, (session, kind, agent, from, at))| event(n, session, *kind, agent, from, *at))
        .collect()
}

/// `events` in an order drawn from `seed`, with a few of them delivered twice.
fn shuffled(events: &[ReportSessionEventRequest], seed: u64) -> Vec<ReportSessionEventRequest> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % bound as u64).unwrap_or(0)
    };
    let mut out = events.to_vec();
    for i in (1..out.len()).rev() {
        let j = next(i + 1);
        out.swap(i, j);
    }
    for _ in 0..3 {
        let again = out[next(out.len())].clone();
        let at = next(out.len() + 1);
        out.insert(at, again);
    }
    out
}

/// Three agents of four seats each, with every feature beyond the peers on: wrap-up, parks
/// after two missed offers, fair share, sessions of two seats, a seat kept as headroom,
/// tiers, and an overflow on the estimated wait (so that the stores keep waits).
fn featured() -> String {
    let app = "wrap_up = \"60s\"\nmax_missed = 2\npark_for = \"10m\"\n\
               fair_share = { sessions = 3, window = \"1h\" }";
    let mut text = crate::support::one_app(
        "",
        app,
        (1, "floor"),
        &[
            ("ann@example.com", 4),
            ("bob@example.com", 4),
            ("cy@example.com", 4),
        ],
    )
    .replace("name = \"floor\"\n", "name = \"floor\"\nheadroom = 1\n");
    text.push_str(
        "[[apps.rules]]\nname = \"everyone\"\ngroup = 1\nweight = 2\n\
         tiers = ['agent.id != \"ann@example.com\"']\n\
         overflow_when = { wait_above = \"1h\" }\noverflow = [{ group = 1 }]\n",
    );
    text
}

/// Each agent as ListAgents shows it: seats (active, confirmed, weighted), whether it
/// finished a session (when, by the router's clock, differs between plays), offers missed
/// in a row, parked until (s), new sessions within fair share's window.
type AgentPicture = (u32, u32, u32, bool, u32, Option<i64>, u32);

/// The agents, the sessions holding seats, and each group's free seats and estimated wait.
type Picture = (
    BTreeMap<String, AgentPicture>,
    BTreeMap<String, (i32, String)>,
    Vec<(u64, u32, Option<(i64, i32)>)>,
);

/// Plays the handoffs, then `events`, on the router at `grpc`; what it then shows.
async fn play(grpc: SocketAddr, events: Vec<ReportSessionEventRequest>) -> Result<Picture, Error> {
    let mut client = RouterServiceClient::connect(format!("http://{grpc}")).await?;
    for session in ["d1", "d2", "d3", "d4", "d5", "d6"] {
        client
            .assign_human(AssignHumanRequest {
                sdk_app_id: 1_400_000_001,
                session_id: session.into(),
                client_user_id: format!("u-{session}"),
                event_time: Some(prost_types::Timestamp {
                    seconds: asked(),
                    nanos: 0,
                }),
                ..AssignHumanRequest::default()
            })
            .await?;
    }
    for event in events {
        client.report_session_event(event).await?;
    }
    let listed = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner();
    let loads = listed
        .agents
        .into_iter()
        .filter_map(|row| {
            let seen = (
                row.active,
                row.confirmed,
                row.weighted,
                row.last_finished.is_some(),
                row.missed_offers,
                row.parked_until.map(|until| until.seconds),
                row.fair_share_taken,
            );
            row.agent.map(|agent| (agent.id, seen))
        })
        .collect();
    let groups = listed
        .groups
        .into_iter()
        .map(|group| {
            let wait = group.estimated_wait.map(|wait| (wait.seconds, wait.nanos));
            (group.group_id, group.free_seats, wait)
        })
        .collect();
    let sessions = client
        .list_sessions(ListSessionsRequest {
            sdk_app_id: 1_400_000_001,
            agent_id: String::new(),
            ..ListSessionsRequest::default()
        })
        .await?
        .into_inner()
        .sessions
        .into_iter()
        .map(|s| (s.session_id, (s.state, s.agent_id)))
        .collect();
    Ok((loads, sessions, groups))
}

/// A router over `config` with `env`'s store, played `events`.
async fn play_over(
    config: &str,
    env: Vec<(&'static str, String)>,
    events: Vec<ReportSessionEventRequest>,
) -> Result<Picture, Error> {
    let running = launch(config, &env, true, false).await?;
    let picture = play(running.router.ok_or("no router")?, events).await;
    running.shutdown().await?;
    picture
}

/// A router over [`floor`] with `env`'s store, played `events`.
async fn play_on(
    env: Vec<(&'static str, String)>,
    events: Vec<ReportSessionEventRequest>,
) -> Result<Picture, Error> {
    play_over(&floor(), env, events).await
}

fn memory() -> Vec<(&'static str, String)> {
    vec![("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]
}

fn on_db(redis: &RedisServer, db: u32) -> Vec<(&'static str, String)> {
    vec![
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        (
            "HANDOFF__ROUTER__STORE__URL",
            format!("{}/{db}", redis.url()),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_feature_on_every_delivery_order_ends_the_same_on_both_stores() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let config = featured();
    let in_order = play_over(&config, memory(), day()).await?;
    let (agents, _, groups) = &in_order;
    // The day touched each feature: sessions of two seats, a finished session (wrap-up), a
    // missed offer, seats counted for fair share, a wait estimated.
    assert!(
        agents.values().any(|a| a.2 > 0),
        "weighted seats: {agents:?}"
    );
    assert!(
        agents.values().any(|a| a.3),
        "a finished session: {agents:?}"
    );
    assert!(
        agents.values().any(|a| a.4 > 0),
        "a missed offer: {agents:?}"
    );
    assert!(agents.values().any(|a| a.6 > 0), "fair share: {agents:?}");
    assert!(groups.iter().any(|g| g.2.is_some()), "a wait: {groups:?}");
    assert_eq!(
        play_over(&config, on_db(&redis, 1), day()).await?,
        in_order,
        "redis agrees in order"
    );
    for seed in 0..4u32 {
        let events = shuffled(&day(), u64::from(seed) + 11);
        assert_eq!(
            play_over(&config, memory(), events.clone()).await?,
            in_order,
            "memory, seed {seed}"
        );
        assert_eq!(
            play_over(&config, on_db(&redis, 2 + seed), events).await?,
            in_order,
            "redis, seed {seed}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_order_ends_the_same_on_redis_and_in_memory() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let on_db = |db: u32| on_db(&redis, db);
    let in_order = play_on(memory(), day()).await?;
    // What the day must come to: d1 ended, d2 on ann, d3 failed, d4 moved twice to bob,
    // d5's end overtook its assignment, d6 was picked up again by cy after its end.
    let expected_sessions: Vec<(&str, &str)> = vec![
        ("d2", "ann@example.com"),
        ("d4", "bob@example.com"),
        ("d6", "cy@example.com"),
    ];
    let got: Vec<(&str, &str)> = in_order
        .1
        .iter()
        .map(|(session, (_, agent))| (session.as_str(), agent.as_str()))
        .collect();
    assert_eq!(got, expected_sessions);
    assert_eq!(
        play_on(on_db(1), day()).await?,
        in_order,
        "redis agrees in order"
    );
    for seed in 0..6u32 {
        let events = shuffled(&day(), u64::from(seed) + 1);
        assert_eq!(
            play_on(memory(), events.clone()).await?,
            in_order,
            "memory, seed {seed}"
        );
        assert_eq!(
            play_on(on_db(2 + seed), events).await?,
            in_order,
            "redis, seed {seed}"
        );
    }
    Ok(())
}
