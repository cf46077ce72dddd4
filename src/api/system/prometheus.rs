//! `GET /metrics`: the census and the monitor's observations as Prometheus text
//! (exposition format 0.0.4).

use std::fmt::Write as _;

use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use crate::api::{envelope, ApiContext};

use super::analytics::{census, observe, Census, Observed};

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
    let claude: Vec<_> = ctx
        .claude
        .count_by_state()
        .into_iter()
        .map(|(state, n)| (Some(("state", state.as_str())), n as f64))
        .collect();
    gauge(
        &mut text,
        "session_manager_claude_sessions",
        "Claude Code sessions by activity state (from their hooks).",
        &claude,
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
    claude_metrics(&mut text, &crate::api::usage::totals(&ctx));
    let mut response = Response::new(text.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// What Claude Code's telemetry counted: the same totals as `/analytics`' `claude`.
fn claude_metrics(text: &mut String, totals: &crate::claude::usage::Totals) {
    counter(
        text,
        "session_manager_claude_cost_usd_total",
        "USD Claude Code estimated it cost (its claude_code.cost.usage), every session.",
        totals.cost_usd,
    );
    let tokens = &totals.tokens;
    let by_type = [
        (Some(("type", "input")), tokens.input),
        (Some(("type", "output")), tokens.output),
        (Some(("type", "cache_read")), tokens.cache_read),
        (Some(("type", "cache_creation")), tokens.cache_creation),
    ];
    let name = "session_manager_claude_tokens_total";
    let _ = writeln!(
        text,
        "# HELP {name} Tokens Claude Code used (its claude_code.token.usage) by type.\n# TYPE {name} counter"
    );
    samples_of(text, name, &by_type);
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
