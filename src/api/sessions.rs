//! The session routes under `/api/claude/sessions`: each handler parses, calls one
//! [`SessionRegistry`](crate::session::SessionRegistry) method and shapes the answer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::agent::{LogLine, RING_LINES};
use crate::paths::Validation;
use crate::session::{select, AgentOp, SessionQuery, SessionView, Snapshot};

use super::dto::claude::ClaudeSessionObject;
use super::dto::requests::{self, CloneBody, ExportBody, ImportBody, NavigateBody, UpdateBody};
use super::dto::session::{running, statuses, AgentObject, SessionObject};
use super::envelope;
use super::errors::ApiError;
use super::ApiContext;

mod context;
mod listing;
mod metrics;

pub(crate) use context::{
    context_all, context_delete, context_get, context_put, ContextKeyPayload, ContextPayload,
};
pub(crate) use listing::Listing;
use metrics::{figures, summary, Summary};
pub(crate) use metrics::{metrics, status, MetricsPayload, StatusPayload};

/// A handler's outcome: a payload with its status, or an error for the envelope.
pub(crate) type Answer = Result<Response, ApiError>;

/// A body or query as read: once a route's path and method matched, a malformed request is
/// the handler's to answer (400, 413, 415), not a rejection another route could mask.
pub(crate) type Parsed<T> = Result<T, ApiError>;

/// Turns an answer into a response.
pub(crate) fn reply(answer: Answer) -> Response {
    answer.unwrap_or_else(|error| envelope::failure(&error))
}

pub(crate) fn ok<T: Serialize>(payload: &T) -> Answer {
    Ok(envelope::success(StatusCode::OK, payload))
}

/// A path segment as the client meant it: percent-decoded (`a%2Fb` is the key `a/b`,
/// `%C3%A9` is `é`); bytes that decode to no UTF-8 text are refused, naming `field`.
pub(crate) fn segment(raw: &str, field: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|text| text.into_owned())
        .map_err(|_| ApiError::invalid(field, format!("{field} is not UTF-8 once percent-decoded")))
}

