//! The session routes under `/api/claude/sessions`: each handler parses, calls one
//! [`SessionRegistry`](crate::session::SessionRegistry) method and shapes the answer.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::agent::{AgentStatus, LogLine, RING_LINES};
use crate::monitor::{summarize, thin, SessionSample, Summary as Figures, MAX_POINTS};
use crate::paths::Validation;
use crate::session::{select, AgentOp, SessionQuery, SessionView, Snapshot};
use crate::supervision::ChildState;

use super::dto::monitor::{self, ActivityObject, AlertObject, MetricsPoint};
use super::dto::requests::{
    self, CloneBody, ContextPutBody, ExportBody, ImportBody, NavigateBody, UpdateBody,
};
use super::dto::session::{running, seconds, statuses, AgentObject, SessionObject};
use super::envelope;
use super::errors::ApiError;
use super::ApiContext;

/// A handler's outcome: a payload with its status, or an error for the envelope.
pub(crate) type Answer = Result<Response, ApiError>;

/// A body or query as read: once a route's path and method matched, a malformed request is
/// the handler's to answer (400, 413, 415), not a rejection another route could mask.
pub(crate) type Parsed<T> = Result<T, ApiError>;

/// Turns an answer into a response.
pub(crate) fn reply(answer: Answer) -> Response {
    answer.unwrap_or_else(|error| envelope::failure(&error))
}

fn ok<T: Serialize>(payload: &T) -> Answer {
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
                .with_activity(&ctx.monitor.activity(view.record.id)),
        },
    ))
}

