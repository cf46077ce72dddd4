//! The REST contract of DESIGN.md ("HTTP contract") through the real binary: every route's
//! status codes and key names, the seed's own examples, and the error paths. One test binary
//! for the whole front end: the security guards (`security`) and the WebSocket and event
//! log (`websocket`) are modules of it.

#[path = "../common/mod.rs"]
mod common;
mod connections;
mod security;
mod websocket;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::app::App;
use common::{fake, PATIENCE};

/// The seed README's session configuration, word for word but for the directory.
fn seed_configuration(dir: &str) -> Value {
    json!({
        "name": "Session Name",
        "working_directory": dir,
        "description": "Session description",
        "git_enabled": true,
        "auto_save": true,
        "save_interval_seconds": 60,
        "max_memory_mb": 2048,
        "max_agents": 10,
        "agents": [
            {
                "agent_type": "BACKEND",
                "name": "backend-services",
                "enabled": true,
                "priority": 2,
                "max_memory_mb": 512,
                "timeout_seconds": 300,
                "retry_attempts": 3
            }
        ],
        "environment_variables": {
            "NODE_ENV": "development"
        }
    })
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_has(value: &Value, wanted: &[&str]) {
    let have = keys(value);
    for key in wanted {
        assert!(have.contains(key), "missing `{key}` in {value}");
    }
}

async fn create(app: &App, body: Value) -> String {
    let (status, body) = app.post("/api/claude/sessions", &body).await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

async fn wait_status(app: &App, id: &str, wanted: &str) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (_, body) = app.get(&format!("/api/claude/sessions/{id}")).await;
        if body["session"]["status"] == wanted {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {wanted}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.contains("panicked"),
        "{body}"
    );
}

#[tokio::test]
async fn the_seed_configuration_creates_a_session_with_the_original_shape_and_ours() {
    let app = App::start(&[]);
    let dir = app.dir("project");
    let (status, body) = app
        .post("/api/claude/sessions", &seed_configuration(&dir))
        .await;
    assert_eq!(status, 201, "{body}");
    // The seed's example reads result['session']['id'].
    let session = &body["session"];
    assert_eq!(session, &body["data"]["session"]);
    assert_has(
        session,
        &[
            "id",
            "name",
            "status",
            "created_at",
            "updated_at",
            "configuration",
            "context",
            "metrics",
            "validation",
            "error_message",
            "agents",
            "tags",
            "strategy",
            "git",
        ],
    );
    assert_has(
        &session["configuration"],
        &[
            "session_id",
            "name",
            "description",
            "working_directory",
            "git_enabled",
            "auto_save",
            "save_interval_seconds",
            "max_memory_mb",
            "max_agents",
            "agents",
            "environment_variables",
            "custom_settings",
        ],
    );
    assert_has(
        &session["context"],
        &[
            "session_id",
            "current_directory",
            "git_branch",
            "git_commit",
            "active_agents",
            "environment_state",
            "user_preferences",
            "last_activity",
        ],
    );
    assert_has(
        &session["metrics"],
        &[
            "session_id",
            "start_time",
            "end_time",
            "duration_seconds",
            "commands_executed",
            "files_modified",
            "errors_encountered",
            "memory_usage_mb",
            "cpu_usage_percent",
            "agent_activations",
            "performance_metrics",
        ],
    );
    assert_has(
        &session["validation"],
        &[
            "path",
            "exists",
            "readable",
            "writable",
            "is_git_repo",
            "permissions",
            "validation_errors",
            "valid",
            "is_directory",
            "warnings",
            "checks",
            "disk_free_bytes",
            "git",
        ],
    );
    assert!(std::path::Path::new(&dir).is_dir(), "created when missing");
    assert_eq!(
        session["configuration"]["environment_variables"]["NODE_ENV"],
        "development"
    );
    assert_eq!(session["strategy"], "one_for_one");
    let id = session["id"].as_str().unwrap();
    let body = wait_status(&app, id, "active").await;
    assert_has(&body, &["session", "monitoring", "agent_statuses"]);
    assert_eq!(body["agent_statuses"]["backend-services"], "running");
    let agent = &body["session"]["agents"][0];
    assert_has(
        agent,
        &[
            "name",
            "agent_type",
            "status",
            "pid",
            "restart_count",
            "started_at",
            "last_exit",
            "last_error",
            "memory_mb",
            "cpu_percent",
        ],
    );
    assert_eq!(agent["agent_type"], "BACKEND");
    assert_eq!(
        body["session"]["context"]["active_agents"],
        json!(["backend-services"])
    );
    // The third seed example: metrics with a summary.
    let (status, body) = app
        .get(&format!("/api/claude/sessions/{id}/metrics?hours=1"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_has(&body, &["session_id", "metrics", "summary", "hours"]);
    assert_has(
        &body["summary"],
        &[
            "session_id",
            "status",
            "duration_hours",
            "total_data_points",
            "latest_metrics",
        ],
    );
    assert!(body["summary"]["duration_hours"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn list_filters_sorts_pages_and_counts_every_match() {
    let app = App::start(&[]);
    for (name, tag) in [("alpha", "red"), ("beta", "red"), ("gamma", "blue")] {
        create(
            &app,
            json!({"name": name, "working_directory": app.dir(name), "tags": [tag], "git_enabled": false}),
        )
        .await;
    }
    let (status, body) = app
        .get("/api/claude/sessions?tag=red&sort=-name&limit=1")
        .await;
    assert_eq!(status, 200, "{body}");
    assert_has(&body, &["sessions", "total", "limit", "offset", "filter"]);
    assert_eq!(body["total"], 2, "total counts all matches, not the page");
    assert_eq!(body["limit"], 1);
    assert_eq!(body["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(body["sessions"][0]["name"], "beta");
    assert_eq!(
        body["filter"],
        json!({"tag": "red", "sort": "-name", "limit": "1"})
    );
    let (_, body) = app.get("/api/claude/sessions?name_pattern=g*").await;
    assert_eq!(body["total"], 1);
    let (_, body) = app.get("/api/claude/sessions").await;
    assert_eq!(body["total"], 3);
    assert_eq!(body["limit"], 100);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("status=sleeping", "status"),
        ("colour=red", "colour"),
        ("limit=1&limit=2", "limit"),
    ] {
        let (status, body) = app.get(&format!("/api/claude/sessions?{query}")).await;
        assert_error(status, &body, 400, "session_validation_error");
        assert_eq!(body["details"]["field"], field, "{query}: {body}");
    }
}

/// One rule for names (issue 19 item 7): every C0/C1 control (newline, tab, ESC, NUL, DEL)
/// and every bidi override, isolate or mark is refused in a session name and a tag, with
/// the field named, on create, update, clone and import alike; nothing is created or
/// changed by a refused request.
#[tokio::test]
async fn names_with_control_or_bidi_characters_are_refused_everywhere_with_the_field_named() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "plain", "working_directory": app.dir("n")}),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");
    let (_, body) = app.post(&format!("{base}/export"), &json!({})).await;
    let snapshot = body["snapshot"].clone();
    let refused = |status: u16, body: &Value, field: &str, what: &str| {
        assert_error(status, body, 400, "session_validation_error");
        assert_eq!(body["details"]["field"], field, "{what}: {body}");
    };
    for bad in [
        "\n", "\t", "\u{1b}", "\0", "\u{7f}", "\u{9b}", "\u{202e}", "\u{2067}", "\u{200e}",
        "\u{61c}",
    ] {
        let name = format!("evil{bad}name");
        let what = name.escape_unicode().to_string();
        let (status, body) = app
            .post(
                "/api/claude/sessions",
                &json!({"name": name, "working_directory": app.dir("m")}),
            )
            .await;
        refused(status, &body, "name", &what);
        let (status, body) = app
            .post(
                "/api/claude/sessions",
                &json!({"name": "ok", "working_directory": app.dir("m"), "tags": ["a", name]}),
            )
            .await;
        refused(status, &body, "tags[1]", &what);
        let (status, body) = app.put(&base, &json!({"name": name})).await;
        refused(status, &body, "name", &what);
        let (status, body) = app.put(&base, &json!({"tags": [name]})).await;
        refused(status, &body, "tags[0]", &what);
        let (status, body) = app
            .post(&format!("{base}/clone"), &json!({"new_name": name}))
            .await;
        // The clone's name is checked as its configuration's `name`.
        refused(status, &body, "name", &what);
        let mut data = snapshot.clone();
        data["configuration"]["name"] = json!(name);
        let (status, body) = app
            .post(
                "/api/claude/sessions/import",
                &json!({"session_data": data}),
            )
            .await;
        assert_error(status, &body, 400, "session_validation_error");
        let field = body["details"]["field"].as_str().unwrap_or_default();
        assert!(field.ends_with("name"), "{what}: {body}");
    }
    let (_, body) = app.get("/api/claude/sessions").await;
    assert_eq!(body["sessions"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(
        !std::path::Path::new(&app.dir("m")).exists(),
        "nothing created"
    );
    let (_, body) = app.get(&base).await;
    assert_eq!(body["session"]["configuration"]["name"], "plain");
    assert_eq!(body["session"]["tags"], json!([]));
    // Ordinary non-ASCII names pass.
    let (status, body) = app
        .put(&base, &json!({"name": "日本語 – déjà vu 🚀 مرحبا"}))
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn update_navigate_clone_export_import_and_delete() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "work", "working_directory": app.dir("a"), "agents": [{"agent_type": "orchestrator"}]}),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");

    let (status, body) = app
        .put(&base, &json!({"description": "changed", "tags": ["x"]}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["configuration"]["description"], "changed");
    assert_eq!(body["session"]["tags"], json!(["x"]));
    let (status, body) = app.put(&base, &json!({"working_directory": "/tmp"})).await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "working_directory");

    // The seed's second example, and a refused path that changes nothing.
    let target = app.dir("b");
    let (status, body) = app
        .post(
            &format!("{base}/navigate"),
            &json!({"path": target, "validate_permissions": true, "update_git_state": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["session"]["configuration"]["working_directory"],
        target
    );
    assert_eq!(body["validation"]["valid"], true);
    let (status, body) = app
        .post(&format!("{base}/navigate"), &json!({"path": "/etc"}))
        .await;
    assert_error(status, &body, 422, "path_refused");
    assert_eq!(body["details"]["field"], "path");
    assert_eq!(body["details"]["validation"]["valid"], false);
    let (_, body) = app.get(&base).await;
    assert_eq!(
        body["session"]["configuration"]["working_directory"],
        target
    );
    let (status, body) = app.post(&format!("{base}/navigate"), &json!({})).await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "path");

    let (status, body) = app
        .post(
            &format!("{base}/clone"),
            &json!({"new_name": "copy", "copy_agents": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_ne!(body["session"]["id"], json!(id));
    assert_eq!(body["session"]["configuration"]["agents"], json!([]));
    let (status, body) = app
        .post(&format!("{base}/clone"), &json!({"name": "copy 2"}))
        .await;
    assert_eq!(status, 201, "`name` is accepted for new_name: {body}");
    let (status, body) = app.post(&format!("{base}/clone"), &json!({})).await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "new_name");

    app.put(
        &format!("{base}/context/plan"),
        &json!({"value": {"step": 1}}),
    )
    .await;
    let (status, body) = app.post(&format!("{base}/export"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let snapshot = body["snapshot"].clone();
    assert_has(
        &snapshot,
        &[
            "format_version",
            "session_id",
            "timestamp",
            "configuration",
            "context",
            "metrics",
            "agent_states",
            "file_system_state",
            "git_state",
        ],
    );
    let (status, body) = app
        .post(
            "/api/claude/sessions/import",
            &json!({"session_data": snapshot}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let imported = body["session"]["id"].as_str().unwrap().to_owned();
    assert_ne!(imported, id);
    let (_, body) = app
        .get(&format!("/api/claude/sessions/{imported}/context/plan"))
        .await;
    assert_eq!(body["value"], json!({"step": 1}), "shared context travels");
    let (status, body) = app
        .post(
            "/api/claude/sessions/import",
            &json!({"session_data": {"format_version": 2}}),
        )
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "session_data.format_version");
    let (status, body) = app.post("/api/claude/sessions/import", &json!({})).await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "session_data");

    let (status, body) = app.delete(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["status"], "terminated");
    let (status, body) = app
        .post(
            &format!("{base}/agents/master-orchestrator/restart"),
            &json!({}),
        )
        .await;
    assert_error(status, &body, 409, "conflict");
    let (status, body) = app.delete(&format!("{base}?purge=true")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get(&base).await;
    assert_error(status, &body, 404, "session_not_found");
}

#[tokio::test]
async fn agents_can_be_driven_and_their_output_read() {
    let app = App::start(&[("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true")]);
    let id = create(
        &app,
        json!({
            "name": "procs",
            "working_directory": app.dir("p"),
            "agents": [{"agent_type": "BACKEND", "command": fake(&["--lines", "3", "--sleep-forever"])}],
        }),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");
    wait_status(&app, &id, "active").await;
    let (status, body) = app.get(&format!("{base}/agents")).await;
    assert_eq!(status, 200, "{body}");
    assert_has(
        &body,
        &[
            "session_id",
            "configured_agents",
            "active_agents",
            "agent_statuses",
            "agents",
        ],
    );
    assert_eq!(body["configured_agents"], json!(["backend-services"]));
    let pid = body["agents"][0]["pid"]
        .as_u64()
        .expect("a process agent has a pid");
    assert!(common::alive(pid as u32));

    let deadline = std::time::Instant::now() + PATIENCE;
    let lines = loop {
        let (status, body) = app
            .get(&format!("{base}/agents/backend-services/logs?tail=2"))
            .await;
        assert_eq!(status, 200, "{body}");
        if body["lines"].as_array().unwrap().len() == 2 {
            break body["lines"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no output: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_has(&lines[0], &["stream", "line", "timestamp"]);

    for (op, word) in [
        ("deactivate", "deactivated"),
        ("activate", "activated"),
        ("restart", "restarted"),
    ] {
        let (status, body) = app
            .post(&format!("{base}/agents/backend-services/{op}"), &json!({}))
            .await;
        assert_eq!(status, 200, "{op}: {body}");
        assert_eq!(body["agent_name"], "backend-services");
        assert_eq!(body["status"], word);
        assert_has(&body["agent"], &["name", "status", "pid", "restart_count"]);
    }
    let (status, body) = app
        .post(&format!("{base}/agents/ghost/restart"), &json!({}))
        .await;
    assert_error(status, &body, 404, "agent_not_found");
    let (status, body) = app
        .post(
            &format!("{base}/agents/backend-services/explode"),
            &json!({}),
        )
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = app
        .get(&format!("{base}/agents/backend-services/logs?tail=0"))
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    let (status, body) = app.get(&format!("{base}/status")).await;
    assert_eq!(status, 200, "{body}");
    assert_has(
        &body,
        &[
            "session_id",
            "status",
            "created_at",
            "updated_at",
            "working_directory",
            "active_agents",
            "agent_statuses",
            "metrics",
            "alerts",
        ],
    );
    let (status, body) = app.delete(&base).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !common::alive(pid as u32),
        "terminate stops the agent's process"
    );
    // The output is kept while the terminated session is; a purge deletes it too.
    let logs = app.data().join("logs").join(&id);
    assert!(logs.join("backend-services.log").exists());
    let (status, body) = app.delete(&format!("{base}?purge=true")).await;
    assert_eq!(status, 200, "{body}");
    assert!(!logs.exists(), "a purged session's logs are left behind");
}

#[tokio::test]
async fn each_agent_lists_the_dependencies_the_server_resolved() {
    let app = App::start(&[]);
    // Logical agents (no command): DATABASE and API depend on BACKEND by default, BACKEND on
    // the ORCHESTRATOR; a configured `depends_on` (even empty) replaces the defaults.
    let id = create(
        &app,
        json!({
            "name": "graph",
            "working_directory": app.dir("graph"),
            "agents": [
                {"agent_type": "ORCHESTRATOR"},
                {"agent_type": "BACKEND"},
                {"agent_type": "DATABASE"},
                {"agent_type": "API", "depends_on": ["master-orchestrator"]},
                {"agent_type": "DOCUMENTATION", "depends_on": []},
            ],
        }),
    )
    .await;
    let wanted = json!({
        "master-orchestrator": [],
        "backend-services": ["master-orchestrator"],
        "database-architect": ["backend-services"],
        "api-integration-specialist": ["master-orchestrator"],
        "technical-documentation": [],
    });
    let resolved = |agents: &Value| -> Value {
        agents
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["name"].as_str().unwrap().to_owned(),
                    a["depends_on"].clone(),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let base = format!("/api/claude/sessions/{id}");
    let (status, body) = app.get(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(resolved(&body["session"]["agents"]), wanted);
    // The configuration still shows only what was configured.
    let configured = &body["session"]["configuration"]["agents"];
    assert_eq!(configured[2]["depends_on"], Value::Null, "{configured}");
    assert_eq!(configured[3]["depends_on"], json!(["master-orchestrator"]));

    let (_, body) = app.get(&format!("{base}/agents")).await;
    assert_eq!(resolved(&body["agents"]), wanted);
    let (status, body) = app
        .post(
            &format!("{base}/agents/database-architect/restart"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["agent"]["depends_on"], json!(["backend-services"]));
}

#[tokio::test]
async fn refusals_have_their_status_code_and_name_the_field() {
    let app = App::start(&[("SESSION_MANAGER_SESSIONS__MAX_SESSIONS", "1")]);
    let sessions = "/api/claude/sessions";
    let dir = app.dir("x");

    let (status, body) = app
        .post_raw(sessions, "application/json", b"{\"name\": \n 1,".to_vec())
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    assert!(body["error"].as_str().unwrap().contains("line 2"), "{body}");
    let (status, body) = app.post_raw(sessions, "text/plain", b"{}".to_vec()).await;
    assert_error(status, &body, 415, "unsupported_media_type");
    let (status, body) = app
        .post_raw(sessions, "application/json", vec![0xff, 0xfe, b'{'])
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    // Announced as 2 MiB: refused from the header, before the body is read (over a raw
    // socket, since a client still writing the body may see the early answer as a reset).
    let response = raw_exchange(
        &app,
        "POST /api/claude/sessions HTTP/1.1\r\nContent-Type: application/json\r\n\
         Content-Length: 2097152\r\n",
        &[b"{\"name\": \"xxxx"],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = app
        .post_raw(sessions, "application/json", deep.into_bytes())
        .await;
    assert_error(status, &body, 400, "session_validation_error");

    for (request, status_code, code, field) in [
        (
            json!({"working_directory": dir}),
            400,
            "session_validation_error",
            "name",
        ),
        (
            json!({"name": "n", "working_directory": dir, "colour": 1}),
            400,
            "session_validation_error",
            "colour",
        ),
        (
            json!({"name": "n", "working_directory": dir, "agents": [{"agent_type": "WIZARD"}]}),
            422,
            "session_validation_error",
            "agents[0].agent_type",
        ),
        (
            json!({"name": "n", "working_directory": dir, "agents": [{"agent_type": "api", "priority": 101}]}),
            400,
            "session_validation_error",
            "agents[0].priority",
        ),
        (
            json!({"name": "n", "working_directory": dir, "agents": [{"agent_type": "api", "command": ["/bin/true"]}]}),
            403,
            "session_permission_error",
            "agents[0].command",
        ),
        (
            json!({"name": "n", "working_directory": "/etc/app"}),
            422,
            "path_refused",
            "working_directory",
        ),
        (
            json!({"name": "n", "working_directory": "../relative"}),
            422,
            "path_refused",
            "working_directory",
        ),
        (
            json!({"name": "n", "working_directory": dir, "strategy": "all_at_once"}),
            400,
            "session_validation_error",
            "strategy",
        ),
        (
            json!({"name": "n", "working_directory": dir, "agents": [
            {"agent_type": "api", "name": "a", "depends_on": ["b"]},
            {"agent_type": "api", "name": "b", "depends_on": ["a"]}]}),
            422,
            "session_validation_error",
            "agents",
        ),
    ] {
        let (status, body) = app.post(sessions, &request).await;
        assert_error(status, &body, status_code, code);
        let named = body["details"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "{field} expected: {body}");
    }
    create(&app, json!({"name": "only", "working_directory": dir})).await;
    let (status, body) = app
        .post(
            sessions,
            &json!({"name": "second", "working_directory": dir}),
        )
        .await;
    assert_error(status, &body, 422, "session_limit_reached");

    let (status, body) = app.get("/api/claude/sessions/not-a-uuid").await;
    assert_error(status, &body, 404, "session_not_found");
    let (status, body) = app
        .get("/api/claude/sessions/00000000-0000-4000-8000-000000000000")
        .await;
    assert_error(status, &body, 404, "session_not_found");
    let response = app
        .client
        .patch(app.url("/api/claude/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD, POST");
    let (status, body) = common::app::answer(response).await;
    assert_error(status, &body, 405, "method_not_allowed");
    let (status, body) = app.get("/api/claude/nothing-here").await;
    assert_error(status, &body, 404, "not_found");
    assert!(app.healthy().await, "no request took the server down");
}

#[tokio::test]
async fn context_and_hook_events() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "c", "working_directory": app.dir("c")}),
    )
    .await;
    let key = format!("/api/claude/sessions/{id}/context/plan");
    let (status, body) = app.get(&key).await;
    assert_error(status, &body, 404, "context_key_not_found");
    let (status, body) = app.put(&key, &json!({"value": [1, "two"]})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous"], Value::Null);
    let (_, body) = app.get(&key).await;
    assert_eq!(body["value"], json!([1, "two"]));
    let (_, body) = app.get(&format!("/api/claude/sessions/{id}/context")).await;
    assert_eq!(body["context"]["plan"], json!([1, "two"]));
    let (status, body) = app.put(&key, &json!({"valeu": 1})).await;
    assert_error(status, &body, 400, "session_validation_error");
    let (status, body) = app.delete(&key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["previous"], json!([1, "two"]));

    let hook = json!({
        "hook_event_name": "PreToolUse", "session_id": "claude-123", "tool_name": "Bash",
        "tool_input": {"command": "ls"}, "transcript_path": "/tmp/t.jsonl", "cwd": "/tmp"
    });
    let (status, body) = app
        .post(&format!("/api/claude/sessions/{id}/events"), &hook)
        .await;
    assert_eq!(status, 202, "extra fields are tolerated here: {body}");
    assert_eq!(body["hook_event_name"], "PreToolUse");
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{id}/events"),
            &json!({"tool_name": "Bash"}),
        )
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "hook_event_name");
}

#[tokio::test]
async fn paths_types_analytics_status_metrics_and_openapi() {
    let app = App::start(&[]);
    let (status, body) = app
        .post("/api/claude/validate-path", &json!({"path": "/etc"}))
        .await;
    assert_eq!(status, 200, "a refused path is an answer: {body}");
    assert_has(&body, &["validation", "suggestions"]);
    assert_eq!(body["validation"]["valid"], false);
    assert!(!body["validation"]["validation_errors"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(!body["suggestions"].as_array().unwrap().is_empty());
    let missing = app.dir("new/deep");
    let (_, body) = app
        .post("/api/claude/validate-path", &json!({"path": missing}))
        .await;
    assert_eq!(body["validation"]["exists"], false);
    assert!(
        !std::path::Path::new(&missing).exists(),
        "no side effect by default"
    );
    let (_, body) = app
        .post(
            "/api/claude/validate-path",
            &json!({"path": missing, "create_if_missing": true}),
        )
        .await;
    assert_eq!(body["validation"]["exists"], true);
    assert!(std::path::Path::new(&missing).is_dir());
    let (status, body) = app
        .post(
            "/api/claude/validate-paths",
            &json!({"paths": ["/tmp", "/etc"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["validations"]["/etc"]["valid"], false);
    assert_eq!(body["summary"]["valid"], 1);
    assert_eq!(body["summary"]["invalid"], 1);
    let (status, body) = app
        .post("/api/claude/validate-paths", &json!({"paths": []}))
        .await;
    assert_error(status, &body, 400, "session_validation_error");

    let (status, body) = app.get("/api/claude/agent-types").await;
    assert_eq!(status, 200);
    let types = body["agent_types"].as_object().unwrap();
    assert_eq!(types.len(), 12);
    assert_has(
        &types["master-orchestrator"],
        &[
            "type",
            "description",
            "capabilities",
            "priority",
            "memory_min",
            "memory_max",
            "depends_on",
        ],
    );
    assert_eq!(
        types["backend-services"]["depends_on"],
        json!(["ORCHESTRATOR"])
    );

    create(&app, json!({"name": "a", "working_directory": app.dir("a"), "agents": [{"agent_type": "QUALITY"}]})).await;
    let (status, body) = app.get("/api/claude/analytics").await;
    assert_eq!(status, 200);
    assert_has(
        &body["analytics"],
        &[
            "total_sessions",
            "active_sessions",
            "status_distribution",
            "average_duration_seconds",
            "most_used_agents",
            "last_updated",
        ],
    );
    assert_eq!(body["analytics"]["total_sessions"], 1);
    let (status, body) = app.get("/api/claude/system-status").await;
    assert_eq!(status, 200);
    assert_has(
        &body["system_status"],
        &[
            "timestamp",
            "uptime_seconds",
            "sessions",
            "monitoring",
            "agents",
        ],
    );
    assert_has(
        &body["system_status"]["monitoring"],
        &["active", "monitored_sessions", "websocket_clients"],
    );
    assert_eq!(body["system_status"]["agents"]["available_types"], 12);

    let text = app.text("/metrics").await;
    assert!(
        text.contains("# TYPE session_manager_sessions gauge"),
        "{text}"
    );
    assert!(
        text.contains("session_manager_sessions{status=\"active\"}"),
        "{text}"
    );

    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_openapi_matches_the_router(&app, &doc).await;
}

/// Every route of the router, with its methods (GET implies HEAD).
const ROUTES: &[(&str, &[&str])] = &[
    ("/health", &["get"]),
    ("/metrics", &["get"]),
    ("/openapi.json", &["get"]),
    ("/ws/sessions", &["get"]),
    ("/ws/sessions/{id}/agents/{name}/terminal", &["get"]),
    ("/api/claude/events", &["get"]),
    ("/api/claude/sessions", &["get", "post"]),
    ("/api/claude/sessions/import", &["post"]),
    ("/api/claude/sessions/{id}", &["delete", "get", "put"]),
    ("/api/claude/sessions/{id}/navigate", &["post"]),
    ("/api/claude/sessions/{id}/clone", &["post"]),
    ("/api/claude/sessions/{id}/export", &["post"]),
    ("/api/claude/sessions/{id}/events", &["post"]),
    ("/api/claude/sessions/{id}/agents", &["get"]),
    (
        "/api/claude/sessions/{id}/agents/{name}/activate",
        &["post"],
    ),
    (
        "/api/claude/sessions/{id}/agents/{name}/deactivate",
        &["post"],
    ),
    ("/api/claude/sessions/{id}/agents/{name}/restart", &["post"]),
    ("/api/claude/sessions/{id}/agents/{name}/logs", &["get"]),
    ("/api/claude/sessions/{id}/agents/{name}/input", &["post"]),
    ("/api/claude/sessions/{id}/agents/{name}/screen", &["get"]),
    ("/api/claude/sessions/{id}/agents/{name}/resize", &["post"]),
    ("/api/claude/sessions/{id}/metrics", &["get"]),
    ("/api/claude/sessions/{id}/status", &["get"]),
    ("/api/claude/sessions/{id}/usage", &["get"]),
    ("/v1/metrics", &["post"]),
    ("/v1/logs", &["post"]),
    ("/api/claude/sessions/{id}/context", &["get"]),
    (
        "/api/claude/sessions/{id}/context/{key}",
        &["delete", "get", "put"],
    ),
    ("/api/claude/analytics", &["get"]),
    ("/api/claude/validate-path", &["post"]),
    ("/api/claude/validate-paths", &["post"]),
    ("/api/claude/agent-types", &["get"]),
    ("/api/claude/system-status", &["get"]),
    ("/api/claude/hooks", &["post"]),
    ("/api/claude/activity", &["get"]),
];

/// The document lists exactly the routes above with exactly their methods, every operation
/// has a success response, the errors of the guards and a schema for each JSON answer; and
/// the router agrees: each documented operation is routed (its answer is a status the
/// document lists, never the router's own `not_found`), and each path answers any other
/// method with a 405 whose `Allow` names exactly the documented ones.
async fn assert_openapi_matches_the_router(app: &App, doc: &Value) {
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ROUTES.iter().map(|(path, _)| *path).collect();
    assert_eq!(documented, expected, "the documented paths");
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer");
    for (path, methods) in ROUTES {
        let item = paths[*path].as_object().unwrap();
        let listed: BTreeSet<&str> = item.keys().map(String::as_str).collect();
        let wanted: BTreeSet<&str> = methods.iter().copied().collect();
        assert_eq!(listed, wanted, "methods of {path}");
        let concrete = path
            .replace("{id}", "6f1c1a52-3f5e-4b7e-9d43-0f0e6a4f2b11")
            .replace("{name}", "some-agent")
            .replace("{key}", "some-key");
        for method in *methods {
            let operation = &item[*method];
            assert!(operation["operationId"].is_string(), "{method} {path}");
            let responses = operation["responses"].as_object().unwrap();
            for status in ["403", "429", "500", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            assert_eq!(
                responses.contains_key("401"),
                *path != "/health",
                "{method} {path}: 401 on every route but /health"
            );
            for (status, response) in responses {
                // Every $ref resolves.
                let text = response.to_string();
                for name in text.split("#/components/schemas/").skip(1) {
                    let name = name.split('"').next().unwrap();
                    assert!(
                        schemas.contains_key(name),
                        "{method} {path} {status}: {name}"
                    );
                }
            }
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
            let request = if operation.get("requestBody").is_some() {
                request.json(&json!({}))
            } else {
                request
            };
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            assert!(
                responses.contains_key(&status.to_string()),
                "{method} {concrete} answered {status}, not documented: {text}"
            );
            if status == 404 {
                let body: Value = serde_json::from_str(&text).unwrap();
                assert_ne!(
                    body["error_code"], "not_found",
                    "{method} {concrete} is not routed"
                );
            }
        }
        // Any other method: 405 naming exactly the documented ones.
        let response = app
            .client
            .request(reqwest::Method::PATCH, app.url(&concrete))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "PATCH {concrete}");
        let allow: BTreeSet<String> = response.headers()["allow"]
            .to_str()
            .unwrap()
            .split(", ")
            .map(str::to_lowercase)
            .filter(|m| m != "head")
            .collect();
        let documented: BTreeSet<String> = methods.iter().map(|m| m.to_string()).collect();
        assert_eq!(allow, documented, "Allow of {path}");
    }
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_while_it_streams_in() {
    let app = App::start(&[("SESSION_MANAGER_SERVER__MAX_BODY_BYTES", "1024")]);
    // No Content-Length: only the reader can stop it. 64 chunks of 512 bytes = 32 KiB.
    let chunk = format!("200\r\n{}\r\n", "x".repeat(512));
    let mut chunks = vec![chunk.as_bytes(); 64];
    chunks.push(b"0\r\n\r\n");
    let response = raw_exchange(
        &app,
        "POST /api/claude/sessions HTTP/1.1\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n",
        &chunks,
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"payload_too_large\""), "{response}");
    assert!(app.healthy().await);
}

/// Sends `head` (request line and headers, without Host and the blank line) and then the
/// `body` pieces over a raw socket, stopping at the first write the server refuses (it may
/// answer early and close); returns everything the server sent.
async fn raw_exchange(app: &App, head: &str, body: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(&app.address).await.unwrap();
    let head = format!("{head}Host: {}\r\nConnection: close\r\n\r\n", app.address);
    stream.write_all(head.as_bytes()).await.unwrap();
    for piece in body {
        if stream.write_all(piece).await.is_err() {
            break;
        }
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// Runs `session-manager hook` with `payload` on stdin; returns its exit code and stderr.
fn run_hook(payload: &str, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_session-manager"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with("SESSION_MANAGER_") || name == "CLAUDE_SESSION_ID" {
            command.env_remove(name);
        }
    }
    let mut child = command
        .arg("hook")
        .env("HOME", home.path())
        .envs(envs.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_hook_command_forwards_a_claude_code_payload() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "h", "working_directory": app.dir("h")}),
    )
    .await;
    let url = app.url("");
    let payload = r#"{"hook_event_name": "PostToolUse", "session_id": "claude-own-id",
        "tool_name": "Write", "tool_input": {"file_path": "/tmp/x"}, "tool_response": {}}"#;
    let (code, stderr) = tokio::task::spawn_blocking({
        let (url, id) = (url.clone(), id.clone());
        move || {
            run_hook(
                payload,
                &[("SESSION_MANAGER_URL", &url), ("CLAUDE_SESSION_ID", &id)],
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let (status, body) = app
        .get(&format!(
            "/api/claude/events?since=0&session_id={id}&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let hook = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "session_hook")
        .unwrap_or_else(|| panic!("no session_hook event: {body}"));
    assert_eq!(hook["data"]["hook_event_name"], "PostToolUse");

    // Without a session of ours (a Claude Code started by hand: its session_id is its own)
    // the payload goes to POST /api/claude/hooks, kept as unattributed activity.
    let (code, stderr) = tokio::task::spawn_blocking({
        let url = url.clone();
        move || run_hook(payload, &[("SESSION_MANAGER_URL", &url)])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{stderr}");
    let (_, activity) = app.get("/api/claude/activity").await;
    assert!(
        activity["claude_sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["claude_session_id"] == "claude-own-id"),
        "{activity}"
    );

    // Failures are reported and exit 1 — never 2, which would block Claude Code's tool call.
    let unknown = "6f1c9a1e-0000-4000-8000-00000000abcd";
    for (payload, envs) in [
        (
            payload,
            vec![
                ("SESSION_MANAGER_URL", url.clone()),
                ("CLAUDE_SESSION_ID", unknown.to_string()),
            ],
        ),
        (
            "not json",
            vec![
                ("SESSION_MANAGER_URL", url.clone()),
                ("CLAUDE_SESSION_ID", id.clone()),
            ],
        ),
        (
            payload,
            vec![
                ("SESSION_MANAGER_URL", "http://127.0.0.1:9".to_string()),
                ("CLAUDE_SESSION_ID", id.clone()),
            ],
        ),
    ] {
        let (code, stderr) = tokio::task::spawn_blocking(move || {
            let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            run_hook(payload, &envs)
        })
        .await
        .unwrap();
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
}

#[tokio::test]
async fn path_segments_are_decoded_and_races_with_a_purge_answer_404_or_409() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "r", "working_directory": app.dir("r")}),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");
    let (status, body) = app
        .put(
            &format!("{base}/context/a%2Fb%20%C3%A9"),
            &json!({"value": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["key"], "a/b é", "the key is what the client encoded");
    let (_, body) = app.get(&format!("{base}/context")).await;
    assert_eq!(body["context"], json!({"a/b é": 1}));
    let (status, body) = app
        .put(&format!("{base}/context/%00"), &json!({"value": 1}))
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    let (status, body) = app
        .put(&format!("{base}/context/%FF"), &json!({"value": 1}))
        .await;
    assert_error(status, &body, 400, "session_validation_error");
    assert_eq!(body["details"]["field"], "key");
    let (status, body) = app
        .post_raw(
            "/api/claude/sessions",
            "application/json",
            br#"{"name": "a", "name": "b", "working_directory": "/tmp"}"#.to_vec(),
        )
        .await;
    assert_error(status, &body, 400, "session_validation_error");

    // Requests racing a purge: each answers 200, 404 or 409 — never 500 or 503.
    let requests = (0..24).map(|i| {
        let app = &app;
        let base = base.clone();
        async move {
            match i % 4 {
                0 => app.delete(&format!("{base}?purge=true")).await,
                1 => {
                    app.put(&format!("{base}/context/k{i}"), &json!({"value": i}))
                        .await
                }
                2 => app.get(&base).await,
                _ => {
                    app.put(&base, &json!({"description": format!("d{i}")}))
                        .await
                }
            }
        }
    });
    for (status, body) in futures::future::join_all(requests).await {
        assert!([200, 404, 409].contains(&status), "{status}: {body}");
    }
    let (status, _) = app.get(&base).await;
    assert_eq!(status, 404);
    assert!(app.healthy().await);
}

#[tokio::test]
async fn concurrent_updates_and_navigates_never_undo_each_other() {
    let app = App::start(&[]);
    let id = create(
        &app,
        json!({"name": "race", "working_directory": app.dir("m0"), "agents": [{"agent_type": "orchestrator"}]}),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");
    for round in 0..8 {
        let target = app.dir(&format!("m{}", round % 2 + 1));
        let description = format!("d{round}");
        let navigate = format!("{base}/navigate");
        let (navigate_body, update_body) =
            (json!({"path": target}), json!({"description": description}));
        let (navigated, updated) = tokio::join!(
            app.post(&navigate, &navigate_body),
            app.put(&base, &update_body),
        );
        assert_eq!(navigated.0, 200, "{}", navigated.1);
        assert_eq!(updated.0, 200, "{}", updated.1);
        let (_, body) = app.get(&base).await;
        let config = &body["session"]["configuration"];
        assert_eq!(
            config["description"],
            json!(description),
            "round {round}: the update was lost"
        );
        assert_eq!(
            config["working_directory"],
            json!(target),
            "round {round}: the move was lost"
        );
    }
}

/// `examples/api_client.rs`, the Rust counterpart of the original's API client example, against
/// the real server with a token: it visits every route and the WebSocket, every step passes,
/// and it leaves nothing behind — no session, no temporary directory.
#[tokio::test]
async fn the_api_client_example_visits_every_route_and_cleans_up() {
    const TOKEN: &str = "api-client-example-token";
    let app = App::start(&[("SESSION_MANAGER_SERVER__TOKEN", TOKEN)]);
    let run = tokio::process::Command::new(common::example("api_client"))
        .env("SESSION_MANAGER_URL", app.url(""))
        .env("SESSION_MANAGER_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PATIENCE * 6, run)
        .await
        .expect("the example did not finish")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for step in [
        "ok    200 GET /health ",
        "ok    200 GET /openapi.json ",
        "ok    200 GET /api/claude/agent-types ",
        "ok    200 POST /api/claude/validate-path ",
        "ok    200 POST /api/claude/validate-paths ",
        "ok    201 POST /api/claude/sessions ",
        "ok    200 GET /api/claude/sessions?tag=api-client",
        "ok    200 PUT /api/claude/sessions/",
        "/navigate ",
        "/agents ",
        "/agents/backend-services/deactivate ",
        "/agents/backend-services/activate ",
        "/agents/backend-services/restart ",
        "/agents/backend-services/logs?tail=20 ",
        "/metrics?hours=1 ",
        "/status ",
        "ok    200 PUT /api/claude/sessions/",
        "/context/plan ",
        "/context ",
        "ok    202 POST /api/claude/sessions/",
        "ok    201 POST /api/claude/sessions/import ",
        "/clone ",
        "/export ",
        "ok    200 GET /api/claude/analytics ",
        "ok    200 GET /api/claude/system-status ",
        "ok    200 GET /metrics ",
        "?purge=true ",
        "ok    404 GET /api/claude/sessions/",
        "ok    200 GET /api/claude/events?since=",
        "ok    101 GET ws://",
        "ok    ws    subscribe ",
        "ok    ws    ping ",
        "ok    ws    subscribe_session ",
        "ok    ws    session_purged ",
        "ws ←  session_created ",
        "all steps passed",
    ] {
        assert!(stdout.contains(step), "no `{step}` in:\n{stdout}");
    }
    // Three sessions (the tour's, its clone, the import), each purged.
    assert_eq!(
        stdout.matches("ok    ws    session_purged ").count(),
        3,
        "{stdout}"
    );

    let workdir = stdout
        .lines()
        .find_map(|line| line.strip_prefix("workdir "))
        .expect("the example names its directory");
    assert!(
        !std::path::Path::new(workdir).exists(),
        "{workdir} was left behind"
    );
    let response = app
        .client
        .get(app.url("/api/claude/sessions"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let (status, body) = common::app::answer(response).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0, "sessions were left behind: {body}");
}

/// `GET /sessions/{id}` answers are kept between the session's changes (`api/answers.rs`):
/// whatever a client changed shows in its very next read, the envelope is new each time, and
/// a purged session is gone at once.
#[tokio::test]
async fn a_kept_session_answer_never_hides_a_change() {
    let app = App::start(&[("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true")]);
    let id = create(
        &app,
        json!({
            "name": "kept",
            "working_directory": app.dir("kept"),
            "agents": [{"agent_type": "BACKEND", "command": fake(&["--sleep-forever"])}],
        }),
    )
    .await;
    let base = format!("/api/claude/sessions/{id}");
    wait_status(&app, &id, "active").await;

    let (_, first) = app.get(&base).await;
    let (_, second) = app.get(&base).await;
    assert!(
        second["timestamp"].as_f64() > first["timestamp"].as_f64(),
        "each answer has its own timestamp: {first} {second}"
    );
    assert_eq!(second["data"]["session"], second["session"]);

    for round in 0..40 {
        let description = format!("round {round}");
        let (status, body) = app.put(&base, &json!({"description": description})).await;
        assert_eq!(status, 200, "{body}");
        let (_, body) = app.get(&base).await;
        assert_eq!(
            body["session"]["configuration"]["description"],
            json!(description),
            "round {round}: an answer from before the update"
        );
        assert_eq!(body["data"]["session"], body["session"]);
    }

    for op in ["deactivate", "activate", "deactivate"] {
        let (status, done) = app
            .post(&format!("{base}/agents/backend-services/{op}"), &json!({}))
            .await;
        assert_eq!(status, 200, "{op}: {done}");
        let (_, body) = app.get(&base).await;
        assert_eq!(
            body["agent_statuses"]["backend-services"], done["agent"]["status"],
            "after {op}: {body}"
        );
    }

    let (status, body) = app.delete(&format!("{base}?purge=true")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app.get(&base).await;
    assert_error(status, &body, 404, "session_not_found");
}
