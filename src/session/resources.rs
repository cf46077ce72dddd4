//! What the monitor observes about sessions and announces on the bus: a session's sample
//! (its agents' process trees summed) and a resource alert, from raise to resolution.
//!
//! They are defined here, beside the events that carry them ([`SessionEvent::Metrics`],
//! [`SessionEvent::Alert`], [`SessionEvent::AlertResolved`]), so that sessions import nothing
//! of the monitor: the monitor, one layer up, builds them and publishes them.
//!
//! [`SessionEvent::Metrics`]: super::SessionEvent::Metrics
//! [`SessionEvent::Alert`]: super::SessionEvent::Alert
//! [`SessionEvent::AlertResolved`]: super::SessionEvent::AlertResolved

use uuid::Uuid;

use crate::agent::Severity;

/// One session at one instant: the sum of its agents' process trees.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSample {
    /// The session.
    pub session_id: Uuid,
    /// Unix seconds.
    pub at: f64,
    /// CPU of every agent's tree; 100 is one core busy.
    pub cpu_percent: f64,
    /// Resident memory of every agent's tree, MiB.
    pub memory_mb: f64,
    /// `memory_mb` as a percentage of the session's `max_memory_mb`.
    pub memory_percent: Option<f64>,
    /// Use of the file system holding the working directory, percent.
    pub disk_percent: Option<f64>,
    /// Agents running.
    pub agents_running: u64,
    /// Agents configured.
    pub agents_total: u64,
    /// Restarts made so far, all agents.
    pub restarts: u64,
    /// Agents failed.
    pub errors: u64,
    /// Each agent with a live process.
    pub agents: Vec<AgentSample>,
}

/// One agent's process tree at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSample {
    /// The agent.
    pub name: String,
    /// Its first process.
    pub pid: u32,
    /// Processes in its tree.
    pub processes: usize,
    /// CPU of the whole tree; 100 is one core busy.
    pub cpu_percent: f64,
    /// Resident memory of the whole tree, MiB.
    pub memory_mb: f64,
    /// Threads of the whole tree.
    pub threads: u64,
    /// Open file descriptors of the whole tree, where `/proc` shows them.
    pub open_files: Option<u64>,
}

/// What a resource alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// CPU use (host: all CPUs; session: its agents, 100 = one core).
    Cpu,
    /// Memory use (host: of the installed memory; session: of its `max_memory_mb`).
    Memory,
    /// Use of a working directory's file system.
    Disk,
    /// A session's errors in the last hour: failed tool uses (hooks) and agent restarts.
    ErrorRate,
    /// A session's mean tool response time over the last five minutes (hooks), ms.
    ResponseTime,
    /// A Claude Code session of a session has waited for its person longer than
    /// `[claude] waiting_alert_seconds` (value: seconds waited).
    ClaudeWaiting,
    /// A session's Claude Code cost reached a share of its `cost_budget_usd` (value: USD).
    CostBudget,
}

impl Resource {
    /// The snake_case word that names it: the alert's `kind` on the wire and in the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu_usage",
            Resource::Memory => "memory_usage",
            Resource::Disk => "disk_usage",
            Resource::ErrorRate => "error_rate",
            Resource::ResponseTime => "response_time",
            Resource::ClaudeWaiting => "claude_waiting",
            Resource::CostBudget => "cost_budget",
        }
    }
}

/// One resource alert, from raise to resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceAlert {
    /// Stable from raise to resolution.
    pub id: Uuid,
    /// The session, or `None` for the host.
    pub session: Option<Uuid>,
    /// What crossed its line.
    pub resource: Resource,
    /// How far over the line it was when raised.
    pub severity: Severity,
    /// For people.
    pub message: String,
    /// The value that raised it (in a resolution: the value that resolved it).
    pub value: f64,
    /// The line.
    pub threshold: f64,
    /// Unix seconds it was raised at.
    pub raised_at: f64,
}
