//! Routing beyond the peers, through the gateway with Tencent's session events: each
//! feature changes the answer, and the same floor without it answers otherwise.

use handoff_proto::router::v1::{
    AgentStatus, AssignHumanRequest, AssignHumanResponse, ExcludedAgent, Exclusion,
    ExplainAssignmentRequest, SetAgentStatusRequest, router_service_client::RouterServiceClient,
};

use crate::{
    redis::RedisServer,
    support::{Running, Stack, TestResult, body, now_secs, signed_uri},
};

/// Ann and Bob in one group, two seats each, least loaded first: with nothing else, a
/// walk-in gets both, Ann first (she comes first in the file).
fn floor(app_keys: &str, rule_keys: &str) -> String {
    format!(
        r#"
[gateway]
path = "/tencent/callback"
router_timeout = "500ms"
[[apps]]
sdk_app_id = 1400000001
token = "xxxxyyyy"
fallback_group_id = 9000
{app_keys}
[[apps.groups]]
id = 6521
name = "general"
[[apps.agents]]
id = "ann@example.com"
groups = [6521]
capacity = 2
[[apps.agents]]
id = "bob@example.com"
groups = [6521]
capacity = 2
[[apps.rules]]
name = "everyone"
group = 6521
{rule_keys}
"#
    )
}

/// Tencent's session event `event` for `session`, served by `agent`.
async fn event(stack: &Stack, session: &str, event: &str, agent: &str) -> TestResult {
    event_at(stack, session, event, agent, now_secs() * 1000).await
}

/// The same, dated `at` (Unix ms).
async fn event_at(stack: &Stack, session: &str, event: &str, agent: &str, at: u64) -> TestResult {
    let uri = signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", "Desk.SessionEventNotify");
    let body = format!(
        r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"{session}","Event":"{event}","EventTime":{at},"ChannelType":"SDK","ClientUserId":"user-{session}","AgentId":"{agent}"}}"#
    );
    let ack = stack.post(&uri, &body).await?;
    assert_eq!(
        (ack.status, &ack.json["ActionStatus"]),
        (200, &"OK".into()),
        "{ack:?}"
    );
    Ok(())
}

/// Why ExplainAssignment leaves Ann out of a walk-in's answer now.
async fn why_ann_is_left_out(stack: &Stack) -> Result<ExcludedAgent, crate::support::Error> {
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    let explained = client
        .explain_assignment(ExplainAssignmentRequest {
            handoff: Some(AssignHumanRequest {
                sdk_app_id: 1_400_000_001,
                session_id: "explained".into(),
                client_user_id: "someone".into(),
                ..AssignHumanRequest::default()
            }),
            at: None,
        })
        .await?
        .into_inner();
    explained
        .targets
        .into_iter()
        .flat_map(|target| target.excluded)
        .find(|excluded| excluded.agent_id == "ann@example.com")
        .ok_or_else(|| "ann is left out".into())
}

/// Two routers sharing a `redis-server` of the test's own, the first with a gateway; `None`
/// (outside CI) without Redis.
async fn two_replicas(
    config: &str,
) -> Result<Option<(RedisServer, Running, Running)>, crate::support::Error> {
    let Some(redis) = RedisServer::start()? else {
        return Ok(None);
    };
    let env = [("HANDOFF__ROUTER__STORE__URL", redis.url())];
    let first = crate::support::launch(config, &env, true, true).await?;
    let second = crate::support::launch(config, &env, true, false).await?;
    Ok(Some((redis, first, second)))
}

/// The router at `running` asked directly for `session`, from a customer of its own.
async fn ask(
    running: &Running,
    session: &str,
) -> Result<AssignHumanResponse, crate::support::Error> {
    let addr = running.router.ok_or("no router")?;
    let mut client = RouterServiceClient::connect(format!("http://{addr}")).await?;
    Ok(client
        .assign_human(AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: session.into(),
            client_user_id: format!("c-{session}"),
            ..AssignHumanRequest::default()
        })
        .await?
        .into_inner())
}

