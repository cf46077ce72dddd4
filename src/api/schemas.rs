//! The OpenAPI schemas of the domain types that go on the wire as they are —
//! [`SessionConfig`](crate::session::SessionConfig), [`SessionStatus`](crate::session::SessionStatus),
//! [`Snapshot`](crate::session::Snapshot) and its context — so that `session` derives no
//! `utoipa::ToSchema` and knows nothing of the document: only `api` knows wire shapes.
//!
//! Each mirror carries the domain type's doc comments, serde attributes and bounds, and names
//! its schema after it (`#[schema(as = …)]`), so `/openapi.json` is what deriving on the
//! domain type gave. The unit tests below compare each mirror's keys (or words) with what the
//! domain type serializes, so a field added on one side and not the other fails `cargo test`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::agent::AgentConfig;
// The mirrored doc comments link to the domain items, as the originals do.
#[cfg(doc)]
use crate::session::{SessionConfig, FORMAT_VERSION};

/// The seed's session configuration. Missing fields take the seed's defaults; unknown fields
/// are refused. Ranges are checked by [`SessionConfig::validate`], so an error names the
/// field and the accepted range.
#[derive(ToSchema)]
#[schema(as = SessionConfig)]
// Never built: only its schema is read (by `openapi.rs` and the types that embed it).
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionConfigSchema {
    /// For people; 1–256 characters, no control or text-direction characters.
    #[schema(min_length = 1, max_length = 256)]
    name: String,
    /// Where the agents run, as given (the canonical form is in the session's validation).
    #[schema(min_length = 1)]
    working_directory: String,
    /// Free text, at most 4,096 characters.
    #[serde(default)]
    #[schema(max_length = 4096)]
    description: String,
    /// Whether the git state is read and worktrees may be touched.
    #[serde(default = "yes")]
    git_enabled: bool,
    /// Whether runtime state is checkpointed every `save_interval_seconds`.
    #[serde(default = "yes")]
    auto_save: bool,
    /// Seconds between checkpoints (1–86400).
    #[serde(default = "default_save_interval")]
    #[schema(minimum = 1, maximum = 86_400)]
    save_interval_seconds: u64,
    /// Memory budget of the whole session, in MiB (1–1048576).
    #[serde(default = "default_max_memory")]
    #[schema(minimum = 1, maximum = 1_048_576)]
    max_memory_mb: u64,
    /// Most agents the session may have (1–1000).
    #[serde(default = "default_max_agents")]
    #[schema(minimum = 1, maximum = 1000)]
    max_agents: u32,
    /// The agents.
    #[serde(default)]
    agents: Vec<AgentConfig>,
    /// Variables every agent of the session gets.
    #[serde(default)]
    environment_variables: BTreeMap<String, String>,
    /// Free JSON object, kept as given.
    #[serde(default = "empty_object")]
    custom_settings: Value,
    /// USD the session's Claude Code may cost: `cost_budget` alerts at 80 % and 100 %.
    #[serde(default)]
    #[schema(minimum = 0)]
    cost_budget_usd: Option<f64>,
}

