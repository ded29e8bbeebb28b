//! The routing engine: decides, and does nothing else.
//!
//! No I/O, no async, no clock of its own: [`decide`] takes the app's compiled [`App`], the
//! [`Handoff`] being routed, a [`StateView`] of the router's live state and the time, and
//! returns a [`Decision`] that carries its own explanation. The same inputs always give the
//! same decision. Where state lives is the store's business; how it travels, the gRPC
//! adapter's.
//!
//! A decision: the app's rules are tried in order and the first whose `when` holds decides
//! (the last rule matches everything). Its target, then each overflow target in turn, is
//! searched for eligible agents (group open, agent available, on shift, passing the filter,
//! below capacity); the first target with any ranks them by its strategy, puts the
//! customer's owner and previous agent first when the rule is sticky, and answers. When no
//! target has anyone, the answer is the app's fallback group.

mod catalog;
mod decision;
pub mod desk;
pub mod expr;
mod floor;
mod rank;
mod reason;
pub mod schedule;
mod state;
mod strategy;

use std::{cell::OnceCell, collections::BTreeMap, sync::Arc, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{AgentId, ClientUserId, GroupId, SdkAppId, SessionId},
};

pub use catalog::{
    Agent, AgentFault, AgentField, App, Catalog, ConditionalRule, DEFAULT_RULE, Group,
    MAX_CAPACITY, OverflowWhen, Reports, Rule, Target,
};
pub use decision::{
    Answer, Candidate, Decision, Excluded, Exclusion, RuleOutcome, RuleTrace, Sticky, Tally,
    TargetOutcome, TargetTrace, clock_time,
};
pub use floor::Floor;
use floor::Ranking;
pub use handoff_core::config::Strategy;
pub use state::{
    AgentLoad, Customer, LiveSession, Misses, RosterChanges, SessionState, StateView, Taken,
    WaitSummary, Waits, agent, roster, unix_ms, waits_group, waits_key,
};

use expr::Scope;

/// Everything known about a conversation that needs a human.
#[derive(Debug, Clone)]
pub struct Handoff {
    /// The app the session belongs to.
    pub app: SdkAppId,
    /// The session to hand over.
    pub session: SessionId,
    /// The end user.
    pub client_user: ClientUserId,
    /// When the user asked for a human.
    pub event_time: SystemTime,
    /// The user's platform, lower case (`ios`, `web`, ...); empty when unknown.
    pub platform: String,
    /// Where the conversation comes from, lower case (`chat`, `voice`, ...).
    pub channel: String,
    /// Free attributes from the caller.
    pub attributes: BTreeMap<String, String>,
}

/// Decides who should take `handoff` among `app`'s agents, given the live `state`, at `now`.
///
/// Over a [`Floor`] the state keeps ranked for `app`, each target is walked in rank order
/// until the rule has its agents (twice its `candidates`, so that a store racing another
/// replica can still move down the list); otherwise every agent of each target is examined.
/// Both give the same answer.
pub fn decide(app: &App, handoff: &Handoff, state: &dyn StateView, now: SystemTime) -> Decision {
    let floor = state
        .floor()
        .filter(|floor| floor.app_version() == app.version());
    decide_over(app, handoff, state, now, floor)
}

/// The same decision as [`decide`], examining every agent of every target tried and saying
/// why each left out was: what ExplainAssignment shows.
pub fn decide_fully(
    app: &App,
    handoff: &Handoff,
    state: &dyn StateView,
    now: SystemTime,
) -> Decision {
    decide_over(app, handoff, state, now, None)
}

