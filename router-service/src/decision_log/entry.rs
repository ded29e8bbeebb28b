//! The decision log's format: one [`Entry`] per line, as JSON. The writer serializes it and
//! replay deserializes it, so the two cannot disagree: a field renamed is renamed for both
//! (and fails the format test, which holds the lines to their documented shape), and a new
//! [`Change`] kind is a new variant that [`Entry::change`] and [`Entry::into_change`] must
//! both handle before the crate compiles.
//!
//! Each file begins with a [`Entry::State`] line that carries the format's version,
//! [`FORMAT`]; a reader refuses a file of a newer version.

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use handoff_core::{
    config::{AgentConfig, AgentStatus, Strategy},
    id::{AgentId, ClientUserId, GroupId, SdkAppId, SessionId},
};
use serde::{Deserialize, Serialize};

pub use crate::store::snapshot::AppSnapshot;
use crate::{
    engine::{self, Candidate, Customer, Decision, Handoff, StateView, desk::DeskDelta},
    store::{
        Applied, Assignment, Change, SessionEvent, SessionEventKind,
        record::{CustomerRecord, HistoryRecord, from_ms, to_ms},
    },
};

/// The version of the format this build writes and the newest it reads. Version 1 is the
/// format as first released; files written before the version was recorded are version 1.
/// Version 2 adds the Desk sync's entries (`desk_roster`, `desk_load`), the `reconciled`
/// session event, and the Desk roster in a state's apps. Version 3 adds a decision's
/// `weight` (absent when 1), a seat's `weight`, each group's `waits` in a state's apps, and
/// a session event's `by`.
pub const FORMAT: u32 = 3;

/// A customer's previous agent as a decision saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// When the link was made, Unix milliseconds.
    pub at_ms: u64,
}

/// What a decision saw of its customer, besides the handoff itself: the pushed profile
/// and the previous agent.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The candidates ranked, as the decision saw them.
    pub considered: Vec<Considered>,
    /// The customer's pushed profile.
    pub profile: Option<Box<CustomerRecord>>,
    /// The customer's previous agent.
    pub previous: Option<Previous>,
}

impl Seen {
    /// What `decision`, made over `state` for `handoff`, saw.
    pub fn of(decision: &Decision, handoff: &Handoff, state: &dyn StateView) -> Self {
        Self {
            considered: Considered::of(decision),
            profile: state
                .customer(&handoff.client_user)
                .map(|customer| Box::new(CustomerRecord::from(customer))),
            previous: state
                .last_agent(&handoff.client_user)
                .map(|(agent, at)| Previous {
                    agent: agent.clone(),
                    at_ms: to_ms(at),
                }),
        }
    }
}

/// An agent a decision considered, as it saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Considered {
    /// The agent, by its e-mail id.
    pub agent: AgentId,
    /// Sessions holding its seats.
    pub active: u32,
    /// Its capacity.
    pub capacity: u32,
    /// When it was last assigned a session, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_assigned_ms: Option<u64>,
    /// The strategy's score.
    pub score: f64,
}

impl Considered {
    /// The candidates `decision` ranked, as it saw them.
    pub fn of(decision: &Decision) -> Vec<Considered> {
        decision
            .ranked
            .iter()
            .map(|candidate| Considered {
                agent: candidate.agent.clone(),
                active: candidate.active,
                capacity: candidate.capacity,
                last_assigned_ms: candidate.last_assigned.map(to_ms),
                score: candidate.score,
            })
            .collect()
    }
}

/// An AssignHuman decision as logged: what was asked, what was answered, and what the
/// decision saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    /// When, by the router's clock, Unix milliseconds.
    pub at_ms: u64,
    /// The Tencent app (`SdkAppId`).
    pub app: SdkAppId,
    /// The session handed over.
    pub session: SessionId,
    /// The end user (`ClientUserId`).
    pub customer: ClientUserId,
    /// When the user asked, by the caller's clock, Unix milliseconds.
    pub event_time_ms: u64,
    /// The caller's platform, lower case; absent when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// The channel (`chat`, `voice`, ...); absent when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub channel: String,
    /// The caller's free attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The name of the rule that decided.
    pub rule: String,
    /// Its target's strategy; absent when no target ranked anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// The `AgentGroupId` answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// The `AgentIdList` answered, best first.
    pub agents: Vec<AgentId>,
    /// The agent whose seat was reserved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<AgentId>,
    /// Whether no agent could be ranked (the answer is the fallback).
    pub fallback: bool,
    /// The seats the session takes of the reserved agent (its rule's `weight`); absent
    /// when 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub weight: u32,
    /// Whether this is a retry's answer, replayed.
    pub replayed: bool,
    /// The explanation, for people.
    pub reason: String,
    /// The candidates ranked, as the decision saw them (none when replayed).
    pub considered: Vec<Considered>,
    /// The customer's pushed profile, as the decision saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Box<CustomerRecord>>,
    /// The customer's previous agent, as the decision saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
}

