//! Who may call the router: bearer tokens from `[router.auth]`, checked on the router's
//! own listener (the router and the gateway run apart as their binaries), and the gateway
//! presenting its own.

use handoff_proto::router::v1::{
    AgentStatus, AssignHumanRequest, ListAgentsRequest, MultiplexRequest, SetAgentStatusRequest,
    multiplex_request, multiplex_response, router_service_client::RouterServiceClient,
};
use tonic::{Code, Request, metadata::MetadataValue, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    support::{Error, TestResult, body, now_secs, request, signed_uri},
    traces::{Process, field, memory_config, own_ports, spawn},
};

const GATEWAY_TOKEN: &str = "gateway-token-0123456789";
const CRM_TOKEN: &str = "crm-token-0123456789abc";
const IVR_TOKEN: &str = "ivr-token-0123456789abc";

/// The tests' config with three callers: the gateway (decisions and statuses), a CRM
/// (management) and an IVR (decisions alone).
fn guarded_config() -> String {
    format!(
        "{}\n[[router.auth.tokens]]\nname = \"gateway\"\ntoken = \"{GATEWAY_TOKEN}\"\ngrants = [\"decisions\", \"SetAgentStatus\"]\n\n[[router.auth.tokens]]\nname = \"crm\"\ntoken = \"{CRM_TOKEN}\"\ngrants = [\"management\"]\n\n[[router.auth.tokens]]\nname = \"ivr\"\ntoken = \"{IVR_TOKEN}\"\ngrants = [\"decisions\"]\n",
        memory_config()
    )
}

/// `message` carrying `token` as a bearer token.
fn with_token<T>(message: T, token: Option<&str>) -> Result<Request<T>, Error> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// The code a call failed with, if it did.
fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Option<Code> {
    result.err().map(|status| status.code())
}

fn assign(session: &str) -> AssignHumanRequest {
    AssignHumanRequest {
        sdk_app_id: 1_400_000_001,
        session_id: session.to_owned(),
        client_user_id: format!("user-{session}"),
        ..AssignHumanRequest::default()
    }
}

