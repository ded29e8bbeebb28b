//! Tencent <-> handoff.router.v1: a validated callback becomes an `AssignHumanRequest`, and
//! the router's answer (or its failure) becomes Tencent's JSON.

use std::{net::IpAddr, time::Duration};

use handoff_proto::router::v1::{AssignHumanRequest, AssignHumanResponse, Platform};
use tonic::{Code, Status};

use crate::{
    auth::AppPolicy,
    error::GatewayError,
    tencent::{AssignHuman, CallbackQuery, CallbackResponse, Rejection},
};

impl From<Rejection> for GatewayError {
    fn from(rejection: Rejection) -> Self {
        match rejection {
            Rejection::Malformed(problem) => GatewayError::BadRequest(problem),
            Rejection::CommandMismatch { query, body } => {
                GatewayError::CommandMismatch { query, body }
            }
            Rejection::Unsupported(command) => GatewayError::UnsupportedCommand(command),
        }
    }
}

/// The channel Tencent Desk callbacks are reported under.
pub const CHANNEL: &str = "chat";

/// Longest `RequestID` passed on, in bytes; a longer one is dropped.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// The router request for a validated callback.
pub fn to_request(
    app: &AppPolicy,
    query: &CallbackQuery,
    callback: AssignHuman,
) -> AssignHumanRequest {
    let millis = callback.event_time_ms;
    let event_time = prost_types::Timestamp {
        seconds: i64::try_from(millis / 1000).unwrap_or(i64::MAX),
        nanos: i32::try_from((millis % 1000) * 1_000_000).unwrap_or(0),
    };
    let client_ip = query
        .client_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let request_id = query
        .request_id
        .clone()
        .filter(|id| id.len() <= MAX_REQUEST_ID_BYTES && !id.chars().any(char::is_control))
        .unwrap_or_default();
    AssignHumanRequest {
        sdk_app_id: app.id.get(),
        session_id: callback.session_id.into(),
        client_user_id: callback.client_user_id.into(),
        event_time: Some(event_time),
        platform: platform(query.platform.as_deref()).into(),
        client_ip,
        channel: CHANNEL.to_owned(),
        attributes: Default::default(),
        customer_service_id: callback.customer_service_id.unwrap_or_default(),
        request_id,
        replay_only: false,
    }
}

/// `OptPlatform` in any case, including the spellings Tencent's pages disagree on.
fn platform(raw: Option<&str>) -> Platform {
    let Some(raw) = raw.map(str::trim).filter(|raw| !raw.is_empty()) else {
        return Platform::Unspecified;
    };
    match raw.to_ascii_lowercase().as_str() {
        "restapi" => Platform::Restapi,
        "web" => Platform::Web,
        "android" => Platform::Android,
        "ios" => Platform::Ios,
        "windows" => Platform::Windows,
        "mac" | "macos" => Platform::Mac,
        "ipad" => Platform::Ipad,
        _ => Platform::Other,
    }
}

/// Tencent's JSON for the router's answer; an answer with neither group nor agents is a
/// router failure.
pub fn from_response(response: AssignHumanResponse) -> Result<CallbackResponse, GatewayError> {
    if response.agent_group_id.is_none() && response.agent_ids.is_empty() {
        return Err(GatewayError::RouterFailed(
            "the router answered no group and no agent".into(),
        ));
    }
    Ok(CallbackResponse::route(
        response.agent_group_id,
        response.agent_ids,
    ))
}

/// The gateway error for a failed router call.
pub fn from_status(status: &Status, deadline: Duration) -> GatewayError {
    match status.code() {
        Code::Unavailable => GatewayError::RouterUnavailable(status.message().to_owned()),
        Code::DeadlineExceeded | Code::Cancelled => GatewayError::RouterTimeout(deadline),
        code => GatewayError::RouterFailed(format!("{code:?}: {}", status.message())),
    }
}

