//! Checks across keys that serde alone cannot express: uniqueness, references between
//! sections, and limits that protect the callback's 2-second budget.

use std::{collections::HashSet, time::Duration};

use crate::id::GroupId;

use super::{
    AppConfig, Config, DeskConfig, GatewayConfig, MAX_CANDIDATES, RouterConfig, RuleConfig,
    StoreKind, Strategy, TargetConfig,
};

/// A key and what is wrong with it.
type Fault = (String, String);

/// Tencent fails a callback that gets no answer within this long.
const TENCENT_CALLBACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Paths the gateway serves itself, which the callback path may not take.
const RESERVED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

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
    if router.max_session.get().is_zero() {
        return fault("router.max_session", "must be longer than zero");
    }
    if router.max_concurrent_calls == 0 {
        return fault("router.max_concurrent_calls", "must be at least 1");
    }
    if router.max_event_age.get().is_zero() {
        return fault("router.max_event_age", "must be longer than zero");
    }
    if router.max_connections == 0 {
        return fault("router.max_connections", "must be at least 1");
    }
    for (key, value) in [
        ("router.preface_timeout", router.preface_timeout),
        ("router.idle_timeout", router.idle_timeout),
        ("router.keepalive", router.keepalive),
    ] {
        if value.get().is_zero() {
            return fault(key, "must be longer than zero");
        }
    }
    if router.capacity_margin > 10_000 {
        return fault("router.capacity_margin", "must be at most 10000");
    }
    if let Some(listen) = router.console.listen {
        if router.auth.tokens.is_empty() && !listen.ip().is_loopback() {
            return fault(
                "router.console.listen",
                "with no [router.auth] tokens to sign in with, the console listens on loopback only",
            );
        }
        // Port 0 (any free port) may be asked for every listener.
        if listen.port() != 0 && (Some(listen) == router.metrics_listen || listen == router.listen)
        {
            return fault(
                "router.console.listen",
                "must differ from router.listen and router.metrics_listen",
            );
        }
    }
    if router.console.session_ttl.get() < std::time::Duration::from_secs(60)
        || router.console.session_ttl.get() > std::time::Duration::from_secs(7 * 24 * 3600)
    {
        return fault("router.console.session_ttl", "must be from 1m to 7 days");
    }
    let store = &router.store;
    match store.kind() {
        StoreKind::Redis => {
            let url = store
                .url
                .as_ref()
                .map(|url| url.expose())
                .unwrap_or_default();
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            if url.is_empty()
                || nodes
                    .iter()
                    .any(|n| !(n.starts_with("redis://") || n.starts_with("rediss://")))
            {
                return fault(
                    "router.store.url",
                    "must be a redis:// or rediss:// URL (a comma-separated list with cluster = true)",
                );
            }
            if nodes.len() > 1 && !store.cluster {
                return fault(
                    "router.store.url",
                    "lists several nodes: set cluster = true for a Redis Cluster",
                );
            }
        }
        StoreKind::Embedded if store.path.as_os_str().is_empty() => {
            return fault("router.store.path", "must name the embedded store's file");
        }
        StoreKind::Embedded | StoreKind::Memory => {}
    }
    if store.timeout.get().is_zero() {
        return fault("router.store.timeout", "must be longer than zero");
    }
    if store.tls_cert.is_some() != store.tls_key.is_some() {
        return fault("router.store.tls_cert", "tls_cert and tls_key go together");
    }
    let mut names = HashSet::new();
    let mut tokens = HashSet::new();
    for (index, token) in router.auth.tokens.iter().enumerate() {
        let key = |field: &str| format!("router.auth.tokens[{index}].{field}");
        if token.name.trim().is_empty() || !names.insert(token.name.as_str()) {
            return Err((key("name"), "must be given, once per token".to_owned()));
        }
        if token.token.expose().chars().count() < 16 {
            return Err((key("token"), "must be at least 16 characters".to_owned()));
        }
        if !tokens.insert(token.token.expose()) {
            return Err((key("token"), "is given to another caller too".to_owned()));
        }
        if token.grants.is_empty() {
            return Err((key("grants"), "must grant something".to_owned()));
        }
        for grant in &token.grants {
            let known = grant == "all"
                || super::METHOD_GROUPS
                    .iter()
                    .any(|(group, methods)| group == grant || methods.contains(&grant.as_str()));
            if !known {
                return Err((
                    key("grants"),
                    format!(
                        "{grant:?} is neither decisions, management, all nor a method of the router"
                    ),
                ));
            }
        }
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
    let tls_settings = gateway.router_ca.is_some() || gateway.router_cert.is_some();
    if url.starts_with("http://") && tls_settings {
        return fault(
            "gateway.router_url",
            "is http:// but router_ca or router_cert is set: use https:// for TLS",
        );
    }
    if gateway.router_cert.is_some() != gateway.router_key.is_some() {
        return fault(
            "gateway.router_cert",
            "router_cert and router_key go together",
        );
    }
    let timeout = gateway.router_timeout.get();
    if timeout.is_zero() || timeout >= TENCENT_CALLBACK_TIMEOUT {
        return fault(
            "gateway.router_timeout",
            "must be above zero and below Tencent's 2 s callback timeout",
        );
    }
    let deadline = gateway.deadline.get();
    if deadline.is_zero() || deadline >= TENCENT_CALLBACK_TIMEOUT {
        return fault(
            "gateway.deadline",
            "must be above zero and below Tencent's 2 s callback timeout",
        );
    }
    if timeout > deadline {
        return fault(
            "gateway.router_timeout",
            "must not be longer than gateway.deadline, which it is part of",
        );
    }
    if gateway.header_timeout.get().is_zero() {
        return fault("gateway.header_timeout", "must be longer than zero");
    }
    if gateway.max_connections == 0 {
        return fault("gateway.max_connections", "must be at least 1");
    }
    if gateway.max_in_flight == 0 {
        return fault("gateway.max_in_flight", "must be at least 1");
    }
    for (name, list) in [
        ("allow_from", &gateway.allow_from),
        ("trusted_proxies", &gateway.trusted_proxies),
    ] {
        for (index, network) in list.iter().enumerate() {
            if let Err(message) = network.parse::<crate::net::Cidr>() {
                return Err((format!("gateway.{name}[{index}]"), message));
            }
        }
    }
    if !(8 * 1024..=1024 * 1024).contains(&gateway.max_header_bytes) {
        return fault(
            "gateway.max_header_bytes",
            "must be between 8192 and 1048576",
        );
    }
    if gateway.max_body_bytes < 1024 {
        return fault("gateway.max_body_bytes", "must be at least 1024");
    }
    if gateway.max_clock_skew.get().is_zero() {
        return fault("gateway.max_clock_skew", "must be longer than zero");
    }
    let events = &gateway.session_events;
    let lists = [
        ("assigned", &events.assigned),
        ("transferred", &events.transferred),
        ("failed", &events.failed),
        ("ended", &events.ended),
    ];
    let mut meanings = std::collections::HashMap::new();
    for (meaning, names) in lists {
        for name in names {
            let key = name.trim().to_ascii_lowercase();
            if key.is_empty() {
                return Err((
                    format!("gateway.session_events.{meaning}"),
                    "event names must not be empty".to_owned(),
                ));
            }
            if let Some(other) = meanings
                .insert(key, meaning)
                .filter(|other| *other != meaning)
            {
                return Err((
                    format!("gateway.session_events.{meaning}"),
                    format!("{name:?} is also listed under {other}"),
                ));
            }
        }
    }
    Ok(())
}

