//! The route table: each route with its parameters, request body, success payload and the
//! error statuses it can answer. Every route of `api::routes` has its row here
//! (`tests/api/main.rs` checks it).

use serde_json::json;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::PartialSchema;

use super::parts::{
    id_param, integer, json_response, key_param, list_parameters, name_param, query,
};
use super::{Doc, SESSION};
use crate::agent::RING_LINES;
use crate::api::claude::ActivityPayload;
use crate::api::dto::requests::{
    CloneBody, ContextPutBody, ExportBody, ImportBody, NavigateBody, UpdateBody, ValidatePathBody,
    ValidatePathsBody,
};
use crate::api::dto::Health;
use crate::api::events::{EventsPage, MAX_LIMIT};
use crate::api::schemas::SessionConfigSchema as SessionConfig;
use crate::api::sessions::{
    AgentCommandPayload, AgentsPayload, ContextKeyPayload, ContextPayload, ExportPayload,
    GetPayload, HookAccepted, ListPayload, LogsPayload, MetricsPayload, SessionPayload,
    SessionWithValidation, StatusPayload,
};
use crate::api::system::{
    AgentTypesPayload, AnalyticsPayload, SystemStatusPayload, ValidatePathPayload,
    ValidatePathsPayload,
};
use crate::api::terminal::{InputBody, InputPayload, ResizeBody, ResizePayload, ScreenPayload};
use crate::api::usage::UsagePayload;

impl Doc {
    pub(super) fn routes(&mut self) {
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
        for (signal, id, what) in [
            ("metrics", "exportMetrics", "ExportMetricsServiceRequest"),
            ("logs", "exportLogs", "ExportLogsServiceRequest"),
        ] {
            let otlp = |kind: &str| {
                ContentBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Object)
                            .description(Some(format!("An OTLP {kind} (opentelemetry-proto)"))),
                    ))
                    .build()
            };
            self.route(
                Post,
                &format!("/v1/{signal}"),
                id,
                "telemetry",
                &format!(
                    "OTLP/HTTP receiver of Claude Code's {signal} ({what} as \
                     application/x-protobuf or application/json, gzip allowed)"
                ),
                vec![],
                Some(RefOr::T(
                    ObjectBuilder::new()
                        .schema_type(Type::Object)
                        .description(Some(what))
                        .into(),
                )),
                (
                    "200",
                    ResponseBuilder::new()
                        .description("Accepted; partial_success counts the refused datapoints")
                        .content("application/json", otlp("Export…ServiceResponse"))
                        .content("application/x-protobuf", otlp("Export…ServiceResponse"))
                        .build(),
                ),
                &[413, 415],
            );
        }
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

        self.route(
            Get,
            "/ws/sessions/{id}/agents/{name}/terminal",
            "attachTerminal",
            "terminals",
            "Attach to an agent's terminal: the scrollback then live output as binary frames; \
             binary or text frames are input, a text frame {\"type\":\"resize\",\"rows\":R,\"cols\":C} \
             resizes; closing detaches (the agent runs on)",
            vec![id_param(), name_param()],
            None,
            (
                "101",
                ResponseBuilder::new()
                    .description("Switched to the WebSocket protocol")
                    .build(),
            ),
            &[400, 404, 409],
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
        self.json::<UsagePayload>(
            Get,
            "/api/claude/sessions/{id}/usage",
            "sessionUsage",
            "sessions",
            "Cost, tokens, lines, commits and pull requests of a session's Claude Code, from its \
             OpenTelemetry (source otel), else its transcripts (source transcript)",
            vec![id_param()],
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

        // Terminals.
        let input = self.schema::<InputBody>();
        self.json::<InputPayload>(
            Post,
            "/api/claude/sessions/{id}/agents/{name}/input",
            "terminalInput",
            "terminals",
            "Type into an agent's terminal (submit: press Enter after the text); 409 \
             no_terminal for an agent without one, agent_not_running while no process runs, \
             input_not_read when the program leaves its input unread for 5 s",
            vec![id_param(), name_param()],
            Some(input),
            200,
            &[400, 404, 409, 415],
        );
        self.json::<ScreenPayload>(
            Get,
            "/api/claude/sessions/{id}/agents/{name}/screen",
            "terminalScreen",
            "terminals",
            "An agent's screen as its terminal emulator holds it (the last one after an exit); \
             409 no_terminal for an agent without a terminal",
            vec![id_param(), name_param()],
            None,
            200,
            &[400, 404, 409],
        );
        let resize = self.schema::<ResizeBody>();
        self.json::<ResizePayload>(
            Post,
            "/api/claude/sessions/{id}/agents/{name}/resize",
            "terminalResize",
            "terminals",
            "Resize an agent's terminal (the program gets SIGWINCH; the next start keeps the \
             size); 409 no_terminal for an agent without one",
            vec![id_param(), name_param()],
            Some(resize),
            200,
            &[400, 404, 409, 415],
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

        // Claude Code's own surface.
        let payload = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "hook_event_name",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(128)),
            )
            .property("session_id", ObjectBuilder::new().schema_type(Type::String))
            .property("cwd", ObjectBuilder::new().schema_type(Type::String))
            .property(
                "transcript_path",
                ObjectBuilder::new().schema_type(Type::String),
            )
            .required("hook_event_name")
            .description(Some(
                "A Claude Code hook payload as Claude Code posts it; every key is kept",
            ))
            .into();
        self.route(
            Post,
            "/api/claude/hooks",
            "claudeHook",
            "claude",
            "Take a Claude Code hook (its `http` hooks post here): attributed to a session \
             (the conversation of a Claude agent, the x-session-manager-session header, the \
             longest working directory holding its cwd), its Claude session's state moved, \
             both stored and announced. 200 with an empty body: Claude Code proceeds unchanged",
            vec![],
            Some(payload),
            (
                "200",
                ResponseBuilder::new()
                    .description(
                        "Taken; empty body. Headers: x-session-manager-session (the session \
                         it was attributed to, absent when none), x-claude-state (its Claude \
                         session's state after it)",
                    )
                    .build(),
            ),
            &[400, 413],
        );
        self.json::<ActivityPayload>(
            Get,
            "/api/claude/activity",
            "claudeActivity",
            "claude",
            "Every Claude Code session the hooks told of, attributed or not, most recent first",
            vec![],
            None,
            200,
            &[],
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
