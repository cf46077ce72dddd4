//! An event's wire form: its `type` (the event's kind), time, session, seq and `data`, the
//! same live and replayed; and the bus's encoder, which stores that `data`.

use serde::Serialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::super::dto::claude::ClaudeActivityData;
use super::super::dto::monitor;
use super::super::dto::session::{seconds, session_object_at, AgentObject};
use super::{EventRecord, Topic};
use crate::agent::{AgentAlert, AgentEvent};
use crate::session::{AgentOp, Published, SessionEvent, SessionRecord};
use crate::storage::StoredEvent;

/// One event as the wire shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WireEvent {
    /// `session_created`, `agent_status`, …
    pub(crate) kind: String,
    /// Unix seconds at which it was published.
    pub(crate) timestamp: f64,
    /// The session it is about, if any.
    pub(crate) session_id: Option<Uuid>,
    /// Its place in the log; `None` for output lines.
    pub(crate) seq: Option<u64>,
    /// The event's own fields.
    pub(crate) data: Value,
}

impl WireEvent {
    /// The wire form of a live event.
    pub(crate) fn of(published: &Published) -> WireEvent {
        WireEvent {
            kind: published.event.kind().to_owned(),
            timestamp: published.timestamp,
            session_id: published.event.session(),
            seq: published.seq,
            data: data(published),
        }
    }

    /// The wire form of a stored event.
    pub(crate) fn from_stored(event: StoredEvent) -> WireEvent {
        WireEvent {
            kind: event.kind,
            timestamp: event.at,
            session_id: event.session_id.and_then(|id| id.parse().ok()),
            seq: u64::try_from(event.seq).ok(),
            data: event.payload,
        }
    }

    /// Its topic.
    pub(crate) fn topic(&self) -> Option<Topic> {
        Topic::of_type(&self.kind)
    }

    /// The WebSocket message: `{type, timestamp, data, session_id?, seq?}`.
    pub(crate) fn message(&self) -> Value {
        let mut message = Map::new();
        message.insert("type".into(), Value::from(self.kind.as_str()));
        message.insert("timestamp".into(), Value::from(self.timestamp));
        if let Some(id) = self.session_id {
            message.insert("session_id".into(), Value::from(id.to_string()));
        }
        if let Some(seq) = self.seq {
            message.insert("seq".into(), Value::from(seq));
        }
        message.insert("data".into(), self.data.clone());
        Value::Object(message)
    }

    /// An entry of `GET /events`: `{seq, type, timestamp, session_id, data}`, every key
    /// present (`session_id` null for a server-wide event).
    pub(crate) fn record(&self) -> EventRecord<'_> {
        EventRecord {
            seq: self.seq,
            kind: &self.kind,
            timestamp: self.timestamp,
            session_id: self.session_id.map(|id| id.to_string()),
            data: &self.data,
        }
    }
}

/// The bus's encoder: the data of a numbered event as the log keeps it, which is its wire
/// `data` (so a replay is the message a live client got).
pub(crate) fn encode(published: &Published) -> Value {
    data(published)
}

/// An event's `data`: its own fields, by type.
fn data(published: &Published) -> Value {
    let (seq, at) = (published.seq, published.timestamp);
    match &published.event {
        SessionEvent::Created(record)
        | SessionEvent::Imported(record)
        | SessionEvent::Updated(record)
        | SessionEvent::Navigated(record)
        | SessionEvent::Terminated(record) => session(record, at),
        SessionEvent::Cloned { source, record } => {
            let mut data = session(record, at);
            if let Value::Object(object) = &mut data {
                object.insert("source_session_id".into(), source.to_string().into());
            }
            data
        }
        SessionEvent::Purged(id) => json!({ "session_id": id.to_string() }),
        SessionEvent::AgentCommand { op, agent, .. } => {
            let status = match op {
                AgentOp::Activate => "activated",
                AgentOp::Deactivate => "deactivated",
                AgentOp::Restart => "restarted",
            };
            json!({
                "agent_name": agent.name,
                "status": status,
                "agent": AgentObject::new(agent),
            })
        }
        SessionEvent::Hook { name, payload, .. }
        | SessionEvent::UnattributedHook { name, payload } => {
            json!({ "hook_event_name": name, "payload": payload })
        }
        SessionEvent::ClaudeActivity { activity, previous } => {
            to_value(ClaudeActivityData::new(activity, *previous))
        }
        SessionEvent::Agent { event, .. } => agent_event(event, seq),
        SessionEvent::Alert(alert) => to_value(monitor::alert(alert, None)),
        SessionEvent::AlertResolved(alert) => to_value(monitor::alert(alert, Some(at))),
        SessionEvent::Metrics(sample) => to_value(monitor::point(sample)),
        SessionEvent::EventsLost { first, last } => json!({
            "first_seq": first,
            "last_seq": last,
            "count": last.saturating_sub(*first) + 1,
        }),
        SessionEvent::ContextChanged { key, value, .. } => json!({
            "key": key,
            "value": value,
            "deleted": value.is_none(),
        }),
    }
}

/// A typed payload as the event's `data` (these serialize to JSON objects, never fail).
fn to_value(payload: impl Serialize) -> Value {
    serde_json::to_value(payload).unwrap_or(Value::Null)
}

/// The session object as of the event: a live session's `duration_seconds` runs to the
/// event's time, not to whenever the mapping runs, so the log's copy (mapped by the writer)
/// and the live one (mapped by the fan-out) are the same.
fn session(record: &SessionRecord, at: f64) -> Value {
    session_object_at(record, &[], at)
}

fn agent_event(event: &AgentEvent, seq: Option<u64>) -> Value {
    match event {
        AgentEvent::State {
            agent,
            from,
            to,
            reason,
            restarts,
            at,
        } => json!({
            "agent": &**agent,
            "from": from.as_str(),
            "to": to.as_str(),
            "reason": reason,
            "restarts": restarts,
            "at": seconds(*at),
        }),
        AgentEvent::Log { agent, line } => json!({
            "agent": &**agent,
            "stream": line.stream.as_str(),
            "line": line.line,
            "at": seconds(line.timestamp),
        }),
        AgentEvent::Exited { agent, pid, exit } => json!({
            "agent": &**agent,
            "pid": pid,
            "code": exit.code(),
            "signal": exit.signal(),
            "at": seconds(exit.at()),
        }),
        AgentEvent::Alert(alert) => alert_object(alert, seq),
    }
}

fn alert_object(alert: &AgentAlert, seq: Option<u64>) -> Value {
    // The seq makes the id unique and the same live and replayed.
    let id = seq.map_or_else(|| Uuid::new_v4().to_string(), |seq| format!("alert-{seq}"));
    json!({
        "id": id,
        "agent": &*alert.agent,
        "kind": alert.kind.as_str(),
        "severity": alert.severity.as_str(),
        "message": alert.message,
        "timestamp": seconds(alert.at),
    })
}
