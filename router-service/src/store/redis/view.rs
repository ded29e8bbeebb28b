//! Each replica's own view of an app's agents (loads, idle clocks, statuses, run-time roster
//! changes, and the floor ranked over them) and of the customers it routed, kept fresh from
//! the replies of the scripts: a decision is made over the view as it is, and its reserve
//! script sends back what changed since the view last looked (or everything, the first
//! time and whenever the stream no longer reaches back that far). One decision in flight
//! at a time is sent the changes and has its decision checked against them; the others
//! take the view as it is (one round trip behind at most). The reserve script still
//! re-checks capacity in Redis, so a view a moment behind costs at most a move down the
//! ranked list, never an agent over capacity.

use std::{sync::Arc, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId},
};
use redis::Value;

use super::snapshot::{pairs, text};
use crate::{
    engine::{
        Agent, AgentLoad, App, Customer, Floor, LiveSession, Misses, RosterChanges, StateView,
        Taken, Waits,
        desk::{self, DeskDelta, DeskRoster},
    },
    hash::FastMap,
    store::{
        StoreError,
        record::{self, StatusRecord, from_ms},
    },
};

/// A position in the changes stream: `<milliseconds>-<sequence>`.
type StreamId = (u64, u64);

fn stream_id(text: &str) -> Option<StreamId> {
    let (ms, seq) = text.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What a script sent to bring a view up to date.
pub(super) enum Update {
    /// Nothing: another decision of this replica is reading the stream.
    None,
    /// Every change since the view's last, in order.
    Delta {
        last: Option<StreamId>,
        entries: Vec<(StreamId, Vec<(String, String)>)>,
    },
    /// The whole app: active, last, statuses, roster, confirmed, desk, unattributed and
    /// finished hashes.
    Full {
        last: Option<StreamId>,
        hashes: Box<[Vec<(String, String)>; 12]>,
    },
}

impl Update {
    /// Reads the script's payload: `mode`, the newest change, then the entries or hashes.
    pub(super) fn parse(mode: &str, last: &str, payload: &[Value]) -> Result<Self, StoreError> {
        if mode == "none" {
            return Ok(Update::None);
        }
        let last = stream_id(last).filter(|id| *id != (0, 0));
        if mode == "delta" {
            let mut entries = Vec::new();
            if let Some(Value::Array(items)) = payload.first() {
                for item in items {
                    let Value::Array(parts) = item else {
                        continue;
                    };
                    let Some(id) = stream_id(&text(parts.first())?) else {
                        continue;
                    };
                    entries.push((id, pairs(parts.get(1))?));
                }
            }
            return Ok(Update::Delta { last, entries });
        }
        let hash = |n: usize| pairs(payload.get(n));
        Ok(Update::Full {
            last,
            hashes: Box::new([
                hash(0)?,
                hash(1)?,
                hash(2)?,
                hash(3)?,
                hash(4)?,
                hash(5)?,
                hash(6)?,
                hash(7)?,
                hash(8)?,
                hash(9)?,
                hash(10)?,
                hash(11)?,
            ]),
        })
    }
}

/// One replica's view of one app.
#[derive(Debug, Default)]
pub(super) struct View {
    seen: Option<StreamId>,
    /// Whether a decision of this replica is reading the stream for the view now.
    refreshing: bool,
    loads: FastMap<AgentId, AgentLoad>,
    statuses: FastMap<AgentId, StatusRecord>,
    /// Agents gRPC put or removed as stored, and compiled for the app as it was last used.
    specs: FastMap<AgentId, String>,
    overlays: RosterChanges,
    /// What roster syncs read from Desk.
    desk: DeskRoster,
    /// Desk's business hours compiled for the app, when it takes them.
    desk_hours: Option<crate::engine::schedule::Schedule>,
    /// Each agent's missed offers.
    misses: FastMap<AgentId, Misses>,
    /// The sessions each agent lately took (fair share).
    taken: FastMap<AgentId, Taken>,
    /// Each group's latest waits, by [`crate::engine::waits_key`].
    waits: FastMap<String, Waits>,
    /// The same summed ahead for estimates, by group.
    wait_summaries: FastMap<Option<handoff_core::id::GroupId>, crate::engine::WaitSummary>,
    /// What Desk counts beyond each member's seats, from the last status poll.
    unattributed: FastMap<AgentId, u32>,
    /// The roster's run-time changes as the engine sees them: the overlays with Desk's
    /// roster composed over the file.
    changes: RosterChanges,
    compiled_for: u64,
    roster_version: u64,
    floor: Option<Floor>,
    /// What this replica last read of each customer it routed, for deciding before the
    /// reserve script says whether it is still so (at most [`KNOWN_CUSTOMERS`]).
    known: FastMap<ClientUserId, Arc<Known>>,
}

/// How many customers' records a view keeps; past it, it forgets them all and learns them
/// again (a decision over a customer it does not know is checked like any other).
const KNOWN_CUSTOMERS: usize = 10_000;

/// A customer's history and profile records as a reply read them: the text the reserve
/// script compares with what it holds, and what the text says.
#[derive(Debug)]
pub(super) struct Known {
    pub(super) history_raw: String,
    pub(super) profile_raw: String,
    history: Option<(AgentId, SystemTime)>,
    profile: Option<Customer>,
}

impl Known {
    /// The records as read (`""`: none); `None` when there are none.
    pub(super) fn read(
        history_raw: String,
        profile_raw: String,
    ) -> Result<Option<Arc<Self>>, StoreError> {
        if history_raw.is_empty() && profile_raw.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(Self {
            history: super::previous_agent(&history_raw)?,
            profile: super::profile(&profile_raw),
            history_raw,
            profile_raw,
        })))
    }
}

