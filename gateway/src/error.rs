//! The gateway's one error type and its one code table: each error's HTTP status and
//! Tencent `ErrorCode`, in one exhaustive `match` each. The README's table mirrors it.
//! Knows neither the wire format nor axum: `http` turns an error into Tencent's JSON.

use std::{borrow::Cow, time::Duration};

use http::StatusCode;

/// An untrusted value as messages (logs and error bodies) show it: cut after this many
/// characters, so that a request cannot make either larger than itself.
const SHOWN: usize = 128;

/// `value`, cut after [`SHOWN`] characters.
fn shown(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(SHOWN) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &value[..cut])),
        None => Cow::Borrowed(value),
    }
}

/// Everything that stops a callback from getting a routing answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The query string or the JSON body is malformed or lacks a required field.
    #[error("bad request: {}", shown(.0))]
    BadRequest(String),
    /// `CallbackCommand` differs between the query string and the body.
    #[error(
        "CallbackCommand {:?} in the query does not match {:?} in the body",
        shown(query),
        shown(body)
    )]
    CommandMismatch {
        /// The query string's command.
        query: String,
        /// The body's command.
        body: String,
    },
    /// The callback is well formed but not one this endpoint answers.
    #[error(
        "unsupported CallbackCommand {:?}: this endpoint answers ChatBot.OnAssignHuman",
        shown(.0)
    )]
    UnsupportedCommand(String),
    /// The body is larger than `[gateway] max_body_bytes`.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// The body did not arrive in time.
    #[error("request body not received within {0:?}")]
    BodyTimeout(Duration),
    /// The request target is longer than the gateway reads.
    #[error("request target exceeds {0} bytes")]
    UriTooLong(usize),
    /// The request line and headers are larger than `[gateway] max_header_bytes`.
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    /// Nothing is served at this path.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The path exists but not for this method.
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    /// `SdkAppid` is not one of the configured apps.
    #[error("SdkAppid {:?} is not served by this gateway", shown(.0))]
    UnknownApp(String),
    /// The app has a token but the callback lacks `Sign` or `RequestTime`.
    #[error("callback authentication is on for this app: {0} is required")]
    MissingAuth(&'static str),
    /// `RequestTime` is not a timestamp or too far from the gateway's clock.
    #[error("RequestTime {}", shown(.0))]
    StaleRequest(String),
    /// The callback comes from outside `[gateway] allow_from`.
    #[error("callbacks from {} are not allowed", shown(.0))]
    SourceNotAllowed(String),
    /// `Sign` does not match the token and `RequestTime`.
    #[error("Sign does not match the app's token and RequestTime")]
    BadSignature,
    /// The router could not be reached.
    #[error("router unavailable: {}", shown(.0))]
    RouterUnavailable(String),
    /// The router did not answer within `[gateway] router_timeout`.
    #[error("router did not answer within {0:?}")]
    RouterTimeout(Duration),
    /// The router refused the request or failed.
    #[error("router error: {}", shown(.0))]
    RouterFailed(String),
    /// The gateway holds `[gateway] max_in_flight` callbacks already: this one is shed.
    #[error("overloaded: {0} callbacks in flight")]
    Overloaded(usize),
    /// The gateway itself is misconfigured or failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A short name for metrics: a refusal's or a fallback's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::CommandMismatch { .. } => "command_mismatch",
            GatewayError::UnsupportedCommand(_) => "unsupported_command",
            GatewayError::BodyTooLarge(_) => "body_too_large",
            GatewayError::BodyTimeout(_) => "body_timeout",
            GatewayError::UriTooLong(_) => "uri_too_long",
            GatewayError::HeadersTooLarge(_) => "headers_too_large",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::UnknownApp(_) => "unknown_app",
            GatewayError::MissingAuth(_) => "missing_auth",
            GatewayError::StaleRequest(_) => "stale_request",
            GatewayError::BadSignature => "bad_signature",
            GatewayError::SourceNotAllowed(_) => "source_not_allowed",
            GatewayError::RouterUnavailable(_) => "router_unavailable",
            GatewayError::RouterTimeout(_) => "router_timeout",
            GatewayError::RouterFailed(_) => "router_failed",
            GatewayError::Overloaded(_) => "overloaded",
            GatewayError::Internal(_) => "internal",
        }
    }

    /// The HTTP status the error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) | GatewayError::CommandMismatch { .. } => {
                StatusCode::BAD_REQUEST
            }
            GatewayError::UnsupportedCommand(_) => StatusCode::OK,
            GatewayError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            GatewayError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UnknownApp(_) | GatewayError::SourceNotAllowed(_) => {
                StatusCode::FORBIDDEN
            }
            GatewayError::MissingAuth(_)
            | GatewayError::StaleRequest(_)
            | GatewayError::BadSignature => StatusCode::UNAUTHORIZED,
            GatewayError::RouterUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RouterTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::RouterFailed(_) => StatusCode::BAD_GATEWAY,
            GatewayError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Tencent `ErrorCode` the error is answered with.
    pub fn error_code(&self) -> u32 {
        match self {
            GatewayError::BadRequest(_) => 1001,
            GatewayError::CommandMismatch { .. } => 1002,
            GatewayError::UnsupportedCommand(_) => 1003,
            GatewayError::BodyTooLarge(_) => 1004,
            GatewayError::BodyTimeout(_) => 1005,
            GatewayError::NotFound(_) => 1006,
            GatewayError::MethodNotAllowed(_) => 1007,
            GatewayError::UriTooLong(_) => 1008,
            GatewayError::HeadersTooLarge(_) => 1009,
            GatewayError::UnknownApp(_) => 2001,
            GatewayError::MissingAuth(_) => 2002,
            GatewayError::StaleRequest(_) => 2003,
            GatewayError::BadSignature => 2004,
            GatewayError::SourceNotAllowed(_) => 2005,
            GatewayError::RouterUnavailable(_) => 3001,
            GatewayError::RouterTimeout(_) => 3002,
            GatewayError::RouterFailed(_) => 3003,
            GatewayError::Overloaded(_) => 3004,
            GatewayError::Internal(_) => 5000,
        }
    }

    /// Whether the router failed or could not be asked (the gateway shed the callback),
    /// so that the app's fallback group applies.
    pub fn is_router_failure(&self) -> bool {
        matches!(
            self,
            GatewayError::RouterUnavailable(_)
                | GatewayError::RouterTimeout(_)
                | GatewayError::RouterFailed(_)
                | GatewayError::Overloaded(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_values_are_cut_in_messages() {
        let huge = "7".repeat(60_000);
        let messages = [
            GatewayError::UnknownApp(huge.clone()),
            GatewayError::BadRequest(huge.clone()),
            GatewayError::StaleRequest(huge.clone()),
            GatewayError::UnsupportedCommand(huge.clone()),
            GatewayError::CommandMismatch {
                query: huge.clone(),
                body: huge.clone(),
            },
            GatewayError::RouterFailed(huge.clone()),
        ];
        for err in messages {
            let message = err.to_string();
            assert!(message.len() < 2 * SHOWN + 120, "{}", message.len());
            assert!(message.contains("7777..."), "{message}");
        }
        assert_eq!(
            GatewayError::UnknownApp("42".into()).to_string(),
            "SdkAppid \"42\" is not served by this gateway"
        );
    }

    #[test]
    fn codes_are_unique_and_statuses_match_their_class() {
        let all = [
            GatewayError::BadRequest(String::new()),
            GatewayError::CommandMismatch {
                query: String::new(),
                body: String::new(),
            },
            GatewayError::UnsupportedCommand(String::new()),
            GatewayError::BodyTooLarge(1),
            GatewayError::BodyTimeout(Duration::ZERO),
            GatewayError::NotFound(String::new()),
            GatewayError::MethodNotAllowed(String::new()),
            GatewayError::UriTooLong(1),
            GatewayError::HeadersTooLarge(1),
            GatewayError::UnknownApp(String::new()),
            GatewayError::MissingAuth("Sign"),
            GatewayError::StaleRequest(String::new()),
            GatewayError::BadSignature,
            GatewayError::SourceNotAllowed(String::new()),
            GatewayError::RouterUnavailable(String::new()),
            GatewayError::RouterTimeout(Duration::ZERO),
            GatewayError::RouterFailed(String::new()),
            GatewayError::Overloaded(1),
            GatewayError::Internal(String::new()),
        ];
        let mut codes: Vec<u32> = all.iter().map(GatewayError::error_code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for err in &all {
            let class = err.error_code() / 1000;
            let status = err.status().as_u16();
            match class {
                1 => assert!(status == 200 || (400..500).contains(&status), "{err:?}"),
                2 => assert!(status == 401 || status == 403, "{err:?}"),
                3 => assert!((500..600).contains(&status), "{err:?}"),
                5 => assert_eq!(status, 500, "{err:?}"),
                _ => panic!("code {} outside the table", err.error_code()),
            }
            assert_eq!(err.is_router_failure(), class == 3);
        }
    }
}
