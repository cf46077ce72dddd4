//! The activity state machine: which hook event moves a Claude Code session to which state.
//! Pure — an event and the state before give the state after — so the whole table is tested
//! without a server.
//!
//! The rules (Claude Code's hook events, by `hook_event_name`):
//! - `UserPromptSubmit`, `PreToolUse`, `PostToolUse`, `PostToolUseFailure`,
//!   `PermissionDenied` (the tool is refused, the turn goes on), `SubagentStart`,
//!   `SubagentStop` (the main agent goes on), `PreCompact` → `working` — but a subagent or
//!   a compaction while `waiting_for_input` leaves it waiting (the person's answer is still
//!   needed);
//! - `PostCompact` → back to what the compaction interrupted: `working` after an automatic
//!   one (`trigger: "auto"`, mid-turn), `idle` after a manual `/compact` at the prompt;
//! - `PermissionRequest`, and `Notification` whose `notification_type` is
//!   `permission_prompt`, `idle_prompt` or `elicitation_dialog` → `waiting_for_input`, until
//!   the next prompt or tool use; other notifications change nothing;
//! - `Stop` → `idle`, unless `background_tasks` says tasks still run (a non-empty list or
//!   object, a count over 0, `true`): then `working` — the turn's answer is out but the work
//!   is not done (a peer that marks it done here is wrong while subagents still run);
//! - `StopFailure` → `failed`, with its `error`;
//! - `SessionStart` → `idle` (a new or resumed conversation waits for its first prompt);
//! - `SessionEnd` → `ended`;
//! - any other event (a newer Claude Code's) changes nothing: it is stored and announced,
//!   never refused.

use serde_json::{Map, Value};

use crate::session::ActivityState;

/// Notification types that mean the person is asked for something.
const WAITING_NOTIFICATIONS: [&str; 3] = ["permission_prompt", "idle_prompt", "elicitation_dialog"];

/// What of a hook payload the state machine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent<'a> {
    /// `hook_event_name`.
    pub name: &'a str,
    /// `notification_type` of a `Notification`.
    pub notification_type: Option<&'a str>,
    /// `trigger` of a compaction (`manual` or `auto`).
    pub trigger: Option<&'a str>,
    /// Whether a `Stop` says background tasks still run.
    pub background_tasks: bool,
    /// `error` of a `StopFailure`, as text.
    pub error: Option<String>,
}

impl<'a> HookEvent<'a> {
    /// Reads the fields the rules use from a payload named `name`.
    pub fn read(name: &'a str, payload: &'a Map<String, Value>) -> HookEvent<'a> {
        let text = |key: &str| payload.get(key).and_then(Value::as_str);
        HookEvent {
            name,
            notification_type: text("notification_type"),
            trigger: text("trigger"),
            background_tasks: payload.get("background_tasks").is_some_and(running),
            error: failure(payload),
        }
    }
}

/// Whether a `background_tasks` value says something still runs.
fn running(value: &Value) -> bool {
    match value {
        Value::Array(tasks) => !tasks.is_empty(),
        Value::Object(tasks) => !tasks.is_empty(),
        Value::Number(count) => count.as_f64().is_some_and(|n| n > 0.0),
        Value::Bool(any) => *any,
        Value::String(_) | Value::Null => false,
    }
}

/// A `StopFailure`'s error as one text: Claude Code sends `error_type` (`rate_limit`,
/// `server_error`, …), `error` (a short code) and `error_message`; the message (or else the
/// code) with its type in front.
fn failure(payload: &Map<String, Value>) -> Option<String> {
    let kind = payload.get("error_type").and_then(Value::as_str);
    let detail = payload
        .get("error_message")
        .filter(|v| !v.is_null())
        .or_else(|| payload.get("error"))
        .and_then(error_text);
    let text = match (kind, detail) {
        (Some(kind), Some(detail)) if detail != kind => format!("{kind}: {detail}"),
        (Some(kind), _) => kind.to_owned(),
        (None, detail) => detail?,
    };
    Some(text.chars().take(MAX_ERROR_CHARS).collect())
}

/// An error value as one line of text: a string as is, an object's `message`
/// (or `type`), anything else as JSON.
fn error_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        Value::Object(error) => error
            .get("message")
            .or_else(|| error.get("type"))
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned),
        other => other.to_string(),
    };
    Some(text.chars().take(MAX_ERROR_CHARS).collect())
}

/// Longest error text kept.
const MAX_ERROR_CHARS: usize = 2048;

