//! What the engine reads of the router's mutable state, through [`StateView`]: agents' live
//! load and status, customers pushed by internal systems, each customer's previous agent,
//! and agents added, changed or removed at run time.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::SystemTime,
};

use handoff_core::{
    config::{AgentStatus, CustomerConfig},
    id::{AgentId, ClientUserId, SessionId},
};

use super::{Agent, App};

/// An agent's live load: the sessions whose seat it holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentLoad {
    /// Seats occupied, what capacity counts: the seats held, provisional and confirmed
    /// (a session weighing more than one seat counts its `weight`), and the unattributed
    /// sessions.
    pub active: u32,
    /// Of those, the seats held beyond one per session (weighted sessions'): the sessions
    /// held are `active - unattributed - weighted`.
    pub weighted: u32,
    /// Of those, the sessions Desk counts beyond the seats held (with Desk sync): Tencent
    /// gave them to the agent without handoff knowing which.
    pub unattributed: u32,
    /// Of those, the seats of sessions a session event confirmed.
    pub confirmed: u32,
    /// When the agent was last assigned a session; `None` if never.
    pub last_assigned: Option<SystemTime>,
    /// When a session the agent served last ended or moved away (by the router's clock),
    /// what wrap-up counts from; `None` if never.
    pub last_finished: Option<SystemTime>,
    /// How many sessions the agent's fair-share record ([`Taken`]) keeps: below the app's
    /// `fair_share.sessions`, the record need not be read.
    pub taken_kept: u32,
    /// How many missed offers the agent's record ([`Misses`]) keeps: below the app's
    /// `max_missed`, the agent cannot be parked and the record need not be read.
    pub missed_kept: u32,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Reserved by an answer, not yet confirmed by an event.
    Provisional,
    /// An event says who serves it.
    Confirmed,
    /// Ended (or the transfer failed): it holds no seat.
    Ended,
    /// Its seat ran out (never confirmed, or never seen ending).
    Expired,
}

impl SessionState {
    /// The name logs and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Provisional => "provisional",
            SessionState::Confirmed => "confirmed",
            SessionState::Ended => "ended",
            SessionState::Expired => "expired",
        }
    }

    /// Whether a session in this state holds its agent's seat.
    pub fn holds_seat(self) -> bool {
        matches!(self, SessionState::Provisional | SessionState::Confirmed)
    }
}

/// A session as the router knows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveSession {
    /// The session, by Tencent's `SessionId`.
    pub session: SessionId,
    /// Where it stands.
    pub state: SessionState,
    /// The agent whose seat it holds.
    pub agent: Option<AgentId>,
    /// The customer, when known.
    pub customer: Option<ClientUserId>,
    /// Since when it stands there.
    pub since: SystemTime,
    /// When the seat runs out if nothing else happens.
    pub expires_at: SystemTime,
    /// The rule that routed it, when handoff answered it.
    pub rule: Option<String>,
    /// How many of its agent's seats it takes.
    pub weight: u32,
}

/// An agent's missed offers: for each of the latest sessions handoff offered them (reserved
/// them for) that went to someone else, when it was offered (the router's clock, ms), and
/// when the latest offer they accepted was made. A set and a maximum, so that any order and
/// repetition of the same events gives the same record: misses offered at or before the
/// last accepted offer are dropped, and only the newest
/// [`handoff_core::config::MAX_MISSES`] kept. Also the stored form (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Misses {
    /// The offers missed after the last accepted one: session -> when offered.
    #[serde(default)]
    pub missed: BTreeMap<String, u64>,
    /// When the latest offer the agent accepted was made.
    #[serde(default)]
    pub accepted_ms: u64,
}

impl Misses {
    /// Counts the offer of `session` made at `ms` as missed; whether the record changed.
    pub fn missed(&mut self, session: &str, ms: u64) -> bool {
        if ms <= self.accepted_ms || self.missed.contains_key(session) {
            return false;
        }
        self.missed.insert(session.to_owned(), ms);
        let keep = handoff_core::config::MAX_MISSES as usize;
        while self.missed.len() > keep {
            let oldest = self
                .missed
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(session, _)| session.clone());
            match oldest {
                Some(session) => self.missed.remove(&session),
                None => break,
            };
        }
        true
    }

    /// Notes an offer made at `ms` accepted; whether the record changed.
    pub fn accepted(&mut self, ms: u64) -> bool {
        if ms <= self.accepted_ms {
            return false;
        }
        self.accepted_ms = ms;
        self.missed.retain(|_, missed| *missed > ms);
        true
    }

    /// The misses in a row offered after `since_ms` (the agent last set available), and
    /// the latest of them.
    pub fn streak(&self, since_ms: u64) -> (u32, Option<u64>) {
        let after = self.missed.values().filter(|ms| **ms > since_ms);
        let (count, latest) = after.fold((0u32, None), |(count, latest), ms| {
            (count + 1, latest.max(Some(*ms)))
        });
        (count, latest)
    }
}

