//! Where the router's mutable state lives: agents' live load, and the assignment of each
//! session (which is also what a retried AssignHuman replays).
//!
//! Everything mutable goes through [`Store`], so the engine stays pure and a durable or
//! shared backend can replace [`MemoryStore`] without touching the engine or the gRPC layer.

mod memory;

use std::{future::Future, time::SystemTime};

use handoff_core::id::{SdkAppId, SessionId};

pub use memory::MemoryStore;

use crate::engine::{Answer, Decision, LoadView};

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
    /// Assigns `session` of `app` atomically: replays its live assignment if it has one;
    /// otherwise runs `decide` over the agents' current load and reserves capacity on the
    /// first candidate still below capacity, so concurrent calls never push an agent over.
    fn assign<F>(
        &self,
        app: SdkAppId,
        session: &SessionId,
        now: SystemTime,
        decide: F,
    ) -> impl Future<Output = Result<Assignment, StoreError>> + Send
    where
        F: FnOnce(&dyn LoadView) -> Decision + Send;
}
