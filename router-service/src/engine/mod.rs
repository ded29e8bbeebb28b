//! The routing engine: decides, and does nothing else.
//!
//! No I/O, no async, no clock of its own: [`decide`] takes the app's [`Catalog`] entry,
//! the [`Handoff`] being routed, a [`LoadView`] of the agents' live load and the time, and
//! returns a [`Decision`] that carries its own explanation. The same inputs always give the
//! same decision. Where state lives is the store's business; how it travels, the gRPC
//! adapter's.

mod catalog;
mod decision;
mod rank;

use std::{collections::BTreeMap, time::SystemTime};

use handoff_core::id::{ClientUserId, SdkAppId, SessionId};

pub use catalog::{Agent, App, Catalog, Group};
pub use decision::{Answer, Candidate, Decision, Excluded, Exclusion, Strategy};
pub use rank::{AgentLoad, LoadView};

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

/// The name of the rule every app falls back to when nothing more specific matches.
pub const DEFAULT_RULE: &str = "default";

/// Decides who should take `handoff` among `app`'s agents, given their live `loads`.
///
/// The target is the app's default group; its agents who are available and below capacity
/// are ranked [`Strategy::LeastLoaded`]. When none is eligible the answer is the target group
/// alone (Tencent queues the session there), or the app's fallback group when there is no
/// target.
pub fn decide(app: &App, handoff: &Handoff, loads: &dyn LoadView, now: SystemTime) -> Decision {
    let _ = (handoff, now);
    let Some(group) = app.target_group() else {
        return Decision::no_target(app.fallback_group());
    };
    let mut candidates = Vec::new();
    let mut excluded = Vec::new();
    for (position, agent) in app.members(group.id) {
        let load = loads.load(&agent.id);
        match rank::eligibility(agent, load) {
            Ok(()) => candidates.push(Candidate::new(agent, position, load)),
            Err(reason) => excluded.push(Excluded {
                agent: agent.id.clone(),
                reason,
            }),
        }
    }
    rank::least_loaded(&mut candidates);
    Decision::ranked(group, Strategy::LeastLoaded, candidates, excluded)
}

#[cfg(test)]
mod tests;
