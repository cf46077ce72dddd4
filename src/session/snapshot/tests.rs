//! Export and import: round trips, the version gate, and every refusal naming its field.

use super::*;
use crate::agent::{AgentConfig, AgentType};
use crate::session::SessionStatus;

fn record() -> SessionRecord {
    let mut configuration = SessionConfig::new("Export me", "/");
    configuration.description = "with everything".into();
    configuration.git_enabled = false;
    configuration.save_interval_seconds = 30;
    configuration.max_agents = 3;
    let mut backend = AgentConfig::new(AgentType::Backend);
    backend.environment.insert("PORT".into(), "8080".into());
    backend.command = Some(vec!["/bin/true".into()]);
    backend.custom_config = json!({"replicas": 2});
    let mut tests = AgentConfig::new(AgentType::Quality);
    tests.name = "tests".into();
    tests.enabled = false;
    tests.depends_on = Some(vec![backend.name.clone()]);
    configuration.agents = vec![backend, tests];
    configuration
        .environment_variables
        .insert("NODE_ENV".into(), "development".into());
    configuration.custom_settings = json!({"theme": "dark", "ratio": 0.5, "list": [1, null]});
    SessionRecord {
        id: Uuid::from_u128(7),
        configuration,
        status: SessionStatus::Active,
        tags: vec!["team-a".into(), "exported".into()],
        strategy: Strategy::RestForOne,
        created_at: 1_700_000_000.25,
        updated_at: 1_700_000_100.5,
        last_activity: 1_700_000_200.75,
        terminated_at: None,
        error_message: None,
        agent_restarts: BTreeMap::new(),
        agent_activations: BTreeMap::new(),
        git: None,
        claude_sessions: BTreeMap::new(),
    }
}

fn shared() -> Vec<(String, Value)> {
    vec![
        ("plan".into(), json!({"steps": ["a", "b"]})),
        ("owner".into(), json!("me")),
        ("count".into(), json!(3)),
    ]
}

fn states(record: &SessionRecord) -> BTreeMap<String, String> {
    let mut states = BTreeMap::new();
    states.insert(
        record.configuration.agents[0].name.clone(),
        "running".into(),
    );
    states.insert("tests".into(), "stopped".into());
    states
}

fn exported() -> (SessionRecord, Snapshot) {
    let record = record();
    let git = json!({"branch": "main", "head_commit": "abc123", "dirty": 0});
    let snapshot = export(
        &record,
        &shared(),
        &states(&record),
        Some(git),
        true,
        json!({"commands_executed": 4}),
    );
    (record, snapshot)
}

/// The session an import of `snapshot` makes, as the registry would build it.
fn rebuilt(snapshot: &Snapshot, id: Uuid, at: f64) -> SessionRecord {
    SessionRecord {
        id,
        configuration: snapshot.configuration.clone(),
        status: SessionStatus::Created,
        tags: snapshot.tags.clone(),
        strategy: snapshot.strategy.parse().unwrap(),
        created_at: at,
        updated_at: at,
        last_activity: at,
        terminated_at: None,
        error_message: None,
        agent_restarts: BTreeMap::new(),
        agent_activations: BTreeMap::new(),
        git: None,
        claude_sessions: BTreeMap::new(),
    }
}

/// `snapshot` with what an export may change set to fixed values.
fn without_ids_and_times(mut snapshot: Snapshot) -> Snapshot {
    snapshot.session_id = Uuid::nil();
    snapshot.context.session_id = Uuid::nil();
    snapshot.timestamp = 0.0;
    snapshot.context.last_activity = 0.0;
    snapshot
}

#[test]
fn an_export_carries_the_session_and_its_context() {
    let (record, snapshot) = exported();
    let json = serde_json::to_value(&snapshot).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    for key in [
        "format_version",
        "session_id",
        "timestamp",
        "configuration",
        "context",
        "metrics",
        "agent_states",
        "file_system_state",
        "git_state",
        "tags",
        "strategy",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["session_id"], record.id.to_string());
    assert_eq!(json["context"]["git_branch"], "main");
    assert_eq!(json["context"]["git_commit"], "abc123");
    assert_eq!(
        json["context"]["active_agents"],
        json!(["backend-services"])
    );
    assert_eq!(json["context"]["current_directory"], "/");
    assert_eq!(json["context"]["shared"]["owner"], "me");
    assert_eq!(json["metrics"]["commands_executed"], 4);
    assert_eq!(json["agent_states"]["tests"], "stopped");
    assert_eq!(
        json["file_system_state"],
        json!({"working_directory": "/", "exists": true, "is_directory": true})
    );
    assert_eq!(json["strategy"], "rest_for_one");

    let without = export(&record, &[], &BTreeMap::new(), None, false, json!({"x": 1}));
    assert_eq!(without.metrics, json!({}));
    assert_eq!(without.git_state, None);
    assert_eq!(without.context.git_branch, None);
}

