//! `handoff-router --config FILE`: the gRPC routing service on `[router] listen`.

use std::process::ExitCode;

use anyhow::Context;
use handoff_core::{cli, shutdown, telemetry};
use handoff_router::Router;
use tokio::net::TcpListener;

const ABOUT: &str = "the handoff routing service (gRPC handoff.router.v1)";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("handoff-router: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Some(config) = cli::start("handoff-router", ABOUT)? else {
        return Ok(());
    };
    telemetry::init();
    let listener = TcpListener::bind(config.router.listen)
        .await
        .with_context(|| format!("binding the router to {}", config.router.listen))?;
    tracing::info!(addr = %listener.local_addr()?, apps = config.apps.len(), "router listening");
    let grace = config.router.shutdown_grace.get();
    handoff_router::serve(
        listener,
        Router::from_config(&config),
        grace,
        shutdown::signal(),
    )
    .await?;
    tracing::info!("router stopped");
    Ok(())
}
