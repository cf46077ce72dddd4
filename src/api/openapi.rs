//! `GET /openapi.json`: the API described as OpenAPI 3.1, generated once (at the first
//! request) from the wire types themselves — every payload, request body and the failure
//! envelope derives `utoipa::ToSchema`, so the document cannot drift from what the handlers
//! serialize. This file holds the route table: each route with its parameters, request body,
//! success payload and the error statuses it can answer. `tests/api/main.rs` checks that every
//! route of `api::routes` is here and answers as described; `scripts/schemathesis.sh`
//! checks real responses against the document.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, Paths};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{
    AllOfBuilder, ArrayBuilder, ComponentsBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, Required, ServerBuilder, Tag,
};
use utoipa::{PartialSchema, ToSchema};
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::dto::requests::{
    CloneBody, ContextPutBody, ExportBody, ImportBody, NavigateBody, UpdateBody, ValidatePathBody,
    ValidatePathsBody,
};
use super::dto::{ErrorEnvelope, Health};
use super::events::{EventsPage, MAX_LIMIT};
use super::schemas::{SessionConfigSchema as SessionConfig, SessionStatusSchema as SessionStatus};
use super::sessions::{
    AgentCommandPayload, AgentsPayload, ContextKeyPayload, ContextPayload, ExportPayload,
    GetPayload, HookAccepted, ListPayload, LogsPayload, MetricsPayload, SessionPayload,
    SessionWithValidation, StatusPayload,
};
use super::system::{
    AgentTypesPayload, AnalyticsPayload, SystemStatusPayload, ValidatePathPayload,
    ValidatePathsPayload,
};
use crate::agent::{AgentType, RING_LINES};

/// The document as served, built on first use.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| document().to_json().unwrap_or_default());

pub(crate) async fn serve() -> Response {
    let mut response = Response::new(DOCUMENT.as_str().into());
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

const SESSION: &str = "/api/claude/sessions/{id}";

/// The whole document.
pub(crate) fn document() -> OpenApi {
    let mut doc = Doc::default();
    doc.routes();
    let components = ComponentsBuilder::new()
        .schemas_from_iter(std::mem::take(&mut doc.schemas))
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "server.token; required on every route but GET /health when set. \
                         A WebSocket client may send it as the subprotocol `bearer, <token>`.",
                    ))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("session-manager")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Supervisor for Claude Code work sessions. Every JSON response is the \
                     envelope {success, timestamp, error, data} with the payload's keys also \
                     at the top level; a failure is {success: false, timestamp, error, \
                     error_code, details?}. GET routes answer HEAD too; any method a path \
                     does not list is a 405 (`method_not_allowed`) with an Allow header, an \
                     unknown path a 404 (`not_found`).",
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .paths(doc.paths)
        .components(Some(components))
        .security(Some([
            SecurityRequirement::default(),
            SecurityRequirement::new("bearer", Vec::<String>::new()),
        ]))
        .tags(Some(
            ["sessions", "agents", "context", "events", "paths", "system"].map(Tag::new),
        ))
        .build()
}

/// The paths and the schemas they reference, as they are added.
#[derive(Default)]
struct Doc {
    paths: Paths,
    schemas: BTreeMap<String, RefOr<Schema>>,
}

