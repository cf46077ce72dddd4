//! What the server announces on its [`EventBus`](crate::session::EventBus): every change
//! of a session, its agents, its context, and the monitor's alerts and samples.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use super::super::claude::{ActivityState, ClaudeActivity};
use super::super::resources::{ResourceAlert, SessionSample};
use crate::agent::{AgentEvent, AgentStatus};

use crate::session::actor::AgentOp;
use crate::session::model::SessionRecord;

/// A change the server announces on its [`EventBus`](crate::session::EventBus).
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A session was created with this record.
    Created(Box<SessionRecord>),
    /// A session was created as a clone of `source`.
    Cloned {
        /// The session it was cloned from.
        source: Uuid,
        /// The new session.
        record: Box<SessionRecord>,
    },
    /// A session was created from an imported snapshot.
    Imported(Box<SessionRecord>),
    /// A session's record changed (status, activity, an update).
    Updated(Box<SessionRecord>),
    /// A session moved to another working directory (its agents were restarted there).
    Navigated(Box<SessionRecord>),
    /// A client activated, deactivated or restarted an agent.
    AgentCommand {
        /// The session.
        session: Uuid,
        /// What was asked.
        op: AgentOp,
        /// The agent as it is afterwards.
        agent: Box<AgentStatus>,
    },
    /// Claude Code reported a hook event (PreToolUse, PostToolUse, Stop, …) for a session.
    Hook {
        /// The session.
        session: Uuid,
        /// `hook_event_name` of the payload.
        name: String,
        /// The payload as Claude Code sent it.
        payload: Value,
    },
    /// A Claude Code hook arrived that no session of ours could be attributed: kept in the
    /// log and announced all the same (`claude_hook`), and listed by the `claude` module.
    UnattributedHook {
        /// `hook_event_name` of the payload.
        name: String,
        /// The payload as Claude Code sent it.
        payload: Value,
    },
    /// A Claude Code session was first seen or changed state (`claude_activity`).
    ClaudeActivity {
        /// It, as it is now.
        activity: Box<ClaudeActivity>,
        /// Its state before; `None` when first seen.
        previous: Option<ActivityState>,
    },
    /// An agent of a session changed state, wrote a line, exited or raised an alert.
    Agent {
        /// The session.
        session: Uuid,
        /// What happened.
        event: AgentEvent,
    },
    /// A session was terminated.
    Terminated(Box<SessionRecord>),
    /// The monitor raised a resource alert (a session's, or the host's).
    Alert(Box<ResourceAlert>),
    /// A resource alert is over; `value` is the one that resolved it.
    AlertResolved(Box<ResourceAlert>),
    /// The monitor sampled a session. Not kept in the log, like output lines.
    Metrics(Arc<SessionSample>),
    /// A terminated session was deleted.
    Purged(Uuid),
    /// The event log gave up these seqs (storage refused them for longer than the backlog
    /// could hold them): a client resuming across them must reload what it shows.
    EventsLost {
        /// The first seq lost.
        first: u64,
        /// The last seq lost.
        last: u64,
    },
    /// A shared-context key was set (`value: Some`) or deleted (`None`).
    ContextChanged {
        /// The session.
        session: Uuid,
        /// The key.
        key: String,
        /// The new value.
        value: Option<Value>,
    },
}

impl SessionEvent {
    /// The session the event is about; `None` for an alert of the host.
    pub fn session(&self) -> Option<Uuid> {
        match self {
            SessionEvent::Created(record)
            | SessionEvent::Imported(record)
            | SessionEvent::Updated(record)
            | SessionEvent::Navigated(record)
            | SessionEvent::Terminated(record)
            | SessionEvent::Cloned { record, .. } => Some(record.id),
            SessionEvent::AgentCommand { session, .. }
            | SessionEvent::Hook { session, .. }
            | SessionEvent::Agent { session, .. }
            | SessionEvent::ContextChanged { session, .. }
            | SessionEvent::Purged(session) => Some(*session),
            SessionEvent::Alert(alert) | SessionEvent::AlertResolved(alert) => alert.session,
            SessionEvent::ClaudeActivity { activity, .. } => activity.session,
            SessionEvent::UnattributedHook { .. } => None,
            SessionEvent::Metrics(sample) => Some(sample.session_id),
            SessionEvent::EventsLost { .. } => None,
        }
    }
}
