//! Tencent's callback wire format (see `docs/tencent-contract.md`): the query string, the
//! bodies of `ChatBot.OnAssignHuman`, `Desk.SessionEventNotify` and `Member.EventNotify`,
//! and the JSON every answer takes.
//!
//! Parsing is lenient where Tencent's pages disagree (command case, `EventTime` as a number
//! or a numeric string, `OptPlatform` in any case) and strict where it matters (required
//! fields, identifiers). Unknown fields are ignored. Plain data and parsing only: how an
//! answer goes out over HTTP is `http`'s business, what a [`Rejection`] costs `error`'s.

use handoff_core::id::{AgentId, ClientUserId, IdError, SessionId};
use serde::{Deserialize, Deserializer, Serialize, de};

/// Why a callback's body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The JSON body is malformed or lacks a required field.
    #[error("{0}")]
    Malformed(String),
    /// `CallbackCommand` differs between the query string and the body.
    #[error("CallbackCommand {query:?} in the query does not match {body:?} in the body")]
    CommandMismatch {
        /// The query string's command.
        query: String,
        /// The body's command.
        body: String,
    },
    /// A well-formed callback this endpoint does not answer.
    #[error(
        "unsupported CallbackCommand {0:?}: this endpoint answers ChatBot.OnAssignHuman, Desk.SessionEventNotify and Member.EventNotify"
    )]
    Unsupported(String),
}

/// The callback command the gateway answers, in Tencent Desk's spelling.
pub const ASSIGN_HUMAN: &str = "ChatBot.OnAssignHuman";
/// The same callback as Tencent's Chat documentation names it.
pub const ASSIGN_AGENT: &str = "ChatBot.OnAssignAgent";
/// Desk's session events: transfers, ends, every message.
pub const SESSION_EVENT_NOTIFY: &str = "Desk.SessionEventNotify";
/// Desk's member events (Advanced edition, enabled by Tencent on request).
pub const MEMBER_EVENT_NOTIFY: &str = "Member.EventNotify";
/// The member event that reports an agent's new status.
pub const MEMBER_STATUS_CHANGE: &str = "Member.StatusChange";

/// The query parameters Tencent appends to the callback URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackQuery {
    /// `SdkAppid`, as sent.
    pub sdk_app_id: Option<String>,
    /// `CallbackCommand`.
    pub command: Option<String>,
    /// `Sign`, with callback authentication on.
    pub sign: Option<String>,
    /// `RequestTime` (Unix seconds), with callback authentication on.
    pub request_time: Option<String>,
    /// `RequestID`, on newer Desk callbacks.
    pub request_id: Option<String>,
    /// `ClientIP`.
    pub client_ip: Option<String>,
    /// `OptPlatform`.
    pub platform: Option<String>,
    /// A parameter that decides who is calling or what (`SdkAppid`, `CallbackCommand`,
    /// `Sign`, `RequestTime`) given twice with different values: the callback is refused.
    pub ambiguous: Option<&'static str>,
}

impl CallbackQuery {
    /// Reads a raw query string; parameter names match in any case, the first one wins,
    /// and a deciding one given again differently is noted in [`CallbackQuery::ambiguous`].
    pub fn parse(raw: &str) -> Self {
        let mut query = Self::default();
        for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
            let (slot, deciding) = match name.to_ascii_lowercase().as_str() {
                "sdkappid" => (&mut query.sdk_app_id, Some("SdkAppid")),
                "callbackcommand" => (&mut query.command, Some("CallbackCommand")),
                "sign" => (&mut query.sign, Some("Sign")),
                "requesttime" => (&mut query.request_time, Some("RequestTime")),
                "requestid" => (&mut query.request_id, None),
                "clientip" => (&mut query.client_ip, None),
                "optplatform" => (&mut query.platform, None),
                _ => continue,
            };
            match slot {
                None => *slot = Some(value.into_owned()),
                Some(first) if *first != value => {
                    query.ambiguous = query.ambiguous.or(deciding);
                }
                Some(_) => {}
            }
        }
        query
    }
}

