//! Events on the wire: the one mapping from the bus's typed events to what WebSocket
//! clients receive and `GET /api/claude/events` returns, and the topics clients choose from.
//!
//! The event log stores each numbered event already mapped (its `type`, `session_id` and
//! `data`), through [`encode`], the encoder the server opens the bus with. A replayed event
//! is therefore the same message a live client got, and an old log stays readable after the
//! typed events change.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;

use super::dto::monitor;
use super::dto::session::{seconds, session_object_at, AgentObject};
use super::envelope;
use super::errors::ApiError;
use super::sessions::{Answer, Parsed};
use super::ApiContext;
use crate::agent::{AgentAlert, AgentEvent};
use crate::session::{AgentOp, Published, SessionEvent, SessionRecord};
use crate::storage::{NewEvent, StoredEvent};

/// Events `GET /events` returns when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Most events `GET /events` returns at once.
pub(crate) const MAX_LIMIT: usize = 1000;

/// The parameters of `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventsQuery {
    /// Events with a seq above this one.
    pub(crate) since: u64,
    /// Only this session's events.
    pub(crate) session: Option<Uuid>,
    /// At most this many.
    pub(crate) limit: usize,
}

impl EventsQuery {
    /// Checks each parameter; an unknown one or a bad value is a 400 naming it.
    pub(crate) fn parse(params: &BTreeMap<String, String>) -> Result<EventsQuery, ApiError> {
        let bad = |field: &str, message: String| ApiError::Validation {
            message,
            field: Some(field.to_owned()),
        };
        let mut query = EventsQuery {
            since: 0,
            session: None,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in params {
            match name.as_str() {
                "since" => {
                    query.since = value.parse().map_err(|_| {
                        bad(
                            "since",
                            format!("since must be a non-negative integer (a seq), got {value:?}"),
                        )
                    })?;
                }
                "session_id" => {
                    query.session = Some(value.parse().map_err(|_| {
                        bad(
                            "session_id",
                            format!("session_id is not a session id: {value:?}"),
                        )
                    })?);
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            bad(
                                "limit",
                                format!("limit must be between 1 and {MAX_LIMIT}, got {value:?}"),
                            )
                        })?;
                }
                other => {
                    return Err(bad(
                        other,
                        format!("unknown parameter {other:?}; expected since, session_id or limit"),
                    ))
                }
            }
        }
        Ok(query)
    }
}

/// `GET /api/claude/events`: the stored log after `since`, oldest first. `last_seq` is where
/// to resume: the last event returned when `has_more`, else the newest seq in the log.
pub(crate) async fn list(ctx: ApiContext, params: Parsed<BTreeMap<String, String>>) -> Answer {
    let query = EventsQuery::parse(&params?)?;
    let bus = ctx.sessions.bus();
    // Everything published up to here is read: the log is flushed before the read, within
    // its deadline; while storage refuses the log, a 503 (507) says so at once.
    let head = bus.last_seq();
    let mut events = bus
        .read(query.since, query.session, query.limit + 1)
        .await
        .map_err(|error| ApiError::from(&error))?;
    let has_more = events.len() > query.limit;
    events.truncate(query.limit);
    let last = events
        .last()
        .map(|event| u64::try_from(event.seq).unwrap_or_default());
    let last_seq = if has_more {
        last.unwrap_or(head)
    } else {
        last.unwrap_or(0).max(head)
    };
    let events: Vec<WireEvent> = events.into_iter().map(WireEvent::from_stored).collect();
    Ok(envelope::success(
        StatusCode::OK,
        &EventsPage {
            events: events.iter().map(WireEvent::record).collect(),
            last_seq,
            has_more,
        },
    ))
}

/// What a client subscribes to; each event type belongs to one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Topic {
    /// `session_*`, `context_changed` and `events_lost`.
    Sessions,
    /// `agent_*`.
    Agents,
    /// `alert`, `alert_resolved`.
    Alerts,
    /// `metrics`.
    Metrics,
    /// `log`: agents' output lines (live only, never stored).
    Logs,
}

