//! The gRPC adapter's one code table: each kind of router error as a `tonic::Code`.

use tonic::{Code, Status};

use crate::error::{ErrorKind, RouterError};

/// The gRPC code each kind of error travels as.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// The status a failed call answers: the kind's code, and the error's own words.
impl From<RouterError> for Status {
    fn from(err: RouterError) -> Status {
        Status::new(code(err.kind()), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use handoff_core::id::{AgentId, SdkAppId};

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn each_error_has_its_code_and_names_its_cause() -> Result<(), handoff_core::id::IdError> {
        let app = SdkAppId::new(7)?;
        let cases = [
            (
                RouterError::invalid("session_id", "must not be empty"),
                Code::InvalidArgument,
                "session_id: must not be empty",
            ),
            (
                RouterError::UnknownApp(app),
                Code::NotFound,
                "sdk_app_id: app 7 is not configured",
            ),
            (
                RouterError::UnknownAgent(app, AgentId::parse("ann@example.com")?),
                Code::NotFound,
                "agent_id: agent ann@example.com is not an agent of app 7",
            ),
            (
                RouterError::NoRoute(app),
                Code::FailedPrecondition,
                "no group to route to",
            ),
            (
                StoreError::Unavailable("down".into()).into(),
                Code::Unavailable,
                "state store unavailable: down",
            ),
        ];
        for (err, code, text) in cases {
            let status = Status::from(err);
            assert_eq!(status.code(), code);
            assert!(status.message().contains(text), "{}", status.message());
        }
        Ok(())
    }
}