fn app(app: &AppConfig, key: &str) -> Result<(), Fault> {
    if app
        .confirm_timeout
        .is_some_and(|timeout| timeout.get().is_zero())
    {
        return Err((
            format!("{key}.confirm_timeout"),
            "must be longer than zero: remove the key to hold reservations for assignment_ttl"
                .to_owned(),
        ));
    }
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
    wrap_up(app.wrap_up, &format!("{key}.wrap_up"))?;
    if app.max_missed > super::MAX_MISSES {
        return Err((
            format!("{key}.max_missed"),
            format!("must be at most {}", super::MAX_MISSES),
        ));
    }
    if let Some(fair) = &app.fair_share {
        if fair.sessions == 0 || fair.sessions > super::MAX_FAIR_SHARE {
            return Err((
                format!("{key}.fair_share.sessions"),
                format!("must be from 1 to {}", super::MAX_FAIR_SHARE),
            ));
        }
        if fair.window.get().is_zero() || fair.window.get() > Duration::from_secs(24 * 3600) {
            return fault(
                &format!("{key}.fair_share.window"),
                "must be above zero and at most 24h",
            );
        }
    }
    if app.park_for.get().is_zero() || app.park_for.get() > Duration::from_secs(24 * 3600) {
        return fault(
            &format!("{key}.park_for"),
            "must be above zero and at most 24h",
        );
    }
    let mut group_ids = HashSet::new();
    for (index, group) in app.groups.iter().enumerate() {
        wrap_up(group.wrap_up, &format!("{key}.groups[{index}].wrap_up"))?;
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
        if group.headroom > super::MAX_HEADROOM {
            return Err((
                format!("{key}.groups[{index}].headroom"),
                format!("must be at most {}", super::MAX_HEADROOM),
            ));
        }
    }
    // With Desk sync, groups may be Desk's alone: `check` compares them with Desk's.
    let desk = app.desk.is_some();
    if let Some(desk) = &app.desk {
        self::desk(desk, &format!("{key}.desk"))?;
    }
    if let Some(id) = app
        .default_group_id
        .filter(|id| !desk && !group_ids.contains(id))
    {
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
        // Capacity, groups, skills and shift are the router's one agent check, shared
        // with UpsertAgent (`Agent::check` in the engine's catalog).
    }
    let mut customer_ids = HashSet::new();
    for (index, customer) in app.customers.iter().enumerate() {
        let customer_key = format!("{key}.customers[{index}]");
        if !customer_ids.insert(&customer.id) {
            return Err((
                format!("{customer_key}.id"),
                format!("customer {} is defined twice", customer.id),
            ));
        }
        if let Some(owner) = &customer.owner
            && !agent_ids.contains(&owner.as_str().to_ascii_lowercase())
        {
            return Err((
                format!("{customer_key}.owner"),
                format!("agent {owner} is not defined in {key}.agents"),
            ));
        }
    }
    rules(app, key, (!desk).then_some(&group_ids))
}

