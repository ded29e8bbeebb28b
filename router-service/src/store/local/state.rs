//! One app's state in the local store: loads, statuses, customers, previous agents, run-time
//! roster changes, sessions with their deadlines, recent report identities, and the floor
//! ranked over them, changed only through the store's `mutate` (so every change is journaled
//! in the order it was made).

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    sync::Arc,
    time::SystemTime,
};

use chrono_tz::Tz;
use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

use super::Writes;
use crate::{
    engine::{
        Agent, AgentLoad, App, Customer, Floor, LiveSession, RosterChanges, StateView,
        desk::DeskRoster,
    },
    hash::FastMap,
    store::{
        Lifetimes, MAX_SEEN,
        embedded::{self, LoadedApp, Op},
        record::{HistoryRecord, StatusRecord, from_ms, to_ms},
        session::{self, Effects, MAX_STRAY_ENDS, SessionRecord},
    },
};

/// One app's live state.
#[derive(Debug)]
pub(super) struct AppState {
    pub(super) loads: FastMap<AgentId, AgentLoad>,
    pub(super) statuses: FastMap<AgentId, StatusRecord>,
    /// Boxed: a million profiles then cost a pointer each in the table, whose buckets are
    /// up to half empty, rather than a whole profile each.
    pub(super) customers: FastMap<ClientUserId, Box<Customer>>,
    pub(super) history: FastMap<ClientUserId, HistoryRecord>,
    /// Each link's time and customer, oldest first (as links are made), for forgetting
    /// them in order; an entry whose time no longer matches its link is stale.
    pub(super) links: VecDeque<(u64, ClientUserId)>,
    /// The agents gRPC put or removed, as they were given.
    pub(super) overlays: RosterChanges,
    /// What the last roster syncs read from Desk.
    pub(super) desk: DeskRoster,
    /// The roster's run-time changes as the engine sees them: `overlays` with `desk`
    /// composed over the file (see [`crate::engine::desk::compose`]).
    pub(super) changes: RosterChanges,
    /// The app version `changes` were composed for.
    composed_for: u64,
    /// Desk's business hours compiled for the app, when it takes them.
    desk_hours: Option<crate::engine::schedule::Schedule>,
    /// Each agent's missed offers.
    pub(super) misses: FastMap<AgentId, crate::engine::Misses>,
    /// The sessions each agent lately took, for fair share.
    pub(super) taken: FastMap<AgentId, crate::engine::Taken>,
    /// Each group's latest waits, by [`crate::engine::waits_key`].
    pub(super) waits: FastMap<String, crate::engine::Waits>,
    /// The same summed ahead for estimates, by group.
    wait_summaries: FastMap<Option<handoff_core::id::GroupId>, crate::engine::WaitSummary>,
    /// Sessions Desk counts beyond the seats held, by agent, from the last status poll. Not
    /// journaled: the next poll counts them again.
    pub(super) unattributed: FastMap<AgentId, u32>,
    /// The zone `overlays` were compiled in: the app's when they were last used.
    pub(super) zone: Tz,
    /// Boxed: a table of hundreds of thousands of sessions then grows by moving pointers,
    /// not whole records, under the lock every decision waits on.
    pub(super) sessions: FastMap<SessionId, Box<SessionRecord>>,
    /// Each session's deadline; an entry whose time no longer matches its record is stale.
    pub(super) deadlines: BinaryHeap<Reverse<(u64, SessionId)>>,
    /// The ends of sessions the router did not reserve, oldest first, for forgetting the
    /// oldest past [`MAX_STRAY_ENDS`]; an entry whose record changed since is stale.
    pub(super) stray_ends: VecDeque<(u64, SessionId)>,
    /// Report identities recorded, and until when they are remembered, oldest first.
    pub(super) seen: FastMap<String, SystemTime>,
    pub(super) seen_order: VecDeque<(SystemTime, String)>,
    /// The agents ranked for the app's targets, kept in step with every change of load,
    /// status or roster; rebuilt after a roster change or a reload.
    pub(super) floor: Option<Floor>,
    /// How many times the roster changed (agents put or removed, recompiled in a new zone).
    pub(super) roster_version: u64,
    /// Journal writes of what time released during looks, for the next write.
    pub(super) pending: Vec<Op>,
}

