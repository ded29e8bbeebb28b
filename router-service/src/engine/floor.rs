//! An app's floor ranked ahead of time, so that a decision costs what the agents it looks at
//! cost, not the size of the floor.
//!
//! For every target the app's rules name (a group, or all agents; with its skills for
//! `most_skilled`), a [`Ranking`] keeps the available agents below capacity in each
//! strategy's order, and counts the others by why they are left out. A store that keeps a
//! [`Floor`] tells it every change of an agent's load or status ([`Floor::update`]) and
//! builds a new one when the roster or the config changes; a decision then walks a target
//! in rank order and stops once it has what the rule asks for, checking hours, shifts and
//! filters only on the agents it looks at.
//!
//! The orders are [`super::strategy`]'s keys, the ones `rank` sorts a scan by (the tests
//! hold the two against each other on random floors, for every strategy), so a decision
//! over a floor answers what a full scan answers.

use std::{
    cmp::Reverse,
    collections::BTreeSet,
    ops::Bound::{Excluded, Unbounded},
    sync::Arc,
    time::SystemTime,
};

use handoff_core::{
    config::{AgentStatus, Strategy},
    id::{AgentId, GroupId},
};

use crate::hash::FastMap;

use super::{
    Agent, AgentLoad, App, StateView, Target, roster,
    strategy::{self, KEPT, OrderKey},
};

/// An agent's place in the roster.
pub(super) type Position = u32;

/// An agent's load and live status: what the strategies order it on, and whether it can
/// be offered at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    active: u32,
    capacity: u32,
    last: Option<SystemTime>,
    status: AgentStatus,
    /// When the agent last finished a session (wrap-up); not ordered on.
    finished: Option<SystemTime>,
    /// The sizes of its fair-share and missed-offer records; not ordered on.
    taken_kept: u32,
    missed_kept: u32,
}

impl Standing {
    fn is_full(&self) -> bool {
        self.active >= self.capacity
    }

    /// The seats it has free when available (what `headroom` and `overflow_when` count).
    fn free(&self) -> u64 {
        match self.status {
            AgentStatus::Available => u64::from(self.capacity.saturating_sub(self.active)),
            AgentStatus::Away | AgentStatus::Offline => 0,
        }
    }

    /// What the strategies order the member at `position` on, with `skill` its skill total.
    fn ordered(&self, position: Position, skill: u32) -> strategy::Standing {
        strategy::Standing {
            active: self.active,
            capacity: self.capacity,
            last: self.last,
            skill,
            position,
        }
    }
}

/// Which target a ranking serves: its group (`None`, every agent), for `most_skilled` the
/// skills it ranks on, its agent filter when the filter reads nothing but the agent (its
/// verdicts are then known ahead), and its tiers' filters (a ranking per tier, and one for
/// the agents of none).
type TargetKey = (Option<GroupId>, Vec<String>, Option<String>, Vec<String>);

/// One target's agents in every strategy's order.
#[derive(Debug, Default)]
pub(super) struct Ranking {
    /// Every agent of the target, by position.
    pub(super) members: Vec<Position>,
    skills: Vec<String>,
    /// The ranked members in each order of [`KEPT`] (`most_skilled`'s only when the target
    /// ranks on skills).
    orders: [BTreeSet<OrderKey>; KEPT.len()],
    /// Which of the orders some target of this ranking ranks by: only those are kept, so
    /// that a seat taken moves an agent in one or two orders, not in all four.
    used: [bool; KEPT.len()],
    /// Members ever assigned, by when: the latest is where `round_robin` continues from.
    latest: BTreeSet<(SystemTime, Reverse<Position>)>,
    /// Members the target's agent-only filter refuses (`true`: the filter failed on them).
    rejected: FastMap<Position, bool>,
    filtered: bool,
    /// Members left out before any search looks: away, offline, available but full, and
    /// (available, below capacity) refused by the filter.
    pub(super) away: usize,
    pub(super) offline: usize,
    pub(super) full: usize,
    pub(super) filter_false: usize,
    pub(super) filter_failed: usize,
    /// Seats free among the available members.
    pub(super) free: u64,
}

impl Ranking {
    fn add(&mut self, position: Position, standing: Standing, skill: u32) {
        self.free += standing.free();
        if let Some(at) = standing.last {
            self.latest.insert((at, Reverse(position)));
        }
        match standing.status {
            AgentStatus::Away => self.away += 1,
            AgentStatus::Offline => self.offline += 1,
            AgentStatus::Available if standing.is_full() => self.full += 1,
            AgentStatus::Available => match self.rejected.get(&position) {
                Some(false) => self.filter_false += 1,
                Some(true) => self.filter_failed += 1,
                None => self.rank(position, standing, skill),
            },
        }
    }

