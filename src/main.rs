//! `handoff --config FILE`: the router and the gateway in one process, for trying handoff
//! out and for small deployments. The separate `handoff-router` and `handoff-gateway`
//! binaries are the production shape; this one only wires them together.
//!
//! The gateway talks gRPC to its own router over loopback, whatever `[gateway] router_url`
//! says. Both take a changed file on change and SIGHUP (the gateway only what the router
//! accepted). On SIGINT or SIGTERM the gateway stops first and drains, then the router.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use anyhow::Context;
use handoff_core::{cli, reload, shutdown, telemetry};
use handoff_gateway::Gateway;
use handoff_router::{Router, engine::Catalog};
use tokio::{net::TcpListener, sync::watch};

const ABOUT: &str = "the handoff router and its Tencent gateway in one process";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("handoff: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let compile = |config: &_, path: &_| Catalog::from_config(config, path).map(drop);
    let Some(started) = cli::start("handoff", ABOUT, compile)? else {
        return Ok(());
    };
    let mut config = started.config;
    telemetry::init();
    let router_listener = TcpListener::bind(config.router.listen)
        .await
        .with_context(|| format!("binding the router to {}", config.router.listen))?;
    let router_addr = dialable(router_listener.local_addr()?);
    config.gateway.router_url = format!("http://{router_addr}");
    let gateway = Arc::new(Gateway::from_config(&config)?);
    let gateway_listener = TcpListener::bind(config.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", config.gateway.listen))?;
    tracing::info!(
        router = %router_addr,
        gateway = %gateway_listener.local_addr()?,
        path = %config.gateway.path,
        apps = config.apps.len(),
        "handoff listening"
    );

    let (stop_gateway, gateway_stop) = watch::channel(false);
    let (stop_router, router_stop) = watch::channel(false);
    let routing = Arc::new(Router::open(&config, &started.path).await?);
    let (reloading_router, reloading_gateway) = (routing.clone(), gateway.clone());
    let reloader = tokio::spawn(reload::watch(
        started.path.clone(),
        started.env.clone(),
        stopped(router_stop.clone()),
        // The router compiles the new file first; the gateway takes it only if it did.
        move |config, origin| {
            reloading_router.reload(config, origin)?;
            reloading_gateway.reload(config)
        },
    ));
    let mut router = tokio::spawn(handoff_router::serve(
        router_listener,
        routing,
        config.router.shutdown_grace.get(),
        stopped(router_stop),
    ));
    let mut gateway = tokio::spawn(handoff_gateway::serve(
        gateway_listener,
        gateway,
        config.gateway.shutdown_grace.get(),
        stopped(gateway_stop),
    ));

    tokio::select! {
        () = shutdown::signal() => {}
        result = &mut router => {
            let _ = stop_gateway.send(true);
            let _ = gateway.await;
            result.context("router task")??;
            anyhow::bail!("the router stopped on its own");
        }
        result = &mut gateway => {
            let _ = stop_router.send(true);
            let _ = router.await;
            result.context("gateway task")??;
            anyhow::bail!("the gateway stopped on its own");
        }
    }
    let _ = stop_gateway.send(true);
    gateway.await.context("gateway task")??;
    let _ = stop_router.send(true);
    router.await.context("router task")??;
    let _ = reloader.await;
    tracing::info!("handoff stopped");
    Ok(())
}

/// Resolves when `flag` turns true (or its sender is gone).
async fn stopped(mut flag: watch::Receiver<bool>) {
    let _ = flag.wait_for(|stop| *stop).await;
}

/// The address to dial for a listener: loopback when it is bound to every interface.
fn dialable(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}