impl AppState {
    pub(super) fn new(zone: Tz) -> Self {
        Self {
            loads: FastMap::default(),
            statuses: FastMap::default(),
            customers: FastMap::default(),
            history: FastMap::default(),
            links: VecDeque::new(),
            overlays: RosterChanges::new(),
            desk: DeskRoster::default(),
            changes: RosterChanges::new(),
            composed_for: 0,
            desk_hours: None,
            misses: FastMap::default(),
            taken: FastMap::default(),
            waits: FastMap::default(),
            wait_summaries: FastMap::default(),
            unattributed: FastMap::default(),
            zone,
            sessions: FastMap::default(),
            deadlines: BinaryHeap::new(),
            stray_ends: VecDeque::new(),
            seen: FastMap::default(),
            seen_order: VecDeque::new(),
            floor: None,
            roster_version: 0,
            pending: Vec::new(),
        }
    }

    /// Builds the floor again if the app was recompiled or the roster changed since.
    pub(super) fn rank(&mut self, app: &App) {
        if self
            .floor
            .as_ref()
            .is_some_and(|floor| floor.is_for(app, self.roster_version))
        {
            return;
        }
        self.floor = None;
        let floor = Floor::build(app, self.roster_version, self);
        self.floor = Some(floor);
    }

    /// `agent`'s load: the seats it holds, and what Desk counts beyond them.
    pub(super) fn load_of(&self, agent: &AgentId) -> AgentLoad {
        let mut load = self.loads.get(agent).copied().unwrap_or_default();
        // Empty unless Desk sync counts sessions beyond the seats: no second lookup then.
        if !self.unattributed.is_empty()
            && let Some(extra) = self.unattributed.get(agent)
        {
            load.unattributed = *extra;
            load.active = load.active.saturating_add(*extra);
        }
        load
    }

    /// Tells the floor `agent`'s load and status as they are now.
    pub(super) fn rerank(&mut self, agent: &AgentId) {
        let load = self.load_of(agent);
        let status = self.statuses.get(agent).map(|record| record.status());
        if let Some(floor) = &mut self.floor {
            floor.update(agent, load, status);
        }
    }

    /// Rebuilds an app's state from the journal, with roster changes compiled in `zone`;
    /// agents' loads are counted again from the sessions' seats.
    pub(super) fn restore(app: SdkAppId, loaded: LoadedApp, zone: Tz) -> Self {
        let mut state = AppState::new(zone);
        for (agent, at_ms) in loaded.last_assigned {
            state.loads.entry(agent).or_default().last_assigned = Some(from_ms(at_ms));
        }
        for (agent, misses) in &loaded.misses {
            state.loads.entry(agent.clone()).or_default().missed_kept = misses.missed.len() as u32;
        }
        for (agent, taken) in &loaded.taken {
            state.loads.entry(agent.clone()).or_default().taken_kept = taken.0.len() as u32;
        }
        state.misses.extend(loaded.misses);
        state.taken.extend(loaded.taken);
        for (key, waits) in &loaded.waits {
            let summary = crate::engine::WaitSummary::of(waits);
            state
                .wait_summaries
                .insert(crate::engine::waits_group(key), summary);
        }
        state.waits.extend(loaded.waits);
        for (agent, at_ms) in loaded.last_finished {
            state.loads.entry(agent).or_default().last_finished = Some(from_ms(at_ms));
        }
        let mut stray_ends = Vec::new();
        for (session, record) in loaded.sessions {
            if record.is_stray_end() {
                stray_ends.push((record.since_ms, session.clone()));
            }
            if let Some((agent, confirmed)) = record.held() {
                let seats = record.weight();
                let load = state.loads.entry(agent).or_default();
                load.active += seats;
                load.weighted += seats - 1;
                if confirmed {
                    load.confirmed += seats;
                }
            }
            state
                .deadlines
                .push(Reverse((record.expires_at_ms, session.clone())));
            state.sessions.insert(session, Box::new(record));
        }
        stray_ends.sort();
        state.stray_ends.extend(stray_ends);
        let mut links: Vec<(u64, ClientUserId)> = loaded
            .history
            .iter()
            .map(|(customer, record)| (record.at_ms, customer.clone()))
            .collect();
        links.sort();
        state.links.extend(links);
        state.history.extend(loaded.history);
        state.statuses.extend(loaded.statuses);
        for customer in loaded.customers {
            let customer = Customer::from(customer);
            state
                .customers
                .insert(customer.id.clone(), Box::new(customer));
        }
        let mut seen: Vec<(SystemTime, String)> = loaded
            .seen
            .into_iter()
            .map(|(id, until)| (from_ms(until), id))
            .collect();
        seen.sort();
        // More than an app remembers now (read back from an older version): the oldest are
        // forgotten, in the file too, with the next write.
        let mut writes = Writes(Some(Vec::new()));
        for (until, id) in seen {
            state.remember(app, id, until, &mut writes);
        }
        state.pending.extend(
            writes
                .0
                .unwrap_or_default()
                .into_iter()
                .filter(|op| !op.is_put()),
        );
        for (id, spec) in loaded.roster {
            let change = match spec {
                None => None,
                Some(spec) => match Agent::compile_overlay(&spec, zone) {
                    Ok(agent) => Some(Arc::new(agent)),
                    Err(fault) => {
                        tracing::warn!(%app, agent = %id, field = fault.field.config_key(), message = fault.message, "dropping a stored agent that no longer compiles");
                        continue;
                    }
                },
            };
            state.overlays.insert(id, change);
        }
        state.desk = loaded.desk;
        state
    }

