//! The OpenAPI schemas of the domain types the API sends and takes as they are (an agent's
//! configuration, its log lines, a path's validation and git state, the settings' backoff).
//!
//! The domain modules know nothing of OpenAPI: each type here gets `utoipa::ToSchema` from a
//! mirror that derives it under the domain type's name (`#[schema(as = …)]`) — same keys, same
//! documentation, the bounds the API promises — so `/openapi.json` reads as if the domain type
//! derived it. A mirror is never built (but for the backoff's defaults): it only describes. A test below serializes each domain
//! type and checks its keys against its mirror's schema, so the two cannot drift apart.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::agent::{AgentConfig, AgentType, Limits, LogLine, Stream, PERMISSION_MODES};
use crate::config::BackoffSettings;
use crate::paths::{BatchSummary, Check, CheckCode, GitState, Level, Permissions, Validation};
use crate::supervision::Restart;

/// `ToSchema` for a domain type, taken from its mirror.
macro_rules! schema_from_mirror {
    ($($domain:ty => $mirror:ty),* $(,)?) => {$(
        impl PartialSchema for $domain {
            fn schema() -> RefOr<Schema> {
                <$mirror as PartialSchema>::schema()
            }
        }

        impl ToSchema for $domain {
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                <$mirror as ToSchema>::schemas(schemas);
            }
        }
    )*};
}

schema_from_mirror! {
    AgentConfig => AgentConfigSchema,
    Limits => LimitsSchema,
    BackoffSettings => BackoffSettingsSchema,
    Stream => StreamSchema,
    LogLine => LogLineSchema,
    BatchSummary => BatchSummarySchema,
    Check => CheckSchema,
    GitState => GitStateSchema,
    Permissions => PermissionsSchema,
    Validation => ValidationSchema,
}

/// One of the twelve names as written (requests accept any case).
impl PartialSchema for AgentType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(AgentType::ALL.iter().map(|t| t.as_str())))
            .description(Some("An agent type; requests accept it in any case"))
            .into()
    }
}

impl ToSchema for AgentType {}

// The OpenAPI schema of an agent configuration is the shape clients send (every key but
// `agent_type` optional, nothing unknown); what the server writes back has every key set.
/// The shape clients send: everything but the type optional, nothing unknown.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AgentConfig)]
struct AgentConfigSchema {
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
    /// A Claude Code agent: `true` for the defaults, or its options; `false` or `null` for
    /// none. Exclusive with `command`; the server always writes the options object or null.
    #[serde(default)]
    #[schema(schema_with = claude_schema)]
    claude: Option<Value>,
    /// Runs the agent on a pseudo-terminal: `true` (40 × 120) or a size; the agent object
    /// and `…/screen` show it. Sent back as the size, or null.
    #[serde(default)]
    #[schema(schema_with = terminal_schema)]
    terminal: Option<Value>,
}

/// The options of a Claude Code agent, as the server writes them back.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ClaudeConfig)]
struct ClaudeConfigSchema {
    /// `--model`: an alias or a full model id; Claude Code's default when absent.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    model: Option<String>,
    /// `--permission-mode`; Claude Code's default when absent.
    #[serde(default)]
    #[schema(schema_with = permission_mode_schema)]
    permission_mode: Option<String>,
    /// Further arguments; from a request they need `agents.allow_custom_commands` unless each
    /// is in `[agents.claude] allowed_args`.
    #[serde(default)]
    args: Vec<String>,
}

/// `claude`: a boolean, the options, or null.
fn claude_schema() -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ClaudeConfigSchema::schema())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .build(),
    )
}

/// `permission_mode`: one of the modes Claude Code documents, or null.
fn permission_mode_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            PERMISSION_MODES
                .iter()
                .map(|mode| Value::from(*mode))
                .chain([Value::Null]),
        ))
        .build()
}

/// `terminal`: a flag, a size (`rows`, `cols`, 1–1000, each 40 × 120 by default) or null.
fn terminal_schema() -> Schema {
    let side = |default: u16| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(1000))
            .default(Some(Value::from(default)))
    };
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::Boolean, Type::Null])))
        .item(
            ObjectBuilder::new()
                .property("rows", side(40))
                .property("cols", side(120)),
        )
        .build()
        .into()
}