    /// The orders the ranking keeps, with their sets.
    fn kept(&mut self) -> impl Iterator<Item = (Strategy, &mut BTreeSet<OrderKey>)> {
        let skills = !self.skills.is_empty();
        KEPT.into_iter()
            .zip(self.used)
            .zip(self.orders.iter_mut())
            .filter(move |((strategy, used), _)| {
                *used && (skills || *strategy != Strategy::MostSkilled)
            })
            .map(|((strategy, _), order)| (strategy, order))
    }

    /// Starts keeping the order at `slot` of [`KEPT`], for the members ranked now.
    fn keep(&mut self, slot: usize, standings: &[Standing], skill: impl Fn(Position) -> u32) {
        if self.used[slot] {
            return;
        }
        self.used[slot] = true;
        if self.skills.is_empty() && KEPT[slot] == Strategy::MostSkilled {
            return;
        }
        for &position in &self.members {
            let Some(&standing) = standings.get(position as usize) else {
                continue;
            };
            if self.ranks(position, standing)
                && let Some(key) =
                    strategy::key(KEPT[slot], &standing.ordered(position, skill(position)))
            {
                self.orders[slot].insert(key);
            }
        }
    }

    fn rank(&mut self, position: Position, standing: Standing, skill: u32) {
        let ordered = standing.ordered(position, skill);
        for (strategy, order) in self.kept() {
            if let Some(key) = strategy::key(strategy, &ordered) {
                order.insert(key);
            }
        }
    }

    fn unrank(&mut self, position: Position, standing: Standing, skill: u32) {
        let ordered = standing.ordered(position, skill);
        for (strategy, order) in self.kept() {
            if let Some(key) = strategy::key(strategy, &ordered) {
                order.remove(&key);
            }
        }
    }

    /// Whether `standing` puts the member in the ranked orders (available, below capacity,
    /// and not refused by the target's agent filter).
    fn ranks(&self, position: Position, standing: Standing) -> bool {
        standing.status == AgentStatus::Available
            && !standing.is_full()
            && !self.rejected.contains_key(&position)
    }

    /// Moves a member from its `old` standing to its `new` one. A member ranked before and
    /// after (a seat taken or released below capacity, the usual change) only moves in the
    /// orders that read its load and idle clock.
    fn replace(&mut self, position: Position, old: Standing, new: Standing, skill: u32) {
        if !(self.ranks(position, old) && self.ranks(position, new)) {
            self.remove(position, old, skill);
            self.add(position, new, skill);
            return;
        }
        self.free = (self.free + new.free()).saturating_sub(old.free());
        if old.last != new.last {
            if let Some(at) = old.last {
                self.latest.remove(&(at, Reverse(position)));
            }
            if let Some(at) = new.last {
                self.latest.insert((at, Reverse(position)));
            }
        }
        // Only the orders whose key moved (a position order never does).
        let (was, is) = (old.ordered(position, skill), new.ordered(position, skill));
        for (strategy, order) in self.kept() {
            let (from, to) = (strategy::key(strategy, &was), strategy::key(strategy, &is));
            if from != to {
                if let Some(from) = from {
                    order.remove(&from);
                }
                if let Some(to) = to {
                    order.insert(to);
                }
            }
        }
    }

    fn remove(&mut self, position: Position, standing: Standing, skill: u32) {
        self.free = self.free.saturating_sub(standing.free());
        if let Some(at) = standing.last {
            self.latest.remove(&(at, Reverse(position)));
        }
        match standing.status {
            AgentStatus::Away => self.away = self.away.saturating_sub(1),
            AgentStatus::Offline => self.offline = self.offline.saturating_sub(1),
            AgentStatus::Available if standing.is_full() => self.full = self.full.saturating_sub(1),
            AgentStatus::Available if self.rejected.contains_key(&position) => {
                match self.rejected.get(&position) {
                    Some(true) => self.filter_failed = self.filter_failed.saturating_sub(1),
                    _ => self.filter_false = self.filter_false.saturating_sub(1),
                }
            }
            AgentStatus::Available => self.unrank(position, standing, skill),
        }
    }

    /// Whether the ranking keeps the target's agent filter's refusals out already.
    pub(super) fn filters(&self) -> bool {
        self.filtered
    }

