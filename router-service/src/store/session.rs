//! A session's life as the router sees it, the same in every store: the reservation an
//! AssignHuman made, then the facts Tencent's (or any channel's) session events report.
//!
//! The latest of them decides who holds the session's seat, compared by event time (then
//! reservation < serving < closed, then agent id), never by arrival: a duplicate or an event
//! older than what is known changes nothing, so any order and any repetition of the same
//! events ends in the same state. One exception makes clock skew harmless: a fact naming
//! the reserved agent confirms the reservation even if its clock puts it earlier. A reservation is provisional until a serving fact confirms
//! it (or moves it to the agent Tencent really chose); a closed fact (ended, failed) releases
//! the seat. Seats also run out: a provisional one after the app's `confirm_timeout` (else
//! `assignment_ttl`), a confirmed one after `[router] max_session`; an ended or expired
//! session is remembered for `max_session` more, so that late events find it.
//!
//! [`SessionRecord`] is also the stored form (JSON), which the Redis scripts read: its field
//! names are the format.

use std::time::{Duration, SystemTime};

use handoff_core::id::{AgentId, ClientUserId, SessionId};
use serde::{Deserialize, Serialize};

use super::{
    Applied,
    record::{AnswerRecord, from_ms, to_ms},
};
pub use crate::engine::SessionState;
use crate::engine::{Answer, LiveSession};

/// What a report says happened to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEventKind {
    /// An agent serves the session (took it, or was seen serving it).
    Assigned,
    /// The session moved to another agent.
    Transferred,
    /// The transfer to a human failed: nobody serves the session.
    Failed,
    /// The session is over (closed, or the user stopped replying).
    Ended,
    /// Desk no longer counts the session its agent held a seat for (a status poll's
    /// `CurrentAcceptCnt` stayed below the seats past `reconcile_after`): the router
    /// releases the seat as if the session had ended.
    Reconciled,
}

impl SessionEventKind {
    /// The name logs and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEventKind::Assigned => "assigned",
            SessionEventKind::Transferred => "transferred",
            SessionEventKind::Failed => "failed",
            SessionEventKind::Ended => "ended",
            SessionEventKind::Reconciled => "reconciled",
        }
    }
}

/// A reported fact about a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    /// The session, by Tencent's `SessionId`.
    pub session: SessionId,
    /// What happened.
    pub kind: SessionEventKind,
    /// The agent serving the session after it (assigned, transferred).
    pub agent: Option<AgentId>,
    /// The agent it came from (transferred), for the record.
    pub from_agent: Option<AgentId>,
    /// The customer, when the report names one.
    pub customer: Option<ClientUserId>,
    /// When it happened, by the reporter's clock.
    pub at: SystemTime,
    /// The report's identity, for recognising retries; `None` when the reporter has none.
    pub id: Option<String>,
}

impl SessionEvent {
    /// The agent the event says serves the session after it, if any.
    fn serving(&self) -> Option<&AgentId> {
        match self.kind {
            SessionEventKind::Assigned | SessionEventKind::Transferred => self.agent.as_ref(),
            SessionEventKind::Failed | SessionEventKind::Ended | SessionEventKind::Reconciled => {
                None
            }
        }
    }

    /// The event as a fact that nobody the router knows serves the session: what an event
    /// naming an agent outside the app's roster means for its seats.
    fn unseated(&self) -> SessionEvent {
        SessionEvent {
            kind: SessionEventKind::Failed,
            agent: None,
            from_agent: None,
            ..self.clone()
        }
    }
}

/// How many ended sessions the router did not reserve an app remembers at most (to order
/// their late events: an assignment arriving after its end seats nobody); past it the
/// oldest is forgotten first.
pub const MAX_STRAY_ENDS: usize = 20_000;

