//! The monitor's data on the wire: a metrics point (the history of `GET …/metrics` and the
//! `metrics` event) and a resource alert (`alert`, `alert_resolved`, `…/status`'s `alerts`).

use serde_json::{json, Value};

use crate::monitor::{AgentSample, ResourceAlert, SessionSample};

/// One sample of a session.
pub(crate) fn point(sample: &SessionSample) -> Value {
    json!({
        "session_id": sample.session_id,
        "timestamp": sample.at,
        "cpu_usage_percent": sample.cpu_percent,
        "memory_usage_mb": sample.memory_mb,
        "memory_percent": sample.memory_percent,
        "disk_usage_percent": sample.disk_percent,
        "agents_running": sample.agents_running,
        "agents_total": sample.agents_total,
        "agent_restarts": sample.restarts,
        "errors": sample.errors,
        "agents": sample.agents.iter().map(agent).collect::<Vec<_>>(),
    })
}

fn agent(sample: &AgentSample) -> Value {
    json!({
        "name": sample.name,
        "pid": sample.pid,
        "processes": sample.processes,
        "cpu_percent": sample.cpu_percent,
        "memory_mb": sample.memory_mb,
        "threads": sample.threads,
        "open_files": sample.open_files,
    })
}

/// A resource alert; `resolved_at` is set in an `alert_resolved`.
pub(crate) fn alert(alert: &ResourceAlert, resolved_at: Option<f64>) -> Value {
    json!({
        "id": alert.id,
        "kind": alert.resource.as_str(),
        "scope": if alert.session.is_some() { "session" } else { "host" },
        "session_id": alert.session,
        "severity": alert.severity.as_str(),
        "message": alert.message,
        "value": alert.value,
        "threshold": alert.threshold,
        "timestamp": alert.raised_at,
        "resolved_at": resolved_at,
    })
}