    /// The ranked agents in `strategy`'s order, `round_robin`'s continuing after `pivot`;
    /// `None` for `random`, which depends on the session and cannot be kept ranked.
    pub(super) fn order(
        &self,
        strategy: Strategy,
        pivot: Option<Position>,
    ) -> Option<Box<dyn Iterator<Item = Position> + '_>> {
        let slot = KEPT
            .iter()
            .position(|kept| Some(*kept) == strategy::kept_as(strategy))?;
        let order = &self.orders[slot];
        Some(match (strategy, pivot) {
            // Position order, continuing after the member assigned last.
            (Strategy::RoundRobin, Some(pivot)) => Box::new(
                order
                    .range((Excluded(OrderKey::at(pivot)), Unbounded))
                    .chain(order.range(..=OrderKey::at(pivot)))
                    .map(OrderKey::position),
            ),
            _ => Box::new(order.iter().map(OrderKey::position)),
        })
    }

    /// The member assigned most recently (the first listed among equals), where
    /// `round_robin` continues from, and when.
    fn latest(&self) -> Option<(SystemTime, Reverse<Position>)> {
        self.latest.last().copied()
    }

    /// Whether the agent at `position` is a member.
    pub(super) fn has(&self, position: Position) -> bool {
        self.members.binary_search(&position).is_ok()
    }
}

/// Where `round_robin` continues from over a target's rankings (its tiers): after the
/// member of any assigned most recently.
pub(super) fn pivot(rankings: &[Ranking]) -> Option<Position> {
    rankings
        .iter()
        .filter_map(Ranking::latest)
        .max()
        .map(|(_, Reverse(position))| position)
}

/// An app's agents, ranked for every target of its rules.
#[derive(Debug)]
pub struct Floor {
    app_version: u64,
    roster_version: u64,
    agents: Vec<Arc<Agent>>,
    positions: FastMap<AgentId, Position>,
    standings: Vec<Standing>,
    rankings: Vec<Ranking>,
    /// Each target's rankings: where they start in `rankings`, and how many (its tiers and
    /// one for the agents of none).
    targets: FastMap<TargetKey, (usize, usize)>,
    /// For each agent, the rankings it is a member of.
    memberships: Vec<Vec<usize>>,
}

impl Floor {
    /// Ranks `app`'s roster (with `state`'s run-time changes, loads and statuses) for every
    /// target of its rules; `roster_version` is the store's count of roster changes.
    pub fn build(app: &App, roster_version: u64, state: &dyn StateView) -> Self {
        let agents: Vec<Arc<Agent>> = roster(app, state.roster_changes())
            .into_iter()
            .cloned()
            .collect();
        let positions = agents
            .iter()
            .enumerate()
            .filter_map(|(n, agent)| Position::try_from(n).ok().map(|p| (agent.id.clone(), p)))
            .collect();
        let standings: Vec<Standing> = agents
            .iter()
            .map(|agent| standing(agent, state.load(&agent.id), state.status(&agent.id)))
            .collect();
        let mut floor = Self {
            app_version: app.version(),
            roster_version,
            memberships: vec![Vec::new(); agents.len()],
            agents,
            positions,
            standings,
            rankings: Vec::new(),
            targets: FastMap::default(),
        };
        let targets = app
            .rules()
            .iter()
            .map(|conditional| &conditional.rule)
            .chain(std::iter::once(app.default_rule()))
            .flat_map(|rule| &rule.targets);
        for target in targets {
            floor.add_target(app, target);
        }
        floor
    }

