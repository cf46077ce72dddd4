//! What a session is: its configuration (the original service's session configuration, key
//! for key), its status, and the record the registry keeps and stores.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::agent::{in_range, validate_environment_at, AgentConfig, FieldError};
use crate::supervision::Strategy;

/// Longest session name, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// Longest working directory as given, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most tags on a session, and the longest tag in characters.
pub const MAX_TAGS: usize = 64;
/// Longest tag, in characters.
pub const MAX_TAG_CHARS: usize = 64;
/// Largest `custom_settings` document, serialized, in bytes.
pub const MAX_CUSTOM_SETTINGS_BYTES: usize = 64 * 1024;

/// The seed's session configuration. Missing fields take the seed's defaults; unknown fields
/// are refused. Ranges are checked by [`SessionConfig::validate`], so an error names the
/// field and the accepted range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// For people; 1–256 characters, no control or text-direction characters.
    pub name: String,
    /// Where the agents run, as given (the canonical form is in the session's validation).
    pub working_directory: String,
    /// Free text, at most 4,096 characters.
    #[serde(default)]
    pub description: String,
    /// Whether the git state is read and worktrees may be touched.
    #[serde(default = "yes")]
    pub git_enabled: bool,
    /// Whether runtime state is checkpointed every `save_interval_seconds`.
    #[serde(default = "yes")]
    pub auto_save: bool,
    /// Seconds between checkpoints (1–86400).
    #[serde(default = "default_save_interval")]
    pub save_interval_seconds: u64,
    /// Memory budget of the whole session, in MiB (1–1048576).
    #[serde(default = "default_max_memory")]
    pub max_memory_mb: u64,
    /// Most agents the session may have (1–1000).
    #[serde(default = "default_max_agents")]
    pub max_agents: u32,
    /// The agents.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// Variables every agent of the session gets.
    #[serde(default)]
    pub environment_variables: BTreeMap<String, String>,
    /// Free JSON object, kept as given.
    #[serde(default = "empty_object")]
    pub custom_settings: Value,
    /// What the session's Claude Code may cost, in USD: `cost_budget` alerts at 80 % and
    /// 100 % of it. `None`: no budget.
    #[serde(default)]
    pub cost_budget_usd: Option<f64>,
}

fn yes() -> bool {
    true
}
fn default_save_interval() -> u64 {
    60
}
fn default_max_memory() -> u64 {
    2048
}
fn default_max_agents() -> u32 {
    10
}
fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl SessionConfig {
    /// A configuration with the defaults.
    pub fn new(name: impl Into<String>, working_directory: impl Into<String>) -> Self {
        SessionConfig {
            name: name.into(),
            working_directory: working_directory.into(),
            description: String::new(),
            git_enabled: true,
            auto_save: true,
            save_interval_seconds: default_save_interval(),
            max_memory_mb: default_max_memory(),
            max_agents: default_max_agents(),
            agents: Vec::new(),
            environment_variables: BTreeMap::new(),
            custom_settings: empty_object(),
            cost_budget_usd: None,
        }
    }

    /// Checks every field on its own (the agents one by one; the list as a whole is checked
    /// when the agents are resolved).
    pub fn validate(&self) -> Result<(), FieldError> {
        validate_name(&self.name)?;
        validate_text(&self.description, "description", MAX_DESCRIPTION_CHARS)?;
        if self.working_directory.is_empty() {
            return Err(FieldError::invalid(
                "working_directory",
                "must not be empty",
            ));
        }
        if self.working_directory.len() > MAX_PATH_BYTES {
            return Err(FieldError::invalid(
                "working_directory",
                format!("must be at most {MAX_PATH_BYTES} bytes"),
            ));
        }
        in_range(
            self.save_interval_seconds,
            1,
            86_400,
            "save_interval_seconds",
        )?;
        in_range(self.max_memory_mb, 1, 1_048_576, "max_memory_mb")?;
        in_range(self.max_agents, 1, 1000, "max_agents")?;
        if self.agents.len() > self.max_agents as usize {
            return Err(FieldError::inconsistent(
                "agents",
                format!(
                    "has {} agents, over max_agents ({})",
                    self.agents.len(),
                    self.max_agents
                ),
            ));
        }
        for (i, agent) in self.agents.iter().enumerate() {
            agent
                .validate()
                .map_err(|e| e.within(&format!("agents[{i}]")))?;
        }
        validate_environment_at(&self.environment_variables, "environment_variables")?;
        validate_custom_settings(&self.custom_settings)?;
        validate_budget(self.cost_budget_usd)?;
        Ok(())
    }
}

