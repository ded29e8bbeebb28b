//! An app's live state as plain records: the seats held, live statuses, run-time roster
//! changes and idle clocks. A decision log file starts with one (read through any store's
//! `inspect`), and replay restores a [`LocalStore`](super::LocalStore) from it.
//!
//! Customers and their previous agents are not part of it: there may be millions, and each
//! logged decision carries what it saw of its own customer.

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SessionId},
};
use serde::{Deserialize, Serialize};

use super::{
    record::{RosterRecord, to_ms},
    session::{Fact, Reservation, SessionRecord},
};
use crate::engine::{self, App, SessionState, StateView, desk::DeskRoster};

/// A seat a session holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    /// The session, by Tencent's `SessionId`.
    pub session: SessionId,
    /// The agent whose seat it holds.
    pub agent: AgentId,
    /// The customer, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<ClientUserId>,
    /// Whether an event confirmed it (else it is a reservation).
    pub confirmed: bool,
    /// Since when it stands so, Unix milliseconds.
    pub since_ms: u64,
    /// When the seat runs out if nothing else happens.
    pub expires_at_ms: u64,
    /// The rule that routed it, when handoff answered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How many of the agent's seats it takes; absent: 1.
    #[serde(
        default = "super::record::one",
        skip_serializing_if = "super::record::is_one"
    )]
    pub weight: u32,
}

/// An agent's live status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// The status reported, overriding its definition.
    pub status: AgentStatus,
}

/// A run-time roster change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RosterChange {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// Its definition, in the config file's shape; absent when it was removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: RosterRecord,
}

/// When an agent was last assigned a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Idle {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// When, Unix milliseconds.
    pub at_ms: u64,
}

/// One app's live state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AppSnapshot {
    /// The Tencent app (`SdkAppId`).
    pub app: u64,
    /// The sessions holding seats.
    #[serde(default)]
    pub seats: Vec<Seat>,
    /// Statuses reported at run time.
    #[serde(default)]
    pub statuses: Vec<LiveStatus>,
    /// Agents added, changed or removed at run time.
    #[serde(default)]
    pub roster: Vec<RosterChange>,
    /// The agents' idle clocks.
    #[serde(default)]
    pub last_assigned: Vec<Idle>,
    /// When agents last finished serving a session (what wrap-up counts from).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last_finished: Vec<Idle>,
    /// Agents' missed offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub misses: Vec<(AgentId, engine::Misses)>,
    /// The sessions agents lately took (fair share).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<(AgentId, engine::Taken)>,
    /// Each group's latest waits (`overflow_when.wait_above`), by its key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waits: Vec<(String, engine::Waits)>,
    /// What roster syncs read from Desk.
    #[serde(default, skip_serializing_if = "is_empty_desk")]
    pub desk: DeskRoster,
    /// What Desk counted beyond each member's seats at the last status poll.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unattributed: Vec<(AgentId, u32)>,
}

fn is_empty_desk(desk: &DeskRoster) -> bool {
    *desk == DeskRoster::default()
}

impl AppSnapshot {
    /// `app`'s state as `state` shows it (read with the sessions).
    pub fn of(app: &App, state: &dyn StateView) -> Self {
        let seats = state
            .sessions()
            .into_iter()
            .filter_map(|live| {
                Some(Seat {
                    agent: live.agent?,
                    session: live.session,
                    customer: live.customer,
                    confirmed: live.state == SessionState::Confirmed,
                    since_ms: to_ms(live.since),
                    expires_at_ms: to_ms(live.expires_at),
                    rule: live.rule,
                    weight: live.weight,
                })
            })
            .collect();
        let roster = engine::roster(app, state.roster_changes());
        let statuses = roster
            .iter()
            .filter_map(|agent| {
                Some(LiveStatus {
                    status: state.status(&agent.id)?,
                    agent: agent.id.clone(),
                })
            })
            .collect();
        let last_assigned = roster
            .iter()
            .filter_map(|agent| {
                Some(Idle {
                    at_ms: to_ms(state.load(&agent.id).last_assigned?),
                    agent: agent.id.clone(),
                })
            })
            .collect();
        let last_finished = roster
            .iter()
            .filter_map(|agent| {
                Some(Idle {
                    at_ms: to_ms(state.load(&agent.id).last_finished?),
                    agent: agent.id.clone(),
                })
            })
            .collect();
        let misses = roster
            .iter()
            .filter_map(|agent| Some((agent.id.clone(), state.misses(&agent.id)?.clone())))
            .collect();
        let taken = roster
            .iter()
            .filter_map(|agent| Some((agent.id.clone(), state.taken(&agent.id)?.clone())))
            .collect();
        let waits = app
            .groups()
            .iter()
            .map(|group| Some(group.id))
            .chain([None])
            .filter_map(|group| {
                let key = engine::waits_key(group);
                let waits = state.waits_of(&key)?.clone();
                Some((key, waits))
            })
            .collect();
        let unattributed = roster
            .iter()
            .filter_map(|agent| {
                let extra = state.load(&agent.id).unattributed;
                (extra > 0).then(|| (agent.id.clone(), extra))
            })
            .collect();
        let roster = state
            .overlays()
            .iter()
            .map(|(agent, change)| RosterChange {
                agent: agent.clone(),
                definition: change.as_ref().map(|agent| agent.spec.clone()),
            })
            .collect();
        Self {
            app: app.id.get(),
            seats,
            statuses,
            roster,
            last_assigned,
            last_finished,
            misses,
            taken,
            waits,
            desk: state.desk().cloned().unwrap_or_default(),
            unattributed,
        }
    }
}

impl Seat {
    /// The session's record as a store keeps it. Event times are taken as the router's
    /// `since_ms` (the reporter's are not in a snapshot), and no answer is kept to replay.
    pub fn record(&self) -> SessionRecord {
        let (reservation, fact, state) = if self.confirmed {
            let fact = Fact {
                serving: Some(self.agent.clone()),
                event_ms: self.since_ms,
                reconciled: false,
            };
            (None, Some(fact), SessionState::Confirmed)
        } else {
            let reservation = Reservation {
                agent: self.agent.clone(),
                event_ms: self.since_ms,
                at_ms: self.since_ms,
                until_ms: self.expires_at_ms,
            };
            (Some(reservation), None, SessionState::Provisional)
        };
        SessionRecord {
            answer: None,
            customer: self.customer.clone(),
            reservation,
            fact,
            seat: Some(self.agent.clone()),
            state: Some(state),
            since_ms: self.since_ms,
            expires_at_ms: self.expires_at_ms,
            weight: self.weight.max(1),
        }
    }
}