    fn add_target(&mut self, app: &App, target: &Target) {
        let key = target_key(target);
        let Some(slot) = strategy::kept_as(target.strategy)
            .and_then(|kept| KEPT.iter().position(|each| *each == kept))
        else {
            return;
        };
        if target.tiers.iter().any(|tier| !tier.agent_only()) {
            return;
        }
        if let Some(&(start, count)) = self.targets.get(&key) {
            // A target of another strategy over the same agents: one more order to keep.
            let agents = &self.agents;
            for ranking in &mut self.rankings[start..start + count] {
                let skills = ranking.skills.clone();
                ranking.keep(slot, &self.standings, |position| {
                    agents
                        .get(position as usize)
                        .map_or(0, |agent| skill_total(agent, &skills))
                });
            }
            return;
        }
        let start = self.rankings.len();
        let count = target.tiers.len() + 1;
        let filter = target.filter.as_ref().filter(|filter| filter.agent_only());
        for _ in 0..count {
            let mut used = [false; KEPT.len()];
            used[slot] = true;
            self.rankings.push(Ranking {
                skills: key.1.clone(),
                filtered: filter.is_some(),
                used,
                ..Ranking::default()
            });
        }
        for (n, agent) in self.agents.iter().enumerate() {
            let Ok(position) = Position::try_from(n) else {
                break;
            };
            if key.0.is_some_and(|group| !agent.groups.contains(&group)) {
                continue;
            }
            let tier = target
                .tiers
                .iter()
                .position(|tier| {
                    matches!(app.cel().admits_agent(tier, agent.cel_value()), Ok(true))
                })
                .unwrap_or(target.tiers.len());
            let index = start + tier;
            let ranking = &mut self.rankings[index];
            ranking.members.push(position);
            if let Some(filter) = filter {
                match app.cel().admits_agent(filter, agent.cel_value()) {
                    Ok(true) => {}
                    Ok(false) => {
                        ranking.rejected.insert(position, false);
                    }
                    Err(_) => {
                        ranking.rejected.insert(position, true);
                    }
                }
            }
            let skill = skill_total(agent, &ranking.skills);
            ranking.add(position, self.standings[n], skill);
            self.memberships[n].push(index);
        }
        self.targets.insert(key, (start, count));
    }

    /// The compiled app the floor was built for.
    pub fn app_version(&self) -> u64 {
        self.app_version
    }

    /// Whether this floor was built for `app` as compiled now and the roster as it is.
    pub fn is_for(&self, app: &App, roster_version: u64) -> bool {
        self.app_version == app.version() && self.roster_version == roster_version
    }

    /// Takes `agent`'s new load and live status (`None`: its definition's).
    pub fn update(&mut self, agent: &AgentId, load: AgentLoad, status: Option<AgentStatus>) {
        let Some(&position) = self.positions.get(agent) else {
            return;
        };
        let n = position as usize;
        let (Some(definition), Some(old)) = (self.agents.get(n), self.standings.get(n).copied())
        else {
            return;
        };
        let new = standing(definition, load, status);
        if new == old {
            return;
        }
        for &index in &self.memberships[n] {
            if let Some(ranking) = self.rankings.get_mut(index) {
                let skill = skill_total(definition, &ranking.skills);
                ranking.replace(position, old, new, skill);
            }
        }
        self.standings[n] = new;
    }

    /// The rankings of `target`, one per tier and the last for the agents of none, unless
    /// it is `random`, its tiers read more than the agent, or it is not a target of the
    /// rules.
    pub(super) fn ranking(&self, target: &Target) -> Option<&[Ranking]> {
        if target.strategy == Strategy::Random {
            return None;
        }
        self.targets
            .get(&target_key(target))
            .and_then(|(start, count)| self.rankings.get(*start..start + count))
    }

    /// The agent at `position`, its load and its live status.
    pub(super) fn agent(&self, position: Position) -> Option<(&Arc<Agent>, AgentLoad)> {
        let n = position as usize;
        let agent = self.agents.get(n)?;
        let standing = self.standings.get(n)?;
        let load = AgentLoad {
            active: standing.active,
            weighted: 0,
            unattributed: 0,
            confirmed: 0,
            last_assigned: standing.last,
            last_finished: standing.finished,
            taken_kept: standing.taken_kept,
            missed_kept: standing.missed_kept,
        };
        Some((agent, load))
    }

    /// The position of `agent`, if it is on the roster.
    pub(super) fn position(&self, agent: &AgentId) -> Option<Position> {
        self.positions.get(agent).copied()
    }
}

fn standing(agent: &Agent, load: AgentLoad, status: Option<AgentStatus>) -> Standing {
    Standing {
        active: load.active,
        capacity: agent.capacity,
        last: load.last_assigned,
        status: status.unwrap_or(agent.status),
        finished: load.last_finished,
        taken_kept: load.taken_kept,
        missed_kept: load.missed_kept,
    }
}

fn target_key(target: &Target) -> TargetKey {
    let skills = if target.strategy == Strategy::MostSkilled {
        target.skills.clone()
    } else {
        Vec::new()
    };
    let filter = target
        .filter
        .as_ref()
        .filter(|filter| filter.agent_only())
        .map(|filter| filter.source().to_owned());
    let tiers = target
        .tiers
        .iter()
        .map(|tier| tier.source().to_owned())
        .collect();
    (target.group, skills, filter, tiers)
}

/// An agent's proficiency summed over `skills`, what `most_skilled` ranks on.
pub(super) fn skill_total(agent: &Agent, skills: &[String]) -> u32 {
    skills.iter().map(|skill| agent.skill(skill)).sum()
}
