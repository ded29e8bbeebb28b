//! `handoff-gateway --config FILE`: Tencent's callback endpoint on `[gateway] listen`.

use std::process::ExitCode;

use anyhow::Context;
use handoff_core::{cli, shutdown, telemetry};
use handoff_gateway::Gateway;
use tokio::net::TcpListener;

const ABOUT: &str = "the Tencent Desk callback gateway for the handoff router";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("handoff-gateway: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Some(started) = cli::start("handoff-gateway", ABOUT, |_, _| Ok(()))? else {
        return Ok(());
    };
    let config = started.config;
    telemetry::init();
    let gateway = Gateway::from_config(&config)?;
    let listener = TcpListener::bind(config.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", config.gateway.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        path = %config.gateway.path,
        router = %config.gateway.router_url,
        "gateway listening"
    );
    let grace = config.gateway.shutdown_grace.get();
    handoff_gateway::serve(listener, gateway, grace, shutdown::signal()).await?;
    tracing::info!("gateway stopped");
    Ok(())
}