/// The JSON body of a callback, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawBody {
    #[serde(rename = "CallbackCommand", default)]
    command: Option<String>,
    #[serde(rename = "SessionId", default)]
    session_id: Option<String>,
    #[serde(rename = "ClientUserId", default)]
    client_user_id: Option<String>,
    #[serde(rename = "EventTime", default, deserialize_with = "event_time")]
    event_time: Option<u64>,
    #[serde(rename = "CustomerServiceId", default)]
    customer_service_id: Option<String>,
    #[serde(rename = "Event", default)]
    event: Option<String>,
    #[serde(rename = "AgentId", default)]
    agent_id: Option<String>,
    #[serde(rename = "ForwardFromAgentId", default)]
    forward_from_agent_id: Option<String>,
    #[serde(rename = "MemberId", default)]
    member_id: Option<String>,
    #[serde(rename = "Status", default)]
    status: Option<String>,
}

/// A validated callback of one of the three commands the endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// `ChatBot.OnAssignHuman`: who should take this session?
    AssignHuman(AssignHuman),
    /// `Desk.SessionEventNotify`: what happened to a session.
    SessionEvent(SessionEventNotify),
    /// `Member.EventNotify`: what happened to an agent.
    MemberEvent(MemberEventNotify),
}

/// A validated `Desk.SessionEventNotify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEventNotify {
    /// The Desk session.
    pub session_id: SessionId,
    /// Tencent's name for what happened (`SessionBegin`, `ChatBot.UserSendMsg`, ...).
    pub event: String,
    /// When, in Unix milliseconds.
    pub event_time_ms: u64,
    /// The end user, when the event names one.
    pub client_user_id: Option<ClientUserId>,
    /// The human agent, when the session has one (empty in the bot phase).
    pub agent_id: Option<AgentId>,
    /// On a reassignment, the agent the session came from.
    pub forward_from_agent_id: Option<AgentId>,
}

/// A validated `Member.EventNotify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberEventNotify {
    /// Tencent's name for what happened (`Member.StatusChange`).
    pub event: String,
    /// When, in Unix milliseconds.
    pub event_time_ms: u64,
    /// The agent's e-mail as sent (an unknown or malformed one is acknowledged, not refused).
    pub member_id: Option<String>,
    /// The status as sent, in whichever of Tencent's spellings.
    pub status: Option<String>,
}

/// A validated `ChatBot.OnAssignHuman` callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignHuman {
    /// The command as the body spelled it.
    pub command: String,
    /// The Desk session.
    pub session_id: SessionId,
    /// The end user.
    pub client_user_id: ClientUserId,
    /// When the user asked, in Unix milliseconds.
    pub event_time_ms: u64,
    /// Present with the SDK lightweight integration.
    pub customer_service_id: Option<String>,
}

/// Whether `command` is the assign-human callback, in any of its spellings and cases.
pub fn is_assign_human(command: &str) -> bool {
    command.eq_ignore_ascii_case(ASSIGN_HUMAN) || command.eq_ignore_ascii_case(ASSIGN_AGENT)
}

/// Whether two spellings name the same callback: equal in any case, or both names of
/// assign-human.
fn same_command(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || (is_assign_human(a) && is_assign_human(b))
}

