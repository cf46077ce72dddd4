//! The one place where errors become HTTP statuses and stable `error_code`s: handlers return
//! (or reject with) an [`ApiError`], warp's own rejections are translated here, and
//! [`recover`] turns whatever is left into the failure envelope.

use std::convert::Infallible;
use std::error::Error as _;

use serde_json::{json, Value};
use warp::body::BodyDeserializeError;
use warp::http::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use warp::http::StatusCode;
use warp::reject::{
    InvalidHeader, InvalidQuery, LengthRequired, MethodNotAllowed, MissingHeader, PayloadTooLarge,
    UnsupportedMediaType,
};
use warp::reply::Response;
use warp::ws::MissingConnectionUpgrade;
use warp::Rejection;

use super::envelope;
use crate::session::{LogError, SessionError};
use crate::storage::{Fault, StorageError};

/// `Retry-After` of a connection refused for want of a slot: connections come and go fast.
const CONNECTION_RETRY_AFTER_SECONDS: u64 = 1;

/// Everything the API can answer with instead of a payload. Messages reach clients, so they
/// describe the request, never the server's internals.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ApiError {
    /// No route has this path.
    #[error("no route matches this path")]
    NotFound,
    /// A route has this path, but not for this method.
    #[error("method not allowed for this path")]
    MethodNotAllowed {
        /// The methods the path answers, for the `Allow` header (RFC 9110 §15.5.6).
        allow: Option<&'static str>,
    },
    /// The body, query or a header is malformed, a field is missing or out of range.
    #[error("{message}")]
    Validation {
        message: String,
        /// The offending field, e.g. `agents[1].agent_type`, when known.
        field: Option<String>,
    },
    /// The body is larger than the server accepts.
    #[error("request body too large")]
    PayloadTooLarge {
        /// The limit in bytes, when known.
        limit: Option<u64>,
    },
    /// A body was sent without announcing its length where one is needed.
    #[error("a content-length header is required")]
    LengthRequired,
    /// The body is not JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// A body in a type or encoding the route does not take (the OTLP receiver): 415
    /// naming the header at fault.
    #[error("{message}")]
    UnsupportedBody {
        message: &'static str,
        /// `Content-Type` or `Content-Encoding`.
        field: &'static str,
    },
    /// No session has this id.
    #[error("{0}")]
    SessionNotFound(String),
    /// The session has no agent of this name.
    #[error("{0}")]
    AgentNotFound(String),
    /// The session's shared context has no such key.
    #[error("{0}")]
    ContextKeyNotFound(String),
    /// Refused for lack of permission, e.g. a custom command while they are disabled.
    #[error("{message}")]
    Forbidden {
        message: String,
        field: Option<String>,
    },
    /// The request does not fit the current state (e.g. an operation on a terminated session).
    #[error("{0}")]
    Conflict(String),
    /// The agent has no terminal (`no_terminal`), or no process runs on it
    /// (`agent_not_running`): a 409 with its own code.
    #[error("{message}")]
    TerminalConflict {
        /// `no_terminal` or `agent_not_running`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// Well-formed but semantically refused: a path the policy refuses, an unknown agent
    /// type, a cycle, a limit reached, agents that cannot start.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        details: Option<Value>,
    },
    /// A token is configured and the request carries none, or another one. The message
    /// never repeats what was sent.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The `Host` names no host of this server (DNS rebinding).
    #[error("this server does not answer to the requested host")]
    ForbiddenHost,
    /// The `Origin` is neither loopback nor in `server.allowed_origins` (a cross-site page).
    #[error("requests from this origin are not allowed")]
    ForbiddenOrigin,
    /// The client is over `server.rate_limit_per_second` and its burst.
    #[error("too many requests; retry later")]
    RateLimited {
        /// Whole seconds until a request would pass, at least 1.
        retry_after_seconds: u64,
    },
    /// The server is draining before it stops; a new request has to go elsewhere or later.
    #[error("the server is shutting down")]
    ShuttingDown {
        /// Whole seconds after which a restarted server may answer.
        retry_after_seconds: u64,
    },
    /// The change could not be stored because the disk holding the database is full;
    /// nothing was changed.
    #[error(
        "the server's disk is full; nothing was changed ({})",
        STORAGE_FULL_HINT
    )]
    StorageFull,
    /// The change could not be stored (or the data read) because storage cannot be used
    /// right now (read-only, failing or busy); nothing was changed, a later retry may pass.
    #[error("storage is unavailable; nothing was changed, retry later")]
    StorageUnavailable {
        /// Whole seconds after which a retry may pass.
        retry_after_seconds: u64,
    },
    /// A bug or an unexpected failure; details go to the log only.
    #[error("internal server error")]
    Internal,
    /// Malformed at the HTTP level: the request line, a header's syntax, the body's framing
    /// (two Content-Lengths, Content-Length with Transfer-Encoding), no `Host` in HTTP/1.1.
    #[error("{message}")]
    BadRequest {
        message: &'static str,
        /// The header at fault, when one is.
        field: Option<&'static str>,
    },
    /// The request target is longer than hyper reads (65,534 bytes).
    #[error("the request target (URL) is too long")]
    UriTooLong,
    /// Too many header lines, or a request head larger than the server reads.
    #[error("the request header fields are too large")]
    HeaderFieldsTooLarge,
    /// The body did not arrive within `server.body_read_timeout_ms`.
    #[error("the request body was not received in time")]
    RequestTimeout {
        /// The limit, in milliseconds.
        timeout_ms: u64,
    },
    /// A file system or repository the request needed did not answer within
    /// `paths.deadline_ms` (504 `timed_out`); nothing was changed.
    #[error("{message}")]
    TimedOut {
        message: String,
        field: Option<String>,
        timeout_ms: u64,
    },
    /// Every connection slot (in total, or for this client's address) is taken.
    #[error("too many connections; retry later")]
    TooManyConnections {
        /// The setting that was reached.
        field: &'static str,
        limit: usize,
    },
}

