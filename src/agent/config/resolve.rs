//! Resolution: an agent's configuration merged with its type's `[agents.templates.<TYPE>]`
//! and the defaults into a [`ResolvedAgent`] — argv, dependency names, compiled ready
//! pattern, restart policy, timeouts, limits — refusing a custom command from the API unless
//! `agents.allow_custom_commands`.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;

use super::validate::{agent_path, compile_ready_pattern, validate_agents};
use super::{AgentConfig, Limits};
use crate::agent::claude;
use crate::agent::terminal::{checked_size, DEFAULT_SIZE};
use crate::config::{AgentSettings, AgentTemplate, BackoffSettings};
use crate::rules::{join_path, AgentType, FieldError};
use crate::supervision::process::TerminalSize;
use crate::supervision::{Backoff, Intensity, RestartPolicy};

/// The names `config` waits for among `all` (the session's agents, `config` included): its own
/// `depends_on` if given; else its type template's, keeping only names the session has (a
/// template serves every session); else the agents of `all` whose type its type depends on.
pub fn effective_depends_on(
    config: &AgentConfig,
    all: &[AgentConfig],
    settings: &AgentSettings,
) -> Vec<String> {
    if let Some(names) = &config.depends_on {
        return names.clone();
    }
    if let Some(names) = template_of(config, settings).and_then(|t| t.depends_on.as_ref()) {
        return names
            .iter()
            .filter(|name| all.iter().any(|agent| &agent.name == *name))
            .cloned()
            .collect();
    }
    let types = config.agent_type.depends_on();
    all.iter()
        .filter(|agent| types.contains(&agent.agent_type))
        .map(|agent| agent.name.clone())
        .collect()
}

fn template_of<'s>(config: &AgentConfig, settings: &'s AgentSettings) -> Option<&'s AgentTemplate> {
    settings.templates.get(config.agent_type.as_str())
}

/// Who wrote the configuration being resolved; decides whether its own command is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandOrigin {
    /// An API caller (create, update, import): a command other than the type's template
    /// command needs `agents.allow_custom_commands`.
    Api,
    /// The server's own records (restore from storage after a restart): accepted once already.
    Trusted,
}

/// Why an agent configuration cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The configuration is invalid or contradicts the session's other agents.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// An API caller named its own command while `agents.allow_custom_commands` is off.
    #[error("{field} refused: custom commands are disabled on this server (agents.allow_custom_commands)")]
    CustomCommandRefused {
        /// Where the command stands, e.g. `agents[0].command`.
        field: String,
    },
}

impl ResolveError {
    /// The same error seen from `parent`, as [`FieldError::within`].
    pub fn within(self, parent: &str) -> Self {
        match self {
            ResolveError::Invalid(error) => ResolveError::Invalid(error.within(parent)),
            ResolveError::CustomCommandRefused { field } => ResolveError::CustomCommandRefused {
                field: join_path(parent, &field),
            },
        }
    }

    /// The path of the refused value.
    pub fn field(&self) -> &str {
        match self {
            ResolveError::Invalid(error) => &error.field,
            ResolveError::CustomCommandRefused { field } => field,
        }
    }
}

/// An agent ready to run: its configuration merged with its type's template and defaults,
/// dependencies named, pattern compiled, policy built. What the agent actor consumes.
#[derive(Debug, Clone)]
pub struct ResolvedAgent {
    /// Unique within the session.
    pub name: String,
    /// The agent's type.
    pub agent_type: AgentType,
    /// Whether the session starts it with the others.
    pub enabled: bool,
    /// 0–100, lower matters more.
    pub priority: u8,
    /// Program and arguments; `None` is a logical agent (state only, no process).
    pub command: Option<Vec<String>>,
    /// A stdout line must match before the agent counts as running; `None`: once spawned.
    pub ready_pattern: Option<Regex>,
    /// Deadline to become running.
    pub start_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL (`agents.stop_grace_ms`).
    pub stop_grace: Duration,
    /// Hard limit on the RSS of the process tree, in MiB.
    pub max_memory_mb: Option<u64>,
    /// Variables added to the process environment (never one of
    /// [`RESERVED_ENVIRONMENT`](crate::rules::RESERVED_ENVIRONMENT)).
    pub environment: BTreeMap<String, String>,
    /// Resource limits for the process; all `None` = inherited.
    pub limits: Limits,
    /// Names of the session's agents this one waits for.
    pub depends_on: Vec<String>,
    /// Restart type, backoff and intensity (`retry_attempts` within the restart window).
    pub policy: RestartPolicy,
    /// Whether it is a Claude Code agent: `command` is then the CLI's command line up to
    /// the conversation flags, which each spawn adds.
    pub claude: bool,
    /// The pseudo-terminal it runs on, instead of pipes.
    pub terminal: Option<TerminalSize>,
}

