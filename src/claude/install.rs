//! The hook settings that make Claude Code report to this server, and their place in Claude
//! Code's settings files.
//!
//! Claude Code posts `http` hooks itself, so every event gets one pointing at
//! `POST /api/claude/hooks`, with the token and our ids interpolated from environment
//! variables it is allowed to read (`allowedEnvVars`): the token is never written into a
//! file. The events it runs only as commands ([`COMMAND_EVENTS`]) get the
//! `session-manager hook` shim instead.
//!
//! A hook is recognised as ours by what Claude Code keeps and needs anyway — an `http` hook
//! whose URL path is [`HOOKS_PATH`], or a command running a `session-manager` program with
//! `hook` — so no marker key is added that Claude Code might one day refuse. Merging and
//! removing touch only those; every other key and hook stays as the user wrote it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// Every hook event Claude Code 2.1 documents, in its lifecycle order.
pub const EVENTS: [&str; 15] = [
    "SessionStart",
    "UserPromptSubmit",
    "PreToolUse",
    "PermissionRequest",
    "PermissionDenied",
    "PostToolUse",
    "PostToolUseFailure",
    "Notification",
    "Stop",
    "StopFailure",
    "SubagentStart",
    "SubagentStop",
    "PreCompact",
    "PostCompact",
    "SessionEnd",
];

/// Events whose `http` hooks Claude Code does not run: with 2.1.197 in `-p` mode an `http`
/// SessionStart hook never fired while a `command` one did (UserPromptSubmit, StopFailure
/// and SessionEnd fired as `http`).
pub const COMMAND_EVENTS: [&str; 1] = ["SessionStart"];

/// Events about a tool, whose hooks are filtered by a matcher on the tool name; `*` is
/// every tool.
pub const TOOL_EVENTS: [&str; 5] = [
    "PreToolUse",
    "PermissionRequest",
    "PermissionDenied",
    "PostToolUse",
    "PostToolUseFailure",
];

/// The server route hooks are posted to; an `http` hook whose URL ends with it is ours.
pub const HOOKS_PATH: &str = "/api/claude/hooks";

/// The variables Claude Code may interpolate into our hooks' headers.
pub const ALLOWED_ENV_VARS: [&str; 3] = [
    "SESSION_MANAGER_TOKEN",
    "CLAUDE_SESSION_ID",
    "CLAUDE_AGENT_NAME",
];

/// The variable the shim command is given the server URL in.
const URL_VAR: &str = "SESSION_MANAGER_URL";

/// Seconds Claude Code waits for one of our hooks: a slow server must not hold the user up.
const TIMEOUT_SECONDS: u64 = 5;

/// Why a settings file was not read or written.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The file could not be read, or the new one not written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done: `read`, `write`, `create the directory of`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path} is not JSON, left unchanged: {source}")]
    NotJson {
        /// The file.
        path: PathBuf,
        /// Where the parser stopped.
        #[source]
        source: serde_json::Error,
    },
    /// The file is JSON but not an object, or its `hooks` is not the shape Claude Code
    /// reads; left unchanged rather than guessed at.
    #[error("{path} is not a Claude Code settings file, left unchanged: {why}")]
    NotSettings {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the key.
        why: String,
    },
}

/// The hook handler for `event`: the shim command for [`COMMAND_EVENTS`] when there is a
/// shim, else an `http` hook to `server_url`.
fn handler(event: &str, server_url: &str, shim: Option<&Path>) -> Value {
    if let Some(shim) = shim.filter(|_| COMMAND_EVENTS.contains(&event)) {
        // The URL goes with the command: a Claude Code started by hand has no
        // SESSION_MANAGER_URL of its own, and the shim would try the configured address.
        return json!({
            "type": "command",
            "command": format!(
                "{URL_VAR}='{}' \"{}\" hook",
                server_url.trim_end_matches('/'),
                shim.display()
            ),
            "timeout": TIMEOUT_SECONDS,
        });
    }
    json!({
        "type": "http",
        "url": format!("{}{HOOKS_PATH}", server_url.trim_end_matches('/')),
        "headers": {
            "Authorization": "Bearer $SESSION_MANAGER_TOKEN",
            "X-Session-Manager-Session": "$CLAUDE_SESSION_ID",
            "X-Session-Manager-Agent": "$CLAUDE_AGENT_NAME",
        },
        "allowedEnvVars": ALLOWED_ENV_VARS,
        "timeout": TIMEOUT_SECONDS,
    })
}

/// Our matcher group for `event`: tool events match every tool.
fn group(event: &str, server_url: &str, shim: Option<&Path>) -> Value {
    let mut group = Map::new();
    if TOOL_EVENTS.contains(&event) {
        group.insert("matcher".into(), json!("*"));
    }
    group.insert("hooks".into(), json!([handler(event, server_url, shim)]));
    Value::Object(group)
}