/// What a client is told to wait before retrying against unavailable storage: long enough
/// for an operator or a transient lock, short enough that a client does not give up.
const STORAGE_RETRY_AFTER_SECONDS: u64 = 5;

/// The hint a 507 carries: the operator's move, in words a client can show.
const STORAGE_FULL_HINT: &str =
    "free space on the file system of the server's data directory, then retry";

impl From<&StorageError> for ApiError {
    /// A storage fault is the client's business (507 or 503: retry, or free space); any
    /// other storage failure is ours, logged and answered as a bare 500.
    fn from(error: &StorageError) -> Self {
        match error.fault() {
            Some(Fault::Full) => {
                tracing::warn!(%error, "a request failed: the disk is full");
                ApiError::StorageFull
            }
            Some(Fault::Unavailable) => {
                tracing::warn!(%error, "a request failed: storage is unavailable");
                ApiError::StorageUnavailable {
                    retry_after_seconds: STORAGE_RETRY_AFTER_SECONDS,
                }
            }
            None => {
                tracing::error!(error = %error, source = ?error.source(), "a request failed in storage");
                ApiError::Internal
            }
        }
    }
}

impl From<&LogError> for ApiError {
    fn from(error: &LogError) -> Self {
        match error {
            LogError::Storage(error) => ApiError::from(error),
            LogError::Failing(Fault::Full) => ApiError::StorageFull,
            LogError::Failing(Fault::Unavailable) | LogError::TimedOut => {
                ApiError::StorageUnavailable {
                    retry_after_seconds: STORAGE_RETRY_AFTER_SECONDS,
                }
            }
            LogError::Closed => ApiError::ShuttingDown {
                retry_after_seconds: 10,
            },
        }
    }
}

/// The limits behind [`ApiError::HeaderFieldsTooLarge`], named in its details: hyper's header
/// line count, and the request head size the connection layer reads.
pub(crate) const MAX_HEADER_LINES: usize = 100;
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

