//! What the engine decided and why: the rules tried, the targets tried, every agent left
//! out with its reason, the ranked candidates with their scores; and the [`Answer`] that
//! goes back to the caller once the store has reserved capacity.

use std::{fmt, time::SystemTime};

use handoff_core::{
    config::Strategy,
    id::{AgentId, GroupId},
};

/// How a rule fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    /// Its `when` held (or it has none): it decided.
    Matched,
    /// Its `when` was false.
    NotMatched,
    /// Its `when` could not be evaluated; the rule was skipped.
    Failed(String),
}

/// A rule tried, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleTrace {
    /// The rule's name.
    pub rule: String,
    /// How it fared.
    pub outcome: RuleOutcome,
}

/// How a target fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetOutcome {
    /// It had eligible agents and produced the answer.
    Chosen,
    /// Its group was outside business hours.
    Closed,
    /// None of its agents was eligible.
    NoEligible,
    /// It had eligible agents but a live measure (`overflow_when`) passed the handoff on.
    Overflowed,
}

/// A target of the matched rule, tried in order.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetTrace {
    /// `target`, or `overflow[N]`.
    pub label: String,
    /// The target's group.
    pub group: Option<GroupId>,
    /// The target's ranking.
    pub strategy: Strategy,
    /// How it fared.
    pub outcome: TargetOutcome,
    /// How many agents the target has.
    pub members: usize,
    /// How many eligible agents the search found: all of them when explaining; when
    /// assigning, the search stops once it has enough.
    pub eligible: usize,
    /// How many agents were left out for each reason, as far as the search looked.
    pub left_out: Tally,
    /// Agents of the target left out, with the reason; filled only when explaining.
    pub excluded: Vec<Excluded>,
    /// Seats free among its available agents.
    pub free_seats: u64,
    /// Why a live measure passed the handoff on (`overflow_when`), when one did; kept when
    /// the target answered after all because no later one could.
    pub overflow: Option<String>,
}

/// How many agents were left out for each kind of [`Exclusion`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally([usize; Exclusion::KINDS]);

impl Tally {
    /// Counts one agent left out for `reason`.
    pub fn add(&mut self, reason: &Exclusion) {
        self.add_many(reason.kind(), 1);
    }

    /// Counts `count` agents left out for the kind of exclusion numbered `kind`.
    pub(crate) fn add_many(&mut self, kind: usize, count: usize) {
        if let Some(slot) = self.0.get_mut(kind) {
            *slot += count;
        }
    }

    /// Every kind with a count, in the order eligibility is checked: `(label, count)`.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, usize)> + '_ {
        Exclusion::LABELS
            .iter()
            .zip(self.0)
            .filter(|(_, count)| *count > 0)
            .map(|(label, count)| (*label, count))
    }
}

/// Why an agent of a target was not offered, in the order eligibility is checked: the
/// first that applies is the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exclusion {
    /// The target's group is outside business hours.
    GroupClosed,
    /// Signed in but not taking sessions.
    Away,
    /// Signed out.
    Offline,
    /// Already carrying as many sessions as allowed.
    AtCapacity {
        /// Seats the agent's sessions take.
        active: u32,
        /// Seats the agent has.
        capacity: u32,
        /// Seats this session would take (its rule's `weight`).
        weight: u32,
    },
    /// The target's agent filter is false for the agent.
    FilterFalse,
    /// The target's agent filter failed for the agent.
    FilterFailed(String),
    /// Outside the agent's own shift.
    OffShift,
    /// Still wrapping up a session that ended (after-call work), until then.
    WrappingUp {
        /// When the wrap-up ends.
        until: SystemTime,
    },
    /// Parked after missing `missed` offers in a row (`max_missed`), until then or until
    /// set available again.
    Parked {
        /// The offers missed in a row.
        missed: u32,
        /// When the agent is offered again.
        until: SystemTime,
    },
    /// Took as many new sessions within the window as fair share allows.
    FairShare {
        /// New sessions taken within the window.
        taken: u32,
        /// How many the app allows.
        limit: u32,
        /// The window.
        window: std::time::Duration,
    },
    /// The target's group keeps its last seats for rules with `use_headroom`, and this
    /// one has not.
    HeadroomKept {
        /// The seats the group keeps.
        kept: u32,
        /// The seats free among its available agents.
        free: u64,
    },
}

impl Exclusion {
    /// How many kinds there are.
    pub const KINDS: usize = 11;
    /// Each kind's label, in checking order.
    const LABELS: [&'static str; Self::KINDS] = [
        "group closed",
        "away",
        "offline",
        "at capacity",
        "filter false",
        "filter failed",
        "off shift",
        "wrapping up",
        "parked",
        "fair share",
        "headroom kept",
    ];

    /// The kind's number, in checking order.
    pub(crate) fn kind(&self) -> usize {
        match self {
            Exclusion::GroupClosed => 0,
            Exclusion::Away => 1,
            Exclusion::Offline => 2,
            Exclusion::AtCapacity { .. } => 3,
            Exclusion::FilterFalse => 4,
            Exclusion::FilterFailed(_) => 5,
            Exclusion::OffShift => 6,
            Exclusion::WrappingUp { .. } => 7,
            Exclusion::Parked { .. } => 8,
            Exclusion::FairShare { .. } => 9,
            Exclusion::HeadroomKept { .. } => 10,
        }
    }

