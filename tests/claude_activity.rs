//! Claude Code activity from its hooks, through the real binary: `POST /api/claude/hooks`
//! taking every event in the shape Claude Code posts it, the attribution rules, one Claude
//! session walked through its states with the WebSocket events and the `claude_waiting`
//! alert, `claude_sessions` on the session object, `/api/claude/activity`, `/metrics`, a
//! restart, and the refusals.

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::app::App;
use common::PATIENCE;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Claude agents run `sh -c 'exec sleep 1000' claude <flags>`: a process that lives, with the
/// real command line's flags as ignored positional parameters. Waiting alerts after 1 s.
const CONFIG: &str = "[agents.claude]\ncommand = [\"sh\", \"-c\", \"exec sleep 1000\", \"claude\"]\n\n[claude]\nwaiting_alert_seconds = 1\n";

fn app() -> App {
    App::with_config(CONFIG)
}

/// A session working in `dir` (created), with `agents`; its id.
async fn session(app: &App, dir: &str, agents: Value) -> String {
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({
                "name": format!("s-{}", uuid::Uuid::new_v4()),
                "working_directory": dir,
                "create_if_missing": true,
                "agents": agents,
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// What `POST /api/claude/hooks` answered: status, body, attributed session, state.
struct Answer {
    status: u16,
    body: String,
    session: Option<String>,
    state: Option<String>,
}

async fn hook(app: &App, payload: &Value, headers: &[(&str, &str)]) -> Answer {
    let mut request = app.client.post(app.url("/api/claude/hooks")).json(payload);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let (session, state) = (
        header("x-session-manager-session"),
        header("x-claude-state"),
    );
    Answer {
        status: response.status().as_u16(),
        session,
        state,
        body: response.text().await.unwrap(),
    }
}

/// A hook payload of `event` for Claude session `id` in `cwd`.
fn payload(id: &str, event: &str, cwd: &str) -> Value {
    json!({
        "session_id": id,
        "transcript_path": format!("{cwd}/t.jsonl"),
        "cwd": cwd,
        "permission_mode": "default",
        "hook_event_name": event,
    })
}

async fn claude_sessions(app: &App, session: &str) -> Vec<Value> {
    let (status, body) = app.get(&format!("/api/claude/sessions/{session}")).await;
    assert_eq!(status, 200, "{body}");
    body["session"]["claude_sessions"]
        .as_array()
        .unwrap()
        .clone()
}

async fn socket(app: &App) -> Socket {
    let url = app.url("/ws/sessions").replacen("http://", "ws://", 1);
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next WebSocket message of one of `types`.
async fn next_of(socket: &mut Socket, types: &[&str]) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {types:?} message in time"))
            .expect("the socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if types.contains(&value["type"].as_str().unwrap_or_default()) {
                return value;
            }
        }
    }
}

#[tokio::test]
async fn every_hook_event_is_taken_as_claude_code_posts_it() {
    let app = app();
    let dir = app.dir("project");
    let session = session(&app, &dir, json!([])).await;
    let fixtures: Value = serde_json::from_str(include_str!("fixtures/claude_hooks.json")).unwrap();
    for (i, fixture) in fixtures["events"].as_array().unwrap().iter().enumerate() {
        let id = format!("claude-{i}");
        let text = fixture["payload"]
            .to_string()
            .replace("SESSION", &id)
            .replace("CWD", &dir);
        let event: Value = serde_json::from_str(&text).unwrap();
        let name = event["hook_event_name"].as_str().unwrap();
        // From working, so every event shows what it moves to.
        let first = hook(&app, &payload(&id, "UserPromptSubmit", &dir), &[]).await;
        assert_eq!(first.state.as_deref(), Some("working"));
        let answer = hook(&app, &event, &[]).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.body);
        assert_eq!(
            answer.body, "",
            "{name}: Claude Code must proceed unchanged"
        );
        assert_eq!(answer.session.as_deref(), Some(session.as_str()), "{name}");
        let expected = fixture["state"].as_str().unwrap_or("working");
        assert_eq!(answer.state.as_deref(), Some(expected), "{name}");
    }
    // Each is in the log with every key kept, the unknown one too.
    let (_, events) = app
        .get(&format!(
            "/api/claude/events?session_id={session}&limit=1000"
        ))
        .await;
    let hooks: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "session_hook")
        .collect();
    let unknown = hooks
        .iter()
        .find(|e| e["data"]["hook_event_name"] == "TeammateIdle")
        .expect("the unknown event is stored");
    assert_eq!(unknown["data"]["payload"]["teammate"], "reviewer");
    let failed = claude_sessions(&app, &session)
        .await
        .into_iter()
        .find(|c| c["state"] == "failed")
        .expect("the StopFailure's Claude session");
    assert_eq!(
        failed["error"],
        "rate_limit: Rate limit exceeded: 100 requests per minute"
    );
    // The monitor counted the tool uses as before (PostToolUse, PostToolUseFailure).
    let (_, body) = app.get(&format!("/api/claude/sessions/{session}")).await;
    assert_eq!(
        body["session"]["metrics"]["tool_uses"], 2,
        "{}",
        body["session"]["metrics"]
    );
}

