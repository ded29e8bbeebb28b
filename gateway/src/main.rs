//! `handoff-gateway --config FILE`: Tencent's callback endpoint on `[gateway] listen`,
//! taking new app tokens and fallback groups on file change and SIGHUP.

use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use handoff_core::{cli, reload, shutdown, telemetry};
use handoff_gateway::Gateway;
use tokio::{net::TcpListener, sync::watch};

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
    let gateway = Arc::new(Gateway::from_config(&config)?);
    let listener = TcpListener::bind(config.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", config.gateway.listen))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        path = %config.gateway.path,
        router = %config.gateway.router_url,
        "gateway listening"
    );
    let (stop, stopped) = watch::channel(false);
    let reloading = gateway.clone();
    let reloader = tokio::spawn(reload::watch(
        started.path.clone(),
        started.env.clone(),
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|stop| *stop).await;
        },
        move |config, _| reloading.reload(config),
    ));
    let shutdown = async move {
        shutdown::signal().await;
        let _ = stop.send(true);
    };
    let grace = config.gateway.shutdown_grace.get();
    handoff_gateway::serve(listener, gateway, grace, shutdown).await?;
    let _ = reloader.await;
    tracing::info!("gateway stopped");
    Ok(())
}
