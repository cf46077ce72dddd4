//! An agent's configuration as a session stores it, its validation, and its resolution
//! against the server's `[agents]` settings into what the agent actor runs.
//!
//! [`AgentConfig`] is also the wire shape of `configuration.agents[]` and of the agents in an
//! export snapshot: it mirrors the original service's agent JSON key for key (plus our keys),
//! and one type for storage, snapshots and the API keeps export → import → export identical.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::catalog::AgentType;
use crate::config::{AgentSettings, BackoffSettings};
use crate::supervision::{Backoff, DependencyGraph, Intensity, Restart, RestartPolicy};

/// Variables the server itself gives every agent. A configuration may not set them: an agent
/// must be able to trust them, and a silently ignored setting would mislead its author.
pub const RESERVED_ENVIRONMENT: [&str; 7] = [
    "CLAUDE_SESSION_ID",
    "CLAUDE_WORKING_DIR",
    "CLAUDE_AGENT_NAME",
    "CLAUDE_AGENT_TYPE",
    "CLAUDE_MEMORY_LIMIT",
    "CLAUDE_TIMEOUT",
    "SESSION_MANAGER_URL",
];

/// Longest agent name, in characters.
const MAX_NAME_LEN: usize = 128;
/// Most arguments in a command, program included.
const MAX_COMMAND_ARGS: usize = 4096;
/// Longest single argument or environment value, in bytes (Linux's `MAX_ARG_STRLEN`).
const MAX_ARG_BYTES: usize = 131_072;
/// Most environment variables an agent may add.
const MAX_ENVIRONMENT: usize = 1024;
/// Longest environment variable name, in bytes.
const MAX_ENV_NAME_BYTES: usize = 256;
/// Longest `ready_pattern`, in bytes; with the compiled-size limit below it keeps a hostile
/// pattern from costing the server memory or time.
const MAX_PATTERN_BYTES: usize = 4096;
/// Largest compiled `ready_pattern`, in bytes.
const MAX_PATTERN_COMPILED_BYTES: usize = 1 << 20;

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
        }
    }
}

fn restart_word<S: Serializer>(
    restart: &Option<Restart>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    restart.map(Restart::as_str).serialize(serializer)
}

/// A configuration value that is refused, and where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {message}")]
pub struct FieldError {
    /// Path of the value relative to what was validated, e.g. `backoff.max_ms`,
    /// `environment.FOO`, `command[0]`; see [`FieldError::within`].
    pub field: String,
    /// What is wrong and what is accepted, e.g. `must be between 1 and 86400, got 0`.
    pub message: String,
    /// Whether the value is wrong in itself or only next to the other agents.
    pub kind: FieldErrorKind,
}

/// Distinguishes a bad value (HTTP 400) from agents that contradict each other (HTTP 422).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// Missing, malformed or out of range.
    Invalid,
    /// Valid alone, but not with the other agents: a duplicate name, a dependency on an agent
    /// the session does not have, a dependency cycle.
    Inconsistent,
}

impl FieldError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            kind: FieldErrorKind::Invalid,
        }
    }

    fn inconsistent(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            kind: FieldErrorKind::Inconsistent,
        }
    }

    /// The same error seen from `parent`: `backoff.max_ms` within `agents[1]` is
    /// `agents[1].backoff.max_ms`, `[0]` within `command` is `command[0]`.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = join_path(parent, &self.field);
        self
    }
}

fn join_path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else if field.is_empty() {
        parent.to_owned()
    } else if field.starts_with('[') {
        format!("{parent}{field}")
    } else {
        format!("{parent}.{field}")
    }
}

fn in_range<T>(value: T, min: T, max: T, field: &str) -> Result<(), FieldError>
where
    T: PartialOrd + std::fmt::Display,
{
    // Written so that NaN fails.
    if value >= min && value <= max {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!("must be between {min} and {max}, got {value}"),
        ))
    }
}

/// Whether `name` can name an agent: 1–128 characters of `[A-Za-z0-9._-]`, so it is safe in
/// a URL path segment, a file name and a log line.
pub fn is_agent_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks an agent name; `field` is where it stands.
pub(crate) fn validate_name(name: &str, field: &str) -> Result<(), FieldError> {
    if is_agent_name(name) {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!("must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9._-], got {name:?}"),
        ))
    }
}

/// Checks an argv list; errors are relative to the list (`""`, `[2]`). Arguments after the
/// program may be empty, as `exec` allows.
pub(crate) fn validate_command(command: &[String]) -> Result<(), FieldError> {
    let Some(program) = command.first() else {
        return Err(FieldError::invalid("", "must name a program"));
    };
    if program.is_empty() {
        return Err(FieldError::invalid("[0]", "must name a program, got \"\""));
    }
    if command.len() > MAX_COMMAND_ARGS {
        return Err(FieldError::invalid(
            "",
            format!(
                "must have at most {MAX_COMMAND_ARGS} arguments, got {}",
                command.len()
            ),
        ));
    }
    for (index, argument) in command.iter().enumerate() {
        check_os_string(argument, &format!("[{index}]"))?;
    }
    Ok(())
}

