//! The router's one error type and its one code table.

use handoff_core::id::{AgentId, SdkAppId};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Everything that stops the router from answering.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A request field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidArgument {
        /// The proto field at fault.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The request names an app the router does not serve.
    #[error("app {0} is not configured on this router")]
    UnknownApp(SdkAppId),
    /// The request names an agent the app does not have.
    #[error("agent {1} is not an agent of app {0}")]
    UnknownAgent(SdkAppId, AgentId),
    /// The app has neither a group to target nor a fallback group.
    #[error("app {0} has no group to route to and no fallback_group_id")]
    NoRoute(SdkAppId),
    /// The state store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config could not be compiled (at start; reloads report their own errors).
    #[error(transparent)]
    Config(#[from] handoff_core::config::ConfigError),
    /// The gRPC server could not be built or stopped with an error.
    #[error("grpc server: {0}")]
    Server(String),
}

impl RouterError {
    /// The gRPC status code each error travels as.
    pub fn code(&self) -> Code {
        match self {
            RouterError::InvalidArgument { .. } => Code::InvalidArgument,
            RouterError::UnknownApp(_) | RouterError::UnknownAgent(..) => Code::NotFound,
            RouterError::NoRoute(_) => Code::FailedPrecondition,
            RouterError::Store(StoreError::Unavailable(_)) => Code::Unavailable,
            RouterError::Config(_) | RouterError::Server(_) => Code::Internal,
        }
    }

    /// A request-field error.
    pub fn invalid(field: &'static str, problem: impl ToString) -> Self {
        Self::invalid_owned(field.to_owned(), problem)
    }

    /// A request-field error for a field path built at run time (`agent.shift`).
    pub fn invalid_owned(field: String, problem: impl ToString) -> Self {
        RouterError::InvalidArgument {
            field,
            problem: problem.to_string(),
        }
    }
}

impl From<RouterError> for Status {
    fn from(err: RouterError) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
                "app 7 is not configured",
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