impl warp::reject::Reject for ApiError {}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        let message = error.to_string();
        let field = error.field().map(str::to_string);
        let bad_value = error.is_bad_value();
        match error {
            SessionError::Invalid(_) if bad_value => ApiError::Validation { message, field },
            SessionError::Invalid(_) => ApiError::Unprocessable {
                code: "session_validation_error",
                message,
                details: field.map(|field| json!({ "field": field })),
            },
            SessionError::PathRefused { validation, .. } => ApiError::Unprocessable {
                code: "path_refused",
                message,
                details: Some(json!({ "field": field, "validation": validation })),
            },
            SessionError::CreateDirectory { .. } => ApiError::Unprocessable {
                code: "path_refused",
                message,
                details: Some(json!({ "field": field })),
            },
            SessionError::CustomCommandRefused { .. } => ApiError::Forbidden { message, field },
            SessionError::TooManySessions { max } => ApiError::Unprocessable {
                code: "session_limit_reached",
                message,
                details: Some(json!({ "field": "sessions.max_sessions", "limit": max })),
            },
            SessionError::NotFound(_) => ApiError::SessionNotFound(message),
            SessionError::AgentNotFound(_) => ApiError::AgentNotFound(message),
            SessionError::Conflict(_) | SessionError::Ended(_) => ApiError::Conflict(message),
            SessionError::NoTerminal(_) => ApiError::TerminalConflict {
                code: "no_terminal",
                message,
            },
            SessionError::AgentsFailed(_) => ApiError::Unprocessable {
                code: "agent_initialization_error",
                message,
                details: None,
            },
            SessionError::Storage(source) => ApiError::from(&*source),
            SessionError::EventLog(source) => ApiError::from(&*source),
            SessionError::TimedOut { timeout_ms, .. } => ApiError::TimedOut {
                message,
                field,
                timeout_ms,
            },
            SessionError::Unavailable => ApiError::ShuttingDown {
                retry_after_seconds: 10,
            },
        }
    }
}

impl ApiError {
    /// A 400 about one field.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::LengthRequired => StatusCode::LENGTH_REQUIRED,
            ApiError::UnsupportedMediaType | ApiError::UnsupportedBody { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::SessionNotFound(_)
            | ApiError::AgentNotFound(_)
            | ApiError::ContextKeyNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) | ApiError::TerminalConflict { .. } => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ForbiddenHost | ApiError::ForbiddenOrigin => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ShuttingDown { .. } | ApiError::StorageUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::UriTooLong => StatusCode::URI_TOO_LONG,
            ApiError::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::TooManyConnections { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The stable, snake_case code clients branch on.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Validation { .. } => "session_validation_error",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::LengthRequired => "length_required",
            ApiError::UnsupportedMediaType | ApiError::UnsupportedBody { .. } => {
                "unsupported_media_type"
            }
            ApiError::SessionNotFound(_) => "session_not_found",
            ApiError::AgentNotFound(_) => "agent_not_found",
            ApiError::ContextKeyNotFound(_) => "context_key_not_found",
            ApiError::Forbidden { .. } => "session_permission_error",
            ApiError::Conflict(_) => "conflict",
            ApiError::TerminalConflict { code, .. } => code,
            ApiError::Unprocessable { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            // DESIGN.md's one code for a 403; `details.field` says which header.
            ApiError::ForbiddenHost | ApiError::ForbiddenOrigin => "session_permission_error",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ShuttingDown { .. } => "shutting_down",
            ApiError::StorageFull => "storage_full",
            ApiError::StorageUnavailable { .. } => "storage_unavailable",
            ApiError::Internal => "internal_error",
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::UriTooLong => "uri_too_long",
            ApiError::HeaderFieldsTooLarge => "request_header_fields_too_large",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::TimedOut { .. } => "timed_out",
            ApiError::TooManyConnections { .. } => "too_many_connections",
        }
    }

