//! Server-wide routes: agent types, path validation, analytics, system status and the
//! Prometheus text of `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::agent::{AgentStatus, AgentType};
use crate::monitor::{Analytics as Observations, SessionSample, TREND_HOURS};
use crate::paths::{CheckCode, Validation};
use crate::session::{SessionRecord, SessionStatus, SessionView};
use crate::supervision::ChildState;

use super::dto::monitor::{self, ActivityObject, AlertObject};
use super::dto::requests::{ValidatePathBody, ValidatePathsBody};
use super::dto::session::seconds;
use super::errors::ApiError;
use super::sessions::{Answer, Parsed};
use super::{envelope, ApiContext};

/// Most paths one `validate-paths` request may ask about.
pub(crate) const MAX_PATHS: usize = 1000;
// The OpenAPI schema of `ValidatePathsBody` states it as a literal.
const _: () = assert!(MAX_PATHS == 1000, "update max_items of ValidatePathsBody");

/// `GET /agent-types`: the 12 types keyed by their default agent name, as the original.
pub(crate) async fn agent_types() -> Answer {
    let types: BTreeMap<&str, AgentTypeObject> = AgentType::ALL
        .iter()
        .map(|t| {
            let info = t.info();
            (
                info.default_name,
                AgentTypeObject {
                    agent_type: t.as_str(),
                    name: info.default_name,
                    description: info.description,
                    capabilities: info.capabilities,
                    priority: info.priority,
                    memory_min: info.memory_min_mb,
                    memory_max: info.memory_max_mb,
                    depends_on: info.depends_on.iter().map(|d| d.as_str()).collect(),
                },
            )
        })
        .collect();
    Ok(envelope::success(
        StatusCode::OK,
        &AgentTypesPayload {
            count: types.len(),
            agent_types: types,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentTypesPayload {
    /// Keyed by the type's default agent name.
    agent_types: BTreeMap<&'static str, AgentTypeObject>,
    count: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentTypeObject {
    #[serde(rename = "type")]
    #[schema(value_type = AgentType)]
    agent_type: &'static str,
    name: &'static str,
    description: &'static str,
    capabilities: &'static [&'static str],
    /// 0–100, lower matters more.
    priority: u8,
    /// MiB.
    memory_min: u64,
    /// MiB.
    memory_max: u64,
    #[schema(value_type = Vec<AgentType>)]
    depends_on: Vec<&'static str>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ValidatePathPayload<'a> {
    validation: &'a Validation,
    suggestions: Vec<&'static str>,
}

/// `POST /validate-path`: 200 with `valid: false` and the reasons for a refused path.
pub(crate) async fn validate_path(ctx: ApiContext, body: Parsed<ValidatePathBody>) -> Answer {
    let body = body?;
    let validation = ctx
        .sessions
        .validate_path(&body.path, body.create_if_missing)
        .await?;
    Ok(envelope::success(
        StatusCode::OK,
        &ValidatePathPayload {
            suggestions: suggestions(&validation),
            validation: &validation,
        },
    ))
}

/// What a person could do about a validation's findings.
fn suggestions(validation: &Validation) -> Vec<&'static str> {
    let advice = [
        (
            CheckCode::DoesNotExist,
            "the directory is missing: pass create_if_missing: true to create it",
        ),
        (
            CheckCode::RelativePath,
            "give an absolute path, or one starting with ~",
        ),
        (
            CheckCode::RestrictedRoot,
            "choose a directory outside the system directories, e.g. under your home directory",
        ),
        (
            CheckCode::RootDirectory,
            "choose a project directory, not the root directory",
        ),
        (
            CheckCode::OutsideAllowedRoots,
            "choose a directory under one of the server's paths.allowed_roots",
        ),
        (
            CheckCode::SymlinkEscape,
            "use the real directory instead of a symlink that leads out of the allowed places",
        ),
        (
            CheckCode::TrailingSpaceOrDot,
            "remove trailing spaces or dots from the path's components",
        ),
        (
            CheckCode::ShellMetacharacters,
            "avoid shell metacharacters in directory names; scripts may misread them",
        ),
        (
            CheckCode::NotWritable,
            "choose a directory the server's user can write to, or fix its permissions",
        ),
        (
            CheckCode::ParentNotWritable,
            "create the directory yourself, or choose a place the server's user can write to",
        ),
        (
            CheckCode::DiskSpaceLow,
            "free some disk space on this file system",
        ),
        (
            CheckCode::DiskSpaceCritical,
            "free disk space on this file system before working there",
        ),
        (
            CheckCode::TildeUser,
            "write the home directory out in full instead of ~user",
        ),
    ];
    advice
        .iter()
        .filter(|(code, _)| validation.has(*code))
        .map(|(_, text)| *text)
        .collect()
}

/// `POST /validate-paths`: `validations` keyed by the path as given, and a summary.
pub(crate) async fn validate_paths(ctx: ApiContext, body: Parsed<ValidatePathsBody>) -> Answer {
    let body = body?;
    if body.paths.is_empty() || body.paths.len() > MAX_PATHS {
        return Err(ApiError::invalid(
            "paths",
            format!("paths must list 1 to {MAX_PATHS} paths"),
        ));
    }
    let batch = ctx.sessions.paths().validate_many(body.paths.clone()).await;
    let validations: BTreeMap<&str, &Validation> = body
        .paths
        .iter()
        .map(String::as_str)
        .zip(&batch.validations)
        .collect();
    Ok(envelope::success(
        StatusCode::OK,
        &ValidatePathsPayload {
            validations,
            results: &batch.validations,
            summary: batch.summary,
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ValidatePathsPayload<'a> {
    /// Keyed by the path as given (a path given twice appears once).
    validations: BTreeMap<&'a str, &'a Validation>,
    /// One per path given, in order.
    results: &'a [Validation],
    summary: crate::paths::BatchSummary,
}

/// Counts over every session and its live agents.
struct Census {
    total: usize,
    by_status: BTreeMap<&'static str, usize>,
    agents_by_type: BTreeMap<&'static str, usize>,
    agents_by_state: BTreeMap<&'static str, usize>,
    activations: BTreeMap<String, u64>,
    restarts: u64,
    memory_mb: f64,
    average_duration_seconds: f64,
}

async fn census(ctx: &ApiContext) -> Result<(Census, Vec<SessionView>), ApiError> {
    let records = ctx.sessions.list().await?;
    let views = futures::future::join_all(records.iter().map(|record| async {
        ctx.sessions
            .get(record.id)
            .await
            .unwrap_or_else(|_| SessionView {
                record: record.clone(),
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

fn analytics_of(census: &Census) -> Analytics<'_> {
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
struct Observed {
    analytics: Observations,
    /// Errors in the last hour of each live session.
    errors_last_hour: Vec<(Uuid, f64)>,
    /// Latest samples of the live sessions.
    samples: Vec<Arc<SessionSample>>,
}

async fn observe(ctx: &ApiContext, views: &[SessionView]) -> Result<Observed, ApiError> {
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
    Ok(envelope::success(
        StatusCode::OK,
        &AnalyticsPayload {
            analytics: FullAnalytics {
                census: analytics_of(&census),
                observed: observed_of(&ctx, &observed),
            },
        },
    ))
}

/// `GET /system-status`.
pub(crate) async fn system_status(ctx: ApiContext) -> Answer {
    let (census, views) = census(&ctx).await?;
    let running: usize = census
        .agents_by_state
        .get(ChildState::Running.as_str())
        .copied()
        .unwrap_or(0);
    let monitored = views
        .iter()
        .filter(|v| !v.record.status.is_terminal())
        .count();
    let mut host = host();
    if let Some(sample) = ctx.monitor.host() {
        host.cpu_percent = Some(sample.cpu_percent);
        host.sampled_at = Some(sample.at);
    }
    let sampler = ctx.monitor.status().await;
    let host_alerts: Vec<AlertObject> = ctx
        .monitor
        .open_alerts(None)
        .iter()
        .map(|alert| monitor::alert(alert, None))
        .collect();
    Ok(envelope::success(
        StatusCode::OK,
        &SystemStatusPayload {
            system_status: SystemStatus {
                timestamp: seconds(std::time::SystemTime::now()),
                uptime_seconds: ctx.started_at.elapsed().as_secs_f64(),
                version: env!("CARGO_PKG_VERSION"),
                sessions: analytics_of(&census),
                monitoring: Monitoring {
                    active: sampler.running,
                    restarts: sampler.restarts,
                    monitored_sessions: monitored,
                    websocket_clients: ctx.websocket_clients(),
                    samples_taken: ctx.monitor.ticks(),
                    host_alerts,
                },
                agents: AgentsSummary {
                    available_types: AgentType::ALL.len(),
                    active_agents: running,
                },
                host,
            },
        },
    ))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SystemStatusPayload<'a> {
    system_status: SystemStatus<'a>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SystemStatus<'a> {
    timestamp: f64,
    uptime_seconds: f64,
    version: &'static str,
    sessions: Analytics<'a>,
    monitoring: Monitoring,
    agents: AgentsSummary,
    host: Host,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Monitoring {
    /// Whether the sampling actor is running (false while a restart is pending, or after its
    /// supervisor gave up).
    active: bool,
    /// Restarts of the sampling actor after a crash or a kill.
    restarts: u64,
    /// Sessions not terminated.
    monitored_sessions: usize,
    websocket_clients: usize,
    /// Sampling rounds the monitor has run.
    samples_taken: u64,
    /// The monitor's open alerts about the host.
    host_alerts: Vec<AlertObject>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct AgentsSummary {
    available_types: usize,
    /// Agents running now.
    active_agents: usize,
}

/// The host's load and memory (Linux `/proc`; null where unknown).
#[derive(Serialize, ToSchema)]
pub(crate) struct Host {
    cpu_count: usize,
    load_average: Option<Vec<f64>>,
    memory_total_mb: Option<u64>,
    memory_available_mb: Option<u64>,
    memory_percent: Option<f64>,
    /// The host's CPU at the monitor's last sample (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_percent: Option<f64>,
    /// When that sample was taken, Unix seconds (absent before the first).
    #[serde(skip_serializing_if = "Option::is_none")]
    sampled_at: Option<f64>,
}

/// The host's load and memory, from `/proc` (Linux); `null` fields elsewhere.
fn host() -> Host {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load: Option<Vec<f64>> = std::fs::read_to_string("/proc/loadavg").ok().map(|text| {
        text.split_whitespace()
            .take(3)
            .filter_map(|n| n.parse().ok())
            .collect()
    });
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| {
        meminfo
            .lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|n| n.parse::<u64>().ok())
    };
    let total = kib("MemTotal:");
    let available = kib("MemAvailable:");
    let percent = match (total, available) {
        (Some(total), Some(available)) if total > 0 => {
            Some(100.0 * (total - available.min(total)) as f64 / total as f64)
        }
        _ => None,
    };
    Host {
        cpu_count: cpus,
        load_average: load,
        memory_total_mb: total.map(|k| k / 1024),
        memory_available_mb: available.map(|k| k / 1024),
        memory_percent: percent,
        cpu_percent: None,
        sampled_at: None,
    }
}

/// `GET /metrics`: Prometheus text exposition (version 0.0.4).
pub(crate) async fn prometheus(ctx: ApiContext) -> Response {
    let (census, views) = match census(&ctx).await {
        Ok(found) => found,
        Err(error) => return envelope::failure(&error),
    };
    let observed = match observe(&ctx, &views).await {
        Ok(observed) => observed,
        Err(error) => return envelope::failure(&error),
    };
    let mut text = String::new();
    gauge(
        &mut text,
        "session_manager_uptime_seconds",
        "Seconds since the server started.",
        &[(None, ctx.started_at.elapsed().as_secs_f64())],
    );
    let by_status: Vec<_> = census
        .by_status
        .iter()
        .map(|(s, n)| (Some(("status", *s)), *n as f64))
        .collect();
    gauge(
        &mut text,
        "session_manager_sessions",
        "Sessions by status.",
        &by_status,
    );
    let by_state: Vec<_> = census
        .agents_by_state
        .iter()
        .map(|(s, n)| (Some(("state", *s)), *n as f64))
        .collect();
    gauge(
        &mut text,
        "session_manager_agents",
        "Agents by state.",
        &by_state,
    );
    let by_type: Vec<_> = census
        .agents_by_type
        .iter()
        .map(|(t, n)| (Some(("type", *t)), *n as f64))
        .collect();
    gauge(
        &mut text,
        "session_manager_agents_by_type",
        "Agents by type.",
        &by_type,
    );
    counter(
        &mut text,
        "session_manager_agent_restarts_total",
        "Restarts made by the supervisors of the live agents.",
        census.restarts as f64,
    );
    gauge(
        &mut text,
        "session_manager_agent_memory_bytes",
        "Resident memory of every agent's process tree, summed.",
        &[(None, census.memory_mb * 1024.0 * 1024.0)],
    );
    gauge(
        &mut text,
        "session_manager_websocket_clients",
        "Connected WebSocket clients.",
        &[(None, ctx.websocket_clients() as f64)],
    );
    observed_metrics(&mut text, &ctx, &census, &observed);
    let mut response = Response::new(text.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// The monitor's counters and gauges: the same figures `/analytics` shows.
fn observed_metrics(text: &mut String, ctx: &ApiContext, census: &Census, observed: &Observed) {
    let a = &observed.analytics.activity;
    counter(
        text,
        "session_manager_agent_activations_total",
        "Agent activations, every session.",
        census.activations.values().sum::<u64>() as f64,
    );
    counter(
        text,
        "session_manager_tool_uses_total",
        "Tool uses reported by Claude Code hooks (PostToolUse).",
        a.tool_uses as f64,
    );
    counter(
        text,
        "session_manager_commands_executed_total",
        "Bash tool uses reported by Claude Code hooks.",
        a.commands_executed as f64,
    );
    let files = [
        (Some(("change", "created")), a.files_created as f64),
        (Some(("change", "modified")), a.files_modified as f64),
        (Some(("change", "deleted")), a.files_deleted as f64),
    ];
    let _ = writeln!(
        text,
        "# HELP session_manager_files_total Files changed by tool uses reported by Claude Code hooks.\n# TYPE session_manager_files_total counter"
    );
    samples_of(text, "session_manager_files_total", &files);
    counter(
        text,
        "session_manager_tool_errors_total",
        "Tool uses that failed, reported by Claude Code hooks.",
        a.errors as f64,
    );
    let _ = writeln!(
        text,
        "# HELP session_manager_tool_response_seconds Time from PreToolUse to PostToolUse.\n# TYPE session_manager_tool_response_seconds summary"
    );
    samples_of(
        text,
        "session_manager_tool_response_seconds_sum",
        &[(None, a.response_ms_total / 1000.0)],
    );
    samples_of(
        text,
        "session_manager_tool_response_seconds_count",
        &[(None, a.responses as f64)],
    );
    gauge(
        text,
        "session_manager_errors_last_hour",
        "Failed tool uses and agent restarts of the live sessions in the last hour.",
        &[(None, observed.errors_last_hour.iter().map(|(_, n)| n).sum())],
    );
    if let Some(host) = ctx.monitor.host() {
        gauge(
            text,
            "session_manager_host_cpu_percent",
            "Host CPU use, all CPUs, at the last sample.",
            &[(None, host.cpu_percent)],
        );
        gauge(
            text,
            "session_manager_host_memory_percent",
            "Host memory use at the last sample.",
            &[(None, host.memory_percent)],
        );
    }
    gauge(
        text,
        "session_manager_agent_cpu_percent",
        "CPU of every agent's process tree at the last sample (100 = one core).",
        &[(None, observed.samples.iter().map(|s| s.cpu_percent).sum())],
    );
    gauge(
        text,
        "session_manager_alerts_open",
        "Resource alerts open (host and sessions).",
        &[(None, ctx.monitor.open_alert_count() as f64)],
    );
    counter(
        text,
        "session_manager_monitor_samples_total",
        "Monitor ticks since the server started.",
        ctx.monitor.ticks() as f64,
    );
    let anomalies: Vec<_> = observed
        .analytics
        .anomalies
        .iter()
        .map(|(metric, _)| (Some(("metric", *metric)), 1.0))
        .collect();
    gauge(
        text,
        "session_manager_anomaly",
        "1 for each value of the current hour beyond the mean ± 3σ of the earlier hours.",
        &anomalies,
    );
}

fn gauge(text: &mut String, name: &str, help: &str, samples: &[(Option<(&str, &str)>, f64)]) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
    samples_of(text, name, samples);
}

fn counter(text: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
    samples_of(text, name, &[(None, value)]);
}

fn samples_of(text: &mut String, name: &str, samples: &[(Option<(&str, &str)>, f64)]) {
    for (label, value) in samples {
        match label {
            // Label values here are fixed words (statuses, states, types): nothing to escape.
            Some((key, word)) => {
                let _ = writeln!(text, "{name}{{{key}=\"{word}\"}} {value}");
            }
            None => {
                let _ = writeln!(text, "{name} {value}");
            }
        }
    }
}
