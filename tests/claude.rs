//! Claude Code agents against the real binary, with `examples/fake_claude` as the CLI
//! (`[agents.claude] command`): its command line (role, options, conversation flags), the
//! conversation id on the agent object and its life (kept across restarts of the server and
//! updates, new for clones and imports), a crash typed through the API resumed exactly once,
//! a SIGKILLed server leaving exactly one resumed process, and who may give `args`.
//!
//! The server runs with a temporary HOME (`common::app`), which its agents inherit: the
//! fake's transcripts go under it, never under the user's `~/.claude`.

mod common;

use serde_json::{json, Value};

use common::app::App;
use common::example;

/// The server's configuration: the fake as the Claude CLI, plus `extra` under `[agents]`
/// and `allowed` as `allowed_args`.
fn config(extra: &str, allowed: &[&str]) -> String {
    let fake = example("fake_claude");
    format!(
        "[agents]\n{extra}\n[agents.claude]\ncommand = [{:?}]\nallowed_args = {:?}\n",
        fake.display().to_string(),
        allowed
    )
}

async fn create(app: &App, name: &str, agents: Value) -> (u16, Value) {
    app.post(
        "/api/claude/sessions",
        &json!({"name": name, "working_directory": app.dir(name),
                "git_enabled": false, "agents": agents}),
    )
    .await
}

async fn create_ok(app: &App, name: &str, agents: Value) -> String {
    let (status, body) = create(app, name, agents).await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// The agent object of `name` in session `id`.
async fn agent(app: &App, id: &str, name: &str) -> Value {
    let (_, body) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    body["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Restarts the server on its data; the client's pooled connections went with the old one.
fn restart(app: &mut App) {
    app.restart();
    app.client = reqwest::Client::new();
}

fn uuid_of(agent: &Value) -> String {
    let id = agent["claude_session_id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{agent}");
    id.to_owned()
}

#[tokio::test]
async fn args_need_the_custom_command_right_or_every_one_listed() {
    let app = App::with_config(&config("", &["--verbose"]));
    let (status, body) = create(
        &app,
        "refused",
        json!([{"agent_type": "API", "claude": {"args": ["--verbose", "--debug"]}}]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["details"]["field"], "agents[0].claude.args", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("allow_custom_commands"),
        "{body}"
    );
    let (_, listed) = app.get("/api/claude/sessions").await;
    assert_eq!(
        listed["total"], 0,
        "a refused create keeps nothing: {listed}"
    );

    // Listed, they pass; so does a Claude agent without args, with no right at all.
    let id = create_ok(
        &app,
        "listed",
        json!([{"agent_type": "API", "name": "a", "claude": {"args": ["--verbose"]}}]),
    )
    .await;
    assert!(!id.is_empty());

    let free = App::with_config(&config("allow_custom_commands = true", &[]));
    create_ok(
        &free,
        "free",
        json!([{"agent_type": "API", "claude": {"args": ["--debug"]}}]),
    )
    .await;
}

#[tokio::test]
async fn claude_with_command_and_bad_options_are_refused_naming_the_field() {
    let app = App::with_config(&config("allow_custom_commands = true", &[]));
    for (agents, status, field) in [
        (
            json!([{"agent_type": "API", "claude": true, "command": ["x"]}]),
            422,
            "agents[0].command",
        ),
        (
            json!([{"agent_type": "API", "claude": {"permission_mode": "yolo"}}]),
            400,
            "agents[0].claude.permission_mode",
        ),
        (
            json!([{"agent_type": "API", "claude": {"model": ""}}]),
            400,
            "agents[0].claude.model",
        ),
    ] {
        let (got, body) = create(&app, "bad", agents.clone()).await;
        assert_eq!(got, status, "{agents}: {body}");
        assert_eq!(body["details"]["field"], field, "{body}");
    }
    let (status, body) = create(
        &app,
        "shape",
        json!([{"agent_type": "API", "claude": "yes"}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("claude"), "{body}");
}

#[tokio::test]
async fn conversations_are_kept_by_updates_and_restarts_and_never_shared_by_copies() {
    let mut app = App::with_config(&config("", &[]));
    let agents = json!([{"agent_type": "BACKEND", "name": "coder", "claude": true}]);
    let id = create_ok(&app, "origin", agents.clone()).await;
    let base = format!("/api/claude/sessions/{id}");
    let first = uuid_of(&agent(&app, &id, "coder").await);

    // An update that adds an agent keeps the first one's conversation.
    let (status, body) = app
        .put(
            &base,
            &json!({"agents": [
                {"agent_type": "BACKEND", "name": "coder", "claude": true},
                {"agent_type": "QUALITY", "name": "tester", "claude": true},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        agent(&app, &id, "coder").await["claude_session_id"],
        first.as_str()
    );
    let tester = uuid_of(&agent(&app, &id, "tester").await);
    assert_ne!(tester, first);

    // A clone and an import get conversations of their own.
    let (status, body) = app
        .post(&format!("{base}/clone"), &json!({"new_name": "copy"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let clone = body["session"]["id"].as_str().unwrap().to_owned();
    let (_, body) = app.post(&format!("{base}/export"), &json!({})).await;
    let snapshot = body["snapshot"].clone();
    assert!(
        !snapshot.to_string().contains(&first),
        "an export carries no conversation id"
    );
    let (status, body) = app
        .post(
            "/api/claude/sessions/import",
            &json!({"session_data": snapshot}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let imported = body["session"]["id"].as_str().unwrap().to_owned();
    let mut seen = vec![first.clone(), tester.clone()];
    for copy in [&clone, &imported] {
        for name in ["coder", "tester"] {
            let conversation = uuid_of(&agent(&app, copy, name).await);
            assert!(!seen.contains(&conversation), "{conversation} shared");
            seen.push(conversation);
        }
    }

    // Removing an agent forgets its conversation; adding it back starts a new one.
    let (status, body) = app.put(&base, &json!({"agents": agents})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .put(
            &base,
            &json!({"agents": [
                {"agent_type": "BACKEND", "name": "coder", "claude": true},
                {"agent_type": "QUALITY", "name": "tester", "claude": true},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tester_again = uuid_of(&agent(&app, &id, "tester").await);
    assert!(!seen.contains(&tester_again));

    // A restart of the server keeps every conversation.
    restart(&mut app);
    assert_eq!(
        agent(&app, &id, "coder").await["claude_session_id"],
        first.as_str()
    );
    assert_eq!(
        agent(&app, &id, "tester").await["claude_session_id"],
        tester_again.as_str()
    );
}
