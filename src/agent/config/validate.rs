//! An agent's configuration checked on its own (every field against its range) and a
//! session's agents checked as a whole (unique names, known dependencies, no cycle); errors
//! are [`FieldError`]s named relative to what was checked.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use super::resolve::effective_depends_on;
use super::{AgentConfig, Limits};
use crate::agent::terminal::MAX_DIMENSION;
use crate::config::{validate_backoff, AgentSettings};
use crate::rules::{
    in_range, validate_command, validate_environment_at, validate_name, FieldError,
};
use crate::supervision::DependencyGraph;

/// Longest `ready_pattern`, in bytes; with the compiled-size limit below it keeps a hostile
/// pattern from costing the server memory or time.
pub(super) const MAX_PATTERN_BYTES: usize = 4096;
/// Largest compiled `ready_pattern`, in bytes.
const MAX_PATTERN_COMPILED_BYTES: usize = 1 << 20;

/// Compiles a `ready_pattern` within the size bounds; the error is the message only.
pub(super) fn compile_ready_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.len() > MAX_PATTERN_BYTES {
        return Err(format!(
            "must be at most {MAX_PATTERN_BYTES} bytes long, got {}",
            pattern.len()
        ));
    }
    RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_COMPILED_BYTES)
        .build()
        .map_err(|error| {
            // The parser draws a multi-line caret diagram; one line reads better in JSON.
            let detail = error.to_string();
            let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("is not a valid regular expression: {detail}")
        })
}

impl Limits {
    /// Checks every limit against its range; errors are relative to the limits (`nice`).
    pub fn validate(&self) -> Result<(), FieldError> {
        let optional = |value: Option<u64>, max: u64, field: &str| {
            value.map_or(Ok(()), |value| in_range(value, 1, max, field))
        };
        optional(self.address_space_mb, 134_217_728, "address_space_mb")?;
        optional(self.open_files, 1_048_576, "open_files")?;
        optional(self.cpu_seconds, 31_536_000, "cpu_seconds")?;
        self.nice
            .map_or(Ok(()), |nice| in_range(nice, -20, 19, "nice"))
    }
}

impl AgentConfig {
    /// Checks every field on its own; errors name the field relative to the agent.
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_name(&self.name, "name")?;
        in_range(self.priority, 0, 100, "priority")?;
        if let Some(mb) = self.max_memory_mb {
            in_range(mb, 1, 1_048_576, "max_memory_mb")?;
        }
        in_range(self.timeout_seconds, 1, 86_400, "timeout_seconds")?;
        in_range(self.retry_attempts, 0, 100_000, "retry_attempts")?;
        if !self.custom_config.is_object() {
            return Err(FieldError::invalid(
                "custom_config",
                "must be a JSON object",
            ));
        }
        if let Some(command) = &self.command {
            validate_command(command).map_err(|e| e.within("command"))?;
        }
        if let Some(pattern) = &self.ready_pattern {
            compile_ready_pattern(pattern)
                .map_err(|message| FieldError::invalid("ready_pattern", message))?;
        }
        validate_environment_at(&self.environment, "environment")?;
        if let Some(terminal) = &self.terminal {
            in_range(terminal.rows, 1, u32::from(MAX_DIMENSION), "terminal.rows")?;
            in_range(terminal.cols, 1, u32::from(MAX_DIMENSION), "terminal.cols")?;
        }
        if let Some(limits) = &self.limits {
            limits.validate().map_err(|e| e.within("limits"))?;
        }
        for (index, name) in self.depends_on.iter().flatten().enumerate() {
            validate_name(name, &format!("depends_on[{index}]"))?;
        }
        if let Some(backoff) = &self.backoff {
            validate_backoff(backoff).map_err(|e| e.within("backoff"))?;
        }
        if let Some(claude) = &self.claude {
            if self.command.is_some() {
                return Err(FieldError::inconsistent(
                    "command",
                    "must not be given with `claude`: a Claude agent runs [agents.claude] command",
                ));
            }
            claude.validate().map_err(|e| e.within("claude"))?;
        }
        Ok(())
    }
}

/// Checks a session's agents: each one (errors as `agents[1].backoff.max_ms`), then the list —
/// unique names, `depends_on` naming agents of the list, and no cycle among the dependencies
/// the agents would really have (their own, their template's or their type's).
pub fn validate_agents(agents: &[AgentConfig], settings: &AgentSettings) -> Result<(), FieldError> {
    let mut index_of: HashMap<&str, usize> = HashMap::with_capacity(agents.len());
    for (i, agent) in agents.iter().enumerate() {
        agent.validate().map_err(|e| e.within(&agent_path(i)))?;
        if let Some(first) = index_of.insert(&agent.name, i) {
            return Err(FieldError::inconsistent(
                format!("{}.name", agent_path(i)),
                format!(
                    "duplicates the name {:?} of {}",
                    agent.name,
                    agent_path(first)
                ),
            ));
        }
    }
    for (i, agent) in agents.iter().enumerate() {
        for (k, name) in agent.depends_on.iter().flatten().enumerate() {
            if !index_of.contains_key(name.as_str()) {
                return Err(FieldError::inconsistent(
                    format!("{}.depends_on[{k}]", agent_path(i)),
                    format!("names no agent of this session: {name:?}"),
                ));
            }
        }
    }
    let dependencies: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| effective_depends_on(agent, agents, settings))
        .collect();
    DependencyGraph::build(
        agents
            .iter()
            .zip(&dependencies)
            .map(|(agent, deps)| (agent.name.as_str(), deps.iter().map(String::as_str))),
    )
    .map(drop)
    .map_err(|error| {
        let field = match &error {
            crate::supervision::SupervisionError::Cycle(names) => names
                .first()
                .and_then(|name| index_of.get(name.as_str()))
                .map_or_else(
                    || "agents".to_owned(),
                    |&i| format!("{}.depends_on", agent_path(i)),
                ),
            _ => "agents".to_owned(),
        };
        FieldError::inconsistent(field, error.to_string())
    })
}

pub(super) fn agent_path(index: usize) -> String {
    format!("agents[{index}]")
}
