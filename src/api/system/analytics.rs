//! `GET /analytics`: the census of every session and its live agents, and what the monitor
//! observed (hook counts, error rates, resources, trends, anomalies). The census and the
//! observations are shared with `/system-status` and `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::agent::AgentStatus;
use crate::api::dto::monitor::{self, ActivityObject};
use crate::api::dto::session::seconds;
use crate::api::errors::ApiError;
use crate::api::sessions::Answer;
use crate::api::usage::{self, ClaudeTotals};
use crate::api::{envelope, ApiContext};
use crate::monitor::{Analytics as Observations, SessionSample, TREND_HOURS};
use crate::session::{SessionRecord, SessionStatus, SessionView};
use crate::supervision::ChildState;

/// Counts over every session and its live agents.
pub(super) struct Census {
    pub(super) total: usize,
    pub(super) by_status: BTreeMap<&'static str, usize>,
    pub(super) agents_by_type: BTreeMap<&'static str, usize>,
    pub(super) agents_by_state: BTreeMap<&'static str, usize>,
    pub(super) activations: BTreeMap<String, u64>,
    pub(super) restarts: u64,
    pub(super) memory_mb: f64,
    pub(super) average_duration_seconds: f64,
}

pub(super) async fn census(ctx: &ApiContext) -> Result<(Census, Vec<SessionView>), ApiError> {
    let records = ctx.sessions.list().await?;
    let views = futures::future::join_all(records.iter().map(|record| async {
        ctx.sessions
            .get(record.id)
            .await
            .unwrap_or_else(|_| SessionView {
                record: SessionRecord::clone(record),
                agents: Vec::new(),
            })
    }))
    .await;
    let mut census = Census {
        total: views.len(),
        by_status: SessionStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
        agents_by_type: BTreeMap::new(),
        agents_by_state: ChildState::ALL.iter().map(|s| (s.as_str(), 0)).collect(),
        activations: BTreeMap::new(),
        restarts: 0,
        memory_mb: 0.0,
        average_duration_seconds: 0.0,
    };
    let now = seconds(std::time::SystemTime::now());
    let mut durations = 0.0;
    for view in &views {
        *census
            .by_status
            .entry(view.record.status.as_str())
            .or_default() += 1;
        durations += duration(&view.record, now);
        for (name, count) in &view.record.agent_activations {
            *census.activations.entry(name.clone()).or_default() += count;
        }
        for agent in &view.agents {
            count_agent(&mut census, agent);
        }
    }
    if !views.is_empty() {
        census.average_duration_seconds = durations / views.len() as f64;
    }
    Ok((census, views))
}

fn count_agent(census: &mut Census, agent: &AgentStatus) {
    *census
        .agents_by_type
        .entry(agent.agent_type.as_str())
        .or_default() += 1;
    *census
        .agents_by_state
        .entry(agent.state.as_str())
        .or_default() += 1;
    census.restarts += agent.restarts;
    census.memory_mb += agent.live.memory_mb.unwrap_or(0.0);
}

fn duration(record: &SessionRecord, now: f64) -> f64 {
    (record.terminated_at.unwrap_or(now) - record.created_at).max(0.0)
}

/// Counts over every session, the original's keys and ours.
#[derive(Serialize, ToSchema)]
pub(crate) struct Analytics<'a> {
    total_sessions: usize,
    /// Sessions initializing, active or degraded.
    active_sessions: usize,
    /// Sessions per status, every status listed.
    status_distribution: &'a BTreeMap<&'static str, usize>,
    average_duration_seconds: f64,
    /// The ten agents activated most, most first.
    most_used_agents: Vec<MostUsed<'a>>,
    last_updated: f64,
    agents_by_type: &'a BTreeMap<&'static str, usize>,
    agents_by_state: &'a BTreeMap<&'static str, usize>,
    total_agent_restarts: u64,
    total_agent_activations: u64,
    agent_memory_mb: f64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct MostUsed<'a> {
    name: &'a str,
    activations: u64,
}