/// Where a session is in its life.
#[derive(ToSchema)]
#[schema(as = SessionStatus)]
// Never built: only its schema is read (by `openapi.rs` and the types that embed it).
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SessionStatusSchema {
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

/// A session exported: its configuration, runtime context and state, with the original
/// service's keys plus `tags` and `strategy`.
#[derive(ToSchema)]
#[schema(as = Snapshot)]
// Never built: only its schema is read (by `openapi.rs` and the types that embed it).
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotSchema {
    /// [`FORMAT_VERSION`] of the writer.
    format_version: u32,
    /// The exported session's id (an import gets a new one unless asked to keep it).
    session_id: Uuid,
    /// When it was exported, Unix seconds.
    timestamp: f64,
    /// The session's configuration, as stored.
    configuration: SessionConfigSchema,
    /// Its runtime context.
    context: SnapshotContextSchema,
    /// Its metrics when asked for (`include_metrics`), else an empty object.
    #[serde(default = "empty_object")]
    metrics: Value,
    /// Each agent's state word (`running`, `failed`, …) at export.
    #[serde(default)]
    agent_states: BTreeMap<String, String>,
    /// What the working directory looked like: `working_directory`, `exists`, `is_directory`.
    #[serde(default = "empty_object")]
    file_system_state: Value,
    /// The full git state, when git is enabled and the directory is a repository.
    #[serde(default)]
    git_state: Option<Value>,
    /// The session's tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Its restart strategy word (`one_for_one`, `rest_for_one`, `one_for_all`).
    #[serde(default = "default_strategy")]
    strategy: String,
}

/// The session's `context` object as the original service exported it, plus `shared`.
#[derive(ToSchema)]
#[schema(as = SnapshotContext)]
// Never built: only its schema is read (by `openapi.rs` and the types that embed it).
#[allow(dead_code)]
#[serde(deny_unknown_fields)]
pub(crate) struct SnapshotContextSchema {
    /// The session's id; must equal the snapshot's.
    session_id: Uuid,
    /// The working directory.
    current_directory: String,
    /// The checked-out branch, if known.
    #[serde(default)]
    git_branch: Option<String>,
    /// The head commit, if known.
    #[serde(default)]
    git_commit: Option<String>,
    /// Names of the agents running at export.
    #[serde(default)]
    active_agents: Vec<String>,
    /// Kept for the original's shape; this server records none.
    #[serde(default)]
    environment_state: Map<String, Value>,
    /// Kept for the original's shape; this server records none.
    #[serde(default)]
    user_preferences: Map<String, Value>,
    /// The session's last activity, Unix seconds.
    last_activity: f64,
    /// The session's shared key/value context.
    #[serde(default)]
    shared: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use utoipa::openapi::{RefOr, Schema};
    use utoipa::PartialSchema;

    use super::*;
    use crate::session::{SessionStatus, Snapshot, SnapshotContext};

    /// The property names of an object schema.
    fn properties(schema: RefOr<Schema>) -> BTreeSet<String> {
        match schema {
            RefOr::T(Schema::Object(object)) => object.properties.keys().cloned().collect(),
            _ => panic!("not an object schema"),
        }
    }

    /// The keys `value` serializes with.
    fn keys(value: impl serde::Serialize) -> BTreeSet<String> {
        match serde_json::to_value(value).expect("serializes") {
            Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    fn config() -> crate::session::SessionConfig {
        crate::session::SessionConfig::new("name", "/tmp")
    }

    #[test]
    fn the_session_config_schema_has_the_keys_the_type_writes() {
        assert_eq!(properties(SessionConfigSchema::schema()), keys(config()));
    }

    #[test]
    fn the_session_status_schema_has_the_words_the_type_writes() {
        let words: Vec<Value> = match SessionStatusSchema::schema() {
            RefOr::T(Schema::Object(object)) => object.enum_values.expect("an enum"),
            _ => panic!("not an enum schema"),
        };
        let written: Vec<Value> = SessionStatus::ALL
            .iter()
            .map(|status| serde_json::to_value(status).expect("serializes"))
            .collect();
        assert_eq!(words, written);
    }

    #[test]
    fn the_snapshot_schemas_have_the_keys_the_types_write() {
        let context = SnapshotContext {
            session_id: Uuid::nil(),
            current_directory: "/tmp".into(),
            git_branch: None,
            git_commit: None,
            active_agents: Vec::new(),
            environment_state: Map::new(),
            user_preferences: Map::new(),
            last_activity: 0.0,
            shared: Map::new(),
        };
        assert_eq!(properties(SnapshotContextSchema::schema()), keys(&context));
        let snapshot = Snapshot {
            format_version: crate::session::FORMAT_VERSION,
            session_id: Uuid::nil(),
            timestamp: 0.0,
            configuration: config(),
            context,
            metrics: Value::Object(Map::new()),
            agent_states: BTreeMap::new(),
            file_system_state: Value::Object(Map::new()),
            git_state: None,
            tags: Vec::new(),
            strategy: "one_for_one".into(),
        };
        assert_eq!(properties(SnapshotSchema::schema()), keys(&snapshot));
    }
}