#[test]
fn export_import_export_is_identical_except_ids_and_times() {
    let (record, snapshot) = exported();
    let text = serde_json::to_string(&snapshot).unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();
    let imported = parse_import(&document).unwrap();
    assert_eq!(imported, snapshot);
    assert_eq!(imported.configuration, record.configuration);

    let again = rebuilt(&imported, Uuid::from_u128(8), 1_800_000_000.0);
    let shared: Vec<(String, Value)> = imported
        .context
        .shared
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let second = export(
        &again,
        &shared,
        &imported.agent_states,
        imported.git_state.clone(),
        true,
        imported.metrics.clone(),
    );
    assert_eq!(second.session_id, again.id);
    assert_eq!(second.context.session_id, again.id);
    assert_eq!(
        without_ids_and_times(second),
        without_ids_and_times(snapshot)
    );
}

fn error_for(edit: impl FnOnce(&mut Value)) -> FieldError {
    let (_, snapshot) = exported();
    let mut document = serde_json::to_value(snapshot).unwrap();
    edit(&mut document);
    parse_import(&document).unwrap_err()
}

#[test]
fn a_wrong_version_is_refused_before_the_shape() {
    let err = error_for(|d| {
        d["format_version"] = json!(2);
        d["something_new"] = json!(true);
    });
    assert_eq!(err.field, "session_data.format_version");
    assert_eq!(
        err.message,
        "unsupported format version 2; this server reads 1"
    );
    let err = error_for(|d| d["format_version"] = json!("1.0"));
    assert_eq!(err.field, "session_data.format_version");
    let err = error_for(|d| {
        d.as_object_mut().unwrap().remove("format_version");
    });
    assert_eq!(err.to_string(), "session_data.format_version is required");
    let err = parse_import(&json!([1])).unwrap_err();
    assert_eq!(err.field, "session_data");
}

#[test]
fn bad_shapes_and_values_name_their_field() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (
            |d| d["configuration"]["agents"][0]["agent_type"] = json!("WIZARD"),
            "session_data.configuration.agents[0].agent_type",
        ),
        (
            |d| d["configuration"]["agents"][1]["timeout_seconds"] = json!(0),
            "session_data.configuration.agents[1].timeout_seconds",
        ),
        (
            |d| d["configuration"]["working_directory"] = json!(""),
            "session_data.configuration.working_directory",
        ),
        (
            |d| d["configuration"]["working_directory"] = json!(7),
            "session_data.configuration.working_directory",
        ),
        (
            |d| d["configuration"]["max_agents"] = json!(-1),
            "session_data.configuration.max_agents",
        ),
        (
            |d| d["configuration"]["max_agents"] = json!(1e300),
            "session_data.configuration.max_agents",
        ),
        (
            |d| d["configuration"]["name"] = json!("x".repeat(300)),
            "session_data.configuration.name",
        ),
        (
            |d| d["configuration"]["environment_variables"]["BAD-NAME"] = json!("x"),
            "session_data.configuration.environment_variables.BAD-NAME",
        ),
        (
            |d| {
                d["configuration"].as_object_mut().unwrap().remove("name");
            },
            "session_data.configuration",
        ),
        (
            |d| d["session_id"] = json!("not-a-uuid"),
            "session_data.session_id",
        ),
        (|d| d["timestamp"] = json!("now"), "session_data.timestamp"),
        (
            |d| d["context"]["session_id"] = json!(Uuid::nil()),
            "session_data.context.session_id",
        ),
        (
            |d| d["context"]["active_agents"] = json!(["../etc"]),
            "session_data.context.active_agents[0]",
        ),
        (
            |d| d["context"]["git_branch"] = json!("x".repeat(1000)),
            "session_data.context.git_branch",
        ),
        (
            |d| d["context"]["current_directory"] = json!("x".repeat(5000)),
            "session_data.context.current_directory",
        ),
        (
            |d| d["context"]["shared"] = json!([1]),
            "session_data.context.shared",
        ),
        (
            |d| d["context"]["shared"]["x".repeat(300)] = json!(1),
            "session_data.context.shared",
        ),
        (
            |d| d["context"]["shared"][""] = json!(1),
            "session_data.context.shared",
        ),
        (|d| d["metrics"] = json!([]), "session_data.metrics"),
        (
            |d| d["file_system_state"] = json!("gone"),
            "session_data.file_system_state",
        ),
        (|d| d["git_state"] = json!(3), "session_data.git_state"),
        (
            |d| d["agent_states"]["no such/agent"] = json!("running"),
            "session_data.agent_states",
        ),
        (
            |d| d["agent_states"]["tests"] = json!(""),
            "session_data.agent_states.tests",
        ),
        (
            |d| d["agent_states"]["tests"] = json!(1),
            "session_data.agent_states.tests",
        ),
        (|d| d["tags"] = json!([""]), "session_data.tags[0]"),
        (|d| d["tags"] = json!("team-a"), "session_data.tags"),
        (
            |d| d["strategy"] = json!("all_for_none"),
            "session_data.strategy",
        ),
        (
            |d| d["configuration"]["custom_settings"]["k"] = json!("a\0b"),
            "session_data.configuration.custom_settings.k",
        ),
        (
            |d| d["configuration"]["agents"][0]["command"][0] = json!("/bin/\0sh"),
            "session_data.configuration.agents[0].command[0]",
        ),
        (
            |d| d["context"]["shared"]["a\0"] = json!(1),
            "session_data.context.shared",
        ),
    ];
    for (i, (edit, field)) in cases.iter().enumerate() {
        let err = error_for(edit);
        assert_eq!(err.field, *field, "case {i}: {err}");
    }
}

