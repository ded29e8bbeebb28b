//! What the engine decided and why, and the answer that goes back to the caller.

use std::{fmt, time::SystemTime};

use handoff_core::id::{AgentId, GroupId};

use super::{AgentLoad, DEFAULT_RULE, Group, catalog::Agent};

/// How a rule ranks the eligible agents of its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Fewest active sessions relative to capacity first; ties to the longest idle.
    LeastLoaded,
}

impl Strategy {
    /// The strategy's name as configs and logs spell it.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::LeastLoaded => "least_loaded",
        }
    }
}

/// An eligible agent, with what the ranking looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The agent.
    pub agent: AgentId,
    /// The agent's capacity.
    pub capacity: u32,
    /// Sessions the agent had when the decision was made.
    pub active: u32,
    /// When the agent was last assigned a session.
    pub last_assigned: Option<SystemTime>,
    /// The agent's place in the app's config: the last tie-break.
    pub(super) position: usize,
}

impl Candidate {
    pub(super) fn new(agent: &Agent, position: usize, load: AgentLoad) -> Self {
        Self {
            agent: agent.id.clone(),
            capacity: agent.capacity,
            active: load.active,
            last_assigned: load.last_assigned,
            position,
        }
    }
}

/// Why an agent of the target was not offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exclusion {
    /// Signed in but not taking sessions.
    Away,
    /// Signed out.
    Offline,
    /// Already carrying as many sessions as allowed.
    AtCapacity {
        /// Sessions the agent has.
        active: u32,
        /// Sessions the agent may have.
        capacity: u32,
    },
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::Away => f.write_str("away"),
            Exclusion::Offline => f.write_str("offline"),
            Exclusion::AtCapacity { active, capacity } => {
                write!(f, "at capacity ({active}/{capacity})")
            }
        }
    }
}

/// An agent left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The agent.
    pub agent: AgentId,
    /// Why it was left out.
    pub reason: Exclusion,
}

/// A routing decision with its explanation, before the store reserves capacity for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The rule that produced it.
    pub rule: String,
    /// The ranking applied, if any.
    pub strategy: Option<Strategy>,
    /// The group to answer.
    pub group: Option<GroupId>,
    /// Eligible agents, best first.
    pub candidates: Vec<Candidate>,
    /// Agents of the target left out, with the reason.
    pub excluded: Vec<Excluded>,
    /// Whether no agent could be ranked.
    pub fallback: bool,
    /// One line for people.
    pub reason: String,
}

impl Decision {
    /// The app has no group to target: answer its fallback group, if any.
    pub(super) fn no_target(fallback: Option<GroupId>) -> Self {
        let reason = match fallback {
            Some(group) => format!("the app has no target group; answered fallback group {group}"),
            None => "the app has no target group and no fallback group".to_owned(),
        };
        Self {
            rule: DEFAULT_RULE.to_owned(),
            strategy: None,
            group: fallback,
            candidates: Vec::new(),
            excluded: Vec::new(),
            fallback: true,
            reason,
        }
    }

    /// The agents of `group` were ranked with `strategy`.
    pub(super) fn ranked(
        group: &Group,
        strategy: Strategy,
        candidates: Vec<Candidate>,
        excluded: Vec<Excluded>,
    ) -> Self {
        let total = candidates.len() + excluded.len();
        let fallback = candidates.is_empty();
        let reason = if fallback {
            format!(
                "group {} ({}): no eligible agent of {total} ({}); answered the group alone",
                group.id,
                group.name,
                summarize(&excluded)
            )
        } else {
            format!(
                "group {} ({}): {} of {total} agents eligible, ranked {}",
                group.id,
                group.name,
                candidates.len(),
                strategy.name()
            )
        };
        Self {
            rule: DEFAULT_RULE.to_owned(),
            strategy: Some(strategy),
            group: Some(group.id),
            candidates,
            excluded,
            fallback,
            reason,
        }
    }

    /// The answer when the store reserved `candidates[index]`: the candidates ranked above it
    /// filled up in the meantime, so the answer starts with it.
    pub fn reserve_at(self, index: usize) -> Answer {
        let agents: Vec<AgentId> = self
            .candidates
            .into_iter()
            .skip(index)
            .map(|candidate| candidate.agent)
            .collect();
        Answer {
            group: self.group,
            reserved: agents.first().cloned(),
            agents,
            rule: self.rule,
            strategy: self.strategy,
            fallback: self.fallback,
            reason: self.reason,
        }
    }

    /// The answer when no candidate could be reserved: the group alone.
    pub fn without_reservation(self) -> Answer {
        let reason = if self.candidates.is_empty() {
            self.reason
        } else {
            format!("{}; every one reached capacity meanwhile", self.reason)
        };
        Answer {
            group: self.group,
            agents: Vec::new(),
            reserved: None,
            rule: self.rule,
            strategy: self.strategy,
            fallback: true,
            reason,
        }
    }
}

/// `2 offline, 1 at capacity`.
fn summarize(excluded: &[Excluded]) -> String {
    if excluded.is_empty() {
        return "the group has no agents".to_owned();
    }
    let count = |pred: fn(&Exclusion) -> bool| excluded.iter().filter(|e| pred(&e.reason)).count();
    let parts = [
        (count(|r| matches!(r, Exclusion::Offline)), "offline"),
        (count(|r| matches!(r, Exclusion::Away)), "away"),
        (
            count(|r| matches!(r, Exclusion::AtCapacity { .. })),
            "at capacity",
        ),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What goes back to the caller, and what a replay of the same session returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The group to hand the session to.
    pub group: Option<GroupId>,
    /// Agents, best first.
    pub agents: Vec<AgentId>,
    /// The agent whose capacity the assignment holds.
    pub reserved: Option<AgentId>,
    /// The rule that produced it.
    pub rule: String,
    /// The ranking applied, if any.
    pub strategy: Option<Strategy>,
    /// Whether no agent could be ranked.
    pub fallback: bool,
    /// One line for people.
    pub reason: String,
}