/// The sessions an agent lately took a seat for (session id -> when, the router's ms):
/// what fair share counts. Keyed by session, so that a reservation and the event
/// confirming it count once; only the newest `keep` within the window are kept, newest by
/// time, then session id. Also the stored form (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Taken(pub BTreeMap<String, u64>);

impl Taken {
    /// Notes `session` taken at `ms`, keeping the newest `keep` no older than `oldest_ms`;
    /// whether the record changed.
    pub fn took(&mut self, session: &str, ms: u64, oldest_ms: u64, keep: usize) -> bool {
        if self.0.contains_key(session) {
            return false;
        }
        self.0.insert(session.to_owned(), ms);
        self.0.retain(|_, at| *at >= oldest_ms);
        while self.0.len() > keep {
            let oldest = self
                .0
                .iter()
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
                .map(|(session, _)| session.clone());
            match oldest {
                Some(session) => self.0.remove(&session),
                None => break,
            };
        }
        true
    }

    /// How many were taken after `since_ms`.
    pub fn since(&self, since_ms: u64) -> usize {
        self.0.values().filter(|at| **at > since_ms).count()
    }
}

/// A group's latest waits (what `overflow_when.wait_above` reads): for each of the latest
/// sessions handoff reserved into the group that an agent then took, when the user asked
/// and how long after Tencent's event said an agent first served it (session id -> (asked
/// ms, wait ms), both by the reporter's clock). Keyed by session and trimmed to the newest
/// [`Waits::KEEP`] by when asked, then session id, so that any order and repetition of the
/// same events gives the same record. Also the stored form (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Waits(pub BTreeMap<String, (u64, u64)>);

impl Waits {
    /// How many waits a group's record keeps.
    pub const KEEP: usize = 32;
    /// How fast an old wait stops counting: its weight halves every this long.
    pub const HALF_LIFE_MS: f64 = 300_000.0;
    /// Waits asked longer ago than this do not count at all.
    pub const HORIZON_MS: u64 = 3_600_000;

    /// Notes that `session`, asked at `asked_ms`, waited `wait_ms` (of its waits, the
    /// shortest counts: until the first agent served it); whether the record changed.
    pub fn waited(&mut self, session: &str, asked_ms: u64, wait_ms: u64) -> bool {
        if let Some((_, known)) = self.0.get_mut(session) {
            if wait_ms >= *known {
                return false;
            }
            *known = wait_ms;
            return true;
        }
        self.0.insert(session.to_owned(), (asked_ms, wait_ms));
        while self.0.len() > Self::KEEP {
            let oldest = self
                .0
                .iter()
                .min_by(|a, b| a.1.0.cmp(&b.1.0).then_with(|| a.0.cmp(b.0)))
                .map(|(session, _)| session.clone());
            match oldest {
                Some(session) => self.0.remove(&session),
                None => break,
            };
        }
        true
    }

    /// The estimated wait at `now_ms` (see [`WaitSummary::estimate`]).
    pub fn estimate(&self, now_ms: u64) -> Option<std::time::Duration> {
        WaitSummary::of(self).estimate(now_ms)
    }
}

/// A group's waits summed ahead, so that an estimate costs a search of 32 times, not 32
/// powers: by when asked, and from each one on, the sums of `wᵢ·waitᵢ` and `wᵢ` with
/// `wᵢ = 2^((askedᵢ − newest) / HALF_LIFE)`. Weighing by age from now,
/// `2^(−(now − askedᵢ) / HALF_LIFE)`, is the same weight times `2^(−(now − newest) /
/// HALF_LIFE)`, which the mean cancels: only which waits are within the horizon depends on
/// the time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WaitSummary {
    asked: Vec<u64>,
    from: Vec<(f64, f64)>,
}

