//! A realistic day through the gateway, on the embedded store and on Redis: handoffs,
//! Tencent choosing another agent of the list, confirmations, transfers, ends and user
//! timeouts, retries, late and out-of-order deliveries, unknown events, agents going on a
//! break and coming back, a reservation never confirmed, and a router restart in the middle.
//! After each step ListAgents and ListSessions must show exactly the expected picture, and
//! the next handoff's ranking must follow it.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use handoff_proto::router::v1::{
    AgentStatus, ListAgentsRequest, ListSessionsRequest, SessionState,
    router_service_client::RouterServiceClient,
};

use crate::{
    redis::RedisServer,
    support::{Error, Reply, Running, TestResult, launch, request, sign},
};

/// Three agents of group 6521, reservations held a second unless an event confirms them.
fn config() -> String {
    crate::support::one_app(
        "[gateway]\npath = \"/tencent/callback\"\nrouter_timeout = \"500ms\"",
        "token = \"xxxxyyyy\"\nconfirm_timeout = \"1s\"",
        (6521, "general"),
        &[
            ("ann@example.com", 2),
            ("bob@example.com", 2),
            ("cy@example.com", 1),
        ],
    )
}

/// Milliseconds now, the clock Tencent's EventTime is on.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or_default())
        .unwrap_or_default()
}

/// A signed callback URL for `command`, with Tencent's RequestID when given.
fn uri(command: &str, request_id: Option<&str>) -> String {
    let time = (now_ms() / 1000).to_string();
    let id = request_id
        .map(|id| format!("&RequestID={id}"))
        .unwrap_or_default();
    format!(
        "/tencent/callback?SdkAppid=1400000001&CallbackCommand={command}&contenttype=json&Sign={}&RequestTime={time}{id}",
        sign("xxxxyyyy", &time)
    )
}

/// A session event as Tencent reports it: RequestID, session, event name, agent, the agent
/// it came from, and when (ms).
type Event<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, u64);

/// The system under test: the gateway and router of one process, restartable on the same
/// state.
struct Day {
    env: Vec<(&'static str, String)>,
    running: Option<Running>,
}

/// Each agent's (active, confirmed, status), and each live session's (state, agent).
type Picture = (
    BTreeMap<String, (u32, u32, AgentStatus)>,
    BTreeMap<String, (SessionState, String)>,
);

impl Day {
    async fn start(env: Vec<(&'static str, String)>) -> Result<Self, Error> {
        let running = launch(&config(), &env, true, true).await?;
        Ok(Self {
            env,
            running: Some(running),
        })
    }

    fn running(&self) -> Result<&Running, Error> {
        Ok(self.running.as_ref().ok_or("not running")?)
    }

    async fn restart(&mut self) -> Result<(), Error> {
        if let Some(running) = self.running.take() {
            running.shutdown().await?;
        }
        self.running = Some(launch(&config(), &self.env, true, true).await?);
        Ok(())
    }

    async fn post(&self, uri: &str, body: String) -> Result<Reply, Error> {
        let http = self.running()?.gateway.ok_or("no gateway")?;
        request(http, "POST", uri, body).await
    }

    /// A user of `session` asks for a human; the agents offered, best first.
    async fn handoff(&self, session: &str, customer: &str) -> Result<Vec<String>, Error> {
        let body = format!(
            r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"{session}","ClientUserId":"{customer}","EventTime":{}}}"#,
            now_ms()
        );
        let reply = self.post(&uri("ChatBot.OnAssignHuman", None), body).await?;
        assert_eq!(reply.status, 200, "{reply:?}");
        Ok(reply.agents())
    }