/// What a reported session event does, weighed by [`weigh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Weighed {
    /// The session's next record and what it does, stored unless `limit` says otherwise.
    Changes {
        /// The record to store (boxed: it is the larger by far).
        record: Box<SessionRecord>,
        /// What storing it does to loads, idle clocks and links (boxed, as the record).
        effects: Box<Effects>,
        /// For a seat the router did not reserve: the agent and the most sessions they may
        /// hold with it counted (capacity plus `[router] capacity_margin`). A store that
        /// finds them at it already stores nothing and answers
        /// [`Applied::OverCapacity`].
        limit: Option<(AgentId, u32)>,
        /// What to answer once it is stored.
        outcome: Applied,
    },
    /// Nothing changes; what to answer.
    Nothing(Applied),
}

/// What `event` does to the session whose record is `old`, at `now`, in an app whose
/// agents' capacities `capacity` gives (`None`: not an agent of the app), counting at most
/// `margin` sessions past capacity for sessions the router did not reserve.
///
/// With [`MAX_STRAY_ENDS`], this is what bounds the session table whatever is reported: an
/// event naming an agent the app does not know seats nobody (it releases a seat the session
/// held); a session the router did not reserve is counted only for a known agent below
/// capacity plus the margin, and forgotten with its seat when that runs out.
pub fn weigh(
    old: Option<SessionRecord>,
    event: &SessionEvent,
    now: SystemTime,
    max_session: Duration,
    margin: u32,
    capacity: impl FnOnce(&AgentId) -> Option<u32>,
) -> Weighed {
    let mut outcome = Applied::Recorded;
    let mut limit = None;
    let unseated;
    let mut event = event;
    if let Some(agent) = event.serving() {
        match capacity(agent) {
            None => {
                if old.is_none() {
                    return Weighed::Nothing(Applied::UnknownAgent);
                }
                outcome = Applied::UnknownAgent;
                unseated = event.unseated();
                event = &unseated;
            }
            Some(capacity) => {
                let reserved = old.as_ref().is_some_and(|old| old.reservation.is_some());
                let holds = old
                    .as_ref()
                    .is_some_and(|old| old.seat.as_ref() == Some(agent));
                if !reserved && !holds {
                    limit = Some((agent.clone(), capacity.saturating_add(margin)));
                }
            }
        }
    }
    match report(old, event, now, max_session) {
        Some(Reported {
            record,
            effects,
            superseded,
        }) => Weighed::Changes {
            record: Box::new(record),
            effects: Box::new(effects),
            limit: limit.filter(|_| !superseded),
            outcome: if superseded {
                Applied::Superseded
            } else {
                outcome
            },
        },
        None => Weighed::Nothing(Applied::Superseded),
    }
}

/// The reservation an AssignHuman made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The agent whose seat it took.
    pub agent: AgentId,
    /// When the user asked, by the caller's clock (what events are compared with).
    pub event_ms: u64,
    /// When it was made, by the router's clock.
    pub at_ms: u64,
    /// When its seat runs out unconfirmed, by the router's clock (0 in records written
    /// before it was kept: the record's own deadline then).
    #[serde(default)]
    pub until_ms: u64,
}

/// The latest fact events reported: who serves the session, or that it is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The agent serving it; `None` when it is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<AgentId>,
    /// When, by the reporter's clock.
    pub event_ms: u64,
    /// Whether it is Desk's count releasing the seat (`reconciled`): nobody saw the session
    /// end, so nobody wraps up after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconciled: bool,
}

/// One session, stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The answer given, which a retried AssignHuman replays while the seat is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerRecord>,
    /// The end user (`ClientUserId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<ClientUserId>,
    /// The latest reservation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<Reservation>,
    /// The latest fact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fact: Option<Fact>,
    /// The agent whose seat the session holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<AgentId>,
    /// Where it stands; absent in records written before session events (provisional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SessionState>,
    /// When it came to stand there, by the router's clock.
    #[serde(default)]
    pub since_ms: u64,
    /// When the seat runs out, or (ended, expired) when the record is forgotten.
    pub expires_at_ms: u64,
    /// How many of its agent's seats the session takes (its rule's `weight`); absent: 1.
    #[serde(
        default = "super::record::one",
        skip_serializing_if = "super::record::is_one"
    )]
    pub weight: u32,
}