    pub(crate) fn details(&self) -> Option<Value> {
        match self {
            ApiError::Validation {
                field: Some(field), ..
            } => Some(json!({ "field": field })),
            ApiError::PayloadTooLarge { limit: Some(limit) } => {
                Some(json!({ "limit_bytes": limit }))
            }
            ApiError::Forbidden {
                field: Some(field), ..
            } => Some(json!({ "field": field })),
            ApiError::Unprocessable { details, .. } => details.clone(),
            ApiError::ForbiddenHost => Some(json!({ "field": "Host" })),
            ApiError::UnsupportedBody { field, .. } => Some(json!({ "field": field })),
            ApiError::ForbiddenOrigin => Some(json!({ "field": "Origin" })),
            ApiError::RateLimited {
                retry_after_seconds,
            }
            | ApiError::ShuttingDown {
                retry_after_seconds,
            }
            | ApiError::StorageUnavailable {
                retry_after_seconds,
            } => Some(json!({ "retry_after_seconds": retry_after_seconds })),
            ApiError::StorageFull => Some(json!({ "hint": STORAGE_FULL_HINT })),
            ApiError::BadRequest {
                field: Some(field), ..
            } => Some(json!({ "field": field })),
            ApiError::UriTooLong => Some(json!({ "limit_bytes": u16::MAX - 1 })),
            ApiError::HeaderFieldsTooLarge => Some(json!({
                "max_header_lines": MAX_HEADER_LINES,
                "max_head_bytes": MAX_HEAD_BYTES,
            })),
            ApiError::RequestTimeout { timeout_ms } => Some(json!({
                "field": "server.body_read_timeout_ms",
                "timeout_ms": timeout_ms,
            })),
            ApiError::TimedOut {
                field, timeout_ms, ..
            } => Some(json!({
                "field": field,
                "setting": "paths.deadline_ms",
                "timeout_ms": timeout_ms,
            })),
            ApiError::TooManyConnections { field, limit } => Some(json!({
                "field": field,
                "limit": limit,
                "retry_after_seconds": CONNECTION_RETRY_AFTER_SECONDS,
            })),
            _ => None,
        }
    }

    /// Headers the status calls for: `Allow` with a 405 (RFC 9110 §15.5.6),
    /// `WWW-Authenticate` with a 401 (§11.6.1), `Retry-After` with a 429 or 503 (§10.2.3).
    pub(crate) fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        match self {
            ApiError::MethodNotAllowed { allow: Some(allow) } => {
                vec![(ALLOW, HeaderValue::from_static(allow))]
            }
            ApiError::Unauthorized => {
                vec![(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))]
            }
            // A draining server keeps no connection alive: saying so here does not depend on
            // hyper's graceful shutdown having reached this connection yet.
            ApiError::ShuttingDown {
                retry_after_seconds,
            } => vec![
                (RETRY_AFTER, HeaderValue::from(*retry_after_seconds)),
                (CONNECTION, HeaderValue::from_static("close")),
            ],
            ApiError::RateLimited {
                retry_after_seconds,
            }
            | ApiError::StorageUnavailable {
                retry_after_seconds,
            } => vec![(RETRY_AFTER, HeaderValue::from(*retry_after_seconds))],
            // The rest of the body is still on the wire: the connection cannot be reused.
            ApiError::RequestTimeout { .. } => {
                vec![(CONNECTION, HeaderValue::from_static("close"))]
            }
            ApiError::TooManyConnections { .. } => vec![
                (
                    RETRY_AFTER,
                    HeaderValue::from(CONNECTION_RETRY_AFTER_SECONDS),
                ),
                (CONNECTION, HeaderValue::from_static("close")),
            ],
            _ => Vec::new(),
        }
    }

    fn from_rejection(rejection: &Rejection) -> ApiError {
        if let Some(error) = rejection.find::<ApiError>() {
            return error.clone();
        }
        // Most specific first: when several routes rejected, the one whose path matched
        // explains the failure better than a sibling's 405 or 404.
        if rejection.find::<PayloadTooLarge>().is_some() {
            return ApiError::PayloadTooLarge { limit: None };
        }
        if rejection.find::<UnsupportedMediaType>().is_some() {
            return ApiError::UnsupportedMediaType;
        }
        if rejection.find::<LengthRequired>().is_some() {
            return ApiError::LengthRequired;
        }
        if let Some(error) = rejection.find::<BodyDeserializeError>() {
            let cause = error.source().map(ToString::to_string).unwrap_or_default();
            return ApiError::Validation {
                message: format!("invalid JSON body: {cause}"),
                field: None,
            };
        }
        if rejection.find::<InvalidQuery>().is_some() {
            return ApiError::Validation {
                message: "invalid query string".to_owned(),
                field: None,
            };
        }
        if let Some(header) = rejection.find::<MissingHeader>() {
            return ApiError::Validation {
                message: format!("missing header {}", header.name()),
                field: Some(header.name().to_owned()),
            };
        }
        if let Some(header) = rejection.find::<InvalidHeader>() {
            return ApiError::Validation {
                message: format!("invalid header {}", header.name()),
                field: Some(header.name().to_owned()),
            };
        }
        if rejection.find::<MissingConnectionUpgrade>().is_some() {
            return ApiError::Validation {
                message: "a websocket upgrade is required".to_owned(),
                field: None,
            };
        }
        if rejection.find::<MethodNotAllowed>().is_some() {
            return ApiError::MethodNotAllowed { allow: None };
        }
        if rejection.is_not_found() {
            return ApiError::NotFound;
        }
        ApiError::Internal
    }
}