    /// Keeps the roster's run-time changes composed for `app` as it is now: the agents
    /// defined at run time compiled in its zone, which a reload may have changed since
    /// (their shifts are read in it), and Desk's roster over the file as it reads now.
    pub(super) fn follow(&mut self, app: &App) {
        if self.zone != app.zone {
            self.recompile(app);
        }
        if self.composed_for != app.version() {
            self.compose(app);
        }
    }

    /// Composes the roster's run-time changes again, after a change to one of its layers.
    pub(super) fn compose(&mut self, app: &App) {
        self.changes = crate::engine::desk::compose(app, &self.overlays, &self.desk);
        self.desk_hours = crate::engine::desk::hours(app, &self.desk);
        self.composed_for = app.version();
        self.roster_version += 1;
    }

    /// Takes a Desk roster sync's `delta`.
    pub(super) fn take_desk(
        &mut self,
        app: &App,
        delta: &crate::engine::desk::DeskDelta,
        writes: &mut Writes,
    ) {
        self.desk.apply(delta);
        writes.record(|| embedded::desk(app.id, delta));
        self.compose(app);
    }

    /// Takes a status poll's counts of the sessions Desk says each member serves: what
    /// exceeds the seats the member holds now is its unattributed load.
    pub(super) fn take_desk_load(&mut self, serving: &[(AgentId, u32)]) {
        let mut unattributed = FastMap::default();
        for (agent, count) in serving {
            let held = self
                .loads
                .get(agent)
                .map_or(0, |load| load.active.saturating_sub(load.weighted));
            if *count > held {
                unattributed.insert(agent.clone(), count - held);
            }
        }
        let old = std::mem::replace(&mut self.unattributed, unattributed);
        let touched: Vec<AgentId> = old
            .into_iter()
            .filter(|(agent, count)| self.unattributed.get(agent) != Some(count))
            .map(|(agent, _)| agent)
            .chain(self.unattributed.keys().cloned())
            .collect();
        for agent in touched {
            self.rerank(&agent);
        }
    }

    /// Compiles the agents defined at run time in `app`'s zone.
    fn recompile(&mut self, app: &App) {
        for agent in self.overlays.values_mut().flatten() {
            match Agent::compile_overlay(&agent.spec, app.zone) {
                Ok(compiled) => *agent = Arc::new(compiled),
                // The definition compiled before and zones always parse: keep the old one.
                Err(fault) => {
                    tracing::warn!(app = %app.id, agent = %agent.id, message = fault.message, "cannot compile an agent in the app's new zone");
                }
            }
        }
        self.zone = app.zone;
        self.composed_for = 0;
    }