/// The `hooks` object reporting every event of [`EVENTS`] to `server_url`, `shim` being the
/// `session-manager` program the command hooks run (without one, those events get `http`
/// hooks too, which Claude Code may not run). It is what `hooks install` merges into a
/// settings file, and what Claude agents get as `--settings` ([`agent_settings`]).
pub fn hook_entries(server_url: &str, shim: Option<&Path>) -> Value {
    let events: Map<String, Value> = EVENTS
        .iter()
        .map(|event| (event.to_string(), json!([group(event, server_url, shim)])))
        .collect();
    Value::Object(events)
}

/// The Claude Code settings, as one JSON string for `--settings`, that make a Claude agent
/// report to `server_url`: only [`hook_entries`], so the user's settings files apply as
/// they are beneath it. Every event is an `http` hook, SessionStart included (which Claude
/// Code 2.1.197 does not run as `http`: the server knows when it starts an agent anyway):
/// a command hook would make Claude Code fork, and a forked copy of its argv, conversation
/// id included, is what the conversation guard looks for.
pub fn agent_settings(server_url: &str) -> String {
    json!({ "hooks": hook_entries(server_url, None) }).to_string()
}

/// This program when it is `session-manager` (the server run as itself, not embedded in
/// another program), for the command hooks to run as `"<exe>" hook`.
pub fn this_program() -> Option<PathBuf> {
    std::env::current_exe().ok().filter(|exe| {
        exe.file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("session-manager"))
    })
}

/// Whether a hook handler is one of ours (see the module documentation).
pub fn is_ours(handler: &Value) -> bool {
    match handler.get("type").and_then(Value::as_str) {
        Some("http") => handler
            .get("url")
            .and_then(Value::as_str)
            .is_some_and(|url| url.trim_end_matches('/').ends_with(HOOKS_PATH)),
        Some("command") => handler
            .get("command")
            .and_then(Value::as_str)
            .is_some_and(is_shim_command),
        _ => false,
    }
}

/// `SESSION_MANAGER_URL='…' "<dir>/session-manager…" hook` (the program quoted or not), the
/// form `install` writes: a program named `session-manager*` run with the single argument
/// `hook`, given its server. A plain `session-manager hook` is a user's own (the README
/// once told users to write it): never taken for ours, so never replaced or removed.
fn is_shim_command(command: &str) -> bool {
    let Some(given) = command
        .trim()
        .strip_prefix(URL_VAR)
        .and_then(|rest| rest.strip_prefix("='"))
        .and_then(|rest| rest.split_once('\''))
        .map(|(_, rest)| rest)
    else {
        return false;
    };
    let Some(rest) = given.trim().strip_suffix(" hook") else {
        return false;
    };
    let rest = rest.trim_end();
    let program = match rest.strip_suffix('"') {
        Some(open) => open.rsplit_once('"').map_or(open, |(_, program)| program),
        None => rest.rsplit(' ').next().unwrap_or(rest),
    };
    Path::new(program)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("session-manager"))
}

/// The server URL a hook of ours posts to: an `http` hook's URL without [`HOOKS_PATH`], or
/// the one the shim command is given.
fn server_of(handler: &Value) -> Option<&str> {
    if let Some(command) = handler.get("command").and_then(Value::as_str) {
        let quoted = command.trim().strip_prefix(URL_VAR)?.strip_prefix("='")?;
        return quoted.split_once('\'').map(|(url, _)| url);
    }
    let url = handler.get("url")?.as_str()?.trim_end_matches('/');
    url.strip_suffix(HOOKS_PATH)
}

/// What an install or uninstall did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The settings file.
    pub path: PathBuf,
    /// Events whose hooks of ours were added, replaced or removed.
    pub events: Vec<String>,
    /// Whether the file was written (false: it already was as asked).
    pub written: bool,
}

/// The `hooks` object of `settings`, checked to be the shape Claude Code reads (an object of
/// arrays of matcher groups, each with a `hooks` array), so no guess is written over it.
fn check_shape(settings: &Map<String, Value>) -> Result<(), String> {
    let Some(hooks) = settings.get("hooks") else {
        return Ok(());
    };
    let hooks = hooks
        .as_object()
        .ok_or("`hooks` must be an object of event names")?;
    for (event, groups) in hooks {
        let groups = groups
            .as_array()
            .ok_or_else(|| format!("`hooks.{event}` must be an array"))?;
        for (i, group) in groups.iter().enumerate() {
            let handlers = group.get("hooks");
            if !group.is_object() || handlers.is_some_and(|h| !h.is_array()) {
                return Err(format!(
                    "`hooks.{event}[{i}]` must be an object with a `hooks` array"
                ));
            }
        }
    }
    Ok(())
}