    /// A short label: `offline`, `at capacity`, ...
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.kind()]
    }
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exclusion::AtCapacity {
                active,
                capacity,
                weight: 1,
            } => write!(f, "at capacity ({active}/{capacity})"),
            Exclusion::AtCapacity {
                active,
                capacity,
                weight,
            } => write!(
                f,
                "at capacity ({active}/{capacity}, this session takes {weight} seats)"
            ),
            Exclusion::HeadroomKept { kept, free } => {
                write!(f, "headroom kept: {kept} seats ({free} free)")
            }
            Exclusion::FilterFailed(error) => write!(f, "filter failed: {error}"),
            Exclusion::WrappingUp { until } => write!(f, "wrap-up until {}", clock_time(*until)),
            Exclusion::FairShare {
                taken,
                limit,
                window,
            } => write!(f, "fair share: {taken} of {limit} in {}s", window.as_secs()),
            Exclusion::Parked { missed, until } => write!(
                f,
                "parked after {missed} missed offers until {}",
                clock_time(*until)
            ),
            other => f.write_str(other.label()),
        }
    }
}

/// `at` as an RFC 3339 UTC time to the second, as explanations show times.
pub fn clock_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// An agent left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// Why it was left out.
    pub reason: Exclusion,
}

/// An eligible agent, with what the ranking looked at.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// The agent's capacity.
    pub capacity: u32,
    /// Sessions the agent had when the decision was made.
    pub active: u32,
    /// When the agent was last assigned a session.
    pub last_assigned: Option<SystemTime>,
    /// The strategy's score (see [`Candidate::score`]).
    pub score: f64,
    /// Why the agent stands where it does, when stickiness moved it.
    pub sticky: Option<Sticky>,
    /// The agent's place in the roster: the last tie-break.
    pub position: usize,
    /// The target's tier it is in (the number of tiers: none), which orders it first.
    pub tier: usize,
}

impl Candidate {
    /// `agent` at `position` in the roster with `load`, not scored or moved yet.
    pub(super) fn unscored(agent: &super::Agent, load: super::AgentLoad, position: usize) -> Self {
        Self {
            agent: agent.id.clone(),
            capacity: agent.capacity,
            active: load.active,
            last_assigned: load.last_assigned,
            score: 0.0,
            sticky: None,
            position,
            tier: 0,
        }
    }
}

/// Why stickiness put an agent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    /// The customer's owner.
    Owner,
    /// The customer's previous agent, within the sticky TTL.
    Previous,
}

/// A routing decision with its explanation, before the store reserves capacity for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The rule that decided.
    pub rule: String,
    /// Every rule tried, in order, the deciding one last.
    pub rules: Vec<RuleTrace>,
    /// Every target of the deciding rule tried, in order.
    pub targets: Vec<TargetTrace>,
    /// The ranking of the target that produced the candidates.
    pub strategy: Option<Strategy>,
    /// The group to answer.
    pub group: Option<GroupId>,
    /// Eligible agents, best first.
    pub ranked: Vec<Candidate>,
    /// How many agents the answer may list (the rule's `candidates`).
    pub max_agents: usize,
    /// Whether the answer is the group alone by the rule's choice.
    pub group_only: bool,
    /// The seats the session takes (the rule's `weight`).
    pub weight: u32,
    /// The group whose headroom the answer fills, when a rule with `use_headroom` answers
    /// from a group down to the seats it keeps.
    pub headroom_used: Option<GroupId>,
    /// Whether no target had an eligible agent.
    pub fallback: bool,
    /// One line for people.
    pub reason: String,
}

impl Decision {
    /// The answer when the store reserved `ranked[index]`: the candidates ranked above it
    /// filled up in the meantime, so the answer starts with it.
    pub fn reserve_at(&self, index: usize) -> Answer {
        let agents: Vec<AgentId> = self
            .ranked
            .iter()
            .skip(index)
            .take(self.max_agents)
            .map(|candidate| candidate.agent.clone())
            .collect();
        Answer {
            group: self.group,
            reserved: agents.first().cloned(),
            agents,
            rule: self.rule.clone(),
            strategy: self.strategy,
            fallback: self.fallback,
            reason: self.reason.clone(),
            weight: self.weight,
        }
    }

    /// The answer without a reservation: the group alone.
    pub fn without_reservation(&self) -> Answer {
        let reason = if self.ranked.is_empty() || self.group_only {
            self.reason.clone()
        } else {
            format!("{}; every one reached capacity meanwhile", self.reason)
        };
        Answer {
            group: self.group,
            agents: Vec::new(),
            reserved: None,
            rule: self.rule.clone(),
            strategy: self.strategy,
            fallback: self.fallback || !self.group_only,
            reason,
            weight: self.weight,
        }
    }

    /// Whether the store should try to reserve one of the candidates.
    pub fn wants_reservation(&self) -> bool {
        !self.group_only && !self.ranked.is_empty()
    }
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
    /// The seats the session takes of the reserved agent.
    pub weight: u32,
}