/// Checks a session name (a clone's `new_name` and an import's name too: they become it).
pub(crate) fn validate_name(name: &str) -> Result<(), FieldError> {
    validate_label(name, "name", MAX_NAME_CHARS)
}

/// Checks text that names something (a session name, a tag): not blank, at most
/// `max_chars` characters, and nothing [`crate::names`] refuses.
fn validate_label(text: &str, field: &str, max_chars: usize) -> Result<(), FieldError> {
    if text.trim().is_empty() {
        return Err(FieldError::invalid(field, "must not be empty"));
    }
    validate_length(text, field, max_chars)?;
    match crate::names::forbidden_character(text) {
        Some(c) => Err(FieldError::invalid(field, crate::names::refusal(c))),
        None => Ok(()),
    }
}

fn validate_length(text: &str, field: &str, max_chars: usize) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {max_chars} characters, got {chars}"),
        ));
    }
    Ok(())
}

/// Checks free text (a description): newlines and tabs are fine there, other control
/// characters are not.
fn validate_text(text: &str, field: &str, max_chars: usize) -> Result<(), FieldError> {
    validate_length(text, field, max_chars)?;
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(FieldError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks `cost_budget_usd`: a finite number, at least 0.
fn validate_budget(budget: Option<f64>) -> Result<(), FieldError> {
    match budget {
        Some(usd) if !usd.is_finite() || usd < 0.0 => Err(FieldError::invalid(
            "cost_budget_usd",
            "must be a number of USD, at least 0 (null for no budget)",
        )),
        _ => Ok(()),
    }
}

/// Checks `custom_settings`: a JSON object of bounded size.
pub(crate) fn validate_custom_settings(value: &Value) -> Result<(), FieldError> {
    if !value.is_object() {
        return Err(FieldError::invalid(
            "custom_settings",
            "must be a JSON object",
        ));
    }
    let size = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_CUSTOM_SETTINGS_BYTES {
        return Err(FieldError::invalid(
            "custom_settings",
            format!("must be at most {MAX_CUSTOM_SETTINGS_BYTES} bytes of JSON, got {size}"),
        ));
    }
    Ok(())
}

/// Checks a tag list: at most 64 tags of 1–64 characters, each a name ([`crate::names`]).
pub(crate) fn validate_tags(tags: &[String]) -> Result<(), FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError::invalid(
            "tags",
            format!("must have at most {MAX_TAGS} tags, got {}", tags.len()),
        ));
    }
    for (i, tag) in tags.iter().enumerate() {
        validate_label(tag, &format!("tags[{i}]"), MAX_TAG_CHARS)?;
    }
    Ok(())
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Recorded, nothing started yet.
    Created,
    /// Its agents are starting.
    Initializing,
    /// Every agent that should run is running.
    Active,
    /// An agent failed; the others run.
    Degraded,
    /// Its agents are stopping for good.
    Terminating,
    /// Stopped for good; the record is kept until purged.
    Terminated,
    /// The ORCHESTRATOR failed, or the session cannot run (its directory vanished).
    Error,
}

