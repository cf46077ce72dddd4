//! Claude Code sessions on the wire: an entry of a session object's `claude_sessions`, of
//! `GET /api/claude/activity`, and the data of a `claude_activity` event.

use serde::Serialize;
use utoipa::ToSchema;

use crate::api::usage::TokensObject;
use crate::claude::Claude;
use crate::session::{ActivityState, ClaudeActivity};

/// One Claude Code session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ClaudeSessionObject {
    /// Claude Code's own session id (its hooks' `session_id`).
    claude_session_id: String,
    /// The session of ours it is attributed to; `null` while unattributed.
    session_id: Option<String>,
    /// Our Claude agent running it, when it is one.
    agent: Option<String>,
    /// `working`, `waiting_for_input`, `idle`, `failed` or `ended`.
    #[schema(value_type = ClaudeStateSchema)]
    state: &'static str,
    /// Unix seconds it entered `state`.
    since: f64,
    /// Its working directory, as its last hook gave it.
    cwd: Option<String>,
    /// Its transcript file, as its last hook gave it.
    transcript_path: Option<String>,
    /// The `hook_event_name` of its last hook.
    last_event: String,
    /// Unix seconds of its last hook.
    last_event_at: f64,
    /// The error of the `StopFailure` that made it `failed`.
    error: Option<String>,
    /// What it cost so far, USD, as its telemetry counted (0 until it exports; the
    /// session's `…/usage` falls back to transcripts).
    cost_usd: f64,
    /// Tokens it used so far.
    tokens: TokensObject,
}

/// What a Claude Code session is doing.
#[derive(ToSchema)]
#[schema(as = ClaudeState)]
// Never built: only its schema is read.
#[allow(dead_code)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ClaudeStateSchema {
    /// A prompt was submitted; tools, subagents or background tasks run.
    Working,
    /// It waits for its person (a permission prompt, a question, an idle prompt).
    WaitingForInput,
    /// Its turn is over and nothing runs in the background.
    Idle,
    /// Its turn ended on an error (`StopFailure`).
    Failed,
    /// The conversation ended (`SessionEnd`, or our agent's process exited).
    Ended,
}

impl ClaudeSessionObject {
    /// The entry for `activity`, with its cost and tokens as `claude` knows them.
    pub(crate) fn new(activity: &ClaudeActivity, claude: &Claude) -> Self {
        let totals = claude.totals(&activity.claude_session_id);
        ClaudeSessionObject {
            cost_usd: totals.cost_usd,
            tokens: TokensObject::from(&totals.tokens),
            ..ClaudeSessionObject::of(activity)
        }
    }

    /// The entry for `activity` without cost and tokens (an event's data: the encoder has
    /// only the event).
    pub(crate) fn of(activity: &ClaudeActivity) -> Self {
        ClaudeSessionObject {
            claude_session_id: activity.claude_session_id.clone(),
            session_id: activity.session.map(|id| id.to_string()),
            agent: activity.agent.clone(),
            state: activity.state.as_str(),
            since: activity.since,
            cwd: activity.cwd.clone(),
            transcript_path: activity.transcript_path.clone(),
            last_event: activity.last_event.clone(),
            last_event_at: activity.last_event_at,
            error: activity.error.clone(),
            cost_usd: 0.0,
            tokens: TokensObject::default(),
        }
    }
}

/// The data of a `claude_activity` event: the Claude session (without cost and tokens) and
/// its state before.
#[derive(Debug, Serialize)]
pub(crate) struct ClaudeActivityData {
    #[serde(flatten)]
    claude_session: ClaudeSessionObject,
    previous_state: Option<&'static str>,
}

impl ClaudeActivityData {
    pub(crate) fn new(activity: &ClaudeActivity, previous: Option<ActivityState>) -> Self {
        ClaudeActivityData {
            claude_session: ClaudeSessionObject::of(activity),
            previous_state: previous.map(ActivityState::as_str),
        }
    }
}