impl Topic {
    /// Every topic.
    pub(crate) const ALL: [Topic; 5] = [
        Topic::Sessions,
        Topic::Agents,
        Topic::Alerts,
        Topic::Metrics,
        Topic::Logs,
    ];

    /// What a new connection gets.
    pub(crate) const DEFAULT: [Topic; 3] = [Topic::Sessions, Topic::Agents, Topic::Alerts];

    /// The word clients use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Topic::Sessions => "sessions",
            Topic::Agents => "agents",
            Topic::Alerts => "alerts",
            Topic::Metrics => "metrics",
            Topic::Logs => "logs",
        }
    }

    /// The topic named `word`, if any.
    pub(crate) fn parse(word: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.as_str() == word)
    }

    /// The topic of an event type; `None` for a type this server does not know (a row
    /// written by a newer version), which no subscription selects.
    pub(crate) fn of_type(kind: &str) -> Option<Topic> {
        match kind {
            // The gap marker goes with `sessions`, in every default subscription: a client
            // must learn that its view may miss changes.
            "context_changed" | "events_lost" => Some(Topic::Sessions),
            "alert" | "alert_resolved" => Some(Topic::Alerts),
            "metrics" => Some(Topic::Metrics),
            "log" => Some(Topic::Logs),
            _ if kind.starts_with("session_") => Some(Topic::Sessions),
            _ if kind.starts_with("agent_") => Some(Topic::Agents),
            _ => None,
        }
    }
}

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
        let (kind, session_id, data) = describe(published);
        WireEvent {
            kind: kind.to_owned(),
            timestamp: published.timestamp,
            session_id,
            seq: published.seq,
            data,
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

/// An entry of `GET /events`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventRecord<'a> {
    /// Its place in the log.
    seq: Option<u64>,
    /// `session_created`, `agent_status`, `context_changed`, `alert`, …
    #[serde(rename = "type")]
    kind: &'a str,
    /// Unix seconds at which it was published.
    timestamp: f64,
    /// The session it is about; null for a server-wide event.
    session_id: Option<String>,
    /// The event's own fields (by type).
    #[schema(value_type = Object)]
    data: &'a Value,
}

/// `GET /events`: a page of the log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventsPage<'a> {
    events: Vec<EventRecord<'a>>,
    /// Where to resume (`since`).
    last_seq: u64,
    /// More events follow `last_seq`.
    has_more: bool,
}

/// The bus's encoder: how a numbered event is written down in the log.
pub(crate) fn encode(published: &Published) -> NewEvent {
    let (kind, session_id, payload) = describe(published);
    NewEvent {
        kind: kind.to_owned(),
        session_id: session_id.map(|id| id.to_string()),
        at: published.timestamp,
        payload,
    }
}