/// Removes our handlers from one event's matcher groups, and the groups left empty by it;
/// returns how many it removed. When `keep` is given, the first of ours is replaced by it
/// instead of removed.
fn strip_event(groups: &mut Vec<Value>, mut keep: Option<Value>) -> (usize, bool) {
    let mut removed = 0;
    let mut placed = false;
    groups.retain_mut(|group| {
        let Some(handlers) = group.get_mut("hooks").and_then(Value::as_array_mut) else {
            return true;
        };
        let before = handlers.len();
        let mut mine = 0;
        handlers.retain_mut(|handler| {
            if !is_ours(handler) {
                return true;
            }
            mine += 1;
            match keep.take() {
                Some(replacement) => {
                    *handler = replacement;
                    placed = true;
                    true
                }
                None => false,
            }
        });
        removed += mine;
        // A group the user left empty stays; one emptied by removing ours goes.
        !(handlers.is_empty() && before > 0)
    });
    (removed, placed)
}

/// Merges [`hook_entries`] into `settings`: our hook of each event replaced in place where
/// there is one, appended as its own matcher group where there is none, ours in events we no
/// longer install removed. Returns the events it changed.
pub fn merge(settings: &mut Map<String, Value>, entries: &Value) -> Vec<String> {
    let before = settings.clone();
    let hooks = settings
        .entry("hooks")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(hooks) = hooks.as_object_mut() else {
        return Vec::new();
    };
    let wanted = entries.as_object().cloned().unwrap_or_default();
    let stale: Vec<String> = hooks
        .keys()
        .filter(|event| !wanted.contains_key(*event))
        .cloned()
        .collect();
    for event in stale {
        remove_from(hooks, &event);
    }
    for (event, groups) in &wanted {
        let ours = groups[0]["hooks"][0].clone();
        let slot = hooks
            .entry(event.clone())
            .or_insert_with(|| Value::Array(Vec::new()));
        let Some(existing) = slot.as_array_mut() else {
            continue;
        };
        let (_, placed) = strip_event(existing, Some(ours));
        if !placed {
            existing.extend(groups.as_array().cloned().unwrap_or_default());
        }
    }
    changed_events(&before, settings)
}

/// Removes ours from `hooks[event]`, and the event when that left it empty.
fn remove_from(hooks: &mut Map<String, Value>, event: &str) -> usize {
    let Some(groups) = hooks.get_mut(event).and_then(Value::as_array_mut) else {
        return 0;
    };
    let had = groups.len();
    let (removed, _) = strip_event(groups, None);
    if removed > 0 && groups.is_empty() && had > 0 {
        hooks.remove(event);
    }
    removed
}

/// Removes every hook of ours from `settings`, and the event arrays and `hooks` object left
/// empty by that (not those the user had empty). Returns the events it changed.
pub fn remove(settings: &mut Map<String, Value>) -> Vec<String> {
    let before = settings.clone();
    let Some(hooks) = settings.get_mut("hooks").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    let had_any = !hooks.is_empty();
    let events: Vec<String> = hooks.keys().cloned().collect();
    let mut removed = 0;
    for event in events {
        removed += remove_from(hooks, &event);
    }
    if removed > 0 && had_any && hooks.is_empty() {
        settings.remove("hooks");
    }
    changed_events(&before, settings)
}

/// The events whose hooks differ between two versions of a settings object.
fn changed_events(before: &Map<String, Value>, after: &Map<String, Value>) -> Vec<String> {
    let empty = Map::new();
    let hooks = |settings: &'_ Map<String, Value>| -> Map<String, Value> {
        settings
            .get("hooks")
            .and_then(Value::as_object)
            .unwrap_or(&empty)
            .clone()
    };
    let (before, after) = (hooks(before), hooks(after));
    let mut events: Vec<String> = before.keys().chain(after.keys()).cloned().collect();
    events.sort();
    events.dedup();
    events.retain(|event| before.get(event) != after.get(event));
    events
}

/// Reads a settings file: an absent or blank one is an empty object.
fn read(path: &Path) -> Result<(Map<String, Value>, Option<fs::Permissions>), InstallError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok((Map::new(), None))
        }
        Err(source) => {
            return Err(InstallError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
        }
    };
    let permissions = fs::metadata(path).ok().map(|m| m.permissions());
    if text.trim().is_empty() {
        return Ok((Map::new(), permissions));
    }
    let value: Value = serde_json::from_str(&text).map_err(|source| InstallError::NotJson {
        path: path.to_owned(),
        source,
    })?;
    let Value::Object(settings) = value else {
        return Err(InstallError::NotSettings {
            path: path.to_owned(),
            why: "it is not a JSON object".into(),
        });
    };
    check_shape(&settings).map_err(|why| InstallError::NotSettings {
        path: path.to_owned(),
        why,
    })?;
    Ok((settings, permissions))
}

