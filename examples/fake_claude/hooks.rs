//! Hooks as Claude Code runs them: settings read from `--settings` (a file or a JSON
//! string), `<cwd>/.claude/settings.json`, `<cwd>/.claude/settings.local.json` and
//! `<config dir>/settings.json`; for an event, every matching handler of every source
//! (identical handlers once): `http` → POST of the payload with headers interpolated from
//! `allowedEnvVars` (an unlisted `$VAR` becomes an empty string), `command` → `sh -c` with
//! the payload on stdin. A failing hook is reported on stderr and changes nothing, as in
//! Claude Code when no decision is returned.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Map, Value};

/// Events about a tool, whose matcher is checked against the tool's name (Claude Code's
/// rule, which the installer writes its matchers by).
use session_manager::claude::install::TOOL_EVENTS;

/// Every source's `hooks` object, in Claude Code's order.
pub struct Hooks {
    sources: Vec<Map<String, Value>>,
    /// What every payload carries.
    base: Map<String, Value>,
}

/// Reads a settings source: a JSON object with a `hooks` object, or nothing.
fn hooks_of(text: &str) -> Option<Map<String, Value>> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("hooks")?.as_object().cloned()
}

impl Hooks {
    /// The hooks of every source; `flag` is `--settings`, a JSON string when it starts
    /// with `{`, else a file.
    pub fn load(flag: Option<&str>, cwd: &Path, config_dir: &Path) -> Hooks {
        let mut texts = Vec::new();
        if let Some(flag) = flag {
            if flag.trim_start().starts_with('{') {
                texts.push(flag.to_owned());
            } else {
                match std::fs::read_to_string(flag) {
                    Ok(text) => texts.push(text),
                    Err(error) => {
                        super::fail(&format!("Error: cannot read settings {flag}: {error}"))
                    }
                }
            }
        }
        for path in [
            cwd.join(".claude/settings.json"),
            cwd.join(".claude/settings.local.json"),
            config_dir.join("settings.json"),
        ] {
            if let Ok(text) = std::fs::read_to_string(path) {
                texts.push(text);
            }
        }
        Hooks {
            sources: texts.iter().filter_map(|text| hooks_of(text)).collect(),
            base: Map::new(),
        }
    }

    /// Sets what every payload carries: `session_id`, `transcript_path`, `cwd`,
    /// `permission_mode`.
    pub fn with_base(mut self, base: Value) -> Hooks {
        self.base = base.as_object().cloned().unwrap_or_default();
        self
    }

    /// Runs `event`'s hooks with the base payload plus `fields`.
    pub fn run(&self, event: &str, fields: Value) {
        let mut payload = self.base.clone();
        payload.insert("hook_event_name".into(), json!(event));
        if let Some(fields) = fields.as_object() {
            payload.extend(fields.clone());
        }
        let tool = payload
            .get("tool_name")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body = Value::Object(payload).to_string();
        let mut seen: Vec<&Value> = Vec::new();
        let groups = self
            .sources
            .iter()
            .filter_map(|hooks| hooks.get(event).and_then(Value::as_array))
            .flatten();
        for group in groups {
            if TOOL_EVENTS.contains(&event) && !matches(group.get("matcher"), tool.as_deref()) {
                continue;
            }
            let handlers = group.get("hooks").and_then(Value::as_array);
            for handler in handlers.into_iter().flatten() {
                if seen.contains(&handler) {
                    continue;
                }
                seen.push(handler);
                run_handler(event, handler, &body);
            }
        }
    }
}

/// Whether a matcher takes a tool: absent, empty or `*` take every tool, else the tool's
/// name or one of a `|` list.
fn matches(matcher: Option<&Value>, tool: Option<&str>) -> bool {
    match matcher.and_then(Value::as_str).map(str::trim) {
        None | Some("") | Some("*") => true,
        Some(list) => tool.is_some_and(|tool| list.split('|').any(|name| name == tool)),
    }
}

fn run_handler(event: &str, handler: &Value, body: &str) {
    let outcome = match handler.get("type").and_then(Value::as_str) {
        Some("http") => post(handler, body),
        Some("command") => command(handler, body),
        _ => Ok(()),
    };
    if let Err(error) = outcome {
        eprintln!("{event} hook error: {error}");
    }
}

/// `$VAR` and `${VAR}` replaced by the variable when `allowed` lists it, else by nothing.
fn interpolate(value: &str, allowed: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], &braced[end + 1..]),
                None => ("", after),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        if name.is_empty() {
            out.push('$');
        } else if allowed.contains(&name) {
            out.push_str(&std::env::var(name).unwrap_or_default());
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn post(handler: &Value, body: &str) -> Result<(), String> {
    let url = handler["url"].as_str().ok_or("an http hook without url")?;
    let allowed: Vec<&str> = handler["allowedEnvVars"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let headers: Vec<(String, String)> = handler["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), interpolate(value.as_str()?, &allowed))))
        .collect();
    session_manager::hook::post_url(url, &headers, body.as_bytes())
        .map(|_| ())
        .map_err(|error| error.to_string())
}

fn command(handler: &Value, body: &str) -> Result<(), String> {
    let line = handler["command"]
        .as_str()
        .ok_or("a command hook without command")?;
    let mut child = Command::new("sh")
        .args(["-c", line])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|error| error.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(body.as_bytes());
    }
    let status = child.wait().map_err(|error| error.to_string())?;
    match status.code() {
        Some(0) => Ok(()),
        other => Err(format!("`{line}` exited with {other:?}")),
    }
}