impl SessionStatus {
    /// Every status.
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Created,
        SessionStatus::Initializing,
        SessionStatus::Active,
        SessionStatus::Degraded,
        SessionStatus::Terminating,
        SessionStatus::Terminated,
        SessionStatus::Error,
    ];

    /// The lowercase word used on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "created",
            SessionStatus::Initializing => "initializing",
            SessionStatus::Active => "active",
            SessionStatus::Degraded => "degraded",
            SessionStatus::Terminating => "terminating",
            SessionStatus::Terminated => "terminated",
            SessionStatus::Error => "error",
        }
    }

    /// Whether the session is over (its agents stopped for good).
    pub fn is_terminal(self) -> bool {
        matches!(self, SessionStatus::Terminating | SessionStatus::Terminated)
    }
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown session status {found:?}; expected one of created, initializing, active, degraded, terminating, terminated, error")]
pub struct UnknownStatus {
    /// The word given.
    pub found: String,
}

impl FromStr for SessionStatus {
    type Err = UnknownStatus;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        SessionStatus::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(word))
            .ok_or_else(|| UnknownStatus {
                found: word.to_string(),
            })
    }
}

/// A session as the registry keeps and stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Its id.
    pub id: Uuid,
    /// Its configuration.
    pub configuration: SessionConfig,
    /// Its status.
    pub status: SessionStatus,
    /// Tags for filtering.
    #[serde(default)]
    pub tags: Vec<String>,
    /// How a crash affects the other agents.
    #[serde(with = "strategy_word")]
    pub strategy: Strategy,
    /// Unix seconds.
    pub created_at: f64,
    /// Unix seconds of the last change.
    pub updated_at: f64,
    /// Unix seconds of the last activity (a change, an agent event, a hook event).
    pub last_activity: f64,
    /// Unix seconds at which it was terminated.
    #[serde(default)]
    pub terminated_at: Option<f64>,
    /// Why it is in `error`, for people.
    #[serde(default)]
    pub error_message: Option<String>,
    /// Restarts per agent, as last checkpointed; an agent that never restarted is absent.
    #[serde(default)]
    pub agent_restarts: BTreeMap<String, u64>,
    /// Activations per agent (starts, manual or not), as the original counted them.
    #[serde(default)]
    pub agent_activations: BTreeMap<String, u64>,
    /// The git state of the working directory, as last read (create, navigate); `None` when
    /// `git_enabled` is false or the directory is not in a repository.
    #[serde(default)]
    pub git: Option<Value>,
    /// The Claude session id (conversation) of each Claude agent, by agent name: assigned
    /// when the agent joins the session (create, import, clone and update give new ones),
    /// forgotten when it leaves, kept across restarts of the server. Never exported: a copy
    /// of a session never shares a conversation with it.
    #[serde(default)]
    pub claude_sessions: BTreeMap<String, Uuid>,
}

mod strategy_word {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::supervision::Strategy;

