//! What the router's unit tests share: a two-agent floor and walk-in handoffs on it.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime},
};

use handoff_core::id::{ClientUserId, SdkAppId, SessionId};

use crate::{
    engine::{Catalog, Handoff},
    store::Lifetimes,
};

/// App 1400000001: group 6521 with ann (capacity 2) and bob (capacity 3).
pub const TWO_AGENTS: &str = r#"
    [[apps]]
    sdk_app_id = 1400000001
    [[apps.groups]]
    id = 6521
    name = "general"
    [[apps.agents]]
    id = "ann@example.com"
    groups = [6521]
    capacity = 2
    [[apps.agents]]
    id = "bob@example.com"
    groups = [6521]
    capacity = 3
"#;

/// What the fixtures fail with.
pub type Error = Box<dyn std::error::Error>;

/// The app every fixture is for.
pub fn app_id() -> Result<SdkAppId, Error> {
    Ok(SdkAppId::new(1_400_000_001)?)
}

/// [`TWO_AGENTS`] compiled.
pub fn catalog() -> Result<Catalog, Error> {
    let config = handoff_core::config::parse(TWO_AGENTS, Path::new("t.toml"), Vec::new())?;
    Ok(Catalog::from_config(&config, Path::new("t.toml"))?)
}

/// A handoff of `session`, from a customer of its own, at `at`.
pub fn handoff(session: &str, at: SystemTime) -> Result<Handoff, Error> {
    Ok(Handoff {
        app: app_id()?,
        session: SessionId::parse(session)?,
        client_user: ClientUserId::parse(format!("customer-of-{session}"))?,
        event_time: at,
        platform: String::new(),
        channel: String::new(),
        attributes: BTreeMap::new(),
    })
}

/// Reservations held for `ttl`; confirmed sessions for the default eight hours.
pub fn lifetimes(ttl: Duration) -> Lifetimes {
    Lifetimes {
        assignment_ttl: ttl,
        max_session: Duration::from_secs(8 * 3600),
    }
}