fn decide_over(
    app: &App,
    handoff: &Handoff,
    state: &dyn StateView,
    now: SystemTime,
    floor: Option<&Floor>,
) -> Decision {
    let unknown;
    let customer = match state
        .customer(&handoff.client_user)
        .or_else(|| app.customer(&handoff.client_user))
    {
        Some(customer) => customer,
        None => {
            unknown = Customer::unknown(handoff.client_user.clone());
            &unknown
        }
    };
    // Each CEL variable is built the first time an expression reads it.
    let scope = app.cel().scope(handoff, customer, now, app.zone);
    let (rule, rules) = match_rule(app, &scope);
    let sticky = if rule.sticky {
        sticky_agents(customer, state, app.sticky_ttl, now)
    } else {
        Vec::new()
    };
    let search = Search {
        app,
        roster: OnceCell::new(),
        floor,
        state,
        scope: &scope,
        session: &handoff.session,
        now,
        need: rule.max_agents.saturating_mul(2),
        sticky: &sticky,
        weight: rule.weight,
        fair_share: app.fair_share.map(|(sessions, window)| {
            let since = now.checked_sub(window).map_or(0, unix_ms);
            (sessions, since)
        }),
    };
    let mut targets = Vec::with_capacity(rule.targets.len());
    let mut chosen = None;
    // The first target passed over on a live measure: it answers if no later one can.
    let mut passed = None;
    for (index, target) in rule.targets.iter().enumerate() {
        let label = match index {
            0 => "target".to_owned(),
            n => format!("overflow[{}]", n - 1),
        };
        let (mut trace, ranked) = search.target(target, label);
        if !ranked.is_empty() {
            if let Some(why) = search.overflows(target, trace.free_seats) {
                trace.outcome = TargetOutcome::Overflowed;
                trace.overflow = Some(why);
                targets.push(trace);
                if passed.is_none() {
                    passed = Some((targets.len() - 1, target, ranked));
                }
                continue;
            }
            let free = trace.free_seats;
            targets.push(trace);
            chosen = Some((target, ranked, free));
            break;
        }
        targets.push(trace);
    }
    if chosen.is_none()
        && let Some((index, target, ranked)) = passed
    {
        let mut free = 0;
        if let Some(trace) = targets.get_mut(index) {
            trace.outcome = TargetOutcome::Chosen;
            free = trace.free_seats;
        }
        chosen = Some((target, ranked, free));
    }
    // A rule that may fill headroom, answering from a group down to the seats it keeps.
    let headroom_used = chosen.as_ref().and_then(|(target, _, free)| {
        let group = app.group(target.group?)?;
        let kept = u64::from(group.headroom);
        (rule.use_headroom && kept > 0 && *free < kept + u64::from(rule.weight)).then_some(group.id)
    });
    let chosen = chosen.map(|(target, ranked, _)| (target, ranked));
    let (strategy, group, ranked, fallback, reason) = match chosen {
        Some((target, mut ranked)) => {
            put_sticky_first(&mut ranked, &sticky);
            let reason = reason::chosen(app, rule, &targets, &ranked);
            (Some(target.strategy), target.group, ranked, false, reason)
        }
        None => {
            let group = app
                .fallback_group()
                .or_else(|| rule.targets.first().and_then(|t| t.group));
            let reason = reason::fallback(rule, &targets, group);
            (None, group, Vec::new(), true, reason)
        }
    };
    Decision {
        rule: rule.name.clone(),
        rules,
        targets,
        strategy,
        group,
        ranked,
        max_agents: rule.max_agents,
        group_only: rule.group_only,
        weight: rule.weight,
        headroom_used,
        fallback,
        reason,
    }
}

/// The first rule whose `when` holds (else the app's default rule), and the trace of every
/// rule tried.
fn match_rule<'a>(app: &'a App, scope: &Scope<'_>) -> (&'a Rule, Vec<RuleTrace>) {
    let mut traces = Vec::new();
    for conditional in app.rules() {
        let rule = &conditional.rule;
        let outcome = match scope.holds(&conditional.when) {
            Ok(true) => RuleOutcome::Matched,
            Ok(false) => RuleOutcome::NotMatched,
            Err(error) => RuleOutcome::Failed(error),
        };
        let matched = outcome == RuleOutcome::Matched;
        traces.push(RuleTrace {
            rule: rule.name.clone(),
            outcome,
        });
        if matched {
            return (rule, traces);
        }
    }
    let rule = app.default_rule();
    traces.push(RuleTrace {
        rule: rule.name.clone(),
        outcome: RuleOutcome::Matched,
    });
    (rule, traces)
}