/// `restart`: a restart word or null.
fn restart_schema() -> Object {
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

/// The documented defaults are the settings' own.
impl Default for BackoffSettingsSchema {
    fn default() -> Self {
        let BackoffSettings {
            initial_ms,
            max_ms,
            multiplier,
            reset_after_seconds,
        } = BackoffSettings::default();
        BackoffSettingsSchema {
            initial_ms,
            max_ms,
            multiplier,
            reset_after_seconds,
        }
    }
}

/// Exponential backoff between restarts; missing fields take the documented defaults. Also
/// the `backoff` of an agent's configuration, hence `Serialize`.
#[derive(Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
#[schema(as = BackoffSettings)]
struct BackoffSettingsSchema {
    /// Delay before the second restart (the first is immediate), in milliseconds.
    initial_ms: u64,
    /// Upper bound of the delay, in milliseconds.
    max_ms: u64,
    /// Factor applied to the delay after each restart.
    multiplier: f64,
    /// Seconds of healthy running after which the delay starts over.
    reset_after_seconds: u64,
}

/// Resource limits (`setrlimit` and `nice`) for an agent's process.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Limits)]
struct LimitsSchema {
    /// Virtual address space, in MiB (`RLIMIT_AS`; 1–134217728).
    address_space_mb: Option<u64>,
    /// Open file descriptors (`RLIMIT_NOFILE`; 1–1048576).
    open_files: Option<u64>,
    /// CPU time, in seconds (`RLIMIT_CPU`; 1–31536000).
    cpu_seconds: Option<u64>,
    /// Scheduling niceness (−20–19).
    nice: Option<i32>,
}

/// Which pipe a line came from.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Stream)]
enum StreamSchema {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of an agent's output.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = LogLine)]
struct LogLineSchema {
    /// Which pipe.
    stream: Stream,
    /// The text, without its newline.
    line: String,
    /// When the server read it.
    #[schema(value_type = f64)]
    timestamp: SystemTime,
}

/// How many paths of a batch passed.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = BatchSummary)]
struct BatchSummarySchema {
    /// Paths given.
    total: usize,
    /// Paths with `valid: true`.
    valid: usize,
    /// Paths with `valid: false`.
    invalid: usize,
}

/// One finding: `{code, level, message}` on the wire.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = Check)]
struct CheckSchema {
    /// What was found; stable.
    #[schema(value_type = String)]
    code: CheckCode,
    /// How much it weighs.
    #[schema(value_type = String, pattern = "^(error|warning)$")]
    level: Level,
    /// For people; names the paths involved. Not stable: match on `code`.
    message: String,
}

/// A repository as seen from a directory in it.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = GitState)]
struct GitStateSchema {
    /// The top of the work tree; the repository itself when bare.
    #[schema(value_type = String)]
    root: PathBuf,
    /// The git directory (`.git`, or `.git/worktrees/NAME` for a linked worktree).
    #[schema(value_type = String)]
    git_dir: PathBuf,
    /// A bare repository: no work tree, so no counts.
    bare: bool,
    /// A linked worktree, whose `.git` is a file pointing into the main repository.
    is_worktree: bool,
    /// The checked-out branch; `None` when HEAD is detached.
    branch: Option<String>,
    /// HEAD points at a commit, not at a branch.
    detached: bool,
    /// The commit HEAD points at (full hex id); `None` before the first commit.
    head_commit: Option<String>,
    /// Its summary line.
    head_summary: Option<String>,
    /// Tracked files modified, staged, deleted, renamed or conflicted.
    dirty: usize,
    /// Untracked files, an untracked directory counting once (as `git status` lists them).
    untracked: usize,
    /// The upstream of the branch, e.g. `origin/main`; `None` when it has none.
    upstream: Option<String>,
    /// Commits on the branch and not on its upstream; `None` without an upstream.
    ahead: Option<usize>,
    /// Commits on the upstream and not on the branch; `None` without an upstream.
    behind: Option<usize>,
    /// The linked worktrees of the repository (their paths).
    #[schema(value_type = Vec<String>)]
    worktrees: Vec<PathBuf>,
}

/// What the server's user may do with the path, asked of the kernel (`access(2)` with
/// `AT_EACCESS`: the effective user and groups, ACLs, read-only mounts — not mode bits).
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = Permissions)]
struct PermissionsSchema {
    /// May read (list, for a directory).
    read: bool,
    /// May write (create files in, for a directory).
    write: bool,
    /// May execute (enter, for a directory).
    execute: bool,
}

