//! The monitor's data on the wire: a metrics point (the history of `GET …/metrics` and the
//! `metrics` event) and a resource alert (`alert`, `alert_resolved`, `…/status`'s `alerts`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::monitor::{Activity, AgentSample, ResourceAlert, SessionSample};

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

impl AlertObject {
    /// `medium`, `high` or `critical`.
    pub(crate) fn severity(&self) -> &'static str {
        self.severity
    }
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

/// What Claude Code's hook events counted (a session's, an hour's or everyone's).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActivityObject {
    /// Tool uses finished (`PostToolUse`, `PostToolUseFailure`).
    tool_uses: u64,
    /// `Bash` tool uses.
    commands_executed: u64,
    /// Files a `Write` created.
    files_created: u64,
    /// Files a `Write` (of an existing file), `Edit`, `MultiEdit` or `NotebookEdit` changed.
    files_modified: u64,
    /// Files named by an `rm`, `unlink` or `git rm` of a command.
    files_deleted: u64,
    /// Tool uses that failed.
    errors: u64,
    /// `PreToolUse` → `PostToolUse`, ms; null before the first.
    average_response_time_ms: Option<f64>,
    max_response_time_ms: Option<f64>,
}

/// What hook events counted.
pub(crate) fn activity(a: &Activity) -> ActivityObject {
    ActivityObject {
        tool_uses: a.tool_uses,
        commands_executed: a.commands_executed,
        files_created: a.files_created,
        files_modified: a.files_modified,
        files_deleted: a.files_deleted,
        errors: a.errors,
        average_response_time_ms: a.average_response_ms(),
        max_response_time_ms: (a.responses > 0).then_some(a.response_ms_max),
    }
}
