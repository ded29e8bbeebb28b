//! Where the router's mutable state lives: agents' live load and status, agents added or
//! changed at run time, customers pushed by internal systems, each customer's previous
//! agent, and the assignment of each session (which is also what a retried AssignHuman
//! replays).
//!
//! Everything mutable goes through [`Store`], so the engine stays pure and a durable or
//! shared backend can replace [`MemoryStore`] without touching the engine or the gRPC layer.

mod embedded;
mod memory;
mod redis;

use std::{future::Future, sync::Arc, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

pub use self::redis::RedisStore;
pub use memory::MemoryStore;

use handoff_core::config::{RouterConfig, StoreKind};

use crate::engine::{Agent, Answer, Catalog, Customer, Decision, StateView};

/// The store could not do its part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached now; the caller should fall back.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// How a session's assignment came about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Decided now.
    Fresh(Answer),
    /// The session already had a live assignment: this is its answer again, counted once.
    Replayed(Answer),
}

impl Assignment {
    /// The answer, fresh or replayed.
    pub fn answer(&self) -> &Answer {
        match self {
            Assignment::Fresh(answer) | Assignment::Replayed(answer) => answer,
        }
    }
}

/// The router's mutable state.
pub trait Store: Send + Sync + 'static {
    /// Assigns `session` of `app`, asked for by `customer`, atomically: replays its live
    /// assignment if it has one; otherwise runs `decide` over the current state and reserves
    /// capacity on the first candidate still below capacity, so concurrent calls never push
    /// an agent over, and remembers the agent as the customer's previous one.
    fn assign<F>(
        &self,
        app: SdkAppId,
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> impl Future<Output = Result<Assignment, StoreError>> + Send
    where
        F: FnOnce(&dyn StateView) -> Decision + Send;

    /// Runs `read` over the current state of `app` without changing anything; `customer`
    /// is the customer `read` may look up, if any.
    fn inspect<F, R>(
        &self,
        app: SdkAppId,
        customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send;

    /// Sets an agent's live status, overriding its definition.
    fn set_status(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        status: AgentStatus,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Adds or replaces an agent's definition; its live status, if any, is dropped.
    fn upsert_agent(
        &self,
        app: SdkAppId,
        agent: Arc<Agent>,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes an agent, whether the config file or an upsert defined it.
    fn remove_agent(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store can serve now (the health check's answer).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Adds or replaces what is known of a customer.
    fn upsert_customer(
        &self,
        app: SdkAppId,
        customer: Customer,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store `[router.store]` chose.
#[derive(Debug)]
pub enum AnyStore {
    /// In memory, journaled to a redb file (`embedded`) or not (`memory`).
    Local(MemoryStore),
    /// Shared in Redis.
    Redis(RedisStore),
}

impl AnyStore {
    /// Opens the store `config` names: reads the embedded file back, or connects to Redis.
    pub async fn open(
        config: &RouterConfig,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let ttl = config.assignment_ttl.get();
        Ok(match config.store.kind() {
            StoreKind::Memory => AnyStore::Local(MemoryStore::new(ttl)),
            StoreKind::Embedded => {
                AnyStore::Local(MemoryStore::open(&config.store.path, ttl, catalog, now)?)
            }
            StoreKind::Redis => {
                AnyStore::Redis(RedisStore::connect(&config.store, ttl, catalog).await?)
            }
        })
    }
}

/// Forwards a [`Store`] call to whichever store this is.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Local($store) => $call.await,
            AnyStore::Redis($store) => $call.await,
        }
    };
}

impl Store for AnyStore {
    async fn assign<F>(
        &self,
        app: SdkAppId,
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        forward!(self, store => store.assign(app, customer, session, now, decide))
    }

    async fn inspect<F, R>(
        &self,
        app: SdkAppId,
        customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        forward!(self, store => store.inspect(app, customer, now, read))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        forward!(self, store => store.ping())
    }

    async fn set_status(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        status: AgentStatus,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.set_status(app, agent, status, now))
    }

    async fn upsert_agent(
        &self,
        app: SdkAppId,
        agent: Arc<Agent>,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.upsert_agent(app, agent, now))
    }

    async fn remove_agent(
        &self,
        app: SdkAppId,
        agent: &AgentId,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.remove_agent(app, agent, now))
    }

    async fn upsert_customer(
        &self,
        app: SdkAppId,
        customer: Customer,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        forward!(self, store => store.upsert_customer(app, customer, now))
    }
}
