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
pub mod record;
mod redis;
pub mod session;
#[cfg(test)]
mod session_tests;
pub mod snapshot;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

use handoff_core::{
    config::{AgentStatus, RouterConfig, StoreKind},
    id::{AgentId, ClientUserId},
};

pub use self::redis::RedisStore;
pub use local::LocalStore;
pub use session::{SessionEvent, SessionEventKind};

use crate::engine::{
    Agent, Answer, App, Catalog, Customer, Decision, Handoff, StateView, desk::DeskDelta,
};

/// How long a report's identity is remembered to recognise its retries.
pub const DEDUP_WINDOW: Duration = Duration::from_secs(3600);

/// How many report identities an app remembers at most; past it the oldest is forgotten
/// first, so a flood of distinct reports costs bounded memory (each is 32 bytes of digest
/// and its place in the table and the forgetting order).
pub const MAX_SEEN: usize = 100_000;

/// How long sessions hold seats, from `[router]`; an app's `confirm_timeout` shortens the
/// first for its own reservations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// How long an unconfirmed reservation holds its seat.
    pub assignment_ttl: Duration,
    /// How long a confirmed session holds its seat without an end, and how long an ended
    /// one is remembered.
    pub max_session: Duration,
}

impl Lifetimes {
    /// The lifetimes `[router]` sets.
    pub fn of(config: &RouterConfig) -> Self {
        Self {
            assignment_ttl: config.assignment_ttl.get(),
            max_session: config.max_session.get(),
        }
    }

    /// How long a reservation of `app` holds its seat unconfirmed.
    pub fn hold(&self, app: &App) -> Duration {
        app.confirm_timeout.unwrap_or(self.assignment_ttl)
    }
}

/// What [`Store::inspect`] should read besides loads, statuses and the roster.
#[derive(Debug, Clone, Copy, Default)]
pub struct Look<'a> {
    /// The customer the reader may look up (their record and previous agent).
    pub customer: Option<&'a ClientUserId>,
    /// Whether the reader wants the sessions that hold seats.
    pub sessions: bool,
}

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
        self.parts().0
    }

    /// The answer, and whether it is a retry's, replayed.
    pub fn parts(&self) -> (&Answer, bool) {
        match self {
            Assignment::Fresh(answer) => (answer, false),
            Assignment::Replayed(answer) => (answer, true),
        }
    }
}

/// How often the router forgets an app's previous agents past `sticky_ttl` (sending
/// [`Change::ForgetLinks`]): half of it, between a second and a minute.
pub fn forget_round(sticky_ttl: std::time::Duration) -> std::time::Duration {
    (sticky_ttl / 2).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    )
}

/// A change to an app's state other than an assignment.
#[derive(Debug, Clone)]
pub enum Change {
    /// Sets an agent's live status, overriding its definition, unless a status reported
    /// later (by `at`) is already known.
    SetStatus {
        /// The agent, by its e-mail id.
        agent: AgentId,
        /// Its status from then on.
        status: AgentStatus,
        /// When the status was set, by the reporter's clock.
        at: SystemTime,
        /// The report's identity, for recognising retries.
        id: Option<String>,
        /// Whether the Desk sync sets it (else a caller of the API).
        desk: bool,
    },
    /// Adds or replaces an agent's definition; its live status, if any, is dropped.
    PutAgent(Arc<Agent>),
    /// Removes an agent, whether the config file or a [`Change::PutAgent`] defined it.
    RemoveAgent(AgentId),
    /// Adds or replaces what is known of a customer.
    PutCustomer(Customer),
    /// Records what happened to a session: confirms, moves or releases its seat.
    Session(SessionEvent),
    /// What a roster sync read from Desk that differs from what the store holds: members
    /// added, changed or gone, and Desk's groups (the router then releases the seats of
    /// members gone, as [`SessionEventKind::Reconciled`] events).
    /// From the first, Desk decides who is on the app's floor (see
    /// [`crate::engine::desk::compose`]).
    DeskRoster(DeskDelta),
    /// Desk's own count of the sessions each member serves now (`CurrentAcceptCnt`), from
    /// a status poll: whatever it counts beyond the seats the store holds for the member
    /// then occupies capacity as unattributed load, until the next poll says otherwise.
    /// Members it does not list carry none.
    DeskLoad(Vec<(AgentId, u32)>),
    /// Forgets customers' previous agents linked before `before` (the router sends it for
    /// links past the app's `sticky_ttl`, which route nobody any more), so that history
    /// does not grow with every customer ever served.
    ForgetLinks {
        /// Links recorded before this (by the router's clock) are forgotten.
        before: SystemTime,
    },
}

impl Change {
    /// The identity a report is remembered by, to recognise its retries: the reporter's id
    /// (Tencent's `RequestID`) together with what the report says (kind, session, agent,
    /// time), digested, so that a different report reusing an id is never taken for a
    /// retry of the first. `None` for a report without an id and for other changes.
    pub fn identity(&self) -> Option<String> {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        let mut part = |bytes: &[u8]| {
            digest.update((bytes.len() as u64).to_le_bytes());
            digest.update(bytes);
        };
        match self {
            Change::SetStatus {
                agent,
                status,
                at,
                id: Some(id),
                ..
            } => {
                part(b"status");
                part(id.as_bytes());
                part(agent.as_str().as_bytes());
                part(status.as_str().as_bytes());
                part(&record::to_ms(*at).to_le_bytes());
            }
            Change::Session(event) => {
                let id = event.id.as_ref()?;
                part(b"session");
                part(id.as_bytes());
                part(event.session.as_str().as_bytes());
                part(event.kind.as_str().as_bytes());
                part(event.agent.as_ref().map_or("", AgentId::as_str).as_bytes());
                part(
                    event
                        .from_agent
                        .as_ref()
                        .map_or("", AgentId::as_str)
                        .as_bytes(),
                );
                part(&record::to_ms(event.at).to_le_bytes());
            }
            _ => return None,
        }
        Some(hex::encode(&digest.finalize()[..16]))
    }
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// It was recorded.
    Recorded,
    /// The same report (by its identity) was recorded before: nothing changed.
    Duplicate,
    /// Something reported later is already known: nothing changed.
    Superseded,
    /// The report is dated outside what the router believes (`[router] max_event_age`,
    /// `max_clock_skew`): ignored.
    Implausible,
    /// The report names an agent the app does not have: it seats nobody (a seat the
    /// session held is released).
    UnknownAgent,
    /// A session the router did not reserve would load its agent past capacity plus
    /// `[router] capacity_margin`: not counted.
    OverCapacity,
}