/// Parses and validates a callback body against the query's command.
pub fn parse(query: &CallbackQuery, body: &[u8]) -> Result<Callback, Rejection> {
    let raw: RawBody = serde_json::from_slice(body)
        .map_err(|err| Rejection::Malformed(format!("body is not a valid callback: {err}")))?;
    let command = match (&query.command, raw.command) {
        (Some(query), Some(body)) if !same_command(query, &body) => {
            return Err(Rejection::CommandMismatch {
                query: query.clone(),
                body,
            });
        }
        (_, Some(body)) => body,
        (Some(query), None) => query.clone(),
        (None, None) => return Err(Rejection::Malformed("CallbackCommand is required".into())),
    };
    let required = |field: &str| Rejection::Malformed(format!("{field} is required"));
    let event_time_ms = raw.event_time.ok_or_else(|| required("EventTime"))?;
    if is_assign_human(&command) {
        let session_id = id(
            "SessionId",
            raw.session_id.ok_or_else(|| required("SessionId"))?,
        )?;
        let user = raw.client_user_id.ok_or_else(|| required("ClientUserId"))?;
        let client_user_id = id("ClientUserId", user)?;
        let customer_service_id = raw.customer_service_id.filter(|id| !id.is_empty());
        return Ok(Callback::AssignHuman(AssignHuman {
            command,
            session_id,
            client_user_id,
            event_time_ms,
            customer_service_id,
        }));
    }
    if command.eq_ignore_ascii_case(SESSION_EVENT_NOTIFY) {
        let session_id = id(
            "SessionId",
            raw.session_id.ok_or_else(|| required("SessionId"))?,
        )?;
        let event = raw.event.filter(|event| !event.trim().is_empty());
        return Ok(Callback::SessionEvent(SessionEventNotify {
            session_id,
            event: event.ok_or_else(|| required("Event"))?,
            event_time_ms,
            client_user_id: optional("ClientUserId", raw.client_user_id)?,
            agent_id: optional("AgentId", raw.agent_id)?,
            forward_from_agent_id: optional("ForwardFromAgentId", raw.forward_from_agent_id)?,
        }));
    }
    if command.eq_ignore_ascii_case(MEMBER_EVENT_NOTIFY) {
        let event = raw.event.filter(|event| !event.trim().is_empty());
        return Ok(Callback::MemberEvent(MemberEventNotify {
            event: event.ok_or_else(|| required("Event"))?,
            event_time_ms,
            member_id: raw.member_id.filter(|id| !id.trim().is_empty()),
            status: raw.status.filter(|status| !status.trim().is_empty()),
        }));
    }
    Err(Rejection::Unsupported(command))
}

/// A required identifier, parsed.
fn id<T>(field: &str, value: String) -> Result<T, Rejection>
where
    T: TryFrom<String, Error = IdError>,
{
    T::try_from(value).map_err(|err| Rejection::Malformed(format!("{field} {err}")))
}

/// An identifier Tencent may leave out or send empty.
fn optional<T>(field: &str, value: Option<String>) -> Result<Option<T>, Rejection>
where
    T: TryFrom<String, Error = IdError>,
{
    value
        .filter(|value| !value.is_empty())
        .map(|value| id(field, value))
        .transpose()
}

/// `EventTime`: milliseconds as a JSON integer, an integral float, or a numeric string.
fn event_time<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Integer(u64),
        Float(f64),
        Text(String),
        Null(()),
    }
    let expected = "EventTime as non-negative milliseconds (a number or a numeric string)";
    match Raw::deserialize(deserializer).map_err(|_| de::Error::custom(expected))? {
        Raw::Integer(ms) => Ok(Some(ms)),
        Raw::Float(ms) if ms >= 0.0 && ms.fract() == 0.0 && ms < 1e16 => Ok(Some(ms as u64)),
        Raw::Text(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| de::Error::custom(expected)),
        Raw::Null(()) => Ok(None),
        Raw::Float(_) => Err(de::Error::custom(expected)),
    }
}

/// `ActionStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionStatus {
    /// The callback succeeded.
    #[serde(rename = "OK")]
    Ok,
    /// The callback failed; `ErrorCode` and `ErrorInfo` say why.
    #[serde(rename = "FAIL")]
    Fail,
}

/// The JSON answer to every callback, errors included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CallbackResponse {
    /// `OK` or `FAIL`.
    pub action_status: ActionStatus,
    /// Empty on success.
    pub error_info: String,
    /// 0 on success; the gateway's code table otherwise.
    pub error_code: u32,
    /// The group to hand the session to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_group_id: Option<u64>,
    /// Agent e-mails, best first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agent_id_list: Vec<String>,
}

/// An answer as it goes on the wire: JSON, encoded once (and shared, not copied, by the
/// ledger that gives it again to a request sent twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded(pub bytes::Bytes);

impl From<&CallbackResponse> for Encoded {
    fn from(response: &CallbackResponse) -> Self {
        match serde_json::to_vec(response) {
            Ok(body) => Self(body.into()),
            // Serializing these plain fields cannot fail; answer valid JSON regardless.
            Err(_) => Self(bytes::Bytes::from_static(
                br#"{"ActionStatus":"FAIL","ErrorInfo":"internal error","ErrorCode":5000}"#,
            )),
        }
    }
}

impl CallbackResponse {
    /// A success carrying a routing answer.
    pub fn route(agent_group_id: Option<u64>, agent_id_list: Vec<String>) -> Self {
        Self {
            action_status: ActionStatus::Ok,
            error_info: String::new(),
            error_code: 0,
            agent_group_id,
            agent_id_list,
        }
    }