/// What the OS can take as an argument or environment value.
fn check_os_string(value: &str, field: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        Err(FieldError::invalid(field, "must not contain a nul byte"))
    } else if value.len() > MAX_ARG_BYTES {
        Err(FieldError::invalid(
            field,
            format!(
                "must be at most {MAX_ARG_BYTES} bytes long, got {}",
                value.len()
            ),
        ))
    } else {
        Ok(())
    }
}

/// Checks backoff settings; errors are relative to the backoff table (`max_ms`).
pub(crate) fn validate_backoff(backoff: &BackoffSettings) -> Result<(), FieldError> {
    in_range(backoff.initial_ms, 0, 600_000, "initial_ms")?;
    in_range(backoff.max_ms, backoff.initial_ms, 3_600_000, "max_ms")?;
    in_range(backoff.multiplier, 1.0, 10.0, "multiplier")?;
    in_range(
        backoff.reset_after_seconds,
        1,
        86_400,
        "reset_after_seconds",
    )
}

/// Compiles a `ready_pattern` within the size bounds; the error is the message only.
fn compile_ready_pattern(pattern: &str) -> Result<Regex, String> {
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

fn validate_environment(environment: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if environment.len() > MAX_ENVIRONMENT {
        return Err(FieldError::invalid(
            "environment",
            format!(
                "must have at most {MAX_ENVIRONMENT} variables, got {}",
                environment.len()
            ),
        ));
    }
    for (name, value) in environment {
        let field = format!("environment.{name}");
        let mut chars = name.chars();
        let well_formed = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() <= MAX_ENV_NAME_BYTES;
        if !well_formed {
            return Err(FieldError::invalid(
                field,
                format!(
                    "is not a variable name: 1-{MAX_ENV_NAME_BYTES} characters of \
                     [A-Za-z0-9_], not starting with a digit"
                ),
            ));
        }
        if RESERVED_ENVIRONMENT.contains(&name.as_str()) {
            return Err(FieldError::invalid(
                field,
                "is set by the server for every agent and cannot be configured",
            ));
        }
        check_os_string(value, &field)?;
    }
    Ok(())
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
        }
    }

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
        validate_environment(&self.environment)?;
        if let Some(limits) = &self.limits {
            limits.validate().map_err(|e| e.within("limits"))?;
        }
        for (index, name) in self.depends_on.iter().flatten().enumerate() {
            validate_name(name, &format!("depends_on[{index}]"))?;
        }
        if let Some(backoff) = &self.backoff {
            validate_backoff(backoff).map_err(|e| e.within("backoff"))?;
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

fn agent_path(index: usize) -> String {
    format!("agents[{index}]")
}

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

fn template_of<'s>(
    config: &AgentConfig,
    settings: &'s AgentSettings,
) -> Option<&'s crate::config::AgentTemplate> {
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
    /// Variables added to the process environment (never one of [`RESERVED_ENVIRONMENT`]).
    pub environment: BTreeMap<String, String>,
    /// Resource limits for the process; all `None` = inherited.
    pub limits: Limits,
    /// Names of the session's agents this one waits for.
    pub depends_on: Vec<String>,
    /// Restart type, backoff and intensity (`retry_attempts` within the restart window).
    pub policy: RestartPolicy,
}

impl ResolvedAgent {
    /// Whether the agent has no process, only a state.
    pub fn is_logical(&self) -> bool {
        self.command.is_none()
    }
}

impl From<&BackoffSettings> for Backoff {
    fn from(settings: &BackoffSettings) -> Self {
        Backoff {
            initial: Duration::from_millis(settings.initial_ms),
            max: Duration::from_millis(settings.max_ms),
            multiplier: settings.multiplier,
            reset_after: Duration::from_secs(settings.reset_after_seconds),
        }
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
    let command = match &config.command {
        Some(own) => {
            let custom = template_command != Some(own);
            if custom && origin == CommandOrigin::Api && !settings.allow_custom_commands {
                return Err(ResolveError::CustomCommandRefused {
                    field: "command".to_owned(),
                });
            }
            Some(own.clone())
        }
        None => template_command.cloned(),
    };
    let backoff = config
        .backoff
        .as_ref()
        .or(template.and_then(|t| t.backoff.as_ref()))
        .map(Backoff::from)
        .unwrap_or_default();
    let policy = RestartPolicy {
        restart: config
            .restart
            .or(template.and_then(|t| t.restart))
            .unwrap_or_default(),
        backoff,
        intensity: Intensity {
            max_restarts: config.retry_attempts,
            window: Duration::from_secs(settings.restart_window_seconds),
        },
        escalate: false,
    };
    let ready_pattern = config
        .ready_pattern
        .as_deref()
        .map(compile_ready_pattern)
        .transpose()
        .map_err(|message| FieldError::invalid("ready_pattern", message))?;
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
