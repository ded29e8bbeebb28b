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
    id::{AgentId, ClientUserId, SdkAppId, SessionId},
};

pub use catalog::{
    Agent, AgentFault, AgentField, App, Catalog, ConditionalRule, DEFAULT_RULE, Group,
    MAX_CAPACITY, Reports, Rule, Target,
};
pub use decision::{
    Answer, Candidate, Decision, Excluded, Exclusion, RuleOutcome, RuleTrace, Sticky, Tally,
    TargetOutcome, TargetTrace, clock_time,
};
pub use floor::Floor;
use floor::Ranking;
pub use handoff_core::config::Strategy;
pub use state::{
    AgentLoad, Customer, LiveSession, Misses, RosterChanges, SessionState, StateView, Taken, agent,
    roster,
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
        fair_share: app.fair_share.map(|(sessions, window)| {
            let since = now
                .checked_sub(window)
                .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| {
                    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
                });
            (sessions, since)
        }),
    };
    let mut targets = Vec::with_capacity(rule.targets.len());
    let mut chosen = None;
    for (index, target) in rule.targets.iter().enumerate() {
        let label = match index {
            0 => "target".to_owned(),
            n => format!("overflow[{}]", n - 1),
        };
        let (trace, ranked) = search.target(target, label);
        targets.push(trace);
        if !ranked.is_empty() {
            chosen = Some((target, ranked));
            break;
        }
    }
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
struct Search<'a> {
    app: &'a App,
    roster: OnceCell<Vec<&'a Arc<Agent>>>,
    floor: Option<&'a Floor>,
    state: &'a dyn StateView,
    scope: &'a Scope<'a>,
    session: &'a SessionId,
    now: SystemTime,
    need: usize,
    sticky: &'a [(AgentId, Sticky)],
    /// Fair share, when the app has it: how many new sessions an agent may take, and the
    /// time (Unix ms) from which they count.
    fair_share: Option<(u32, u64)>,
}

impl Search<'_> {
    /// Finds and ranks the eligible agents of `target`: walking its ranking when the floor
    /// keeps one, else examining all its agents.
    fn target(&self, target: &Target, label: String) -> (TargetTrace, Vec<Candidate>) {
        match self
            .floor
            .and_then(|floor| Some((floor, floor.ranking(target)?)))
        {
            Some((floor, ranking)) => self.walk(floor, ranking, target, label),
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

    /// Walks `ranking` in `target`'s order until it has `need` eligible agents besides the
    /// customer's sticky ones, which are checked first wherever they rank.
    fn walk(
        &self,
        floor: &Floor,
        ranking: &Ranking,
        target: &Target,
        label: String,
    ) -> (TargetTrace, Vec<Candidate>) {
        let members = ranking.members.len();
        let mut left_out = Tally::default();
        let mut ranked = Vec::new();
        let closed = self.closed(target);
        if closed {
            left_out.add_many(Exclusion::GroupClosed.kind(), members);
        } else {
            left_out.add_many(Exclusion::Away.kind(), ranking.away);
            left_out.add_many(Exclusion::Offline.kind(), ranking.offline);
            let full = Exclusion::AtCapacity {
                active: 0,
                capacity: 0,
            };
            left_out.add_many(full.kind(), ranking.full);
            left_out.add_many(Exclusion::FilterFalse.kind(), ranking.filter_false);
            let failed = Exclusion::FilterFailed(String::new());
            left_out.add_many(failed.kind(), ranking.filter_failed);
            let mut sticky_positions = Vec::new();
            for (agent, _) in self.sticky {
                let Some(position) = floor.position(agent) else {
                    continue;
                };
                if ranking.members.binary_search(&position).is_err()
                    || sticky_positions.contains(&position)
                {
                    continue;
                }
                sticky_positions.push(position);
                let Some((agent, load)) = floor.agent(position) else {
                    continue;
                };
                match self.eligibility(agent, load, false, target, false) {
                    Ok(()) => ranked.push(self.candidate(agent, load, position, target, 0)),
                    // Status, capacity and an agent-only filter are counted by the ranking.
                    Err(Exclusion::Away | Exclusion::Offline | Exclusion::AtCapacity { .. }) => {}
                    Err(Exclusion::FilterFalse | Exclusion::FilterFailed(_))
                        if ranking.filters() => {}
                    Err(reason) => left_out.add(&reason),
                }
            }
            let wanted = self.need + ranked.len();
            if let Some(order) = ranking.order(target.strategy) {
                for (turn, position) in order.enumerate() {
                    if ranked.len() >= wanted {
                        break;
                    }
                    if sticky_positions.contains(&position) {
                        continue;
                    }
                    let Some((agent, load)) = floor.agent(position) else {
                        continue;
                    };
                    match self.eligibility(agent, load, false, target, ranking.filters()) {
                        Ok(()) => ranked.push(self.candidate(agent, load, position, target, turn)),
                        Err(reason) => left_out.add(&reason),
                    }
                }
            }
        }
        let trace = trace(
            target,
            label,
            closed,
            &ranked,
            members,
            left_out,
            Vec::new(),
        );
        (trace, ranked)
    }

    fn candidate(
        &self,
        agent: &Agent,
        load: AgentLoad,
        position: floor::Position,
        target: &Target,
        turn: usize,
    ) -> Candidate {
        let mut candidate = Candidate::unscored(agent, load, position as usize);
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
            if let Some(at) = load.last_assigned
                && pivot.is_none_or(|(latest, _)| at > latest)
            {
                pivot = Some((at, position));
            }
            match self.eligibility(agent, load, closed, target, false) {
                Ok(()) => ranked.push(Candidate::unscored(agent, load, position)),
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
        let trace = trace(target, label, closed, &ranked, members, left_out, excluded);
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
        if load.active >= agent.capacity {
            return Err(Exclusion::AtCapacity {
                active: load.active,
                capacity: agent.capacity,
            });
        }
        if let Some(filter) = target.filter.as_ref().filter(|_| !filter_known) {
            match self.scope.admits(filter, agent.cel_value()) {
                Ok(true) => {}
                Ok(false) => return Err(Exclusion::FilterFalse),
                Err(error) => return Err(Exclusion::FilterFailed(error)),
            }
        }
        if agent
            .shift
            .as_ref()
            .is_some_and(|shift| !shift.is_open(self.now))
        {
            return Err(Exclusion::OffShift);
        }
        if let Some((sessions, since)) = self.fair_share
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
        if let Some((missed, until)) = parked(self.app, self.state, &agent.id, self.now) {
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
    let since = state
        .available_since(agent)
        .and_then(|at| at.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let (streak, latest) = misses.streak(since);
    let until = std::time::UNIX_EPOCH + std::time::Duration::from_millis(latest?) + app.park_for;
    (streak >= app.max_missed && until > now).then_some((streak, until))
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