/// Ann takes s-1 and it ends; then who does s-2 go to?
async fn after_ann_served_one(config: &str) -> Result<(Stack, Vec<String>), crate::support::Error> {
    let stack = Stack::start(config).await?;
    after_ann_served_one_on(stack).await
}

async fn after_ann_served_one_on(
    stack: Stack,
) -> Result<(Stack, Vec<String>), crate::support::Error> {
    let first = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    assert_eq!(
        first.agents(),
        ["ann@example.com", "bob@example.com"],
        "{first:?}"
    );
    event(&stack, "s-1", "AgentAccept", "ann@example.com").await?;
    event(&stack, "s-1", "SessionEnd", "ann@example.com").await?;
    let next = stack.post(&signed_uri(now_secs()), &body("s-2")).await?;
    Ok((stack, next.agents()))
}

#[tokio::test]
async fn an_agent_wraps_up_after_a_session_ends_before_the_next_offer() -> TestResult {
    // Without wrap-up, Ann is free again the moment her session ends.
    let (_, without) = after_ann_served_one(&floor("", "")).await?;
    assert_eq!(
        without,
        ["bob@example.com", "ann@example.com"],
        "bob idled longer"
    );

    // With the app's wrap-up, she is left out for a minute, and Explain says until when.
    let (stack, with) = after_ann_served_one(&floor("wrap_up = \"60s\"", "")).await?;
    assert_eq!(with, ["bob@example.com"]);
    let left_out = why_ann_is_left_out(&stack).await?;
    assert_eq!(left_out.reason(), Exclusion::WrappingUp);
    assert!(left_out.detail.starts_with("until 20"), "{left_out:?}");

    // A rule's own wrap-up goes over the app's: none for this rule.
    let (_, ruled) = after_ann_served_one(&floor("wrap_up = \"60s\"", "wrap_up = \"0s\"")).await?;
    assert_eq!(ruled, ["bob@example.com", "ann@example.com"]);
    Ok(())
}

/// The same on Redis: the time Ann finished is shared state, so a second replica keeps her
/// out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_up_is_shared_by_replicas_on_redis() -> TestResult {
    let config = floor("", "");
    // The group's own wrap-up, since the app has none.
    let config = config.replace(
        "id = 6521\nname = \"general\"",
        "id = 6521\nname = \"general\"\nwrap_up = \"60s\"",
    );
    let Some((_redis, first, second)) = two_replicas(&config).await? else {
        return Ok(());
    };
    let stack = Stack::gateway_only(&config, first.router.ok_or("no router")?).await?;
    let (_, next) = after_ann_served_one_on(stack).await?;
    assert_eq!(next, ["bob@example.com"]);
    let answer = ask(&second, "s-9").await?;
    assert_eq!(answer.agent_ids, ["bob@example.com"], "{answer:?}");
    let wrapping = crate::desk::metric(
        &[&second],
        "handoff_router_group_agents_wrapping_up",
        &["group=\"6521\""],
    )
    .await?;
    assert_eq!(wrapping, 1.0, "the gauge operators watch");
    first.shutdown().await?;
    second.shutdown().await
}

/// Handoff reserves Ann twice and Tencent gives both sessions to Bob (Ann let the accept
/// countdown run out); what does s-3 get?
async fn after_ann_missed_two(stack: Stack) -> Result<(Stack, Vec<String>), crate::support::Error> {
    let at = now_secs() * 1000;
    for (n, session) in ["s-1", "s-2"].iter().enumerate() {
        let offered = stack.post(&signed_uri(now_secs()), &body(session)).await?;
        assert_eq!(
            offered.agents().first().map(String::as_str),
            Some("ann@example.com"),
            "{offered:?}"
        );
        event_at(
            &stack,
            session,
            "AgentAccept",
            "bob@example.com",
            at + n as u64,
        )
        .await?;
    }
    let next = stack.post(&signed_uri(now_secs()), &body("s-3")).await?;
    Ok((stack, next.agents()))
}

fn three_seats(config: String) -> String {
    config.replace("capacity = 2", "capacity = 3")
}