/// `POST /sessions`.
pub(crate) async fn create(ctx: ApiContext, body: Parsed<Map<String, Value>>) -> Answer {
    let body = body?;
    let request = requests::create_session(body)?;
    let view = ctx.sessions.create(request).await?;
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
    let records = ctx.sessions.list().await?;
    let page = select(records.iter(), &query);
    // Each session's live agents, and its directory's validation (one batch: a repository
    // shared by several sessions is read once).
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
    let validations = ctx
        .paths
        .validate_many(
            views
                .iter()
                .map(|v| v.record.configuration.working_directory.clone())
                .collect(),
        )
        .await
        .validations;
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
                SessionObject::of(view, Some(validation))
                    .with_sample(sample.as_deref())
                    .with_activity(&ctx.monitor.activity(view.record.id))
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
    let version = (ctx.sessions.bus().changes(id), ctx.monitor.version());
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
            .with_activity(&ctx.monitor.activity(id)),
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

/// `GET /sessions/{id}/metrics?hours=N`.
pub(crate) async fn metrics(
    ctx: ApiContext,
    id: String,
    params: Parsed<BTreeMap<String, String>>,
) -> Answer {
    let params = params?;
    let mut hours = 1.0;
    for (key, value) in &params {
        match key.as_str() {
            "hours" => hours = hours_param(value)?,
            other => return Err(unknown_parameter(other)),
        }
    }
    let view = ctx.sessions.get(session_id(&id)?).await?;
    let points = history(&ctx, &view, hours).await?;
    let now = seconds(std::time::SystemTime::now());
    let summary = summary(&ctx, &view, hours, summarize(&points, now));
    ok(&MetricsPayload {
        session_id: view.record.id.to_string(),
        metrics: thin(points, MAX_POINTS)
            .iter()
            .map(monitor::point)
            .collect(),
        summary,
        hours,
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MetricsPayload {
    session_id: String,
    /// The monitor's samples over the window, oldest first, thinned to at most `MAX_POINTS`.
    metrics: Vec<MetricsPoint>,
    summary: Summary,
    hours: f64,
}

/// A session's metrics summary: the original's keys, ours added.
#[derive(Serialize, ToSchema)]
pub(crate) struct Summary {
    session_id: String,
    #[schema(value_type = crate::api::schemas::SessionStatusSchema)]
    status: &'static str,
    duration_hours: f64,
    hours: f64,
    /// Samples in the window.
    total_data_points: usize,
    latest_metrics: LatestMetrics,
    /// Null without a sample in the last hour.
    averages_last_hour: Option<Averages>,
    peak_cpu_percent: Option<f64>,
    peak_memory_mb: Option<f64>,
    peak_agent_memory_mb: Option<f64>,
    agent_restarts: u64,
    /// Agents in `failed`.
    errors: usize,
    /// Failed tool uses (hooks) and agent restarts in the last hour: the `error_rate` line's
    /// value.
    errors_last_hour: f64,
    /// What the session's hook events counted.
    activity: ActivityObject,
    /// The monitor's open alerts about this session.
    open_alerts: usize,
}

/// The monitor's latest sample, or what the agents report before the first one.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum LatestMetrics {
    Sampled(MetricsPoint),
    Live(LiveMetrics),
}

/// A session's figures before the monitor sampled it.
#[derive(Serialize, ToSchema)]
// Only these keys: a sample (which has them all and more) must not match this shape too.
#[serde(deny_unknown_fields)]
pub(crate) struct LiveMetrics {
    timestamp: f64,
    memory_usage_mb: f64,
    /// Null: not sampled yet.
    cpu_usage_percent: Option<f64>,
    agents_running: usize,
    agents_total: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Averages {
    cpu_usage_percent: Option<f64>,
    memory_usage_mb: Option<f64>,
    data_points: usize,
}

/// The monitor's stored samples of a session over the last `hours`.
async fn history(
    ctx: &ApiContext,
    view: &SessionView,
    hours: f64,
) -> Result<Vec<SessionSample>, ApiError> {
    let since = seconds(std::time::SystemTime::now()) - hours * 3600.0;
    ctx.monitor
        .history(view.record.id, since)
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading the metrics history failed");
            ApiError::Internal
        })
}

/// The summary figures of a session's stored samples over the last `hours`, computed by
/// the database (the routes that only show the summary never read the samples out).
async fn figures(ctx: &ApiContext, view: &SessionView, hours: f64) -> Result<Figures, ApiError> {
    ctx.monitor
        .summary(view.record.id, hours)
        .await
        .map_err(|error| {
            tracing::error!(%error, "reading the metrics summary failed");
            ApiError::Internal
        })
}

/// The metrics summary of a session: its age, the figures of the monitor's samples over
/// `hours` and its latest one, its agents' restarts and failures. Keys of the original,
/// ours added.
fn summary(ctx: &ApiContext, view: &SessionView, hours: f64, figures: Figures) -> Summary {
    let record = &view.record;
    let now = seconds(std::time::SystemTime::now());
    let end = record.terminated_at.unwrap_or(now);
    let latest = ctx.monitor.latest(record.id);
    let restarts: u64 = view.agents.iter().map(|a| a.restarts).sum();
    let failed = view
        .agents
        .iter()
        .filter(|a| a.state == ChildState::Failed)
        .count();
    let live_memory = view
        .agents
        .iter()
        .filter_map(|a| a.live.memory_mb)
        .fold(0.0, |sum, mb| sum + mb);
    let latest_metrics = match latest.as_deref() {
        Some(sample) => LatestMetrics::Sampled(monitor::point(sample)),
        None => LatestMetrics::Live(LiveMetrics {
            timestamp: now,
            memory_usage_mb: live_memory,
            cpu_usage_percent: None,
            agents_running: running(&view.agents).count(),
            agents_total: view.agents.len(),
        }),
    };
    let averages = (figures.points_last_hour > 0).then_some(Averages {
        cpu_usage_percent: figures.average_cpu_percent,
        memory_usage_mb: figures.average_memory_mb,
        data_points: figures.points_last_hour,
    });
    Summary {
        session_id: record.id.to_string(),
        status: record.status.as_str(),
        duration_hours: ((end - record.created_at) / 3600.0).max(0.0),
        hours,
        total_data_points: figures.total_data_points,
        latest_metrics,
        averages_last_hour: averages,
        peak_cpu_percent: figures.peak_cpu_percent,
        peak_memory_mb: figures.peak_memory_mb,
        peak_agent_memory_mb: figures.peak_agent_memory_mb,
        agent_restarts: restarts,
        errors: failed,
        errors_last_hour: ctx.monitor.error_rate(record.id),
        activity: monitor::activity(&ctx.monitor.activity(record.id)),
        open_alerts: ctx.monitor.open_alerts(Some(record.id)).len(),
    }
}

/// `GET /sessions/{id}/status`.
pub(crate) async fn status(ctx: ApiContext, id: String) -> Answer {
    let view = ctx.sessions.get(session_id(&id)?).await?;
    let figures = figures(&ctx, &view, 1.0).await?;
    let mut alerts = failed_alerts(&view.agents);
    alerts.extend(
        ctx.monitor
            .open_alerts(Some(view.record.id))
            .iter()
            .map(|alert| OpenAlert::Resource(monitor::alert(alert, None))),
    );
    let health = health(&alerts);
    let record = &view.record;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for agent in &view.agents {
        *counts.entry(agent.state.as_str()).or_default() += 1;
    }
    ok(&StatusPayload {
        session_id: record.id.to_string(),
        status: record.status.as_str(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        last_activity: record.last_activity,
        working_directory: &record.configuration.working_directory,
        error_message: record.error_message.as_deref(),
        active_agents: running(&view.agents).collect(),
        agent_statuses: statuses(&view.agents),
        agent_counts: counts,
        health,
        metrics: summary(&ctx, &view, 1.0, figures),
        alerts,
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusPayload<'a> {
    session_id: String,
    #[schema(value_type = crate::api::schemas::SessionStatusSchema)]
    status: &'static str,
    created_at: f64,
    updated_at: f64,
    last_activity: f64,
    working_directory: &'a str,
    error_message: Option<&'a str>,
    active_agents: Vec<&'a str>,
    agent_statuses: BTreeMap<&'a str, &'static str>,
    /// Agents per state.
    agent_counts: BTreeMap<&'a str, usize>,
    /// `critical` with a critical alert open, `degraded` with any other (a failed agent is
    /// one), else `healthy`.
    health: &'static str,
    metrics: Summary,
    /// Failed agents first, then the monitor's open resource alerts.
    alerts: Vec<OpenAlert>,
}

/// An open alert: a failed agent, or one of the monitor's resource alerts.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum OpenAlert {
    Agent(AgentAlert),
    Resource(AlertObject),
}

impl OpenAlert {
    fn severity(&self) -> &'static str {
        match self {
            OpenAlert::Agent(alert) => alert.severity,
            OpenAlert::Resource(alert) => alert.severity(),
        }
    }
}

/// A failed agent as an alert.
#[derive(Serialize, ToSchema)]
pub(crate) struct AgentAlert {
    /// `agent_failed`.
    kind: &'static str,
    agent: String,
    /// `critical` for the orchestrator, else `high`.
    severity: &'static str,
    message: String,
    since: f64,
}

/// `critical` with a critical alert open, `degraded` with any other alert (a failed agent
/// is one), else `healthy`.
fn health(alerts: &[OpenAlert]) -> &'static str {
    if alerts.iter().any(|a| a.severity() == "critical") {
        "critical"
    } else if alerts.is_empty() {
        "healthy"
    } else {
        "degraded"
    }
}

/// Every failed agent, as an open alert (the monitor's resource alerts are added to them).
fn failed_alerts(agents: &[AgentStatus]) -> Vec<OpenAlert> {
    agents
        .iter()
        .filter(|a| a.state == ChildState::Failed)
        .map(|a| {
            OpenAlert::Agent(AgentAlert {
                kind: "agent_failed",
                agent: a.name.clone(),
                severity: if a.agent_type == crate::agent::AgentType::Orchestrator {
                    "critical"
                } else {
                    "high"
                },
                message: a
                    .live
                    .last_error
                    .clone()
                    .unwrap_or_else(|| format!("agent {} failed", a.name)),
                since: seconds(a.since),
            })
        })
        .collect()
}

/// `GET /sessions/{id}/context`.
pub(crate) async fn context_all(ctx: ApiContext, id: String) -> Answer {
    let id = session_id(&id)?;
    let entries = ctx.sessions.context(id).await?;
    let context: Map<String, Value> = entries.into_iter().collect();
    ok(&ContextPayload {
        session_id: id.to_string(),
        context,
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ContextPayload {
    session_id: String,
    /// Every key with its value.
    #[schema(value_type = Object)]
    context: Map<String, Value>,
}

/// One context key: `value` (get, put), `previous` (put, delete; null when it was unset).
#[derive(Serialize, ToSchema)]
pub(crate) struct ContextKeyPayload {
    session_id: String,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Option<Value>>,
}

/// `GET /sessions/{id}/context/{key}`: 404 `context_key_not_found` when unset.
pub(crate) async fn context_get(ctx: ApiContext, id: String, key: String) -> Answer {
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    match ctx.sessions.context_get(id, &key).await? {
        Some(value) => ok(&ContextKeyPayload {
            session_id: id.to_string(),
            key,
            value: Some(value),
            previous: None,
        }),
        None => Err(ApiError::ContextKeyNotFound(format!(
            "session {id} has no context key `{key}`"
        ))),
    }
}

/// `PUT /sessions/{id}/context/{key}` with `{"value": …}`.
pub(crate) async fn context_put(
    ctx: ApiContext,
    id: String,
    key: String,
    body: Parsed<ContextPutBody>,
) -> Answer {
    let body = body?;
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    let previous = ctx
        .sessions
        .context_put(id, &key, body.value.clone())
        .await?;
    ok(&ContextKeyPayload {
        session_id: id.to_string(),
        key,
        value: Some(body.value),
        previous: Some(previous),
    })
}

/// `DELETE /sessions/{id}/context/{key}`.
pub(crate) async fn context_delete(ctx: ApiContext, id: String, key: String) -> Answer {
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    match ctx.sessions.context_delete(id, &key).await? {
        Some(previous) => ok(&ContextKeyPayload {
            session_id: id.to_string(),
            key,
            value: None,
            previous: Some(Some(previous)),
        }),
        None => Err(ApiError::ContextKeyNotFound(format!(
            "session {id} has no context key `{key}`"
        ))),
    }
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

fn hours_param(value: &str) -> Result<f64, ApiError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|h| h.is_finite() && *h > 0.0 && *h <= 24.0 * 366.0)
        .ok_or_else(|| {
            ApiError::invalid("hours", "hours must be a number above 0 and at most 8784")
        })
}

/// Longest `hook_event_name` accepted.
const MAX_HOOK_NAME_CHARS: usize = 128;

/// `POST /sessions/{id}/events`: a Claude Code hook payload, extra fields tolerated (Claude
/// Code sends more than we read); `hook_event_name` is required. 202: it is announced on the
/// event bus, and counted by the monitor.
pub(crate) async fn hook_event(
    ctx: ApiContext,
    id: String,
    body: Parsed<Map<String, Value>>,
) -> Answer {
    let body = body?;
    let id = session_id(&id)?;
    let name = match body.get("hook_event_name") {
        Some(Value::String(name))
            if !name.is_empty() && name.chars().count() <= MAX_HOOK_NAME_CHARS =>
        {
            name.clone()
        }
        Some(_) => {
            return Err(ApiError::invalid(
                "hook_event_name",
                format!(
                    "hook_event_name must be a string of 1 to {MAX_HOOK_NAME_CHARS} characters"
                ),
            ))
        }
        None => {
            return Err(ApiError::invalid(
                "hook_event_name",
                "hook_event_name is required",
            ))
        }
    };
    ctx.sessions
        .hook_event(id, name.clone(), Value::Object(body))
        .await?;
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