    /// A success with nothing to route (health endpoints).
    pub fn ok() -> Self {
        Self::route(None, Vec::new())
    }

    /// A failure.
    pub fn fail(error_code: u32, error_info: String) -> Self {
        Self {
            action_status: ActionStatus::Fail,
            error_info,
            error_code,
            agent_group_id: None,
            agent_id_list: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn query(command: Option<&str>) -> CallbackQuery {
        CallbackQuery {
            command: command.map(str::to_owned),
            ..CallbackQuery::default()
        }
    }

    const BODY: &str = r#"{"CallbackCommand":"ChatBot.OnAssignHuman","SessionId":"aa-bb-cc-dd","ClientUserId":"123","EventTime":1670574414123}"#;

    /// Tencent's own sample of a session event.
    const SESSION_EVENT: &str = r#"{"CallbackCommand": "Desk.SessionEventNotify", "SessionId": "2baf4d84-beb4-4607-a1ea-6ebcaef3e0e6", "Event": "ChatBot.UserSendMsg", "EventTime": 1725540020017, "ChannelType": "SDK", "ClientUserId": "your_user_id", "CustomerServiceId": "@customer_service_account", "AgentId": "test@qq.com", "MsgKey": "152_1600012345_abcdefg", "MsgBody": [{"MsgType": "TIMTextElem", "MsgContent": {"Text": "..."}}], "CloudCustomData": "...", "IsContactUser": false, "SatisfactionSelected": 5, "ForwardFromAgentId": ""}"#;

    /// Tencent's own sample of a member event.
    const MEMBER_EVENT: &str = r#"{"CallbackCommand": "Member.EventNotify", "Event": "Member.StatusChange", "MemberId": "test@qq.com", "Status": "free", "EventTime": 1725540020017, "ClientInfo": [{"ClientType": "Web", "IsConnected": true}], "RestReason": ""}"#;

    fn parse_assign_human(query: &CallbackQuery, body: &[u8]) -> Result<AssignHuman, Rejection> {
        match parse(query, body)? {
            Callback::AssignHuman(callback) => Ok(callback),
            other => Err(Rejection::Malformed(format!(
                "not an assign-human: {other:?}"
            ))),
        }
    }

    #[test]
    fn reads_tencents_session_and_member_event_samples() -> Result<(), Rejection> {
        let Callback::SessionEvent(event) = parse(&query(None), SESSION_EVENT.as_bytes())? else {
            panic!("not a session event");
        };
        assert_eq!(
            event.session_id.as_str(),
            "2baf4d84-beb4-4607-a1ea-6ebcaef3e0e6"
        );
        assert_eq!(event.event, "ChatBot.UserSendMsg");
        assert_eq!(event.event_time_ms, 1_725_540_020_017);
        assert_eq!(
            event.client_user_id.as_ref().map(ClientUserId::as_str),
            Some("your_user_id")
        );
        assert_eq!(
            event.agent_id.as_ref().map(AgentId::as_str),
            Some("test@qq.com")
        );
        assert_eq!(
            event.forward_from_agent_id, None,
            "an empty ForwardFromAgentId is none"
        );

        let Callback::MemberEvent(member) = parse(&query(None), MEMBER_EVENT.as_bytes())? else {
            panic!("not a member event");
        };
        assert_eq!(member.event, "Member.StatusChange");
        assert_eq!(member.member_id.as_deref(), Some("test@qq.com"));
        assert_eq!(member.status.as_deref(), Some("free"));

        let bad_agent = SESSION_EVENT.replace("test@qq.com", "not an email");
        assert!(
            matches!(parse(&query(None), bad_agent.as_bytes()), Err(Rejection::Malformed(m)) if m.contains("AgentId"))
        );
        let no_event = SESSION_EVENT.replace("\"Event\": \"ChatBot.UserSendMsg\", ", "");
        assert!(
            matches!(parse(&query(None), no_event.as_bytes()), Err(Rejection::Malformed(m)) if m.contains("Event is required"))
        );
        Ok(())
    }

    #[test]
    fn reads_the_documented_query() {
        let q = CallbackQuery::parse(
            "SdkAppid=1400000001&CallbackCommand=ChatBot.OnAssignHuman&contenttype=json&ClientIP=1.2.3.4&OptPlatform=iOS&Sign=ab%20c&RequestTime=1669872112&RequestID=r1&SdkAppid=2",
        );
        assert_eq!(q.sdk_app_id.as_deref(), Some("1400000001"));
        assert_eq!(q.command.as_deref(), Some(ASSIGN_HUMAN));
        assert_eq!(q.sign.as_deref(), Some("ab c"));
        assert_eq!(q.request_time.as_deref(), Some("1669872112"));
        assert_eq!(q.request_id.as_deref(), Some("r1"));
        assert_eq!(q.client_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(q.platform.as_deref(), Some("iOS"));
        // The second SdkAppid differs: the callback is ambiguous about who calls.
        assert_eq!(q.ambiguous, Some("SdkAppid"));
        let repeated = CallbackQuery::parse("Sign=a&sign=a&RequestID=1&RequestID=2");
        assert_eq!(
            repeated.ambiguous, None,
            "the same value twice, or a non-deciding key"
        );
        let two_signs = CallbackQuery::parse("Sign=a&Sign=b");
        assert_eq!(two_signs.ambiguous, Some("Sign"));
    }

    #[test]
    fn reads_the_documented_body() -> Result<(), Rejection> {
        let parsed = parse_assign_human(&query(Some(ASSIGN_HUMAN)), BODY.as_bytes())?;
        assert_eq!(parsed.session_id.as_str(), "aa-bb-cc-dd");
        assert_eq!(parsed.client_user_id.as_str(), "123");
        assert_eq!(parsed.event_time_ms, 1_670_574_414_123);
        assert_eq!(parsed.customer_service_id, None);
        Ok(())
    }

    #[test]
    fn accepts_both_spellings_string_times_and_unknown_fields() -> Result<(), Rejection> {
        let body = r#"{"CallbackCommand":"Chatbot.OnAssignAgent","SessionId":"s","ClientUserId":"u","EventTime":"1670574414123","CustomerServiceId":"cs-1","Extra":{"a":[1]}}"#;
        let parsed = parse_assign_human(&query(Some("ChatBot.OnAssignAgent")), body.as_bytes())?;
        assert_eq!(parsed.event_time_ms, 1_670_574_414_123);
        assert_eq!(parsed.customer_service_id.as_deref(), Some("cs-1"));
        let float = BODY.replace("1670574414123", "1670574414123.0");
        assert!(parse_assign_human(&query(None), float.as_bytes()).is_ok());
        Ok(())
    }

    #[test]
    fn refuses_what_is_malformed_with_the_reason() {
        let cases: [(CallbackQuery, String, &str, &str); 9] = [
            (
                query(None),
                "not json".into(),
                "malformed",
                "not a valid callback",
            ),
            (
                query(None),
                "[1,2]".into(),
                "malformed",
                "not a valid callback",
            ),
            (
                query(None),
                BODY.replace("\"SessionId\":\"aa-bb-cc-dd\",", ""),
                "malformed",
                "SessionId is required",
            ),
            (
                query(None),
                BODY.replace("\"123\"", "123"),
                "malformed",
                "not a valid callback",
            ),
            (
                query(None),
                BODY.replace("1670574414123", "\"soon\""),
                "malformed",
                "EventTime as non-negative",
            ),
            (
                query(None),
                BODY.replace("1670574414123", "-5"),
                "malformed",
                "EventTime as non-negative",
            ),
            (
                query(None),
                BODY.replace("aa-bb-cc-dd", ""),
                "malformed",
                "SessionId must not be empty",
            ),
            (
                query(Some("ChatBot.OnAssignAgent2")),
                BODY.into(),
                "mismatch",
                "does not match",
            ),
            (
                query(Some("Desk.SomethingElse")),
                BODY.replace(ASSIGN_HUMAN, "Desk.SomethingElse"),
                "unsupported",
                "unsupported CallbackCommand",
            ),
        ];
        for (q, body, kind, text) in cases {
            match parse_assign_human(&q, body.as_bytes()) {
                Ok(parsed) => panic!("accepted {body}: {parsed:?}"),
                Err(err) => {
                    let got = match &err {
                        Rejection::Malformed(_) => "malformed",
                        Rejection::CommandMismatch { .. } => "mismatch",
                        Rejection::Unsupported(_) => "unsupported",
                    };
                    assert_eq!(got, kind, "{body}: {err}");
                    assert!(err.to_string().contains(text), "{body}: {err}");
                }
            }
        }
    }

    #[test]
    fn responses_have_tencents_shape() -> Result<(), serde_json::Error> {
        let ok = CallbackResponse::route(Some(6521), vec!["svc1@tencent.com".into()]);
        assert_eq!(
            serde_json::to_string(&ok)?,
            r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"AgentGroupId":6521,"AgentIdList":["svc1@tencent.com"]}"#
        );
        let fail = CallbackResponse::fail(1001, "bad".into());
        assert_eq!(
            serde_json::to_string(&fail)?,
            r#"{"ActionStatus":"FAIL","ErrorInfo":"bad","ErrorCode":1001}"#
        );
        Ok(())
    }

    /// A JSON field as a client might send it: absent, or any of the shapes that matter.
    fn field() -> impl Strategy<Value = Option<serde_json::Value>> {
        use serde_json::json;
        prop_oneof![
            Just(None),
            Just(Some(json!(null))),
            Just(Some(json!(""))),
            "[ -~]{1,40}".prop_map(|s| Some(json!(s))),
            "\\PC{1,300}".prop_map(|s| Some(json!(s))),
            any::<u64>().prop_map(|n| Some(json!(n))),
            any::<i64>().prop_map(|n| Some(json!(n))),
            any::<f64>().prop_map(|n| Some(json!(n))),
            Just(Some(json!({"nested": [1, "two"]}))),
            Just(Some(json!(["a", 1]))),
            Just(Some(json!("x".repeat(5_000)))),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_assign_human(&query(Some(ASSIGN_HUMAN)), &body);
        }

        #[test]
        fn never_panics_on_arbitrary_queries(raw in ".{0,200}") {
            let _ = CallbackQuery::parse(&raw);
        }

        /// Bodies shaped like Tencent's, each field missing, of another type, empty, huge or
        /// odd: parsing answers (Ok or a Rejection) and never panics; the well-formed ones
        /// parse to what they say.
        #[test]
        fn structured_bodies_parse_or_are_refused(
            session in field(),
            customer in field(),
            event_time in field(),
            command in prop_oneof![
                Just(Some(serde_json::json!(ASSIGN_HUMAN))),
                Just(Some(serde_json::json!("ChatBot.Other"))),
                field(),
            ],
            extra in proptest::collection::btree_map("[A-Za-z]{1,12}", field(), 0..4),
        ) {
            let mut body = serde_json::Map::new();
            for (name, value) in [
                ("CallbackCommand", &command),
                ("SessionId", &session),
                ("ClientUserId", &customer),
                ("EventTime", &event_time),
            ] {
                if let Some(value) = value {
                    body.insert(name.to_owned(), value.clone());
                }
            }
            for (name, value) in extra.iter().filter_map(|(k, v)| Some((k, v.as_ref()?))) {
                body.entry(name.clone()).or_insert_with(|| value.clone());
            }
            let bytes = serde_json::to_vec(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let parsed = parse_assign_human(&query(Some(ASSIGN_HUMAN)), &bytes);
            let text = |value: &Option<serde_json::Value>| {
                value.as_ref().and_then(|v| v.as_str()).map(str::to_owned)
            };
            let well_formed = command.as_ref().and_then(|c| c.as_str()) == Some(ASSIGN_HUMAN)
                && text(&session).is_some_and(|s| SessionId::parse(s).is_ok())
                && text(&customer).is_some_and(|c| ClientUserId::parse(c).is_ok())
                && event_time.as_ref().is_some_and(|t| t.as_u64().is_some());
            if well_formed {
                let parsed = parsed.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(Some(parsed.session_id.as_str().to_owned()), text(&session));
            }
        }

        #[test]
        fn event_time_reads_any_millisecond_value(ms in 0u64..10_000_000_000_000) {
            for form in [ms.to_string(), format!("\"{ms}\"")] {
                let body = BODY.replace("1670574414123", &form);
                let parsed = parse_assign_human(&query(None), body.as_bytes())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(parsed.event_time_ms, ms);
            }
        }
    }
}