impl WaitSummary {
    /// The sums of `waits`.
    pub fn of(waits: &Waits) -> Self {
        let mut entries: Vec<(u64, u64)> = waits.0.values().copied().collect();
        entries.sort_unstable();
        let newest = entries.last().map_or(0, |(asked, _)| *asked);
        let mut from = vec![(0.0, 0.0); entries.len()];
        let (mut sum, mut weights) = (0.0, 0.0);
        for (n, (asked, wait)) in entries.iter().enumerate().rev() {
            let weight = ((*asked as f64 - newest as f64) / Waits::HALF_LIFE_MS).exp2();
            sum += weight * *wait as f64;
            weights += weight;
            from[n] = (sum, weights);
        }
        Self {
            asked: entries.into_iter().map(|(asked, _)| asked).collect(),
            from,
        }
    }

    /// The estimated wait at `now_ms`: the mean of the waits asked within
    /// [`Waits::HORIZON_MS`], each weighted `2^(−age / HALF_LIFE)` by its age (now less
    /// when the user asked); `None` when none counts.
    pub fn estimate(&self, now_ms: u64) -> Option<std::time::Duration> {
        let cutoff = now_ms.saturating_sub(Waits::HORIZON_MS);
        let first = self.asked.partition_point(|asked| *asked < cutoff);
        let (sum, weights) = self.from.get(first)?;
        (*weights > 0.0).then(|| std::time::Duration::from_millis((sum / weights).round() as u64))
    }
}

/// `at` as Unix milliseconds (0 before the epoch).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The group a waits key ([`waits_key`]) is for: `None` for every agent's (`all`), and
/// for a key no group has.
pub fn waits_group(key: &str) -> Option<handoff_core::id::GroupId> {
    key.parse()
        .ok()
        .and_then(|id| handoff_core::id::GroupId::new(id).ok())
}

/// The key a group's waits are kept under: its id, or `all` for a target of every agent.
pub fn waits_key(group: Option<handoff_core::id::GroupId>) -> String {
    group.map_or_else(|| "all".to_owned(), |group| group.to_string())
}

impl AgentLoad {
    /// The sessions whose seats the agent holds (weighted ones once), what Desk counts.
    pub fn sessions_held(&self) -> u32 {
        self.active
            .saturating_sub(self.unattributed)
            .saturating_sub(self.weighted)
    }
}

/// Agents changed at run time: `Some` replaces or adds a definition, `None` removes one.
pub type RosterChanges = BTreeMap<AgentId, Option<Arc<Agent>>>;

/// Read access to the router's mutable state for one app.
pub trait StateView {
    /// The load of `agent`; an agent the store has never seen has none.
    fn load(&self, agent: &AgentId) -> AgentLoad;
    /// The status set at run time, overriding the agent's definition.
    fn status(&self, agent: &AgentId) -> Option<AgentStatus>;
    /// A customer pushed by an internal system.
    fn customer(&self, id: &ClientUserId) -> Option<&Customer>;
    /// The agent last assigned to `customer`, and when.
    fn last_agent(&self, customer: &ClientUserId) -> Option<(&AgentId, SystemTime)>;
    /// Agents added, changed or removed at run time, as the engine routes over them: what
    /// gRPC put or removed, with Desk's roster composed over the file.
    fn roster_changes(&self) -> &RosterChanges;
    /// What gRPC put or removed alone, as given.
    fn overlays(&self) -> &RosterChanges {
        self.roster_changes()
    }
    /// What roster syncs read from Desk, for a store that syncs.
    fn desk(&self) -> Option<&super::desk::DeskRoster> {
        None
    }
    /// The sessions `agent` lately took a seat for, when fair share keeps them.
    fn taken(&self, agent: &AgentId) -> Option<&Taken> {
        let _ = agent;
        None
    }
    /// The latest waits of the group keyed `key` ([`waits_key`]), when the store keeps
    /// them.
    fn waits_of(&self, key: &str) -> Option<&Waits> {
        let _ = key;
        None
    }
    /// The estimated wait of sessions routed to `group` (see [`Waits::estimate`]), when
    /// the store keeps waits and has any.
    fn wait(
        &self,
        group: Option<handoff_core::id::GroupId>,
        now: SystemTime,
    ) -> Option<std::time::Duration> {
        let now_ms = unix_ms(now);
        self.waits_of(&waits_key(group))?.estimate(now_ms)
    }
    /// `agent`'s missed offers, when it has any.
    fn misses(&self, agent: &AgentId) -> Option<&Misses> {
        let _ = agent;
        None
    }
    /// When `agent`'s status was last set available, if its live status is that.
    fn available_since(&self, agent: &AgentId) -> Option<SystemTime> {
        let _ = agent;
        None
    }
    /// When `agent`'s live status was set; `None` when the definition's status stands (or
    /// the record predates timed statuses).
    fn status_since(&self, agent: &AgentId) -> Option<SystemTime> {
        let _ = agent;
        None
    }
    /// Who set `agent`'s live status (the Desk sync or a caller of the API); `None` when
    /// the definition's status stands.
    fn status_source(&self, agent: &AgentId) -> Option<super::desk::Source> {
        let _ = agent;
        None
    }
    /// The business hours Desk gives groups without hours of their own (see
    /// [`super::desk::hours`]).
    fn desk_hours(&self) -> Option<&super::schedule::Schedule> {
        None
    }
    /// The sessions that hold a seat; a store that must fetch them (Redis) returns them only
    /// when the look asked for them.
    fn sessions(&self) -> Vec<LiveSession> {
        Vec::new()
    }
    /// The app's agents ranked ahead of time, when the store keeps them so.
    fn floor(&self) -> Option<&super::Floor> {
        None
    }
}

