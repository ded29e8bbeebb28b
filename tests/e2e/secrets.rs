//! Secrets never reach the logs, even at trace level: the app's callback token, the
//! router's bearer tokens and the gateway's own, with the router and the gateway apart and
//! every library logging all it has.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    support::{Error, TestResult, body, now_secs, request, signed_uri},
    traces::{memory_config, own_ports},
};

const APP_TOKEN: &str = "xxxxyyyy";
const GATEWAY_TOKEN: &str = "gateway-secret-0123456789";
const OPS_TOKEN: &str = "ops-secret-0123456789abcd";

/// A binary logging at trace level into `log`, killed on drop.
struct Traced(Child);

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `log` to show the binary listening; the address after `name=`.
async fn listening(log: &std::path::Path, name: &str) -> Result<String, Error> {
    for _ in 0..200 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(" listening")) {
            return crate::traces::field(line, name);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Err(format!("{} never said it was listening", log.display()).into())
}

fn start(
    binary: &str,
    config: &std::path::Path,
    log: &std::path::Path,
    env: &[(&str, String)],
) -> Result<Traced, Error> {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "trace")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?);
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(Traced(command.spawn()?))
}

#[tokio::test]
async fn no_secret_reaches_a_trace_level_log() -> TestResult {
    let dir = crate::support::Scratch::new("secrets")?;
    let config = dir.join("handoff.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[router.auth.tokens]]\nname = \"gateway\"\ntoken = \"{GATEWAY_TOKEN}\"\ngrants = [\"all\"]\n\n[[router.auth.tokens]]\nname = \"ops\"\ntoken = \"{OPS_TOKEN}\"\ngrants = [\"management\"]\n",
            memory_config()
        ),
    )?;
    let (router_log, gateway_log) = (dir.join("router.log"), dir.join("gateway.log"));
    let result = async {
        let _router = start(
            env!("CARGO_BIN_EXE_handoff-router"),
            &config,
            &router_log,
            &own_ports(&[]),
        )?;
        let router = listening(&router_log, "router").await?;
        let mut env = own_ports(&[]);
        env.push(("HANDOFF__GATEWAY__ROUTER_URL", format!("http://{router}")));
        env.push(("HANDOFF__GATEWAY__ROUTER_TOKEN", GATEWAY_TOKEN.to_owned()));
        let _gateway = start(
            env!("CARGO_BIN_EXE_handoff-gateway"),
            &config,
            &gateway_log,
            &env,
        )?;
        let gateway: SocketAddr = listening(&gateway_log, "gateway").await?.parse()?;
        let reply = request(gateway, "POST", &signed_uri(now_secs()), body("secret-1")).await?;
        assert_eq!(reply.json["AgentGroupId"], 6521, "routed with the token");
        // A bad signature and a wrong bearer token are refused and logged: still no secret.
        let forged = signed_uri(now_secs()).replace("Sign=", "Sign=00");
        request(gateway, "POST", &forged, body("secret-2")).await?;
        // A call the operator's token does not grant: refused, and logged as such.
        let mut client =
            handoff_proto::router::v1::router_service_client::RouterServiceClient::connect(
                format!("http://{router}"),
            )
            .await?;
        let mut call = tonic::Request::new(handoff_proto::router::v1::AssignHumanRequest {
            sdk_app_id: 1_400_000_001,
            session_id: "secret-3".into(),
            client_user_id: "c".into(),
            ..Default::default()
        });
        call.metadata_mut()
            .insert("authorization", format!("Bearer {OPS_TOKEN}").parse()?);
        let refused = client.assign_human(call).await.err().map(|s| s.code());
        assert_eq!(refused, Some(tonic::Code::PermissionDenied));
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok::<_, Error>((
            std::fs::read_to_string(&router_log)?,
            std::fs::read_to_string(&gateway_log)?,
        ))
    }
    .await;
    let (router, gateway) = result?;
    assert!(
        router.lines().count() > 50 && gateway.lines().count() > 50,
        "trace-level logs were written"
    );
    for (name, log) in [("router", &router), ("gateway", &gateway)] {
        for secret in [APP_TOKEN, GATEWAY_TOKEN, OPS_TOKEN] {
            let leaked: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(3).collect();
            assert!(
                leaked.is_empty(),
                "the {name}'s log holds {secret:?}: {leaked:#?}"
            );
        }
    }
    Ok(())
}
