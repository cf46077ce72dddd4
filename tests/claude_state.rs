//! What a Claude Code session is doing, end to end: `examples/fake_claude` as a Claude agent
//! of the real server posts its hooks as the real CLI does (the server's `--settings`: `http`
//! hooks), and the session object and
//! the `claude_activity` events on `/ws/sessions` follow it through working → waiting →
//! working → idle → ended. Also the shim for a Claude Code started by hand.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use common::app::App;
use common::{example, PATIENCE};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn config() -> String {
    format!(
        "[agents.claude]\ncommand = [{:?}]\nallowed_args = []\n",
        example("fake_claude").display().to_string()
    )
}

async fn socket(app: &App) -> Socket {
    let url = app.url("/ws/sessions").replacen("http://", "ws://", 1);
    let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
}

/// The next `claude_activity` event of session `id` whose data `pick` takes; every one
/// before it is returned too, in order, so a test can check what came between.
async fn until_activity(
    socket: &mut Socket,
    id: &str,
    pick: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no such claude_activity in time; saw {seen:#?}"))
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] != "claude_activity" || message["session_id"] != id {
            continue;
        }
        assert!(message["seq"].as_u64().is_some(), "numbered: {message}");
        let data = message["data"].clone();
        let done = pick(&data);
        seen.push(data);
        if done {
            return seen;
        }
    }
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |data| data["state"] == state
}

async fn type_text(app: &App, id: &str, text: &str, submit: bool) {
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{id}/agents/coder/input"),
            &json!({"text": text, "submit": submit}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Polls the session object until its first Claude session is in `state`.
async fn until_state(app: &App, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = app.get(&format!("/api/claude/sessions/{id}")).await;
        let entry = body["session"]["claude_sessions"][0].clone();
        if entry["state"] == state {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "never {state}: {}",
            body["session"]["claude_sessions"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_claude_agent_walks_through_working_waiting_idle_and_ended() {
    let app = App::with_config(&config());
    let mut socket = socket(&app).await;
    let (status, created) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "walk", "working_directory": app.dir("walk"), "git_enabled": false,
                    "agents": [{"agent_type": "BACKEND", "name": "coder", "claude": true}]}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_owned();

    // SessionStart announces the conversation idle.
    let started = until_activity(&mut socket, &id, state_is("idle")).await;
    let first = started.last().unwrap();
    assert_eq!(first["last_event"], "SessionStart", "{first}");
    assert_eq!(first["agent"], "coder");
    let (_, agents) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    let conversation = agents["agents"][0]["claude_session_id"].clone();
    assert_eq!(first["claude_session_id"], conversation);

    // `ask`: the prompt works, then a permission prompt waits for the person.
    type_text(&app, &id, "ask", true).await;
    let asked = until_activity(&mut socket, &id, state_is("waiting_for_input")).await;
    assert!(
        asked.iter().any(|d| d["state"] == "working"),
        "working before waiting: {asked:#?}"
    );
    let waiting = asked.last().unwrap();
    assert_eq!(waiting["previous_state"], "working");
    assert!(
        ["PermissionRequest", "Notification"].contains(&waiting["last_event"].as_str().unwrap()),
        "{waiting}"
    );
    let entry = until_state(&app, &id, "waiting_for_input").await;
    assert_eq!(entry["claude_session_id"], conversation);
    assert_eq!(entry["agent"], "coder");
    assert_eq!(entry["cwd"], app.dir("walk"));

    // `y`: the tool runs (working), the turn ends (idle).
    type_text(&app, &id, "y", true).await;
    let answered = until_activity(&mut socket, &id, state_is("idle")).await;
    let states: Vec<&str> = answered
        .iter()
        .filter_map(|d| d["state"].as_str())
        .collect();
    assert_eq!(states.first(), Some(&"working"), "{answered:#?}");
    assert_eq!(answered.last().unwrap()["last_event"], "Stop");
    until_state(&app, &id, "idle").await;

    // End of input (Ctrl-D on the terminal): SessionEnd.
    type_text(&app, &id, "\u{4}", false).await;
    let ended = until_activity(&mut socket, &id, state_is("ended")).await;
    assert_eq!(ended.last().unwrap()["last_event"], "SessionEnd");
}

/// `session-manager hook` with a payload from a Claude Code started by hand (no
/// `CLAUDE_SESSION_ID`; its `session_id` is its own): the server attributes it by `cwd`.
#[tokio::test]
async fn the_shim_reports_a_claude_code_started_by_hand() {
    let app = App::with_config(&config());
    let dir = app.dir("by-hand");
    let (status, created) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "by-hand", "working_directory": dir, "git_enabled": false,
                    "agents": []}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_owned();
    let theirs = uuid::Uuid::new_v4().to_string();
    let payload = json!({"hook_event_name": "UserPromptSubmit", "session_id": theirs,
                         "cwd": format!("{dir}/src"), "prompt": "hi",
                         "transcript_path": "/nowhere.jsonl"});
    let mut child = Command::new(env!("CARGO_BIN_EXE_session-manager"))
        .arg("hook")
        .env("SESSION_MANAGER_URL", app.url(""))
        .env("HOME", app.dir("home"))
        .env_remove("CLAUDE_SESSION_ID")
        .env_remove("SESSION_MANAGER_TOKEN")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entry = until_state(&app, &id, "working").await;
    assert_eq!(entry["claude_session_id"], theirs.as_str());
    assert!(entry["agent"].is_null());
}