/// The longest wrap-up handoff keeps an agent out (Salesforce allows up to an hour).
const MAX_WRAP_UP: Duration = Duration::from_secs(3600);

fn wrap_up(value: Option<super::ConfigDuration>, key: &str) -> Result<(), Fault> {
    match value {
        Some(value) if value.get() > MAX_WRAP_UP => fault(key, "must be at most 1h"),
        _ => Ok(()),
    }
}

/// The longest a Desk call may be given: a sync round must not stall behind one.
const MAX_DESK_TIMEOUT: Duration = Duration::from_secs(60);

fn desk(desk: &DeskConfig, key: &str) -> Result<(), Fault> {
    let at = |field: &str, message: &str| Err((format!("{key}.{field}"), message.to_owned()));
    match desk.api.split_once("://") {
        Some(("https", host)) if !host.trim_matches('/').is_empty() => {}
        Some(("http", host)) if is_loopback(host) => {}
        Some(("http", _)) => {
            return at(
                "api",
                "is http:// to a host other than loopback: Desk's domains are https://",
            );
        }
        _ => {
            return at(
                "api",
                "must be the region's REST domain, e.g. https://adminapisgp.im.qcloud.com",
            );
        }
    }
    if desk.admin.trim().is_empty() {
        return at("admin", "must name an App admin account");
    }
    if desk.secret_key.expose().trim().is_empty() {
        return at(
            "secret_key",
            "must be the app's secret key (set HANDOFF__APPS__<n>__DESK__SECRET_KEY)",
        );
    }
    if desk.roster_every.get() < Duration::from_secs(1) {
        return at("roster_every", "must be at least 1s");
    }
    if desk.status_every.get() < Duration::from_secs(1) {
        return at("status_every", "must be at least 1s");
    }
    if desk.reconcile_after.get().is_zero() {
        return at("reconcile_after", "must be longer than zero");
    }
    let timeout = desk.timeout.get();
    if timeout.is_zero() || timeout > MAX_DESK_TIMEOUT {
        return at("timeout", "must be above zero and at most 60s");
    }
    if let Some(code) = desk
        .member_status
        .keys()
        .find(|code| code.parse::<i64>().is_err())
    {
        return Err((
            format!("{key}.member_status"),
            format!("{code:?} is not one of Desk's MemberStatus codes (an integer)"),
        ));
    }
    Ok(())
}