/// What a change to a session does to the rest of the app's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects {
    /// The seat the session held before: the agent, and whether it was confirmed.
    pub released: Option<(AgentId, bool)>,
    /// The seat it holds after.
    pub taken: Option<(AgentId, bool)>,
    /// How many of its agent's seats the released seat counted (its rule's `weight`).
    pub released_seats: u32,
    /// How many the taken seat counts.
    pub taken_seats: u32,
    /// An agent whose idle clock moves forward to this time (if it is later).
    pub last_assigned: Option<(AgentId, u64)>,
    /// The customer's previous agent, and since when, if that is later than what is known.
    pub history: Option<(ClientUserId, AgentId, u64)>,
    /// An agent who finished serving the session (it ended, or moved to someone else) at
    /// this time, by the router's clock: what wrap-up counts from.
    pub finished: Option<(AgentId, u64)>,
    /// The agent handoff reserved, who let the session go to someone else, and when the
    /// offer was made (the router's clock): a missed offer.
    pub missed: Option<(AgentId, u64)>,
    /// The agent handoff reserved, who took the session, and when the offer was made:
    /// their misses in a row end.
    pub accepted: Option<(AgentId, u64)>,
    /// An agent who took a seat for the session anew, and when (the router's clock): what
    /// fair share counts.
    pub took: Option<(AgentId, u64)>,
    /// A reservation an agent took (the reserved one or another): the group it was
    /// routed to (its [`crate::engine::waits_key`]), when the user asked and how long
    /// until an agent took it (the reporter's clock, ms): what the estimated wait reads.
    pub waited: Option<(String, u64, u64)>,
}

impl Effects {
    /// Whether the seat moved (or changed between provisional and confirmed).
    pub fn moves_seat(&self) -> bool {
        self.released != self.taken || self.released_seats != self.taken_seats
    }
}

/// The order of what is known of a session: by time, then reservation < serving < closed,
/// then agent id, so that every store and every arrival order picks the same latest.
type Rank<'a> = (u64, u8, Option<&'a str>);

fn reservation_rank(reservation: &Reservation) -> Rank<'_> {
    (reservation.event_ms, 0, Some(reservation.agent.as_str()))
}

fn fact_rank(fact: &Fact) -> Rank<'_> {
    match &fact.serving {
        Some(agent) => (fact.event_ms, 1, Some(agent.as_str())),
        None => (fact.event_ms, 2, None),
    }
}

impl SessionRecord {
    /// Reads records written before session events (an answer and an expiry only) as the
    /// provisional reservations they were.
    pub fn normalized(mut self) -> Self {
        if self.state.is_none() {
            let agent = self
                .answer
                .as_ref()
                .and_then(AnswerRecord::reserved)
                .cloned();
            self.state = Some(SessionState::Provisional);
            self.reservation = agent.clone().map(|agent| Reservation {
                agent,
                event_ms: 0,
                at_ms: 0,
                until_ms: self.expires_at_ms,
            });
            self.seat = agent;
        }
        self
    }

    /// Whether this is the end of a session the router did not reserve: kept only to order
    /// late events about it, at most [`MAX_STRAY_ENDS`] per app.
    pub fn is_stray_end(&self) -> bool {
        self.reservation.is_none() && self.state() == SessionState::Ended
    }

    /// How many of its agent's seats the session takes: its rule's weight when handoff
    /// reserved it, else 1.
    pub fn weight(&self) -> u32 {
        self.weight.max(1)
    }

    /// The answer given, as the caller got it.
    pub fn answered(&self) -> Option<Answer> {
        self.answer.clone().map(|answer| Answer {
            weight: self.weight(),
            ..Answer::from(answer)
        })
    }

    /// Where the session stands.
    pub fn state(&self) -> SessionState {
        self.state.unwrap_or(SessionState::Provisional)
    }