pub(super) fn analytics_of(census: &Census) -> Analytics<'_> {
    let mut most_used: Vec<(&String, &u64)> = census.activations.iter().collect();
    most_used.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let active = ["initializing", "active", "degraded"]
        .iter()
        .map(|s| census.by_status.get(s).copied().unwrap_or(0))
        .sum::<usize>();
    Analytics {
        total_sessions: census.total,
        active_sessions: active,
        status_distribution: &census.by_status,
        average_duration_seconds: census.average_duration_seconds,
        most_used_agents: most_used
            .iter()
            .take(10)
            .map(|(name, count)| MostUsed {
                name,
                activations: **count,
            })
            .collect(),
        last_updated: seconds(std::time::SystemTime::now()),
        agents_by_type: &census.agents_by_type,
        agents_by_state: &census.agents_by_state,
        total_agent_restarts: census.restarts,
        total_agent_activations: census.activations.values().sum::<u64>(),
        agent_memory_mb: census.memory_mb,
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AnalyticsPayload<'a> {
    analytics: FullAnalytics<'a>,
}

/// What the monitor adds to the census: hook counts, error rates, resources, trends and
/// anomalies.
pub(super) struct Observed {
    pub(super) analytics: Observations,
    /// Errors in the last hour of each live session.
    pub(super) errors_last_hour: Vec<(Uuid, f64)>,
    /// Latest samples of the live sessions.
    pub(super) samples: Vec<Arc<SessionSample>>,
}

pub(super) async fn observe(ctx: &ApiContext, views: &[SessionView]) -> Result<Observed, ApiError> {
    let analytics = ctx.monitor.analytics().await.map_err(|error| {
        tracing::error!(%error, "reading the hook counts failed");
        ApiError::Internal
    })?;
    let live = views.iter().filter(|v| !v.record.status.is_terminal());
    let (mut errors_last_hour, mut samples) = (Vec::new(), Vec::new());
    for view in live {
        errors_last_hour.push((view.record.id, ctx.monitor.error_rate(view.record.id)));
        samples.extend(ctx.monitor.latest(view.record.id));
    }
    Ok(Observed {
        analytics,
        errors_last_hour,
        samples,
    })
}

/// `GET /analytics`' object: the census, and what the monitor observed.
#[derive(Serialize, ToSchema)]
pub(crate) struct FullAnalytics<'a> {
    #[serde(flatten)]
    census: Analytics<'a>,
    #[serde(flatten)]
    observed: ObservedAnalytics,
    /// What Claude Code's own telemetry counted, every session (and unattributed ones).
    claude: ClaudeTotals,
}