/// The state after `event`, from `state` (`None`: the session was never seen before).
pub fn next(state: Option<ActivityState>, event: &HookEvent<'_>) -> Option<ActivityState> {
    use ActivityState::*;
    let after = match event.name {
        // A subagent or a compaction in the background does not answer the question the
        // person is asked: still waiting.
        "SubagentStart" | "SubagentStop" | "PreCompact" | "PostCompact"
            if state == Some(WaitingForInput) =>
        {
            WaitingForInput
        }
        "UserPromptSubmit" | "PreToolUse" | "PostToolUse" | "PostToolUseFailure"
        | "PermissionDenied" | "SubagentStart" | "SubagentStop" | "PreCompact" => Working,
        "PostCompact" if event.trigger == Some("manual") => Idle,
        "PostCompact" => Working,
        "PermissionRequest" => WaitingForInput,
        "Notification"
            if event
                .notification_type
                .is_some_and(|kind| WAITING_NOTIFICATIONS.contains(&kind)) =>
        {
            WaitingForInput
        }
        "Stop" if event.background_tasks => Working,
        "Stop" => Idle,
        "StopFailure" => Failed,
        "SessionStart" => Idle,
        "SessionEnd" => Ended,
        _ => return state,
    };
    Some(after)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use ActivityState::*;

    /// Every event Claude Code documents, with the payload fields the rules read, and the
    /// state it leads to from any state (`None`: the state stays).
    fn table() -> Vec<(Value, Option<ActivityState>)> {
        vec![
            (
                json!({"hook_event_name": "SessionStart", "source": "startup"}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "SessionStart", "source": "resume"}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "UserPromptSubmit", "prompt": "hi"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PreToolUse", "tool_name": "Bash"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PermissionRequest", "tool_name": "Bash"}),
                Some(WaitingForInput),
            ),
            (
                json!({"hook_event_name": "PermissionDenied", "tool_name": "Bash"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PostToolUse", "tool_name": "Bash"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PostToolUseFailure", "tool_name": "Bash"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "permission_prompt"}),
                Some(WaitingForInput),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "idle_prompt"}),
                Some(WaitingForInput),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "elicitation_dialog"}),
                Some(WaitingForInput),
            ),
            (
                json!({"hook_event_name": "Notification", "notification_type": "auth_success"}),
                None,
            ),
            (
                json!({"hook_event_name": "Notification", "message": "no type"}),
                None,
            ),
            (
                json!({"hook_event_name": "Stop", "stop_hook_active": false}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "Stop", "background_tasks": []}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "Stop", "background_tasks": 0}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "Stop", "background_tasks": [{"id": "t1"}]}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "Stop", "background_tasks": 2}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "StopFailure", "error": "rate_limit"}),
                Some(Failed),
            ),
            (
                json!({"hook_event_name": "SubagentStart", "agent_type": "Explore"}),
                Some(Working),
            ),
            (json!({"hook_event_name": "SubagentStop"}), Some(Working)),
            (
                json!({"hook_event_name": "PreCompact", "trigger": "auto"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PostCompact", "trigger": "auto"}),
                Some(Working),
            ),
            (
                json!({"hook_event_name": "PostCompact", "trigger": "manual"}),
                Some(Idle),
            ),
            (
                json!({"hook_event_name": "SessionEnd", "reason": "prompt_input_exit"}),
                Some(Ended),
            ),
            (json!({"hook_event_name": "SomethingNew", "x": 1}), None),
        ]
    }

    #[test]
    fn every_event_from_every_state() {
        let states = std::iter::once(None).chain(ActivityState::ALL.map(Some));
        for state in states {
            for (payload, expected) in table() {
                let payload = payload.as_object().unwrap().clone();
                let name = payload["hook_event_name"].as_str().unwrap();
                let event = HookEvent::read(name, &payload);
                let after = next(state, &event);
                let background = ["SubagentStart", "SubagentStop", "PreCompact", "PostCompact"];
                let expected = if state == Some(WaitingForInput) && background.contains(&name) {
                    Some(WaitingForInput)
                } else {
                    expected.or(state)
                };
                assert_eq!(after, expected, "{payload:?} from {state:?}");
            }
        }
    }

    #[test]
    fn a_session_walks_through_a_turn() {
        let walk = [
            ("SessionStart", Idle),
            ("UserPromptSubmit", Working),
            ("PermissionRequest", WaitingForInput),
            ("PreToolUse", Working),
            ("PostToolUse", Working),
            ("Stop", Idle),
            ("SessionEnd", Ended),
        ];
        let empty = Map::new();
        let mut state = None;
        for (name, expected) in walk {
            state = next(state, &HookEvent::read(name, &empty));
            assert_eq!(state, Some(expected), "after {name}");
        }
    }

    #[test]
    fn errors_are_read_as_one_bounded_text() {
        let read = |error: Value| {
            let payload = json!({ "error": error }).as_object().unwrap().clone();
            HookEvent::read("StopFailure", &payload).error
        };
        assert_eq!(read(json!("overloaded")), Some("overloaded".into()));
        assert_eq!(
            read(json!({"type": "rate_limit", "message": "slow down"})),
            Some("slow down".into())
        );
        assert_eq!(
            read(json!({"type": "rate_limit"})),
            Some("rate_limit".into())
        );
        assert_eq!(read(json!(529)), Some("529".into()));
        let full = json!({"error_type": "rate_limit", "error": "429", "error_message": "Rate limit exceeded"});
        let full = full.as_object().unwrap();
        assert_eq!(
            HookEvent::read("StopFailure", full).error.as_deref(),
            Some("rate_limit: Rate limit exceeded")
        );
        let bare = json!({"error_type": "unknown"});
        assert_eq!(
            HookEvent::read("StopFailure", bare.as_object().unwrap())
                .error
                .as_deref(),
            Some("unknown")
        );
        assert_eq!(read(Value::Null), None);
        assert_eq!(
            read(json!("x".repeat(10_000))).unwrap().len(),
            MAX_ERROR_CHARS
        );
    }
}
