//! Export and import: a session as a self-contained, versioned JSON document (the `snapshot`
//! of `POST /sessions/{id}/export`, the `session_data` of `POST /sessions/import`).
//!
//! The configuration is [`SessionConfig`] itself, so an export carries exactly what the
//! session stores, and export → import → export is identical except ids and times.
//!
//! Import is strict: [`FORMAT_VERSION`] is the only way the format evolves, so a key this
//! version does not know is a mistake (a typo, or a newer writer that should have bumped the
//! version) and is refused rather than silently dropped. Every error names the field from
//! `session_data` down, e.g. `session_data.configuration.agents[0].agent_type`.
//!
//! What import does not judge: the working directory's path policy (`paths::PathPolicy`, run
//! by the registry on the directory it will actually use), the agents as a list (unique
//! names, dependencies, templates — `agent::resolve_agents` at start), and the size of the
//! whole document (the HTTP layer's body limit).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::model::{now, validate_tags, SessionConfig, SessionRecord, MAX_PATH_BYTES};
use crate::agent::{is_agent_name, FieldError};
use crate::supervision::Strategy;

/// The snapshot format this server writes and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Most shared-context keys a snapshot may carry.
pub const MAX_SHARED_KEYS: usize = 10_000;
/// Longest shared-context key, in characters.
pub const MAX_SHARED_KEY_CHARS: usize = 256;
/// Most entries in `agent_states` and `context.active_agents` (a session's `max_agents` cap).
const MAX_AGENT_ENTRIES: usize = 1000;
/// Longest agent state word, branch name or commit id, in characters.
const MAX_WORD_CHARS: usize = 256;
/// How much of a field path or a refused value an error repeats, in characters.
const MAX_ECHO_CHARS: usize = 256;
/// Deepest nesting an import accepts: serde_json's own parser stops at 128, so this only
/// matters for a document built some other way.
const MAX_DEPTH: usize = 128;
/// Where an import's document sits in the request; every error path starts here.
const ROOT: &str = "session_data";

/// A session exported: its configuration, runtime context and state, with the original
/// service's keys plus `tags` and `strategy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The exported session's id (an import gets a new one unless asked to keep it).
    pub session_id: Uuid,
    /// When it was exported, Unix seconds.
    pub timestamp: f64,
    /// The session's configuration, as stored.
    pub configuration: SessionConfig,
    /// Its runtime context.
    pub context: SnapshotContext,
    /// Its metrics when asked for (`include_metrics`), else an empty object.
    #[serde(default = "empty_object")]
    pub metrics: Value,
    /// Each agent's state word (`running`, `failed`, …) at export.
    #[serde(default)]
    pub agent_states: BTreeMap<String, String>,
    /// What the working directory looked like: `working_directory`, `exists`, `is_directory`.
    #[serde(default = "empty_object")]
    pub file_system_state: Value,
    /// The full git state, when git is enabled and the directory is a repository.
    #[serde(default)]
    pub git_state: Option<Value>,
    /// The session's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Its restart strategy word (`one_for_one`, `rest_for_one`, `one_for_all`).
    #[serde(default = "default_strategy")]
    pub strategy: String,
}

/// The session's `context` object as the original service exported it, plus `shared`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotContext {
    /// The session's id; must equal the snapshot's.
    pub session_id: Uuid,
    /// The working directory.
    pub current_directory: String,
    /// The checked-out branch, if known.
    #[serde(default)]
    pub git_branch: Option<String>,
    /// The head commit, if known.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// Names of the agents running at export.
    #[serde(default)]
    pub active_agents: Vec<String>,
    /// Kept for the original's shape; this server records none.
    #[serde(default)]
    pub environment_state: Map<String, Value>,
    /// Kept for the original's shape; this server records none.
    #[serde(default)]
    pub user_preferences: Map<String, Value>,
    /// The session's last activity, Unix seconds.
    pub last_activity: f64,
    /// The session's shared key/value context.
    #[serde(default)]
    pub shared: Map<String, Value>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn default_strategy() -> String {
    Strategy::default().as_str().to_owned()
}

/// The `metrics` an export carries: each agent's restart and activation counts. Typed so
/// the snapshot's keys are written down once, not as a JSON literal.
#[derive(Serialize)]
struct ExportedMetrics<'a> {
    agent_restarts: &'a BTreeMap<String, u64>,
    agent_activations: &'a BTreeMap<String, u64>,
}

/// The metrics of `record` as an export carries them (`metrics` when `include_metrics`).
pub(crate) fn metrics_of(record: &SessionRecord) -> Value {
    let metrics = ExportedMetrics {
        agent_restarts: &record.agent_restarts,
        agent_activations: &record.agent_activations,
    };
    // Maps with string keys and integers always serialize; an empty object is the fallback
    // an import reads as "no metrics" anyway.
    serde_json::to_value(metrics).unwrap_or_else(|_| empty_object())
}