    /// The seat held now: the agent, and whether it is confirmed.
    pub fn held(&self) -> Option<(AgentId, bool)> {
        self.seat
            .clone()
            .map(|agent| (agent, self.state() == SessionState::Confirmed))
    }

    /// The answer to replay to a retried AssignHuman: only while the seat it took is held.
    pub fn replay(&self) -> Option<Answer> {
        match self.state() {
            SessionState::Provisional | SessionState::Confirmed => self.answered(),
            SessionState::Ended | SessionState::Expired => None,
        }
    }

    /// The session as the API shows it.
    pub fn live(&self, session: &SessionId) -> LiveSession {
        LiveSession {
            session: session.clone(),
            state: self.state(),
            agent: self.seat.clone(),
            customer: self.customer.clone(),
            since: from_ms(self.since_ms),
            expires_at: from_ms(self.expires_at_ms),
            rule: self.answer.as_ref().map(|answer| answer.rule().to_owned()),
            weight: self.weight(),
        }
    }
}

/// The record after AssignHuman reserved `answer`'s agent for `customer` at `now` (the user
/// asked at `asked`), holding the seat for `hold`, and what that does. A reservation
/// supersedes whatever the session had before: the user asked again.
pub fn reserve(
    old: Option<SessionRecord>,
    answer: &Answer,
    customer: &ClientUserId,
    asked: SystemTime,
    now: SystemTime,
    hold: Duration,
) -> (SessionRecord, Effects) {
    let released = old.as_ref().and_then(SessionRecord::held);
    let released_seats = old.as_ref().map_or(0, SessionRecord::weight);
    let fact = old.and_then(|old| old.fact);
    let taken = answer.reserved.clone();
    let event_ms = to_ms(asked).max(fact.as_ref().map_or(0, |fact| fact.event_ms));
    let reservation = taken.clone().map(|agent| Reservation {
        agent,
        event_ms,
        at_ms: to_ms(now),
        until_ms: to_ms(now + hold),
    });
    let record = SessionRecord {
        answer: Some(answer.into()),
        customer: Some(customer.clone()),
        reservation,
        fact,
        seat: taken.clone(),
        state: Some(SessionState::Provisional),
        since_ms: to_ms(now),
        expires_at_ms: to_ms(now + hold),
        weight: answer.weight.max(1),
    };
    let took = taken
        .clone()
        .filter(|agent| released.as_ref().map(|(held, _)| held) != Some(agent))
        .map(|agent| (agent, to_ms(now)));
    let effects = Effects {
        released_seats: if released.is_some() {
            released_seats
        } else {
            0
        },
        taken_seats: if taken.is_some() { answer.weight } else { 0 },
        released,
        took,
        waited: None,
        taken: taken.clone().map(|agent| (agent, false)),
        last_assigned: taken.clone().map(|agent| (agent, to_ms(now))),
        history: taken.map(|agent| (customer.clone(), agent, event_ms)),
        // Wrap-up follows what events say ended, not a user asking again.
        finished: None,
        missed: None,
        accepted: None,
    };
    (record, effects)
}

/// What [`report`] makes of an event.
#[derive(Debug)]
pub struct Reported {
    /// The session's record after it (unchanged when superseded).
    pub record: SessionRecord,
    /// What it does to the rest of the app's state.
    pub effects: Effects,
    /// Whether the event was older than what is known: the seat stays, but what the fact
    /// says about its agent still counts.
    pub superseded: bool,
}