/// A path segment as a session id; anything else names no session.
pub(crate) fn session_id(raw: &str) -> Result<Uuid, ApiError> {
    if let Ok(id) = Uuid::parse_str(raw) {
        // Nothing percent-encoded in a UUID's text: no decoding to do.
        return Ok(id);
    }
    let raw = segment(raw, "id")?;
    Uuid::parse_str(&raw).map_err(|_| {
        ApiError::SessionNotFound(format!("session {raw} not found (session ids are UUIDs)"))
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionPayload<'a> {
    session: SessionObject<'a>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionWithValidation<'a> {
    session: SessionObject<'a>,
    validation: &'a Validation,
}

/// `{session}` with a fresh validation of its working directory.
async fn session_answer(ctx: &ApiContext, view: &SessionView, status: StatusCode) -> Answer {
    let validation = ctx
        .paths
        .validate(&view.record.configuration.working_directory)
        .await;
    let sample = ctx.monitor.latest(view.record.id);
    Ok(envelope::success(
        status,
        &SessionPayload {
            session: SessionObject::of(view, Some(&validation))
                .with_sample(sample.as_deref())
                .with_activity(&ctx.monitor.activity(view.record.id))
                .with_claude(claude_sessions(ctx, view.record.id)),
        },
    ))
}

/// The Claude Code sessions of `session`, as its object lists them.
fn claude_sessions(ctx: &ApiContext, session: Uuid) -> Vec<ClaudeSessionObject> {
    ctx.claude
        .of_session(session)
        .iter()
        .map(|activity| ClaudeSessionObject::new(activity, &ctx.claude))
        .collect()
}

/// `POST /sessions`.
pub(crate) async fn create(ctx: ApiContext, body: Parsed<Map<String, Value>>) -> Answer {
    let body = body?;
    let request = requests::create_session(body)?;
    let view = ctx.sessions.create(request).await?;
    ctx.auto_install_hooks(&view.record.configuration.working_directory)
        .await;
    session_answer(&ctx, &view, StatusCode::CREATED).await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ListPayload<'a> {
    sessions: Vec<SessionObject<'a>>,
    total: usize,
    limit: usize,
    offset: usize,
    /// The query parameters as given.
    filter: &'a BTreeMap<String, String>,
}

/// `GET /sessions`: every filter of `SessionQuery`; `total` counts all matches.
pub(crate) async fn list(ctx: ApiContext, params: Parsed<BTreeMap<String, String>>) -> Answer {
    let params = params?;
    let query = SessionQuery::parse(&params).map_err(crate::session::SessionError::from)?;
    // Unsorted: `select` orders what it keeps.
    let rows = ctx.listing.rows(&ctx.sessions).await?;
    let page = select(&rows, &query);
    // Each session's live agents, and its directory's validation (at most
    // `paths.listing_cache_ms` old; a directory shared by several sessions is read once).
    let views = futures::future::join_all(page.items.iter().map(|record| async {
        match ctx.sessions.get(record.id).await {
            Ok(view) => view,
            // Purged between the list and now: shown as listed, without agents.
            Err(_) => SessionView {
                record: (*record).clone(),
                agents: Vec::new(),
            },
        }
    }))
    .await;
    let directories: Vec<&str> = views
        .iter()
        .map(|v| v.record.configuration.working_directory.as_str())
        .collect();
    let validations = ctx.paths.validate_listed(&directories).await;
    let samples: Vec<_> = views
        .iter()
        .map(|v| ctx.monitor.latest(v.record.id))
        .collect();
    ok(&ListPayload {
        sessions: views
            .iter()
            .zip(&validations)
            .zip(&samples)
            .map(|((view, validation), sample)| {
                SessionObject::of(view, Some(&**validation))
                    .with_sample(sample.as_deref())
                    .with_activity(&ctx.monitor.activity(view.record.id))
                    .with_claude(claude_sessions(&ctx, view.record.id))
            })
            .collect(),
        total: page.total,
        limit: query.limit,
        offset: query.offset,
        filter: &params,
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct GetPayload<'a> {
    session: SessionObject<'a>,
    monitoring: Summary,
    agent_statuses: BTreeMap<&'a str, &'static str>,
}

/// `GET /sessions/{id}`.
pub(crate) async fn get(ctx: ApiContext, id: String) -> Answer {
    get_session(ctx, session_id(&id)?).await
}

/// `GET /sessions/{id}` of an id already parsed. The answer is kept until the session
/// changes (see `answers`): read first, the versions tag what is built after them.
pub(crate) async fn get_session(ctx: ApiContext, id: Uuid) -> Answer {
    let version = (
        ctx.sessions.bus().changes(id),
        ctx.monitor.version().wrapping_add(ctx.claude.version()),
    );
    if let Some(data) = ctx.answers.fresh(id, version) {
        return Ok(envelope::success_of(StatusCode::OK, &data));
    }
    let view = ctx.sessions.get(id).await?;
    let validation = ctx
        .paths
        .validate(&view.record.configuration.working_directory)
        .await;
    let sample = ctx.monitor.latest(id);
    let figures = figures(&ctx, &view, 1.0).await?;
    let data = envelope::payload_bytes(&GetPayload {
        session: SessionObject::of(&view, Some(&validation))
            .with_sample(sample.as_deref())
            .with_activity(&ctx.monitor.activity(id))
            .with_claude(claude_sessions(&ctx, id)),
        monitoring: summary(&ctx, &view, 1.0, figures),
        agent_statuses: statuses(&view.agents),
    })
    .map_err(|error| {
        tracing::error!(%error, "cannot serialize a session");
        ApiError::Internal
    })?;
    let data = bytes::Bytes::from(data);
    ctx.answers.keep(id, version, data.clone());
    Ok(envelope::success_of(StatusCode::OK, &data))
}

/// `PUT /sessions/{id}`.
pub(crate) async fn update(ctx: ApiContext, id: String, body: Parsed<UpdateBody>) -> Answer {
    let body = body?;
    let view = ctx.sessions.update(session_id(&id)?, body.into()).await?;
    // A new budget may raise or resolve a `cost_budget` alert.
    super::usage::check_budget(&ctx, &view);
    session_answer(&ctx, &view, StatusCode::OK).await
}

/// `DELETE /sessions/{id}[?purge=true]`.
pub(crate) async fn delete(
    ctx: ApiContext,
    id: String,
    params: Parsed<BTreeMap<String, String>>,
) -> Answer {
    let params = params?;
    let mut purge = false;
    for (name, value) in &params {
        match name.as_str() {
            "purge" => purge = flag("purge", value)?,
            other => return Err(unknown_parameter(other)),
        }
    }
    let record = ctx.sessions.terminate(session_id(&id)?, purge).await?;
    let view = SessionView {
        record,
        agents: Vec::new(),
    };
    ok(&SessionPayload {
        session: SessionObject::of(&view, None),
    })
}

/// `POST /sessions/{id}/navigate`.
pub(crate) async fn navigate(ctx: ApiContext, id: String, body: Parsed<NavigateBody>) -> Answer {
    let body = body?;
    let (view, validation) = ctx
        .sessions
        .navigate(
            session_id(&id)?,
            &body.path,
            body.create_if_missing.unwrap_or(true),
        )
        .await?;
    ctx.auto_install_hooks(&view.record.configuration.working_directory)
        .await;
    ok(&SessionWithValidation {
        session: SessionObject::of(&view, Some(&validation)),
        validation: &validation,
    })
}

/// `POST /sessions/{id}/clone`.
pub(crate) async fn clone(ctx: ApiContext, id: String, body: Parsed<CloneBody>) -> Answer {
    let body = body?;
    let request = body.try_into()?;
    let view = ctx
        .sessions
        .clone_session(session_id(&id)?, request)
        .await?;
    session_answer(&ctx, &view, StatusCode::CREATED).await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ExportPayload<'a> {
    #[schema(value_type = super::schemas::SnapshotSchema)]
    snapshot: &'a Snapshot,
}

/// `POST /sessions/{id}/export`.
pub(crate) async fn export(ctx: ApiContext, id: String, body: Parsed<ExportBody>) -> Answer {
    let body = body?;
    let snapshot = ctx
        .sessions
        .export(session_id(&id)?, body.include_metrics)
        .await?;
    ok(&ExportPayload {
        snapshot: &snapshot,
    })
}

/// `POST /sessions/import`.
pub(crate) async fn import(ctx: ApiContext, body: Parsed<ImportBody>) -> Answer {
    let body = body?;
    let view = ctx.sessions.import(body.try_into()?).await?;
    session_answer(&ctx, &view, StatusCode::CREATED).await
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentsPayload<'a> {
    session_id: String,
    configured_agents: Vec<&'a str>,
    active_agents: Vec<&'a str>,
    agent_statuses: BTreeMap<&'a str, &'static str>,
    agents: Vec<AgentObject<'a>>,
}

/// `GET /sessions/{id}/agents`.
pub(crate) async fn agents(ctx: ApiContext, id: String) -> Answer {
    let view = ctx.sessions.get(session_id(&id)?).await?;
    ok(&AgentsPayload {
        session_id: view.record.id.to_string(),
        configured_agents: view
            .record
            .configuration
            .agents
            .iter()
            .map(|agent| agent.name.as_str())
            .collect(),
        active_agents: running(&view.agents).collect(),
        agent_statuses: statuses(&view.agents),
        agents: view.agents.iter().map(AgentObject::new).collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentCommandPayload<'a> {
    session_id: String,
    agent_name: &'a str,
    /// `activated`, `deactivated` or `restarted`.
    status: &'static str,
    agent: AgentObject<'a>,
}

/// `POST /sessions/{id}/agents/{name}/{activate|deactivate|restart}`.
pub(crate) async fn agent_command(
    ctx: ApiContext,
    id: String,
    name: String,
    op: AgentOp,
) -> Answer {
    let id = session_id(&id)?;
    let name = segment(&name, "name")?;
    let agent = ctx.sessions.agent(id, &name, op).await?;
    let status = match op {
        AgentOp::Activate => "activated",
        AgentOp::Deactivate => "deactivated",
        AgentOp::Restart => "restarted",
    };
    ok(&AgentCommandPayload {
        session_id: id.to_string(),
        agent_name: &agent.name,
        status,
        agent: AgentObject::new(&agent),
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct LogsPayload<'a> {
    session_id: String,
    agent_name: &'a str,
    tail: usize,
    lines: &'a [LogLine],
}

/// `GET /sessions/{id}/agents/{name}/logs?tail=N` (default 100, at most the ring's size).
pub(crate) async fn logs(
    ctx: ApiContext,
    id: String,
    name: String,
    params: Parsed<BTreeMap<String, String>>,
) -> Answer {
    let params = params?;
    let mut tail = 100;
    for (key, value) in &params {
        match key.as_str() {
            "tail" => tail = bounded("tail", value, 1, RING_LINES as u64)? as usize,
            other => return Err(unknown_parameter(other)),
        }
    }
    let id = session_id(&id)?;
    let name = segment(&name, "name")?;
    let lines = ctx.sessions.logs(id, &name, tail).await?;
    ok(&LogsPayload {
        session_id: id.to_string(),
        agent_name: &name,
        tail,
        lines: &lines,
    })
}

pub(crate) fn unknown_parameter(name: &str) -> ApiError {
    ApiError::invalid(name, format!("unknown query parameter `{name}`"))
}

pub(crate) fn flag(name: &str, value: &str) -> Result<bool, ApiError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(ApiError::invalid(
            name,
            format!("{name} must be true or false"),
        )),
    }
}

pub(crate) fn bounded(name: &str, value: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("{name} must be an integer from {min} to {max}"),
            )
        })
}

/// Longest `hook_event_name` accepted.
const MAX_HOOK_NAME_CHARS: usize = 128;

/// The payload's `hook_event_name`: required, a string of 1 to [`MAX_HOOK_NAME_CHARS`]
/// characters (any name: an event a newer Claude Code sends is taken all the same).
pub(crate) fn hook_name(body: &Map<String, Value>) -> Result<String, ApiError> {
    match body.get("hook_event_name") {
        Some(Value::String(name))
            if !name.is_empty() && name.chars().count() <= MAX_HOOK_NAME_CHARS =>
        {
            Ok(name.clone())
        }
        Some(_) => Err(ApiError::invalid(
            "hook_event_name",
            format!("hook_event_name must be a string of 1 to {MAX_HOOK_NAME_CHARS} characters"),
        )),
        None => Err(ApiError::invalid(
            "hook_event_name",
            "hook_event_name is required",
        )),
    }
}

/// `POST /sessions/{id}/events`: a Claude Code hook payload, extra fields tolerated (Claude
/// Code sends more than we read); `hook_event_name` is required. 202: it is announced on the
/// event bus, counted by the monitor, and moves its Claude session's activity (attributed
/// to this session).
pub(crate) async fn hook_event(
    ctx: ApiContext,
    id: String,
    body: Parsed<Map<String, Value>>,
) -> Answer {
    let body = body?;
    let id = session_id(&id)?;
    let name = hook_name(&body)?;
    ctx.sessions
        .hook_event(id, name.clone(), Value::Object(body.clone()))
        .await?;
    let hint = crate::claude::Hint {
        session: Some(id),
        agent: None,
    };
    ctx.claude.hook(name.clone(), body, hint, false).await?;
    Ok(envelope::success(
        StatusCode::ACCEPTED,
        &HookAccepted {
            accepted: true,
            session_id: id.to_string(),
            hook_event_name: name,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HookAccepted {
    accepted: bool,
    session_id: String,
    hook_event_name: String,
}
