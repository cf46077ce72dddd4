//! What can go wrong with a session operation. The HTTP layer maps each variant to a status
//! and an `error_code` in its one place (`src/api/errors.rs`).

use uuid::Uuid;

use crate::agent::{FieldError, FieldErrorKind, ResolveError};
use crate::paths::Validation;
use crate::storage::StorageError;

/// Why a session operation was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// A field is missing, malformed or out of range (400), or contradicts the others (422).
    #[error(transparent)]
    Invalid(FieldError),
    /// The working directory is refused by the path policy (422 `path_refused`).
    #[error("{field} refused: {}", .validation.validation_errors.join("; "))]
    PathRefused {
        /// Where the path stands, e.g. `working_directory`.
        field: String,
        /// The validator's answer.
        validation: Box<Validation>,
    },
    /// The directory passed the policy but could not be created.
    #[error("{field}: cannot create {path}: {message}")]
    CreateDirectory {
        /// Where the path stands.
        field: String,
        /// The directory.
        path: String,
        /// What the OS said.
        message: String,
    },
    /// An API caller named its own command while custom commands are disabled (403).
    #[error("{field} refused: custom commands are disabled on this server (agents.allow_custom_commands)")]
    CustomCommandRefused {
        /// Where the command stands, e.g. `agents[0].command`.
        field: String,
    },
    /// `sessions.max_sessions` live sessions exist already (422).
    #[error(
        "at most {max} sessions may exist at once (sessions.max_sessions); terminate one first"
    )]
    TooManySessions {
        /// The limit.
        max: u32,
    },
    /// No session has this id (404).
    #[error("session {0} not found")]
    NotFound(Uuid),
    /// The session has no agent of this name (404).
    #[error("agent `{0}` not found")]
    AgentNotFound(String),
    /// The agent runs on pipes or has no process (409 `no_terminal`).
    #[error(
        "agent `{0}` has no terminal: only an agent with `terminal` (or `claude`) runs on one"
    )]
    NoTerminal(String),
    /// The operation does not fit the session's state (409), e.g. an agent operation on a
    /// terminated session.
    #[error("{0}")]
    Conflict(String),
    /// The session ended (terminated or purged) while the request was on its way (409).
    #[error("session {0} ended while the request was being handled (terminated or purged)")]
    Ended(Uuid),
    /// The session's agents could not be started (422 `agent_initialization_error`).
    #[error("agents cannot start: {0}")]
    AgentsFailed(String),
    /// The database failed; nothing was changed (500).
    #[error("storage failed")]
    Storage(#[source] std::sync::Arc<StorageError>),
    /// The event log cannot take the event now (storage refuses it: 507 or 503), or did not
    /// store it in time (503); see [`LogError`](super::LogError).
    #[error("the event log cannot take the event")]
    EventLog(#[source] std::sync::Arc<super::LogError>),
    /// A file system or repository did not answer within `paths.deadline_ms` (504
    /// `timed_out`): nothing was changed; the session stays as it was.
    #[error("{field}: {what} did not answer within {timeout_ms} ms")]
    TimedOut {
        /// The request field whose path hung.
        field: String,
        /// What was being done, naming the path.
        what: String,
        /// The deadline that passed.
        timeout_ms: u64,
    },
    /// The registry is gone (the server is shutting down; 503).
    #[error("the session registry is not running")]
    Unavailable,
}

impl SessionError {
    /// Whether a field error is a bad value (400) rather than an inconsistency (422).
    pub fn is_bad_value(&self) -> bool {
        matches!(self, SessionError::Invalid(e) if e.kind == FieldErrorKind::Invalid)
    }

    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            SessionError::Invalid(e) => Some(&e.field),
            SessionError::PathRefused { field, .. }
            | SessionError::CreateDirectory { field, .. }
            | SessionError::CustomCommandRefused { field }
            | SessionError::TimedOut { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<FieldError> for SessionError {
    fn from(error: FieldError) -> Self {
        SessionError::Invalid(error)
    }
}

impl From<ResolveError> for SessionError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Invalid(e) => SessionError::Invalid(e),
            ResolveError::CustomCommandRefused { field } => {
                SessionError::CustomCommandRefused { field }
            }
        }
    }
}

impl From<StorageError> for SessionError {
    fn from(error: StorageError) -> Self {
        SessionError::Storage(std::sync::Arc::new(error))
    }
}
