//! The router as an application: looks up the app, asks the store to assign the session
//! with the engine's decision, and logs what it decided. Knows nothing of gRPC.

use std::{sync::Arc, time::SystemTime};

use handoff_core::Config;

use crate::{
    engine::{self, Catalog, Handoff},
    error::RouterError,
    store::{Assignment, MemoryStore, Store},
};

/// The router's source of time, injectable so that tests control it.
pub trait Clock: Send + Sync + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The routing service: catalog, store and clock.
pub struct Router<S> {
    catalog: Arc<Catalog>,
    store: S,
    clock: Arc<dyn Clock>,
}

impl Router<MemoryStore> {
    /// A router over `config`'s apps with in-memory state and the system clock.
    pub fn from_config(config: &Config) -> Self {
        Router::new(
            Catalog::from_config(config),
            MemoryStore::new(config.router.assignment_ttl.get()),
            Arc::new(SystemClock),
        )
    }
}

impl<S: Store> Router<S> {
    /// A router over `catalog`, keeping state in `store`, reading time from `clock`.
    pub fn new(catalog: Catalog, store: S, clock: Arc<dyn Clock>) -> Self {
        Self {
            catalog: Arc::new(catalog),
            store,
            clock,
        }
    }

    /// The router's current time.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The store behind the router.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decides who takes `handoff` and reserves capacity for it.
    pub async fn assign(&self, handoff: &Handoff) -> Result<Assignment, RouterError> {
        let app = self
            .catalog
            .app(handoff.app)
            .ok_or(RouterError::UnknownApp(handoff.app))?;
        if app.target_group().is_none() && app.fallback_group().is_none() {
            return Err(RouterError::NoRoute(handoff.app));
        }
        let now = self.clock.now();
        let assignment = self
            .store
            .assign(app.id, &handoff.session, now, |loads| {
                engine::decide(app, handoff, loads, now)
            })
            .await?;
        let replayed = matches!(assignment, Assignment::Replayed(_));
        let answer = assignment.answer();
        tracing::info!(
            app = %handoff.app,
            session = %handoff.session,
            rule = %answer.rule,
            group = answer.group.map(|g| g.get()),
            agents = answer.agents.len(),
            reserved = answer.reserved.as_ref().map(|a| a.as_str()),
            fallback = answer.fallback,
            replayed,
            "assigned"
        );
        Ok(assignment)
    }
}