/// What searching any target of one decision needs: the app, its roster (ranked, or built
/// when a target must be scanned), the live state, the CEL scope of this handoff, the time,
/// how many agents a ranked walk collects, and the customer's sticky agents.
struct Search<'a, 's> {
    app: &'a App,
    roster: OnceCell<Vec<&'a Arc<Agent>>>,
    floor: Option<&'a Floor>,
    state: &'a dyn StateView,
    scope: &'a Scope<'s>,
    session: &'a SessionId,
    now: SystemTime,
    need: usize,
    sticky: &'a [(AgentId, Sticky)],
    /// The seats the session takes (the rule's `weight`).
    weight: u32,
    /// Fair share, when the app has it: how many new sessions an agent may take, and the
    /// time (Unix ms) from which they count.
    fair_share: Option<(u32, u64)>,
}

impl Search<'_, '_> {
    /// Finds and ranks the eligible agents of `target`: walking its ranking when the floor
    /// keeps one, else examining all its agents.
    fn target(&self, target: &Target, label: String) -> (TargetTrace, Vec<Candidate>) {
        match self
            .floor
            .and_then(|floor| Some((floor, floor.ranking(target)?)))
        {
            Some((floor, rankings)) => self.walk(floor, rankings, target, label),
            None => self.scan(target, label),
        }
    }

    /// Whether `target`'s group is outside its hours: the file's, else Desk's.
    fn closed(&self, target: &Target) -> bool {
        let Some(id) = target.group else {
            return false;
        };
        self.app
            .group(id)
            .and_then(|group| group.hours.as_ref())
            .or_else(|| self.state.desk_hours())
            .is_some_and(|hours| !hours.is_open(self.now))
    }