/// The answer when the router failed: the app's fallback group if it has one.
pub fn fallback(app: &AppPolicy, err: GatewayError) -> Result<CallbackResponse, GatewayError> {
    match app.fallback_group_id {
        Some(group) if err.is_router_failure() => {
            Ok(CallbackResponse::route(Some(group.get()), Vec::new()))
        }
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use handoff_core::id::{ClientUserId, GroupId, SdkAppId, SessionId};

    use super::*;

    fn app(fallback: Option<u64>) -> Result<AppPolicy, handoff_core::id::IdError> {
        Ok(AppPolicy {
            id: SdkAppId::new(1_400_000_001)?,
            token: None,
            previous_token: None,
            fallback_group_id: fallback.map(GroupId::new).transpose()?,
        })
    }

    #[test]
    fn a_callback_becomes_a_router_request() -> Result<(), Box<dyn std::error::Error>> {
        let query = CallbackQuery::parse("ClientIP=10.1.2.3&OptPlatform=macOS&RequestID=r-9");
        let callback = AssignHuman {
            command: "ChatBot.OnAssignHuman".into(),
            session_id: SessionId::parse("aa-bb")?,
            client_user_id: ClientUserId::parse("123")?,
            event_time_ms: 1_670_574_414_123,
            customer_service_id: Some("cs".into()),
        };
        let request = to_request(&app(None)?, &query, callback);
        assert_eq!(request.sdk_app_id, 1_400_000_001);
        assert_eq!(request.session_id, "aa-bb");
        assert_eq!(request.client_user_id, "123");
        let time = request.event_time.ok_or("no time")?;
        assert_eq!((time.seconds, time.nanos), (1_670_574_414, 123_000_000));
        assert_eq!(request.platform(), Platform::Mac);
        assert_eq!(request.client_ip, "10.1.2.3");
        assert_eq!(request.channel, "chat");
        assert_eq!(request.customer_service_id, "cs");
        assert_eq!(request.request_id, "r-9");
        Ok(())
    }

    #[test]
    fn platforms_read_in_any_case_and_unknown_is_other() {
        assert_eq!(platform(Some("IOS")), Platform::Ios);
        assert_eq!(platform(Some("iPad")), Platform::Ipad);
        assert_eq!(platform(Some("RESTAPI")), Platform::Restapi);
        assert_eq!(platform(Some("Unknown")), Platform::Other);
        assert_eq!(platform(Some("HarmonyOS")), Platform::Other);
        assert_eq!(platform(None), Platform::Unspecified);
    }

    #[test]
    fn garbage_client_ip_is_dropped() {
        let query = CallbackQuery::parse("ClientIP=not-an-ip");
        assert_eq!(
            query
                .client_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
            None
        );
    }

    #[test]
    fn router_failures_map_and_fall_back() -> Result<(), handoff_core::id::IdError> {
        let deadline = Duration::from_millis(1500);
        assert_eq!(
            from_status(&Status::unavailable("down"), deadline).error_code(),
            3001
        );
        assert_eq!(
            from_status(&Status::deadline_exceeded("slow"), deadline).error_code(),
            3002
        );
        assert_eq!(
            from_status(&Status::not_found("app"), deadline).error_code(),
            3003
        );
        let err = GatewayError::RouterUnavailable("down".into());
        assert_eq!(
            fallback(&app(Some(6521))?, err.clone()),
            Ok(CallbackResponse::route(Some(6521), Vec::new()))
        );
        assert_eq!(fallback(&app(None)?, err.clone()), Err(err));
        let not_router = GatewayError::BadSignature;
        assert_eq!(
            fallback(&app(Some(6521))?, not_router.clone()),
            Err(not_router)
        );
        Ok(())
    }

    #[test]
    fn rejections_take_their_codes() {
        let cases = [
            (Rejection::Malformed("x".into()), 1001),
            (
                Rejection::CommandMismatch {
                    query: "a".into(),
                    body: "b".into(),
                },
                1002,
            ),
            (Rejection::Unsupported("Desk.Other".into()), 1003),
        ];
        for (rejection, code) in cases {
            assert_eq!(GatewayError::from(rejection).error_code(), code);
        }
    }

    #[test]
    fn an_empty_answer_is_a_router_failure() {
        let empty = AssignHumanResponse::default();
        assert!(from_response(empty).is_err_and(|e| e.error_code() == 3003));
        let answer = AssignHumanResponse {
            agent_group_id: Some(6521),
            agent_ids: vec!["a@x.com".into()],
            decision: None,
        };
        assert_eq!(
            from_response(answer),
            Ok(CallbackResponse::route(Some(6521), vec!["a@x.com".into()]))
        );
    }
}
