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
pub mod expr;
mod rank;
mod reason;
pub mod schedule;
mod state;

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use handoff_core::{
    config::AgentStatus,
    id::{ClientUserId, SdkAppId, SessionId},
};

pub use catalog::{
    Agent, AgentFault, AgentField, App, Catalog, ConditionalRule, DEFAULT_RULE, Group, Rule, Target,
};
pub use decision::{
    Answer, Candidate, Decision, Excluded, Exclusion, RuleOutcome, RuleTrace, Sticky, Tally,
    TargetOutcome, TargetTrace,
};
pub use handoff_core::config::Strategy;
pub use state::{AgentLoad, Customer, LiveSession, RosterChanges, SessionState, StateView, roster};

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
pub fn decide(app: &App, handoff: &Handoff, state: &dyn StateView, now: SystemTime) -> Decision {
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
    let roster = roster(app, state.roster_changes());
    let search = Search {
        app,
        roster: &roster,
        state,
        scope: &scope,
        session: &handoff.session,
        now,
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
            if rule.sticky {
                put_sticky_first(&mut ranked, customer, state, app.sticky_ttl, now);
            }
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

/// What searching any target of one decision needs: the app, its roster as it stands, the
/// live state, the CEL scope of this handoff, and the time.
struct Search<'a> {
    app: &'a App,
    roster: &'a [&'a Arc<Agent>],
    state: &'a dyn StateView,
    scope: &'a Scope<'a>,
    session: &'a SessionId,
    now: SystemTime,
}

impl Search<'_> {
    /// Finds and ranks the eligible agents of `target`.
    fn target(&self, target: &Target, label: String) -> (TargetTrace, Vec<Candidate>) {
        let closed = target
            .group
            .and_then(|id| self.app.group(id))
            .and_then(|group| group.hours.as_ref())
            .is_some_and(|hours| !hours.is_open(self.now));
        let mut ranked = Vec::new();
        let mut excluded = Vec::new();
        let mut left_out = Tally::default();
        let mut members = 0;
        let mut pivot: Option<(SystemTime, usize)> = None;
        for (position, agent) in self.roster.iter().enumerate() {
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
            match self.eligibility(agent, load, closed, target) {
                Ok(()) => ranked.push(Candidate {
                    agent: agent.id.clone(),
                    capacity: agent.capacity,
                    active: load.active,
                    last_assigned: load.last_assigned,
                    score: 0.0,
                    sticky: None,
                    position,
                }),
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
            self.roster
                .get(candidate.position)
                .map(|agent| target.skills.iter().map(|skill| agent.skill(skill)).sum())
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
        let outcome = if closed {
            TargetOutcome::Closed
        } else if ranked.is_empty() {
            TargetOutcome::NoEligible
        } else {
            TargetOutcome::Chosen
        };
        let trace = TargetTrace {
            label,
            group: target.group,
            strategy: target.strategy,
            outcome,
            members,
            eligible: ranked.len(),
            left_out,
            excluded,
        };
        (trace, ranked)
    }

    /// Whether `agent` may be offered a session of `target`; the first reason it may not.
    fn eligibility(
        &self,
        agent: &Agent,
        load: AgentLoad,
        group_closed: bool,
        target: &Target,
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
        if agent
            .shift
            .as_ref()
            .is_some_and(|shift| !shift.is_open(self.now))
        {
            return Err(Exclusion::OffShift);
        }
        if let Some(filter) = &target.filter {
            match self.scope.admits(filter, agent.cel_value()) {
                Ok(true) => {}
                Ok(false) => return Err(Exclusion::FilterFalse),
                Err(error) => return Err(Exclusion::FilterFailed(error)),
            }
        }
        Ok(())
    }
}

/// Moves the customer's owner, then their previous agent (within `ttl`), to the front when
/// they are among the candidates.
fn put_sticky_first(
    ranked: &mut Vec<Candidate>,
    customer: &Customer,
    state: &dyn StateView,
    ttl: std::time::Duration,
    now: SystemTime,
) {
    let previous = state
        .last_agent(&customer.id)
        .filter(|(_, at)| now.duration_since(*at).unwrap_or_default() <= ttl)
        .map(|(agent, _)| agent.clone());
    let picks = [
        (previous, Sticky::Previous),
        (customer.owner.clone(), Sticky::Owner),
    ];
    for (agent, why) in picks {
        let Some(agent) = agent else { continue };
        if let Some(index) = ranked.iter().position(|c| c.agent == agent) {
            let mut candidate = ranked.remove(index);
            candidate.sticky.get_or_insert(why);
            ranked.insert(0, candidate);
        }
    }
}

#[cfg(test)]
mod tests;