impl Doc {
    /// Registers `T` and every schema it references; returns a reference to it.
    fn schema<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut found = Vec::new();
        T::schemas(&mut found);
        self.schemas.extend(found);
        self.schemas.insert(T::name().into_owned(), T::schema());
        Ref::from_schema_name(T::name()).into()
    }

    /// A success envelope around the payload `T`: its keys at the top level and under `data`.
    fn envelope<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let payload = self.schema::<T>();
        self.schemas.entry("Success".into()).or_insert_with(success);
        AllOfBuilder::new()
            .item(Ref::from_schema_name("Success"))
            .item(payload.clone())
            .item(
                ObjectBuilder::new()
                    .property("data", payload)
                    .required("data"),
            )
            .into()
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        method: HttpMethod,
        path: &str,
        id: &str,
        tag: &str,
        summary: &str,
        parameters: Vec<utoipa::openapi::path::Parameter>,
        body: Option<RefOr<Schema>>,
        ok: (&str, utoipa::openapi::Response),
        errors: &[u16],
    ) {
        self.schema::<ErrorEnvelope>();
        let public = path == "/health";
        // `/health` answers 503 with its own payload when storage cannot write (and with
        // the failure envelope while the server drains).
        let unhealthy = public.then(|| unhealthy_response(&ok.1));
        let mut operation = OperationBuilder::new()
            .operation_id(Some(id))
            .tag(tag)
            .summary(Some(summary))
            .parameters(Some(parameters))
            .response(ok.0, ok.1);
        if let Some(schema) = body {
            operation = operation.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(schema)).build(),
                    )
                    .build(),
            ));
        }
        let mut statuses: Vec<u16> = errors.to_vec();
        // Every route sits behind the guards (and may fail inside): the framing guard's 400
        // and 431 included.
        statuses.extend([400, 403, 429, 431, 500, 503]);
        if !public {
            statuses.push(401);
        }
        // A write storage refuses for a full disk (storage_full).
        if STORES.contains(&id) {
            statuses.push(507);
        }
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            let response = match (&unhealthy, status) {
                (Some(unhealthy), 503) => unhealthy.clone(),
                _ => failure(status),
            };
            operation = operation.response(status.to_string(), response);
        }
        if public {
            operation = operation.security(SecurityRequirement::default());
        }
        self.paths
            .add_path_operation(path, vec![method], operation.build());
    }

    /// A JSON route under the envelope.
    #[allow(clippy::too_many_arguments)]
    fn json<T: ToSchema>(
        &mut self,
        method: HttpMethod,
        path: &str,
        id: &str,
        tag: &str,
        summary: &str,
        parameters: Vec<utoipa::openapi::path::Parameter>,
        body: Option<RefOr<Schema>>,
        status: u16,
        errors: &[u16],
    ) {
        let schema = self.envelope::<T>();
        let mut response = ResponseBuilder::new().description(summary).content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
        if status == 201 && T::name() == "SessionPayload" {
            response = session_links(response);
        }
        if id == "putContextKey" {
            for operation in ["getContextKey", "deleteContextKey"] {
                response = response.link(
                    operation,
                    LinkBuilder::new()
                        .operation_id(operation)
                        .parameter("id", "$response.body#/session_id")
                        .parameter("key", "$response.body#/key")
                        .build(),
                );
            }
        }
        let (errors, body_errors): (Vec<u16>, &[u16]) = match body {
            Some(_) => (errors.to_vec(), &[400, 408, 413, 415]),
            None => (errors.to_vec(), &[]),
        };
        // A route on one session: its id may name none (404) or a segment may not decode
        // (400), and the session may be terminated or end under the request (409).
        let session: &[u16] = if path.contains("{id}") {
            &[400, 404, 409]
        } else {
            &[]
        };
        let errors: Vec<u16> = errors
            .iter()
            .chain(body_errors)
            .chain(session)
            .copied()
            .collect();
        self.route(
            method,
            path,
            id,
            tag,
            summary,
            parameters,
            body,
            (&status.to_string(), response.build()),
            &errors,
        );
    }

    fn routes(&mut self) {
        use HttpMethod::{Delete, Get, Post, Put};
        // Server-wide, outside /api/claude.
        let health = self.envelope::<Health>();
        self.route(
            Get,
            "/health",
            "health",
            "system",
            "Liveness and the state of each subsystem; needs no token",
            vec![],
            None,
            ("200", json_response("The server is up", health)),
            &[],
        );
        self.route(
            Get,
            "/metrics",
            "prometheus",
            "system",
            "Prometheus text exposition (version 0.0.4)",
            vec![],
            None,
            (
                "200",
                ResponseBuilder::new()
                    .description("The metrics")
                    .content(
                        "text/plain",
                        ContentBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                            .build(),
                    )
                    .build(),
            ),
            &[],
        );
        self.route(
            Get,
            "/openapi.json",
            "openapi",
            "system",
            "This document",
            vec![],
            None,
            (
                "200",
                json_response(
                    "The OpenAPI 3.1 document",
                    ObjectBuilder::new().schema_type(Type::Object).into(),
                ),
            ),
            &[],
        );
        self.route(
            Get,
            "/ws/sessions",
            "websocket",
            "events",
            "WebSocket of live events (subscribe, replay since a seq); see the README",
            vec![],
            None,
            (
                "101",
                ResponseBuilder::new()
                    .description("Switched to the WebSocket protocol")
                    .build(),
            ),
            &[400],
        );

        // Sessions.
        let create = self.create_session_schema();
        self.json::<SessionPayload>(
            Post,
            "/api/claude/sessions",
            "createSession",
            "sessions",
            "Create a session (the seed's session configuration plus tags, strategy, create_if_missing)",
            vec![],
            Some(create),
            201,
            &[403, 409, 422],
        );
        self.json::<ListPayload>(
            Get,
            "/api/claude/sessions",
            "listSessions",
            "sessions",
            "List sessions; total counts every match, not only the page. Parameters valid alone but not together (created_before < created_after) are a 422",
            list_parameters(),
            None,
            200,
            &[400, 422],
        );
        let import = self.schema::<ImportBody>();
        self.json::<SessionPayload>(
            Post,
            "/api/claude/sessions/import",
            "importSession",
            "sessions",
            "Create a session from an exported snapshot",
            vec![],
            Some(import),
            201,
            &[403, 409, 422],
        );
        self.json::<GetPayload>(
            Get,
            SESSION,
            "getSession",
            "sessions",
            "A session with its agents, monitoring summary and directory validation",
            vec![id_param()],
            None,
            200,
            &[400, 404],
        );
        let update = self.schema::<UpdateBody>();
        self.json::<SessionPayload>(
            Put,
            SESSION,
            "updateSession",
            "sessions",
            "Change a live session's settings or agents (agents restart when they change)",
            vec![id_param()],
            Some(update),
            200,
            &[403, 404, 409, 422],
        );
        self.json::<SessionPayload>(
            Delete,
            SESSION,
            "deleteSession",
            "sessions",
            "Terminate a session (its agents stop); purge=true also forgets it",
            vec![
                id_param(),
                query(
                    "purge",
                    ObjectBuilder::new().schema_type(Type::Boolean).into(),
                    "Also remove the record and its context",
                ),
            ],
            None,
            200,
            &[400, 404, 409],
        );
        let navigate = self.schema::<NavigateBody>();
        self.json::<SessionWithValidation>(
            Post,
            "/api/claude/sessions/{id}/navigate",
            "navigateSession",
            "sessions",
            "Move a session to another working directory",
            vec![id_param()],
            Some(navigate),
            200,
            &[404, 409, 422],
        );
        let clone = self.schema::<CloneBody>();
        self.json::<SessionPayload>(
            Post,
            "/api/claude/sessions/{id}/clone",
            "cloneSession",
            "sessions",
            "A new session from this one's configuration (optionally in a new git worktree)",
            vec![id_param()],
            Some(clone),
            201,
            &[403, 404, 409, 422],
        );
        let export = self.schema::<ExportBody>();
        self.json::<ExportPayload>(
            Post,
            "/api/claude/sessions/{id}/export",
            "exportSession",
            "sessions",
            "The session as a snapshot that import takes back",
            vec![id_param()],
            Some(export),
            200,
            &[404],
        );
        self.json::<MetricsPayload>(
            Get,
            "/api/claude/sessions/{id}/metrics",
            "sessionMetrics",
            "sessions",
            "A session's metrics over the last hours",
            vec![
                id_param(),
                query(
                    "hours",
                    ObjectBuilder::new()
                        .schema_type(Type::Number)
                        .exclusive_minimum(Some(0.0))
                        .maximum(Some(8784.0))
                        .into(),
                    "Window in hours (default 1)",
                ),
            ],
            None,
            200,
            &[400, 404],
        );
        self.json::<StatusPayload>(
            Get,
            "/api/claude/sessions/{id}/status",
            "sessionStatus",
            "sessions",
            "A session's status, agent counts and open alerts",
            vec![id_param()],
            None,
            200,
            &[400, 404],
        );
        let hook = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "hook_event_name",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(128)),
            )
            .required("hook_event_name")
            .description(Some(
                "A Claude Code hook payload; keys besides hook_event_name are kept as given",
            ))
            .into();
        self.json::<HookAccepted>(
            Post,
            "/api/claude/sessions/{id}/events",
            "hookEvent",
            "events",
            "Record a Claude Code hook event for the session (announced on the event bus)",
            vec![id_param()],
            Some(hook),
            202,
            &[404, 409],
        );

        // Agents.
        self.json::<AgentsPayload>(
            Get,
            "/api/claude/sessions/{id}/agents",
            "listAgents",
            "agents",
            "A session's agents and their live state",
            vec![id_param()],
            None,
            200,
            &[400, 404],
        );
        for (op, id, summary) in [
            (
                "activate",
                "activateAgent",
                "Start an agent (it stays wanted up)",
            ),
            (
                "deactivate",
                "deactivateAgent",
                "Stop an agent until activated",
            ),
            ("restart", "restartAgent", "Stop and start an agent"),
        ] {
            self.json::<AgentCommandPayload>(
                Post,
                &format!("/api/claude/sessions/{{id}}/agents/{{name}}/{op}"),
                id,
                "agents",
                summary,
                vec![id_param(), name_param()],
                None,
                200,
                &[400, 404, 409, 422],
            );
        }
        self.json::<LogsPayload>(
            Get,
            "/api/claude/sessions/{id}/agents/{name}/logs",
            "agentLogs",
            "agents",
            "An agent's last output lines",
            vec![
                id_param(),
                name_param(),
                query("tail", integer(1, Some(RING_LINES)), "Lines (default 100)"),
            ],
            None,
            200,
            &[400, 404],
        );

        // Shared context.
        self.json::<ContextPayload>(
            Get,
            "/api/claude/sessions/{id}/context",
            "getContext",
            "context",
            "Every key of a session's shared context",
            vec![id_param()],
            None,
            200,
            &[400, 404],
        );
        let key_params = || vec![id_param(), key_param()];
        self.json::<ContextKeyPayload>(
            Get,
            "/api/claude/sessions/{id}/context/{key}",
            "getContextKey",
            "context",
            "One context key (`value`); 404 context_key_not_found when unset",
            key_params(),
            None,
            200,
            &[400, 404],
        );
        let put = self.schema::<ContextPutBody>();
        self.json::<ContextKeyPayload>(
            Put,
            "/api/claude/sessions/{id}/context/{key}",
            "putContextKey",
            "context",
            "Set a context key (`value`, and `previous`: null when it was unset)",
            key_params(),
            Some(put),
            200,
            &[404, 409, 422],
        );
        self.json::<ContextKeyPayload>(
            Delete,
            "/api/claude/sessions/{id}/context/{key}",
            "deleteContextKey",
            "context",
            "Remove a context key (`previous`); 404 context_key_not_found when unset",
            key_params(),
            None,
            200,
            &[400, 404, 409],
        );

        // Server-wide under /api/claude.
        self.json::<EventsPage>(
            Get,
            "/api/claude/events",
            "listEvents",
            "events",
            "The event log after a seq, oldest first",
            vec![
                query(
                    "since",
                    integer(0, None),
                    "Only events with a higher seq (default 0)",
                ),
                query(
                    "session_id",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                            utoipa::openapi::KnownFormat::Uuid,
                        )))
                        .into(),
                    "Only this session's events",
                ),
                query(
                    "limit",
                    integer(1, Some(MAX_LIMIT)),
                    "Page size (default 100)",
                ),
            ],
            None,
            200,
            &[400],
        );
        self.json::<AnalyticsPayload>(
            Get,
            "/api/claude/analytics",
            "analytics",
            "system",
            "Counts over every session and agent",
            vec![],
            None,
            200,
            &[],
        );
        let validate = self.schema::<ValidatePathBody>();
        self.json::<ValidatePathPayload>(
            Post,
            "/api/claude/validate-path",
            "validatePath",
            "paths",
            "Validate a working directory; a refused path is a 200 with valid: false",
            vec![],
            Some(validate),
            200,
            &[422],
        );
        let many = self.schema::<ValidatePathsBody>();
        self.json::<ValidatePathsPayload>(
            Post,
            "/api/claude/validate-paths",
            "validatePaths",
            "paths",
            "Validate 1 to 1000 paths at once",
            vec![],
            Some(many),
            200,
            &[],
        );
        self.json::<AgentTypesPayload>(
            Get,
            "/api/claude/agent-types",
            "agentTypes",
            "agents",
            "The twelve agent types keyed by their default agent name",
            vec![],
            None,
            200,
            &[],
        );
        self.json::<SystemStatusPayload>(
            Get,
            "/api/claude/system-status",
            "systemStatus",
            "system",
            "Uptime, session analytics, monitoring, agents and the host's load",
            vec![],
            None,
            200,
            &[],
        );
    }

    /// `POST /sessions`: the session configuration with `tags`, `strategy` and
    /// `create_if_missing` besides (the handler takes those three out, then parses the rest
    /// as a `SessionConfig`, unknown keys refused).
    fn create_session_schema(&mut self) -> RefOr<Schema> {
        self.schema::<SessionConfig>();
        let mut schema = SessionConfig::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object.properties.insert(
                "tags".into(),
                ArrayBuilder::new()
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .into(),
            );
            object.properties.insert(
                "strategy".into(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["one_for_one", "rest_for_one", "one_for_all"]))
                    .default(Some(json!("one_for_one")))
                    .into(),
            );
            object.properties.insert(
                "create_if_missing".into(),
                ObjectBuilder::new()
                    .schema_type(Type::Boolean)
                    .default(Some(json!(true)))
                    .into(),
            );
        }
        self.schemas.insert("CreateSession".into(), schema);
        Ref::from_schema_name("CreateSession").into()
    }
}

