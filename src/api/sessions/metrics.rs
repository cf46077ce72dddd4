//! A session's figures: `GET /sessions/{id}/metrics` (the monitor's samples over a window,
//! thinned, and their summary) and `GET /sessions/{id}/status` (health and open alerts).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::agent::AgentStatus;
use crate::api::errors::ApiError;
use crate::api::ApiContext;
use crate::monitor::{thin, SessionSample, Summary as Figures, MAX_POINTS};
use crate::session::SessionView;
use crate::supervision::ChildState;

use crate::api::dto::monitor::{self, ActivityObject, AlertObject, MetricsPoint};
use crate::api::dto::session::{running, seconds, statuses};

use super::{ok, session_id, unknown_parameter, Answer, Parsed};

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
    // The database's figures, not the points': a stored row may stand for several samples
    // (an unchanged session is stored now and then), and the database weighs it by them.
    let figures = figures(&ctx, &view, hours).await?;
    let summary = summary(&ctx, &view, hours, figures);
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
pub(super) async fn figures(
    ctx: &ApiContext,
    view: &SessionView,
    hours: f64,
) -> Result<Figures, ApiError> {
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
pub(super) fn summary(
    ctx: &ApiContext,
    view: &SessionView,
    hours: f64,
    figures: Figures,
) -> Summary {
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

fn hours_param(value: &str) -> Result<f64, ApiError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|h| h.is_finite() && *h > 0.0 && *h <= 24.0 * 366.0)
        .ok_or_else(|| {
            ApiError::invalid("hours", "hours must be a number above 0 and at most 8784")
        })
}
