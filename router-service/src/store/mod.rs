//! Where the router's mutable state lives: agents' live load and status, agents added or
//! changed at run time, customers pushed by internal systems, each customer's previous
//! agent, and the assignment of each session (which is also what a retried AssignHuman
//! replays).
//!
//! Everything mutable goes through [`Store`]: decisions through [`Store::assign`], every
//! other change as a [`Change`] through [`Store::apply`], so the engine stays pure and a new
//! kind of change is a new variant and an arm in each store's `apply`. [`LocalStore`] keeps
//! state in this process (journaled to a redb file by [`embedded`] when it is the
//! `embedded` store), [`RedisStore`] shares it between replicas; [`record`] is what both
//! keep on disk.

mod embedded;
mod local;
mod record;
mod redis;

use std::{future::Future, sync::Arc, time::SystemTime};

use handoff_core::{
    config::{AgentStatus, RouterConfig, StoreKind},
    id::{AgentId, ClientUserId, SessionId},
};

pub use self::redis::RedisStore;
pub use local::LocalStore;

use crate::engine::{Agent, Answer, App, Catalog, Customer, Decision, StateView};

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

/// A change to an app's state other than an assignment.
#[derive(Debug, Clone)]
pub enum Change {
    /// Sets an agent's live status, overriding its definition.
    SetStatus {
        /// The agent.
        agent: AgentId,
        /// Its status from now on.
        status: AgentStatus,
    },
    /// Adds or replaces an agent's definition; its live status, if any, is dropped.
    PutAgent(Arc<Agent>),
    /// Removes an agent, whether the config file or a [`Change::PutAgent`] defined it.
    RemoveAgent(AgentId),
    /// Adds or replaces what is known of a customer.
    PutCustomer(Customer),
}

/// The router's mutable state. Every method takes the app as the catalog has it now, so a
/// store never keeps its own copy of anything a reload can change.
pub trait Store: Send + Sync + 'static {
    /// Assigns `session` of `app`, asked for by `customer`, atomically: replays its live
    /// assignment if it has one; otherwise runs `decide` over the current state and reserves
    /// capacity on the first candidate still below capacity, so concurrent calls never push
    /// an agent over, and remembers the agent as the customer's previous one.
    fn assign<F>(
        &self,
        app: &App,
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
        app: &App,
        customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> impl Future<Output = Result<R, StoreError>> + Send
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send;

    /// Makes `change` to `app`'s state; once it returns `Ok` the change is as durable as the
    /// store is.
    fn apply(
        &self,
        app: &App,
        change: Change,
        now: SystemTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether the store can serve now (the health check's answer).
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The store `[router.store]` chose.
#[derive(Debug)]
pub enum AnyStore {
    /// In this process, journaled to a redb file (`embedded`) or not (`memory`).
    Local(LocalStore),
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
            StoreKind::Memory => AnyStore::Local(LocalStore::in_memory(ttl)),
            StoreKind::Embedded => {
                AnyStore::Local(LocalStore::embedded(&config.store.path, ttl, catalog, now)?)
            }
            StoreKind::Redis => AnyStore::Redis(RedisStore::connect(&config.store, ttl).await?),
        })
    }
}

impl Store for AnyStore {
    async fn assign<F>(
        &self,
        app: &App,
        customer: &ClientUserId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnOnce(&dyn StateView) -> Decision + Send,
    {
        match self {
            AnyStore::Local(store) => store.assign(app, customer, session, now, decide).await,
            AnyStore::Redis(store) => store.assign(app, customer, session, now, decide).await,
        }
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
        customer: Option<&ClientUserId>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        match self {
            AnyStore::Local(store) => store.inspect(app, customer, now, read).await,
            AnyStore::Redis(store) => store.inspect(app, customer, now, read).await,
        }
    }

    async fn apply(&self, app: &App, change: Change, now: SystemTime) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(store) => store.apply(app, change, now).await,
            AnyStore::Redis(store) => store.apply(app, change, now).await,
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        match self {
            AnyStore::Local(store) => store.ping().await,
            AnyStore::Redis(store) => store.ping().await,
        }
    }
}