/// What is known of a customer: pushed over gRPC, listed in the config, or nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    /// Tencent's ClientUserId.
    pub id: ClientUserId,
    /// Whether anything is known beyond the id.
    pub known: bool,
    /// Service tier.
    pub tier: Option<String>,
    /// Preferred language.
    pub language: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Free tags.
    pub tags: Vec<String>,
    /// The agent who owns the relationship.
    pub owner: Option<AgentId>,
    /// Free attributes, sorted by key: a list rather than a map, since a million known
    /// customers with a few attributes each should not cost a tree node apiece.
    pub attributes: Vec<(String, String)>,
}

impl Customer {
    /// A customer nothing is known about.
    pub fn unknown(id: ClientUserId) -> Self {
        Self {
            id,
            known: false,
            tier: None,
            language: None,
            region: None,
            tags: Vec::new(),
            owner: None,
            attributes: Vec::new(),
        }
    }

    /// A customer from the config file or a gRPC upsert.
    pub fn from_config(config: &CustomerConfig) -> Self {
        Self {
            id: config.id.clone(),
            known: true,
            tier: config.tier.clone(),
            language: config.language.clone(),
            region: config.region.clone(),
            tags: config.tags.clone(),
            owner: config.owner.clone(),
            attributes: config
                .attributes
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        }
    }
}

/// The agent `id` of the app as it stands (run-time changes applied), if it is one.
pub fn agent<'a>(app: &'a App, changes: &'a RosterChanges, id: &AgentId) -> Option<&'a Arc<Agent>> {
    match changes.get(id) {
        Some(change) => change.as_ref(),
        None => app.agent(id),
    }
}