impl Applied {
    /// The name logs and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Recorded => "recorded",
            Applied::Duplicate => "duplicate",
            Applied::Superseded => "superseded",
            Applied::Implausible => "implausible",
            Applied::UnknownAgent => "unknown_agent",
            Applied::OverCapacity => "over_capacity",
        }
    }
}

/// The router's mutable state. Every method takes the app as the catalog has it now, so a
/// store never keeps its own copy of anything a reload can change.
pub trait Store: Send + Sync + 'static {
    /// Assigns `handoff`'s session atomically: replays its answer while the seat it took is
    /// held; otherwise runs `decide` over the current state and reserves a seat on the first
    /// candidate still below capacity, so concurrent calls never push an agent over, and
    /// remembers the agent as the customer's previous one. The reservation is provisional
    /// until a session event confirms it. A store may run `decide` more than once (Redis
    /// decides again when the state it decided over was behind): the last decision is the
    /// one reserved.
    fn assign<F>(
        &self,
        app: &App,
        handoff: &Handoff,
        now: SystemTime,
        decide: F,
    ) -> impl Future<Output = Result<Assignment, StoreError>> + Send
    where
        F: FnMut(&dyn StateView) -> Decision + Send;

    /// Runs `read` over the current state of `app` without changing anything but what time
    /// has released; `look` says what `read` needs beyond loads, statuses and the roster.
    fn inspect<F, R>(
        &self,
        app: &App,
        look: Look<'_>,
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
    ) -> impl Future<Output = Result<Applied, StoreError>> + Send;

    /// Whether the store can serve now (the health check's answer): it can be reached,
    /// and what it acknowledges is durable.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The bytes of the store's journal on disk, for a store that keeps one.
    fn journal_bytes(&self) -> Option<u64> {
        None
    }

    /// Whether `holder` holds `app`'s lease on `job` for the next `ttl` (taking it when
    /// nobody does, or renewing its own): what makes one replica of several do a job such
    /// as syncing with Desk. A store in one process has one holder, who always has it.
    fn lease(
        &self,
        app: &App,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let _ = (app, job, holder, ttl);
        std::future::ready(Ok(true))
    }
}

/// The store `[router.store]` chose.
#[derive(Debug)]
pub enum AnyStore {
    /// In this process, journaled to a redb file (`embedded`) or not (`memory`).
    Local(LocalStore),
    /// Shared in Redis (boxed: its scripts and connection make it the larger by far).
    Redis(Box<RedisStore>),
}

impl AnyStore {
    /// Opens the store `config` names: reads the embedded file back, or connects to Redis.
    pub async fn open(
        config: &RouterConfig,
        catalog: &Catalog,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let lifetimes = Lifetimes::of(config);
        Ok(match config.store.kind() {
            StoreKind::Memory => AnyStore::Local(LocalStore::in_memory(lifetimes)),
            StoreKind::Embedded => AnyStore::Local(LocalStore::embedded(
                &config.store.path,
                lifetimes,
                catalog,
                now,
            )?),
            StoreKind::Redis => AnyStore::Redis(Box::new(
                RedisStore::connect(&config.store, lifetimes).await?,
            )),
        })
    }
}

impl Store for AnyStore {
    async fn assign<F>(
        &self,
        app: &App,
        handoff: &Handoff,
        now: SystemTime,
        decide: F,
    ) -> Result<Assignment, StoreError>
    where
        F: FnMut(&dyn StateView) -> Decision + Send,
    {
        match self {
            AnyStore::Local(store) => store.assign(app, handoff, now, decide).await,
            AnyStore::Redis(store) => store.assign(app, handoff, now, decide).await,
        }
    }

    async fn inspect<F, R>(
        &self,
        app: &App,
        look: Look<'_>,
        now: SystemTime,
        read: F,
    ) -> Result<R, StoreError>
    where
        F: FnOnce(&dyn StateView) -> R + Send,
        R: Send,
    {
        match self {
            AnyStore::Local(store) => store.inspect(app, look, now, read).await,
            AnyStore::Redis(store) => store.inspect(app, look, now, read).await,
        }
    }

    async fn apply(
        &self,
        app: &App,
        change: Change,
        now: SystemTime,
    ) -> Result<Applied, StoreError> {
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

    fn journal_bytes(&self) -> Option<u64> {
        match self {
            AnyStore::Local(store) => store.journal_bytes(),
            AnyStore::Redis(store) => store.journal_bytes(),
        }
    }

    async fn lease(
        &self,
        app: &App,
        job: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            AnyStore::Local(store) => store.lease(app, job, holder, ttl).await,
            AnyStore::Redis(store) => store.lease(app, job, holder, ttl).await,
        }
    }
}
