//! The same day's session events delivered in order, shuffled and repeated, on Redis (the
//! Lua side of the session rules) and on the memory store (the Rust side): every delivery
//! ends in the same loads and sessions, and the two stores agree.

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

type Picture = (
    BTreeMap<String, (u32, u32)>,
    BTreeMap<String, (i32, String)>,
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
    let agents = client
        .list_agents(ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner()
        .agents;
    let loads = agents
        .into_iter()
        .filter_map(|row| {
            row.agent
                .map(|agent| (agent.id, (row.active, row.confirmed)))
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
    Ok((loads, sessions))
}

/// A router over [`floor`] with `env`'s store, played `events`.
async fn play_on(
    env: Vec<(&'static str, String)>,
    events: Vec<ReportSessionEventRequest>,
) -> Result<Picture, Error> {
    let running = launch(&floor(), &env, true, false).await?;
    let picture = play(running.router.ok_or("no router")?, events).await;
    running.shutdown().await?;
    picture
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_delivery_order_ends_the_same_on_redis_and_in_memory() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let memory = || vec![("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
    let on_db = |db: u32| {
        vec![
            ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
            (
                "HANDOFF__ROUTER__STORE__URL",
                format!("{}/{db}", redis.url()),
            ),
        ]
    };
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
