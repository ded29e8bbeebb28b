//! Who may take a session, and in which order.

use std::{cmp::Ordering, time::SystemTime};

use handoff_core::{config::AgentStatus, id::AgentId};

use super::{Agent, Candidate, Exclusion};

/// An agent's live load, as the store counts it from the router's own assignments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLoad {
    /// Sessions currently assigned to the agent.
    pub active: u32,
    /// When the agent was last assigned a session; `None` if never.
    pub last_assigned: Option<SystemTime>,
}

/// Read access to the agents' live load.
pub trait LoadView {
    /// The load of `agent`; an agent the store has never seen has none.
    fn load(&self, agent: &AgentId) -> AgentLoad;
}

/// Whether `agent`, carrying `load`, may be offered a session.
pub(super) fn eligibility(agent: &Agent, load: AgentLoad) -> Result<(), Exclusion> {
    match agent.status {
        AgentStatus::Available => {}
        AgentStatus::Away => return Err(Exclusion::Away),
        AgentStatus::Offline => return Err(Exclusion::Offline),
    }
    if load.active >= agent.capacity {
        return Err(Exclusion::AtCapacity {
            active: load.active,
            capacity: agent.capacity,
        });
    }
    Ok(())
}

/// Orders `candidates` fewest active sessions relative to capacity first; ties go to the
/// agent idle longest (never assigned counts as longest), then to config order.
pub(super) fn least_loaded(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| {
        load_ratio(a, b)
            .then_with(|| idle_order(a.last_assigned, b.last_assigned))
            .then_with(|| a.position.cmp(&b.position))
    });
}

/// Compares `a.active / a.capacity` with `b.active / b.capacity` exactly, in integers.
fn load_ratio(a: &Candidate, b: &Candidate) -> Ordering {
    let left = u64::from(a.active) * u64::from(b.capacity);
    let right = u64::from(b.active) * u64::from(a.capacity);
    left.cmp(&right)
}

/// Earlier last assignment (longer idle) first; never assigned before everyone.
fn idle_order(a: Option<SystemTime>, b: Option<SystemTime>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => a.cmp(&b),
    }
}
