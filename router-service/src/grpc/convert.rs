//! Conversions between the wire types and the engine's and config's, each field checked
//! once and named when it is wrong.

use std::time::SystemTime;

use handoff_core::{
    config::{AgentConfig, AgentStatus, CustomerConfig, ScheduleConfig},
    id::{AgentId, ClientUserId, GroupId, SdkAppId},
};
use handoff_proto::router::v1 as pb;

use handoff_core::id::SessionId;

use super::request::{check_attributes, check_names, check_text, event_id, time};
use crate::engine::desk::{Source, Sources};
use crate::{
    engine::{
        Agent, Answer, Customer, Exclusion, LiveSession, RuleOutcome, SessionState, Sticky,
        Strategy, TargetOutcome,
    },
    error::RouterError,
    service::{
        AgentListing, AgentSource, DEFAULT_PAGE, Explanation, GroupListing, MAX_PAGE, Page, Report,
    },
    store::{Applied, Assignment, SessionEvent, SessionEventKind},
};

/// The app id of a request.
pub fn app_id(value: u64) -> Result<SdkAppId, RouterError> {
    SdkAppId::new(value).map_err(|e| RouterError::invalid("sdk_app_id", e))
}

/// The wire response for an assignment.
pub fn assignment(assignment: Assignment) -> pb::AssignHumanResponse {
    let replayed = matches!(assignment, Assignment::Replayed(_));
    match assignment {
        Assignment::Fresh(answer) | Assignment::Replayed(answer) => response(answer, replayed),
    }
}

fn response(answer: Answer, replayed: bool) -> pb::AssignHumanResponse {
    pb::AssignHumanResponse {
        agent_group_id: answer.group.map(GroupId::get),
        agent_ids: answer.agents.into_iter().map(String::from).collect(),
        decision: Some(pb::Decision {
            rule: answer.rule,
            strategy: answer
                .strategy
                .map_or(pb::Strategy::Unspecified, strategy)
                .into(),
            fallback: answer.fallback,
            reason: answer.reason,
            reserved_agent_id: answer.reserved.map(String::from).unwrap_or_default(),
            replayed,
            weight: answer.weight,
        }),
    }
}

fn strategy(strategy: Strategy) -> pb::Strategy {
    match strategy {
        Strategy::LeastLoaded => pb::Strategy::LeastLoaded,
        Strategy::LongestIdle => pb::Strategy::LongestIdle,
        Strategy::RoundRobin => pb::Strategy::RoundRobin,
        Strategy::MostSkilled => pb::Strategy::MostSkilled,
        Strategy::FixedOrder => pb::Strategy::FixedOrder,
        Strategy::Random => pb::Strategy::Random,
    }
}

