//! An agent's configuration as a session stores it, its validation, and its resolution
//! against the server's `[agents]` settings into what the agent actor runs.
//!
//! [`AgentConfig`] is also the wire shape of `configuration.agents[]` and of the agents in an
//! export snapshot: it mirrors the original service's agent JSON key for key (plus our keys),
//! and one type for storage, snapshots and the API keeps export → import → export identical.

//!
//! - this file: the shape ([`AgentConfig`], [`Limits`]) and how it is read (defaults filled
//!   in, `null` as absent);
//! - `validate.rs`: each agent on its own, then the session's list as a whole;
//! - `resolve.rs`: the configuration merged with its template and defaults into a
//!   [`ResolvedAgent`], the only input the agent actor takes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::claude::ClaudeConfig;
use crate::config::BackoffSettings;
use crate::rules::AgentType;
use crate::supervision::Restart;

mod resolve;
mod validate;

pub use resolve::{
    effective_depends_on, resolve, resolve_agents, CommandOrigin, ResolveError, ResolvedAgent,
};
pub use validate::validate_agents;

/// One agent of a session, as configured.
///
/// Deserializing fills in every default (the type's name and priority among them) so the
/// serialized form is always complete; `null` counts as absent. Ranges are checked by
/// [`AgentConfig::validate`], not while parsing, so that an out-of-range value is reported
/// with its field and the accepted range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "AgentConfigInput")]
pub struct AgentConfig {
    /// What kind of agent this is.
    pub agent_type: AgentType,
    /// Unique within the session; the type's default name when not given.
    pub name: String,
    /// Whether the session starts it; a disabled agent starts only when activated.
    pub enabled: bool,
    /// 0–100, lower matters more (see [`super::TypeInfo::priority`]); the type's by default.
    pub priority: u32,
    /// Hard limit on the RSS of the agent's process tree, in MiB (1–1048576).
    pub max_memory_mb: Option<u64>,
    /// Deadline to become running, in seconds (1–86400, default 300).
    pub timeout_seconds: u64,
    /// Restarts allowed within `agents.restart_window_seconds` (0–100000, default 3).
    pub retry_attempts: u32,
    /// Free JSON object for the agent's own use, kept as given.
    pub custom_config: Value,
    /// Program and arguments; absent means the type's template command, if any.
    pub command: Option<Vec<String>>,
    /// Regular expression a stdout line must match before the agent counts as running.
    pub ready_pattern: Option<String>,
    /// Variables added to the agent's environment.
    pub environment: BTreeMap<String, String>,
    /// Resource limits applied to the agent's process.
    pub limits: Option<Limits>,
    /// Names of the agents this one waits for; replaces the template's and the type's.
    pub depends_on: Option<Vec<String>>,
    /// When the agent is restarted; the template's, else permanent.
    #[serde(serialize_with = "restart_word")]
    pub restart: Option<Restart>,
    /// Delays between restarts; the template's, else the defaults.
    pub backoff: Option<BackoffSettings>,
    /// Set for a Claude Code agent: the CLI of `[agents.claude] command` in the type's role,
    /// on a terminal (see `agent/claude.rs`); exclusive with `command`.
    pub claude: Option<ClaudeConfig>,
    /// Runs the agent on a pseudo-terminal of this size instead of pipes (`"terminal": true`
    /// is the default size, 40 × 120).
    pub terminal: Option<TerminalConfig>,
}

/// An agent's terminal as configured: `{"rows", "cols"}` (`true` on input is 40 × 120).
/// Wider than the terminal's own `u16` so that an out-of-range value is reported by
/// [`AgentConfig::validate`] with its range, not as a parse error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalConfig {
    /// Lines, 1–1000.
    pub rows: u32,
    /// Columns, 1–1000.
    pub cols: u32,
}

impl Default for TerminalConfig {
    fn default() -> Self {
        TerminalConfig {
            rows: u32::from(super::terminal::DEFAULT_SIZE.rows),
            cols: u32::from(super::terminal::DEFAULT_SIZE.cols),
        }
    }
}