    /// Stores `session`'s new `record` and what it does to loads, idle clocks and the
    /// customer's previous agent, recording all of it in `writes`.
    pub(super) fn put_session(
        &mut self,
        app: SdkAppId,
        session: &SessionId,
        record: SessionRecord,
        effects: &Effects,
        now: SystemTime,
        writes: &mut Writes,
    ) {
        if effects.moves_seat() {
            if let Some((agent, confirmed)) = &effects.released
                && let Some(load) = self.loads.get_mut(agent)
            {
                let seats = effects.released_seats;
                load.active = load.active.saturating_sub(seats);
                load.weighted = load.weighted.saturating_sub(seats.saturating_sub(1));
                if *confirmed {
                    load.confirmed = load.confirmed.saturating_sub(seats);
                }
            }
            if let Some((agent, confirmed)) = &effects.taken {
                let seats = effects.taken_seats;
                let load = self.loads.entry(agent.clone()).or_default();
                load.active += seats;
                load.weighted += seats.saturating_sub(1);
                if *confirmed {
                    load.confirmed += seats;
                }
            }
        }
        if let Some((agent, at_ms)) = &effects.last_assigned {
            let at = from_ms(*at_ms);
            let load = self.loads.entry(agent.clone()).or_default();
            if load.last_assigned.is_none_or(|known| known < at) {
                load.last_assigned = Some(at);
                writes.record(|| [embedded::last_assigned(app, agent, at)]);
            }
        }
        let missed = effects
            .missed
            .as_ref()
            .map(|(agent, ms)| (agent, *ms, true));
        let accepted = effects
            .accepted
            .as_ref()
            .map(|(agent, ms)| (agent, *ms, false));
        for (agent, ms, miss) in missed.into_iter().chain(accepted) {
            let misses = self.misses.entry(agent.clone()).or_default();
            let changed = if miss {
                misses.missed(session.as_str(), ms)
            } else {
                misses.accepted(ms)
            };
            if changed {
                let record = misses.clone();
                writes.record(|| [embedded::misses(app, agent, &record)]);
                let kept = record.missed.len() as u32;
                self.loads.entry(agent.clone()).or_default().missed_kept = kept;
                // Told to the floor, which the walk reads it from, even when no seat moved.
                self.rerank(agent);
            }
        }
        if let Some((agent, at_ms)) = &effects.finished {
            let at = from_ms(*at_ms);
            let load = self.loads.entry(agent.clone()).or_default();
            if load.last_finished.is_none_or(|known| known < at) {
                load.last_finished = Some(at);
                writes.record(|| [embedded::last_finished(app, agent, at)]);
            }
        }
        if let Some((customer, agent, event_ms)) = &effects.history
            && self
                .history
                .get(customer)
                .is_none_or(|known| known.superseded_by(*event_ms))
        {
            let record = HistoryRecord {
                agent: agent.clone(),
                at_ms: to_ms(now),
                event_ms: Some(*event_ms),
            };
            writes.record(|| [embedded::history(app, customer, Some(&record))]);
            self.links.push_back((record.at_ms, customer.clone()));
            self.history.insert(customer.clone(), record);
        }
        // Each agent whose load or idle clock moved, once (a reservation's taken agent is
        // also the one whose clock moved).
        let released = effects.released.as_ref().map(|(agent, _)| agent);
        let taken = effects.taken.as_ref().map(|(agent, _)| agent);
        let touched = effects.last_assigned.as_ref().map(|(agent, _)| agent);
        if let Some(agent) = released {
            self.rerank(agent);
        }
        if let Some(agent) = taken.filter(|agent| Some(*agent) != released) {
            self.rerank(agent);
        }
        if let Some(agent) =
            touched.filter(|agent| Some(*agent) != released && Some(*agent) != taken)
        {
            self.rerank(agent);
        }
        writes.record(|| [embedded::session(app, session, Some(&record))]);
        self.deadlines
            .push(Reverse((record.expires_at_ms, session.clone())));
        if record.is_stray_end() {
            self.stray_ends
                .push_back((record.since_ms, session.clone()));
        }
        self.sessions.insert(session.clone(), Box::new(record));
        while self.stray_ends.len() > MAX_STRAY_ENDS {
            let Some((since_ms, stray)) = self.stray_ends.pop_front() else {
                break;
            };
            if self
                .sessions
                .get(&stray)
                .is_some_and(|record| record.is_stray_end() && record.since_ms == since_ms)
            {
                self.sessions.remove(&stray);
                writes.record(|| [embedded::session(app, &stray, None)]);
            }
        }
    }