/// The wire explanation of a decision, the answer it leads to and where the load of the
/// agents it weighed comes from.
pub fn explanation(explained: Explanation) -> pb::ExplainAssignmentResponse {
    let Explanation {
        decision,
        answer,
        sessions,
        agents,
    } = explained;
    let fields = |agent: &AgentId| {
        agents
            .get(agent)
            .map(|(sources, _)| field_sources(*sources))
    };
    let rules = decision
        .rules
        .iter()
        .map(|trace| {
            let (outcome, error) = match &trace.outcome {
                RuleOutcome::Matched => (pb::RuleOutcome::Matched, String::new()),
                RuleOutcome::NotMatched => (pb::RuleOutcome::NotMatched, String::new()),
                RuleOutcome::Failed(error) => (pb::RuleOutcome::Failed, error.clone()),
            };
            pb::RuleEvaluation {
                rule: trace.rule.clone(),
                outcome: outcome.into(),
                error,
            }
        })
        .collect();
    let targets = decision
        .targets
        .iter()
        .map(|trace| pb::TargetEvaluation {
            label: trace.label.clone(),
            group_id: trace.group.map(GroupId::get),
            strategy: strategy(trace.strategy).into(),
            outcome: match trace.outcome {
                TargetOutcome::Chosen => pb::TargetOutcome::Chosen,
                TargetOutcome::Closed => pb::TargetOutcome::Closed,
                TargetOutcome::NoEligible => pb::TargetOutcome::NoEligible,
                TargetOutcome::Overflowed => pb::TargetOutcome::Overflowed,
            }
            .into(),
            eligible: u32::try_from(trace.eligible).unwrap_or(u32::MAX),
            free_seats: u32::try_from(trace.free_seats).unwrap_or(u32::MAX),
            overflow: trace.overflow.clone().unwrap_or_default(),
            excluded: trace
                .excluded
                .iter()
                .map(|excluded| {
                    let (reason, detail) = exclusion(&excluded.reason);
                    pb::ExcludedAgent {
                        agent_id: excluded.agent.to_string(),
                        reason: reason.into(),
                        detail,
                        fields: fields(&excluded.agent),
                    }
                })
                .collect(),
        })
        .collect();
    let candidates = decision
        .ranked
        .iter()
        .map(|candidate| pb::CandidateScore {
            agent_id: candidate.agent.to_string(),
            score: candidate.score,
            active: candidate.active,
            capacity: candidate.capacity,
            last_assigned: candidate.last_assigned.map(timestamp),
            sticky: match candidate.sticky {
                None => pb::StickyReason::Unspecified,
                Some(Sticky::Owner) => pb::StickyReason::Owner,
                Some(Sticky::Previous) => pb::StickyReason::Previous,
            }
            .into(),
            fields: fields(&candidate.agent),
            unattributed: agents.get(&candidate.agent).map_or(0, |(_, extra)| *extra),
            tier: u32::try_from(candidate.tier).unwrap_or(u32::MAX),
        })
        .collect();
    let weighed: std::collections::HashSet<&AgentId> = decision
        .ranked
        .iter()
        .map(|candidate| &candidate.agent)
        .chain(decision.targets.iter().flat_map(|trace| {
            trace
                .excluded
                .iter()
                .filter(|excluded| matches!(excluded.reason, Exclusion::AtCapacity { .. }))
                .map(|excluded| &excluded.agent)
        }))
        .collect();
    let load_sessions = sessions
        .iter()
        .filter(|session| session.agent.as_ref().is_some_and(|a| weighed.contains(a)))
        .map(live_session)
        .collect();
    pb::ExplainAssignmentResponse {
        answer: Some(response(answer, false)),
        rules,
        targets,
        candidates,
        load_sessions,
    }
}

/// The wire form of a session holding a seat.
pub fn live_session(session: &LiveSession) -> pb::Session {
    pb::Session {
        session_id: session.session.to_string(),
        state: match session.state {
            SessionState::Provisional => pb::SessionState::Provisional,
            SessionState::Confirmed => pb::SessionState::Confirmed,
            SessionState::Ended | SessionState::Expired => pb::SessionState::Unspecified,
        }
        .into(),
        agent_id: session
            .agent
            .as_ref()
            .map(AgentId::to_string)
            .unwrap_or_default(),
        client_user_id: session
            .customer
            .as_ref()
            .map(ClientUserId::to_string)
            .unwrap_or_default(),
        since: Some(timestamp(session.since)),
        expires_at: Some(timestamp(session.expires_at)),
        rule: session.rule.clone().unwrap_or_default(),
    }
}

/// A session event from the wire, every field checked.
pub fn session_event(request: pb::ReportSessionEventRequest) -> Result<SessionEvent, RouterError> {
    let session =
        SessionId::parse(request.session_id).map_err(|e| RouterError::invalid("session_id", e))?;
    let kind = match pb::SessionEventKind::try_from(request.kind) {
        Ok(pb::SessionEventKind::Assigned) => SessionEventKind::Assigned,
        Ok(pb::SessionEventKind::Transferred) => SessionEventKind::Transferred,
        Ok(pb::SessionEventKind::Failed) => SessionEventKind::Failed,
        Ok(pb::SessionEventKind::Ended) => SessionEventKind::Ended,
        Ok(pb::SessionEventKind::Unspecified) | Err(_) => {
            return Err(RouterError::invalid(
                "kind",
                "must be ASSIGNED, TRANSFERRED, FAILED or ENDED",
            ));
        }
    };
    let agent = optional_agent("agent_id", request.agent_id)?;
    if agent.is_none()
        && matches!(
            kind,
            SessionEventKind::Assigned | SessionEventKind::Transferred
        )
    {
        return Err(RouterError::invalid(
            "agent_id",
            format!("is required for {}", kind.as_str()),
        ));
    }
    let customer = Some(request.client_user_id)
        .filter(|id| !id.is_empty())
        .map(ClientUserId::parse)
        .transpose()
        .map_err(|e| RouterError::invalid("client_user_id", e))?;
    let at = time("event_time", request.event_time)?.ok_or_else(|| {
        RouterError::invalid("event_time", "is required: events are ordered by it")
    })?;
    Ok(SessionEvent {
        session,
        kind,
        agent,
        from_agent: optional_agent("from_agent_id", request.from_agent_id)?,
        customer,
        at,
        id: event_id("event_id", request.event_id)?,
    })
}

