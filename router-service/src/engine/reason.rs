//! The one-line reasons decisions carry: which rule, which targets were tried and how they
//! fared, and whether stickiness moved someone first.

use handoff_core::id::GroupId;

use super::{App, Candidate, Rule, Sticky, TargetOutcome, TargetTrace};

pub(super) fn chosen(
    app: &App,
    rule: &Rule,
    targets: &[TargetTrace],
    ranked: &[Candidate],
) -> String {
    let mut reason = format!("rule {:?}", rule.name);
    for trace in targets {
        reason.push_str(&format!(
            "; {}: {}",
            trace.label,
            describe_target(app, trace)
        ));
    }
    match ranked.first().and_then(|c| c.sticky.map(|s| (s, &c.agent))) {
        Some((Sticky::Owner, agent)) => reason.push_str(&format!("; owner {agent} first")),
        Some((Sticky::Previous, agent)) => {
            reason.push_str(&format!("; previous agent {agent} first"))
        }
        None => {}
    }
    if rule.group_only {
        reason.push_str("; answered the group alone");
    }
    reason
}

pub(super) fn fallback(rule: &Rule, targets: &[TargetTrace], group: Option<GroupId>) -> String {
    let tried: Vec<String> = targets
        .iter()
        .map(|trace| format!("{} {}", trace.label, short_outcome(trace)))
        .collect();
    let answer = match group {
        Some(group) => format!("answered group {group} alone"),
        None => "no group to answer".to_owned(),
    };
    format!(
        "rule {:?}: no eligible agent ({}); {answer}",
        rule.name,
        tried.join(", ")
    )
}

fn describe_target(app: &App, trace: &TargetTrace) -> String {
    let place = match trace.group {
        Some(id) => match app.group(id) {
            Some(group) => format!("group {id} ({})", group.name),
            None => format!("group {id}"),
        },
        None => "all agents".to_owned(),
    };
    match trace.outcome {
        TargetOutcome::Chosen => format!(
            "{place} of {} agents, ranked {}",
            trace.members,
            trace.strategy.as_str()
        ),
        TargetOutcome::Closed => format!("{place}: closed"),
        TargetOutcome::NoEligible => format!("{place}: {}", short_outcome(trace)),
    }
}

/// `closed`, or `none of 5 eligible (3 offline, 2 at capacity)`.
fn short_outcome(trace: &TargetTrace) -> String {
    if trace.outcome == TargetOutcome::Closed {
        return "closed".to_owned();
    }
    if trace.members == 0 {
        return "has no agents".to_owned();
    }
    let parts: Vec<String> = trace
        .left_out
        .counts()
        .map(|(label, n)| format!("{n} {label}"))
        .collect();
    format!("none of {} eligible ({})", trace.members, parts.join(", "))
}