    /// Tencent reports a session event; it must be acknowledged.
    async fn session_event(&self, event: Event<'_>) -> Result<(), Error> {
        let (request_id, session, event, agent, from, at_ms) = event;
        let body = format!(
            r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"{session}","Event":"{event}","EventTime":{at_ms},"ChannelType":"SDK","ClientUserId":"u-{session}","AgentId":"{agent}","ForwardFromAgentId":"{from}"}}"#
        );
        let reply = self
            .post(&uri("Desk.SessionEventNotify", Some(request_id)), body)
            .await?;
        assert_ack(&reply);
        Ok(())
    }

    /// Tencent reports an agent's new status; it must be acknowledged.
    async fn status(&self, request_id: &str, member: &str, status: &str) -> Result<(), Error> {
        let body = format!(
            r#"{{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"{member}","Status":"{status}","EventTime":{},"RestReason":""}}"#,
            now_ms()
        );
        let reply = self
            .post(&uri("Member.EventNotify", Some(request_id)), body)
            .await?;
        assert_ack(&reply);
        Ok(())
    }

    async fn picture(&self) -> Result<Picture, Error> {
        let grpc = self.running()?.router.ok_or("no router")?;
        let mut client = RouterServiceClient::connect(format!("http://{grpc}")).await?;
        let agents = client
            .list_agents(ListAgentsRequest {
                sdk_app_id: 1_400_000_001,
                group_id: None,
            })
            .await?
            .into_inner()
            .agents;
        let mut loads = BTreeMap::new();
        for row in agents {
            let agent = row.agent.ok_or("no agent")?;
            assert_eq!(row.active, row.confirmed + row.provisional, "{}", agent.id);
            let name = agent.id.trim_end_matches("@example.com").to_owned();
            loads.insert(name, (row.active, row.confirmed, agent.status()));
        }
        let sessions = client
            .list_sessions(ListSessionsRequest {
                sdk_app_id: 1_400_000_001,
                agent_id: String::new(),
                ..ListSessionsRequest::default()
            })
            .await?
            .into_inner()
            .sessions;
        let sessions = sessions
            .into_iter()
            .map(|s| {
                let state = s.state();
                let agent = s.agent_id.trim_end_matches("@example.com").to_owned();
                (s.session_id, (state, agent))
            })
            .collect();
        Ok((loads, sessions))
    }

    async fn metrics(&self) -> Result<String, Error> {
        let http = self.running()?.gateway.ok_or("no gateway")?;
        let stream = tokio::net::TcpStream::connect(http).await?;
        let (mut read, mut write) = stream.into_split();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        write
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        read.read_to_string(&mut text).await?;
        Ok(text)
    }
}

fn assert_ack(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["ActionStatus"], "OK", "{reply:?}");
    assert_eq!(reply.json["ErrorCode"], 0, "{reply:?}");
    assert_eq!(reply.json["ErrorInfo"], "", "{reply:?}");
}

/// The expected picture: agents as (name, active, confirmed, status), sessions as
/// (session, state, agent).
fn expect(
    agents: [(&str, u32, u32, AgentStatus); 3],
    sessions: &[(&str, SessionState, &str)],
) -> Picture {
    (
        agents
            .into_iter()
            .map(|(name, active, confirmed, status)| (name.to_owned(), (active, confirmed, status)))
            .collect(),
        sessions
            .iter()
            .map(|(session, state, agent)| ((*session).to_owned(), (*state, (*agent).to_owned())))
            .collect(),
    )
}

fn offered(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| format!("{n}@example.com")).collect()
}

const ON: AgentStatus = AgentStatus::Available;
const AWAY: AgentStatus = AgentStatus::Away;
use SessionState::{Confirmed, Provisional};

