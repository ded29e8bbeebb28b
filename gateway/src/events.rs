//! What Tencent's feedback callbacks mean for routing: a `Desk.SessionEventNotify` becomes a
//! `ReportSessionEvent` (or nothing, when the event has no routing meaning), a
//! `Member.StatusChange` a `SetAgentStatus`.
//!
//! Tencent's pages name only some session events verbatim, so names map to meanings through
//! `[gateway.session_events]`; beyond the names, an event with both `AgentId` and
//! `ForwardFromAgentId` is a transfer and any other event naming an `AgentId` proves that
//! agent serves the session. Statuses come in several of Tencent's spellings.

use std::collections::HashMap;

use handoff_core::{
    config::SessionEventNames,
    id::{AgentId, SdkAppId},
};
use handoff_proto::router::v1::{
    AgentStatus, ReportSessionEventRequest, SessionEventKind, SetAgentStatusRequest,
};

use crate::tencent::{CallbackQuery, SessionEventNotify};

/// Longest `RequestID` used as a report's identity, in bytes; a longer one is not used.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Tencent's event names and what each means, matched in any case.
#[derive(Debug, Clone, Default)]
pub struct EventNames {
    meanings: HashMap<String, SessionEventKind>,
}

impl EventNames {
    /// The names of `[gateway.session_events]`.
    pub fn from_config(names: &SessionEventNames) -> Self {
        let lists = [
            (&names.assigned, SessionEventKind::Assigned),
            (&names.transferred, SessionEventKind::Transferred),
            (&names.failed, SessionEventKind::Failed),
            (&names.ended, SessionEventKind::Ended),
        ];
        let meanings = lists
            .into_iter()
            .flat_map(|(list, kind)| list.iter().map(move |name| (key(name), kind)))
            .collect();
        Self { meanings }
    }

    /// What `event` means for routing; `None` when nothing (`SessionBegin`, bot messages,
    /// an assignment that names no agent).
    pub fn meaning(&self, event: &SessionEventNotify) -> Option<SessionEventKind> {
        let kind = match self.meanings.get(&key(&event.event)) {
            Some(kind) => *kind,
            None if event.agent_id.is_some() && event.forward_from_agent_id.is_some() => {
                SessionEventKind::Transferred
            }
            None if event.agent_id.is_some() => SessionEventKind::Assigned,
            None => return None,
        };
        let needs_agent = matches!(
            kind,
            SessionEventKind::Assigned | SessionEventKind::Transferred
        );
        (!needs_agent || event.agent_id.is_some()).then_some(kind)
    }
}

fn key(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// The report's identity: Tencent's `RequestID` when it sends a usable one, else what
/// identifies the event itself (`parts`, joined).
pub fn report_id(query: &CallbackQuery, parts: &[&str]) -> String {
    match query
        .request_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES)
        .filter(|id| !id.chars().any(char::is_control))
    {
        Some(id) => format!("rid:{id}"),
        None => format!("evt:{}", parts.join("|")),
    }
}

/// The router request reporting `event` as `kind`.
pub fn session_request(
    app: SdkAppId,
    query: &CallbackQuery,
    event: SessionEventNotify,
    kind: SessionEventKind,
) -> ReportSessionEventRequest {
    let agent = event
        .agent_id
        .as_ref()
        .map(AgentId::as_str)
        .unwrap_or_default();
    let time = event.event_time_ms.to_string();
    let event_id = report_id(
        query,
        &[&event.event, event.session_id.as_str(), &time, agent],
    );
    ReportSessionEventRequest {
        sdk_app_id: app.get(),
        session_id: event.session_id.into(),
        kind: kind.into(),
        agent_id: event.agent_id.map(String::from).unwrap_or_default(),
        from_agent_id: event
            .forward_from_agent_id
            .map(String::from)
            .unwrap_or_default(),
        client_user_id: event.client_user_id.map(String::from).unwrap_or_default(),
        event_time: Some(timestamp(event.event_time_ms)),
        event_id,
    }
}

/// A status in any of Tencent's spellings, as routing sees it: `ready` and `free` take
/// sessions; `notReady`, `rest`, `busy`, `afterCallWork` (and the Web SDK's `arrange`) are
/// away; `offline` is offline. Case, underscores and a `STATUS_` prefix do not matter.
pub fn status(raw: &str) -> Option<AgentStatus> {
    let folded: String = raw
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != '-' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let name = folded.strip_prefix("status").unwrap_or(&folded);
    match name {
        "ready" | "free" | "available" | "idle" => Some(AgentStatus::Available),
        "notready" | "rest" | "busy" | "aftercallwork" | "arrange" | "away" => {
            Some(AgentStatus::Away)
        }
        "offline" => Some(AgentStatus::Offline),
        _ => None,
    }
}