impl ResolvedAgent {
    /// Whether the agent has no process, only a state.
    pub fn is_logical(&self) -> bool {
        self.command.is_none()
    }
}

impl From<&BackoffSettings> for Backoff {
    fn from(settings: &BackoffSettings) -> Self {
        Backoff::new(
            Duration::from_millis(settings.initial_ms),
            Duration::from_millis(settings.max_ms),
        )
        .with_multiplier(settings.multiplier)
        .with_reset_after(Duration::from_secs(settings.reset_after_seconds))
    }
}

/// Resolves one agent of `all` (the session's agents) against the `[agents]` settings.
///
/// Checks `config` on its own but not the list (see [`resolve_agents`]); errors name fields
/// relative to the agent.
pub fn resolve(
    config: &AgentConfig,
    all: &[AgentConfig],
    settings: &AgentSettings,
    origin: CommandOrigin,
) -> Result<ResolvedAgent, ResolveError> {
    config.validate()?;
    let template = template_of(config, settings);
    let template_command = template.and_then(|t| t.command.as_ref());
    let command = match (&config.claude, &config.command) {
        (Some(claude), _) => {
            // The program is the server's; only arguments a request adds need the right.
            let unlisted = claude.first_unlisted_arg(&settings.claude);
            if unlisted.is_some() && origin == CommandOrigin::Api && !settings.allow_custom_commands
            {
                return Err(ResolveError::CustomCommandRefused {
                    field: "claude.args".to_owned(),
                });
            }
            Some(claude::command(&settings.claude, config.agent_type, claude))
        }
        (None, Some(own)) => {
            let custom = template_command != Some(own);
            if custom && origin == CommandOrigin::Api && !settings.allow_custom_commands {
                return Err(ResolveError::CustomCommandRefused {
                    field: "command".to_owned(),
                });
            }
            Some(own.clone())
        }
        (None, None) => template_command.cloned(),
    };
    let backoff = config
        .backoff
        .as_ref()
        .or(template.and_then(|t| t.backoff.as_ref()))
        .map(Backoff::from)
        .unwrap_or_default();
    let policy = RestartPolicy::new()
        .with_restart(
            config
                .restart
                .or(template.and_then(|t| t.restart))
                .unwrap_or_default(),
        )
        .with_backoff(backoff)
        .with_intensity(Intensity::new(
            config.retry_attempts,
            Duration::from_secs(settings.restart_window_seconds),
        ))
        .with_escalate(false);
    let ready_pattern = config
        .ready_pattern
        .as_deref()
        .map(compile_ready_pattern)
        .transpose()
        .map_err(|message| FieldError::invalid("ready_pattern", message))?;
    let terminal = config
        .terminal
        .map(|t| checked_size(t.rows, t.cols))
        .transpose()
        .map_err(|err| FieldError::invalid("terminal", err.to_string()))?;
    // Claude Code's interface needs a terminal: a Claude agent always has one, of its own
    // size if it gives one.
    let terminal = match (&config.claude, terminal) {
        (Some(_), None) => Some(DEFAULT_SIZE),
        (_, terminal) => terminal,
    };
    if terminal.is_some() && command.is_none() {
        return Err(FieldError::invalid(
            "terminal",
            "needs a command: a logical agent (no command, no template command) has no process to run on it",
        )
        .into());
    }
    let priority = u8::try_from(config.priority)
        .map_err(|_| FieldError::invalid("priority", "must be between 0 and 100"))?;
    Ok(ResolvedAgent {
        name: config.name.clone(),
        agent_type: config.agent_type,
        enabled: config.enabled,
        priority,
        command,
        ready_pattern,
        start_timeout: Duration::from_secs(config.timeout_seconds),
        stop_grace: Duration::from_millis(settings.stop_grace_ms),
        max_memory_mb: config.max_memory_mb,
        environment: config.environment.clone(),
        limits: config.limits.unwrap_or_default(),
        depends_on: effective_depends_on(config, all, settings),
        policy,
        claude: config.claude.is_some(),
        terminal,
    })
}

/// Validates a session's agents as a whole ([`validate_agents`]) and resolves each one;
/// errors name fields from the session, e.g. `agents[2].command`.
pub fn resolve_agents(
    agents: &[AgentConfig],
    settings: &AgentSettings,
    origin: CommandOrigin,
) -> Result<Vec<ResolvedAgent>, ResolveError> {
    validate_agents(agents, settings)?;
    agents
        .iter()
        .enumerate()
        .map(|(i, agent)| {
            resolve(agent, agents, settings, origin).map_err(|e| e.within(&agent_path(i)))
        })
        .collect()
}
