//! What Claude Code did in a session, read from its hook events: tool uses, commands run,
//! files created / modified / deleted, tool errors and tool response times. Pure: the
//! [`Ledger`] is fed payloads with the time they arrived and answers totals and the sliding
//! windows the thresholds watch, so every rule is tested without a server or a clock.
//!
//! The rules (Claude Code's hook payloads: `hook_event_name`, `tool_name`, `tool_input`,
//! `tool_response`, `tool_use_id`):
//! - a tool use is counted at `PostToolUse` (or `PostToolUseFailure`); `PreToolUse` only
//!   marks when it started, so its response time is the gap between the two, matched by
//!   `tool_use_id` (no id, or no `PreToolUse` seen: no response time);
//! - `Bash` is a command executed; `rm` / `unlink` / `git rm` words in it count the files
//!   they name as deleted (a heuristic over the simple commands of the line, no shell
//!   parsing: globs and variables count as one file each);
//! - `Write` creates a file, or modifies it if it existed: `tool_response.type` (`create` /
//!   `update`) says which when present, else whether the path existed when `PreToolUse`
//!   arrived, else it counts as modified;
//! - `Edit`, `MultiEdit`, `NotebookEdit` modify a file;
//! - an error is a `PostToolUseFailure`, or a `PostToolUse` whose `tool_response` has a
//!   non-empty `error`, `is_error: true` or `success: false`; a failed tool use changes no
//!   file (a failed `Bash` still counts as a command executed).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

/// The window the error rate is counted over.
pub const ERROR_WINDOW_SECONDS: f64 = 3600.0;
/// The window the response time is averaged over.
pub const RESPONSE_WINDOW_SECONDS: f64 = 300.0;
/// `PreToolUse` events waiting for their `PostToolUse`, at most; the oldest go first.
const MAX_PENDING: usize = 10_000;
/// A `PreToolUse` older than this has lost its `PostToolUse`.
const PENDING_SECONDS: f64 = 3600.0;
/// Longest command word or file path kept for the most-used lists.
const MAX_NAME_CHARS: usize = 512;

/// Counts of one session (or of one hour, or of one event).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Activity {
    /// Tool uses finished (`PostToolUse`, `PostToolUseFailure`).
    pub tool_uses: u64,
    /// `Bash` tool uses.
    pub commands_executed: u64,
    /// Files a `Write` created.
    pub files_created: u64,
    /// Files a `Write`, `Edit`, `MultiEdit` or `NotebookEdit` changed.
    pub files_modified: u64,
    /// Files an `rm` / `unlink` / `git rm` in a command named.
    pub files_deleted: u64,
    /// Tool uses that failed.
    pub errors: u64,
    /// Response times measured.
    pub responses: u64,
    /// Their sum, milliseconds.
    pub response_ms_total: f64,
    /// The longest, milliseconds.
    pub response_ms_max: f64,
}

impl Activity {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &Activity) {
        self.tool_uses += other.tool_uses;
        self.commands_executed += other.commands_executed;
        self.files_created += other.files_created;
        self.files_modified += other.files_modified;
        self.files_deleted += other.files_deleted;
        self.errors += other.errors;
        self.responses += other.responses;
        self.response_ms_total += other.response_ms_total;
        self.response_ms_max = self.response_ms_max.max(other.response_ms_max);
    }

    /// Mean response time, milliseconds; `None` before the first one.
    pub fn average_response_ms(&self) -> Option<f64> {
        (self.responses > 0).then(|| self.response_ms_total / self.responses as f64)
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Activity::default()
    }
}

/// What one hook event adds.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Delta {
    /// The counts.
    pub(crate) activity: Activity,
    /// The tool used, for the most-used tools.
    pub(crate) tool: Option<String>,
    /// The first word of each simple command of a `Bash` line, for the most-used commands.
    pub(crate) commands: Vec<String>,
    /// Files created, modified or deleted, for the most-touched files.
    pub(crate) files: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    at: f64,
    existed: Option<bool>,
}

/// Every session's counts and the recent events the thresholds watch.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    totals: HashMap<Uuid, Activity>,
    pending: HashMap<String, Pending>,
    errors: HashMap<Uuid, VecDeque<f64>>,
    responses: HashMap<Uuid, VecDeque<(f64, f64)>>,
    restarts_seen: HashMap<Uuid, u64>,
}

