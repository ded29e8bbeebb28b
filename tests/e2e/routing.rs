//! Routing beyond the peers, through the gateway with Tencent's session events: each
//! feature changes the answer, and the same floor without it answers otherwise.

use handoff_proto::router::v1::{
    AgentStatus, AssignHumanRequest, AssignHumanResponse, ExcludedAgent, Exclusion,
    ExplainAssignmentRequest, ExplainAssignmentResponse, SetAgentStatusRequest, TargetOutcome,
    router_service_client::RouterServiceClient,
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

/// ExplainAssignment for a walk-in now.
async fn explain_walk_in(
    stack: &Stack,
) -> Result<ExplainAssignmentResponse, crate::support::Error> {
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    Ok(client
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
        .into_inner())
}

/// Why ExplainAssignment leaves Ann out of a walk-in's answer now.
async fn why_ann_is_left_out(stack: &Stack) -> Result<ExcludedAgent, crate::support::Error> {
    explain_walk_in(stack)
        .await?
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

/// Ann takes s-1 under `rule_keys`; then who do s-2 and s-3 go to (empty: the fallback)?
async fn after_ann_took_one(
    stack: &Stack,
) -> Result<(Vec<String>, Vec<String>), crate::support::Error> {
    let first = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    assert_eq!(
        first.agents().first().map(String::as_str),
        Some("ann@example.com"),
        "{first:?}"
    );
    let second = stack.post(&signed_uri(now_secs()), &body("s-2")).await?;
    let third = stack.post(&signed_uri(now_secs()), &body("s-3")).await?;
    eprintln!("ANSWERS {first:?}\n{second:?}\n{third:?}");
    Ok((second.agents(), third.agents()))
}

/// A session of a rule with `weight = 2` takes both of Ann's seats: the next sessions go to
/// Bob alone, then to nobody; once it ends, both seats are free again.
#[tokio::test]
async fn a_weighted_session_takes_as_many_seats_as_its_rule_says() -> TestResult {
    let stack = Stack::start(&floor("", "")).await?;
    let (second, third) = after_ann_took_one(&stack).await?;
    assert_eq!(second, ["bob@example.com", "ann@example.com"]);
    assert_eq!(third, ["ann@example.com", "bob@example.com"]);

    let stack = Stack::start(&floor("", "weight = 2")).await?;
    let (second, third) = after_ann_took_one(&stack).await?;
    assert_eq!(second, ["bob@example.com"], "ann has no seat left");
    assert!(third.is_empty(), "nobody has two seats: {third:?}");
    let left_out = why_ann_is_left_out(&stack).await?;
    assert_eq!(left_out.reason(), Exclusion::AtCapacity);
    assert_eq!(left_out.detail, "2/2; this session takes 2 seats");
    // s-1 ends: Ann's two seats come back at once.
    event(&stack, "s-1", "AgentAccept", "ann@example.com").await?;
    event(&stack, "s-1", "SessionEnd", "ann@example.com").await?;
    let next = stack.post(&signed_uri(now_secs()), &body("s-4")).await?;
    assert_eq!(next.agents(), ["ann@example.com"], "{next:?}");
    Ok(())
}

/// On Redis the seats a weighted session takes are shared state: the other replica sees
/// Ann full, and both see her free once Tencent says the session ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_seats_are_shared_by_replicas_on_redis() -> TestResult {
    let config = floor("", "weight = 2");
    let Some((_redis, first, second)) = two_replicas(&config).await? else {
        return Ok(());
    };
    let answer = ask(&first, "s-1").await?;
    assert_eq!(answer.agent_ids, ["ann@example.com", "bob@example.com"]);
    assert_eq!(answer.decision.map(|d| d.weight), Some(2));
    assert_eq!(ask(&second, "s-2").await?.agent_ids, ["bob@example.com"]);
    assert!(ask(&second, "s-3").await?.agent_ids.is_empty());
    let stack = Stack::gateway_only(&config, first.router.ok_or("no router")?).await?;
    // Dated after the reservation (asked now, to the millisecond).
    let later = now_secs() * 1000 + 1000;
    event_at(&stack, "s-1", "AgentAccept", "ann@example.com", later).await?;
    event_at(&stack, "s-1", "SessionEnd", "ann@example.com", later + 1).await?;
    let answer = ask(&second, "s-4").await?;
    assert_eq!(answer.agent_ids, ["ann@example.com"], "{answer:?}");
    first.shutdown().await?;
    second.shutdown().await
}

/// A VIP rule that may fill the group's headroom, before the rule for everyone.
const VIP: &str = r#"
[[apps.customers]]
id = "vip-1"
tier = "vip"
[[apps.rules]]
name = "vip"
when = 'customer.tier == "vip"'
group = 6521
use_headroom = true
"#;

/// The group keeps two of its four seats: after two walk-ins, a third is answered the
/// fallback group while a VIP, whose rule may use the headroom, still gets Ann.
#[tokio::test]
async fn headroom_keeps_the_last_seats_for_rules_that_may_use_them() -> TestResult {
    let with_vip =
        |config: String| config.replacen("[[apps.rules]]", &format!("{VIP}\n[[apps.rules]]"), 1);
    let kept = |config: String| {
        config.replace(
            "id = 6521\nname = \"general\"",
            "id = 6521\nname = \"general\"\nheadroom = 2",
        )
    };
    let plain = with_vip(floor("", ""));
    let stack = Stack::start(&plain).await?;
    let (_, third) = after_ann_took_one(&stack).await?;
    assert_eq!(third, ["ann@example.com", "bob@example.com"], "no headroom");

    let config = kept(plain);
    let memory = [("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())];
    let router = crate::support::launch(&config, &memory, true, false).await?;
    let stack = Stack::gateway_only(&config, router.router.ok_or("no router")?).await?;
    let (second, third) = after_ann_took_one(&stack).await?;
    assert_eq!(second, ["bob@example.com", "ann@example.com"]);
    assert!(third.is_empty(), "two seats left, both kept: {third:?}");
    let left_out = why_ann_is_left_out(&stack).await?;
    assert_eq!(left_out.reason(), Exclusion::HeadroomKept, "{left_out:?}");
    assert_eq!(left_out.detail, "headroom kept: 2 seats; 2 free");
    // ListAgents shows the group's free seats as the decision counts them.
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    let listed = client
        .list_agents(handoff_proto::router::v1::ListAgentsRequest {
            sdk_app_id: 1_400_000_001,
            group_id: None,
        })
        .await?
        .into_inner();
    let free: Vec<(u64, u32)> = listed
        .groups
        .iter()
        .map(|group| (group.group_id, group.free_seats))
        .collect();
    assert_eq!(free, [(6521, 2)]);
    let vip = stack
        .post(
            &signed_uri(now_secs()),
            &crate::support::body_from("s-4", "vip-1"),
        )
        .await?;
    assert_eq!(
        vip.agents(),
        ["ann@example.com", "bob@example.com"],
        "{vip:?}"
    );
    assert_eq!(
        crate::desk::metric(
            &[&router],
            "handoff_router_headroom_used_total",
            &["group=\"6521\""],
        )
        .await?,
        1.0,
        "the counter operators watch"
    );
    router.shutdown().await
}

/// Tiers order the answer: the senior agent first although least-loaded would put Ann
/// (listed first) ahead.
#[tokio::test]
async fn tiers_put_the_first_tiers_agents_first() -> TestResult {
    let senior = |config: String| {
        config.replace(
            "id = \"bob@example.com\"",
            "id = \"bob@example.com\"\nattributes = { seniority = \"senior\" }",
        )
    };
    let stack = Stack::start(&senior(floor("", ""))).await?;
    let first = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    assert_eq!(first.agents(), ["ann@example.com", "bob@example.com"]);
    let tiered = senior(floor(
        "",
        "tiers = ['agent.attributes.seniority == \"senior\"']",
    ));
    let stack = Stack::start(&tiered).await?;
    let first = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    assert_eq!(first.agents(), ["bob@example.com", "ann@example.com"]);
    // Within a tier the strategy still orders: Bob took s-1, but he is the only senior.
    let next = stack.post(&signed_uri(now_secs()), &body("s-2")).await?;
    assert_eq!(next.agents(), ["bob@example.com", "ann@example.com"]);
    Ok(())
}

/// Ann and Bob's group overflows to Carol's once fewer than `free` seats are free or its
/// estimated wait is above `wait`.
fn overflowing(overflow_when: &str) -> String {
    floor(
        "",
        &format!("overflow_when = {{ {overflow_when} }}\noverflow = [{{ group = 6522 }}]"),
    )
    .replacen(
        "[[apps.agents]]",
        "[[apps.groups]]\nid = 6522\nname = \"overflow\"\n\
             [[apps.agents]]\nid = \"carol@example.com\"\ngroups = [6522]\ncapacity = 2\n\
             [[apps.agents]]",
        1,
    )
}

#[tokio::test]
async fn a_target_overflows_when_too_few_seats_are_free() -> TestResult {
    // Four seats free: the group answers; three: below four, Carol's group does.
    let stack = Stack::start(&overflowing("free_seats_below = 4")).await?;
    let (second, _) = after_ann_took_one(&stack).await?;
    assert_eq!(second, ["carol@example.com"]);
    let explained = explain_walk_in(&stack).await?;
    // s-2 and s-3 filled Carol: the group answers after all, saying why it would not.
    let [target, overflow] = explained.targets.as_slice() else {
        return Err(format!("two targets: {explained:?}").into());
    };
    assert_eq!(target.outcome(), TargetOutcome::Chosen);
    assert_eq!(target.overflow, "3 free seats, below 4");
    assert_eq!(target.free_seats, 3);
    assert_eq!(overflow.outcome(), TargetOutcome::NoEligible);
    let third = stack.post(&signed_uri(now_secs()), &body("s-4")).await?;
    assert_eq!(
        third.agents(),
        ["bob@example.com", "ann@example.com"],
        "{third:?}"
    );
    // Without the live measure the group answers as long as anyone is eligible.
    let stack = Stack::start(
        &overflowing("free_seats_below = 4")
            .replace("overflow_when = { free_seats_below = 4 }", ""),
    )
    .await?;
    let (second, _) = after_ann_took_one(&stack).await?;
    assert_eq!(second, ["bob@example.com", "ann@example.com"]);
    Ok(())
}

/// An OnAssignHuman for `session` from its own customer, asked at `at` (Unix ms).
fn asked_at(session: &str, at: u64) -> String {
    body(session).replace("1670574414123", &at.to_string())
}

/// Ann took s-1 only a minute after the user asked: the group's estimated wait is a
/// minute, above the 30 s its target allows, so s-2 goes to Carol's group.
async fn after_a_long_wait(stack: &Stack) -> Result<Vec<String>, crate::support::Error> {
    let asked = now_secs() * 1000 - 90_000;
    let first = stack
        .post(&signed_uri(now_secs()), &asked_at("s-1", asked))
        .await?;
    assert_eq!(
        first.agents().first().map(String::as_str),
        Some("ann@example.com")
    );
    event_at(
        stack,
        "s-1",
        "AgentAccept",
        "ann@example.com",
        asked + 60_000,
    )
    .await?;
    let second = stack
        .post(&signed_uri(now_secs()), &asked_at("s-2", now_secs() * 1000))
        .await?;
    Ok(second.agents())
}

#[tokio::test]
async fn a_target_overflows_when_its_estimated_wait_is_too_long() -> TestResult {
    let stack = Stack::start(&overflowing("wait_above = \"30s\"")).await?;
    assert_eq!(after_a_long_wait(&stack).await?, ["carol@example.com"]);
    let stack = Stack::start(&overflowing("wait_above = \"90s\"")).await?;
    assert_eq!(
        after_a_long_wait(&stack).await?,
        ["bob@example.com", "ann@example.com"],
        "a minute is not above 90 s"
    );
    Ok(())
}

/// On Redis the waits are shared: the replica that made no reservation estimates the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimated_waits_are_shared_by_replicas_on_redis() -> TestResult {
    let config = overflowing("wait_above = \"30s\"");
    let Some((_redis, first, second)) = two_replicas(&config).await? else {
        return Ok(());
    };
    let stack = Stack::gateway_only(&config, first.router.ok_or("no router")?).await?;
    assert_eq!(after_a_long_wait(&stack).await?, ["carol@example.com"]);
    assert_eq!(ask(&second, "s-9").await?.agent_ids, ["carol@example.com"]);
    first.shutdown().await?;
    second.shutdown().await
}