#[tokio::test]
async fn one_claude_session_walks_through_its_states_with_events_and_an_alert() {
    let app = app();
    let dir = app.dir("walk");
    let session = session(&app, &dir, json!([])).await;
    let mut socket = socket(&app).await;
    let id = "0b7e5a6c-1111-4a2b-9c3d-000000000001";
    let named = [("x-session-manager-session", session.as_str())];
    let walk = [
        ("SessionStart", "idle"),
        ("UserPromptSubmit", "working"),
        ("PermissionRequest", "waiting_for_input"),
    ];
    for (event, state) in walk {
        let answer = hook(&app, &payload(id, event, &dir), &named).await;
        assert_eq!(answer.state.as_deref(), Some(state), "{event}");
    }
    // Waiting: the session object says so, /metrics counts it, and after 1 s an alert.
    let listed = claude_sessions(&app, &session).await;
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry["claude_session_id"], id);
    assert_eq!(entry["state"], "waiting_for_input");
    assert_eq!(entry["last_event"], "PermissionRequest");
    assert_eq!(entry["cwd"], dir.as_str());
    assert!(entry["agent"].is_null());
    for key in ["since", "cost_usd"] {
        assert!(entry[key].is_number(), "{key}: {entry}");
    }
    for key in ["input", "output", "cache_read", "cache_creation"] {
        assert!(entry["tokens"][key].is_u64(), "tokens.{key}: {entry}");
    }
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("session_manager_claude_sessions{state=\"waiting_for_input\"} 1"),
        "{metrics}"
    );
    let alert = next_of(&mut socket, &["alert"]).await;
    assert_eq!(alert["data"]["kind"], "claude_waiting", "{alert}");
    assert_eq!(alert["session_id"], session.as_str());
    let alert_id = alert["data"]["id"].clone();
    let (_, status) = app
        .get(&format!("/api/claude/sessions/{session}/status"))
        .await;
    assert!(
        status.to_string().contains("claude_waiting"),
        "the open alert is listed with the session's: {status}"
    );
    // Moving on resolves it.
    for (event, state) in [
        ("PreToolUse", "working"),
        ("PostToolUse", "working"),
        ("Stop", "idle"),
        ("SessionEnd", "ended"),
    ] {
        let answer = hook(&app, &payload(id, event, &dir), &named).await;
        assert_eq!(answer.state.as_deref(), Some(state), "{event}");
    }
    let resolved = next_of(&mut socket, &["alert_resolved"]).await;
    assert_eq!(resolved["data"]["id"], alert_id);
    // The WebSocket got each change once, in order, numbered, with the state before.
    let mut socket = socket_since(&app, 0).await;
    let mut changes = Vec::new();
    while changes.len() < 6 {
        let event = next_of(&mut socket, &["claude_activity"]).await;
        assert!(event["seq"].is_u64(), "{event}");
        assert_eq!(event["session_id"], session.as_str());
        changes.push((
            event["data"]["previous_state"].clone(),
            event["data"]["state"].as_str().unwrap().to_owned(),
        ));
    }
    let states: Vec<&str> = changes.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        states,
        [
            "idle",
            "working",
            "waiting_for_input",
            "working",
            "idle",
            "ended"
        ]
    );
    assert!(changes[0].0.is_null(), "first seen: no state before");
    assert_eq!(changes[1].0, "idle");
}

/// A socket that replays the log from `since`.
async fn socket_since(app: &App, since: u64) -> Socket {
    let mut socket = socket(app).await;
    let subscribe = json!({"type": "subscribe", "since": since}).to_string();
    socket.send(Message::Text(subscribe.into())).await.unwrap();
    socket
}