/// The app's agents as they stand: the config's, with run-time changes applied, in config
/// order and then added agents by id. The index is each agent's stable position.
pub fn roster<'a>(app: &'a App, changes: &'a RosterChanges) -> Vec<&'a Arc<Agent>> {
    let mut agents = Vec::with_capacity(app.agents().len() + changes.len());
    let mut configured = HashSet::with_capacity(if changes.is_empty() {
        0
    } else {
        app.agents().len()
    });
    for agent in app.agents() {
        if !changes.is_empty() {
            configured.insert(&agent.id);
        }
        match changes.get(&agent.id) {
            None => agents.push(agent),
            Some(Some(changed)) => agents.push(changed),
            Some(None) => {}
        }
    }
    for (id, change) in changes {
        if let Some(added) = change
            && !configured.contains(id)
        {
            agents.push(added);
        }
    }
    agents
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Misses, Taken, Waits};

    #[test]
    fn the_wait_estimate_weighs_recent_waits_more_and_ignores_old_ones() {
        let mut waits = Waits::default();
        assert_eq!(waits.estimate(0), None);
        let now = 10 * 3_600_000;
        // Two waits: 10 s asked five minutes ago (weight 1/2), 40 s asked now (weight 1).
        assert!(waits.waited("s-1", now - 300_000, 10_000));
        assert!(
            !waits.waited("s-1", now - 300_000, 99_000),
            "a later serving fact"
        );
        assert!(waits.waited("s-2", now, 40_000));
        assert_eq!(
            waits.estimate(now),
            Some(std::time::Duration::from_millis(30_000))
        );
        // An hour and more later none counts.
        assert_eq!(waits.estimate(now + 3_600_001), None);
        for n in 0..40u64 {
            waits.waited(&format!("t-{n:02}"), now + n, 1_000);
        }
        assert_eq!(waits.0.len(), Waits::KEEP);
        assert!(!waits.0.contains_key("s-1"), "the oldest go first");
    }

    #[test]
    fn taken_sessions_count_once_and_keep_the_newest_within_the_window() {
        let mut taken = Taken::default();
        assert!(taken.took("s-1", 100, 0, 2));
        assert!(
            !taken.took("s-1", 150, 0, 2),
            "a confirmation of the same session"
        );
        assert!(taken.took("s-2", 200, 0, 2));
        assert!(taken.took("s-3", 300, 0, 2));
        assert_eq!(taken.0.keys().collect::<Vec<_>>(), ["s-2", "s-3"]);
        assert_eq!(taken.since(250), 1);
        taken.took("s-4", 1_000, 900, 2);
        assert_eq!(
            taken.0.keys().collect::<Vec<_>>(),
            ["s-4"],
            "older than the window"
        );
    }

    /// Each op: a miss (of the session offered at that ms, `s<ms>`) or an acceptance.
    fn fold(ops: &[(bool, u64)]) -> Misses {
        let mut misses = Misses::default();
        for (miss, ms) in ops {
            if *miss {
                misses.missed(&format!("s{ms}"), *ms);
            } else {
                misses.accepted(*ms);
            }
        }
        misses
    }

    #[test]
    fn an_accepted_offer_ends_the_streak_and_being_set_available_too() {
        let misses = fold(&[(true, 10), (true, 20), (false, 15), (true, 30)]);
        assert_eq!(
            misses.missed.values().copied().collect::<Vec<_>>(),
            [20, 30]
        );
        assert_eq!(misses.streak(0), (2, Some(30)));
        assert_eq!(misses.streak(25), (1, Some(30)));
        assert_eq!(misses.streak(30), (0, None));
        // Two sessions offered in the same millisecond are two misses.
        let mut same = Misses::default();
        assert!(same.missed("a", 40));
        assert!(same.missed("b", 40));
        assert!(!same.missed("a", 40), "the same session once");
        assert_eq!(same.streak(0), (2, Some(40)));
    }

    proptest! {
        /// The summed-ahead estimate is the age-weighted mean the README states,
        /// `Σ 2^(−(now − askedᵢ)/5 min)·waitᵢ / Σ 2^(−(now − askedᵢ)/5 min)` over the waits asked
        /// within the hour, to the millisecond.
        #[test]
        fn the_estimate_is_the_age_weighted_mean_of_the_last_hours_waits(
            waits in proptest::collection::vec((0u64..7_200_000, 0u64..600_000), 0..40),
            now in 3_600_000u64..7_300_000,
        ) {
            let mut record = Waits::default();
            for (n, (asked, wait)) in waits.iter().enumerate() {
                record.waited(&format!("s-{n}"), *asked, *wait);
            }
            let (mut sum, mut weights) = (0.0f64, 0.0f64);
            for (asked, wait) in record.0.values() {
                if now.saturating_sub(*asked) > Waits::HORIZON_MS {
                    continue;
                }
                let weight = (-((now as f64) - *asked as f64) / Waits::HALF_LIFE_MS).exp2();
                sum += weight * *wait as f64;
                weights += weight;
            }
            let direct = (weights > 0.0).then(|| (sum / weights).round() as i64);
            let summed = record.estimate(now).map(|wait| wait.as_millis() as i64);
            match (direct, summed) {
                (Some(direct), Some(summed)) => prop_assert!((direct - summed).abs() <= 1, "{direct} {summed}"),
                (direct, summed) => prop_assert_eq!(direct, summed),
            }
        }

        /// Any order and repetition of the same misses and acceptances gives one record.
        #[test]
        fn any_order_and_repetition_gives_the_same_record(
            ops in proptest::collection::vec((any::<bool>(), 0u64..40), 0..40),
            seed in any::<u64>(),
        ) {
            let mut shuffled = ops.clone();
            shuffled.extend(ops.iter().take(5).copied());
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            prop_assert_eq!(fold(&ops), fold(&shuffled));
        }
    }
}