/// The validation object of DESIGN.md: the original service's keys (`path` … `validation_errors`)
/// and ours after them.
#[allow(dead_code, reason = "a mirror is never built: only its schema is read")]
#[derive(ToSchema)]
#[schema(as = Validation)]
struct ValidationSchema {
    /// The canonical path (`~`, `..` and symlinks resolved; a missing tail appended to its
    /// nearest existing ancestor). The input as given when it names no path at all.
    #[schema(value_type = String)]
    path: PathBuf,
    /// The path exists (a dangling symlink does not).
    exists: bool,
    /// Same as `permissions.read`.
    readable: bool,
    /// Same as `permissions.write`.
    writable: bool,
    /// The path is a directory inside a git work tree, a linked worktree or a bare repository.
    is_git_repo: bool,
    /// What the server's user may do with the path; all false when it does not exist.
    permissions: Permissions,
    /// The messages of the error-level checks.
    validation_errors: Vec<String>,
    /// No error-level check.
    valid: bool,
    /// The path is an existing directory.
    is_directory: bool,
    /// The messages of the warning-level checks.
    warnings: Vec<String>,
    /// Every finding, with its stable code.
    checks: Vec<Check>,
    /// Bytes free to the server's user on the path's file system (of the nearest existing
    /// ancestor for a missing path); `None` when unknown.
    disk_free_bytes: Option<u64>,
    /// The repository state when `is_git_repo`.
    git: Option<GitState>,
    /// The text as the client sent it.
    input: String,
    /// For a missing path, the deepest directory that exists: where creation would start.
    #[schema(value_type = Option<String>)]
    nearest_existing_ancestor: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::UNIX_EPOCH;

    use super::*;

    /// The keys `T`'s schema describes.
    fn described<T: ToSchema>() -> BTreeSet<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        schema["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{} has no properties", T::name()))
            .keys()
            .cloned()
            .collect()
    }

    /// The keys `value` is sent with.
    fn sent<T: Serialize>(value: &T) -> BTreeSet<String> {
        serde_json::to_value(value)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    fn assert_mirrors<T: ToSchema + Serialize>(value: T) {
        assert_eq!(sent(&value), described::<T>(), "{}", T::name());
    }

    fn git_state() -> GitState {
        GitState {
            root: PathBuf::from("/r"),
            git_dir: PathBuf::from("/r/.git"),
            bare: false,
            is_worktree: false,
            branch: Some("main".to_owned()),
            detached: false,
            head_commit: None,
            head_summary: None,
            dirty: 0,
            untracked: 0,
            upstream: None,
            ahead: None,
            behind: None,
            worktrees: Vec::new(),
        }
    }

    #[test]
    fn every_mirror_describes_the_keys_its_type_sends() {
        assert_mirrors(AgentConfig::new(AgentType::Backend));
        assert_mirrors(Limits::default());
        assert_mirrors(BackoffSettings::default());
        assert_mirrors(LogLine {
            stream: Stream::Stdout,
            line: "ready".to_owned(),
            timestamp: UNIX_EPOCH,
        });
        assert_mirrors(BatchSummary {
            total: 1,
            valid: 1,
            invalid: 0,
        });
        let check = Check::warning(CheckCode::EmptyPath, "x");
        assert_mirrors(check.clone());
        assert_mirrors(git_state());
        assert_mirrors(Permissions::default());
        assert_mirrors(Validation {
            path: PathBuf::from("/r"),
            exists: true,
            readable: true,
            writable: true,
            is_git_repo: true,
            permissions: Permissions::default(),
            validation_errors: Vec::new(),
            valid: true,
            is_directory: true,
            warnings: Vec::new(),
            checks: vec![check],
            disk_free_bytes: None,
            git: Some(git_state()),
            input: "/r".to_owned(),
            nearest_existing_ancestor: None,
        });
    }

    #[test]
    fn enumerations_list_the_words_sent() {
        let words = |schema: RefOr<Schema>| serde_json::to_value(schema).unwrap()["enum"].clone();
        let streams = [Stream::Stdout, Stream::Stderr].map(|s| serde_json::to_value(s).unwrap());
        assert_eq!(words(Stream::schema()), serde_json::json!(streams));
        let types = AgentType::ALL.map(|t| serde_json::to_value(t).unwrap());
        assert_eq!(words(AgentType::schema()), serde_json::json!(types));
        let restarts: Vec<Value> = [Restart::Permanent, Restart::Transient, Restart::Temporary]
            .iter()
            .map(|r| Value::from(r.as_str()))
            .chain([Value::Null])
            .collect();
        assert_eq!(
            serde_json::to_value(restart_schema()).unwrap()["enum"],
            Value::from(restarts)
        );
    }

    #[test]
    fn backoff_defaults_are_the_settings_defaults() {
        let schema = serde_json::to_value(BackoffSettings::schema()).unwrap();
        let defaults = serde_json::to_value(BackoffSettings::default()).unwrap();
        for (key, value) in defaults.as_object().unwrap() {
            assert_eq!(&schema["properties"][key]["default"], value, "{key}");
        }
    }
}
