//! The router's one error type, in domain terms: what went wrong, and of which
//! [`ErrorKind`]. Only the transport adapters turn a kind into their own codes (the gRPC
//! adapter's table is in `grpc::status`).

use handoff_core::{
    config::ConfigError,
    id::{AgentId, SdkAppId},
};

use crate::store::StoreError;

/// What kind of failure an error is: what a caller can do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; sending it again will not help.
    InvalidArgument,
    /// The request names something the router does not have.
    NotFound,
    /// The router's configuration does not allow an answer.
    FailedPrecondition,
    /// The router cannot answer now; the caller may retry or fall back.
    Unavailable,
    /// The router itself failed.
    Internal,
}

/// Everything that stops the router from answering.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// A request field is missing or malformed.
    #[error("{field}: {problem}")]
    InvalidArgument {
        /// The field at fault, as the caller's API names it (`agent.group_ids`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The request names an app the router does not serve.
    #[error("sdk_app_id: app {0} is not configured on this router")]
    UnknownApp(SdkAppId),
    /// The request names an agent the app does not have.
    #[error("agent_id: agent {1} is not an agent of app {0}")]
    UnknownAgent(SdkAppId, AgentId),
    /// The app has neither a group to target nor a fallback group.
    #[error("app {0} has no group to route to and no fallback_group_id")]
    NoRoute(SdkAppId),
    /// The state store cannot be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The config could not be compiled (at start; reloads report their own errors).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl RouterError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RouterError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            RouterError::UnknownApp(_) | RouterError::UnknownAgent(..) => ErrorKind::NotFound,
            RouterError::NoRoute(_) => ErrorKind::FailedPrecondition,
            RouterError::Store(StoreError::Unavailable(_)) => ErrorKind::Unavailable,
            RouterError::Config(_) => ErrorKind::Internal,
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
