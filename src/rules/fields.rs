//! The rules an agent's values follow wherever they are written — an agent's configuration,
//! a session's environment, a `[agents.templates.<TYPE>]` table — and [`FieldError`], which
//! names the refused value by its path so the caller can prefix it (`agents[1].command[0]`).
//!
//! They sit below `config` and `agent` so that both can check a value the same way: a
//! template can hold nothing an agent could not.

use std::collections::BTreeMap;

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
pub(crate) const MAX_COMMAND_ARGS: usize = 4096;
/// Longest single argument or environment value, in bytes (Linux's `MAX_ARG_STRLEN`).
pub(crate) const MAX_ARG_BYTES: usize = 131_072;
/// Most environment variables an agent may add.
const MAX_ENVIRONMENT: usize = 1024;
/// Longest environment variable name, in bytes.
const MAX_ENV_NAME_BYTES: usize = 256;
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

pub(crate) fn join_path(parent: &str, field: &str) -> String {
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

/// Checks arguments that follow a program given elsewhere (a Claude agent's `args`, the
/// `allowed_args` they are compared with); errors are relative to the list (`[2]`).
pub(crate) fn validate_arguments(arguments: &[String]) -> Result<(), FieldError> {
    if arguments.len() >= MAX_COMMAND_ARGS {
        return Err(FieldError::invalid(
            "",
            format!(
                "must have fewer than {MAX_COMMAND_ARGS} arguments, got {}",
                arguments.len()
            ),
        ));
    }
    for (index, argument) in arguments.iter().enumerate() {
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
