//! Tencent's OnAssignHuman callback through the gateway and the router.

use std::time::{Duration, Instant};

use handoff_proto::{
    fake::{AssignHuman, AssignOnly},
    router::v1::{
        AssignHumanRequest, AssignHumanResponse, router_service_server::RouterServiceServer,
    },
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

use crate::support::{CONFIG, Stack, TestResult, body, body_from, now_secs, sign, signed_uri};

#[tokio::test]
async fn a_signed_callback_gets_a_ranked_agent_list_and_retries_count_once() -> TestResult {
    ranked_agent_lists_and_retries(Stack::start(CONFIG).await?).await?;
    Ok(())
}

/// The all-in-one calls its router in process; a gateway deployed apart calls it over
/// gRPC, and must answer the same.
#[tokio::test]
async fn a_gateway_apart_from_its_router_answers_the_same_over_grpc() -> TestResult {
    let stack = Stack::apart(CONFIG).await?;
    let ready = stack.request("GET", "/readyz", String::new()).await?;
    assert_eq!(ready.status, 200, "{ready:?}");
    let stack = ranked_agent_lists_and_retries(stack).await?;

    // Session and member events reach the router over gRPC too: bob's session ends and he
    // goes on a break (nobody to offer), then comes back (offered again).
    let event_uri =
        |command: &str| signed_uri(now_secs()).replace("ChatBot.OnAssignHuman", command);
    let at = now_secs() * 1000;
    let ended = format!(
        r#"{{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"s-2","Event":"SessionEnd","EventTime":{at},"ChannelType":"SDK","ClientUserId":"user-s-2","AgentId":"bob@example.com"}}"#
    );
    let status = |status: &str, at: u64| {
        format!(
            r#"{{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"bob@example.com","Status":"{status}","EventTime":{at}}}"#
        )
    };
    for (command, body) in [
        ("Desk.SessionEventNotify", ended),
        ("Member.EventNotify", status("rest", at + 1)),
    ] {
        let ack = stack.post(&event_uri(command), &body).await?;
        assert_eq!(
            (ack.status, &ack.json["ActionStatus"]),
            (200, &"OK".into()),
            "{ack:?}"
        );
    }
    let resting = stack.post(&signed_uri(now_secs()), &body("s-5")).await?;
    assert!(resting.agents().is_empty(), "{resting:?}");
    let back = status("idle", at + 2);
    let ack = stack.post(&event_uri("Member.EventNotify"), &back).await?;
    assert_eq!(ack.status, 200, "{ack:?}");
    let returned = stack.post(&signed_uri(now_secs()), &body("s-6")).await?;
    assert_eq!(returned.agents(), ["bob@example.com"]);
    Ok(())
}

async fn ranked_agent_lists_and_retries(stack: Stack) -> Result<Stack, crate::support::Error> {
    let uri = signed_uri(now_secs());

    let first = stack.post(&uri, &body("s-1")).await?;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.content_type, "application/json");
    assert_eq!(first.json["ActionStatus"], "OK");
    assert_eq!(first.json["ErrorCode"], 0);
    assert_eq!(first.json["ErrorInfo"], "");
    assert_eq!(first.json["AgentGroupId"], 6521);
    assert_eq!(first.agents(), ["ann@example.com", "bob@example.com"]);

    let retry = stack.post(&uri, &body("s-1")).await?;
    assert_eq!(retry.json, first.json, "a retry replays the same answer");

    // ann carries s-1 (1 of 2), so bob (0 of 1) now leads.
    let second = stack.post(&uri, &body("s-2")).await?;
    assert_eq!(second.agents(), ["bob@example.com", "ann@example.com"]);
    // bob is full: only ann is offered.
    let third = stack.post(&uri, &body("s-3")).await?;
    assert_eq!(third.agents(), ["ann@example.com"]);
    // Everyone is full: the app's fallback group alone, so Tencent queues the session there.
    let fourth = stack.post(&uri, &body("s-4")).await?;
    assert_eq!(fourth.status, 200);
    assert_eq!(fourth.json["ActionStatus"], "OK");
    assert_eq!(fourth.json["AgentGroupId"], 9000);
    assert!(fourth.agents().is_empty(), "{fourth:?}");
    Ok(stack)
}

