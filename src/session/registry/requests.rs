//! What callers ask the registry for: the requests of create, import, clone and update,
//! with their defaults.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::agent::AgentConfig;
use crate::supervision::Strategy;

use crate::session::model::SessionConfig;

/// What a create asks for: the seed's configuration plus ours.
#[derive(Debug, Clone)]
pub struct CreateSession {
    /// The session configuration.
    pub configuration: SessionConfig,
    /// Tags.
    pub tags: Vec<String>,
    /// How a crash affects the other agents.
    pub strategy: Strategy,
    /// Create the working directory (and its parents) when it is missing and the policy
    /// allows it.
    pub create_if_missing: bool,
}

impl CreateSession {
    /// A create with the defaults: no tags, `one_for_one`, directory created when missing.
    pub fn new(configuration: SessionConfig) -> Self {
        CreateSession {
            configuration,
            tags: Vec::new(),
            strategy: Strategy::OneForOne,
            create_if_missing: true,
        }
    }
}

/// What an import asks for.
#[derive(Debug, Clone)]
pub struct ImportSession {
    /// The snapshot, as exported.
    pub session_data: Value,
    /// Keep the snapshot's session id (refused while a session has it).
    pub keep_id: bool,
    /// Work here instead of the snapshot's directory.
    pub working_directory: Option<String>,
    /// Create the directory when missing and allowed (default true).
    pub create_if_missing: bool,
}

impl ImportSession {
    /// An import with a new id, in the snapshot's own directory.
    pub fn new(session_data: Value) -> Self {
        ImportSession {
            session_data,
            keep_id: false,
            working_directory: None,
            create_if_missing: true,
        }
    }
}

/// What a clone asks for.
#[derive(Debug, Clone)]
pub struct CloneSession {
    /// The clone's name.
    pub new_name: String,
    /// Where the clone works; the source's directory when `None` (and no worktree).
    pub new_working_directory: Option<String>,
    /// Copy the agents (default true).
    pub copy_agents: bool,
    /// Copy the session environment (default true).
    pub copy_environment: bool,
    /// Work in a new git worktree of the source's repository, on this new branch.
    pub git_worktree: Option<String>,
}

impl CloneSession {
    /// A clone named `new_name`, copying agents and environment, in the same directory.
    pub fn new(new_name: impl Into<String>) -> Self {
        CloneSession {
            new_name: new_name.into(),
            new_working_directory: None,
            copy_agents: true,
            copy_environment: true,
            git_worktree: None,
        }
    }
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateSession {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New `auto_save`.
    pub auto_save: Option<bool>,
    /// New `save_interval_seconds`.
    pub save_interval_seconds: Option<u64>,
    /// New `max_memory_mb`.
    pub max_memory_mb: Option<u64>,
    /// New `max_agents`.
    pub max_agents: Option<u32>,
    /// New session environment (replaces the old one; restarts the agents).
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// New `custom_settings`.
    pub custom_settings: Option<Value>,
    /// New tags (replace the old ones).
    pub tags: Option<Vec<String>>,
    /// New agent list (replaces the old one; restarts the agents).
    pub agents: Option<Vec<AgentConfig>>,
    /// New `cost_budget_usd`: `Some(None)` clears it.
    pub cost_budget_usd: Option<Option<f64>>,
}