/// The record after `event`, at `now`, and what that does; `None` when the event changes
/// nothing (a duplicate, or older than what is known and telling nothing new).
///
/// What a serving fact says about agents counts whenever it arrives, so that any order of
/// the same facts ends the same: for a session handoff reserved for R, a fact naming R
/// is an offer accepted, one naming another agent (dated after the reservation) a miss of
/// R's, both dated when the offer was made; either is a wait (the first agent serving, from when the
/// user asked), and a seat its agent took for fair share; and an agent a later fact no
/// longer names has finished serving it (wrap-up).
pub fn report(
    old: Option<SessionRecord>,
    event: &SessionEvent,
    now: SystemTime,
    max_session: Duration,
) -> Option<Reported> {
    let serving = match event.kind {
        SessionEventKind::Assigned | SessionEventKind::Transferred => Some(event.agent.clone()?),
        SessionEventKind::Failed | SessionEventKind::Ended | SessionEventKind::Reconciled => None,
    };
    let fact = Fact {
        serving,
        event_ms: to_ms(event.at),
        reconciled: event.kind == SessionEventKind::Reconciled,
    };
    let mut record = old.unwrap_or(SessionRecord {
        answer: None,
        customer: None,
        reservation: None,
        fact: None,
        seat: None,
        state: None,
        since_ms: 0,
        expires_at_ms: 0,
        weight: 1,
    });
    if let Some(known) = record
        .fact
        .as_ref()
        .filter(|known| fact_rank(known) >= fact_rank(&fact))
    {
        // Older than what is known: the seat stays where the later fact put it.
        let mut effects = record.served(&fact, now);
        // Served, and a later fact says otherwise: finished (see `finished`).
        effects.finished = finished(&record, &fact, known, now);
        if effects == Effects::default() {
            return None;
        }
        return Some(Reported {
            record,
            effects,
            superseded: true,
        });
    }
    let before = record.standing();
    if record.customer.is_none() {
        record.customer = event.customer.clone();
    }
    let previous = record.fact.replace(fact.clone());
    let after = record.standing();
    let reseats =
        record.state() == SessionState::Expired && matches!(after, Standing::Confirmed(_));
    let weight = record.weight();
    let mut effects = record.served(&fact, now);
    effects.finished = previous
        .as_ref()
        .and_then(|previous| finished(&record, previous, &fact, now));
    if after == before && !reseats {
        // The fact is kept for later comparisons but changes who holds the seat not at all.
        return Some(Reported {
            record,
            effects,
            superseded: false,
        });
    }
    effects.released = record.held();
    if effects.released.is_some() {
        effects.released_seats = weight;
    }
    record.since_ms = to_ms(now);
    record.expires_at_ms = to_ms(now + max_session);
    match after {
        Standing::Confirmed(agent) => {
            record.state = Some(SessionState::Confirmed);
            record.seat = Some(agent.clone());
            effects.taken = Some((agent.clone(), true));
            effects.taken_seats = weight;
            effects.last_assigned = Some((agent.clone(), fact.event_ms));
            if let Some(customer) = &record.customer {
                effects.history = Some((customer.clone(), agent, fact.event_ms));
            }
        }
        Standing::Provisional(agent) => {
            // Only a fact older than the reservation can lead back here: the reservation's
            // own deadline stands.
            record.state = Some(SessionState::Provisional);
            record.seat = Some(agent.clone());
            record.expires_at_ms = record
                .reservation
                .as_ref()
                .map_or(record.expires_at_ms, |reservation| reservation.until_ms);
            effects.taken = Some((agent, false));
            effects.taken_seats = weight;
        }
        Standing::Ended | Standing::Unknown => {
            record.state = Some(SessionState::Ended);
            record.seat = None;
        }
    }
    // A seat taken anew (not the same agent's, provisional before): fair share counts it.
    if let Some((agent, _)) = &effects.taken
        && effects.released.as_ref().map(|(held, _)| held) != Some(agent)
    {
        effects.took = Some((agent.clone(), to_ms(now)));
    }
    Some(Reported {
        record,
        effects,
        superseded: false,
    })
}

/// Who finished serving the session, by `earlier` and `later` of its facts: the agent the
/// earlier one says served it (if it counts against the reservation), when the later one
/// names someone else or nobody, unless it is Desk's count releasing the seat (nobody saw
/// the session end). Facts, not seats, decide, so that any order of arrival agrees.
fn finished(
    record: &SessionRecord,
    earlier: &Fact,
    later: &Fact,
    now: SystemTime,
) -> Option<(AgentId, u64)> {
    let agent = counted(record, earlier)?;
    (later.serving.as_ref() != Some(agent) && !later.reconciled)
        .then(|| (agent.clone(), to_ms(now)))
}

