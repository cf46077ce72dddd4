//! What the server knows of one Claude Code session (a conversation of the `claude` CLI,
//! ours or started by hand), as its hooks tell it: the activity state and what it is
//! attributed to. Defined here, beside the event that carries it
//! ([`SessionEvent::ClaudeActivity`](super::SessionEvent::ClaudeActivity)), so that sessions
//! import nothing of the `claude` module one layer up, which derives and publishes it.

use uuid::Uuid;

/// What a Claude Code session is doing, as its hooks last said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActivityState {
    /// A prompt was submitted; tools, subagents or background tasks are running.
    Working,
    /// It waits for its person: a permission prompt, a question, an idle prompt.
    WaitingForInput,
    /// Its turn is over and nothing runs in the background.
    Idle,
    /// Its turn ended on an error (`StopFailure`).
    Failed,
    /// The conversation ended (`SessionEnd`).
    Ended,
}

impl ActivityState {
    /// Every state, in the order the dashboard lists them.
    pub const ALL: [ActivityState; 5] = [
        ActivityState::Working,
        ActivityState::WaitingForInput,
        ActivityState::Idle,
        ActivityState::Failed,
        ActivityState::Ended,
    ];

    /// The word on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityState::Working => "working",
            ActivityState::WaitingForInput => "waiting_for_input",
            ActivityState::Idle => "idle",
            ActivityState::Failed => "failed",
            ActivityState::Ended => "ended",
        }
    }

    /// The state named `word`, if any.
    pub fn parse(word: &str) -> Option<ActivityState> {
        ActivityState::ALL
            .into_iter()
            .find(|state| state.as_str() == word)
    }
}

/// One Claude Code session as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeActivity {
    /// Claude Code's own session id (the hooks' `session_id`).
    pub claude_session_id: String,
    /// Our session it is attributed to; `None` while unattributed.
    pub session: Option<Uuid>,
    /// Our agent running it, when it is one of our Claude agents (or the hook said so).
    pub agent: Option<String>,
    /// What it is doing.
    pub state: ActivityState,
    /// Unix seconds it entered `state`.
    pub since: f64,
    /// Its working directory, as its last hook gave it.
    pub cwd: Option<String>,
    /// Its transcript file, as its last hook gave it.
    pub transcript_path: Option<String>,
    /// The `hook_event_name` of its last hook.
    pub last_event: String,
    /// Unix seconds its last hook arrived.
    pub last_event_at: f64,
    /// The error of a `StopFailure`, while `failed`.
    pub error: Option<String>,
}