impl Ledger {
    /// Takes stored totals back (at start).
    pub(crate) fn restore(&mut self, session: Uuid, totals: Activity) {
        self.totals.insert(session, totals);
    }

    /// Feeds one hook event, `name` with `payload`, that arrived at `at` (Unix seconds);
    /// `exists` tells whether a path exists now (asked for a `Write`'s `PreToolUse`).
    pub(crate) fn record(
        &mut self,
        session: Uuid,
        name: &str,
        payload: &Value,
        at: f64,
        exists: impl Fn(&Path) -> bool,
    ) -> Delta {
        let tool = payload.get("tool_name").and_then(Value::as_str);
        let use_id = payload.get("tool_use_id").and_then(Value::as_str);
        match name {
            "PreToolUse" => {
                if let Some(id) = use_id {
                    let existed = match tool {
                        Some("Write") => file_path(payload).map(|p| exists(Path::new(p))),
                        _ => None,
                    };
                    self.remember(id, Pending { at, existed });
                }
                Delta::default()
            }
            "PostToolUse" | "PostToolUseFailure" => {
                let pending = use_id.and_then(|id| self.pending.remove(id));
                let failed = name == "PostToolUseFailure" || is_error(payload);
                let mut delta = judge(tool, payload, failed, pending.and_then(|p| p.existed));
                if let Some(started) = pending {
                    let ms = ((at - started.at) * 1000.0).max(0.0);
                    delta.activity.responses = 1;
                    delta.activity.response_ms_total = ms;
                    delta.activity.response_ms_max = ms;
                    self.responses
                        .entry(session)
                        .or_default()
                        .push_back((at, ms));
                }
                if failed {
                    self.errors.entry(session).or_default().push_back(at);
                }
                self.totals.entry(session).or_default().add(&delta.activity);
                delta
            }
            _ => Delta::default(),
        }
    }

    /// Tells the session's agents' restart count at `at`: restarts since the last call count
    /// as errors in the error rate (an agent that crashed). The first call sets the base.
    pub(crate) fn note_restarts(&mut self, session: Uuid, total: u64, at: f64) {
        let seen = self.restarts_seen.insert(session, total);
        if let Some(before) = seen {
            let errors = self.errors.entry(session).or_default();
            for _ in before..total {
                errors.push_back(at);
            }
        }
    }

    /// Errors of the session in the hour before `now`: failed tool uses and agent restarts.
    pub(crate) fn error_rate(&mut self, session: Uuid, now: f64) -> f64 {
        let Some(times) = self.errors.get_mut(&session) else {
            return 0.0;
        };
        while times
            .front()
            .is_some_and(|&t| t < now - ERROR_WINDOW_SECONDS)
        {
            times.pop_front();
        }
        times.len() as f64
    }

    /// Mean response time of the session's tool uses finished in the five minutes before
    /// `now`, milliseconds; 0 when there were none.
    pub(crate) fn response_ms(&mut self, session: Uuid, now: f64) -> f64 {
        let Some(times) = self.responses.get_mut(&session) else {
            return 0.0;
        };
        while times
            .front()
            .is_some_and(|&(t, _)| t < now - RESPONSE_WINDOW_SECONDS)
        {
            times.pop_front();
        }
        if times.is_empty() {
            return 0.0;
        }
        times.iter().map(|(_, ms)| ms).sum::<f64>() / times.len() as f64
    }

    /// The error rate and mean response time of every session whose windows hold anything at
    /// `now` (the others are at 0); windows left empty are dropped, so a tick reads only
    /// the sessions that had hook events lately, not every session.
    pub(crate) fn windows(&mut self, now: f64) -> Vec<(Uuid, f64, f64)> {
        let mut sessions: Vec<Uuid> = self.errors.keys().copied().collect();
        sessions.extend(
            self.responses
                .keys()
                .filter(|id| !self.errors.contains_key(id)),
        );
        let windows = sessions
            .into_iter()
            .map(|id| (id, self.error_rate(id, now), self.response_ms(id, now)))
            .collect();
        self.errors.retain(|_, times| !times.is_empty());
        self.responses.retain(|_, times| !times.is_empty());
        windows
    }