/// The `recover` handler of the whole API: every rejection becomes a failure envelope.
pub(crate) async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    if rejection.find::<super::security::Preflight>().is_some() {
        return Ok(super::security::preflight_response());
    }
    let error = ApiError::from_rejection(&rejection);
    if error == ApiError::Internal {
        tracing::error!(?rejection, "unhandled rejection");
    }
    Ok(envelope::failure(&error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use warp::Filter;

    #[derive(Debug, Deserialize)]
    struct Body {
        name: String,
    }

    #[derive(Debug)]
    struct Unexpected;
    impl warp::reject::Reject for Unexpected {}

    /// A route exercising the body filters a JSON handler will use.
    fn json_route() -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
        warp::path!("things")
            .and(warp::post())
            .and(warp::body::content_length_limit(16))
            .and(warp::body::json::<Body>())
            .map(|body: Body| Response::new(body.name.into()))
            .or(warp::path!("boom")
                .and_then(|| async { Err::<Response, _>(warp::reject::custom(Unexpected)) }))
            .unify()
            .or(warp::path!("bad").and_then(|| async {
                Err::<Response, _>(warp::reject::custom(ApiError::Validation {
                    message: "name is required".to_owned(),
                    field: Some("name".to_owned()),
                }))
            }))
            .unify()
            .recover(recover)
            .unify()
    }

    async fn envelope_of(request: warp::test::RequestBuilder) -> (StatusCode, Value) {
        let response = request.reply(&json_route()).await;
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["success"], false);
        assert!(body["timestamp"].is_f64());
        assert!(body["error"].is_string());
        (response.status(), body)
    }

    #[tokio::test]
    async fn payload_too_large_is_413() {
        let (status, body) = envelope_of(
            warp::test::request()
                .method("POST")
                .path("/things")
                .header("content-type", "application/json")
                .body(r#"{"name": "a name far too long for the limit"}"#),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["error_code"], "payload_too_large");
    }

    #[tokio::test]
    async fn non_json_body_is_415() {
        let (status, body) = envelope_of(
            warp::test::request()
                .method("POST")
                .path("/things")
                .header("content-type", "text/plain")
                .body("hi"),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(body["error_code"], "unsupported_media_type");
    }

    #[tokio::test]
    async fn malformed_json_is_400_validation_error() {
        let (status, body) = envelope_of(
            warp::test::request()
                .method("POST")
                .path("/things")
                .header("content-type", "application/json")
                .body("{}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error_code"], "session_validation_error");
        assert!(body["error"].as_str().unwrap().contains("name"));
    }

    #[tokio::test]
    async fn handler_validation_error_carries_the_field() {
        let (status, body) = envelope_of(warp::test::request().path("/bad")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error_code"], "session_validation_error");
        assert_eq!(body["details"]["field"], "name");
    }

    #[tokio::test]
    async fn unknown_rejection_is_500_without_internals() {
        let (status, body) = envelope_of(warp::test::request().path("/boom")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error_code"], "internal_error");
        assert_eq!(body["error"], "internal server error");
        assert!(body.get("details").is_none());
    }

    #[tokio::test]
    async fn wrong_method_is_405_and_unknown_path_404() {
        let (status, body) = envelope_of(warp::test::request().path("/things")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body["error_code"], "method_not_allowed");
        let (status, body) = envelope_of(warp::test::request().path("/nothing")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error_code"], "not_found");
    }
}