impl View {
    /// Where to read the stream from for this view: `''` from nothing (the app whole).
    pub(super) fn seen(&self) -> String {
        self.seen
            .map(|(ms, seq)| format!("{ms}-{seq}"))
            .unwrap_or_default()
    }

    /// Where a decision should read the stream from, or `None` when another decision of
    /// this replica is reading it already and the view has been filled once (the decision
    /// then takes the view as it is, at most one round trip behind, and the reserve script
    /// still has the last word on capacity). A `Some` claims the reading until
    /// [`View::refreshed`].
    pub(super) fn claim(&mut self) -> Option<String> {
        if self.refreshing && self.seen.is_some() {
            return None;
        }
        self.refreshing = true;
        Some(self.seen())
    }

    /// What this replica last read of `customer`'s records (`None`: none, or not known).
    pub(super) fn known(&self, customer: &ClientUserId) -> Option<Arc<Known>> {
        self.known.get(customer).cloned()
    }

    /// Remembers what a reply read of `customer`'s records.
    pub(super) fn learn(&mut self, customer: &ClientUserId, known: Option<Arc<Known>>) {
        match known {
            None => {
                self.known.remove(customer);
            }
            Some(known) => {
                if self.known.len() >= KNOWN_CUSTOMERS && !self.known.contains_key(customer) {
                    self.known.clear();
                }
                self.known.insert(customer.clone(), known);
            }
        }
    }

    /// Ends a reading claimed by [`View::claim`], whether or not it came back.
    pub(super) fn refreshed(&mut self) {
        self.refreshing = false;
    }

