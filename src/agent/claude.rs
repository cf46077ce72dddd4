//! Claude Code agents: an agent with `"claude"` runs the Claude Code CLI (the program of
//! `[agents.claude] command`, never one from a request) on a terminal, in its type's role,
//! with a conversation of its own that every later start resumes.
//!
//! - [`ClaudeConfig`]: the agent's `claude` key (`true`, or `model`, `permission_mode`,
//!   `args`) and its validation;
//! - `command`: the command line up to the conversation flags — the configured program,
//!   `--append-system-prompt <role>`, `--model`, `--permission-mode`, `--settings <hooks>`,
//!   the agent's `args`;
//! - [`assign_session_ids`]: the Claude session id (a UUID) of each Claude agent, which the
//!   session keeps with its record;
//! - `claude/conversation.rs`: what a spawn appends — `--session-id <id>` while no transcript
//!   of the conversation exists, `--resume <id>` once one does — and the refusal to start
//!   while any process of this user runs with the id in its argv.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::config::AgentConfig;
use crate::config::ClaudeSettings;
use crate::rules::{validate_arguments, AgentType, FieldError};

mod conversation;
mod telemetry;

pub(crate) use conversation::{conversation_flags, transcript_path};
pub(crate) use telemetry::{environment as telemetry_environment, Telemetry};

/// The permission modes Claude Code documents for `--permission-mode` (its CLI reference and
/// its "permission modes" page); `default` is the one that asks before every action.
pub const PERMISSION_MODES: [&str; 6] = [
    "default",
    "acceptEdits",
    "plan",
    "auto",
    "dontAsk",
    "bypassPermissions",
];

/// Longest `model`, in bytes: model ids and aliases are short words.
const MAX_MODEL_BYTES: usize = 256;

/// An agent's `claude` key: how its Claude Code runs. `true` is every default; `false` and
/// `null` are no Claude agent at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeConfig {
    /// `--model`: an alias (`sonnet`, `opus`) or a full model id; Claude Code's default
    /// when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// `--permission-mode`: one of [`PERMISSION_MODES`]; Claude Code's default when absent.
    #[serde(default)]
    pub permission_mode: Option<String>,
    /// Further arguments, after the server's own. From a request they need
    /// `agents.allow_custom_commands`, or each one listed in `[agents.claude] allowed_args`.
    #[serde(default)]
    pub args: Vec<String>,
}

/// Reads `claude`: `true` (defaults), `false` or `null` (none), or the options object (an
/// array, which serde would take for the fields in order, is refused like any other shape).
pub(super) fn claude_key<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<ClaudeConfig>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Null | Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(ClaudeConfig::default())),
        options @ Value::Object(_) => ClaudeConfig::deserialize(options)
            .map(Some)
            .map_err(de::Error::custom),
        other => Err(de::Error::custom(format!(
            "expected true, false, null or an object of model, permission_mode, args; got {other}"
        ))),
    }
}

impl ClaudeConfig {
    /// Checks every option; errors name the field relative to `claude` (`args[1]`).
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(model) = &self.model {
            validate_model(model)?;
        }
        if let Some(mode) = &self.permission_mode {
            if !PERMISSION_MODES.contains(&mode.as_str()) {
                return Err(FieldError::invalid(
                    "permission_mode",
                    format!(
                        "must be one of {}, got {mode:?}",
                        PERMISSION_MODES.join(", ")
                    ),
                ));
            }
        }
        validate_arguments(&self.args).map_err(|e| e.within("args"))
    }

    /// The first argument a request may not give without `agents.allow_custom_commands`
    /// (one that `allowed_args` does not list), as its index in `args`.
    pub(super) fn first_unlisted_arg(&self, settings: &ClaudeSettings) -> Option<usize> {
        self.args
            .iter()
            .position(|arg| !settings.allowed_args.contains(arg))
    }
}

/// A model is a word: not empty, no whitespace or control characters, and not starting with
/// `-`, which the CLI would read as an option.
fn validate_model(model: &str) -> Result<(), FieldError> {
    let refuse = |why: &str| Err(FieldError::invalid("model", why.to_owned()));
    if model.is_empty() {
        return refuse("must not be empty");
    }
    if model.len() > MAX_MODEL_BYTES {
        return refuse(&format!(
            "must be at most {MAX_MODEL_BYTES} bytes long, got {}",
            model.len()
        ));
    }
    if model.starts_with('-') {
        return refuse("must not start with `-`");
    }
    if model.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("must not contain whitespace or control characters");
    }
    Ok(())
}

/// The role an agent of `agent_type` plays, as Claude Code's appended system prompt: the
/// type's description and capabilities from the catalog.
pub(crate) fn role(agent_type: AgentType) -> String {
    let info = agent_type.info();
    let capabilities: Vec<String> = info
        .capabilities
        .iter()
        .map(|c| c.replace('_', " "))
        .collect();
    format!(
        "You are the {} agent of a Claude Code Dev Stack session: {}. Capabilities: {}.",
        agent_type.as_str().to_lowercase(),
        info.description,
        capabilities.join(", ")
    )
}

/// The command line of a Claude agent up to the conversation flags, which each spawn adds
/// ([`conversation_flags`]): the configured program, the role, the model and permission
/// mode when given, the server's hooks as `--settings` (Claude Code takes a file or a JSON
/// string there, and merges it over the user's files, which stay untouched), then the
/// agent's own arguments.
pub(crate) fn command(
    settings: &ClaudeSettings,
    agent_type: AgentType,
    config: &ClaudeConfig,
) -> Vec<String> {
    let mut argv = settings.command.clone();
    argv.push("--append-system-prompt".to_owned());
    argv.push(role(agent_type));
    if let Some(model) = &config.model {
        argv.push("--model".to_owned());
        argv.push(model.clone());
    }
    if let Some(mode) = &config.permission_mode {
        argv.push("--permission-mode".to_owned());
        argv.push(mode.clone());
    }
    // Before the agent's own arguments, so a `--settings` of theirs comes later and wins.
    if let Some(hooks) = &settings.hook_settings {
        argv.push("--settings".to_owned());
        argv.push(hooks.clone());
    }
    argv.extend(config.args.iter().cloned());
    argv
}

/// The Claude session id of every Claude agent of `agents`: the one in `previous` for an
/// agent that had one, a new UUID for an agent added now. Agents that are not (or no longer)
/// Claude agents have none, so removing an agent forgets its conversation, and a new session
/// (create, import, clone: `previous` empty) never shares one with another.
pub fn assign_session_ids(
    previous: &BTreeMap<String, Uuid>,
    agents: &[AgentConfig],
) -> BTreeMap<String, Uuid> {
    agents
        .iter()
        .filter(|agent| agent.claude.is_some())
        .map(|agent| {
            let id = previous
                .get(&agent.name)
                .copied()
                .unwrap_or_else(Uuid::new_v4);
            (agent.name.clone(), id)
        })
        .collect()
}

#[cfg(test)]
mod tests;