#[test]
fn unknown_keys_are_refused_and_named() {
    type Edit = fn(&mut Value);
    let cases: &[(Edit, &str)] = &[
        (|d| d["colour"] = json!(1), "session_data.colour"),
        (
            |d| d["context"]["colour"] = json!(1),
            "session_data.context.colour",
        ),
        (
            |d| d["configuration"]["colour"] = json!(1),
            "session_data.configuration.colour",
        ),
        (
            |d| d["configuration"]["agents"][0]["colour"] = json!(1),
            "session_data.configuration.agents[0].colour",
        ),
    ];
    for (edit, field) in cases {
        let err = error_for(edit);
        assert_eq!(err.field, *field, "{err}");
        assert!(err.message.starts_with("unknown field `colour`"), "{err}");
    }
}

#[test]
fn missing_optional_parts_take_defaults() {
    let id = Uuid::from_u128(1);
    let document = json!({
        "format_version": 1,
        "session_id": id,
        "timestamp": 1.0,
        "configuration": {"name": "bare", "working_directory": "/tmp"},
        "context": {"session_id": id, "current_directory": "/tmp", "last_activity": 1.0},
    });
    let snapshot = parse_import(&document).unwrap();
    assert_eq!(snapshot.configuration, SessionConfig::new("bare", "/tmp"));
    assert_eq!(snapshot.strategy, "one_for_one");
    assert_eq!(snapshot.metrics, json!({}));
    assert!(snapshot.tags.is_empty() && snapshot.context.shared.is_empty());
}

#[test]
fn errors_never_repeat_a_huge_value() {
    let huge = "x".repeat(1 << 20);
    let err = error_for(|d| d["configuration"]["max_agents"] = json!(huge.clone()));
    assert!(
        err.to_string().len() < 2 * MAX_ECHO_CHARS + 200,
        "{}",
        err.to_string().len()
    );
    let err = error_for(|d| d["strategy"] = json!(huge.clone()));
    assert!(err.to_string().len() < 2 * MAX_ECHO_CHARS + 200);
    let err = error_for(|d| d["agent_states"][huge.as_str()] = json!("running"));
    assert!(err.to_string().len() < 2 * MAX_ECHO_CHARS + 200);
}

#[test]
fn hostile_documents_never_panic() {
    let (_, snapshot) = exported();
    let valid = serde_json::to_value(snapshot).unwrap();
    let mut deep = json!(1);
    for _ in 0..500 {
        deep = Value::Array(vec![deep]);
    }
    let hostile = [
        Value::Null,
        json!(true),
        json!(-0.0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(1.0e308),
        json!("NaN"),
        json!("-inf"),
        json!(""),
        json!("\u{202e}\u{0}é🦀"),
        json!("x".repeat(1 << 20)),
        json!([]),
        json!({}),
        json!({"\0": null}),
        deep,
    ];
    let paths: &[&[&str]] = &[
        &[],
        &["format_version"],
        &["session_id"],
        &["timestamp"],
        &["configuration"],
        &["configuration", "name"],
        &["configuration", "agents"],
        &["configuration", "custom_settings"],
        &["configuration", "environment_variables"],
        &["context"],
        &["context", "shared"],
        &["context", "last_activity"],
        &["context", "active_agents"],
        &["metrics"],
        &["agent_states"],
        &["git_state"],
        &["tags"],
        &["strategy"],
    ];
    for path in paths {
        for value in &hostile {
            let mut document = valid.clone();
            let mut slot = &mut document;
            for key in *path {
                slot = &mut slot[*key];
            }
            *slot = value.clone();
            let _ = parse_import(&document);
        }
    }
    let mut deep_document = valid.clone();
    let mut nested = json!({});
    // Built by hand: `json!` would serialize the inner value again at every level.
    for _ in 0..10_000 {
        nested = Value::Object(Map::from_iter([("a".to_owned(), nested)]));
    }
    deep_document["configuration"]["custom_settings"] = nested;
    let err = parse_import(&deep_document).unwrap_err();
    assert!(err.message.contains("nests deeper than 128"), "{err}");
    assert!(err
        .field
        .starts_with("session_data.configuration.custom_settings.a.a"));
    // A deep value must not overflow serde_json's recursive drop at the end of the test.
    let mut slot = deep_document["configuration"]["custom_settings"].take();
    while let Some(inner) = slot.get_mut("a") {
        slot = inner.take();
    }
}