impl Decided {
    /// The handoff that was decided, as the engine takes it.
    pub fn handoff(&self) -> Handoff {
        Handoff {
            app: self.app,
            session: self.session.clone(),
            client_user: self.customer.clone(),
            event_time: from_ms(self.event_time_ms),
            platform: self.platform.clone(),
            channel: self.channel.clone(),
            attributes: self.attributes.clone(),
        }
    }

    /// The previous agent the decision saw, as the store keeps it.
    pub fn previous_link(&self) -> Option<HistoryRecord> {
        self.previous.as_ref().map(|previous| HistoryRecord {
            agent: previous.agent.clone(),
            at_ms: previous.at_ms,
            event_ms: None,
        })
    }

    /// The pushed profile the decision saw.
    pub fn customer(&self) -> Option<Customer> {
        self.profile.as_deref().cloned().map(Customer::from)
    }

    /// The logged answer as a decision a store reserves as it did: its agents ranked as
    /// answered (capacities as `app` has them now), the reserved one first.
    pub fn forced(&self, app: &engine::App) -> Decision {
        let ranked: Vec<Candidate> = self
            .reserved
            .as_ref()
            .map(|_| self.agents.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(position, agent)| Candidate {
                agent: agent.clone(),
                capacity: app
                    .agents()
                    .iter()
                    .find(|a| a.id == *agent)
                    .map_or(u32::MAX, |a| a.capacity),
                active: 0,
                last_assigned: None,
                score: 0.0,
                sticky: None,
                position,
                tier: 0,
            })
            .collect();
        Decision {
            rule: self.rule.clone(),
            rules: Vec::new(),
            targets: Vec::new(),
            strategy: self.strategy,
            group: self.group,
            max_agents: ranked.len().max(1),
            group_only: self.reserved.is_none() && !self.fallback,
            weight: self.weight,
            headroom_used: None,
            fallback: self.fallback,
            reason: self.reason.clone(),
            ranked,
        }
    }
}

fn one() -> u32 {
    1
}

fn is_one(value: &u32) -> bool {
    *value == 1
}

/// Why a file has a `state` line where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateReason {
    /// The router started: its state may differ from where the log left off (a restart
    /// with state it kept, or one that lost it).
    Start,
    /// The file before was full: this one continues it.
    Rotation,
}