    /// Notes the seat `effects` took anew for `session`, when `app` keeps fair share.
    pub(super) fn note_taken(
        &mut self,
        app: &App,
        session: &SessionId,
        effects: &Effects,
        writes: &mut Writes,
    ) {
        let (Some((sessions, window)), Some((agent, ms))) = (app.fair_share, &effects.took) else {
            return;
        };
        let oldest = ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let taken = self.taken.entry(agent.clone()).or_default();
        if taken.took(session.as_str(), *ms, oldest, sessions as usize) {
            let record = taken.clone();
            writes.record(|| [embedded::taken(app.id, agent, &record)]);
            self.loads.entry(agent.clone()).or_default().taken_kept = record.0.len() as u32;
            self.rerank(agent);
        }
    }

    /// Notes the wait `effects` measured for `session`, when `app` overflows on waits.
    pub(super) fn note_waited(
        &mut self,
        app: &App,
        session: &SessionId,
        effects: &Effects,
        writes: &mut Writes,
    ) {
        let Some((group, asked, wait)) = effects.waited.as_ref().filter(|_| app.tracks_waits)
        else {
            return;
        };
        let waits = self.waits.entry(group.clone()).or_default();
        if waits.waited(session.as_str(), *asked, *wait) {
            let record = waits.clone();
            writes.record(|| [embedded::waits(app.id, group, &record)]);
            let summary = crate::engine::WaitSummary::of(&record);
            self.wait_summaries
                .insert(crate::engine::waits_group(group), summary);
        }
    }

    /// Releases every seat whose deadline has passed by `now`, and forgets sessions and
    /// report identities remembered long enough.
    pub(super) fn expire(
        &mut self,
        app: SdkAppId,
        now: SystemTime,
        lifetimes: Lifetimes,
        writes: &mut Writes,
    ) {
        let now_ms = to_ms(now);
        while let Some(Reverse((due, _))) = self.deadlines.peek() {
            if *due > now_ms {
                break;
            }
            let Some(Reverse((due, session))) = self.deadlines.pop() else {
                break;
            };
            // Only the deadline the record still has: a later change pushed its own.
            let current = self.sessions.get(&session);
            if current.is_none_or(|record| record.expires_at_ms != due) {
                continue;
            }
            let Some(record) = self.sessions.remove(&session).map(|record| *record) else {
                continue;
            };
            let released = record.held();
            let released_seats = record.weight();
            match session::expire(record, lifetimes.max_session) {
                Some(record) => {
                    let effects = Effects {
                        released_seats: if released.is_some() {
                            released_seats
                        } else {
                            0
                        },
                        released,
                        ..Effects::default()
                    };
                    // Not journaled: the file keeps the record with the deadline that passed,
                    // and reading it back at start expires it the same way. Every reservation
                    // nobody confirms would otherwise cost a write of its own.
                    self.put_session(app, &session, record, &effects, now, &mut Writes(None));
                }
                None => writes.record(|| [embedded::session(app, &session, None)]),
            }
        }
        self.shrink();
        while let Some((until, _)) = self.seen_order.front() {
            if *until > now {
                break;
            }
            let Some((until, id)) = self.seen_order.pop_front() else {
                break;
            };
            if self.seen.get(&id) == Some(&until) {
                self.seen.remove(&id);
                writes.record(|| [embedded::seen(app, &id, None)]);
            }
        }
    }

    /// Gives back what the session table and the deadline heap no longer use once they
    /// hold less than a quarter of what they grew to (after a peak, or once a day's
    /// sessions are forgotten): tables never shrink by themselves.
    fn shrink(&mut self) {
        const SMALL: usize = 1024;
        if self.sessions.capacity() > SMALL && self.sessions.len() * 4 < self.sessions.capacity() {
            self.sessions.shrink_to(self.sessions.len() * 2);
        }
        if self.deadlines.capacity() > SMALL && self.deadlines.len() * 4 < self.deadlines.capacity()
        {
            self.deadlines.shrink_to(self.deadlines.len() * 2);
        }
    }