/// What clients may send as `terminal`: a flag, or a size with either side defaulted.
#[derive(Deserialize)]
#[serde(untagged)]
enum TerminalInput {
    Flag(bool),
    Size {
        #[serde(default)]
        rows: Option<u32>,
        #[serde(default)]
        cols: Option<u32>,
    },
}

impl TerminalInput {
    fn into_config(self) -> Option<TerminalConfig> {
        let default = TerminalConfig::default();
        match self {
            TerminalInput::Flag(false) => None,
            TerminalInput::Flag(true) => Some(default),
            TerminalInput::Size { rows, cols } => Some(TerminalConfig {
                rows: rows.unwrap_or(default.rows),
                cols: cols.unwrap_or(default.cols),
            }),
        }
    }
}

/// Resource limits (`setrlimit` and `nice`) for an agent's process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Virtual address space, in MiB (`RLIMIT_AS`; 1–134217728).
    pub address_space_mb: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`; 1–1048576).
    pub open_files: Option<u64>,
    /// CPU time, in seconds (`RLIMIT_CPU`; 1–31536000).
    pub cpu_seconds: Option<u64>,
    /// Scheduling niceness (−20–19).
    pub nice: Option<i32>,
}

/// The shape clients send: everything but the type optional, nothing unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentConfigInput {
    agent_type: AgentType,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    max_memory_mb: Option<u64>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    retry_attempts: Option<u32>,
    #[serde(default)]
    custom_config: Option<Value>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    ready_pattern: Option<String>,
    #[serde(default)]
    environment: Option<BTreeMap<String, String>>,
    #[serde(default)]
    limits: Option<Limits>,
    #[serde(default)]
    depends_on: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::config::restart_word")]
    restart: Option<Restart>,
    #[serde(default)]
    backoff: Option<BackoffSettings>,
    #[serde(default, deserialize_with = "super::claude::claude_key")]
    claude: Option<ClaudeConfig>,
    #[serde(default)]
    terminal: Option<TerminalInput>,
}

impl From<AgentConfigInput> for AgentConfig {
    fn from(input: AgentConfigInput) -> Self {
        let defaults = AgentConfig::new(input.agent_type);
        AgentConfig {
            agent_type: input.agent_type,
            name: input.name.unwrap_or(defaults.name),
            enabled: input.enabled.unwrap_or(defaults.enabled),
            priority: input.priority.unwrap_or(defaults.priority),
            max_memory_mb: input.max_memory_mb,
            timeout_seconds: input.timeout_seconds.unwrap_or(defaults.timeout_seconds),
            retry_attempts: input.retry_attempts.unwrap_or(defaults.retry_attempts),
            custom_config: input.custom_config.unwrap_or(defaults.custom_config),
            command: input.command,
            ready_pattern: input.ready_pattern,
            environment: input.environment.unwrap_or_default(),
            limits: input.limits,
            depends_on: input.depends_on,
            restart: input.restart,
            backoff: input.backoff,
            claude: input.claude,
            terminal: input.terminal.and_then(TerminalInput::into_config),
        }
    }
}

fn restart_word<S: Serializer>(
    restart: &Option<Restart>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    restart.map(Restart::as_str).serialize(serializer)
}

impl AgentConfig {
    /// An agent of `agent_type` with every default: the type's name and priority, enabled,
    /// 300 s to start, 3 restarts, no command of its own.
    pub fn new(agent_type: AgentType) -> Self {
        let info = agent_type.info();
        AgentConfig {
            agent_type,
            name: info.default_name.to_owned(),
            enabled: true,
            priority: u32::from(info.priority),
            max_memory_mb: None,
            timeout_seconds: 300,
            retry_attempts: 3,
            custom_config: Value::Object(serde_json::Map::new()),
            command: None,
            ready_pattern: None,
            environment: BTreeMap::new(),
            limits: None,
            depends_on: None,
            restart: None,
            backoff: None,
            claude: None,
            terminal: None,
        }
    }
}

#[cfg(test)]
mod tests;
