//! What each binary's `main` is: read the command line and the config, set up logging,
//! bind the listeners of the parts it runs, build the [`Application`] and run it until
//! SIGINT or SIGTERM, reloading the config on change and SIGHUP.

use std::{net::SocketAddr, process::ExitCode};

use handoff_core::{
    cli::{self, StartError},
    shutdown, telemetry,
};
use tokio::net::TcpListener;

use crate::app::{AppError, Application, Listeners, audit, check};

/// Which parts a binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parts {
    /// The router and the gateway in one process (`handoff`).
    All,
    /// The router alone (`handoff-router`).
    Router,
    /// The gateway alone (`handoff-gateway`).
    Gateway,
}

/// Why a binary could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
enum LaunchError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    App(#[from] AppError),
}

/// Runs `program` (which runs `parts`) as the process: its whole `main`.
pub async fn launch(program: &'static str, about: &str, parts: Parts) -> ExitCode {
    match serve(program, about, parts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{program}: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(program: &'static str, about: &str, parts: Parts) -> Result<(), LaunchError> {
    let Some(started) = cli::start(program, about, check, audit)? else {
        return Ok(());
    };
    let telemetry = telemetry::init(program, started.log_format);
    let config = started.config;
    let listeners = Listeners {
        router: match parts {
            Parts::All | Parts::Router => Some(bind("router", config.router.listen).await?),
            Parts::Gateway => None,
        },
        gateway: match parts {
            Parts::All | Parts::Gateway => Some(bind("gateway", config.gateway.listen).await?),
            Parts::Router => None,
        },
        metrics: match (parts, config.router.metrics_listen) {
            (Parts::All | Parts::Router, Some(addr)) => Some(bind("router metrics", addr).await?),
            _ => None,
        },
        console: match (parts, config.router.console.listen) {
            (Parts::All | Parts::Router, Some(addr)) => Some(bind("router console", addr).await?),
            _ => None,
        },
    };
    let (path, store, state) = (
        config.gateway.path.clone(),
        config.router.store.kind(),
        config.router.store.location(),
    );
    let apps = config
        .apps
        .iter()
        .map(|app| app.sdk_app_id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let unsigned: Vec<String> = config
        .apps
        .iter()
        .filter(|app| app.token.is_none())
        .map(|app| app.sdk_app_id.to_string())
        .collect();
    let file = started.path.display().to_string();
    let router_url = (parts == Parts::Gateway).then(|| config.gateway.router_url.clone());
    let app = Application::build(config, &started.path, listeners)
        .await?
        .reload_on_change(started.path, started.env);
    tracing::info!(
        router = app.router_addr().map(display),
        gateway = app.gateway_addr().map(display),
        metrics = app.metrics_addr().map(display),
        console = app.console_addr().map(display),
        router_url,
        path = app.gateway_addr().map(|_| path),
        config = file,
        store = app
            .router_addr()
            .map(|_| format!("{store:?}").to_lowercase()),
        state = app.router_addr().map(|_| state),
        apps,
        "{program} listening"
    );
    if app.gateway_addr().is_some() && !unsigned.is_empty() {
        tracing::warn!(
            apps = unsigned.join(","),
            "apps without a callback token: the gateway takes their callbacks unsigned, so anyone who reaches it can route and report for them; set apps[N].token (Tencent's console: callback authentication)"
        );
    }
    app.run(shutdown::signal()).await?;
    tracing::info!("{program} stopped");
    drop(telemetry);
    Ok(())
}

async fn bind(part: &str, addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Io {
            what: format!("binding the {part} to {addr}"),
            source,
        })
}