/// What the monitor adds to the analytics (ours).
#[derive(Serialize, ToSchema)]
pub(crate) struct ObservedAnalytics {
    /// Every session's hook counts.
    activity: ActivityObject,
    /// The ten tools used most.
    most_used_tools: Vec<ToolUses>,
    /// The ten command words run most (first word of each simple command).
    most_used_commands: Vec<CommandUses>,
    /// The ten files created, modified or deleted most often.
    most_used_files: Vec<FileUses>,
    error_rates: ErrorRates,
    resources: Resources,
    trends: Trends,
    /// Values of the current hour beyond the mean ± 3σ of the earlier hours.
    anomalies: Vec<AnomalyObject>,
    /// The monitor's open alerts, host and sessions.
    open_alerts: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ToolUses {
    tool: String,
    uses: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct CommandUses {
    command: String,
    uses: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct FileUses {
    path: String,
    uses: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorRates {
    /// Failed tool uses and agent restarts of the live sessions in the last hour.
    errors_last_hour: f64,
    /// `monitor.thresholds.error_rate_per_hour`.
    threshold_per_hour: f64,
    /// Live sessions over it.
    sessions_over_threshold: Vec<String>,
    /// Failed tool uses per tool use; null before the first.
    tool_error_ratio: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Resources {
    /// Null before the first sample.
    host: Option<HostResources>,
    agents: AgentResources,
    /// Live sessions with a sample.
    sampled_sessions: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct HostResources {
    cpu_percent: f64,
    memory_percent: f64,
    memory_used_mb: f64,
    memory_total_mb: f64,
    /// 1, 5 and 15 minutes.
    load_average: Vec<f64>,
}

/// Every live agent's process tree, summed, at the last sample.
#[derive(Serialize, ToSchema)]
pub(crate) struct AgentResources {
    /// 100 = one core.
    cpu_percent: f64,
    memory_mb: f64,
    processes: usize,
    threads: u64,
    open_files: u64,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Trends {
    /// From the first hour with data (at most `window_hours` ago) to the current one.
    hours: Vec<TrendHourObject>,
    window_hours: usize,
}

/// One hour: means of the samples (null without any) and the hook counts.
#[derive(Serialize, ToSchema)]
pub(crate) struct TrendHourObject {
    /// Unix seconds of its start.
    hour: i64,
    host_cpu_percent: Option<f64>,
    host_memory_percent: Option<f64>,
    agents_cpu_percent: Option<f64>,
    agents_memory_mb: Option<f64>,
    activity: ActivityObject,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AnomalyObject {
    /// The trend: `host_cpu_percent`, `agents_memory_mb`, `errors`, …
    metric: &'static str,
    value: f64,
    mean: f64,
    stddev: f64,
    /// `high` or `low`.
    direction: &'static str,
}

fn uses<T>(list: &[(String, u64)], make: fn(String, u64) -> T) -> Vec<T> {
    list.iter()
        .map(|(name, n)| make(name.clone(), *n))
        .collect()
}

/// The analytics keys the monitor adds.
fn observed_of(ctx: &ApiContext, observed: &Observed) -> ObservedAnalytics {
    let a = &observed.analytics;
    let threshold = ctx.monitor.thresholds().error_rate_per_hour;
    let errors: f64 = observed.errors_last_hour.iter().map(|(_, n)| n).sum();
    let over: Vec<String> = observed
        .errors_last_hour
        .iter()
        .filter(|(_, n)| *n > threshold)
        .map(|(id, _)| id.to_string())
        .collect();
    let agents = observed.samples.iter().flat_map(|s| s.agents.iter());
    ObservedAnalytics {
        activity: monitor::activity(&a.activity),
        most_used_tools: uses(&a.most_used_tools, |tool, uses| ToolUses { tool, uses }),
        most_used_commands: uses(&a.most_used_commands, |command, uses| CommandUses {
            command,
            uses,
        }),
        most_used_files: uses(&a.most_used_files, |path, uses| FileUses { path, uses }),
        error_rates: ErrorRates {
            errors_last_hour: errors,
            threshold_per_hour: threshold,
            sessions_over_threshold: over,
            tool_error_ratio: (a.activity.tool_uses > 0)
                .then(|| a.activity.errors as f64 / a.activity.tool_uses as f64),
        },
        resources: Resources {
            host: ctx.monitor.host().map(|h| HostResources {
                cpu_percent: h.cpu_percent,
                memory_percent: h.memory_percent,
                memory_used_mb: h.memory_used_mb,
                memory_total_mb: h.memory_total_mb,
                load_average: h.load_average.to_vec(),
            }),
            agents: AgentResources {
                cpu_percent: observed.samples.iter().map(|s| s.cpu_percent).sum(),
                memory_mb: observed.samples.iter().map(|s| s.memory_mb).sum(),
                processes: agents.clone().map(|a| a.processes).sum(),
                threads: agents.clone().map(|a| a.threads).sum(),
                open_files: agents.map(|a| a.open_files.unwrap_or(0)).sum(),
            },
            sampled_sessions: observed.samples.len(),
        },
        trends: Trends {
            hours: a
                .hours
                .iter()
                .map(|h| TrendHourObject {
                    hour: h.hour,
                    host_cpu_percent: h.host_cpu_percent,
                    host_memory_percent: h.host_memory_percent,
                    agents_cpu_percent: h.agents_cpu_percent,
                    agents_memory_mb: h.agents_memory_mb,
                    activity: monitor::activity(&h.activity),
                })
                .collect(),
            window_hours: TREND_HOURS,
        },
        anomalies: a
            .anomalies
            .iter()
            .map(|(metric, found)| AnomalyObject {
                metric,
                value: found.value,
                mean: found.mean,
                stddev: found.stddev,
                direction: if found.high { "high" } else { "low" },
            })
            .collect(),
        open_alerts: ctx.monitor.open_alert_count(),
    }
}

/// `GET /analytics`.
pub(crate) async fn analytics(ctx: ApiContext) -> Answer {
    let (census, views) = census(&ctx).await?;
    let observed = observe(&ctx, &views).await?;
    let claude = ClaudeTotals::from(&usage::totals(&ctx));
    Ok(envelope::success(
        StatusCode::OK,
        &AnalyticsPayload {
            analytics: FullAnalytics {
                census: analytics_of(&census),
                observed: observed_of(&ctx, &observed),
                claude,
            },
        },
    ))
}