    /// Brings the view up to date with `update`, then makes sure its roster is compiled and
    /// its floor ranked for `app` as it is now.
    pub(super) fn apply(
        &mut self,
        app: &App,
        update: Update,
        compile: impl Fn(&AgentId, &str) -> Option<Arc<Agent>>,
    ) {
        match update {
            Update::None => {}
            Update::Full { last, hashes } => {
                // Taken whole even if a concurrent call applied something newer: the view then
                // reads again from `last`, and what came after is applied once more.
                let [
                    active,
                    assigned,
                    statuses,
                    roster,
                    confirmed,
                    desk,
                    unattributed,
                    finished,
                    misses,
                    taken,
                    weighted,
                    waits,
                ] = *hashes;
                let mut loads: FastMap<AgentId, AgentLoad> = FastMap::default();
                for (agent, count) in active {
                    if let Ok(agent) = AgentId::parse(agent) {
                        loads.entry(agent).or_default().active = count.parse().unwrap_or(0);
                    }
                }
                for (agent, ms) in assigned {
                    if let Ok(agent) = AgentId::parse(agent) {
                        loads.entry(agent).or_default().last_assigned =
                            ms.parse().ok().map(from_ms);
                    }
                }
                self.misses = misses
                    .into_iter()
                    .filter_map(|(agent, raw)| {
                        Some((AgentId::parse(agent).ok()?, parse_misses(&raw)?))
                    })
                    .collect();
                self.taken = taken
                    .into_iter()
                    .filter_map(|(agent, raw)| {
                        Some((
                            AgentId::parse(agent).ok()?,
                            record::decode(raw.as_bytes()).ok()?,
                        ))
                    })
                    .collect();
                for (agent, ms) in finished {
                    if let Ok(agent) = AgentId::parse(agent) {
                        loads.entry(agent).or_default().last_finished =
                            ms.parse().ok().map(from_ms);
                    }
                }
                for (agent, taken) in &self.taken {
                    loads.entry(agent.clone()).or_default().taken_kept = taken.0.len() as u32;
                }
                for (agent, misses) in &self.misses {
                    loads.entry(agent.clone()).or_default().missed_kept =
                        misses.missed.len() as u32;
                }
                for (agent, count) in weighted {
                    if let Ok(agent) = AgentId::parse(agent) {
                        loads.entry(agent).or_default().weighted = count.parse().unwrap_or(0);
                    }
                }
                self.waits = waits
                    .into_iter()
                    .filter_map(|(group, raw)| Some((group, record::decode(raw.as_bytes()).ok()?)))
                    .collect();
                self.wait_summaries = self
                    .waits
                    .iter()
                    .map(|(key, waits)| {
                        (
                            crate::engine::waits_group(key),
                            crate::engine::WaitSummary::of(waits),
                        )
                    })
                    .collect();
                for (agent, count) in confirmed {
                    if let Ok(agent) = AgentId::parse(agent) {
                        loads.entry(agent).or_default().confirmed = count.parse().unwrap_or(0);
                    }
                }
                let statuses: FastMap<AgentId, StatusRecord> = statuses
                    .into_iter()
                    .filter_map(|(agent, status)| {
                        let status = record::decode::<StatusRecord>(status.as_bytes()).ok()?;
                        Some((AgentId::parse(agent).ok()?, status))
                    })
                    .collect();
                let specs: FastMap<AgentId, String> = roster
                    .into_iter()
                    .filter_map(|(agent, spec)| Some((AgentId::parse(agent).ok()?, spec)))
                    .collect();
                if specs != self.specs {
                    // A new roster: compiled and ranked again below.
                    self.specs = specs;
                    self.compiled_for = 0;
                }
                let desk = desk_roster(desk);
                if desk != self.desk {
                    self.desk = desk;
                    self.compiled_for = 0;
                }
                let unattributed: FastMap<AgentId, u32> = unattributed
                    .into_iter()
                    .filter_map(|(agent, n)| Some((AgentId::parse(agent).ok()?, n.parse().ok()?)))
                    .collect();
                // Only the agents whose load or status may differ are told to the floor.
                let touched: Vec<AgentId> = self
                    .loads
                    .keys()
                    .chain(loads.keys())
                    .chain(self.statuses.keys())
                    .chain(statuses.keys())
                    .chain(self.unattributed.keys())
                    .chain(unattributed.keys())
                    .cloned()
                    .collect();
                self.loads = loads;
                self.statuses = statuses;
                self.unattributed = unattributed;
                if let Some(floor) = self
                    .floor
                    .as_mut()
                    .filter(|floor| floor.is_for(app, self.roster_version))
                {
                    for agent in touched {
                        let load = load_of(&self.loads, &self.unattributed, &agent);
                        let status = self.statuses.get(&agent).map(|record| record.status());
                        floor.update(&agent, load, status);
                    }
                }
                self.seen = last;
            }
            Update::Delta { last, entries } => {
                for (id, fields) in entries {
                    if self.seen.is_some_and(|seen| id <= seen) {
                        continue;
                    }
                    self.take(fields, app);
                    self.seen = Some(id);
                }
                if last > self.seen {
                    self.seen = last;
                }
            }
        }
        self.prepare(app, compile);
    }