    /// A session's totals.
    pub(crate) fn totals(&self, session: Uuid) -> Activity {
        self.totals.get(&session).copied().unwrap_or_default()
    }

    /// Every session's totals, summed.
    pub(crate) fn sum(&self) -> Activity {
        let mut sum = Activity::default();
        for totals in self.totals.values() {
            sum.add(totals);
        }
        sum
    }

    /// Forgets a purged session.
    pub(crate) fn forget(&mut self, session: Uuid) {
        self.totals.remove(&session);
        self.errors.remove(&session);
        self.responses.remove(&session);
        self.restarts_seen.remove(&session);
    }

    fn remember(&mut self, id: &str, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            let oldest_kept = pending.at - PENDING_SECONDS;
            self.pending.retain(|_, p| p.at >= oldest_kept);
            if self.pending.len() >= MAX_PENDING {
                let oldest = self
                    .pending
                    .iter()
                    .min_by(|a, b| a.1.at.total_cmp(&b.1.at))
                    .map(|(id, _)| id.clone());
                if let Some(oldest) = oldest {
                    self.pending.remove(&oldest);
                }
            }
        }
        self.pending.insert(id.to_owned(), pending);
    }
}

/// The counts of one finished tool use.
fn judge(tool: Option<&str>, payload: &Value, failed: bool, existed: Option<bool>) -> Delta {
    let mut delta = Delta {
        activity: Activity {
            tool_uses: 1,
            errors: u64::from(failed),
            ..Activity::default()
        },
        tool: tool.map(|t| clip(t).to_owned()),
        ..Delta::default()
    };
    let input = payload.get("tool_input");
    match tool {
        Some("Bash") => {
            delta.activity.commands_executed = 1;
            let line = input
                .and_then(|i| i.get("command"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let (words, deleted) = read_command(line);
            delta.commands = words;
            if !failed {
                delta.activity.files_deleted = deleted.len() as u64;
                delta.files = deleted;
            }
        }
        Some("Write") if !failed => {
            let kind = payload
                .get("tool_response")
                .and_then(|r| r.get("type"))
                .and_then(Value::as_str);
            let created = match kind {
                Some("create") => true,
                Some("update") => false,
                _ => existed == Some(false),
            };
            if created {
                delta.activity.files_created = 1;
            } else {
                delta.activity.files_modified = 1;
            }
            delta
                .files
                .extend(file_path(payload).map(|p| clip(p).to_owned()));
        }
        Some("Edit" | "MultiEdit" | "NotebookEdit") if !failed => {
            delta.activity.files_modified = 1;
            delta
                .files
                .extend(file_path(payload).map(|p| clip(p).to_owned()));
        }
        _ => {}
    }
    delta
}

/// The file a hook event will ask the existence of (`record`'s `exists`): a `Write`'s
/// `PreToolUse` path, to tell a created file from a modified one.
pub(crate) fn path_to_check<'a>(name: &str, payload: &'a Value) -> Option<&'a str> {
    let tool = payload.get("tool_name").and_then(Value::as_str);
    (name == "PreToolUse" && tool == Some("Write")).then(|| file_path(payload))?
}

fn file_path(payload: &Value) -> Option<&str> {
    let input = payload.get("tool_input")?;
    input
        .get("file_path")
        .or_else(|| input.get("notebook_path"))
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
}

/// Whether a `PostToolUse` reports a failure.
fn is_error(payload: &Value) -> bool {
    let Some(response) = payload.get("tool_response").and_then(Value::as_object) else {
        return false;
    };
    let error = match response.get("error") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    };
    error
        || response.get("is_error") == Some(&Value::Bool(true))
        || response.get("success") == Some(&Value::Bool(false))
}