    pub(super) fn serialize<S: Serializer>(strategy: &Strategy, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(strategy.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Strategy, D::Error> {
        let word = String::deserialize(d)?;
        word.parse().map_err(serde::de::Error::custom)
    }
}

/// Now, in Unix seconds.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_configuration_parses_with_its_values() {
        let seed = r#"{
            "name": "Session Name",
            "working_directory": "/path/to/workspace",
            "description": "Session description",
            "git_enabled": true,
            "auto_save": true,
            "save_interval_seconds": 60,
            "max_memory_mb": 2048,
            "max_agents": 10,
            "agents": [{"agent_type": "BACKEND", "name": "backend-services", "enabled": true,
                        "priority": 2, "max_memory_mb": 512, "timeout_seconds": 300,
                        "retry_attempts": 3}],
            "environment_variables": {"NODE_ENV": "development"}
        }"#;
        let config: SessionConfig = serde_json::from_str(seed).unwrap();
        config.validate().unwrap();
        assert_eq!(config.agents[0].name, "backend-services");
        assert_eq!(config.environment_variables["NODE_ENV"], "development");
    }

    #[test]
    fn defaults_fill_what_is_missing_and_unknown_fields_are_refused() {
        let config: SessionConfig =
            serde_json::from_str(r#"{"name": "a", "working_directory": "/tmp"}"#).unwrap();
        assert_eq!(config, SessionConfig::new("a", "/tmp"));
        let err = serde_json::from_str::<SessionConfig>(
            r#"{"name": "a", "working_directory": "/tmp", "colour": 1}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let check = |edit: fn(&mut SessionConfig), field: &str| {
            let mut config = SessionConfig::new("a", "/tmp");
            edit(&mut config);
            assert_eq!(config.validate().unwrap_err().field, field);
        };
        check(|c| c.name = " ".into(), "name");
        check(|c| c.name = "x".repeat(257), "name");
        check(|c| c.name = "bell\u{7}".into(), "name");
        check(|c| c.working_directory = String::new(), "working_directory");
        check(|c| c.save_interval_seconds = 0, "save_interval_seconds");
        check(|c| c.max_memory_mb = 0, "max_memory_mb");
        check(|c| c.max_agents = 1001, "max_agents");
        check(|c| c.custom_settings = Value::Bool(true), "custom_settings");
        check(
            |c| {
                c.environment_variables.insert("1BAD".into(), "x".into());
            },
            "environment_variables.1BAD",
        );
        check(
            |c| {
                c.max_agents = 1;
                c.agents = vec![
                    AgentConfig::new(crate::agent::AgentType::Backend),
                    AgentConfig::new(crate::agent::AgentType::Frontend),
                ];
            },
            "agents",
        );
        check(
            |c| {
                let mut agent = AgentConfig::new(crate::agent::AgentType::Backend);
                agent.timeout_seconds = 0;
                c.agents = vec![agent];
            },
            "agents[0].timeout_seconds",
        );
    }

    #[test]
    fn statuses_round_trip_in_any_case() {
        for status in SessionStatus::ALL {
            assert_eq!(status.as_str().to_uppercase().parse(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{status}\""));
        }
        assert!("running".parse::<SessionStatus>().is_err());
    }

    #[test]
    fn tags_are_bounded() {
        assert!(validate_tags(&["a".into(), "b".into()]).is_ok());
        assert_eq!(validate_tags(&["".into()]).unwrap_err().field, "tags[0]");
        let many: Vec<String> = (0..65).map(|i| i.to_string()).collect();
        assert_eq!(validate_tags(&many).unwrap_err().field, "tags");
    }

    /// One rule for names (issue 19): a newline and U+202E were accepted in session names
    /// while ESC and NUL were refused. Every control and bidi character is refused in a name
    /// and a tag, with the field named; a description keeps its newlines and tabs.
    #[test]
    fn names_and_tags_refuse_every_control_and_bidi_character() {
        for bad in [
            "\n", "\t", "\r", "\u{1b}", "\0", "\u{7f}", "\u{85}", "\u{202e}", "\u{2066}",
            "\u{200f}", "\u{061c}",
        ] {
            let name = format!("evil{bad}name");
            let mut config = SessionConfig::new(name.clone(), "/tmp");
            let err = config.validate().unwrap_err();
            assert_eq!(err.field, "name", "{name:?}");
            assert!(err.message.contains("control or text-direction"), "{err}");
            let err = validate_tags(&["ok".into(), name.clone()]).unwrap_err();
            assert_eq!(err.field, "tags[1]", "{name:?}");
            config.name = "fine".into();
            config.description = format!("line one\n\tline two {bad}");
            let description = config.validate();
            match bad {
                "\n" | "\t" => assert!(description.is_ok(), "{bad:?}"),
                _ if bad.chars().all(crate::names::is_bidi_control) => {
                    assert!(description.is_ok(), "bidi text is free in a description")
                }
                _ => assert_eq!(description.unwrap_err().field, "description", "{bad:?}"),
            }
        }
        let mut config = SessionConfig::new("日本語 – déjà vu 🚀", "/tmp");
        assert!(config.validate().is_ok());
        config.name = "مرحبا".into();
        assert!(config.validate().is_ok());
    }
}