fn optional_agent(field: &'static str, id: String) -> Result<Option<AgentId>, RouterError> {
    Some(id)
        .filter(|id| !id.is_empty())
        .map(AgentId::parse)
        .transpose()
        .map_err(|e| RouterError::invalid(field, e))
}

/// When and under which identity a status was reported.
pub fn status_report(
    event_time: Option<prost_types::Timestamp>,
    id: String,
) -> Result<Report, RouterError> {
    Ok(Report {
        at: time("event_time", event_time)?,
        id: event_id("event_id", id)?,
        by: None,
    })
}

/// How page tokens begin: the session a page ended with follows.
const PAGE_AFTER: &str = "after:";

/// The page a ListSessions request asks for (AIP-158): `page_size` 0 is 500, more than
/// 1000 is 1000; `page_token` is empty or one [`page_token`] gave.
pub fn page(page_size: i32, page_token: &str) -> Result<Page, RouterError> {
    let size = match page_size {
        0 => DEFAULT_PAGE,
        size if size < 0 => {
            return Err(RouterError::invalid("page_size", "must not be negative"));
        }
        size => usize::try_from(size).unwrap_or(MAX_PAGE).min(MAX_PAGE),
    };
    let after = if page_token.is_empty() {
        None
    } else {
        let session = page_token
            .strip_prefix(PAGE_AFTER)
            .and_then(|session| SessionId::parse(session).ok())
            .ok_or_else(|| RouterError::invalid("page_token", "is not one this router gave"))?;
        Some(session)
    };
    Ok(Page { size, after })
}

/// The token of the page that follows the one ending with `last`.
pub fn page_token(last: &SessionId) -> String {
    format!("{PAGE_AFTER}{last}")
}

/// The wire form of what a report did.
pub fn outcome(applied: Applied) -> pb::ReportOutcome {
    match applied {
        Applied::Recorded => pb::ReportOutcome::Recorded,
        Applied::Duplicate => pb::ReportOutcome::Duplicate,
        Applied::Superseded => pb::ReportOutcome::Superseded,
        Applied::Implausible => pb::ReportOutcome::Implausible,
        Applied::UnknownAgent => pb::ReportOutcome::UnknownAgent,
        Applied::OverCapacity => pb::ReportOutcome::OverCapacity,
    }
}

fn exclusion(reason: &Exclusion) -> (pb::Exclusion, String) {
    match reason {
        Exclusion::GroupClosed => (pb::Exclusion::GroupClosed, String::new()),
        Exclusion::Away => (pb::Exclusion::Away, String::new()),
        Exclusion::Offline => (pb::Exclusion::Offline, String::new()),
        Exclusion::OffShift => (pb::Exclusion::OffShift, String::new()),
        Exclusion::AtCapacity {
            active,
            capacity,
            weight: 1,
        } => (pb::Exclusion::AtCapacity, format!("{active}/{capacity}")),
        Exclusion::AtCapacity {
            active,
            capacity,
            weight,
        } => (
            pb::Exclusion::AtCapacity,
            format!("{active}/{capacity}; this session takes {weight} seats"),
        ),
        Exclusion::HeadroomKept { kept, free } => (
            pb::Exclusion::HeadroomKept,
            format!("headroom kept: {kept} seats; {free} free"),
        ),
        Exclusion::FilterFalse => (pb::Exclusion::FilterFalse, String::new()),
        Exclusion::FilterFailed(error) => (pb::Exclusion::FilterFailed, error.clone()),
        Exclusion::WrappingUp { until } => (
            pb::Exclusion::WrappingUp,
            format!("until {}", crate::engine::clock_time(*until)),
        ),
        Exclusion::FairShare {
            taken,
            limit,
            window,
        } => (
            pb::Exclusion::FairShare,
            format!("{taken} of {limit} in {}s", window.as_secs()),
        ),
        Exclusion::Parked { missed, until } => (
            pb::Exclusion::Parked,
            format!(
                "{missed} missed offers; until {}",
                crate::engine::clock_time(*until)
            ),
        ),
    }
}