/// One line of the log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// An AssignHuman decision.
    Decision(Box<Decided>),
    /// The live state a file starts with.
    State {
        /// When it was read, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The format of the file from here on ([`FORMAT`]); 1 when absent.
        #[serde(default = "first_format")]
        format: u32,
        /// Why the file has a state here.
        reason: StateReason,
        /// Each app's seats, statuses, run-time roster and idle clocks.
        apps: Vec<AppSnapshot>,
    },
    /// A session event.
    SessionEvent {
        /// When it was recorded, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// The session it is about.
        session: SessionId,
        /// What happened.
        event: SessionEventKind,
        /// The agent serving the session after it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<AgentId>,
        /// The agent it came from (a transfer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_agent: Option<AgentId>,
        /// The end user.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<ClientUserId>,
        /// When it happened, by the reporter's clock, Unix milliseconds.
        event_time_ms: u64,
        /// The reporter's id for it (Tencent's `RequestID`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// What the router made of it.
        outcome: Applied,
        /// Who reported it by hand (the console's `console:<token name>`); absent for
        /// Tencent's events and other reporters.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An agent's live status.
    Status {
        /// When it was recorded, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// Whose status.
        agent: AgentId,
        /// The status from then on.
        status: AgentStatus,
        /// When it was set, by the reporter's clock, Unix milliseconds.
        event_time_ms: u64,
        /// The reporter's id for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// What the router made of it.
        outcome: Applied,
        /// The name of the router token the change came with (`[[router.auth.tokens]]`);
        /// absent for the all-in-one's own gateway and an open port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An agent added or replaced at run time.
    AgentPut {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// The definition, in the config file's shape.
        agent: AgentConfig,
        /// The name of the router token the change came with (`[[router.auth.tokens]]`);
        /// absent for the all-in-one's own gateway and an open port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An agent removed at run time.
    AgentRemoved {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// Who was removed.
        agent: AgentId,
        /// The name of the router token the change came with (`[[router.auth.tokens]]`);
        /// absent for the all-in-one's own gateway and an open port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Customers' previous agents linked before a time, forgotten (past `sticky_ttl`).
    LinksForgotten {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// Links recorded before this (Unix milliseconds) were forgotten.
        before_ms: u64,
    },
    /// What a Desk roster sync changed: members added, changed or gone, and the groups.
    DeskRoster {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// The changes, as the store keeps them.
        #[serde(flatten)]
        delta: DeskDelta,
    },
    /// A Desk status poll's counts of the sessions each member serves.
    DeskLoad {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// Each member's `CurrentAcceptCnt`.
        serving: Vec<(AgentId, u32)>,
    },
    /// What is known of a customer, pushed at run time.
    Customer {
        /// When, by the router's clock, Unix milliseconds.
        at_ms: u64,
        /// The Tencent app.
        app: SdkAppId,
        /// The profile, as stored.
        customer: CustomerRecord,
        /// The name of the router token the change came with (`[[router.auth.tokens]]`);
        /// absent for the all-in-one's own gateway and an open port.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

fn first_format() -> u32 {
    1
}

impl Entry {
    /// A decision's entry.
    pub fn decision(
        handoff: &Handoff,
        now: SystemTime,
        assignment: &Assignment,
        seen: Seen,
    ) -> Self {
        let (answer, replayed) = assignment.parts();
        Entry::Decision(Box::new(Decided {
            at_ms: to_ms(now),
            app: handoff.app,
            session: handoff.session.clone(),
            customer: handoff.client_user.clone(),
            event_time_ms: to_ms(handoff.event_time),
            platform: handoff.platform.clone(),
            channel: handoff.channel.clone(),
            attributes: handoff.attributes.clone(),
            rule: answer.rule.clone(),
            strategy: answer.strategy,
            group: answer.group,
            agents: answer.agents.clone(),
            reserved: answer.reserved.clone(),
            fallback: answer.fallback,
            weight: answer.weight,
            replayed,
            reason: answer.reason.clone(),
            considered: seen.considered,
            profile: seen.profile,
            previous: seen.previous,
        }))
    }

    /// A `state` entry read at `now`, for where the router starts writing (the writer makes
    /// it a rotation's when it begins a new file with it).
    pub fn state(now: SystemTime, apps: Vec<AppSnapshot>) -> Self {
        Entry::State {
            at_ms: to_ms(now),
            format: FORMAT,
            reason: StateReason::Start,
            apps,
        }
    }

    /// A state change's entry; `by` names the router token it came with.
    pub fn change(
        app: SdkAppId,
        now: SystemTime,
        change: &Change,
        applied: Applied,
        by: Option<&str>,
    ) -> Self {
        let at_ms = to_ms(now);
        let by = by.map(str::to_owned);
        match change {
            Change::SetStatus {
                agent,
                status,
                at,
                id,
                ..
            } => Entry::Status {
                at_ms,
                app,
                agent: agent.clone(),
                status: *status,
                event_time_ms: to_ms(*at),
                id: id.clone(),
                outcome: applied,
                by,
            },
            Change::PutAgent(agent) => Entry::AgentPut {
                at_ms,
                app,
                agent: agent.spec.clone(),
                by,
            },
            Change::RemoveAgent(agent) => Entry::AgentRemoved {
                at_ms,
                app,
                agent: agent.clone(),
                by,
            },
            Change::PutCustomer(customer) => Entry::Customer {
                at_ms,
                app,
                customer: CustomerRecord::from(customer),
                by,
            },
            Change::ForgetLinks { before } => Entry::LinksForgotten {
                at_ms,
                app,
                before_ms: to_ms(*before),
            },
            Change::DeskRoster(delta) => Entry::DeskRoster {
                at_ms,
                app,
                delta: delta.clone(),
            },
            Change::DeskLoad(serving) => Entry::DeskLoad {
                at_ms,
                app,
                serving: serving.clone(),
            },
            Change::Session(event) => Entry::SessionEvent {
                at_ms,
                app,
                session: event.session.clone(),
                event: event.kind,
                agent: event.agent.clone(),
                from_agent: event.from_agent.clone(),
                customer: event.customer.clone(),
                event_time_ms: to_ms(event.at),
                id: event.id.clone(),
                outcome: applied,
                by,
            },
        }
    }

    /// When the router wrote it, Unix milliseconds.
    pub fn at_ms(&self) -> u64 {
        match self {
            Entry::Decision(decided) => decided.at_ms,
            Entry::State { at_ms, .. }
            | Entry::SessionEvent { at_ms, .. }
            | Entry::Status { at_ms, .. }
            | Entry::AgentPut { at_ms, .. }
            | Entry::AgentRemoved { at_ms, .. }
            | Entry::LinksForgotten { at_ms, .. }
            | Entry::DeskRoster { at_ms, .. }
            | Entry::DeskLoad { at_ms, .. }
            | Entry::Customer { at_ms, .. } => *at_ms,
        }
    }

    /// The name of the router token a management change came with.
    pub fn by(&self) -> Option<&str> {
        match self {
            Entry::Status { by, .. }
            | Entry::AgentPut { by, .. }
            | Entry::AgentRemoved { by, .. }
            | Entry::Customer { by, .. } => by.as_deref(),
            Entry::Decision(_)
            | Entry::State { .. }
            | Entry::SessionEvent { .. }
            | Entry::LinksForgotten { .. }
            | Entry::DeskRoster { .. }
            | Entry::DeskLoad { .. } => None,
        }
    }

    /// The app it is about (none for a `state`, which holds every app's).
    pub fn app(&self) -> Option<SdkAppId> {
        match self {
            Entry::Decision(decided) => Some(decided.app),
            Entry::State { .. } => None,
            Entry::SessionEvent { app, .. }
            | Entry::Status { app, .. }
            | Entry::AgentPut { app, .. }
            | Entry::AgentRemoved { app, .. }
            | Entry::LinksForgotten { app, .. }
            | Entry::DeskRoster { app, .. }
            | Entry::DeskLoad { app, .. }
            | Entry::Customer { app, .. } => Some(*app),
        }
    }

    /// The state change a change's entry records, as a store applies it to `app` (the
    /// inverse of [`Entry::change`]); `Ok(None)` for a decision or a state, and an error
    /// for an agent definition `app` refuses.
    pub fn into_change(self, app: &engine::App) -> Result<Option<Change>, String> {
        Ok(Some(match self {
            Entry::Decision(_) | Entry::State { .. } => return Ok(None),
            Entry::SessionEvent {
                session,
                event,
                agent,
                from_agent,
                customer,
                event_time_ms,
                id,
                ..
            } => Change::Session(SessionEvent {
                session,
                kind: event,
                agent,
                from_agent,
                customer,
                at: from_ms(event_time_ms),
                id,
            }),
            Entry::Status {
                agent,
                status,
                event_time_ms,
                id,
                by,
                ..
            } => Change::SetStatus {
                agent,
                status,
                at: from_ms(event_time_ms),
                id,
                desk: by.as_deref() == Some(crate::service::desk_sync::BY_DESK),
            },
            Entry::AgentPut { agent, .. } => {
                let checked = app.check_agent(&agent).map_err(|fault| {
                    format!(
                        "agent {} is not valid under this config: {}: {}",
                        agent.id,
                        fault.field.config_key(),
                        fault.message
                    )
                })?;
                Change::PutAgent(Arc::new(checked))
            }
            Entry::AgentRemoved { agent, .. } => Change::RemoveAgent(agent),
            Entry::LinksForgotten { before_ms, .. } => Change::ForgetLinks {
                before: from_ms(before_ms),
            },
            Entry::DeskRoster { delta, .. } => Change::DeskRoster(delta),
            Entry::DeskLoad { serving, .. } => Change::DeskLoad(serving),
            Entry::Customer { customer, .. } => Change::PutCustomer(Customer::from(customer)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{engine::Answer, testing};

    /// One entry of each kind, as the router writes them: a decision, a state, and each
    /// kind of change.
    fn one_of_each() -> Result<Vec<Entry>, testing::Error> {
        let catalog = testing::catalog()?;
        let app = catalog.app(testing::app_id()?).ok_or("no app")?;
        let mut handoff = testing::handoff("s-1", from_ms(1_000))?;
        handoff.platform = "web".into();
        handoff.attributes.insert("topic".into(), "billing".into());
        let bob = AgentId::parse("bob@example.com")?;
        let answer = Answer {
            group: Some(GroupId::new(6521)?),
            agents: vec![bob.clone()],
            reserved: Some(bob.clone()),
            rule: "default".into(),
            strategy: Some(Strategy::LeastLoaded),
            fallback: false,
            reason: "least loaded in general".into(),
            weight: 2,
        };
        let seen = Seen {
            considered: vec![Considered {
                agent: bob.clone(),
                active: 1,
                capacity: 3,
                last_assigned_ms: Some(500),
                score: 0.25,
            }],
            profile: None,
            previous: Some(Previous {
                agent: bob,
                at_ms: 400,
            }),
        };
        let mut entries = vec![
            Entry::state(from_ms(900), vec![AppSnapshot::default()]),
            Entry::decision(&handoff, from_ms(1_000), &Assignment::Fresh(answer), seen),
        ];
        for change in testing::every_change()? {
            entries.push(Entry::change(
                app.id,
                from_ms(2_000),
                &change,
                Applied::Recorded,
                Some("crm"),
            ));
        }
        Ok(entries)
    }

    /// The lines of `format.jsonl`: the format as operators and their tools read it
    /// (`UPDATE_EXPECT=1 cargo test -p handoff-router format` rewrites it from the code;
    /// review the diff).
    const FORMAT_LINES: &str = include_str!("format.jsonl");

    #[test]
    fn every_kind_of_entry_is_written_as_the_format_says_and_read_back_the_same()
    -> Result<(), testing::Error> {
        let written: Vec<String> = one_of_each()?
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/decision_log/format.jsonl");
            std::fs::write(path, written.join("\n") + "\n")?;
        }
        let documented: Vec<&str> = FORMAT_LINES.lines().collect();
        // A field renamed, removed or added fails here: the format changed, and older logs
        // or tools reading them would not read the new one (bump FORMAT, say so in the
        // CHANGELOG, and update format.jsonl).
        assert_eq!(written, documented);
        for line in documented {
            let entry: Entry = serde_json::from_str(line)?;
            assert_eq!(serde_json::to_string(&entry)?, line);
        }
        Ok(())
    }

    #[test]
    fn every_kind_of_change_comes_back_from_its_line_as_it_was() -> Result<(), testing::Error> {
        let catalog = testing::catalog()?;
        let app = catalog.app(testing::app_id()?).ok_or("no app")?;
        for change in testing::every_change()? {
            let at = from_ms(2_000);
            let entry = Entry::change(app.id, at, &change, Applied::Recorded, None);
            let line = serde_json::to_string(&entry)?;
            let read: Entry = serde_json::from_str(&line)?;
            let back = read
                .into_change(app)?
                .ok_or("a change's entry has a change")?;
            let again = Entry::change(app.id, at, &back, Applied::Recorded, None);
            let again = serde_json::to_string(&again)?;
            assert_eq!(again, line);
            assert_eq!(back.identity(), change.identity(), "{line}");
        }
        Ok(())
    }

    #[test]
    fn an_unknown_kind_is_refused_and_a_state_without_its_format_is_of_the_first()
    -> Result<(), testing::Error> {
        let old = r#"{"kind":"state","at_ms":1,"reason":"rotation","apps":[]}"#;
        assert!(matches!(
            serde_json::from_str(old)?,
            Entry::State {
                format: 1,
                reason: StateReason::Rotation,
                ..
            }
        ));
        assert!(
            serde_json::from_str::<Entry>(r#"{"kind":"wrap_up","at_ms":1,"app":1400000001}"#)
                .is_err()
        );
        Ok(())
    }
}