/// A snapshot of `record`: its shared context, each agent's state word and, when given, its
/// git state (`git_branch` and `git_commit` are read from its `branch` and `head_commit`);
/// `metrics` only with `include_metrics`. Makes one `stat` of the working directory for
/// `file_system_state`.
pub fn export(
    record: &SessionRecord,
    shared_context: &[(String, Value)],
    agent_states: &BTreeMap<String, String>,
    git: Option<Value>,
    include_metrics: bool,
    metrics: Value,
) -> Snapshot {
    let git_word = |key: &str| {
        git.as_ref()
            .and_then(|g| g.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let directory = &record.configuration.working_directory;
    let metadata = std::fs::metadata(directory).ok();
    Snapshot {
        format_version: FORMAT_VERSION,
        session_id: record.id,
        timestamp: now(),
        configuration: record.configuration.clone(),
        context: SnapshotContext {
            session_id: record.id,
            current_directory: directory.clone(),
            git_branch: git_word("branch"),
            git_commit: git_word("head_commit"),
            active_agents: agent_states
                .iter()
                .filter(|(_, state)| *state == "running")
                .map(|(name, _)| name.clone())
                .collect(),
            environment_state: Map::new(),
            user_preferences: Map::new(),
            last_activity: record.last_activity,
            shared: shared_context.iter().cloned().collect(),
        },
        metrics: if include_metrics {
            metrics
        } else {
            empty_object()
        },
        agent_states: agent_states.clone(),
        file_system_state: json!({
            "working_directory": directory,
            "exists": metadata.is_some(),
            "is_directory": metadata.is_some_and(|m| m.is_dir()),
        }),
        git_state: git,
        tags: record.tags.clone(),
        strategy: record.strategy.as_str().to_owned(),
    }
}

/// Reads the `session_data` of an import: the version first (a newer snapshot is refused as
/// such, not for its shape), then the shape, then every value. Refuses NUL characters
/// anywhere in the document, and nesting deeper than 128 levels.
pub fn parse_import(document: &Value) -> Result<Snapshot, FieldError> {
    let Some(object) = document.as_object() else {
        return Err(FieldError::invalid(
            ROOT,
            format!("must be a JSON object (a snapshot), got {}", kind(document)),
        ));
    };
    check_version(object.get("format_version"))?;
    check_strings_and_depth(document)?;
    let snapshot: Snapshot = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            ROOT.to_owned()
        } else {
            format!("{ROOT}.{path}")
        };
        FieldError::invalid(clip(&field), clip(&e.inner().to_string()))
    })?;
    // A field may end in a map key of any length (`environment_variables.<key>`).
    snapshot.validate().map_err(|mut e| {
        e.field = clip(&e.field);
        e
    })?;
    Ok(snapshot)
}

fn check_version(version: Option<&Value>) -> Result<(), FieldError> {
    let field = format!("{ROOT}.format_version");
    let version = version.ok_or_else(|| FieldError::invalid(&field, "is required"))?;
    match version.as_u64() {
        Some(n) if n == u64::from(FORMAT_VERSION) => Ok(()),
        Some(n) => Err(FieldError::invalid(
            field,
            format!("unsupported format version {n}; this server reads {FORMAT_VERSION}"),
        )),
        None => Err(FieldError::invalid(
            field,
            format!(
                "must be the integer {FORMAT_VERSION}, got {}",
                kind(version)
            ),
        )),
    }
}

impl Snapshot {
    /// Checks what the types alone do not: ranges, sizes, consistency.
    fn validate(&self) -> Result<(), FieldError> {
        let at = |field: &str| format!("{ROOT}.{field}");
        finite(self.timestamp, &at("timestamp"))?;
        self.configuration
            .validate()
            .map_err(|e| e.within(&at("configuration")))?;
        validate_tags(&self.tags).map_err(|e| e.within(ROOT))?;
        self.strategy.parse::<Strategy>().map_err(|e| {
            FieldError::invalid(
                at("strategy"),
                format!("is invalid: {}", clip(&e.to_string())),
            )
        })?;
        object(&self.metrics, &at("metrics"))?;
        object(&self.file_system_state, &at("file_system_state"))?;
        if let Some(git) = &self.git_state {
            object(git, &at("git_state"))?;
        }
        bounded_len(
            self.agent_states.len(),
            MAX_AGENT_ENTRIES,
            &at("agent_states"),
        )?;
        for (name, state) in &self.agent_states {
            agent_name(name, &at("agent_states"))?;
            word(state, &format!("{}.{name}", at("agent_states")))?;
        }
        self.context.validate(self.session_id)
    }
}