    /// One change from the stream.
    fn take(&mut self, fields: Vec<(String, String)>, app: &App) {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        if let Some(delta) = field("desk") {
            if let Ok(delta) = record::decode::<DeskDelta>(delta.as_bytes()) {
                self.desk.apply(&delta);
            }
            // Composed and ranked again before the next decision.
            self.compiled_for = 0;
            return;
        }
        if let Some(group) = field("waits") {
            let key = crate::engine::waits_group(group);
            match field("record").map(|raw| record::decode::<Waits>(raw.as_bytes())) {
                Some(Ok(waits)) => {
                    self.wait_summaries
                        .insert(key, crate::engine::WaitSummary::of(&waits));
                    self.waits.insert(group.to_owned(), waits);
                }
                _ => {
                    self.wait_summaries.remove(&key);
                    self.waits.remove(group);
                }
            }
            return;
        }
        if let Some(table) = field("unattributed") {
            let table: std::collections::BTreeMap<String, u32> =
                record::decode(table.as_bytes()).unwrap_or_default();
            let table: FastMap<AgentId, u32> = table
                .into_iter()
                .filter_map(|(agent, n)| Some((AgentId::parse(agent).ok()?, n)))
                .collect();
            let old = std::mem::replace(&mut self.unattributed, table);
            let touched: Vec<AgentId> = old
                .into_keys()
                .chain(self.unattributed.keys().cloned())
                .collect();
            for agent in touched {
                self.tell_floor(app, &agent);
            }
            return;
        }
        let Some(Ok(agent)) = field("agent").map(AgentId::parse) else {
            return;
        };
        // A load announcement carries the fields that changed; the others are as they were.
        let loaded = [
            "active",
            "weighted",
            "confirmed",
            "last",
            "finished",
            "taken",
            "misses",
        ]
        .iter()
        .any(|name| field(name).is_some());
        if loaded {
            let load = self.loads.entry(agent.clone()).or_default();
            let count = |value: &str| value.parse().unwrap_or(0);
            let time = |value: &str| value.parse().ok().map(from_ms);
            if let Some(active) = field("active") {
                load.active = count(active);
            }
            if let Some(weighted) = field("weighted") {
                load.weighted = count(weighted);
            }
            if let Some(confirmed) = field("confirmed") {
                load.confirmed = count(confirmed);
            }
            if let Some(last) = field("last") {
                load.last_assigned = time(last);
            }
            if let Some(finished) = field("finished") {
                load.last_finished = time(finished);
            }
            if let Some(raw) = field("taken") {
                match record::decode::<Taken>(raw.as_bytes()) {
                    Ok(taken) if !raw.is_empty() => self.taken.insert(agent.clone(), taken),
                    _ => self.taken.remove(&agent),
                };
            }
            if let Some(raw) = field("misses") {
                match parse_misses(raw) {
                    Some(misses) => self.misses.insert(agent.clone(), misses),
                    None => self.misses.remove(&agent),
                };
            }
            let taken_kept = self.taken.get(&agent).map_or(0, |t| t.0.len() as u32);
            let missed_kept = self.misses.get(&agent).map_or(0, |m| m.missed.len() as u32);
            let load = self.loads.entry(agent.clone()).or_default();
            load.taken_kept = taken_kept;
            load.missed_kept = missed_kept;
        }
        if let Some(status) = field("status") {
            match record::decode::<StatusRecord>(status.as_bytes()) {
                Ok(status) => self.statuses.insert(agent.clone(), status),
                Err(_) => self.statuses.remove(&agent),
            };
        }
        if let Some(spec) = field("roster") {
            self.specs.insert(agent.clone(), spec.to_owned());
            // Recompiled and ranked again before the next decision.
            self.compiled_for = 0;
            return;
        }
        self.tell_floor(app, &agent);
    }

    /// Tells the floor `agent`'s load and status as the view has them now.
    fn tell_floor(&mut self, app: &App, agent: &AgentId) {
        let load = load_of(&self.loads, &self.unattributed, agent);
        let status = self.statuses.get(agent).map(|record| record.status());
        if let Some(floor) = self
            .floor
            .as_mut()
            .filter(|floor| floor.is_for(app, self.roster_version))
        {
            floor.update(agent, load, status);
        }
    }