    /// Forgets the previous agents linked before `before_ms`; how many.
    pub(super) fn forget_links(
        &mut self,
        app: SdkAppId,
        before_ms: u64,
        writes: &mut Writes,
    ) -> usize {
        let mut forgotten = 0;
        while let Some((at_ms, _)) = self.links.front() {
            if *at_ms >= before_ms {
                break;
            }
            let Some((at_ms, customer)) = self.links.pop_front() else {
                break;
            };
            if self
                .history
                .get(&customer)
                .is_some_and(|link| link.at_ms == at_ms)
            {
                self.history.remove(&customer);
                writes.record(|| [embedded::history(app, &customer, None)]);
                forgotten += 1;
            }
        }
        if self.history.capacity() > 1024 && self.history.len() * 4 < self.history.capacity() {
            self.history.shrink_to(self.history.len() * 2);
            self.links.shrink_to_fit();
        }
        forgotten
    }

    /// Whether a report with this identity was recorded within the window.
    pub(super) fn seen(&self, id: &str, now: SystemTime) -> bool {
        self.seen.get(id).is_some_and(|until| *until > now)
    }

    /// Remembers a report's identity until `until`, forgetting the oldest first past
    /// [`MAX_SEEN`], and records both in `writes`.
    pub(super) fn remember(
        &mut self,
        app: SdkAppId,
        id: String,
        until: SystemTime,
        writes: &mut Writes,
    ) {
        writes.record(|| [embedded::seen(app, &id, Some(until))]);
        self.seen.insert(id.clone(), until);
        self.seen_order.push_back((until, id));
        while self.seen.len() > MAX_SEEN {
            let Some((until, id)) = self.seen_order.pop_front() else {
                break;
            };
            if self.seen.get(&id) == Some(&until) {
                self.seen.remove(&id);
                writes.record(|| [embedded::seen(app, &id, None)]);
            }
        }
    }
}

impl StateView for AppState {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        self.load_of(agent)
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.statuses.get(agent).map(|record| record.status())
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.customers.get(id).map(Box::as_ref)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        self.history
            .get(customer)
            .map(|record| (&record.agent, from_ms(record.at_ms)))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.changes
    }

    fn overlays(&self) -> &RosterChanges {
        &self.overlays
    }

    fn desk(&self) -> Option<&DeskRoster> {
        Some(&self.desk)
    }

    fn desk_hours(&self) -> Option<&crate::engine::schedule::Schedule> {
        self.desk_hours.as_ref()
    }

    fn misses(&self, agent: &AgentId) -> Option<&crate::engine::Misses> {
        self.misses.get(agent)
    }

    fn waits_of(&self, group: &str) -> Option<&crate::engine::Waits> {
        self.waits.get(group)
    }

    fn wait(
        &self,
        group: Option<handoff_core::id::GroupId>,
        now: SystemTime,
    ) -> Option<std::time::Duration> {
        self.wait_summaries
            .get(&group)?
            .estimate(crate::engine::unix_ms(now))
    }

    fn taken(&self, agent: &AgentId) -> Option<&crate::engine::Taken> {
        self.taken.get(agent)
    }

    fn available_since(&self, agent: &AgentId) -> Option<SystemTime> {
        self.statuses
            .get(agent)
            .filter(|record| record.status() == AgentStatus::Available)
            .map(|record| from_ms(record.at_ms()))
    }

    fn status_since(&self, agent: &AgentId) -> Option<SystemTime> {
        self.statuses.get(agent).and_then(|record| record.since())
    }

    fn status_source(&self, agent: &AgentId) -> Option<crate::engine::desk::Source> {
        self.statuses.get(agent).map(|record| {
            if record.by_desk() {
                crate::engine::desk::Source::Desk
            } else {
                crate::engine::desk::Source::Grpc
            }
        })
    }

    fn floor(&self) -> Option<&Floor> {
        self.floor.as_ref()
    }

    fn sessions(&self) -> Vec<LiveSession> {
        let mut live: Vec<LiveSession> = self
            .sessions
            .iter()
            .filter(|(_, record)| record.state().holds_seat())
            .map(|(session, record)| record.live(session))
            .collect();
        live.sort_by(|a, b| a.session.cmp(&b.session));
        live
    }
}