    /// Walks `rankings` (the target's tiers, in order) in `target`'s order until it has
    /// `need` eligible agents besides the customer's sticky ones, which are checked first
    /// wherever they rank. A target whose headroom stops this rule is walked whole: it has
    /// fewer ranked agents than the seats it keeps.
    fn walk(
        &self,
        floor: &Floor,
        rankings: &[Ranking],
        target: &Target,
        label: String,
    ) -> (TargetTrace, Vec<Candidate>) {
        let members = rankings.iter().map(|ranking| ranking.members.len()).sum();
        let free = rankings.iter().map(|ranking| ranking.free).sum();
        let kept = self.headroom_kept(target, free);
        let mut left_out = Tally::default();
        let mut ranked = Vec::new();
        let closed = self.closed(target);
        if closed {
            left_out.add_many(Exclusion::GroupClosed.kind(), members);
        } else {
            for ranking in rankings {
                left_out.add_many(Exclusion::Away.kind(), ranking.away);
                left_out.add_many(Exclusion::Offline.kind(), ranking.offline);
                let full = Exclusion::AtCapacity {
                    active: 0,
                    capacity: 0,
                    weight: 1,
                };
                left_out.add_many(full.kind(), ranking.full);
                left_out.add_many(Exclusion::FilterFalse.kind(), ranking.filter_false);
                let failed = Exclusion::FilterFailed(String::new());
                left_out.add_many(failed.kind(), ranking.filter_failed);
            }
            let mut sticky_positions = Vec::new();
            for (agent, _) in self.sticky {
                let Some(position) = floor.position(agent) else {
                    continue;
                };
                let Some(tier) = rankings.iter().position(|ranking| ranking.has(position)) else {
                    continue;
                };
                if sticky_positions.contains(&position) {
                    continue;
                }
                sticky_positions.push(position);
                let Some((agent, load)) = floor.agent(position) else {
                    continue;
                };
                let filters = rankings[tier].filters();
                match self.eligibility(agent, load, false, target, false) {
                    Ok(()) => {
                        ranked.push(self.candidate(agent, load, position, target, 0, tier));
                    }
                    // Status, a full agent and an agent-only filter are counted by the
                    // ranking (one with room, but not for this session's weight, is not).
                    Err(Exclusion::Away | Exclusion::Offline) => {}
                    Err(Exclusion::AtCapacity {
                        active, capacity, ..
                    }) if active >= capacity => {}
                    Err(Exclusion::FilterFalse | Exclusion::FilterFailed(_)) if filters => {}
                    Err(reason) => left_out.add(&reason),
                }
            }
            let wanted = if kept.is_some() {
                usize::MAX
            } else {
                self.need + ranked.len()
            };
            let pivot = floor::pivot(rankings);
            let mut turn = 0;
            'tiers: for (tier, ranking) in rankings.iter().enumerate() {
                let Some(order) = ranking.order(target.strategy, pivot) else {
                    continue;
                };
                for position in order {
                    if ranked.len() >= wanted {
                        break 'tiers;
                    }
                    turn += 1;
                    if sticky_positions.contains(&position) {
                        continue;
                    }
                    let Some((agent, load)) = floor.agent(position) else {
                        continue;
                    };
                    match self.eligibility(agent, load, false, target, ranking.filters()) {
                        Ok(()) => ranked.push(self.candidate(
                            agent,
                            load,
                            position,
                            target,
                            turn - 1,
                            tier,
                        )),
                        Err(reason) => left_out.add(&reason),
                    }
                }
            }
        }
        if let Some(reason) = kept {
            left_out.add_many(reason.kind(), ranked.len());
            ranked.clear();
        }
        let mut trace = trace(
            target,
            label,
            closed,
            &ranked,
            members,
            left_out,
            Vec::new(),
        );
        trace.free_seats = free;
        (trace, ranked)
    }

    /// Why `target`, which has eligible agents, passes the handoff on anyway: fewer seats
    /// free than its `overflow_when` allows, or its group's estimated wait too long.
    fn overflows(&self, target: &Target, free: u64) -> Option<String> {
        let when = &target.overflow_when;
        if !when.is_set() {
            return None;
        }
        if when.free_seats_below > 0 && free < u64::from(when.free_seats_below) {
            return Some(format!(
                "{free} free seats, below {}",
                when.free_seats_below
            ));
        }
        let above = when.wait_above?;
        let wait = self.state.wait(target.group, self.now)?;
        (wait > above).then(|| {
            format!(
                "estimated wait {}s, above {}s",
                wait.as_secs(),
                above.as_secs()
            )
        })
    }

    /// Whether `target`'s group keeps its last seats from this rule: with `free` seats
    /// free, fewer than its headroom would stay free after this session's.
    fn headroom_kept(&self, target: &Target, free: u64) -> Option<Exclusion> {
        let kept = u64::from(target.headroom);
        (kept > 0 && free < kept + u64::from(self.weight)).then_some(Exclusion::HeadroomKept {
            kept: target.headroom,
            free,
        })
    }

    fn candidate(
        &self,
        agent: &Agent,
        load: AgentLoad,
        position: floor::Position,
        target: &Target,
        turn: usize,
        tier: usize,
    ) -> Candidate {
        let mut candidate = Candidate::unscored(agent, load, position as usize);
        candidate.tier = tier;
        let standing = strategy::Standing {
            active: candidate.active,
            capacity: candidate.capacity,
            last: candidate.last_assigned,
            skill: floor::skill_total(agent, &target.skills),
            position,
        };
        let shuffle =
            || strategy::shuffle_key(target.seed, self.session.as_str(), agent.id.as_str());
        candidate.score = strategy::score(target.strategy, &standing, turn, shuffle, self.now);
        candidate
    }

    /// Examines every agent of `target`, saying why each one left out was.
    fn scan(&self, target: &Target, label: String) -> (TargetTrace, Vec<Candidate>) {
        let roster = self
            .roster
            .get_or_init(|| roster(self.app, self.state.roster_changes()));
        let closed = self.closed(target);
        let mut ranked = Vec::new();
        let mut excluded = Vec::new();
        let mut left_out = Tally::default();
        let mut members = 0;
        let mut free = 0;
        let mut pivot: Option<(SystemTime, usize)> = None;
        for (position, agent) in roster.iter().enumerate() {
            if target
                .group
                .is_some_and(|group| !agent.groups.contains(&group))
            {
                continue;
            }
            members += 1;
            let load = self.state.load(&agent.id);
            free += seats_free(agent, load, self.state);
            if let Some(at) = load.last_assigned
                && pivot.is_none_or(|(latest, _)| at > latest)
            {
                pivot = Some((at, position));
            }
            match self.eligibility(agent, load, closed, target, false) {
                Ok(()) => {
                    let mut candidate = Candidate::unscored(agent, load, position);
                    candidate.tier = target.tier(self.scope, agent);
                    ranked.push(candidate);
                }
                Err(reason) => {
                    left_out.add(&reason);
                    excluded.push(Excluded {
                        agent: agent.id.clone(),
                        reason,
                    });
                }
            }
        }
        let skill_of = |candidate: &Candidate| -> u32 {
            roster
                .get(candidate.position)
                .map(|agent| floor::skill_total(agent, &target.skills))
                .unwrap_or_default()
        };
        rank::rank(
            target,
            &mut ranked,
            skill_of,
            self.session,
            pivot.map(|(_, p)| p),
            self.now,
        );
        if let Some(reason) = self.headroom_kept(target, free) {
            for candidate in ranked.drain(..) {
                left_out.add(&reason);
                excluded.push(Excluded {
                    agent: candidate.agent,
                    reason: reason.clone(),
                });
            }
        }
        let mut trace = trace(target, label, closed, &ranked, members, left_out, excluded);
        trace.free_seats = free;
        (trace, ranked)
    }

    /// Whether `agent` may be offered a session of `target`; the first reason it may not.
    /// `filter_known`: the floor already kept the agents the target's filter refuses out.
    fn eligibility(
        &self,
        agent: &Agent,
        load: AgentLoad,
        group_closed: bool,
        target: &Target,
        filter_known: bool,
    ) -> Result<(), Exclusion> {
        if group_closed {
            return Err(Exclusion::GroupClosed);
        }
        match self.state.status(&agent.id).unwrap_or(agent.status) {
            AgentStatus::Available => {}
            AgentStatus::Away => return Err(Exclusion::Away),
            AgentStatus::Offline => return Err(Exclusion::Offline),
        }
        let full = Exclusion::AtCapacity {
            active: load.active,
            capacity: agent.capacity,
            weight: self.weight,
        };
        if load.active >= agent.capacity {
            return Err(full);
        }
        if let Some(filter) = target.filter.as_ref().filter(|_| !filter_known) {
            match self.scope.admits(filter, agent.cel_value()) {
                Ok(true) => {}
                Ok(false) => return Err(Exclusion::FilterFalse),
                Err(error) => return Err(Exclusion::FilterFailed(error)),
            }
        }
        // Room, but not for a session that takes more than one seat: after the filter, as
        // a floor counts an agent below capacity that its filter refuses as refused.
        if load.active.saturating_add(self.weight) > agent.capacity {
            return Err(full);
        }
        if agent
            .shift
            .as_ref()
            .is_some_and(|shift| !shift.is_open(self.now))
        {
            return Err(Exclusion::OffShift);
        }
        if let Some((sessions, since)) = self.fair_share
            && load.taken_kept >= sessions
            && let Some(taken) = self.state.taken(&agent.id)
            && taken.0.len() >= sessions as usize
        {
            let taken = taken.since(since);
            if taken >= sessions as usize {
                return Err(Exclusion::FairShare {
                    taken: u32::try_from(taken).unwrap_or(u32::MAX),
                    limit: sessions,
                    window: self
                        .app
                        .fair_share
                        .map_or_else(Default::default, |(_, w)| w),
                });
            }
        }
        if self.app.max_missed > 0
            && load.missed_kept >= self.app.max_missed
            && let Some((missed, until)) = parked(self.app, self.state, &agent.id, self.now)
        {
            return Err(Exclusion::Parked { missed, until });
        }
        let wrap_up = target.wrap_up;
        if !wrap_up.is_zero()
            && let Some(finished) = load.last_finished
            && finished + wrap_up > self.now
        {
            return Err(Exclusion::WrappingUp {
                until: finished + wrap_up,
            });
        }
        Ok(())
    }
}