/// The `Success` part of every success envelope.
fn success() -> RefOr<Schema> {
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

fn json_response(description: &str, schema: RefOr<Schema>) -> utoipa::openapi::Response {
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
const STORES: &[&str] = &[
    "createSession",
    "importSession",
    "updateSession",
    "deleteSession",
    "navigateSession",
    "cloneSession",
    "hookEvent",
    "putContextKey",
    "deleteContextKey",
];

/// `/health`'s 503: its own payload (`status: unhealthy`, storage cannot write), or the
/// failure envelope (shutting down).
fn unhealthy_response(ok: &utoipa::openapi::Response) -> utoipa::openapi::Response {
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
fn failure(status: u16) -> utoipa::openapi::Response {
    let description = match status {
        400 => "Bad request: malformed JSON (with its position), an unknown or invalid field or query parameter (details.field), a path segment that is not UTF-8 (session_validation_error); an HTTP/1.1 request without Host, Content-Length with Transfer-Encoding, an unparsable request (bad_request)",
        401 => "Missing or wrong bearer token (when server.token is set)",
        403 => "Forbidden Host or Origin, or a custom agent command while agents.allow_custom_commands is off",
        404 => "session_not_found, agent_not_found or context_key_not_found",
        409 => "The session ended or changed under the request (conflict)",
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
fn session_links(mut response: ResponseBuilder) -> ResponseBuilder {
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

fn path_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
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

fn id_param() -> utoipa::openapi::path::Parameter {
    path_param(
        "id",
        "The session's id (a UUID; anything else names no session: 404)",
    )
}

fn name_param() -> utoipa::openapi::path::Parameter {
    path_param("name", "The agent's name, percent-encoded")
}

fn key_param() -> utoipa::openapi::path::Parameter {
    path_param(
        "key",
        "The context key, percent-encoded (a%2Fb is the key a/b)",
    )
}

/// An integer schema from `min`, up to `max` when there is one.
fn integer(min: u64, max: Option<usize>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(min))
        .maximum(max.map(|m| m as f64))
        .into()
}

fn query(name: &str, schema: RefOr<Schema>, description: &str) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .schema(Some(schema))
        .description(Some(description))
        .build()
}

fn list_parameters() -> Vec<utoipa::openapi::path::Parameter> {
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