/// An agent definition from the wire, its ids parsed; the router checks the rest against
/// the app as it checks the config file's agents.
pub fn agent_config(agent: pb::Agent) -> Result<AgentConfig, RouterError> {
    let id = AgentId::parse(agent.id).map_err(|e| RouterError::invalid("agent.id", e))?;
    check_text("agent.name", &agent.name)?;
    if agent.group_ids.len() > 64 {
        return Err(RouterError::invalid("agent.group_ids", "at most 64 groups"));
    }
    check_names("agent.skills", agent.skills.keys())?;
    check_attributes("agent.attributes", &agent.attributes)?;
    if let Some(shift) = &agent.shift {
        check_text("agent.shift.time_zone", &shift.time_zone)?;
        check_names("agent.shift.weekly", &shift.weekly)?;
        check_names("agent.shift.closed", &shift.closed)?;
    }
    let groups = agent
        .group_ids
        .into_iter()
        .map(GroupId::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RouterError::invalid("agent.group_ids", e))?;
    let status = match pb::AgentStatus::try_from(agent.status) {
        Ok(pb::AgentStatus::Unspecified) => AgentStatus::Available,
        _ => status(agent.status)
            .ok_or_else(|| RouterError::invalid("agent.status", "unknown status"))?,
    };
    let name = Some(agent.name).filter(|name| !name.is_empty());
    Ok(AgentConfig {
        id,
        name,
        groups,
        capacity: agent.capacity,
        status,
        skills: agent.skills.into_iter().collect(),
        attributes: agent.attributes.into_iter().collect(),
        shift: agent.shift.map(|shift| ScheduleConfig {
            time_zone: Some(shift.time_zone).filter(|zone| !zone.is_empty()),
            weekly: shift.weekly,
            closed: shift.closed,
        }),
    })
}

/// The wire form of an agent, with `status` as its live status.
pub fn agent(agent: &Agent, status: AgentStatus) -> pb::Agent {
    let spec = &agent.spec;
    pb::Agent {
        id: agent.id.to_string(),
        name: agent.name.clone().unwrap_or_default(),
        group_ids: agent.groups.iter().map(|group| group.get()).collect(),
        capacity: agent.capacity,
        status: status_to_wire(status).into(),
        skills: agent.skills.clone().into_iter().collect(),
        attributes: agent.attributes.clone().into_iter().collect(),
        shift: spec.shift.as_ref().map(|shift| pb::Schedule {
            time_zone: agent
                .shift
                .as_ref()
                .map(|compiled| compiled.time_zone().to_owned())
                .unwrap_or_default(),
            weekly: shift.weekly.clone(),
            closed: shift.closed.clone(),
        }),
    }
}

/// A status from the wire; `None` for unspecified or unknown values.
pub fn status(value: i32) -> Option<AgentStatus> {
    match pb::AgentStatus::try_from(value) {
        Ok(pb::AgentStatus::Available) => Some(AgentStatus::Available),
        Ok(pb::AgentStatus::Away) => Some(AgentStatus::Away),
        Ok(pb::AgentStatus::Offline) => Some(AgentStatus::Offline),
        Ok(pb::AgentStatus::Unspecified) | Err(_) => None,
    }
}

fn status_to_wire(status: AgentStatus) -> pb::AgentStatus {
    match status {
        AgentStatus::Available => pb::AgentStatus::Available,
        AgentStatus::Away => pb::AgentStatus::Away,
        AgentStatus::Offline => pb::AgentStatus::Offline,
    }
}

/// A customer from the wire.
pub fn customer_config(customer: pb::Customer) -> Result<CustomerConfig, RouterError> {
    let id =
        ClientUserId::parse(customer.id).map_err(|e| RouterError::invalid("customer.id", e))?;
    check_text("customer.tier", &customer.tier)?;
    check_text("customer.language", &customer.language)?;
    check_text("customer.region", &customer.region)?;
    check_names("customer.tags", &customer.tags)?;
    check_attributes("customer.attributes", &customer.attributes)?;
    let owner = Some(customer.owner_agent_id)
        .filter(|owner| !owner.is_empty())
        .map(AgentId::parse)
        .transpose()
        .map_err(|e| RouterError::invalid("customer.owner_agent_id", e))?;
    let text = |value: String| Some(value).filter(|value| !value.is_empty());
    Ok(CustomerConfig {
        id,
        tier: text(customer.tier),
        language: text(customer.language),
        region: text(customer.region),
        tags: customer.tags,
        owner,
        attributes: customer.attributes.into_iter().collect(),
    })
}

