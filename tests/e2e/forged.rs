//! Events from a hostile sender, through the gateway as Tencent would send them: floods
//! naming strangers or sessions nobody reserved leave state bounded by the roster on both
//! stores; events dated far from now are acknowledged and change nothing (and freeze
//! nothing); a RequestID reused by another event is not taken for a retry.

use std::time::{SystemTime, UNIX_EPOCH};

use handoff_proto::router::v1::{
    AgentStatus, ListAgentsRequest, ListSessionsRequest, SessionState, SetAgentStatusRequest,
    router_service_client::RouterServiceClient,
};
use tonic::transport::Channel;

use crate::{
    metrics::{scrape, value},
    redis::{RedisServer, hlen},
    support::{CONFIG, Error, Reply, Running, TestResult, launch, request, sign},
};

const YEAR_MS: u64 = 366 * 24 * 3600 * 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or_default())
        .unwrap_or_default()
}

/// A signed callback URL of app 1400000001 for `command`, with Tencent's `RequestID`.
fn uri(command: &str, request_id: &str) -> String {
    let time = (now_ms() / 1000).to_string();
    format!(
        "/tencent/callback?SdkAppid=1400000001&CallbackCommand={command}&contenttype=json&Sign={}&RequestTime={time}&RequestID={request_id}",
        sign("xxxxyyyy", &time)
    )
}

/// The system under test, and what a sender can post to it.
struct Floor {
    running: Running,
    client: RouterServiceClient<Channel>,
}

impl Floor {
    async fn start(env: &[(&str, String)]) -> Result<Self, Error> {
        let running = launch(CONFIG, env, true, true).await?;
        let grpc = running.router.ok_or("no router")?;
        let client = RouterServiceClient::connect(format!("http://{grpc}")).await?;
        Ok(Self { running, client })
    }

    async fn post(&self, uri: &str, body: String) -> Result<Reply, Error> {
        let http = self.running.gateway.ok_or("no gateway")?;
        request(http, "POST", uri, body).await
    }

    /// Posts a session event and asserts Tencent was told it was taken.
    async fn event(
        &self,
        request_id: &str,
        session: &str,
        event: &str,
        agent: &str,
        at_ms: u64,
    ) -> Result<(), Error> {
        let body = format!(
            r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"{session}","Event":"{event}","EventTime":{at_ms},"ClientUserId":"u-{session}","AgentId":"{agent}"}}"#
        );
        let reply = self
            .post(&uri("Desk.SessionEventNotify", request_id), body)
            .await?;
        assert_eq!(
            (reply.status, &reply.json["ErrorCode"]),
            (200, &0.into()),
            "{reply:?}"
        );
        Ok(())
    }

    /// Posts a member's status and asserts Tencent was told it was taken.
    async fn status(&self, request_id: &str, member: &str, status: &str, at: &str) -> TestResult {
        let body = format!(
            r#"{{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"{member}","Status":"{status}","EventTime":{at}}}"#
        );
        let reply = self
            .post(&uri("Member.EventNotify", request_id), body)
            .await?;
        assert_eq!(
            (reply.status, &reply.json["ErrorCode"]),
            (200, &0.into()),
            "{reply:?}"
        );
        Ok(())
    }

    /// A handoff of `session`: the agent it reserved.
    async fn handoff(&self, session: &str) -> Result<String, Error> {
        let body = format!(
            r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"{session}","ClientUserId":"u-{session}","EventTime":{}}}"#,
            now_ms()
        );
        let reply = self
            .post(&uri("ChatBot.OnAssignHuman", session), body)
            .await?;
        Ok(reply.agents().first().cloned().ok_or("nobody offered")?)
    }

    async fn sessions(&mut self) -> Result<Vec<(String, SessionState, String)>, Error> {
        let request = ListSessionsRequest {
            sdk_app_id: 1_400_000_001,
            ..ListSessionsRequest::default()
        };
        let sessions = self
            .client
            .list_sessions(request)
            .await?
            .into_inner()
            .sessions;
        Ok(sessions
            .into_iter()
            .map(|s| (s.session_id.clone(), s.state(), s.agent_id))
            .collect())
    }

    async fn status_of(&mut self, agent: &str) -> Result<AgentStatus, Error> {
        let request = ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        };
        let agents = self.client.list_agents(request).await?.into_inner().agents;
        let agent = agents
            .into_iter()
            .filter_map(|row| row.agent)
            .find(|a| a.id == agent)
            .ok_or("no such agent")?;
        Ok(agent.status())
    }

    async fn counted(&self, outcome: &str) -> Result<f64, Error> {
        let http = self.running.gateway.ok_or("no gateway")?;
        let scrape = scrape(&http.to_string()).await?;
        Ok(value(
            &scrape,
            "handoff_gateway_callbacks_total",
            &[("outcome", outcome)],
        ))
    }
}