/// An event's type, session and data.
fn describe(published: &Published) -> (&'static str, Option<Uuid>, Value) {
    let (seq, at) = (published.seq, published.timestamp);
    match &published.event {
        SessionEvent::Created(record) => session("session_created", record, at),
        SessionEvent::Imported(record) => session("session_imported", record, at),
        SessionEvent::Updated(record) => session("session_updated", record, at),
        SessionEvent::Navigated(record) => session("session_navigated", record, at),
        SessionEvent::Terminated(record) => session("session_terminated", record, at),
        SessionEvent::Cloned { source, record } => {
            let (kind, id, mut data) = session("session_cloned", record, at);
            if let Value::Object(object) = &mut data {
                object.insert("source_session_id".into(), source.to_string().into());
            }
            (kind, id, data)
        }
        SessionEvent::Purged(id) => (
            "session_purged",
            Some(*id),
            json!({ "session_id": id.to_string() }),
        ),
        SessionEvent::AgentCommand { session, op, agent } => {
            let (kind, status) = match op {
                AgentOp::Activate => ("agent_activated", "activated"),
                AgentOp::Deactivate => ("agent_deactivated", "deactivated"),
                AgentOp::Restart => ("agent_restarted", "restarted"),
            };
            let data = json!({
                "agent_name": agent.name,
                "status": status,
                "agent": AgentObject::new(agent),
            });
            (kind, Some(*session), data)
        }
        SessionEvent::Hook {
            session,
            name,
            payload,
        } => (
            "session_hook",
            Some(*session),
            json!({ "hook_event_name": name, "payload": payload }),
        ),
        SessionEvent::Agent { session, event } => {
            let (kind, data) = agent_event(event, seq);
            (kind, Some(*session), data)
        }
        SessionEvent::Alert(alert) => (
            "alert",
            alert.session,
            to_value(monitor::alert(alert, None)),
        ),
        SessionEvent::AlertResolved(alert) => (
            "alert_resolved",
            alert.session,
            to_value(monitor::alert(alert, Some(at))),
        ),
        SessionEvent::Metrics(sample) => (
            "metrics",
            Some(sample.session_id),
            to_value(monitor::point(sample)),
        ),
        SessionEvent::EventsLost { first, last } => (
            "events_lost",
            None,
            json!({
                "first_seq": first,
                "last_seq": last,
                "count": last.saturating_sub(*first) + 1,
            }),
        ),
        SessionEvent::ContextChanged {
            session,
            key,
            value,
        } => (
            "context_changed",
            Some(*session),
            json!({
                "key": key,
                "value": value,
                "deleted": value.is_none(),
            }),
        ),
    }
}

/// A typed payload as the event's `data` (these serialize to JSON objects, never fail).
fn to_value(payload: impl Serialize) -> Value {
    serde_json::to_value(payload).unwrap_or(Value::Null)
}

/// The session object as of the event: a live session's `duration_seconds` runs to the
/// event's time, not to whenever the mapping runs, so the log's copy (mapped by the writer)
/// and the live one (mapped by the fan-out) are the same.
fn session(
    kind: &'static str,
    record: &SessionRecord,
    at: f64,
) -> (&'static str, Option<Uuid>, Value) {
    (kind, Some(record.id), session_object_at(record, &[], at))
}