/// Whether `agent` of `app` is parked at `now`: how many offers it missed in a row (since
/// it last accepted one or was set available) and until when, once that reaches the app's
/// `max_missed`, counted from its latest miss for `park_for`.
pub fn parked(
    app: &App,
    state: &dyn StateView,
    agent: &AgentId,
    now: SystemTime,
) -> Option<(u32, SystemTime)> {
    if app.max_missed == 0 {
        return None;
    }
    let misses = state.misses(agent)?;
    let since = state.available_since(agent).map_or(0, unix_ms);
    let (streak, latest) = misses.streak(since);
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_millis(latest?) + app.park_for;
    (streak >= app.max_missed && until > now).then_some((streak, until))
}

/// The seats `agent` has free when its live status is available: what a group's headroom
/// and `overflow_when.free_seats_below` count (shifts, wrap-up and parks aside).
fn seats_free(agent: &Agent, load: AgentLoad, state: &dyn StateView) -> u64 {
    match state.status(&agent.id).unwrap_or(agent.status) {
        AgentStatus::Available => u64::from(agent.capacity.saturating_sub(load.active)),
        AgentStatus::Away | AgentStatus::Offline => 0,
    }
}

/// The seats free among each group's available agents, as a decision counts them, in one
/// walk of the roster.
pub fn free_seats(app: &App, state: &dyn StateView) -> BTreeMap<GroupId, u64> {
    let mut free = BTreeMap::new();
    for agent in roster(app, state.roster_changes()) {
        let seats = seats_free(agent, state.load(&agent.id), state);
        for group in &agent.groups {
            *free.entry(*group).or_default() += seats;
        }
    }
    free
}

