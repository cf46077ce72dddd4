//! The monitor's data on the wire: a metrics point (the history of `GET …/metrics` and the
//! `metrics` event) and a resource alert (`alert`, `alert_resolved`, `…/status`'s `alerts`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::monitor::{AgentSample, ResourceAlert, SessionSample};

/// One sample of a session.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MetricsPoint {
    session_id: Uuid,
    /// Unix seconds.
    timestamp: f64,
    /// CPU of every agent's process tree (100 = one core).
    cpu_usage_percent: f64,
    memory_usage_mb: f64,
    memory_percent: Option<f64>,
    disk_usage_percent: Option<f64>,
    agents_running: u64,
    agents_total: u64,
    agent_restarts: u64,
    errors: u64,
    agents: Vec<AgentPoint>,
}

/// One agent's process tree in a sample.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentPoint {
    name: String,
    pid: u32,
    processes: usize,
    cpu_percent: f64,
    memory_mb: f64,
    threads: u64,
    open_files: Option<u64>,
}

/// One sample of a session.
pub(crate) fn point(sample: &SessionSample) -> MetricsPoint {
    MetricsPoint {
        session_id: sample.session_id,
        timestamp: sample.at,
        cpu_usage_percent: sample.cpu_percent,
        memory_usage_mb: sample.memory_mb,
        memory_percent: sample.memory_percent,
        disk_usage_percent: sample.disk_percent,
        agents_running: sample.agents_running,
        agents_total: sample.agents_total,
        agent_restarts: sample.restarts,
        errors: sample.errors,
        agents: sample.agents.iter().map(agent).collect(),
    }
}

fn agent(sample: &AgentSample) -> AgentPoint {
    AgentPoint {
        name: sample.name.clone(),
        pid: sample.pid,
        processes: sample.processes,
        cpu_percent: sample.cpu_percent,
        memory_mb: sample.memory_mb,
        threads: sample.threads,
        open_files: sample.open_files,
    }
}

/// A resource alert of the monitor.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertObject {
    id: Uuid,
    /// The resource: `cpu_usage`, `memory_usage`, `disk_usage`, …
    kind: &'static str,
    /// `session` or `host`.
    scope: &'static str,
    session_id: Option<Uuid>,
    severity: &'static str,
    message: String,
    value: f64,
    threshold: f64,
    /// When it was raised, Unix seconds.
    timestamp: f64,
    /// Set in an `alert_resolved`.
    resolved_at: Option<f64>,
}

/// A resource alert; `resolved_at` is set in an `alert_resolved`.
pub(crate) fn alert(alert: &ResourceAlert, resolved_at: Option<f64>) -> AlertObject {
    AlertObject {
        id: alert.id,
        kind: alert.resource.as_str(),
        scope: if alert.session.is_some() {
            "session"
        } else {
            "host"
        },
        session_id: alert.session,
        severity: alert.severity.as_str(),
        message: alert.message.clone(),
        value: alert.value,
        threshold: alert.threshold,
        timestamp: alert.raised_at,
        resolved_at,
    }
}