#[tokio::test]
async fn a_returning_customer_gets_their_previous_agent_first() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let uri = signed_uri(now_secs());
    let first = stack.post(&uri, &body_from("visit-1", "regular")).await?;
    assert_eq!(first.agents(), ["ann@example.com", "bob@example.com"]);
    // ann now carries more load than bob, but served this customer last.
    let second = stack.post(&uri, &body_from("visit-2", "regular")).await?;
    assert_eq!(
        second.agents(),
        ["ann@example.com", "bob@example.com"],
        "{second:?}"
    );
    // ann is now full (2 of 2): a stranger gets bob alone.
    let stranger = stack.post(&uri, &body("visit-3")).await?;
    assert_eq!(stranger.agents(), ["bob@example.com"], "{stranger:?}");
    Ok(())
}

#[tokio::test]
async fn tolerated_variants_are_accepted() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let unsigned = "/tencent/callback?SdkAppid=1400000002&CallbackCommand=ChatBot.OnAssignAgent&OptPlatform=HarmonyOS";
    let variant = r#"{"CallbackCommand":"Chatbot.OnAssignAgent","SessionId":"v-1","ClientUserId":"u","EventTime":"1670574414123","CustomerServiceId":"cs-1","SomethingNew":[1,2]}"#;
    let reply = stack.post(unsigned, variant).await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.agents(), ["dee@example.com"]);
    assert_eq!(reply.json["AgentGroupId"], 7000);
    Ok(())
}

#[tokio::test]
async fn every_bad_callback_gets_its_status_and_a_tencent_shaped_error() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let now = now_secs();
    let good = signed_uri(now);
    let stale = signed_uri(now - 120);
    let future = signed_uri(now + 120);
    let bad_sign = good.replace(
        &sign("xxxxyyyy", &now.to_string()),
        &sign("wrong", &now.to_string()),
    );
    let unknown_app = good.replace("SdkAppid=1400000001", "SdkAppid=1400000099");
    let no_app = good.replace("SdkAppid=1400000001&", "");
    let unsigned = "/tencent/callback?SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman";
    let other_command = good.replace("ChatBot.OnAssignHuman", "Desk.SomethingElse");
    let huge = format!(r#"{{"Padding":"{}"}}"#, "x".repeat(65 * 1024));
    let cases: Vec<(&str, String, String, u16, u64)> = vec![
        ("POST", unknown_app, body("b"), 403, 2001),
        ("POST", no_app, body("b"), 400, 1001),
        ("POST", unsigned.to_owned(), body("b"), 401, 2002),
        ("POST", bad_sign, body("b"), 401, 2004),
        ("POST", stale, body("b"), 401, 2003),
        ("POST", future, body("b"), 401, 2003),
        ("POST", good.clone(), huge, 413, 1004),
        (
            "POST",
            good.clone(),
            "{\"SessionId\":".to_owned(),
            400,
            1001,
        ),
        (
            "POST",
            good.clone(),
            body("b").replace(r#""ClientUserId":"user-b","#, ""),
            400,
            1001,
        ),
        (
            "POST",
            good.clone(),
            body("b").replace("1670574414123", "\"yesterday\""),
            400,
            1001,
        ),
        ("POST", good.clone(), body("has space"), 400, 1001),
        // Who is calling must not be ambiguous: a second, different SdkAppid is refused.
        (
            "POST",
            format!("{good}&SdkAppid=1400000002"),
            body("b"),
            400,
            1001,
        ),
        (
            "POST",
            good.clone(),
            body("b").replace("OnAssignHuman", "OnAssignAgent"),
            200,
            0,
        ),
        (
            "POST",
            good.clone(),
            body("b").replace("ChatBot.OnAssignHuman", "ChatBot.Other"),
            400,
            1002,
        ),
        (
            "POST",
            other_command.clone(),
            body("b").replace("ChatBot.OnAssignHuman", "Desk.SomethingElse"),
            200,
            1003,
        ),
        ("GET", good.clone(), String::new(), 405, 1007),
        ("POST", "/nowhere".to_owned(), body("b"), 404, 1006),
    ];
    for (method, uri, payload, status, code) in cases {
        let reply = stack.request(method, &uri, payload).await?;
        if code == 0 {
            assert_eq!(reply.status, 200, "{uri}: {reply:?}");
            assert_eq!(reply.json["ActionStatus"], "OK", "{uri}: {reply:?}");
        } else {
            reply.assert_fail(status, code);
        }
    }
    // Nothing refused above reached the router: the app still has all its capacity.
    let reply = stack.post(&good, &body("after")).await?;
    assert_eq!(
        reply.agents(),
        ["bob@example.com", "ann@example.com"],
        "{reply:?}"
    );
    Ok(())
}

#[tokio::test]
async fn router_down_answers_the_fallback_group_or_a_clear_failure() -> TestResult {
    let dead = {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        listener.local_addr()?
    };
    let stack = Stack::gateway_only(CONFIG, dead).await?;
    let reply = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["ActionStatus"], "OK");
    assert_eq!(reply.json["AgentGroupId"], 9000);
    assert!(reply.agents().is_empty());

    let no_fallback = "/tencent/callback?SdkAppid=1400000002&CallbackCommand=ChatBot.OnAssignHuman";
    stack
        .post(no_fallback, &body("s-2"))
        .await?
        .assert_fail(503, 3001);
    stack
        .request("GET", "/readyz", String::new())
        .await?
        .assert_fail(503, 3001);

    // Events are never acknowledged unless the router recorded them, fallback group or not:
    // Tencent's retry delivers them again.
    let time = now_secs().to_string();
    let signed = |command: &str| {
        format!(
            "/tencent/callback?SdkAppid=1400000001&CallbackCommand={command}&Sign={}&RequestTime={time}&RequestID=r-1",
            sign("xxxxyyyy", &time)
        )
    };
    let session_event = r#"{"CallbackCommand":"Desk.SessionEventNotify","SessionId":"s-1","Event":"SessionEnd","EventTime":1725540020017}"#;
    stack
        .post(&signed("Desk.SessionEventNotify"), session_event)
        .await?
        .assert_fail(503, 3001);
    let member_event = r#"{"CallbackCommand":"Member.EventNotify","Event":"Member.StatusChange","MemberId":"ann@example.com","Status":"rest","EventTime":1725540020017}"#;
    stack
        .post(&signed("Member.EventNotify"), member_event)
        .await?
        .assert_fail(503, 3001);
    // What has no routing meaning needs no router: acknowledged.
    let begin = session_event.replace("SessionEnd", "SessionBegin");
    let reply = stack
        .post(&signed("Desk.SessionEventNotify"), &begin)
        .await?;
    assert_eq!(
        (reply.status, &reply.json["ActionStatus"]),
        (200, &"OK".into()),
        "{reply:?}"
    );
    Ok(())
}

