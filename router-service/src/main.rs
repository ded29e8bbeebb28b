//! `handoff-router --config FILE`: the gRPC routing service on `[router] listen`, reloading
//! its config on file change and SIGHUP.

use std::{process::ExitCode, sync::Arc};

use anyhow::Context;
use handoff_core::{cli, shutdown, telemetry};
use handoff_router::{Router, engine::Catalog};
use tokio::{net::TcpListener, sync::watch};

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
    let compile = |config: &_, path: &_| Catalog::from_config(config, path).map(drop);
    let Some(started) = cli::start("handoff-router", ABOUT, compile)? else {
        return Ok(());
    };
    telemetry::init();
    let config = &started.config;
    let router = Arc::new(Router::open(config, &started.path).await?);
    let listener = TcpListener::bind(config.router.listen)
        .await
        .with_context(|| format!("binding the router to {}", config.router.listen))?;
    tracing::info!(addr = %listener.local_addr()?, apps = config.apps.len(), "router listening");

    let (stop, stopped) = watch::channel(false);
    let reloader = tokio::spawn(handoff_router::reload::watch(
        router.clone(),
        started.path.clone(),
        started.env.clone(),
        until(stopped),
    ));
    let shutdown = async move {
        shutdown::signal().await;
        let _ = stop.send(true);
    };
    let grace = config.router.shutdown_grace.get();
    handoff_router::serve(listener, router, grace, shutdown).await?;
    let _ = reloader.await;
    tracing::info!("router stopped");
    Ok(())
}

async fn until(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}