/// The agent a serving `fact` says served the session, if it counts against the
/// reservation: it names the reserved agent, or is dated after the reservation (an older
/// one leaves the reservation standing, as [`SessionRecord::standing`] weighs them).
fn counted<'a>(record: &SessionRecord, fact: &'a Fact) -> Option<&'a AgentId> {
    let agent = fact.serving.as_ref()?;
    match &record.reservation {
        Some(reservation)
            if &reservation.agent != agent && fact_rank(fact) <= reservation_rank(reservation) =>
        {
            None
        }
        _ => Some(agent),
    }
}

impl SessionRecord {
    /// What a serving `fact` says about agents, whenever it arrives (see [`report`]): an
    /// offer accepted or missed, a wait, a seat taken for fair share.
    fn served(&self, fact: &Fact, now: SystemTime) -> Effects {
        let mut effects = Effects::default();
        let Some(agent) = counted(self, fact) else {
            return effects;
        };
        effects.took = Some((agent.clone(), to_ms(now)));
        let Some(reservation) = &self.reservation else {
            return effects;
        };
        // Both dated when the offer was made (the router's clock): an acceptance ends the
        // misses of offers made before it, whenever its event arrives.
        if agent == &reservation.agent {
            effects.accepted = Some((agent.clone(), reservation.at_ms));
        } else {
            effects.missed = Some((reservation.agent.clone(), reservation.at_ms));
        }
        let group = self.answer.as_ref().and_then(AnswerRecord::group);
        effects.waited = Some((
            crate::engine::waits_key(group),
            reservation.event_ms,
            fact.event_ms.saturating_sub(reservation.event_ms),
        ));
        effects
    }
}

/// Who the reservation and the latest fact, together, say holds the session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Standing {
    Provisional(AgentId),
    Confirmed(AgentId),
    Ended,
    Unknown,
}

impl SessionRecord {
    /// The reservation and the latest fact, weighed: a fact naming the reserved agent
    /// confirms it whatever the clocks say (the two agree); otherwise the later of the two
    /// decides. Depends only on what is known, never on the order it was learnt in.
    fn standing(&self) -> Standing {
        let from_fact = |fact: &Fact| match &fact.serving {
            Some(agent) => Standing::Confirmed(agent.clone()),
            None => Standing::Ended,
        };
        match (&self.reservation, &self.fact) {
            (Some(reservation), Some(fact))
                if fact.serving.as_ref() == Some(&reservation.agent) =>
            {
                Standing::Confirmed(reservation.agent.clone())
            }
            (Some(reservation), Some(fact)) if fact_rank(fact) > reservation_rank(reservation) => {
                from_fact(fact)
            }
            (Some(reservation), _) => Standing::Provisional(reservation.agent.clone()),
            (None, Some(fact)) => from_fact(fact),
            (None, None) => Standing::Unknown,
        }
    }
}

/// The record once its deadline has passed: a held seat is released (the record stays,
/// expired, for `max_session` from the deadline); an ended or expired record is forgotten
/// (`None`). Counted from the deadline, not from when it was noticed, so that expiring the
/// same record again (the embedded store does at every start) always gives the same one.
pub fn expire(mut record: SessionRecord, max_session: Duration) -> Option<SessionRecord> {
    match record.state() {
        SessionState::Provisional | SessionState::Confirmed => {
            let deadline = record.expires_at_ms;
            record.state = Some(SessionState::Expired);
            record.seat = None;
            record.since_ms = deadline;
            // A session the router did not reserve is forgotten with its seat.
            let keep = if record.reservation.is_some() {
                max_session
            } else {
                Duration::ZERO
            };
            record.expires_at_ms = to_ms(from_ms(deadline) + keep);
            Some(record)
        }
        SessionState::Ended | SessionState::Expired => None,
    }
}
