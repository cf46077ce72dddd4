//! Server-wide routes: agent types, path validation, analytics, system status and the
//! Prometheus text of `/metrics`.
//!
//! `analytics.rs` holds the census and the monitor's observations (and `/analytics`), which
//! `/system-status` and `prometheus.rs` (`/metrics`) read too.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;

use crate::agent::AgentType;
use crate::paths::{CheckCode, Validation};
use crate::supervision::ChildState;

use super::dto::monitor::{self, AlertObject};
use super::dto::requests::{ValidatePathBody, ValidatePathsBody};
use super::dto::session::seconds;
use super::errors::ApiError;
use super::sessions::{Answer, Parsed};
use super::{envelope, ApiContext};

mod analytics;
mod prometheus;

pub(crate) use analytics::{analytics, AnalyticsPayload};
use analytics::{analytics_of, census, Analytics};
pub(crate) use prometheus::prometheus;

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
                    unresponsive_sessions: sampler
                        .unresponsive_sessions
                        .iter()
                        .map(Uuid::to_string)
                        .collect(),
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
    /// Live sessions that did not answer the monitor within a tick's deadline and have not
    /// since: sampled without waiting for them, their figures left as they were.
    unresponsive_sessions: Vec<String>,
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
