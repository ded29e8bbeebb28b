//! Routing beyond the peers, through the gateway with Tencent's session events: each
//! feature changes the answer, and the same floor without it answers otherwise.

use handoff_proto::router::v1::{
    AssignHumanRequest, Exclusion, ExplainAssignmentRequest,
    router_service_client::RouterServiceClient,
};

use crate::support::{Stack, TestResult, body, now_secs, signed_uri};

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
    let uri = signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", "Desk.SessionEventNotify");
    let at = now_secs() * 1000;
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
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    let explained = client
        .explain_assignment(ExplainAssignmentRequest {
            handoff: Some(AssignHumanRequest {
                sdk_app_id: 1_400_000_001,
                session_id: "s-3".into(),
                client_user_id: "someone".into(),
                ..AssignHumanRequest::default()
            }),
            at: None,
        })
        .await?
        .into_inner();
    let left_out = explained
        .targets
        .iter()
        .flat_map(|target| &target.excluded)
        .find(|excluded| excluded.agent_id == "ann@example.com")
        .ok_or("ann is left out")?;
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
    let Some(redis) = crate::redis::RedisServer::start()? else {
        return Ok(());
    };
    let config = floor("", "");
    // The group's own wrap-up, since the app has none.
    let config = config.replace(
        "id = 6521\nname = \"general\"",
        "id = 6521\nname = \"general\"\nwrap_up = \"60s\"",
    );
    let env = [("HANDOFF__ROUTER__STORE__URL", redis.url())];
    let first = crate::support::launch(&config, &env, true, true).await?;
    let second = crate::support::launch(&config, &env, true, false).await?;
    let stack = Stack::gateway_only(&config, first.router.ok_or("no router")?).await?;
    let (_, next) = after_ann_served_one_on(stack).await?;
    assert_eq!(next, ["bob@example.com"]);
    let mut other =
        RouterServiceClient::connect(format!("http://{}", second.router.ok_or("no router")?))
            .await?;
    let answer = other
        .assign_human(AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: "s-9".into(),
            client_user_id: "someone".into(),
            ..AssignHumanRequest::default()
        })
        .await?
        .into_inner();
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
