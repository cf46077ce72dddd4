//! What a numbered event is stored as: the row of the `events` table. Its kind, session,
//! time and seq are decided here, with the events; only its data comes from the bus's
//! [`Encoder`] (the API's mapping, so that a replay is byte for byte what a live client got).
//! The kind is also the `type` clients see: one name per event, in the log and on the wire.

use crate::agent::AgentEvent;
use crate::storage::StoredEvent;

use super::super::actor::AgentOp;
use super::{Encoder, Published, SessionEvent};

/// The kind of the gap marker ([`SessionEvent::EventsLost`]).
pub(super) const EVENTS_LOST: &str = "events_lost";

impl SessionEvent {
    /// The event's name: the `kind` the log stores it under, and the `type` a client reads.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::Created(_) => "session_created",
            SessionEvent::Imported(_) => "session_imported",
            SessionEvent::Updated(_) => "session_updated",
            SessionEvent::Navigated(_) => "session_navigated",
            SessionEvent::Terminated(_) => "session_terminated",
            SessionEvent::Cloned { .. } => "session_cloned",
            SessionEvent::Purged(_) => "session_purged",
            SessionEvent::AgentCommand { op, .. } => match op {
                AgentOp::Activate => "agent_activated",
                AgentOp::Deactivate => "agent_deactivated",
                AgentOp::Restart => "agent_restarted",
            },
            SessionEvent::Hook { .. } => "session_hook",
            SessionEvent::UnattributedHook { .. } => "claude_hook",
            SessionEvent::ClaudeActivity { .. } => "claude_activity",
            SessionEvent::Agent { event, .. } => match event {
                AgentEvent::State { .. } => "agent_status",
                AgentEvent::Log { .. } => "log",
                AgentEvent::Exited { .. } => "agent_exited",
                AgentEvent::Alert(_) => "alert",
            },
            SessionEvent::Alert(_) => "alert",
            SessionEvent::AlertResolved(_) => "alert_resolved",
            SessionEvent::Metrics(_) => "metrics",
            SessionEvent::EventsLost { .. } => EVENTS_LOST,
            SessionEvent::ContextChanged { .. } => "context_changed",
        }
    }
}

/// The row a numbered event is stored as; `None` for an event without a seq (not kept).
/// What the log's writer stores, with `encode` the encoder the bus was opened with.
pub fn stored_row(published: &Published, encode: Encoder) -> Option<StoredEvent> {
    let seq = i64::try_from(published.seq?).ok()?;
    Some(StoredEvent {
        seq,
        at: published.timestamp,
        kind: published.event.kind().to_owned(),
        session_id: published.event.session().map(|id| id.to_string()),
        payload: encode(published),
    })
}
