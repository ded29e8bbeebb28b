//! The one-line reasons decisions carry: which rule, which targets were tried and how they
//! fared, and whether stickiness moved someone first.

use std::fmt::Write;

use handoff_core::id::GroupId;

use super::{App, Candidate, Rule, Sticky, TargetOutcome, TargetTrace};

pub(super) fn chosen(
    app: &App,
    rule: &Rule,
    targets: &[TargetTrace],
    ranked: &[Candidate],
) -> String {
    // Written into one buffer: this runs for every AssignHuman, under the store's lock.
    let mut reason = String::with_capacity(96);
    let _ = write!(reason, "rule {:?}", rule.name);
    for trace in targets {
        let _ = write!(reason, "; {}: ", trace.label);
        describe_target(&mut reason, app, trace);
    }
    match ranked.first().and_then(|c| c.sticky.map(|s| (s, &c.agent))) {
        Some((Sticky::Owner, agent)) => {
            let _ = write!(reason, "; owner {agent} first");
        }
        Some((Sticky::Previous, agent)) => {
            let _ = write!(reason, "; previous agent {agent} first");
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

fn describe_target(out: &mut String, app: &App, trace: &TargetTrace) {
    match trace.group {
        Some(id) => match app.group(id) {
            Some(group) => {
                let _ = write!(out, "group {id} ({})", group.name);
            }
            None => {
                let _ = write!(out, "group {id}");
            }
        },
        None => out.push_str("all agents"),
    }
    match trace.outcome {
        TargetOutcome::Chosen => {
            let _ = write!(
                out,
                " of {} agents, ranked {}",
                trace.members,
                trace.strategy.as_str()
            );
            if let Some(why) = &trace.overflow {
                let _ = write!(out, " ({why}, but no later target had anyone)");
            }
        }
        TargetOutcome::Overflowed => {
            let _ = write!(
                out,
                ": overflowed, {}",
                trace.overflow.as_deref().unwrap_or("")
            );
        }
        TargetOutcome::Closed => out.push_str(": closed"),
        TargetOutcome::NoEligible => {
            let _ = write!(out, ": {}", short_outcome(trace));
        }
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
