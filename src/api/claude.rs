//! Claude Code's own surface: `POST /api/claude/hooks`, where Claude Code's `http` hooks
//! (and the `session-manager hook` shim, for a Claude Code of no session of ours) post every
//! hook event, and `GET /api/claude/activity`, every Claude Code session the hooks told of,
//! attributed or not.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::header::{HeaderValue, CONTENT_LENGTH};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use super::dto::claude::ClaudeSessionObject;
use super::sessions::{hook_name, Answer, Parsed};
use super::{envelope, ApiContext};
use crate::claude::Hint;

/// The header naming the session of ours a hook comes from (the installed hooks fill it from
/// `$CLAUDE_SESSION_ID`, which our agents have).
pub(crate) const SESSION_HEADER: &str = "x-session-manager-session";
/// The header naming our agent a hook comes from (`$CLAUDE_AGENT_NAME`).
pub(crate) const AGENT_HEADER: &str = "x-session-manager-agent";
/// The answer's header with the Claude session's state after the hook.
pub(crate) const STATE_HEADER: &str = "x-claude-state";

/// Longest agent name read from [`AGENT_HEADER`] (agent names are shorter).
const MAX_AGENT_HEADER_CHARS: usize = 128;

/// `POST /api/claude/hooks`: any Claude Code hook payload as Claude Code posts it. 200 with
/// an empty body — to Claude Code a hook that decides nothing, so it proceeds unchanged —
/// once the hook and what it changed are stored and announced; the headers say what it was
/// attributed to (`x-session-manager-session`, absent when nothing) and the Claude
/// session's state after it (`x-claude-state`).
pub(crate) async fn hooks(
    ctx: ApiContext,
    headers: HeaderMap,
    body: Parsed<Map<String, Value>>,
) -> Answer {
    let body = body?;
    let name = hook_name(&body)?;
    let hint = hint(&headers);
    let outcome = ctx.claude.hook(name, body, hint, true).await?;
    let mut response = Response::new("".into());
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(session) = outcome.session {
        if let Ok(value) = HeaderValue::from_str(&session.to_string()) {
            headers.insert(SESSION_HEADER, value);
        }
    }
    if let Some(state) = outcome.state {
        headers.insert(STATE_HEADER, HeaderValue::from_static(state.as_str()));
    }
    Ok(response)
}

/// What the headers say the hook is from. Claude Code fills a header whose variable is
/// unset (or not in `allowedEnvVars`) with an empty string: empty, or not a UUID, is absent.
fn hint(headers: &HeaderMap) -> Hint {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    Hint {
        session: text(SESSION_HEADER).and_then(|id| Uuid::parse_str(id).ok()),
        agent: text(AGENT_HEADER)
            .filter(|name| name.chars().count() <= MAX_AGENT_HEADER_CHARS)
            .map(str::to_owned),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ActivityPayload {
    /// Every Claude Code session the hooks told of, most recent hook first.
    claude_sessions: Vec<ClaudeSessionObject>,
    /// How many wait for their person now.
    waiting_for_input: usize,
    /// How many are attributed to no session of ours.
    unattributed: usize,
}

/// `GET /api/claude/activity`: every Claude Code session, attributed or not.
pub(crate) async fn activity(ctx: ApiContext) -> Answer {
    let all = ctx.claude.all();
    let waiting_for_input = all
        .iter()
        .filter(|a| a.state == crate::session::ActivityState::WaitingForInput)
        .count();
    let unattributed = all.iter().filter(|a| a.session.is_none()).count();
    Ok(envelope::success(
        StatusCode::OK,
        &ActivityPayload {
            claude_sessions: all
                .iter()
                .map(|activity| ClaudeSessionObject::new(activity, &ctx.claude))
                .collect(),
            waiting_for_input,
            unattributed,
        },
    ))
}
