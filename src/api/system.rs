//! Server-wide routes: agent types, path validation, analytics, system status and the
//! Prometheus text of `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::agent::{AgentStatus, AgentType};
use crate::paths::{CheckCode, Validation};
use crate::session::{SessionRecord, SessionStatus, SessionView};
use crate::supervision::ChildState;

use super::dto::monitor;
use super::dto::requests::{ValidatePathBody, ValidatePathsBody};
use super::dto::session::seconds;
use super::errors::ApiError;
use super::sessions::{Answer, Parsed};
use super::{envelope, ApiContext};

/// Most paths one `validate-paths` request may ask about.
pub(crate) const MAX_PATHS: usize = 1000;

/// `GET /agent-types`: the 12 types keyed by their default agent name, as the original.
pub(crate) async fn agent_types() -> Answer {
    let types: BTreeMap<&str, Value> = AgentType::ALL
        .iter()
        .map(|t| {
            let info = t.info();
            (
                info.default_name,
                json!({
                    "type": t.as_str(),
                    "name": info.default_name,
                    "description": info.description,
                    "capabilities": info.capabilities,
                    "priority": info.priority,
                    "memory_min": info.memory_min_mb,
                    "memory_max": info.memory_max_mb,
                    "depends_on": info.depends_on.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    Ok(envelope::success(
        StatusCode::OK,
        &json!({ "agent_types": types, "count": types.len() }),
    ))
}

#[derive(Serialize)]
struct ValidatePayload<'a> {
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
        &ValidatePayload {
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
        &json!({
            "validations": validations,
            "results": batch.validations,
            "summary": batch.summary,
        }),
    ))
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

fn analytics_of(census: &Census) -> Value {
    let mut most_used: Vec<(&String, &u64)> = census.activations.iter().collect();
    most_used.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let active = ["initializing", "active", "degraded"]
        .iter()
        .map(|s| census.by_status.get(s).copied().unwrap_or(0))
        .sum::<usize>();
    json!({
        "total_sessions": census.total,
        "active_sessions": active,
        "status_distribution": census.by_status,
        "average_duration_seconds": census.average_duration_seconds,
        "most_used_agents": most_used
            .iter()
            .take(10)
            .map(|(name, count)| json!({ "name": name, "activations": count }))
            .collect::<Vec<_>>(),
        "last_updated": seconds(std::time::SystemTime::now()),
        "agents_by_type": census.agents_by_type,
        "agents_by_state": census.agents_by_state,
        "total_agent_restarts": census.restarts,
        "total_agent_activations": census.activations.values().sum::<u64>(),
        "agent_memory_mb": census.memory_mb,
    })
}

/// `GET /analytics`.
pub(crate) async fn analytics(ctx: ApiContext) -> Answer {
    let (census, _) = census(&ctx).await?;
    Ok(envelope::success(
        StatusCode::OK,
        &json!({ "analytics": analytics_of(&census) }),
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
    if let (Value::Object(fields), Some(sample)) = (&mut host, ctx.monitor.host()) {
        fields.insert("cpu_percent".into(), sample.cpu_percent.into());
        fields.insert("sampled_at".into(), sample.at.into());
    }
    let host_alerts: Vec<Value> = ctx
        .monitor
        .open_alerts(None)
        .iter()
        .map(|alert| monitor::alert(alert, None))
        .collect();
    Ok(envelope::success(
        StatusCode::OK,
        &json!({
            "system_status": {
                "timestamp": seconds(std::time::SystemTime::now()),
                "uptime_seconds": ctx.started_at.elapsed().as_secs_f64(),
                "version": env!("CARGO_PKG_VERSION"),
                "sessions": analytics_of(&census),
                "monitoring": {
                    "active": true,
                    "monitored_sessions": monitored,
                    "websocket_clients": ctx.websocket_clients(),
                    "samples_taken": ctx.monitor.ticks(),
                    "host_alerts": host_alerts,
                },
                "agents": {
                    "available_types": AgentType::ALL.len(),
                    "active_agents": running,
                },
                "host": host,
            }
        }),
    ))
}

/// The host's load and memory, from `/proc` (Linux); `null` fields elsewhere.
fn host() -> Value {
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
    json!({
        "cpu_count": cpus,
        "load_average": load,
        "memory_total_mb": total.map(|k| k / 1024),
        "memory_available_mb": available.map(|k| k / 1024),
        "memory_percent": percent,
    })
}

/// `GET /metrics`: Prometheus text exposition (version 0.0.4).
pub(crate) async fn prometheus(ctx: ApiContext) -> Response {
    let (census, _) = match census(&ctx).await {
        Ok(found) => found,
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
    let mut response = Response::new(text.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
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