fn agent_event(event: &AgentEvent, seq: Option<u64>) -> (&'static str, Value) {
    match event {
        AgentEvent::State {
            agent,
            from,
            to,
            reason,
            restarts,
            at,
        } => (
            "agent_status",
            json!({
                "agent": &**agent,
                "from": from.as_str(),
                "to": to.as_str(),
                "reason": reason,
                "restarts": restarts,
                "at": seconds(*at),
            }),
        ),
        AgentEvent::Log { agent, line } => (
            "log",
            json!({
                "agent": &**agent,
                "stream": line.stream.as_str(),
                "line": line.line,
                "at": seconds(line.timestamp),
            }),
        ),
        AgentEvent::Exited { agent, pid, exit } => (
            "agent_exited",
            json!({
                "agent": &**agent,
                "pid": pid,
                "code": exit.code(),
                "signal": exit.signal(),
                "at": seconds(exit.at()),
            }),
        ),
        AgentEvent::Alert(alert) => ("alert", alert_object(alert, seq)),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::agent::ProcessExit;
    use crate::agent::{AgentLive, AgentStatus, AgentType, AlertKind, LogLine, Severity, Stream};
    use crate::session::SessionConfig;
    use crate::supervision::ChildState;

    fn record() -> SessionRecord {
        let configuration: SessionConfig = serde_json::from_value(json!({
            "name": "demo",
            "working_directory": "/tmp/demo",
        }))
        .unwrap();
        let mut record: SessionRecord = serde_json::from_value(json!({
            "id": Uuid::from_u128(1),
            "configuration": configuration,
            "status": "active",
            "strategy": "one_for_one",
            "created_at": 10.0,
            "updated_at": 11.0,
            "last_activity": 11.0,
        }))
        .unwrap();
        record.tags = vec!["t".into()];
        record
    }

    fn published(seq: Option<u64>, event: SessionEvent) -> Published {
        Published {
            seq,
            timestamp: 100.5,
            event,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    fn agent() -> AgentStatus {
        AgentStatus {
            name: "backend-services".into(),
            agent_type: AgentType::Backend,
            state: ChildState::Running,
            since: at(5),
            active: true,
            restarts: 2,
            live: AgentLive::default(),
            has_process: false,
            depends_on: Arc::from([Arc::from("master-orchestrator")]),
        }
    }

    /// Every kind of event, with the type and session it must map to.
    fn cases() -> Vec<(SessionEvent, &'static str, Option<Uuid>)> {
        let id = Uuid::from_u128(1);
        let boxed = || Box::new(record());
        let on = |event| SessionEvent::Agent { session: id, event };
        vec![
            (SessionEvent::Created(boxed()), "session_created", Some(id)),
            (
                SessionEvent::Imported(boxed()),
                "session_imported",
                Some(id),
            ),
            (SessionEvent::Updated(boxed()), "session_updated", Some(id)),
            (
                SessionEvent::Navigated(boxed()),
                "session_navigated",
                Some(id),
            ),
            (
                SessionEvent::Terminated(boxed()),
                "session_terminated",
                Some(id),
            ),
            (
                SessionEvent::Cloned {
                    source: Uuid::from_u128(2),
                    record: boxed(),
                },
                "session_cloned",
                Some(id),
            ),
            (SessionEvent::Purged(id), "session_purged", Some(id)),
            (
                SessionEvent::AgentCommand {
                    session: id,
                    op: AgentOp::Activate,
                    agent: Box::new(agent()),
                },
                "agent_activated",
                Some(id),
            ),
            (
                SessionEvent::AgentCommand {
                    session: id,
                    op: AgentOp::Deactivate,
                    agent: Box::new(agent()),
                },
                "agent_deactivated",
                Some(id),
            ),
            (
                SessionEvent::AgentCommand {
                    session: id,
                    op: AgentOp::Restart,
                    agent: Box::new(agent()),
                },
                "agent_restarted",
                Some(id),
            ),
            (
                on(AgentEvent::State {
                    agent: Arc::from("backend-services"),
                    from: ChildState::Starting,
                    to: ChildState::Running,
                    reason: None,
                    restarts: 1,
                    at: at(7),
                }),
                "agent_status",
                Some(id),
            ),
            (
                on(AgentEvent::Exited {
                    agent: Arc::from("backend-services"),
                    pid: 42,
                    exit: ProcessExit::new(Some(3), None, at(8)),
                }),
                "agent_exited",
                Some(id),
            ),
            (
                on(AgentEvent::Alert(AgentAlert {
                    agent: Arc::from("backend-services"),
                    kind: AlertKind::Failed,
                    severity: Severity::High,
                    message: "gave up".into(),
                    at: at(9),
                })),
                "alert",
                Some(id),
            ),
            (
                SessionEvent::ContextChanged {
                    session: id,
                    key: "k".into(),
                    value: Some(json!({"v": 1})),
                },
                "context_changed",
                Some(id),
            ),
            (
                SessionEvent::Hook {
                    session: id,
                    name: "PostToolUse".into(),
                    payload: json!({"tool_name": "Edit"}),
                },
                "session_hook",
                Some(id),
            ),
        ]
    }

    #[test]
    fn each_event_has_its_type_session_and_topic() {
        for (event, kind, session) in cases() {
            let wire = WireEvent::of(&published(Some(7), event));
            assert_eq!(wire.kind, kind);
            assert_eq!(wire.session_id, session);
            assert!(wire.topic().is_some(), "{kind} has no topic");
            let message = wire.message();
            assert_eq!(message["type"], kind);
            assert_eq!(message["seq"], 7);
            assert_eq!(message["timestamp"], 100.5);
            assert_eq!(message["session_id"], Uuid::from_u128(1).to_string());
            assert!(message["data"].is_object(), "{kind}: {message}");
        }
    }

    #[test]
    fn a_replayed_event_is_the_message_a_live_client_got() {
        for (seq, (event, kind, _)) in (1..).zip(cases()) {
            let published = published(Some(seq), event);
            let NewEvent {
                kind: stored_kind,
                session_id,
                at,
                payload,
            } = encode(&published);
            let replayed = WireEvent::from_stored(StoredEvent {
                seq: seq as i64,
                at,
                kind: stored_kind,
                session_id,
                payload,
            });
            assert_eq!(replayed, WireEvent::of(&published), "{kind}");
        }
    }

    #[test]
    fn data_keys_are_the_documented_ones() {
        let cases = cases();
        let data = |i: usize| WireEvent::of(&published(Some(1), cases[i].0.clone())).data;
        let created = data(0);
        assert_eq!(created["id"], Uuid::from_u128(1).to_string());
        assert_eq!(created["name"], "demo");
        assert_eq!(created["status"], "active");
        assert_eq!(created["working_directory"], "/tmp/demo");
        assert_eq!(
            created["metrics"]["duration_seconds"], 90.5,
            "as of the event (published at 100.5, created at 10)"
        );
        assert_eq!(data(5)["source_session_id"], Uuid::from_u128(2).to_string());
        assert_eq!(
            data(6),
            json!({"session_id": Uuid::from_u128(1).to_string()})
        );
        let command = data(7);
        assert_eq!(command["agent_name"], "backend-services");
        assert_eq!(command["status"], "activated");
        assert_eq!(command["agent"]["status"], "running");
        assert_eq!(
            data(10),
            json!({"agent": "backend-services", "from": "starting", "to": "running",
                   "reason": null, "restarts": 1, "at": 7.0})
        );
        assert_eq!(
            data(11),
            json!({"agent": "backend-services", "pid": 42, "code": 3, "signal": null, "at": 8.0})
        );
        assert_eq!(
            data(12),
            json!({"id": "alert-1", "agent": "backend-services", "kind": "agent_failed",
                   "severity": "high", "message": "gave up", "timestamp": 9.0})
        );
        assert_eq!(
            data(13),
            json!({"key": "k", "value": {"v": 1}, "deleted": false})
        );
        assert_eq!(
            data(14),
            json!({"hook_event_name": "PostToolUse", "payload": {"tool_name": "Edit"}})
        );
        let deleted = SessionEvent::ContextChanged {
            session: Uuid::nil(),
            key: "k".into(),
            value: None,
        };
        assert_eq!(
            WireEvent::of(&published(Some(1), deleted)).data,
            json!({"key": "k", "value": null, "deleted": true})
        );
    }

    #[test]
    fn a_log_line_has_no_seq_and_goes_to_the_logs_topic() {
        let line = SessionEvent::Agent {
            session: Uuid::nil(),
            event: AgentEvent::Log {
                agent: Arc::from("a"),
                line: LogLine {
                    stream: Stream::Stderr,
                    line: "oops".into(),
                    timestamp: at(3),
                },
            },
        };
        let wire = WireEvent::of(&published(None, line));
        assert_eq!(wire.topic(), Some(Topic::Logs));
        let message = wire.message();
        assert!(message.get("seq").is_none());
        assert_eq!(
            message["data"],
            json!({"agent": "a", "stream": "stderr", "line": "oops", "at": 3.0})
        );
    }

    #[test]
    fn monitor_events_map_to_alert_alert_resolved_and_metrics() {
        use crate::monitor::{Resource, ResourceAlert, SessionSample};
        let id = Uuid::from_u128(1);
        let alert = ResourceAlert {
            id: Uuid::from_u128(9),
            session: Some(id),
            resource: Resource::Memory,
            severity: Severity::High,
            message: "over".into(),
            value: 110.0,
            threshold: 85.0,
            raised_at: 99.0,
        };
        let raised = WireEvent::of(&published(
            Some(3),
            SessionEvent::Alert(Box::new(alert.clone())),
        ));
        assert_eq!(
            (raised.kind.as_str(), raised.session_id, raised.topic()),
            ("alert", Some(id), Some(Topic::Alerts))
        );
        assert_eq!(
            raised.message()["data"],
            json!({"id": Uuid::from_u128(9), "kind": "memory_usage", "scope": "session",
                   "session_id": id, "severity": "high", "message": "over", "value": 110.0,
                   "threshold": 85.0, "timestamp": 99.0, "resolved_at": null})
        );
        let host = ResourceAlert {
            session: None,
            ..alert
        };
        let resolved = WireEvent::of(&published(
            Some(4),
            SessionEvent::AlertResolved(Box::new(host)),
        ));
        assert_eq!(
            (resolved.kind.as_str(), resolved.session_id),
            ("alert_resolved", None)
        );
        assert_eq!(resolved.message()["data"]["scope"], "host");
        assert_eq!(resolved.message()["data"]["resolved_at"], 100.5);
        let sample = SessionSample {
            session_id: id,
            at: 100.0,
            cpu_percent: 12.5,
            memory_mb: 64.0,
            memory_percent: Some(50.0),
            disk_percent: None,
            agents_running: 1,
            agents_total: 1,
            restarts: 0,
            errors: 0,
            agents: Vec::new(),
        };
        let metrics = WireEvent::of(&published(None, SessionEvent::Metrics(Arc::new(sample))));
        assert_eq!(
            (metrics.kind.as_str(), metrics.topic()),
            ("metrics", Some(Topic::Metrics))
        );
        assert_eq!(metrics.message()["data"]["cpu_usage_percent"], 12.5);
    }

    #[test]
    fn topics_parse_and_cover_every_type() {
        for topic in Topic::ALL {
            assert_eq!(Topic::parse(topic.as_str()), Some(topic));
        }
        assert_eq!(Topic::parse("session"), None);
        for (kind, topic) in [
            ("session_purged", Topic::Sessions),
            ("context_changed", Topic::Sessions),
            ("agent_restarted", Topic::Agents),
            ("alert_resolved", Topic::Alerts),
            ("metrics", Topic::Metrics),
            ("log", Topic::Logs),
        ] {
            assert_eq!(Topic::of_type(kind), Some(topic));
        }
        assert_eq!(Topic::of_type("something_new"), None);
    }

    fn query(text: &str) -> Result<EventsQuery, ApiError> {
        EventsQuery::parse(&pairs(text))
    }

    fn pairs(text: &str) -> BTreeMap<String, String> {
        text.split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                (name.to_owned(), value.to_owned())
            })
            .collect()
    }

    #[test]
    fn the_events_query_has_defaults_and_names_a_bad_parameter() {
        assert_eq!(
            query("").unwrap(),
            EventsQuery {
                since: 0,
                session: None,
                limit: DEFAULT_LIMIT
            }
        );
        let id = Uuid::from_u128(3);
        assert_eq!(
            query(&format!("since=7&session_id={id}&limit=1000")).unwrap(),
            EventsQuery {
                since: 7,
                session: Some(id),
                limit: 1000
            }
        );
        for (text, field) in [
            ("since=-1", "since"),
            ("since=x", "since"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=ten", "limit"),
            ("session_id=nope", "session_id"),
            ("sinse=3", "sinse"),
        ] {
            match query(text) {
                Err(ApiError::Validation {
                    field: Some(named),
                    message,
                }) => {
                    assert_eq!(named, field, "{text}");
                    assert!(message.contains(field), "{text}: {message}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_stored_record_always_has_every_key() {
        let wire = WireEvent {
            kind: "alert".into(),
            timestamp: 1.0,
            session_id: None,
            seq: Some(3),
            data: json!({}),
        };
        assert_eq!(
            serde_json::to_value(wire.record()).unwrap(),
            json!({"seq": 3, "type": "alert", "timestamp": 1.0, "session_id": null, "data": {}})
        );
        assert!(wire.message().get("session_id").is_none());
    }
}