/// The router alone on `config`; its gRPC address.
fn router(name: &str, config: &str) -> Result<(Process, String), Error> {
    let path =
        std::env::temp_dir().join(format!("handoff-access-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, config)?;
    let started = spawn(env!("CARGO_BIN_EXE_handoff-router"), &path, &own_ports(&[]));
    let _ = std::fs::remove_file(&path);
    let (process, line) = started?;
    Ok((process, field(&line, "router")?))
}

/// A gateway alone asking `router`, presenting `token` when given; its HTTP address.
fn gateway(name: &str, router: &str, token: Option<&str>) -> Result<(Process, String), Error> {
    let path = std::env::temp_dir().join(format!(
        "handoff-access-gw-{name}-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, memory_config())?;
    let mut env = own_ports(&[("HANDOFF__GATEWAY__ROUTER_URL", format!("http://{router}"))]);
    if let Some(token) = token {
        env.push(("HANDOFF__GATEWAY__ROUTER_TOKEN", token.to_owned()));
    }
    let started = spawn(env!("CARGO_BIN_EXE_handoff-gateway"), &path, &env);
    let _ = std::fs::remove_file(&path);
    let (process, line) = started?;
    Ok((process, field(&line, "gateway")?))
}

#[tokio::test]
async fn calls_need_a_token_that_grants_their_method() -> TestResult {
    let (_router, addr) = router("methods", &guarded_config())?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = RouterServiceClient::new(channel.clone());

    let none = client.assign_human(with_token(assign("a-1"), None)?).await;
    assert_eq!(code(none), Some(Code::Unauthenticated));
    let wrong = client
        .assign_human(with_token(assign("a-1"), Some("not-a-token-at-all-0000"))?)
        .await;
    assert_eq!(code(wrong), Some(Code::Unauthenticated));
    let crm = client
        .assign_human(with_token(assign("a-1"), Some(CRM_TOKEN))?)
        .await;
    assert_eq!(
        code(crm),
        Some(Code::PermissionDenied),
        "management may not route"
    );
    let answered = client
        .assign_human(with_token(assign("a-1"), Some(GATEWAY_TOKEN))?)
        .await?
        .into_inner();
    assert_eq!(answered.agent_group_id, Some(6521));

    let list = |token| {
        with_token(
            ListAgentsRequest {
                sdk_app_id: 1_400_000_001,
                ..Default::default()
            },
            token,
        )
    };
    let gateway_lists = client.list_agents(list(Some(GATEWAY_TOKEN))?).await;
    assert_eq!(code(gateway_lists), Some(Code::PermissionDenied));
    assert!(client.list_agents(list(Some(CRM_TOKEN))?).await.is_ok());

    // Health answers anyone, for load balancers and grpcurl.
    let health = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);
    Ok(())
}

/// The answers of one `Multiplex` stream opened with `token` that carries `calls`, by call
/// id: the code each failed with (OK for an answer); or the code the stream was refused with.
async fn multiplexed(
    client: &mut RouterServiceClient<Channel>,
    token: Option<&str>,
    calls: Vec<MultiplexRequest>,
) -> Result<Result<Vec<(u64, Code)>, Code>, Error> {
    let request = with_token(tokio_stream::iter(calls), token)?;
    let mut answers = match client.multiplex(request).await {
        Ok(answers) => answers.into_inner(),
        Err(status) => return Ok(Err(status.code())),
    };
    let mut codes = Vec::new();
    while let Some(answer) = answers.message().await? {
        let code = match answer.result {
            Some(multiplex_response::Result::Error(error)) => Code::from(error.code),
            Some(_) => Code::Ok,
            None => return Err("an answer without a result".into()),
        };
        codes.push((answer.call_id, code));
    }
    codes.sort_unstable_by_key(|(id, _)| *id);
    Ok(Ok(codes))
}

#[tokio::test]
async fn each_call_on_a_multiplex_stream_needs_its_own_methods_grant() -> TestResult {
    let (_router, addr) = router("multiplex", &guarded_config())?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = RouterServiceClient::new(channel);
    let calls = || {
        vec![
            MultiplexRequest {
                call_id: 1,
                call: Some(multiplex_request::Call::AssignHuman(assign("m-1"))),
                ..MultiplexRequest::default()
            },
            MultiplexRequest {
                call_id: 2,
                call: Some(multiplex_request::Call::SetAgentStatus(
                    SetAgentStatusRequest {
                        sdk_app_id: 1_400_000_001,
                        agent_id: "ann@example.com".to_owned(),
                        status: AgentStatus::Away.into(),
                        ..SetAgentStatusRequest::default()
                    },
                )),
                ..MultiplexRequest::default()
            },
        ]
    };
    // The stream itself is a decision method; a caller without decisions cannot open it.
    assert_eq!(
        multiplexed(&mut client, None, calls()).await?,
        Err(Code::Unauthenticated)
    );
    assert_eq!(
        multiplexed(&mut client, Some(CRM_TOKEN), calls()).await?,
        Err(Code::PermissionDenied)
    );
    // Decisions alone route, but may not set a status through the stream.
    assert_eq!(
        multiplexed(&mut client, Some(IVR_TOKEN), calls()).await?,
        Ok(vec![(1, Code::Ok), (2, Code::PermissionDenied)])
    );
    assert_eq!(
        multiplexed(&mut client, Some(GATEWAY_TOKEN), calls()).await?,
        Ok(vec![(1, Code::Ok), (2, Code::Ok)])
    );
    Ok(())
}

#[tokio::test]
async fn the_gateway_presents_its_own_token() -> TestResult {
    let (_router, addr) = router("gateway", &guarded_config())?;
    let answered = |gateway: String| async move {
        let reply = request(
            gateway.parse()?,
            "POST",
            &signed_uri(now_secs()),
            body("g-1"),
        )
        .await?;
        Ok::<_, Error>(reply.json)
    };
    let (_with, http) = gateway("with", &addr, Some(GATEWAY_TOKEN))?;
    let json = answered(http).await?;
    assert_eq!(json["AgentGroupId"], 6521, "routed by the router: {json}");
    assert_eq!(json["AgentIdList"][0], "ann@example.com");
    // Without it the router refuses, and the app's fallback group answers.
    let (_without, http) = gateway("without", &addr, None)?;
    let json = answered(http).await?;
    assert_eq!(json["AgentGroupId"], 9000, "{json}");
    Ok(())
}

/// `[router.auth]` is live: a token added by a reload is taken at the next call, and one
/// removed is refused, without a restart.
#[tokio::test]
async fn a_reload_swaps_the_routers_tokens() -> TestResult {
    let path =
        std::env::temp_dir().join(format!("handoff-access-reload-{}.toml", std::process::id()));
    std::fs::write(&path, guarded_config())?;
    let result = async {
        let (process, line) = spawn(env!("CARGO_BIN_EXE_handoff-router"), &path, &own_ports(&[]))?;
        let addr = field(&line, "router")?;
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut client = RouterServiceClient::new(channel);
        const NEW: &str = "rotated-token-0123456789";
        let list = |token: &'static str| {
            with_token(
                ListAgentsRequest {
                    sdk_app_id: 1_400_000_001,
                    ..ListAgentsRequest::default()
                },
                Some(token),
            )
        };
        assert_eq!(code(client.list_agents(list(CRM_TOKEN)?).await), None);
        assert_eq!(
            code(client.list_agents(list(NEW)?).await),
            Some(Code::Unauthenticated)
        );
        // The CRM's token rotated: the new one in, the old one out.
        std::fs::write(&path, guarded_config().replace(CRM_TOKEN, NEW))?;
        std::process::Command::new("kill")
            .args(["-HUP", &process.id().to_string()])
            .status()?;
        let mut taken = false;
        for _ in 0..100 {
            if code(client.list_agents(list(NEW)?).await).is_none() {
                taken = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(taken, "the reloaded token was never accepted");
        assert_eq!(
            code(client.list_agents(list(CRM_TOKEN)?).await),
            Some(Code::Unauthenticated)
        );
        Ok::<_, Error>(())
    }
    .await;
    let _ = std::fs::remove_file(&path);
    result
}

/// Who changed what: a management call's entry in the decision log names the router token
/// it came with (never the token itself).
#[tokio::test]
async fn management_changes_are_logged_with_the_callers_name() -> TestResult {
    use handoff_proto::router::v1::{Agent, UpsertAgentRequest};
    use handoff_router::decision_log::Entry;
    let dir = crate::support::Scratch::new("audit")?;
    let (path, log) = (dir.join("handoff.toml"), dir.join("decisions.jsonl"));
    std::fs::write(&path, guarded_config())?;
    let result = async {
        let env = own_ports(&[(
            "HANDOFF__ROUTER__DECISION_LOG__PATH",
            log.display().to_string(),
        )]);
        let (_process, line) = spawn(env!("CARGO_BIN_EXE_handoff-router"), &path, &env)?;
        let channel = Channel::from_shared(format!("http://{}", field(&line, "router")?))?
            .connect()
            .await?;
        let mut client = RouterServiceClient::new(channel);
        let zoe = Agent {
            id: "zoe@example.com".into(),
            group_ids: vec![6521],
            capacity: 2,
            ..Agent::default()
        };
        let upsert = UpsertAgentRequest {
            sdk_app_id: 1_400_000_001,
            agent: Some(zoe),
        };
        client
            .upsert_agent(with_token(upsert, Some(CRM_TOKEN))?)
            .await?;
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("agent_put") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok::<_, Error>(text)
    }
    .await;
    let text = result?;
    let put = text
        .lines()
        .filter_map(|line| serde_json::from_str::<Entry>(line).ok())
        .find(|entry| matches!(entry, Entry::AgentPut { .. }))
        .ok_or_else(|| format!("no agent_put in {text}"))?;
    assert_eq!(put.by(), Some("crm"), "{text}");
    assert!(!text.contains(CRM_TOKEN), "the token itself was logged");
    Ok(())
}

#[tokio::test]
async fn a_stopping_router_ends_its_multiplex_streams_instead_of_waiting_out_its_grace()
-> TestResult {
    let path = std::env::temp_dir().join(format!(
        "handoff-access-stopping-{}.toml",
        std::process::id()
    ));
    std::fs::write(&path, guarded_config())?;
    let env = own_ports(&[("HANDOFF__ROUTER__SHUTDOWN_GRACE", "60s".to_owned())]);
    let started = spawn(env!("CARGO_BIN_EXE_handoff-router"), &path, &env);
    let _ = std::fs::remove_file(&path);
    let (router, line) = started?;
    let addr = field(&line, "router")?;
    let mut client = RouterServiceClient::new(
        Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?,
    );
    // A stream the caller keeps open, as the gateway does.
    let (calls, outgoing) = tokio::sync::mpsc::unbounded_channel();
    let request = with_token(
        tokio_stream::wrappers::UnboundedReceiverStream::new(outgoing),
        Some(GATEWAY_TOKEN),
    )?;
    let mut answers = client.multiplex(request).await?.into_inner();
    calls.send(MultiplexRequest {
        call_id: 7,
        call: Some(multiplex_request::Call::AssignHuman(assign("stop-1"))),
        ..MultiplexRequest::default()
    })?;
    let answer = answers.message().await?.ok_or("the call is answered")?;
    assert_eq!(answer.call_id, 7);

    let terminated = std::process::Command::new("kill")
        .args(["-TERM", &router.id().to_string()])
        .status()?;
    assert!(terminated.success());
    // Well within the 60 s grace, the stream ends (and with it the router's drain).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), answers.message())
        .await
        .map_err(|_| "the stream was still open 10 s after SIGTERM")?;
    assert!(matches!(ended, Ok(None)), "the stream ends OK: {ended:?}");
    drop(calls);
    Ok(())
}