/// Whether the host part of a URL (after `://`) is a loopback address.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `group_ids` is `None` when the app's groups may be Desk's, unknown to the file.
fn rules(app: &AppConfig, key: &str, group_ids: Option<&HashSet<GroupId>>) -> Result<(), Fault> {
    let mut names = HashSet::new();
    let last = app.rules.len().saturating_sub(1);
    for (index, rule) in app.rules.iter().enumerate() {
        let rule_key = format!("{key}.rules[{index}]");
        if rule.name.trim().is_empty() {
            return Err((format!("{rule_key}.name"), "must not be empty".to_owned()));
        }
        if !names.insert(rule.name.as_str()) {
            return Err((
                format!("{rule_key}.name"),
                format!("rule {:?} is defined twice", rule.name),
            ));
        }
        if rule.when.is_none() && index != last {
            return Err((
                format!("{rule_key}.when"),
                format!(
                    "rule {:?} has no `when`, so it matches everything: only the last rule may",
                    rule.name
                ),
            ));
        }
        wrap_up(rule.wrap_up, &format!("{rule_key}.wrap_up"))?;
        if rule.candidates == 0 || rule.candidates > MAX_CANDIDATES {
            return Err((
                format!("{rule_key}.candidates"),
                format!("must be from 1 to {MAX_CANDIDATES}"),
            ));
        }
        if rule.weight == 0 || rule.weight > super::MAX_WEIGHT {
            return Err((
                format!("{rule_key}.weight"),
                format!("must be from 1 to {}", super::MAX_WEIGHT),
            ));
        }
        let targets = std::iter::once((rule_key.clone(), rule.target())).chain(
            rule.overflow
                .iter()
                .enumerate()
                .map(|(n, overflow)| (format!("{rule_key}.overflow[{n}]"), overflow.clone())),
        );
        let count = rule.overflow.len() + 1;
        for (n, (target_key, config)) in targets.enumerate() {
            target(&config, &target_key, key, group_ids)?;
            if config.overflow_when.is_some() && n + 1 == count {
                return Err((
                    format!("{target_key}.overflow_when"),
                    "the last target has nothing to overflow to: add an overflow target after it"
                        .to_owned(),
                ));
            }
        }
        group_only_needs_a_group(rule, &rule_key)?;
    }
    Ok(())
}

fn target(
    target: &TargetConfig,
    target_key: &str,
    key: &str,
    group_ids: Option<&HashSet<GroupId>>,
) -> Result<(), Fault> {
    if let Some(group) = target
        .group
        .filter(|group| group_ids.is_some_and(|ids| !ids.contains(group)))
    {
        return Err((
            format!("{target_key}.group"),
            format!("group {group} is not defined in {key}.groups"),
        ));
    }
    if target.strategy == Strategy::MostSkilled && target.skills.is_empty() {
        return Err((
            format!("{target_key}.skills"),
            "most_skilled needs the skills to rank on".to_owned(),
        ));
    }
    if target.tiers.len() > super::MAX_TIERS {
        return Err((
            format!("{target_key}.tiers"),
            format!("at most {} tiers", super::MAX_TIERS),
        ));
    }
    if let Some(when) = &target.overflow_when {
        if when.free_seats_below.is_none() && when.wait_above.is_none() {
            return fault(
                &format!("{target_key}.overflow_when"),
                "needs free_seats_below or wait_above",
            );
        }
        if when.free_seats_below == Some(0) {
            return fault(
                &format!("{target_key}.overflow_when.free_seats_below"),
                "must be at least 1 (0 seats free is never below it)",
            );
        }
        if when
            .wait_above
            .is_some_and(|wait| wait.get().is_zero() || wait.get() > Duration::from_secs(3600))
        {
            return fault(
                &format!("{target_key}.overflow_when.wait_above"),
                "must be above zero and at most 1h",
            );
        }
    }
    Ok(())
}

fn group_only_needs_a_group(rule: &RuleConfig, rule_key: &str) -> Result<(), Fault> {
    if rule.group_only && rule.group.is_none() {
        return Err((
            format!("{rule_key}.group"),
            "group_only needs a group to answer".to_owned(),
        ));
    }
    Ok(())
}

fn fault(key: &str, message: &str) -> Result<(), Fault> {
    Err((key.to_owned(), message.to_owned()))
}