    /// What Desk counts beyond `agent`'s seats.
    pub(super) fn unattributed(&self, agent: &AgentId) -> u32 {
        self.unattributed.get(agent).copied().unwrap_or(0)
    }

    /// Compiles the roster changes for `app` if the app or the changes are new to the view,
    /// and ranks the floor again if it is stale.
    pub(super) fn prepare(
        &mut self,
        app: &App,
        compile: impl Fn(&AgentId, &str) -> Option<Arc<Agent>>,
    ) {
        if self.compiled_for != app.version() {
            self.overlays = self
                .specs
                .iter()
                .map(|(id, spec)| (id.clone(), compile(id, spec)))
                .collect();
            self.changes = desk::compose(app, &self.overlays, &self.desk);
            self.desk_hours = desk::hours(app, &self.desk);
            self.compiled_for = app.version();
            self.roster_version += 1;
        }
        if !self
            .floor
            .as_ref()
            .is_some_and(|floor| floor.is_for(app, self.roster_version))
        {
            self.floor = None;
            let floor = Floor::build(app, self.roster_version, &Looked::bare(self));
            self.floor = Some(floor);
        }
    }
}

/// A decision's look at the state: the view, and what was read of this customer.
pub(super) struct Looked<'a> {
    pub(super) view: &'a View,
    pub(super) known: Option<Arc<Known>>,
    pub(super) customer_id: Option<&'a ClientUserId>,
    pub(super) sessions: Vec<LiveSession>,
}

impl<'a> Looked<'a> {
    fn bare(view: &'a View) -> Self {
        Self {
            view,
            known: None,
            customer_id: None,
            sessions: Vec::new(),
        }
    }
}

/// `agent`'s load: the seats it holds, and what Desk counts beyond them.
fn load_of(
    loads: &FastMap<AgentId, AgentLoad>,
    unattributed: &FastMap<AgentId, u32>,
    agent: &AgentId,
) -> AgentLoad {
    let mut load = loads.get(agent).copied().unwrap_or_default();
    // Empty unless Desk sync counts sessions beyond the seats: no second lookup then.
    if !unattributed.is_empty()
        && let Some(extra) = unattributed.get(agent)
    {
        load.unattributed = *extra;
        load.active = load.active.saturating_add(*extra);
    }
    load
}

/// An agent's missed offers as the scripts keep them: [`Misses`]' JSON (anything else,
/// such as the `"<accepted>;<missed>,..."` of earlier versions, reads as none).
fn parse_misses(raw: &str) -> Option<Misses> {
    record::decode(raw.as_bytes()).ok()
}

/// Who set a live status.
fn status_source(record: StatusRecord) -> desk::Source {
    if record.by_desk() {
        desk::Source::Desk
    } else {
        desk::Source::Grpc
    }
}

/// Desk's roster from the `desk` hash: each member by key, the groups under
/// [`super::DESK_GROUPS`]; unreadable fields are skipped.
fn desk_roster(hash: Vec<(String, String)>) -> DeskRoster {
    let mut roster = DeskRoster::default();
    for (key, value) in hash {
        if key == super::DESK_GROUPS {
            roster.groups = record::decode(value.as_bytes()).ok();
        } else if key == super::DESK_HOURS {
            roster.hours = record::decode(value.as_bytes()).unwrap_or_default();
        } else if let Ok(member) = record::decode(value.as_bytes()) {
            roster.members.insert(key, member);
        }
    }
    roster
}