/// The first word of each simple command of `line`, and the files its `rm`, `unlink` and
/// `git rm` commands name.
fn read_command(line: &str) -> (Vec<String>, Vec<String>) {
    let mut words_seen = Vec::new();
    let mut deleted = Vec::new();
    let line = line.replace("&&", ";").replace("||", ";");
    for part in line.split(['\n', ';', '|']) {
        let mut words = part
            .split_whitespace()
            .skip_while(|w| w.contains('=') && !w.starts_with('-') || *w == "sudo");
        let Some(first) = words.next() else { continue };
        let first = first.rsplit('/').next().unwrap_or(first);
        words_seen.push(clip(first).to_owned());
        let removes = match first {
            "rm" | "unlink" => true,
            "git" => words.next() == Some("rm"),
            _ => false,
        };
        if removes {
            deleted.extend(
                words
                    .filter(|w| !w.starts_with('-'))
                    .map(|w| clip(w.trim_matches(['"', '\''])).to_owned()),
            );
        }
    }
    (words_seen, deleted)
}

fn clip(text: &str) -> &str {
    match text.char_indices().nth(MAX_NAME_CHARS) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const S: Uuid = Uuid::from_u128(7);

    fn never(_: &Path) -> bool {
        false
    }

    fn post(ledger: &mut Ledger, tool: &str, input: Value, response: Value, at: f64) -> Delta {
        let payload = json!({
            "hook_event_name": "PostToolUse",
            "tool_name": tool,
            "tool_input": input,
            "tool_response": response,
        });
        ledger.record(S, "PostToolUse", &payload, at, never)
    }

    #[test]
    fn bash_is_a_command_and_its_rm_words_delete_files() {
        let mut ledger = Ledger::default();
        let delta = post(
            &mut ledger,
            "Bash",
            json!({"command": "cd src && FOO=1 rm -rf a.txt 'b c' && git rm -q d.rs | cat; /bin/ls"}),
            json!({"stdout": "", "stderr": ""}),
            1.0,
        );
        assert_eq!(delta.activity.commands_executed, 1);
        assert_eq!(delta.commands, ["cd", "rm", "git", "cat", "ls"]);
        assert_eq!(delta.files, ["a.txt", "b", "c", "d.rs"]);
        assert_eq!(delta.activity.files_deleted, 4);
        assert_eq!(ledger.totals(S).commands_executed, 1);
    }

    #[test]
    fn write_creates_or_modifies_and_edits_modify() {
        let mut ledger = Ledger::default();
        let path = json!({"file_path": "/w/a.rs", "content": "x"});
        let created = post(
            &mut ledger,
            "Write",
            path.clone(),
            json!({"type": "create"}),
            1.0,
        );
        assert_eq!(created.activity.files_created, 1);
        assert_eq!(created.files, ["/w/a.rs"]);
        let updated = post(
            &mut ledger,
            "Write",
            path.clone(),
            json!({"type": "update"}),
            2.0,
        );
        assert_eq!(updated.activity.files_modified, 1);
        // No type in the response: whether the file existed at PreToolUse decides.
        for (existed, created) in [(false, 1), (true, 0)] {
            let pre = json!({"tool_name": "Write", "tool_use_id": "t", "tool_input": path});
            ledger.record(S, "PreToolUse", &pre, 3.0, |p| {
                assert_eq!(p, Path::new("/w/a.rs"));
                existed
            });
            let payload = json!({"tool_name": "Write", "tool_use_id": "t", "tool_input": path,
                                 "tool_response": {}});
            let delta = ledger.record(S, "PostToolUse", &payload, 3.5, never);
            assert_eq!(delta.activity.files_created, created);
            assert_eq!(delta.activity.files_modified, 1 - created);
        }
        // Neither: modified.
        assert_eq!(
            post(&mut ledger, "Write", path.clone(), json!({}), 4.0)
                .activity
                .files_modified,
            1
        );
        for tool in ["Edit", "MultiEdit"] {
            let delta = post(&mut ledger, tool, path.clone(), json!({}), 5.0);
            assert_eq!(delta.activity.files_modified, 1, "{tool}");
        }
        let notebook = post(
            &mut ledger,
            "NotebookEdit",
            json!({"notebook_path": "/w/n.ipynb"}),
            json!({}),
            6.0,
        );
        assert_eq!(notebook.files, ["/w/n.ipynb"]);
        let totals = ledger.totals(S);
        assert_eq!(
            (
                totals.files_created,
                totals.files_modified,
                totals.tool_uses
            ),
            (2, 6, 8)
        );
    }

    #[test]
    fn failures_are_errors_and_change_no_file() {
        let mut ledger = Ledger::default();
        let path = json!({"file_path": "/w/a.rs"});
        for response in [
            json!({"error": "permission denied"}),
            json!({"is_error": true}),
            json!({"success": false}),
        ] {
            let delta = post(&mut ledger, "Edit", path.clone(), response.clone(), 1.0);
            assert_eq!(delta.activity.errors, 1, "{response}");
            assert_eq!(delta.activity.files_modified, 0);
        }
        for response in [json!({"error": null}), json!({"error": ""}), json!("text")] {
            assert_eq!(
                post(&mut ledger, "Edit", path.clone(), response.clone(), 1.0)
                    .activity
                    .errors,
                0,
                "{response}"
            );
        }
        let failure = json!({"tool_name": "Bash", "tool_input": {"command": "rm x"},
                             "error": "exit 1"});
        let delta = ledger.record(S, "PostToolUseFailure", &failure, 2.0, never);
        assert_eq!(
            (
                delta.activity.errors,
                delta.activity.commands_executed,
                delta.activity.files_deleted
            ),
            (1, 1, 0)
        );
        assert_eq!(ledger.totals(S).errors, 4);
    }

    #[test]
    fn the_response_time_pairs_pre_and_post_by_tool_use_id() {
        let mut ledger = Ledger::default();
        let pre = |id: &str| json!({"tool_name": "Read", "tool_use_id": id});
        ledger.record(S, "PreToolUse", &pre("a"), 10.0, never);
        ledger.record(S, "PreToolUse", &pre("b"), 10.5, never);
        let b = ledger.record(S, "PostToolUse", &pre("b"), 11.0, never);
        let a = ledger.record(S, "PostToolUse", &pre("a"), 13.0, never);
        assert_eq!(b.activity.response_ms_total, 500.0);
        assert_eq!(a.activity.response_ms_total, 3000.0);
        // A second Post of the same id, or one without a Pre: no time.
        let again = ledger.record(S, "PostToolUse", &pre("a"), 14.0, never);
        assert_eq!(again.activity.responses, 0);
        let totals = ledger.totals(S);
        assert_eq!(totals.responses, 2);
        assert_eq!(totals.average_response_ms(), Some(1750.0));
        assert_eq!(totals.response_ms_max, 3000.0);
        assert_eq!(ledger.response_ms(S, 14.0), 1750.0);
        assert_eq!(
            ledger.response_ms(S, 13.0 + RESPONSE_WINDOW_SECONDS + 1.0),
            0.0
        );
    }

    #[test]
    fn the_error_rate_counts_the_last_hour_with_agent_restarts() {
        let mut ledger = Ledger::default();
        ledger.note_restarts(S, 5, 0.0);
        assert_eq!(
            ledger.error_rate(S, 0.0),
            0.0,
            "the first count is the base"
        );
        post(&mut ledger, "Bash", json!({}), json!({"error": "x"}), 100.0);
        ledger.note_restarts(S, 7, 200.0);
        assert_eq!(ledger.error_rate(S, 300.0), 3.0);
        assert_eq!(
            ledger.error_rate(S, 100.0 + ERROR_WINDOW_SECONDS + 50.0),
            2.0
        );
        assert_eq!(
            ledger.error_rate(S, 200.0 + ERROR_WINDOW_SECONDS + 1.0),
            0.0
        );
        ledger.forget(S);
        assert_eq!(ledger.totals(S), Activity::default());
    }

    #[test]
    fn other_events_count_nothing_and_pending_is_bounded() {
        let mut ledger = Ledger::default();
        for name in ["Stop", "SessionStart", "UserPromptSubmit", "Notification"] {
            let delta = ledger.record(S, name, &json!({"tool_name": "Bash"}), 1.0, never);
            assert_eq!(delta, Delta::default());
        }
        for i in 0..MAX_PENDING + 10 {
            let pre = json!({"tool_name": "Read", "tool_use_id": i.to_string()});
            ledger.record(S, "PreToolUse", &pre, i as f64, never);
        }
        assert!(ledger.pending.len() <= MAX_PENDING);
        assert!(ledger.totals(S).is_empty());
    }
}