/// The router request setting `member`'s status as reported at `event_time_ms`.
pub fn status_request(
    app: SdkAppId,
    query: &CallbackQuery,
    member: &AgentId,
    status: AgentStatus,
    event_time_ms: u64,
) -> SetAgentStatusRequest {
    let time = event_time_ms.to_string();
    SetAgentStatusRequest {
        sdk_app_id: app.get(),
        agent_id: member.to_string(),
        status: status.into(),
        event_time: Some(timestamp(event_time_ms)),
        event_id: report_id(
            query,
            &["status", member.as_str(), &time, status.as_str_name()],
        ),
    }
}

fn timestamp(millis: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use handoff_core::id::SessionId;

    use super::*;

    fn event(name: &str, agent: Option<&str>, from: Option<&str>) -> SessionEventNotify {
        SessionEventNotify {
            session_id: SessionId::parse("s-1").unwrap(),
            event: name.into(),
            event_time_ms: 1_725_540_020_017,
            client_user_id: None,
            agent_id: agent.map(|a| AgentId::parse(a).unwrap()),
            forward_from_agent_id: from.map(|a| AgentId::parse(a).unwrap()),
        }
    }

    #[test]
    fn names_map_by_config_in_any_case_and_agents_prove_who_serves() {
        let names = EventNames::from_config(&SessionEventNames::default());
        let cases = [
            (
                event("SessionEnd", None, None),
                Some(SessionEventKind::Ended),
            ),
            (
                event("sessionend", Some("a@x.com"), None),
                Some(SessionEventKind::Ended),
            ),
            (
                event("TransferToHumanFail", None, None),
                Some(SessionEventKind::Failed),
            ),
            (
                event("TransferToHumanSuccess", Some("a@x.com"), None),
                Some(SessionEventKind::Assigned),
            ),
            // An assignment that names nobody means nothing.
            (event("TransferToHumanSuccess", None, None), None),
            // Unknown names: an agent proves service, a forward is a transfer.
            (
                event("Agent.SendMsg", Some("a@x.com"), None),
                Some(SessionEventKind::Assigned),
            ),
            (
                event("Something.New", Some("b@x.com"), Some("a@x.com")),
                Some(SessionEventKind::Transferred),
            ),
            (event("SessionBegin", None, None), None),
            (event("ChatBot.RobotSendMsg", None, None), None),
        ];
        for (event, expected) in cases {
            assert_eq!(names.meaning(&event), expected, "{}", event.event);
        }
        let custom = SessionEventNames {
            ended: vec!["Desk.Closed".into()],
            ..SessionEventNames::default()
        };
        let names = EventNames::from_config(&custom);
        assert_eq!(
            names.meaning(&event("DESK.CLOSED", None, None)),
            Some(SessionEventKind::Ended)
        );
        assert_eq!(names.meaning(&event("SessionEnd", None, None)), None);
    }

    #[test]
    fn statuses_read_in_every_spelling_tencent_uses() {
        let cases = [
            ("ready", Some(AgentStatus::Available)),
            ("FREE", Some(AgentStatus::Available)),
            ("STATUS_FREE", Some(AgentStatus::Available)),
            ("notReady", Some(AgentStatus::Away)),
            ("STATUS_NOT_READY", Some(AgentStatus::Away)),
            ("rest", Some(AgentStatus::Away)),
            ("STATUS_REST", Some(AgentStatus::Away)),
            ("busy", Some(AgentStatus::Away)),
            ("afterCallWork", Some(AgentStatus::Away)),
            ("arrange", Some(AgentStatus::Away)),
            ("offline", Some(AgentStatus::Offline)),
            ("STATUS_OFFLINE", Some(AgentStatus::Offline)),
            ("dancing", None),
        ];
        for (raw, expected) in cases {
            assert_eq!(status(raw), expected, "{raw}");
        }
    }

    #[test]
    fn the_report_id_is_the_request_id_else_the_event_itself() {
        let with = CallbackQuery::parse("RequestID=abc-1");
        let without = CallbackQuery::default();
        assert_eq!(report_id(&with, &["a", "b"]), "rid:abc-1");
        assert_eq!(report_id(&without, &["a", "b"]), "evt:a|b");
        let long = CallbackQuery::parse(&format!("RequestID={}", "x".repeat(200)));
        assert_eq!(report_id(&long, &["a"]), "evt:a");
    }
}
