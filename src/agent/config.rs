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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AgentConfig)]
struct AgentConfigInput {
    agent_type: AgentType,
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    name: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    #[schema(maximum = 100)]
    priority: Option<u32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_048_576)]
    max_memory_mb: Option<u64>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86_400)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    #[schema(maximum = 100_000)]
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
    #[schema(schema_with = restart_schema)]
    restart: Option<Restart>,
    #[serde(default)]
    backoff: Option<BackoffSettings>,
}

/// The OpenAPI schema of an agent configuration is the shape clients send (every key but
/// `agent_type` optional, nothing unknown); what the server writes back has every key set.
impl utoipa::PartialSchema for AgentConfig {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        <AgentConfigInput as utoipa::PartialSchema>::schema()
    }
}

impl utoipa::ToSchema for AgentConfig {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <AgentConfigInput as utoipa::ToSchema>::schemas(schemas);
    }
}

/// `restart`: a restart word or null.
fn restart_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some([
            Value::from("permanent"),
            Value::from("transient"),
            Value::from("temporary"),
            Value::Null,
        ]))
        .build()
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
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
            kind: FieldErrorKind::Invalid,
        }
    }

    pub(crate) fn inconsistent(field: impl Into<String>, message: impl Into<String>) -> Self {
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

pub(crate) fn in_range<T>(value: T, min: T, max: T, field: &str) -> Result<(), FieldError>
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

/// Checks a set of environment variables (an agent's `environment`, a session's
/// `environment_variables`); `key` names the set in errors.
pub(crate) fn validate_environment_at(
    environment: &BTreeMap<String, String>,
    key: &str,
) -> Result<(), FieldError> {
    if environment.len() > MAX_ENVIRONMENT {
        return Err(FieldError::invalid(
            key,
            format!(
                "must have at most {MAX_ENVIRONMENT} variables, got {}",
                environment.len()
            ),
        ));
    }
    for (name, value) in environment {
        let field = format!("{key}.{name}");
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
        validate_environment_at(&self.environment, "environment")?;
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::AgentTemplate;
    use AgentType::*;

    fn settings(allow_custom_commands: bool) -> AgentSettings {
        AgentSettings {
            allow_custom_commands,
            stop_grace_ms: 5000,
            restart_window_seconds: 60,
            cgroups: crate::config::CgroupMode::Auto,
            templates: BTreeMap::new(),
        }
    }

    fn with_template(
        mut settings: AgentSettings,
        t: AgentType,
        template: AgentTemplate,
    ) -> AgentSettings {
        settings.templates.insert(t.as_str().to_owned(), template);
        settings
    }

    fn template() -> AgentTemplate {
        AgentTemplate {
            command: None,
            depends_on: None,
            restart: None,
            backoff: None,
        }
    }

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn parse(value: Value) -> Result<AgentConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn agents(types: &[AgentType]) -> Vec<AgentConfig> {
        types.iter().map(|&t| AgentConfig::new(t)).collect()
    }

    fn named(t: AgentType, name: &str) -> AgentConfig {
        AgentConfig {
            name: name.to_owned(),
            ..AgentConfig::new(t)
        }
    }

    #[test]
    fn the_seed_session_configuration_parses_as_agent_configs() {
        let seed = r#"{
            "name": "Session Name",
            "agents": [
                {
                    "agent_type": "BACKEND",
                    "name": "backend-services",
                    "enabled": true,
                    "priority": 2,
                    "max_memory_mb": 512,
                    "timeout_seconds": 300,
                    "retry_attempts": 3
                }
            ]
        }"#;
        let session: Value = serde_json::from_str(seed).unwrap();
        let agents: Vec<AgentConfig> = serde_json::from_value(session["agents"].clone()).unwrap();
        let expected = AgentConfig {
            max_memory_mb: Some(512),
            ..AgentConfig::new(Backend)
        };
        assert_eq!(agents, vec![expected]);
        validate_agents(&agents, &settings(false)).unwrap();
    }

    #[test]
    fn a_type_alone_gets_every_default_and_serializes_complete() {
        let config = parse(json!({"agent_type": "database"})).unwrap();
        assert_eq!(config, AgentConfig::new(Database));
        assert_eq!(
            serde_json::to_value(&config).unwrap(),
            json!({
                "agent_type": "DATABASE",
                "name": "database-architect",
                "enabled": true,
                "priority": 3,
                "max_memory_mb": null,
                "timeout_seconds": 300,
                "retry_attempts": 3,
                "custom_config": {},
                "command": null,
                "ready_pattern": null,
                "environment": {},
                "limits": null,
                "depends_on": null,
                "restart": null,
                "backoff": null,
            })
        );
    }

    #[test]
    fn null_counts_as_absent() {
        let config = parse(json!({
            "agent_type": "Api", "name": null, "enabled": null, "priority": null,
            "timeout_seconds": null, "retry_attempts": null, "custom_config": null,
            "environment": null, "restart": null, "backoff": null, "limits": null,
        }))
        .unwrap();
        assert_eq!(config, AgentConfig::new(Api));
    }

    #[test]
    fn a_full_configuration_survives_a_round_trip() {
        let input = json!({
            "agent_type": "quality",
            "name": "qa.1",
            "enabled": false,
            "priority": 0,
            "max_memory_mb": 1024,
            "timeout_seconds": 30,
            "retry_attempts": 0,
            "custom_config": {"suite": ["unit", "e2e"]},
            "command": ["qa-agent", "--watch"],
            "ready_pattern": "^ready$",
            "environment": {"NODE_ENV": "test"},
            "limits": {"address_space_mb": 4096, "open_files": 256, "cpu_seconds": 600, "nice": 5},
            "depends_on": ["backend-services"],
            "restart": "Transient",
            "backoff": {"initial_ms": 50, "max_ms": 500, "multiplier": 1.5, "reset_after_seconds": 10},
        });
        let config = parse(input).unwrap();
        config.validate().unwrap();
        assert_eq!(config.agent_type, Quality);
        assert_eq!(config.restart, Some(Restart::Transient));
        let output = serde_json::to_value(&config).unwrap();
        assert_eq!(output["agent_type"], "QUALITY");
        assert_eq!(output["restart"], "transient");
        assert_eq!(parse(output.clone()).unwrap(), config);
        assert_eq!(
            serde_json::to_value(parse(output.clone()).unwrap()).unwrap(),
            output
        );
    }

    #[test]
    fn a_partial_backoff_takes_the_defaults() {
        let config = parse(json!({"agent_type": "API", "backoff": {"max_ms": 1000}})).unwrap();
        assert_eq!(
            config.backoff,
            Some(BackoffSettings {
                max_ms: 1000,
                ..BackoffSettings::default()
            })
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        for (input, field) in [
            (json!({"agent_type": "API", "comand": ["x"]}), "comand"),
            (
                json!({"agent_type": "API", "limits": {"nice": 1, "stack": 2}}),
                "stack",
            ),
            (
                json!({"agent_type": "API", "backoff": {"jitter": 1}}),
                "jitter",
            ),
        ] {
            let message = parse(input).unwrap_err().to_string();
            assert!(
                message.contains(&format!("unknown field `{field}`")),
                "{message}"
            );
        }
    }

    #[test]
    fn a_missing_or_unknown_type_is_refused_naming_every_type() {
        let message = parse(json!({"name": "x"})).unwrap_err().to_string();
        assert!(message.contains("missing field `agent_type`"), "{message}");
        let message = parse(json!({"agent_type": "WIZARD"}))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("unknown agent type \"WIZARD\""),
            "{message}"
        );
        for t in AgentType::ALL {
            assert!(message.contains(t.as_str()), "{message} lacks {t}");
        }
    }

    #[test]
    fn a_bad_restart_word_is_refused_naming_the_words() {
        let message = parse(json!({"agent_type": "API", "restart": "always"}))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("permanent, transient, temporary"),
            "{message}"
        );
    }

    /// Applies `change` to a default agent and returns the field of the error, if any.
    fn refused_field(change: impl FnOnce(&mut AgentConfig)) -> Option<String> {
        let mut config = AgentConfig::new(Backend);
        change(&mut config);
        config.validate().err().map(|error| {
            assert_eq!(error.kind, FieldErrorKind::Invalid);
            assert!(error.to_string().starts_with(&error.field), "{error}");
            error.field
        })
    }

    fn backoff(change: impl FnOnce(&mut BackoffSettings)) -> Option<BackoffSettings> {
        let mut backoff = BackoffSettings::default();
        change(&mut backoff);
        Some(backoff)
    }

    fn limits(change: impl FnOnce(&mut Limits)) -> Option<Limits> {
        let mut limits = Limits::default();
        change(&mut limits);
        Some(limits)
    }

    #[test]
    fn every_range_accepts_its_bounds_and_refuses_one_step_beyond() {
        type Change = Box<dyn FnOnce(&mut AgentConfig)>;
        let cases: Vec<(&str, Change, Change)> = vec![
            (
                "priority",
                Box::new(|c| c.priority = 100),
                Box::new(|c| c.priority = 101),
            ),
            (
                "max_memory_mb",
                Box::new(|c| c.max_memory_mb = Some(1)),
                Box::new(|c| c.max_memory_mb = Some(0)),
            ),
            (
                "max_memory_mb",
                Box::new(|c| c.max_memory_mb = Some(1_048_576)),
                Box::new(|c| c.max_memory_mb = Some(1_048_577)),
            ),
            (
                "timeout_seconds",
                Box::new(|c| c.timeout_seconds = 1),
                Box::new(|c| c.timeout_seconds = 0),
            ),
            (
                "timeout_seconds",
                Box::new(|c| c.timeout_seconds = 86_400),
                Box::new(|c| c.timeout_seconds = 86_401),
            ),
            (
                "retry_attempts",
                Box::new(|c| c.retry_attempts = 100_000),
                Box::new(|c| c.retry_attempts = 100_001),
            ),
            (
                "backoff.initial_ms",
                Box::new(|c| {
                    c.backoff = backoff(|b| {
                        b.initial_ms = 600_000;
                        b.max_ms = 600_000
                    })
                }),
                Box::new(|c| {
                    c.backoff = backoff(|b| {
                        b.initial_ms = 600_001;
                        b.max_ms = 700_000
                    })
                }),
            ),
            (
                "backoff.max_ms",
                Box::new(|c| {
                    c.backoff = backoff(|b| {
                        b.initial_ms = 500;
                        b.max_ms = 500
                    })
                }),
                Box::new(|c| {
                    c.backoff = backoff(|b| {
                        b.initial_ms = 500;
                        b.max_ms = 499
                    })
                }),
            ),
            (
                "backoff.max_ms",
                Box::new(|c| c.backoff = backoff(|b| b.max_ms = 3_600_000)),
                Box::new(|c| c.backoff = backoff(|b| b.max_ms = 3_600_001)),
            ),
            (
                "backoff.multiplier",
                Box::new(|c| c.backoff = backoff(|b| b.multiplier = 1.0)),
                Box::new(|c| c.backoff = backoff(|b| b.multiplier = 0.999)),
            ),
            (
                "backoff.multiplier",
                Box::new(|c| c.backoff = backoff(|b| b.multiplier = 10.0)),
                Box::new(|c| c.backoff = backoff(|b| b.multiplier = 10.001)),
            ),
            (
                "backoff.reset_after_seconds",
                Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 1)),
                Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 0)),
            ),
            (
                "backoff.reset_after_seconds",
                Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 86_400)),
                Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 86_401)),
            ),
            (
                "limits.nice",
                Box::new(|c| c.limits = limits(|l| l.nice = Some(-20))),
                Box::new(|c| c.limits = limits(|l| l.nice = Some(-21))),
            ),
            (
                "limits.nice",
                Box::new(|c| c.limits = limits(|l| l.nice = Some(19))),
                Box::new(|c| c.limits = limits(|l| l.nice = Some(20))),
            ),
            (
                "limits.address_space_mb",
                Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(1))),
                Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(0))),
            ),
            (
                "limits.address_space_mb",
                Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(134_217_728))),
                Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(134_217_729))),
            ),
            (
                "limits.open_files",
                Box::new(|c| c.limits = limits(|l| l.open_files = Some(1_048_576))),
                Box::new(|c| c.limits = limits(|l| l.open_files = Some(1_048_577))),
            ),
            (
                "limits.cpu_seconds",
                Box::new(|c| c.limits = limits(|l| l.cpu_seconds = Some(31_536_000))),
                Box::new(|c| c.limits = limits(|l| l.cpu_seconds = Some(31_536_001))),
            ),
            (
                "name",
                Box::new(|c| c.name = "a".repeat(128)),
                Box::new(|c| c.name = "a".repeat(129)),
            ),
            (
                "name",
                Box::new(|c| c.name = "A-z_0.9".to_owned()),
                Box::new(|c| c.name = String::new()),
            ),
            (
                "name",
                Box::new(|c| c.name = "x".to_owned()),
                Box::new(|c| c.name = "a b".to_owned()),
            ),
            (
                "depends_on[1]",
                Box::new(|c| c.depends_on = Some(argv(&["a", "b"]))),
                Box::new(|c| c.depends_on = Some(argv(&["a", "b/c"]))),
            ),
            (
                "command",
                Box::new(|c| c.command = Some(argv(&["x"]))),
                Box::new(|c| c.command = Some(vec![])),
            ),
            (
                "command[0]",
                Box::new(|c| c.command = Some(argv(&["x", ""]))),
                Box::new(|c| c.command = Some(argv(&["", "x"]))),
            ),
            (
                "command[1]",
                Box::new(|c| c.command = Some(argv(&["x", "a b"]))),
                Box::new(|c| c.command = Some(argv(&["x", "a\0b"]))),
            ),
            (
                "command[1]",
                Box::new(|c| c.command = Some(vec!["x".into(), "a".repeat(MAX_ARG_BYTES)])),
                Box::new(|c| c.command = Some(vec!["x".into(), "a".repeat(MAX_ARG_BYTES + 1)])),
            ),
            (
                "command",
                Box::new(|c| c.command = Some(vec!["x".into(); MAX_COMMAND_ARGS])),
                Box::new(|c| c.command = Some(vec!["x".into(); MAX_COMMAND_ARGS + 1])),
            ),
            (
                "ready_pattern",
                Box::new(|c| c.ready_pattern = Some(r"^listening on \d+$".into())),
                Box::new(|c| c.ready_pattern = Some("(unclosed".into())),
            ),
            (
                "ready_pattern",
                Box::new(|c| c.ready_pattern = Some("a".repeat(MAX_PATTERN_BYTES))),
                Box::new(|c| c.ready_pattern = Some("a".repeat(MAX_PATTERN_BYTES + 1))),
            ),
            (
                "ready_pattern",
                Box::new(|c| c.ready_pattern = Some(r"\w{10}".into())),
                Box::new(|c| c.ready_pattern = Some(r"\w{1000}{1000}".into())),
            ),
            (
                "environment.1X",
                Box::new(|c| {
                    c.environment.insert("_X1".into(), "v".into());
                }),
                Box::new(|c| {
                    c.environment.insert("1X".into(), "v".into());
                }),
            ),
            (
                "environment.A-B",
                Box::new(|c| {
                    c.environment.insert("AB".into(), String::new());
                }),
                Box::new(|c| {
                    c.environment.insert("A-B".into(), "v".into());
                }),
            ),
            (
                "environment.CLAUDE_SESSION_ID",
                Box::new(|c| {
                    c.environment.insert("CLAUDE_SESSION".into(), "v".into());
                }),
                Box::new(|c| {
                    c.environment.insert("CLAUDE_SESSION_ID".into(), "v".into());
                }),
            ),
            (
                "environment.SESSION_MANAGER_URL",
                Box::new(|c| {
                    c.environment
                        .insert("session_manager_url".into(), "v".into());
                }),
                Box::new(|c| {
                    c.environment
                        .insert("SESSION_MANAGER_URL".into(), "v".into());
                }),
            ),
            (
                "environment.X",
                Box::new(|c| {
                    c.environment.insert("X".into(), "a=b c".into());
                }),
                Box::new(|c| {
                    c.environment.insert("X".into(), "a\0".into());
                }),
            ),
            (
                "custom_config",
                Box::new(|c| c.custom_config = json!({"a": [1, null]})),
                Box::new(|c| c.custom_config = json!([1])),
            ),
        ];
        for (field, inside, outside) in cases {
            assert_eq!(refused_field(inside), None, "{field}: valid value refused");
            assert_eq!(refused_field(outside).as_deref(), Some(field), "{field}");
        }
    }

    #[test]
    fn a_range_error_names_the_field_and_the_range() {
        let error = AgentConfig {
            timeout_seconds: 0,
            ..AgentConfig::new(Api)
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timeout_seconds must be between 1 and 86400, got 0"
        );
        assert_eq!(
            error.within("agents[3]").to_string(),
            "agents[3].timeout_seconds must be between 1 and 86400, got 0"
        );
    }

    #[test]
    fn paths_join_fields_and_indices() {
        let error = FieldError::invalid("[2]", "x")
            .within("command")
            .within("agents[0]");
        assert_eq!(error.field, "agents[0].command[2]");
        assert_eq!(
            FieldError::invalid("", "x").within("command").field,
            "command"
        );
    }

    #[test]
    fn duplicate_names_are_refused_at_the_second_one() {
        let list = vec![
            AgentConfig::new(Orchestrator),
            AgentConfig::new(Backend),
            named(Frontend, "backend-services"),
        ];
        let error = validate_agents(&list, &settings(false)).unwrap_err();
        assert_eq!(error.field, "agents[2].name");
        assert_eq!(error.kind, FieldErrorKind::Inconsistent);
        assert!(error.message.contains("agents[1]"), "{error}");
    }

    #[test]
    fn an_agent_error_is_named_from_the_session() {
        let mut list = agents(&[Orchestrator, Backend]);
        list[1].backoff = backoff(|b| b.max_ms = 1);
        let error = validate_agents(&list, &settings(false)).unwrap_err();
        assert_eq!(error.field, "agents[1].backoff.max_ms");
    }

    #[test]
    fn depends_on_must_name_an_agent_of_the_session() {
        let mut list = agents(&[Orchestrator, Backend]);
        list[1].depends_on = Some(argv(&["master-orchestrator", "ghost"]));
        let error = validate_agents(&list, &settings(false)).unwrap_err();
        assert_eq!(error.field, "agents[1].depends_on[1]");
        assert_eq!(error.kind, FieldErrorKind::Inconsistent);
        assert!(error.message.contains("\"ghost\""), "{error}");
    }

    #[test]
    fn an_explicit_cycle_is_named() {
        let mut list = vec![named(Api, "a"), named(Api, "b")];
        list[0].depends_on = Some(argv(&["b"]));
        list[1].depends_on = Some(argv(&["a"]));
        let error = validate_agents(&list, &settings(false)).unwrap_err();
        assert_eq!(error.kind, FieldErrorKind::Inconsistent);
        assert!(error.field == "agents[0].depends_on" || error.field == "agents[1].depends_on");
        assert!(
            error.message == "dependency cycle: a -> b -> a"
                || error.message == "dependency cycle: b -> a -> b",
            "{error}"
        );
    }

    #[test]
    fn a_cycle_through_default_dependencies_is_found() {
        // The orchestrator waits for the backend, which by default waits for the orchestrator.
        let mut list = agents(&[Orchestrator, Backend]);
        list[0].depends_on = Some(argv(&["backend-services"]));
        let error = validate_agents(&list, &settings(false)).unwrap_err();
        assert!(error.message.starts_with("dependency cycle: "), "{error}");
        assert!(error.message.contains("master-orchestrator"), "{error}");
        assert!(error.message.contains("backend-services"), "{error}");
    }

    #[test]
    fn default_dependencies_apply_only_over_the_types_present() {
        let s = settings(false);
        // DEVOPS waits for BACKEND, DATABASE and SECURITY; only DATABASE is here.
        let list = agents(&[Devops, Database]);
        assert_eq!(
            effective_depends_on(&list[0], &list, &s),
            argv(&["database-architect"])
        );
        // DATABASE waits for BACKEND, which is absent: nothing.
        assert!(effective_depends_on(&list[1], &list, &s).is_empty());
        let full = agents(&AgentType::ALL);
        validate_agents(&full, &s).unwrap();
        let monitoring = &full[11];
        assert_eq!(
            effective_depends_on(monitoring, &full, &s),
            argv(&["backend-services", "performance-optimization"])
        );
        assert!(effective_depends_on(&full[0], &full, &s).is_empty());
    }

    #[test]
    fn every_agent_of_a_dependency_type_is_waited_for() {
        let list = vec![
            named(Backend, "api-server"),
            named(Backend, "worker"),
            AgentConfig::new(Database),
        ];
        assert_eq!(
            effective_depends_on(&list[2], &list, &settings(false)),
            argv(&["api-server", "worker"])
        );
    }

    #[test]
    fn explicit_depends_on_replaces_the_defaults() {
        let mut list = agents(&[Orchestrator, Backend, Database]);
        list[2].depends_on = Some(argv(&["master-orchestrator"]));
        assert_eq!(
            effective_depends_on(&list[2], &list, &settings(false)),
            argv(&["master-orchestrator"])
        );
        list[2].depends_on = Some(vec![]);
        assert!(effective_depends_on(&list[2], &list, &settings(false)).is_empty());
    }

    #[test]
    fn a_template_depends_on_replaces_the_defaults_over_the_names_present() {
        let s = with_template(
            settings(false),
            Database,
            AgentTemplate {
                depends_on: Some(argv(&["master-orchestrator", "not-in-this-session"])),
                ..template()
            },
        );
        let mut list = agents(&[Orchestrator, Backend, Database]);
        assert_eq!(
            effective_depends_on(&list[2], &list, &s),
            argv(&["master-orchestrator"])
        );
        list[2].depends_on = Some(argv(&["backend-services"]));
        assert_eq!(
            effective_depends_on(&list[2], &list, &s),
            argv(&["backend-services"])
        );
    }

    #[test]
    fn without_any_command_an_agent_is_logical() {
        let list = agents(&[Backend]);
        let resolved = resolve(&list[0], &list, &settings(false), CommandOrigin::Api).unwrap();
        assert!(resolved.is_logical());
        assert!(resolved.depends_on.is_empty());
    }

    #[test]
    fn the_template_command_is_used_when_the_agent_names_none() {
        let s = with_template(
            settings(false),
            Backend,
            AgentTemplate {
                command: Some(argv(&["backend-agent", "--serve"])),
                ..template()
            },
        );
        let list = agents(&[Backend, Frontend]);
        let resolved = resolve(&list[0], &list, &s, CommandOrigin::Api).unwrap();
        assert_eq!(resolved.command, Some(argv(&["backend-agent", "--serve"])));
        // Other types do not inherit it.
        let frontend = resolve(&list[1], &list, &s, CommandOrigin::Api).unwrap();
        assert!(frontend.is_logical());
    }

    #[test]
    fn a_custom_command_from_the_api_is_refused_while_disabled() {
        let mut list = agents(&[Orchestrator, Backend]);
        list[1].command = Some(argv(&["sh", "-c", "anything"]));
        let refused = resolve_agents(&list, &settings(false), CommandOrigin::Api).unwrap_err();
        assert_eq!(
            refused,
            ResolveError::CustomCommandRefused {
                field: "agents[1].command".to_owned()
            }
        );
        assert_eq!(refused.field(), "agents[1].command");
        let accepted = resolve_agents(&list, &settings(true), CommandOrigin::Api).unwrap();
        assert_eq!(accepted[1].command, Some(argv(&["sh", "-c", "anything"])));
        // Restored from our own storage, it was accepted once already.
        let restored = resolve_agents(&list, &settings(false), CommandOrigin::Trusted).unwrap();
        assert_eq!(restored[1].command, Some(argv(&["sh", "-c", "anything"])));
    }

    #[test]
    fn the_template_command_is_never_custom() {
        let s = with_template(
            settings(false),
            Backend,
            AgentTemplate {
                command: Some(argv(&["backend-agent"])),
                ..template()
            },
        );
        let mut list = agents(&[Backend]);
        list[0].command = Some(argv(&["backend-agent"]));
        let resolved = resolve(&list[0], &list, &s, CommandOrigin::Api).unwrap();
        assert_eq!(resolved.command, Some(argv(&["backend-agent"])));
        list[0].command = Some(argv(&["backend-agent", "--extra"]));
        assert!(matches!(
            resolve(&list[0], &list, &s, CommandOrigin::Api),
            Err(ResolveError::CustomCommandRefused { .. })
        ));
    }

    #[test]
    fn policy_comes_from_the_agent_then_the_template_then_the_defaults() {
        let template_backoff = BackoffSettings {
            initial_ms: 10,
            max_ms: 20,
            multiplier: 1.0,
            reset_after_seconds: 5,
        };
        let s = with_template(
            settings(false),
            Api,
            AgentTemplate {
                restart: Some(Restart::Transient),
                backoff: Some(template_backoff.clone()),
                ..template()
            },
        );
        let mut list = agents(&[Backend, Api]);
        list[1].retry_attempts = 7;
        let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
        assert_eq!(
            resolved[0].policy,
            RestartPolicy {
                intensity: Intensity {
                    max_restarts: 3,
                    window: Duration::from_secs(60)
                },
                ..RestartPolicy::default()
            }
        );
        assert_eq!(resolved[1].policy.restart, Restart::Transient);
        assert_eq!(resolved[1].policy.backoff, Backoff::from(&template_backoff));
        assert_eq!(resolved[1].policy.backoff.max, Duration::from_millis(20));
        assert_eq!(resolved[1].policy.intensity.max_restarts, 7);
        assert!(!resolved[1].policy.escalate);

        list[1].restart = Some(Restart::Temporary);
        list[1].backoff = Some(BackoffSettings::default());
        let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
        assert_eq!(resolved[1].policy.restart, Restart::Temporary);
        assert_eq!(resolved[1].policy.backoff, Backoff::default());
    }

    #[test]
    fn everything_else_is_carried_over() {
        let mut config = named(Monitoring, "watcher");
        config.enabled = false;
        config.priority = 42;
        config.timeout_seconds = 12;
        config.max_memory_mb = Some(256);
        config.ready_pattern = Some(r"^ready on port \d+$".to_owned());
        config
            .environment
            .insert("LEVEL".to_owned(), "debug".to_owned());
        config.limits = limits(|l| l.nice = Some(10));
        let mut s = settings(false);
        s.stop_grace_ms = 1500;
        s.restart_window_seconds = 600;
        let list = vec![AgentConfig::new(Backend), config];
        let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
        let agent = &resolved[1];
        assert_eq!(agent.name, "watcher");
        assert_eq!(agent.agent_type, Monitoring);
        assert!(!agent.enabled);
        assert_eq!(agent.priority, 42);
        assert_eq!(agent.start_timeout, Duration::from_secs(12));
        assert_eq!(agent.stop_grace, Duration::from_millis(1500));
        assert_eq!(agent.policy.intensity.window, Duration::from_secs(600));
        assert_eq!(agent.max_memory_mb, Some(256));
        assert_eq!(agent.environment["LEVEL"], "debug");
        assert_eq!(agent.limits.nice, Some(10));
        assert_eq!(agent.depends_on, argv(&["backend-services"]));
        let pattern = agent.ready_pattern.as_ref().unwrap();
        assert!(pattern.is_match("ready on port 8080"));
        assert!(!pattern.is_match("not ready on port 8080"));
    }

    #[test]
    fn resolve_refuses_an_invalid_configuration() {
        let mut config = AgentConfig::new(Api);
        config.ready_pattern = Some("[".to_owned());
        let error = resolve(&config, &[], &settings(true), CommandOrigin::Trusted).unwrap_err();
        assert_eq!(error.field(), "ready_pattern");
        assert!(
            error.to_string().contains("not a valid regular expression"),
            "{error}"
        );
        assert!(!error.to_string().contains('\n'), "{error}");
    }
}
