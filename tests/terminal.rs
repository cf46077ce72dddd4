//! Agents on a pseudo-terminal, through the real binary: the WebSocket viewers
//! (`/ws/sessions/{id}/agents/{name}/terminal`), `…/input`, `…/screen`, `…/resize`, the
//! plain-text log, and the refusals (404, 409, 400).

mod common;

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use common::app::App;
use common::{alive, PATIENCE};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A program that acts like an interactive CLI on `sh` (there on any Linux): a title, a
/// banner, its size on SIGWINCH, an answer to every line, `crash` exits 3.
const SHELL_PROGRAM: &str = r#"printf '\033]2;echo-cli\007'
trap 'echo "size: $(stty size)"' WINCH
echo "ready: $(stty size)"
while true; do
  if read -r line; then
    [ "$line" = crash ] && exit 3
    printf '\033[1;32myou said:\033[0m %s\n' "$line"
  fi
done"#;

fn app() -> App {
    App::start(&[("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true")])
}

/// A session with `cli` on a terminal of 24 × 80 (restart: `restart`) and `piped` on pipes;
/// its id once `cli` is running.
async fn session(app: &App, restart: &str) -> String {
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({
                "name": "terminals",
                "working_directory": app.dir("work"),
                "create_if_missing": true,
                "agents": [
                    {
                        "agent_type": "backend",
                        "name": "cli",
                        "command": ["sh", "-c", SHELL_PROGRAM],
                        "terminal": {"rows": 24, "cols": 80},
                        "restart": restart,
                    },
                    {
                        "agent_type": "frontend",
                        "name": "piped",
                        "command": ["sh", "-c", "echo on a pipe; exec sleep 1000"],
                        "depends_on": [],
                    },
                ],
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    wait_for_screen(app, &id, "ready: 24 80").await;
    id
}

fn agent_path(id: &str, what: &str) -> String {
    format!("/api/claude/sessions/{id}/agents/cli/{what}")
}

async fn screen(app: &App, id: &str) -> Value {
    let (status, body) = app.get(&agent_path(id, "screen")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `…/screen` until a line contains `text`; the screen then.
async fn wait_for_screen(app: &App, id: &str, text: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = app.get(&agent_path(id, "screen")).await;
        if status == 200
            && body["lines"]
                .as_array()
                .is_some_and(|lines| lines.iter().any(|l| l.as_str().unwrap().contains(text)))
        {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} on the screen: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn viewer(app: &App, id: &str, agent: &str) -> Socket {
    let url = format!(
        "ws://{}/ws/sessions/{id}/agents/{agent}/terminal",
        app.address
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Reads binary frames until their text contains `wanted`; everything read.
async fn read_until(socket: &mut Socket, seen: &mut String, wanted: &str) {
    tokio::time::timeout(PATIENCE, async {
        while !seen.contains(wanted) {
            match socket.next().await {
                Some(Ok(Message::Binary(bytes))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected output, got {other:?} after {seen:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} from the terminal; it showed {seen:?}"));
}

#[tokio::test]
async fn two_viewers_see_the_same_output_and_either_can_type() {
    let app = app();
    let id = session(&app, "permanent").await;
    let (mut first, mut second) = (
        viewer(&app, &id, "cli").await,
        viewer(&app, &id, "cli").await,
    );
    let (mut seen_first, mut seen_second) = (String::new(), String::new());
    // The scrollback first: the banner printed before either attached.
    read_until(&mut first, &mut seen_first, "ready: 24 80").await;
    read_until(&mut second, &mut seen_second, "ready: 24 80").await;

    first
        .send(Message::binary(b"from one\r".to_vec()))
        .await
        .unwrap();
    read_until(&mut second, &mut seen_second, "you said:\x1b[0m from one").await;
    second.send(Message::text("from two\r")).await.unwrap();
    read_until(&mut first, &mut seen_first, "you said:\x1b[0m from two").await;
    read_until(&mut second, &mut seen_second, "you said:\x1b[0m from two").await;

    // A third, later viewer gets it all in its scrollback.
    let mut third = viewer(&app, &id, "cli").await;
    let mut seen_third = String::new();
    read_until(&mut third, &mut seen_third, "you said:\x1b[0m from two").await;
    assert!(seen_third.contains("from one"), "{seen_third:?}");

    // Detaching stops nothing.
    let (_, agents) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    let pid = agents["agents"][0]["pid"].as_u64().unwrap() as u32;
    for mut socket in [first, second, third] {
        socket.close(None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alive(pid));
    let (_, body) = app
        .post(
            &agent_path(&id, "input"),
            &json!({"text": "still here", "submit": true}),
        )
        .await;
    assert_eq!(body["bytes"], 11, "{body}");
    wait_for_screen(&app, &id, "you said: still here").await;
}

#[tokio::test]
async fn a_resize_reaches_the_program_the_screen_and_the_next_start() {
    let app = app();
    let id = session(&app, "permanent").await;
    let mut socket = viewer(&app, &id, "cli").await;
    socket
        .send(Message::text(
            r#"{"type": "resize", "rows": 30, "cols": 100}"#,
        ))
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "size: 30 100").await;
    let body = screen(&app, &id).await;
    assert_eq!(
        (body["rows"].as_u64(), body["cols"].as_u64()),
        (Some(30), Some(100))
    );
    assert_eq!(body["lines"].as_array().unwrap().len(), 30);

    let (status, body) = app
        .post(&agent_path(&id, "resize"), &json!({"rows": 20, "cols": 60}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["rows"].as_u64(), body["cols"].as_u64()),
        (Some(20), Some(60))
    );
    read_until(&mut socket, &mut seen, "size: 20 60").await;
    let (_, agents) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    assert_eq!(
        agents["agents"][0]["terminal"],
        json!({"rows": 20, "cols": 60})
    );
    assert_eq!(agents["agents"][1]["terminal"], Value::Null, "on pipes");

    // A crash: the next incarnation starts at the size the terminal has now.
    app.post(
        &agent_path(&id, "input"),
        &json!({"text": "crash", "submit": true}),
    )
    .await;
    read_until(&mut socket, &mut seen, "ready: 20 60").await;
}

#[tokio::test]
async fn scripts_type_and_read_the_screen() {
    let app = app();
    let id = session(&app, "permanent").await;
    let (status, body) = app
        .post(
            &agent_path(&id, "input"),
            &json!({"text": "héllo", "submit": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["agent_name"].as_str(), body["bytes"].as_u64()),
        (Some("cli"), Some(7))
    );
    let body = wait_for_screen(&app, &id, "you said: héllo").await;
    assert_eq!(body["title"], "echo-cli");
    assert_eq!(body["running"], true);
    let lines: Vec<&str> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    // Row 0 is the banner, row 1 the echo of what was typed, row 2 the answer.
    assert_eq!(&lines[..3], ["ready: 24 80", "héllo", "you said: héllo"]);
    assert_eq!(body["cursor"], json!({"row": 3, "col": 0}));

    // Without submit nothing is entered yet.
    app.post(&agent_path(&id, "input"), &json!({"text": "half"}))
        .await;
    let body = wait_for_screen(&app, &id, "half").await;
    assert!(
        !body["lines"].to_string().contains("you said: half"),
        "{body}"
    );

    // The log has the output as plain text: no escape sequence, one line per newline.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = app.get(&agent_path(&id, "logs")).await;
        let lines: Vec<String> = body["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["line"].as_str().unwrap().to_owned())
            .collect();
        if lines.iter().any(|l| l == "you said: héllo") {
            assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");
            assert!(lines.iter().any(|l| l == "ready: 24 80"), "{lines:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{lines:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn what_has_no_terminal_or_no_process_is_refused_clearly() {
    let app = app();
    let id = session(&app, "temporary").await;
    let piped = format!("/api/claude/sessions/{id}/agents/piped");
    for (path, body) in [
        (format!("{piped}/input"), Some(json!({"text": "x"}))),
        (
            format!("{piped}/resize"),
            Some(json!({"rows": 10, "cols": 10})),
        ),
        (format!("{piped}/screen"), None),
    ] {
        let (status, answer) = match body {
            Some(body) => app.post(&path, &body).await,
            None => app.get(&path).await,
        };
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (409, Some("no_terminal")),
            "{path}: {answer}"
        );
    }
    let (status, answer) = app
        .get(&format!("/api/claude/sessions/{id}/agents/nobody/screen"))
        .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (404, Some("agent_not_found")),
        "{answer}"
    );

    for (body, field) in [
        (json!({"rows": 0, "cols": 80}), "rows"),
        (json!({"rows": 24, "cols": 1001}), "cols"),
        (json!({"rows": 24}), "cols"),
        (json!({"rows": 24, "cols": 80, "depth": 1}), "depth"),
    ] {
        let (status, answer) = app.post(&agent_path(&id, "resize"), &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(field),
            "{body}: {answer}"
        );
    }
    let (status, answer) = app
        .post(&agent_path(&id, "input"), &json!({"submit": true}))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("text"),
        "{answer}"
    );

    // The WebSocket is refused before the upgrade, with the same answers.
    let url = format!(
        "ws://{}/ws/sessions/{id}/agents/piped/terminal",
        app.address
    );
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 409)
        }
        other => panic!("a terminal-less agent was attached: {other:?}"),
    }

    // A temporary agent that crashed stays down: its screen stays, its input is refused.
    app.post(
        &agent_path(&id, "input"),
        &json!({"text": "crash", "submit": true}),
    )
    .await;
    let deadline = Instant::now() + PATIENCE;
    while screen(&app, &id).await["running"] == true {
        assert!(Instant::now() < deadline, "the crashed program still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let body = screen(&app, &id).await;
    assert!(
        body["lines"][0].as_str().unwrap().starts_with("ready"),
        "{body}"
    );
    let (status, answer) = app
        .post(&agent_path(&id, "input"), &json!({"text": "x"}))
        .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (409, Some("agent_not_running")),
        "{answer}"
    );
}

#[tokio::test]
async fn input_a_program_never_reads_is_refused_after_the_deadline() {
    let app = app();
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({
                "name": "deaf",
                "working_directory": app.dir("deaf"),
                "create_if_missing": true,
                // Raw mode: typed bytes wait in the terminal's 4 KiB buffer, never discarded.
                "agents": [{"agent_type": "backend", "name": "cli", "terminal": true,
                            "command": ["sh", "-c", "stty raw -echo; echo deaf; exec sleep 1000"]}],
            }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    wait_for_screen(&app, &id, "deaf").await;
    let (status, answer) = app
        .post(
            &agent_path(&id, "input"),
            &json!({"text": "x".repeat(64 * 1024)}),
        )
        .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (409, Some("input_not_read")),
        "{answer}"
    );
    // The server is fine meanwhile, and so is the agent.
    assert_eq!(screen(&app, &id).await["running"], true);
}

#[tokio::test]
async fn a_terminal_needs_a_valid_size_and_a_process() {
    let app = app();
    for (agent, field) in [
        (
            json!({"agent_type": "backend", "command": ["cat"], "terminal": {"rows": 0}}),
            "terminal.rows",
        ),
        (
            json!({"agent_type": "backend", "command": ["cat"], "terminal": {"cols": 5000}}),
            "terminal.cols",
        ),
        (
            json!({"agent_type": "backend", "command": ["cat"], "terminal": "yes"}),
            "terminal",
        ),
        (
            json!({"agent_type": "backend", "terminal": true}),
            "terminal",
        ),
    ] {
        let (status, body) = app
            .post(
                "/api/claude/sessions",
                &json!({
                    "name": "bad terminal",
                    "working_directory": app.dir("w"),
                    "create_if_missing": true,
                    "agents": [agent],
                }),
            )
            .await;
        assert!(status == 400 || status == 422, "{agent}: {status} {body}");
        assert!(
            body["error"].as_str().unwrap().contains(field),
            "{agent}: {body}"
        );
    }
}

#[tokio::test]
async fn viewers_are_closed_when_the_session_ends() {
    let app = app();
    let id = session(&app, "permanent").await;
    let mut socket = viewer(&app, &id, "cli").await;
    let mut seen = String::new();
    read_until(&mut socket, &mut seen, "ready").await;
    let (status, _) = app.delete(&format!("/api/claude/sessions/{id}")).await;
    assert_eq!(status, 200);
    let close = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the viewer was not closed");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));
}
