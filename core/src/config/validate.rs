//! Checks across keys that serde alone cannot express: uniqueness, references between
//! sections, and limits that protect the callback's 2-second budget.

use std::{collections::HashSet, time::Duration};

use super::{AppConfig, Config, GatewayConfig, RouterConfig};

/// A key and what is wrong with it.
type Fault = (String, String);

/// Tencent fails a callback that gets no answer within this long.
const TENCENT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Paths the gateway serves itself, which the callback path may not take.
const RESERVED_PATHS: [&str; 2] = ["/healthz", "/readyz"];

pub(super) fn config(config: &Config) -> Result<(), Fault> {
    router(&config.router)?;
    gateway(&config.gateway)?;
    let mut app_ids = HashSet::new();
    for (index, app) in config.apps.iter().enumerate() {
        let key = format!("apps[{index}]");
        if !app_ids.insert(app.sdk_app_id) {
            return Err((
                format!("{key}.sdk_app_id"),
                format!("app {} is configured twice", app.sdk_app_id),
            ));
        }
        self::app(app, &key)?;
    }
    Ok(())
}

fn router(router: &RouterConfig) -> Result<(), Fault> {
    if router.assignment_ttl.get().is_zero() {
        return fault("router.assignment_ttl", "must be longer than zero");
    }
    Ok(())
}

fn gateway(gateway: &GatewayConfig) -> Result<(), Fault> {
    if !gateway.path.starts_with('/') {
        return fault("gateway.path", "must start with /");
    }
    if RESERVED_PATHS.contains(&gateway.path.as_str()) {
        return fault(
            "gateway.path",
            "is reserved for the gateway's health checks",
        );
    }
    let url = &gateway.router_url;
    let host = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    if host.is_none_or(str::is_empty) {
        return fault("gateway.router_url", "must be an http:// or https:// URL");
    }
    let timeout = gateway.router_timeout.get();
    if timeout.is_zero() || timeout >= TENCENT_CALLBACK_TIMEOUT {
        return fault(
            "gateway.router_timeout",
            "must be above zero and below Tencent's 2 s callback timeout",
        );
    }
    if gateway.max_body_bytes < 1024 {
        return fault("gateway.max_body_bytes", "must be at least 1024");
    }
    if gateway.max_clock_skew.get().is_zero() {
        return fault("gateway.max_clock_skew", "must be longer than zero");
    }
    Ok(())
}

fn app(app: &AppConfig, key: &str) -> Result<(), Fault> {
    if app
        .token
        .as_ref()
        .is_some_and(|token| token.expose().is_empty())
    {
        return Err((
            format!("{key}.token"),
            "must not be empty: remove the key to turn callback authentication off".to_owned(),
        ));
    }
    let mut group_ids = HashSet::new();
    for (index, group) in app.groups.iter().enumerate() {
        if !group_ids.insert(group.id) {
            return Err((
                format!("{key}.groups[{index}].id"),
                format!("group {} is defined twice", group.id),
            ));
        }
        if group.name.trim().is_empty() {
            return Err((
                format!("{key}.groups[{index}].name"),
                "must not be empty".to_owned(),
            ));
        }
    }
    if let Some(id) = app.default_group_id.filter(|id| !group_ids.contains(id)) {
        return Err((
            format!("{key}.default_group_id"),
            format!("group {id} is not defined in {key}.groups"),
        ));
    }
    let mut agent_ids = HashSet::new();
    for (index, agent) in app.agents.iter().enumerate() {
        let agent_key = format!("{key}.agents[{index}]");
        if !agent_ids.insert(agent.id.as_str().to_ascii_lowercase()) {
            return Err((
                format!("{agent_key}.id"),
                format!("agent {} is defined twice", agent.id),
            ));
        }
        if agent.capacity == 0 {
            return Err((
                format!("{agent_key}.capacity"),
                "must be at least 1".to_owned(),
            ));
        }
        if agent.groups.is_empty() {
            return Err((
                format!("{agent_key}.groups"),
                "must name at least one group".to_owned(),
            ));
        }
        if let Some(unknown) = agent.groups.iter().find(|id| !group_ids.contains(*id)) {
            return Err((
                format!("{agent_key}.groups"),
                format!("group {unknown} is not defined in {key}.groups"),
            ));
        }
    }
    Ok(())
}

fn fault(key: &str, message: &str) -> Result<(), Fault> {
    Err((key.to_owned(), message.to_owned()))
}
