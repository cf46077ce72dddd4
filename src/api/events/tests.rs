//! The wire mapping of every event, topics, the events query and the record shape.

use std::sync::Arc;
use std::time::SystemTime;

use serde_json::json;

use super::*;
use crate::agent::ProcessExit;
use crate::agent::{AgentAlert, AgentEvent};
use crate::agent::{AgentLive, AgentStatus, AgentType, AlertKind, LogLine, Severity, Stream};
use crate::session::SessionConfig;
use crate::session::{stored_row, AgentOp, Published, SessionEvent, SessionRecord};
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
        claude_session_id: None,
        terminal: None,
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
        // The row the bus's writer stores, with the encoder the server opens it with.
        let stored = stored_row(&published, encode).unwrap();
        assert_eq!(stored.seq, seq as i64);
        let replayed = WireEvent::from_stored(stored);
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
