//! Request bodies. Every one refuses unknown fields (the error names them), so a typo never
//! passes silently; ranges are checked by the typed operations they turn into.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::agent::AgentConfig;
use crate::session::{CloneSession, CreateSession, ImportSession, SessionConfig, UpdateSession};
use crate::supervision::Strategy;

use super::super::body;
use super::super::errors::ApiError;

/// `POST /sessions`: the seed's session configuration plus `tags`, `strategy` and
/// `create_if_missing`.
pub(crate) fn create_session(body: Map<String, Value>) -> Result<CreateSession, ApiError> {
    let mut body = body;
    let tags: Vec<String> = take(&mut body, "tags")?.unwrap_or_default();
    let strategy = take::<String>(&mut body, "strategy")?
        .map(|word| {
            word.parse::<Strategy>()
                .map_err(|e| ApiError::invalid("strategy", e.to_string()))
        })
        .transpose()?;
    let create_if_missing: Option<bool> = take(&mut body, "create_if_missing")?;
    let configuration: SessionConfig = from_map(body)?;
    let mut create = CreateSession::new(configuration);
    create.tags = tags;
    if let Some(strategy) = strategy {
        create.strategy = strategy;
    }
    if let Some(create_if_missing) = create_if_missing {
        create.create_if_missing = create_if_missing;
    }
    Ok(create)
}

/// Removes `key` from a body and parses it; an error names the key.
fn take<T: serde::de::DeserializeOwned>(
    body: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match body.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ApiError::invalid(key, format!("{key}: {e}"))),
    }
}

/// Parses what is left of a body as `T`, naming the field of any error.
fn from_map<T: serde::de::DeserializeOwned>(body: Map<String, Value>) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(&Value::Object(body)).map_err(|_| ApiError::Internal)?;
    body::parse(&bytes)
}

/// `PUT /sessions/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateBody {
    name: Option<String>,
    description: Option<String>,
    auto_save: Option<bool>,
    save_interval_seconds: Option<u64>,
    max_memory_mb: Option<u64>,
    max_agents: Option<u32>,
    environment_variables: Option<BTreeMap<String, String>>,
    custom_settings: Option<Value>,
    tags: Option<Vec<String>>,
    agents: Option<Vec<AgentConfig>>,
    /// USD; null removes the budget.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    cost_budget_usd: Option<Option<f64>>,
}

/// A field that may be given as null (`Some(None)`), unlike one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    Option::<f64>::deserialize(d).map(Some)
}

impl From<UpdateBody> for UpdateSession {
    fn from(body: UpdateBody) -> Self {
        UpdateSession {
            name: body.name,
            description: body.description,
            auto_save: body.auto_save,
            save_interval_seconds: body.save_interval_seconds,
            max_memory_mb: body.max_memory_mb,
            max_agents: body.max_agents,
            environment_variables: body.environment_variables,
            custom_settings: body.custom_settings,
            tags: body.tags,
            agents: body.agents,
            cost_budget_usd: body.cost_budget_usd,
        }
    }
}

/// `POST /sessions/{id}/navigate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NavigateBody {
    pub(crate) path: String,
    /// The original's flags, accepted for compatibility: permissions are always checked,
    /// and the git state is always refreshed when the session has `git_enabled`.
    #[serde(default, rename = "validate_permissions")]
    _validate_permissions: Option<bool>,
    #[serde(default, rename = "update_git_state")]
    _update_git_state: Option<bool>,
    /// Create the directory when missing and allowed (default true, as for create).
    #[serde(default)]
    pub(crate) create_if_missing: Option<bool>,
}

/// `POST /sessions/{id}/clone`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CloneBody {
    new_name: Option<String>,
    /// The original's clients sometimes say `name`.
    name: Option<String>,
    new_working_directory: Option<String>,
    copy_agents: Option<bool>,
    copy_environment: Option<bool>,
    git_worktree: Option<WorktreeBody>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WorktreeBody {
    branch: String,
}

impl TryFrom<CloneBody> for CloneSession {
    type Error = ApiError;

    fn try_from(body: CloneBody) -> Result<Self, ApiError> {
        let name = body
            .new_name
            .or(body.name)
            .ok_or_else(|| ApiError::invalid("new_name", "new_name is required"))?;
        let mut clone = CloneSession::new(name);
        clone.new_working_directory = body.new_working_directory;
        clone.copy_agents = body.copy_agents.unwrap_or(true);
        clone.copy_environment = body.copy_environment.unwrap_or(true);
        clone.git_worktree = body.git_worktree.map(|w| w.branch);
        Ok(clone)
    }
}

/// `POST /sessions/{id}/export`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportBody {
    #[serde(default)]
    pub(crate) include_metrics: bool,
}

/// `POST /sessions/import`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportBody {
    /// A snapshot as `export` wrote it (required).
    #[schema(value_type = crate::api::schemas::SnapshotSchema)]
    session_data: Option<Value>,
    /// The original's flag: a session with the snapshot's id is replaced. Not supported:
    /// `true` is refused rather than ignored (use `keep_id` after terminating it).
    #[serde(default)]
    merge_with_existing: bool,
    /// The original's flag for rewriting paths, accepted; `working_directory` says where.
    #[serde(default, rename = "update_paths")]
    _update_paths: Option<bool>,
    #[serde(default)]
    keep_id: bool,
    working_directory: Option<String>,
    create_if_missing: Option<bool>,
}

impl TryFrom<ImportBody> for ImportSession {
    type Error = ApiError;

    fn try_from(body: ImportBody) -> Result<Self, ApiError> {
        let data = body
            .session_data
            .ok_or_else(|| ApiError::invalid("session_data", "session_data is required"))?;
        if body.merge_with_existing {
            return Err(ApiError::invalid(
                "merge_with_existing",
                "merging into an existing session is not supported; import with keep_id after purging it, or without keep_id for a new session",
            ));
        }
        let mut import = ImportSession::new(data);
        import.keep_id = body.keep_id;
        import.working_directory = body.working_directory;
        if let Some(create) = body.create_if_missing {
            import.create_if_missing = create;
        }
        Ok(import)
    }
}

/// `POST /validate-path`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidatePathBody {
    pub(crate) path: String,
    /// Create the directory when missing and allowed (default false: no side effects).
    #[serde(default)]
    pub(crate) create_if_missing: bool,
}

/// `POST /validate-paths`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidatePathsBody {
    /// 1 to `system::MAX_PATHS` paths.
    #[schema(min_items = 1, max_items = 1000)]
    pub(crate) paths: Vec<String>,
}

/// `PUT /sessions/{id}/context/{key}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContextPutBody {
    pub(crate) value: Value,
}