/// Writes `settings` to `path` through a temporary file renamed over it, so Claude Code never
/// reads half a file, keeping the old file's mode.
fn write(
    path: &Path,
    settings: &Map<String, Value>,
    permissions: Option<fs::Permissions>,
) -> Result<(), InstallError> {
    let io = |action, source| InstallError::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let mut text = serde_json::to_string_pretty(settings)
        .map_err(|e| io("write", std::io::Error::other(e)))?;
    text.push('\n');
    let mut temp = tempfile_in(dir).map_err(|e| io("write", e))?;
    let written = temp
        .1
        .write_all(text.as_bytes())
        .and_then(|()| temp.1.sync_all())
        .and_then(|()| match permissions {
            Some(permissions) => fs::set_permissions(&temp.0, permissions),
            None => Ok(()),
        })
        .and_then(|()| fs::rename(&temp.0, path));
    if let Err(error) = written {
        let _ = fs::remove_file(&temp.0);
        return Err(io("write", error));
    }
    Ok(())
}

/// A new file beside the settings file, named so two installs never share one.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let path = dir.join(format!(
        ".settings.{}.{}.tmp",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// Merges [`hook_entries`]`(server_url, shim)` into the settings file at `path`, creating it
/// (and its directory) when absent; writes nothing when it already holds exactly them.
pub fn install(path: &Path, server_url: &str, shim: Option<&Path>) -> Result<Change, InstallError> {
    edit(path, |settings| {
        merge(settings, &hook_entries(server_url, shim))
    })
}

/// Removes every hook of ours from the settings file at `path`; an absent file, or one
/// without ours, is left as it is.
pub fn uninstall(path: &Path) -> Result<Change, InstallError> {
    edit(path, remove)
}

/// Reads the settings file at `path`, applies `change` (which answers the events it
/// changed) and writes the file back only when something changed.
fn edit(
    path: &Path,
    change: impl FnOnce(&mut Map<String, Value>) -> Vec<String>,
) -> Result<Change, InstallError> {
    let (mut settings, permissions) = read(path)?;
    let events = change(&mut settings);
    let written = !events.is_empty();
    if written {
        write(path, &settings, permissions)?;
    }
    Ok(Change {
        path: path.to_owned(),
        events,
        written,
    })
}

/// What of ours one settings file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The settings file.
    pub path: PathBuf,
    /// Whether it exists.
    pub exists: bool,
    /// Events with a hook of ours.
    pub events: Vec<String>,
    /// Server URLs our `http` hooks post to.
    pub servers: Vec<String>,
    /// Events of [`EVENTS`] whose hook of ours is missing or differs from what an install
    /// with the same server URL and program would write.
    pub outdated: Vec<String>,
}

impl Status {
    /// `none`, `complete`, or `outdated`.
    pub fn summary(&self) -> &'static str {
        match (self.events.is_empty(), self.outdated.is_empty()) {
            (true, _) => "none",
            (false, true) => "complete",
            (false, false) => "outdated",
        }
    }
}

/// What of ours the settings file at `path` holds, compared with what an install for
/// `server_url` and `shim` would write.
pub fn status(path: &Path, server_url: &str, shim: Option<&Path>) -> Result<Status, InstallError> {
    let exists = path.exists();
    let (settings, _) = read(path)?;
    let hooks = settings
        .get("hooks")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut events = Vec::new();
    let mut servers = Vec::new();
    let mut outdated = Vec::new();
    for event in EVENTS {
        let ours: Vec<&Value> = hooks
            .get(event)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|group| group.get("hooks").and_then(Value::as_array))
            .flatten()
            .filter(|handler| is_ours(handler))
            .collect();
        if !ours.is_empty() {
            events.push(event.to_owned());
        }
        for server in ours.iter().filter_map(|handler| server_of(handler)) {
            if !servers.iter().any(|known| known == server) {
                servers.push(server.to_owned());
            }
        }
        if ours.as_slice() != [&handler(event, server_url, shim)] {
            outdated.push(event.to_owned());
        }
    }
    Ok(Status {
        path: path.to_owned(),
        exists,
        events,
        servers,
        outdated,
    })
}

/// The settings files hooks can live in for a project: `.claude/settings.local.json` (where
/// `hooks install` writes: personal, not committed) and `.claude/settings.json` (shared).
pub fn project_files(dir: &Path) -> [PathBuf; 2] {
    let claude = dir.join(".claude");
    [
        claude.join("settings.local.json"),
        claude.join("settings.json"),
    ]
}

/// The user's settings file, under `home`: `~/.claude/settings.json`.
pub fn user_file(home: &Path) -> PathBuf {
    home.join(".claude").join("settings.json")
}

#[cfg(test)]
mod tests;