/// The new sessions `agent` took within `app`'s fair share window at `now` (0 without
/// fair share).
pub fn fair_share_taken(app: &App, state: &dyn StateView, agent: &AgentId, now: SystemTime) -> u32 {
    let Some((_, window)) = app.fair_share else {
        return 0;
    };
    let since = now.checked_sub(window).map_or(0, unix_ms);
    state.taken(agent).map_or(0, |taken| {
        u32::try_from(taken.since(since)).unwrap_or(u32::MAX)
    })
}

/// The offers `agent` missed in a row: since it last accepted one or was set available.
pub fn missed(state: &dyn StateView, agent: &AgentId) -> u32 {
    let Some(misses) = state.misses(agent) else {
        return 0;
    };
    let since = state.available_since(agent).map_or(0, unix_ms);
    misses.streak(since).0
}

/// The customer's previous agent (within `ttl`) and owner, in the order stickiness puts
/// them first (each moved to the front in turn, so the owner ends up first).
fn sticky_agents(
    customer: &Customer,
    state: &dyn StateView,
    ttl: std::time::Duration,
    now: SystemTime,
) -> Vec<(AgentId, Sticky)> {
    let previous = state
        .last_agent(&customer.id)
        .filter(|(_, at)| now.duration_since(*at).unwrap_or_default() <= ttl)
        .map(|(agent, _)| agent.clone());
    [
        (previous, Sticky::Previous),
        (customer.owner.clone(), Sticky::Owner),
    ]
    .into_iter()
    .filter_map(|(agent, why)| agent.map(|agent| (agent, why)))
    .collect()
}

/// Moves the sticky agents that are among the candidates to the front.
fn put_sticky_first(ranked: &mut Vec<Candidate>, sticky: &[(AgentId, Sticky)]) {
    for (agent, why) in sticky {
        if let Some(index) = ranked.iter().position(|c| &c.agent == agent) {
            let mut candidate = ranked.remove(index);
            // The reason that put it first last (an owner who was also the previous agent
            // is first as the owner).
            candidate.sticky = Some(*why);
            ranked.insert(0, candidate);
        }
    }
}

/// What a search of `target` found, for the decision's explanation.
fn trace(
    target: &Target,
    label: String,
    closed: bool,
    ranked: &[Candidate],
    members: usize,
    left_out: Tally,
    excluded: Vec<Excluded>,
) -> TargetTrace {
    TargetTrace {
        label,
        group: target.group,
        strategy: target.strategy,
        outcome: outcome(closed, ranked),
        members,
        eligible: ranked.len(),
        left_out,
        excluded,
        free_seats: 0,
        overflow: None,
    }
}

fn outcome(closed: bool, ranked: &[Candidate]) -> TargetOutcome {
    if closed {
        TargetOutcome::Closed
    } else if ranked.is_empty() {
        TargetOutcome::NoEligible
    } else {
        TargetOutcome::Chosen
    }
}

#[cfg(test)]
mod floor_tests;
#[cfg(test)]
mod tests;
