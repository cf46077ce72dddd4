//! The pieces every route's description is made of: the success and failure envelopes, the
//! error responses with their headers, the links schemathesis follows, and the parameters.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::PartialSchema;

use crate::agent::AgentType;
use crate::api::schemas::SessionStatusSchema as SessionStatus;

/// The `Success` part of every success envelope.
pub(super) fn success() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "success",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .enum_values(Some([true])),
        )
        .required("success")
        .property(
            "timestamp",
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .description(Some("Unix seconds")),
        )
        .required("timestamp")
        .property("error", ObjectBuilder::new().schema_type(Type::Null))
        .required("error")
        .into()
}

pub(super) fn json_response(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        )
        .build()
}

/// The operations that store what they are asked: storage refusing them for a full disk
/// is their 507 (`storage_full`).
pub(super) const STORES: &[&str] = &[
    "createSession",
    "importSession",
    "updateSession",
    "deleteSession",
    "navigateSession",
    "cloneSession",
    "hookEvent",
    "claudeHook",
    "exportMetrics",
    "exportLogs",
    "putContextKey",
    "deleteContextKey",
];

/// `/health`'s 503: its own payload (`status: unhealthy`, storage cannot write), or the
/// failure envelope (shutting down).
pub(super) fn unhealthy_response(ok: &utoipa::openapi::Response) -> utoipa::openapi::Response {
    let health = ok
        .content
        .get("application/json")
        .and_then(|content| match content {
            RefOr::T(content) => content.schema.clone(),
            RefOr::Ref(_) => None,
        });
    let mut one_of = OneOfBuilder::new();
    if let Some(health) = health {
        one_of = one_of.item(health);
    }
    let schema = one_of.item(Ref::from_schema_name("Failure")).build();
    let mut response = json_response(
        "Unhealthy: storage cannot write (the health payload, status unhealthy), or shutting down (the failure envelope)",
        Schema::OneOf(schema).into(),
    );
    response.headers.extend(failure(503).headers);
    response
}

/// The failure envelope of one status, with the headers it carries.
pub(super) fn failure(status: u16) -> utoipa::openapi::Response {
    let description = match status {
        400 => "Bad request: malformed JSON (with its position), an unknown or invalid field or query parameter (details.field), a path segment that is not UTF-8 (session_validation_error); an HTTP/1.1 request without Host, Content-Length with Transfer-Encoding, an unparsable request (bad_request)",
        401 => "Missing or wrong bearer token (when server.token is set)",
        403 => "Forbidden Host or Origin, or a custom agent command while agents.allow_custom_commands is off",
        404 => "session_not_found, agent_not_found or context_key_not_found",
        409 => "The session ended or changed under the request (conflict); the agent has no terminal (no_terminal) or no process runs on it (agent_not_running), or the program has left its input unread for 5 s (input_not_read)",
        408 => "The body did not arrive within server.body_read_timeout_ms (request_timeout); the connection closes",
        413 => "Body larger than server.max_body_bytes",
        415 => "Body is not JSON (Content-Type)",
        422 => "Refused: path_refused, session_validation_error (agents, limits), session_limit_reached, agent_initialization_error",
        429 => "Rate limited (Retry-After)",
        431 => "More than 100 header lines, or a request head over 64 KiB (request_header_fields_too_large)",
        500 => "Internal error",
        503 => "Shutting down (shutting_down), or storage cannot be used now (storage_unavailable); nothing was changed (Retry-After)",
        507 => "The disk holding the database is full (storage_full); nothing was changed (details.hint)",
        _ => "Error",
    };
    let mut response = json_response(description, Ref::from_schema_name("Failure").into());
    let header = |name: &str, description: &str| {
        (
            name.to_owned(),
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some(description))
                .build()
                .into(),
        )
    };
    let headers = match status {
        401 => vec![header("WWW-Authenticate", "Bearer")],
        429 | 503 => vec![header("Retry-After", "Seconds to wait")],
        _ => vec![],
    };
    response.headers.extend(headers);
    response
}

/// Links from a created session to the operations on it (schemathesis follows them).
pub(super) fn session_links(mut response: ResponseBuilder) -> ResponseBuilder {
    for operation in [
        "getSession",
        "updateSession",
        "deleteSession",
        "navigateSession",
        "cloneSession",
        "exportSession",
        "sessionMetrics",
        "sessionStatus",
        "hookEvent",
        "listAgents",
        "getContext",
        "putContextKey",
    ] {
        response = response.link(
            operation,
            LinkBuilder::new()
                .operation_id(operation)
                .parameter("id", "$response.body#/session/id")
                .build(),
        );
    }
    // The first agent, when the session has one.
    for operation in [
        "activateAgent",
        "deactivateAgent",
        "restartAgent",
        "agentLogs",
    ] {
        response = response.link(
            operation,
            LinkBuilder::new()
                .operation_id(operation)
                .parameter("id", "$response.body#/session/id")
                .parameter("name", "$response.body#/session/agents/0/name")
                .build(),
        );
    }
    response
}

pub(super) fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1)),
        ))
        .description(Some(description))
        .build()
}

pub(super) fn id_param() -> utoipa::openapi::path::Parameter {
    path_param(
        "id",
        "The session's id (a UUID; anything else names no session: 404)",
    )
}

pub(super) fn name_param() -> utoipa::openapi::path::Parameter {
    path_param("name", "The agent's name, percent-encoded")
}

pub(super) fn key_param() -> utoipa::openapi::path::Parameter {
    path_param(
        "key",
        "The context key, percent-encoded (a%2Fb is the key a/b)",
    )
}

/// An integer schema from `min`, up to `max` when there is one.
pub(super) fn integer(min: u64, max: Option<usize>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(max.map(|m| m as f64))
        .into()
}

pub(super) fn query(
    name: &str,
    schema: RefOr<Schema>,
    description: &str,
) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

pub(super) fn list_parameters() -> Vec<utoipa::openapi::path::Parameter> {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let number = || ObjectBuilder::new().schema_type(Type::Number).into();
    vec![
        query(
            "status",
            SessionStatus::schema(),
            "Only sessions with this status",
        ),
        query(
            "name_pattern",
            string().into(),
            "Case-blind glob over the name (* and ?; without a wildcard, a substring)",
        ),
        query(
            "working_directory_pattern",
            string().into(),
            "Case-blind glob over the working directory",
        ),
        query("created_after", number(), "Unix seconds"),
        query("created_before", number(), "Unix seconds"),
        query(
            "has_agents",
            ObjectBuilder::new().schema_type(Type::Boolean).into(),
            "Only sessions with (or without) agents",
        ),
        query(
            "tag",
            string().min_length(Some(1)).into(),
            "Only sessions with this tag",
        ),
        query(
            "agent_type",
            AgentType::schema(),
            "Only sessions with an agent of this type (any case)",
        ),
        query(
            "sort",
            string()
                .pattern(Some(
                    "^-?(created_at|updated_at|last_activity|name|status)$",
                ))
                .into(),
            "KEY or -KEY (descending); ties by id",
        ),
        query(
            "limit",
            integer(1, Some(crate::session::MAX_LIMIT)),
            "Page size",
        ),
        query("offset", integer(0, None), "Sessions skipped"),
    ]
}