impl SnapshotContext {
    fn validate(&self, session_id: Uuid) -> Result<(), FieldError> {
        let at = |field: &str| format!("{ROOT}.context.{field}");
        if self.session_id != session_id {
            return Err(FieldError::inconsistent(
                at("session_id"),
                format!("must equal session_data.session_id ({session_id})"),
            ));
        }
        if self.current_directory.len() > MAX_PATH_BYTES {
            return Err(FieldError::invalid(
                at("current_directory"),
                format!("must be at most {MAX_PATH_BYTES} bytes"),
            ));
        }
        for (value, field) in [
            (&self.git_branch, "git_branch"),
            (&self.git_commit, "git_commit"),
        ] {
            if let Some(value) = value {
                word(value, &at(field))?;
            }
        }
        bounded_len(
            self.active_agents.len(),
            MAX_AGENT_ENTRIES,
            &at("active_agents"),
        )?;
        for (i, name) in self.active_agents.iter().enumerate() {
            agent_name(name, &at(&format!("active_agents[{i}]")))?;
        }
        finite(self.last_activity, &at("last_activity"))?;
        bounded_len(self.shared.len(), MAX_SHARED_KEYS, &at("shared"))?;
        for key in self.shared.keys() {
            let chars = key.chars().count();
            if chars == 0 || chars > MAX_SHARED_KEY_CHARS {
                return Err(FieldError::invalid(
                    at("shared"),
                    format!(
                        "keys must be 1 to {MAX_SHARED_KEY_CHARS} characters, got one of {chars}"
                    ),
                ));
            }
            if let Some(c) = crate::names::forbidden_character(key) {
                return Err(FieldError::invalid(
                    at("shared"),
                    format!("key {:?} {}", clip(key), crate::names::refusal(c)),
                ));
            }
        }
        Ok(())
    }
}

fn finite(value: f64, field: &str) -> Result<(), FieldError> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(FieldError::invalid(field, "must be a finite number"))
    }
}

fn object(value: &Value, field: &str) -> Result<(), FieldError> {
    if value.is_object() {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!("must be a JSON object, got {}", kind(value)),
        ))
    }
}

fn bounded_len(len: usize, max: usize, field: &str) -> Result<(), FieldError> {
    if len <= max {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!("must have at most {max} entries, got {len}"),
        ))
    }
}

fn agent_name(name: &str, field: &str) -> Result<(), FieldError> {
    if is_agent_name(name) {
        Ok(())
    } else {
        Err(FieldError::invalid(
            field,
            format!(
                "{:?} is not an agent name (1 to 128 characters of A-Z, a-z, 0-9, ., _, -)",
                clip(name)
            ),
        ))
    }
}

fn word(text: &str, field: &str) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_WORD_CHARS {
        return Err(FieldError::invalid(
            field,
            format!("must be 1 to {MAX_WORD_CHARS} characters, got {chars}"),
        ));
    }
    if let Some(c) = crate::names::forbidden_character(text) {
        return Err(FieldError::invalid(field, crate::names::refusal(c)));
    }
    Ok(())
}

/// What kind of JSON value this is, for an error that must not repeat the value itself.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `text` cut to [`MAX_ECHO_CHARS`], so an error never repeats a megabyte of input.
fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A step of the path to a value, for naming where a NUL was found.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Refuses a NUL character in any string or key of `document` (it has no business in a
/// snapshot and would cut a value short in C strings and process arguments), and nesting
/// deeper than [`MAX_DEPTH`]. Walks with an explicit stack, so any depth is safe here and
/// serde's recursion after it is bounded.
fn check_strings_and_depth(document: &Value) -> Result<(), FieldError> {
    let mut stack: Vec<(usize, Option<Step<'_>>, &Value)> = vec![(0, None, document)];
    let mut path: Vec<Step<'_>> = Vec::new();
    while let Some((depth, step, value)) = stack.pop() {
        path.truncate(depth);
        path.extend(step);
        if path.len() > MAX_DEPTH {
            return Err(FieldError::invalid(
                clip(&render(&path[..MAX_DEPTH])),
                format!("nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        match value {
            Value::String(s) if s.contains('\0') => {
                return Err(FieldError::invalid(
                    clip(&render(&path)),
                    "must not contain a NUL character",
                ))
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate().rev() {
                    stack.push((path.len(), Some(Step::Index(i)), item));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    if key.contains('\0') {
                        return Err(FieldError::invalid(
                            clip(&render(&path)),
                            "has a key containing a NUL character",
                        ));
                    }
                    stack.push((path.len(), Some(Step::Key(key)), item));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn render(path: &[Step<'_>]) -> String {
    let mut out = ROOT.to_owned();
    for step in path {
        match step {
            Step::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[cfg(test)]
mod tests;