/// A router that answers too late.
#[derive(Clone)]
struct SlowRouter;

#[tonic::async_trait]
impl AssignHuman for SlowRouter {
    async fn assign_human(
        &self,
        _request: Request<AssignHumanRequest>,
    ) -> Result<Response<AssignHumanResponse>, Status> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Err(Status::internal("answered too late to matter"))
    }
}

#[tokio::test]
async fn a_router_slower_than_the_deadline_is_cut_off_and_the_fallback_answers() -> TestResult {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let slow = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(RouterServiceServer::new(AssignOnly(SlowRouter)))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let stack = Stack::gateway_only(CONFIG, slow).await?;

    let started = Instant::now();
    let reply = stack.post(&signed_uri(now_secs()), &body("s-1")).await?;
    let elapsed = started.elapsed();
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["AgentGroupId"], 9000);
    assert!(
        elapsed < Duration::from_secs(2),
        "answered after {elapsed:?}, past Tencent's 2 s"
    );

    let no_fallback = "/tencent/callback?SdkAppid=1400000002&CallbackCommand=ChatBot.OnAssignHuman";
    stack
        .post(no_fallback, &body("s-2"))
        .await?
        .assert_fail(504, 3002);
    Ok(())
}

#[tokio::test]
async fn health_and_readiness() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let alive = stack.request("GET", "/healthz", String::new()).await?;
    assert_eq!(
        (alive.status, alive.json["ActionStatus"].as_str()),
        (200, Some("OK"))
    );
    let ready = stack.request("GET", "/readyz", String::new()).await?;
    assert_eq!(
        (ready.status, ready.json["ActionStatus"].as_str()),
        (200, Some("OK"))
    );
    Ok(())
}