#[tokio::test]
async fn a_hook_is_attributed_by_agent_then_header_then_directory() {
    let app = app();
    let outer_dir = app.dir("outer");
    let inner_dir = format!("{outer_dir}/inner");
    let outer = session(&app, &outer_dir, json!([])).await;
    let inner = session(&app, &inner_dir, json!([])).await;
    let ours = session(
        &app,
        &app.dir("ours"),
        json!([{"agent_type": "backend", "name": "coder", "claude": true}]),
    )
    .await;
    let (_, agents) = app
        .get(&format!("/api/claude/sessions/{ours}/agents"))
        .await;
    let conversation = agents["agents"][0]["claude_session_id"]
        .as_str()
        .expect("a Claude agent has its conversation id")
        .to_owned();

    // The longest working directory holding the cwd.
    let deep = format!("{inner_dir}/src");
    let answer = hook(&app, &payload("by-dir", "UserPromptSubmit", &deep), &[]).await;
    assert_eq!(answer.session.as_deref(), Some(inner.as_str()));
    let answer = hook(
        &app,
        &payload("by-dir-2", "UserPromptSubmit", &outer_dir),
        &[],
    )
    .await;
    assert_eq!(answer.session.as_deref(), Some(outer.as_str()));
    // The header beats the directory; an empty, malformed or unknown one is no header.
    let named = [("x-session-manager-session", outer.as_str())];
    let answer = hook(
        &app,
        &payload("by-header", "UserPromptSubmit", &deep),
        &named,
    )
    .await;
    assert_eq!(answer.session.as_deref(), Some(outer.as_str()));
    for bad in ["", "not-a-uuid", "6f1c9a1e-0000-4000-8000-00000000dead"] {
        let header = [("x-session-manager-session", bad)];
        let answer = hook(
            &app,
            &payload("by-bad-header", "PreToolUse", &deep),
            &header,
        )
        .await;
        assert_eq!(answer.session.as_deref(), Some(inner.as_str()), "{bad:?}");
    }
    // One of our Claude agents' conversation beats everything, and names the agent.
    let answer = hook(
        &app,
        &payload(&conversation, "UserPromptSubmit", &deep),
        &named,
    )
    .await;
    assert_eq!(answer.session.as_deref(), Some(ours.as_str()));
    let listed = claude_sessions(&app, &ours).await;
    assert_eq!(listed[0]["agent"], "coder");
    assert_eq!(listed[0]["claude_session_id"], conversation.as_str());
    // Nothing matches: kept, listed, announced, not attributed.
    let answer = hook(
        &app,
        &payload("stray", "PermissionRequest", "/nowhere/at/all"),
        &[],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.session, None);
    assert_eq!(answer.state.as_deref(), Some("waiting_for_input"));
    let (_, activity) = app.get("/api/claude/activity").await;
    let stray = activity["claude_sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["claude_session_id"] == "stray")
        .expect("the unattributed one is listed");
    assert!(stray["session_id"].is_null());
    assert!(activity["unattributed"].as_u64().unwrap() >= 1);
    assert!(activity["waiting_for_input"].as_u64().unwrap() >= 1);
    let (_, events) = app.get("/api/claude/events?limit=1000").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "claude_hook" && e["session_id"].is_null()),
        "the unattributed hook is in the log"
    );
    // Its process exits: its conversation is ended.
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{ours}/agents/coder/deactivate"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + PATIENCE;
    while claude_sessions(&app, &ours).await[0]["state"] != "ended" {
        assert!(Instant::now() < deadline, "the conversation never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // It runs again, resuming its conversation: idle, waiting for a prompt.
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{ours}/agents/coder/activate"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    while claude_sessions(&app, &ours).await[0]["state"] != "idle" {
        assert!(Instant::now() < deadline, "the conversation never resumed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_shim_route_moves_the_state_of_its_session_too() {
    let app = app();
    let dir = app.dir("shim");
    let session = session(&app, &dir, json!([])).await;
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{session}/events"),
            &payload("via-shim", "PermissionRequest", "/not/its/dir"),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let listed = claude_sessions(&app, &session).await;
    assert_eq!(listed[0]["claude_session_id"], "via-shim");
    assert_eq!(listed[0]["state"], "waiting_for_input");
}

#[tokio::test]
async fn what_the_hooks_said_survives_a_restart() {
    let mut app = app();
    let dir = app.dir("kept");
    let session = session(&app, &dir, json!([])).await;
    hook(&app, &payload("kept", "PermissionRequest", &dir), &[]).await;
    app.restart();
    app.client = reqwest::Client::new();
    let listed = claude_sessions(&app, &session).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["state"], "waiting_for_input");
    let answer = hook(&app, &payload("kept", "UserPromptSubmit", &dir), &[]).await;
    assert_eq!(answer.session.as_deref(), Some(session.as_str()));
    assert_eq!(answer.state.as_deref(), Some("working"));
}

#[tokio::test]
async fn bad_hooks_are_refused_naming_the_field() {
    let app = app();
    for (body, field) in [
        (json!({"session_id": "x"}), "hook_event_name"),
        (json!({"hook_event_name": 7}), "hook_event_name"),
        (json!({"hook_event_name": ""}), "hook_event_name"),
        (
            json!({"hook_event_name": "x".repeat(129)}),
            "hook_event_name",
        ),
    ] {
        let (status, answer) = app.post("/api/claude/hooks", &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["details"]["field"], field, "{answer}");
    }
    let (status, answer) = app.post("/api/claude/hooks", &json!([1, 2])).await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = app
        .post_raw("/api/claude/hooks", "application/json", b"{".to_vec())
        .await;
    assert_eq!(status, 400);
    // A Claude session id that is no text, or absurdly long, is taken but not tracked.
    for id in [json!(42), json!("x".repeat(300))] {
        let body = json!({"hook_event_name": "Stop", "session_id": id});
        let answer = hook(&app, &body, &[]).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.state, None);
    }
    let (status, _) = app.get("/api/claude/hooks").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn the_token_guards_the_hooks_like_every_route() {
    let app = App::start(&[("SESSION_MANAGER_SERVER__TOKEN", "s3cret-token-value")]);
    let body = payload("guarded", "Stop", "/tmp");
    let answer = hook(&app, &body, &[]).await;
    assert_eq!(answer.status, 401);
    let answer = hook(
        &app,
        &body,
        &[("authorization", "Bearer s3cret-token-value")],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}