/// The wire form of a customer.
pub fn customer(customer: &Customer) -> pb::Customer {
    pb::Customer {
        id: customer.id.to_string(),
        tier: customer.tier.clone().unwrap_or_default(),
        language: customer.language.clone().unwrap_or_default(),
        region: customer.region.clone().unwrap_or_default(),
        tags: customer.tags.clone(),
        owner_agent_id: customer
            .owner
            .as_ref()
            .map(AgentId::to_string)
            .unwrap_or_default(),
        attributes: customer.attributes.clone().into_iter().collect(),
    }
}

/// The wire form of an agent listing.
pub fn listing(listing: &AgentListing) -> pb::AgentState {
    pb::AgentState {
        agent: Some(agent(&listing.agent, listing.status)),
        active: listing.load.active,
        last_assigned: listing.load.last_assigned.map(timestamp),
        on_shift: listing.on_shift,
        confirmed: listing.load.confirmed,
        provisional: listing
            .load
            .active
            .saturating_sub(listing.load.confirmed)
            .saturating_sub(listing.load.unattributed),
        source: match listing.source {
            AgentSource::File => pb::AgentSource::File,
            AgentSource::Runtime => pb::AgentSource::Runtime,
            AgentSource::RuntimeOverFile => pb::AgentSource::RuntimeOverFile,
            AgentSource::Desk => pb::AgentSource::Desk,
        }
        .into(),
        fields: Some(pb::AgentFieldSources {
            status: field_source(listing.status_source),
            ..field_sources(listing.agent.sources)
        }),
        unattributed: listing.load.unattributed,
        weighted: listing.load.weighted,
        last_finished: listing.load.last_finished.map(timestamp),
        missed_offers: listing.missed,
        parked_until: listing.parked.map(|(_, until)| timestamp(until)),
        fair_share_taken: listing.fair_share_taken,
    }
}

/// A group's live measures on the wire.
pub fn group_listing(group: &GroupListing) -> pb::GroupState {
    pb::GroupState {
        group_id: group.id.get(),
        free_seats: u32::try_from(group.free_seats).unwrap_or(u32::MAX),
        estimated_wait: group.estimated_wait.map(|wait| prost_types::Duration {
            seconds: i64::try_from(wait.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(wait.subsec_nanos()).unwrap_or(0),
        }),
    }
}

/// The wire form of where an agent's fields come from.
fn field_sources(sources: Sources) -> pb::AgentFieldSources {
    pb::AgentFieldSources {
        name: field_source(sources.name),
        groups: field_source(sources.groups),
        capacity: field_source(sources.capacity),
        profile: field_source(sources.profile),
        status: pb::FieldSource::Unspecified.into(),
    }
}

fn field_source(source: Source) -> i32 {
    match source {
        Source::File => pb::FieldSource::File,
        Source::Grpc => pb::FieldSource::Grpc,
        Source::Desk => pb::FieldSource::Desk,
        Source::Default => pb::FieldSource::Default,
    }
    .into()
}

/// How the router is, as GetStatus answers.
pub fn router_status(status: &crate::service::Status) -> pb::GetStatusResponse {
    let config = &status.config;
    pb::GetStatusResponse {
        config_loaded: Some(timestamp(config.loaded)),
        last_refused: config
            .last_refused
            .as_ref()
            .map(|(at, error)| pb::RefusedReload {
                at: Some(timestamp(*at)),
                error: error.clone(),
            }),
        warnings: config
            .warnings
            .iter()
            .map(|(key, message)| pb::ConfigWarning {
                key: key.clone(),
                message: message.clone(),
            })
            .collect(),
        store_reachable: status.store_error.is_none(),
        store_error: status.store_error.clone().unwrap_or_default(),
        desk: status
            .desk
            .iter()
            .map(|(app, health)| pb::DeskSyncStatus {
                sdk_app_id: app.get(),
                syncing: health.syncing,
                last_roster: health.last_roster.map(timestamp),
                last_status: health.last_status.map(timestamp),
                error: health.error.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(at)
}