/// 200 events give sessions nobody reserved to strangers, 40 more to ann (capacity 2):
/// the router holds ann's capacity plus the margin (2) and nothing else.
async fn flood(floor: &mut Floor) -> TestResult {
    let now = now_ms();
    for n in 0..200 {
        let stranger = format!("mallory{n}@evil.example");
        floor
            .event(
                &format!("x-{n}"),
                &format!("x-{n}"),
                "AgentAccept",
                &stranger,
                now,
            )
            .await?;
    }
    for n in 0..40 {
        floor
            .event(
                &format!("y-{n}"),
                &format!("y-{n}"),
                "AgentAccept",
                "ann@example.com",
                now,
            )
            .await?;
    }
    let sessions = floor.sessions().await?;
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    assert!(sessions.iter().all(|(_, state, agent)| {
        *state == SessionState::Confirmed && agent == "ann@example.com"
    }));
    assert_eq!(floor.counted("unknown_agent").await?, 200.0);
    assert_eq!(floor.counted("over_capacity").await?, 36.0);
    Ok(())
}

#[tokio::test]
async fn a_flood_of_forged_session_events_leaves_state_bounded_by_the_roster_in_memory()
-> TestResult {
    let mut floor = Floor::start(&[("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]).await?;
    flood(&mut floor).await?;
    floor.running.shutdown().await
}

#[tokio::test]
async fn a_flood_of_forged_session_events_leaves_state_bounded_by_the_roster_on_redis() -> TestResult
{
    let Some(redis) = RedisServer::start()? else {
        return Ok(());
    };
    let mut floor = Floor::start(&[
        ("HANDOFF__ROUTER__STORE__KIND", "redis".to_owned()),
        ("HANDOFF__ROUTER__STORE__URL", redis.url()),
    ])
    .await?;
    flood(&mut floor).await?;
    // What Redis itself holds: four session records, and the identities of the events it
    // recorded (the refused ones are not remembered).
    assert_eq!(hlen(redis.port(), "handoff:{1400000001}:sessions")?, 4);
    let seen = crate::redis::integer(redis.port(), &["ZCARD", "handoff:{1400000001}:seen"])?;
    assert_eq!(seen, 4);
    floor.running.shutdown().await
}

#[tokio::test]
async fn events_dated_far_from_now_are_acknowledged_and_freeze_nothing() -> TestResult {
    let mut floor = Floor::start(&[("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]).await?;
    let now = now_ms();
    // Next year, the epoch, year 5138 and the largest EventTime: all acknowledged, none
    // taken.
    let next_year = (now + YEAR_MS).to_string();
    for (n, at) in [
        next_year.as_str(),
        "0",
        "99999999999999",
        "18446744073709551615",
    ]
    .into_iter()
    .enumerate()
    {
        floor
            .status(&format!("s-{n}"), "bob@example.com", "offline", at)
            .await?;
    }
    assert_eq!(
        floor.status_of("bob@example.com").await?,
        AgentStatus::Available
    );
    assert_eq!(floor.counted("implausible").await?, 4.0);
    // Later reports, from Tencent and over gRPC, are taken as ever.
    floor
        .status("s-now", "bob@example.com", "rest", &now.to_string())
        .await?;
    assert_eq!(floor.status_of("bob@example.com").await?, AgentStatus::Away);
    floor
        .client
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: 1_400_000_001,
            agent_id: "bob@example.com".into(),
            status: AgentStatus::Available.into(),
            ..SetAgentStatusRequest::default()
        })
        .await?;
    assert_eq!(
        floor.status_of("bob@example.com").await?,
        AgentStatus::Available
    );

    // A session's end dated next year does not end it, nor outrank its real events.
    let ann = floor.handoff("h-1").await?;
    floor
        .event("e-1", "h-1", "SessionEnd", "", now + YEAR_MS)
        .await?;
    floor
        .event("e-2", "h-1", "AgentAccept", &ann, now_ms())
        .await?;
    let sessions = floor.sessions().await?;
    assert_eq!(sessions, [("h-1".into(), SessionState::Confirmed, ann)]);
    floor.running.shutdown().await
}

#[tokio::test]
async fn a_request_id_reused_by_another_event_is_not_taken_for_a_retry() -> TestResult {
    let mut floor = Floor::start(&[("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]).await?;
    let first = floor.handoff("r-1").await?;
    let second = floor.handoff("r-2").await?;
    let now = now_ms();
    // Both events carry RequestID "same": the second is another event, not a retry.
    floor
        .event("same", "r-1", "AgentAccept", &first, now)
        .await?;
    floor
        .event("same", "r-2", "AgentAccept", &second, now)
        .await?;
    // A real retry (the same event again) is recognised.
    floor
        .event("same", "r-1", "AgentAccept", &first, now)
        .await?;
    let sessions = floor.sessions().await?;
    assert_eq!(
        sessions,
        [
            ("r-1".into(), SessionState::Confirmed, first),
            ("r-2".into(), SessionState::Confirmed, second),
        ]
    );
    assert_eq!(floor.counted("duplicate").await?, 1.0);
    floor.running.shutdown().await
}

#[tokio::test]
async fn a_captured_callback_played_again_is_only_replayed_and_reserves_nothing() -> TestResult {
    let mut floor = Floor::start(&[("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]).await?;
    let captured = uri("ChatBot.OnAssignHuman", "c-1");
    let body = format!(
        r#"{{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"c-1","ClientUserId":"u-c-1","EventTime":{}}}"#,
        now_ms()
    );
    let first = floor.post(&captured, body.clone()).await?;
    let agent = first.agents().first().cloned().ok_or("nobody offered")?;
    // Sent again while its reservation holds (Tencent retrying): the same answer.
    let retry = floor.post(&captured, body.clone()).await?;
    assert_eq!(retry.json, first.json);
    floor
        .event("c-1-end", "c-1", "SessionEnd", "", now_ms())
        .await?;
    assert_eq!(floor.sessions().await?, []);
    // Played again after the session ended: the group alone, and no seat reserved for a
    // session that is over (a fresh request would decide it afresh).
    let again = floor.post(&captured, body).await?;
    assert_eq!(again.json["ActionStatus"], "OK", "{again:?}");
    assert!(again.agents().is_empty(), "{again:?}");
    assert_eq!(floor.sessions().await?, [], "{agent} holds a seat again");
    // A captured event played again is acknowledged and not recorded twice.
    let event = |status: &str| {
        format!(
            r#"{{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"bob@example.com","Status":"{status}","EventTime":{}}}"#,
            now_ms()
        )
    };
    let status_uri = uri("Member.EventNotify", "m-1");
    let away = event("rest");
    floor.post(&status_uri, away.clone()).await?;
    floor.post(&status_uri, away).await?;
    assert_eq!(floor.counted("duplicate").await?, 1.0);
    floor.running.shutdown().await
}