async fn play(env: Vec<(&'static str, String)>) -> TestResult {
    let mut day = Day::start(env).await?;
    // The events' clock: half a minute ahead of the handoffs (a little skew between Tencent
    // and the router, within the router's max_clock_skew), so that each event follows the
    // handoff it concerns however fast the test runs; the offsets below give the events
    // their order.
    let t0 = now_ms() + 30_000;

    // 1. A handoff: everyone idle, ann first. ann's seat is provisional.
    assert_eq!(
        day.handoff("s1", "c1").await?,
        offered(&["ann", "bob", "cy"])
    );
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 1, 0, ON), ("bob", 0, 0, ON), ("cy", 0, 0, ON)],
            &[("s1", Provisional, "ann")]
        )
    );

    // 2. Tencent gives it to bob, the second of the list: the seat moves to bob, confirmed.
    let bob_took_s1 = (
        "r-2",
        "s1",
        "TransferToHumanSuccess",
        "bob@example.com",
        "",
        t0 + 10,
    );
    day.session_event(bob_took_s1).await?;
    let after_bob = expect(
        [("ann", 0, 0, ON), ("bob", 1, 1, ON), ("cy", 0, 0, ON)],
        &[("s1", Confirmed, "bob")],
    );
    assert_eq!(day.picture().await?, after_bob);

    // 3. Tencent retries the same callback: nothing changes.
    day.session_event(bob_took_s1).await?;
    assert_eq!(day.picture().await?, after_bob);

    // 4. The next handoff follows the loads: cy (never assigned) and ann are free, bob is not.
    assert_eq!(
        day.handoff("s2", "c2").await?,
        offered(&["cy", "ann", "bob"])
    );

    // 5. cy's first message (an event name handoff does not know) confirms it.
    day.session_event((
        "r-5",
        "s2",
        "ChatBot.AgentSendMsg",
        "cy@example.com",
        "",
        t0 + 20,
    ))
    .await?;
    // 6. s1 moves from bob to ann.
    let s1_to_ann = (
        "r-6",
        "s1",
        "AgentTransfer",
        "ann@example.com",
        "bob@example.com",
        t0 + 30,
    );
    day.session_event(s1_to_ann).await?;
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 1, 1, ON), ("bob", 0, 0, ON), ("cy", 1, 1, ON)],
            &[("s1", Confirmed, "ann"), ("s2", Confirmed, "cy")]
        )
    );

    // 7. s1 ends; an older message from ann arrives after the end: no phantom load.
    day.session_event(("r-7", "s1", "SessionEnd", "", "", t0 + 50))
        .await?;
    day.session_event((
        "r-7b",
        "s1",
        "ChatBot.UserSendMsg",
        "ann@example.com",
        "",
        t0 + 40,
    ))
    .await?;
    // 8. Events without routing meaning are acknowledged and change nothing.
    day.session_event(("r-8", "s3", "SessionBegin", "", "", t0 + 55))
        .await?;
    day.session_event(("r-8b", "s3", "ChatBot.RobotSendMsg", "", "", t0 + 56))
        .await?;
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 0, 0, ON), ("bob", 0, 0, ON), ("cy", 1, 1, ON)],
            &[("s2", Confirmed, "cy")]
        )
    );

    // 9. bob goes on a break in Tencent's workbench: the next handoff leaves him out.
    day.status("m-9", "bob@example.com", "rest").await?;
    day.status("m-9b", "ghost@example.com", "free").await?;
    assert_eq!(day.handoff("s3", "c3").await?, offered(&["ann"]));
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 1, 0, ON), ("bob", 0, 0, AWAY), ("cy", 1, 1, ON)],
            &[("s2", Confirmed, "cy"), ("s3", Provisional, "ann")]
        )
    );

    // 10. Nobody confirms s3 within the app's confirm_timeout (1 s): its seat is released.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 0, 0, ON), ("bob", 0, 0, AWAY), ("cy", 1, 1, ON)],
            &[("s2", Confirmed, "cy")]
        )
    );

    // 11. The router restarts: the picture is the same, and retries are still recognised.
    day.restart().await?;
    let before_restart = expect(
        [("ann", 0, 0, ON), ("bob", 0, 0, AWAY), ("cy", 1, 1, ON)],
        &[("s2", Confirmed, "cy")],
    );
    assert_eq!(day.picture().await?, before_restart);
    day.session_event(s1_to_ann).await?;
    assert_eq!(day.picture().await?, before_restart);

    // 12. bob is back; the user of s2 stops replying (a user timeout ends it).
    day.status("m-12", "bob@example.com", "STATUS_FREE").await?;
    day.session_event(("r-12", "s2", "UserTimeout", "cy@example.com", "", t0 + 70))
        .await?;
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 0, 0, ON), ("bob", 0, 0, ON), ("cy", 0, 0, ON)],
            &[]
        )
    );

    // 13. A transfer that fails (nobody online) releases the new reservation at once.
    let offered_now = day.handoff("s4", "c4").await?;
    assert_eq!(offered_now.len(), 3, "{offered_now:?}");
    day.session_event(("r-13", "s4", "TransferToHumanFail", "", "", now_ms() + 5))
        .await?;
    assert_eq!(
        day.picture().await?,
        expect(
            [("ann", 0, 0, ON), ("bob", 0, 0, ON), ("cy", 0, 0, ON)],
            &[]
        )
    );

    // What the gateway counted since the restart.
    let metrics = day.metrics().await?;
    for line in [
        "handoff_gateway_callbacks_total{command=\"session_event\",outcome=\"duplicate\"} 1",
        "handoff_gateway_callbacks_total{command=\"session_event\",outcome=\"recorded\"} 2",
        "handoff_gateway_callbacks_total{command=\"member_event\",outcome=\"recorded\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} not in {metrics}");
    }
    if let Some(running) = day.running.take() {
        running.shutdown().await?;
    }
    Ok(())
}

/// A file of the test's own for the embedded store, removed on drop.
struct StateFile(PathBuf);

impl Drop for StateFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut journal = self.0.clone().into_os_string();
        journal.push(".journal");
        let _ = std::fs::remove_dir_all(journal);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_tencent_events_on_the_embedded_store() -> TestResult {
    let file = StateFile(std::env::temp_dir().join(format!(
        "handoff-day-{}-{}.redb",
        std::process::id(),
        now_ms()
    )));
    let env = vec![
        ("HANDOFF__ROUTER__STORE__KIND", "embedded".to_owned()),
        ("HANDOFF__ROUTER__STORE__PATH", file.0.display().to_string()),
    ];
    play(env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_tencent_events_on_redis() -> TestResult {
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let env = vec![
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        ("HANDOFF__ROUTER__STORE__URL", redis.url()),
    ];
    play(env).await
}