impl StateView for Looked<'_> {
    fn load(&self, agent: &AgentId) -> AgentLoad {
        load_of(&self.view.loads, &self.view.unattributed, agent)
    }

    fn status(&self, agent: &AgentId) -> Option<AgentStatus> {
        self.view.statuses.get(agent).map(|record| record.status())
    }

    fn customer(&self, id: &ClientUserId) -> Option<&Customer> {
        self.known
            .as_ref()?
            .profile
            .as_ref()
            .filter(|customer| &customer.id == id)
    }

    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)> {
        if self.customer_id != Some(customer) {
            return None;
        }
        let (agent, at) = self.known.as_ref()?.history.as_ref()?;
        Some((agent, *at))
    }

    fn roster_changes(&self) -> &RosterChanges {
        &self.view.changes
    }

    fn overlays(&self) -> &RosterChanges {
        &self.view.overlays
    }

    fn desk(&self) -> Option<&DeskRoster> {
        Some(&self.view.desk)
    }

    fn desk_hours(&self) -> Option<&crate::engine::schedule::Schedule> {
        self.view.desk_hours.as_ref()
    }

    fn misses(&self, agent: &AgentId) -> Option<&Misses> {
        self.view.misses.get(agent)
    }

    fn waits_of(&self, key: &str) -> Option<&Waits> {
        self.view.waits.get(key)
    }

    fn wait(
        &self,
        group: Option<handoff_core::id::GroupId>,
        now: SystemTime,
    ) -> Option<std::time::Duration> {
        self.view
            .wait_summaries
            .get(&group)?
            .estimate(crate::engine::unix_ms(now))
    }

    fn taken(&self, agent: &AgentId) -> Option<&Taken> {
        self.view.taken.get(agent)
    }

    fn available_since(&self, agent: &AgentId) -> Option<SystemTime> {
        self.view
            .statuses
            .get(agent)
            .filter(|record| record.status() == AgentStatus::Available)
            .map(|record| from_ms(record.at_ms()))
    }

    fn status_since(&self, agent: &AgentId) -> Option<SystemTime> {
        self.view
            .statuses
            .get(agent)
            .and_then(|record| record.since())
    }

    fn status_source(&self, agent: &AgentId) -> Option<desk::Source> {
        self.view
            .statuses
            .get(agent)
            .map(|record| status_source(*record))
    }

    fn sessions(&self) -> Vec<LiveSession> {
        self.sessions.clone()
    }

    fn floor(&self) -> Option<&Floor> {
        self.view.floor.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{self, app_id};

    fn delta(last: StreamId) -> Update {
        Update::Delta {
            last: Some(last),
            entries: Vec::new(),
        }
    }

    #[test]
    fn one_decision_at_a_time_reads_the_stream_once_the_view_is_filled()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let app = catalog.app(app_id()?).ok_or("no app")?;
        let mut view = View::default();

        // Never filled: every decision reads the app whole, claimed or not.
        assert_eq!(view.claim().as_deref(), Some(""));
        assert_eq!(view.claim().as_deref(), Some(""));
        view.apply(app, delta((5, 0)), |_, _| None);
        view.refreshed();

        // Filled: the first decision reads from where the view is, the next ones in flight
        // with it read nothing, until the first is done.
        assert_eq!(view.claim().as_deref(), Some("5-0"));
        assert_eq!(view.claim(), None);
        assert_eq!(view.claim(), None);
        view.apply(app, delta((7, 1)), |_, _| None);
        view.refreshed();
        assert_eq!(view.claim().as_deref(), Some("7-1"));

        // A read that came back with nothing leaves the view where it was.
        view.apply(app, Update::None, |_, _| None);
        assert_eq!(view.seen(), "7-1");
        Ok(())
    }

    #[test]
    fn a_load_announcement_changes_the_fields_it_carries_and_leaves_the_others()
    -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let app = catalog.app(app_id()?).ok_or("no app")?;
        let agent = AgentId::parse("ann@example.com")?;
        let entry = |id: StreamId, fields: &[(&str, &str)]| {
            let mut all = vec![("agent".to_owned(), agent.to_string())];
            all.extend(
                fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            (id, all)
        };
        let mut view = View::default();
        let entries = vec![
            entry(
                (1, 0),
                &[("active", "2"), ("confirmed", "1"), ("last", "5000")],
            ),
            // A reservation: a seat and the idle clock.
            entry((2, 0), &[("active", "3"), ("last", "9000")]),
            // A session that ended: the time it finished.
            entry((3, 0), &[("finished", "9500")]),
        ];
        view.apply(
            app,
            Update::Delta {
                last: Some((3, 0)),
                entries,
            },
            |_, _| None,
        );
        let load = view.loads.get(&agent).copied().ok_or("no load")?;
        assert_eq!((load.active, load.confirmed), (3, 1));
        assert_eq!(load.last_assigned, Some(from_ms(9000)));
        assert_eq!(load.last_finished, Some(from_ms(9500)));
        Ok(())
    }
}
