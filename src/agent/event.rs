//! What a group of agents tells its subscribers: state changes, output lines, exits and
//! alerts. Internal, typed events; the WebSocket layer turns them into wire messages.

use std::sync::Arc;
use std::time::SystemTime;

use crate::supervision::ChildState;

use super::output::LogLine;
use supervision::process::ProcessExit;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look.
    Medium,
    /// Something is broken.
    High,
    /// The session cannot work.
    Critical,
}

impl Severity {
    /// The lowercase word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What an agent alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The agent's process tree went over `max_memory_mb`; it is restarted.
    MemoryLimit,
    /// The agent reached `failed`: restarts exhausted, or a crash its policy leaves down.
    Failed,
}

impl AlertKind {
    /// The snake_case word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::MemoryLimit => "memory_limit",
            AlertKind::Failed => "agent_failed",
        }
    }
}

/// One alert about one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentAlert {
    /// The agent.
    pub agent: Arc<str>,
    /// What happened.
    pub kind: AlertKind,
    /// How bad it is.
    pub severity: Severity,
    /// For people.
    pub message: String,
    /// When.
    pub at: SystemTime,
}

/// Everything a group of agents publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// An agent changed state.
    State {
        /// The agent.
        agent: Arc<str>,
        /// The state it left.
        from: ChildState,
        /// The state it entered.
        to: ChildState,
        /// Why, when there is more to say (exit reason, give-up reason).
        reason: Option<String>,
        /// Restarts made by the supervisor so far.
        restarts: u64,
        /// When.
        at: SystemTime,
    },
    /// A line of an agent's output.
    Log {
        /// The agent.
        agent: Arc<str>,
        /// The line.
        line: LogLine,
    },
    /// An agent's process ended.
    Exited {
        /// The agent.
        agent: Arc<str>,
        /// Its process id.
        pid: u32,
        /// How it ended.
        exit: ProcessExit,
    },
    /// Something needs attention.
    Alert(AgentAlert),
}