#[tokio::test]
async fn an_agent_who_misses_offers_in_a_row_is_parked_until_set_available() -> TestResult {
    let (_, without) =
        after_ann_missed_two(Stack::start(&three_seats(floor("", ""))).await?).await?;
    assert_eq!(without.first().map(String::as_str), Some("ann@example.com"));

    let parked = three_seats(floor("max_missed = 2\npark_for = \"10m\"", ""));
    let (stack, with) = after_ann_missed_two(Stack::start(&parked).await?).await?;
    assert_eq!(with, ["bob@example.com"]);
    let left_out = why_ann_is_left_out(&stack).await?;
    assert_eq!(left_out.reason(), Exclusion::Parked);
    assert!(
        left_out.detail.starts_with("2 missed offers; until 20"),
        "{left_out:?}"
    );

    // Back at her desk: set available, she is offered again.
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    client
        .set_agent_status(SetAgentStatusRequest {
            sdk_app_id: 1_400_000_001,
            agent_id: "ann@example.com".into(),
            status: AgentStatus::Available.into(),
            ..SetAgentStatusRequest::default()
        })
        .await?;
    let back = stack.post(&signed_uri(now_secs()), &body("s-4")).await?;
    assert_eq!(
        back.agents().first().map(String::as_str),
        Some("ann@example.com"),
        "{back:?}"
    );
    Ok(())
}

/// On Redis the misses are shared state: a replica that saw none of the events parks Ann.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_offers_are_shared_by_replicas_on_redis() -> TestResult {
    let config = three_seats(floor("max_missed = 2", ""));
    let Some((_redis, first, second)) = two_replicas(&config).await? else {
        return Ok(());
    };
    let stack = Stack::gateway_only(&config, first.router.ok_or("no router")?).await?;
    let (_, next) = after_ann_missed_two(stack).await?;
    assert_eq!(next, ["bob@example.com"]);
    let answer = ask(&second, "s-9").await?;
    // Bob is full with the three sessions; Ann is parked, as the other replica saw.
    let reason = answer
        .decision
        .map(|decision| decision.reason)
        .unwrap_or_default();
    assert!(
        answer.agent_ids.is_empty() && reason.contains("1 parked"),
        "{reason}"
    );
    let parked = crate::desk::metric(
        &[&second],
        "handoff_router_group_agents_parked",
        &["group=\"6521\""],
    )
    .await?;
    assert_eq!(parked, 1.0, "the gauge operators alert on");
    first.shutdown().await?;
    second.shutdown().await
}

/// Ann takes s-1; with fair share at one session an hour, s-2 is not offered to her.
#[tokio::test]
async fn fair_share_caps_the_new_sessions_an_agent_takes_in_a_window() -> TestResult {
    let offered = |config: String| async move {
        let stack = Stack::start(&config).await?;
        let first = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
        assert_eq!(
            first.agents().first().map(String::as_str),
            Some("ann@example.com")
        );
        let next = stack.post(&signed_uri(now_secs()), &body("s-2")).await?;
        Ok::<_, crate::support::Error>((stack, next.agents()))
    };
    let (_, without) = offered(floor("", "")).await?;
    assert_eq!(without, ["bob@example.com", "ann@example.com"]);
    let fair = floor("fair_share = { sessions = 1, window = \"1h\" }", "");
    let (stack, with) = offered(fair).await?;
    assert_eq!(with, ["bob@example.com"]);
    let left_out = why_ann_is_left_out(&stack).await?;
    assert_eq!(left_out.reason(), Exclusion::FairShare);
    assert_eq!(left_out.detail, "1 of 1 in 3600s");
    Ok(())
}

/// On Redis, a replica that made none of Ann's reservations counts them too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_share_is_shared_by_replicas_on_redis() -> TestResult {
    let config = floor("fair_share = { sessions = 1, window = \"1h\" }", "");
    let Some((_redis, first, second)) = two_replicas(&config).await? else {
        return Ok(());
    };
    assert_eq!(
        ask(&first, "s-1")
            .await?
            .agent_ids
            .first()
            .map(String::as_str),
        Some("ann@example.com")
    );
    assert_eq!(ask(&second, "s-2").await?.agent_ids, ["bob@example.com"]);
    first.shutdown().await?;
    second.shutdown().await
}
