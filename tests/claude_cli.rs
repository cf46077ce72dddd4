//! The real Claude Code CLI against the real server, offline: `scripts/claude_cli.sh`
//! installs it from npm and runs these (never plain `cargo test`: they are ignored).
//!
//! `session-manager hooks install` writes a project's settings; `claude -p "hello"
//! --session-id <uuid> --settings <that file>` started by hand in the project, with a dummy
//! key and an API address that refuses connections (so it fails at once instead of retrying
//! for minutes), posts its hooks — SessionStart through the `session-manager hook` shim,
//! UserPromptSubmit, StopFailure and SessionEnd as `http` hooks — and, with telemetry on,
//! exports OTLP to the server. The test checks the Claude session was attributed to the
//! session working there (by `cwd`), that its state moved (working, then failed, then
//! ended) in the event log, and that the server took every OTLP export (a recording relay
//! between the CLI and the server sees each answer).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use common::app::App;
use common::PATIENCE;

/// The real CLI: `$CLAUDE_CLI`, as `scripts/claude_cli.sh` installs it from npm.
fn real_cli() -> String {
    let cli = std::env::var("CLAUDE_CLI").unwrap_or_default();
    assert!(
        !cli.is_empty() && Path::new(&cli).is_file(),
        "the real Claude Code CLI is needed: run scripts/claude_cli.sh (npm install of \
         @anthropic-ai/claude-code under target/claude-cli; apt-get install -y nodejs npm), \
         or set CLAUDE_CLI to a `claude` executable"
    );
    cli
}

/// Lines the relay noted, shared with its threads.
type Lines = Arc<Mutex<Vec<String>>>;

/// Lines of `chunk` starting with `prefix`.
fn lines_starting(chunk: &[u8], prefix: &str) -> Vec<String> {
    String::from_utf8_lossy(chunk)
        .split("\r\n")
        .filter(|line| line.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Copies `from` to `to`, noting lines that start with `prefix`.
fn pump(mut from: TcpStream, mut to: TcpStream, prefix: &'static str, seen: Lines) {
    let mut buffer = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buffer) {
        if n == 0 || to.write_all(&buffer[..n]).is_err() {
            break;
        }
        seen.lock()
            .unwrap()
            .extend(lines_starting(&buffer[..n], prefix));
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A TCP relay to `server` on a port of its own, recording what passes (the OTLP exports
/// reach the real server unchanged; the relay only watches).
fn relay(server: &str) -> (String, Lines, Lines) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = server.to_owned();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let (req, ans) = (requests.clone(), answers.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(&server) else {
                continue;
            };
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let (req, ans) = (req.clone(), ans.clone());
            std::thread::spawn(move || pump(client, upstream, "POST ", req));
            std::thread::spawn(move || pump(u2, c2, "HTTP/1.1 ", ans));
        }
    });
    (format!("http://{address}"), requests, answers)
}

/// A session working in `project`, the hooks installed there by `session-manager hooks
/// install`, and the real CLI run by hand in it (`-p "hello"`), its OTLP exports sent to
/// `otlp`. Returns our session's id and the Claude session id the CLI was given.
async fn run_by_hand(app: &App, project: &str, otlp: &str) -> (String, String) {
    let cli = real_cli();
    let (status, created) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "by-hand", "working_directory": project, "git_enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_owned();

    let installed = Command::new(env!("CARGO_BIN_EXE_session-manager"))
        .args(["hooks", "install", project])
        .env("SESSION_MANAGER_URL", app.url(""))
        .env("HOME", app.dir("home"))
        .output()
        .unwrap();
    assert!(installed.status.success(), "{installed:?}");
    let settings = Path::new(project).join(".claude/settings.local.json");

    let conversation = uuid::Uuid::new_v4().to_string();
    let ran = Command::new(&cli)
        .args(["-p", "hello", "--session-id", &conversation, "--settings"])
        .arg(&settings)
        .current_dir(project)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", app.dir("home"))
        .env("ANTHROPIC_API_KEY", "sk-ant-offline-test")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:1")
        .env("CLAUDE_CODE_MAX_RETRIES", "0")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("CLAUDE_CODE_ENABLE_TELEMETRY", "1")
        .env("OTEL_METRICS_EXPORTER", "otlp")
        .env("OTEL_LOGS_EXPORTER", "otlp")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .output()
        .unwrap();
    assert!(
        !ran.status.success(),
        "offline, the CLI fails: {}",
        String::from_utf8_lossy(&ran.stdout)
    );
    (id, conversation)
}

#[tokio::test]
#[ignore = "needs the real Claude Code CLI: scripts/claude_cli.sh"]
async fn real_claude_code_posts_the_hooks_install_wrote_and_its_state_moves() {
    let app = App::with_config("");
    let project = app.dir("project");
    let (id, conversation) = run_by_hand(&app, &project, &app.url("")).await;

    // Attributed by its cwd, and ended.
    let deadline = Instant::now() + PATIENCE;
    let entry = loop {
        let (_, body) = app.get(&format!("/api/claude/sessions/{id}")).await;
        let entry = body["session"]["claude_sessions"][0].clone();
        if entry["state"] == "ended" {
            break entry;
        }
        assert!(Instant::now() < deadline, "never ended: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(entry["claude_session_id"], conversation.as_str());
    assert_eq!(entry["cwd"], project.as_str());

    // The states it went through, in order, from the event log: SessionStart came through
    // the shim (a command hook), the others as http hooks.
    let (_, log) = app
        .get(&format!("/api/claude/events?session_id={id}&limit=1000"))
        .await;
    let moves: Vec<String> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "claude_activity")
        .map(|event| format!("{} {}", event["data"]["last_event"], event["data"]["state"]))
        .collect();
    assert_eq!(
        moves,
        [
            r#""SessionStart" "idle""#,
            r#""UserPromptSubmit" "working""#,
            r#""StopFailure" "failed""#,
            r#""SessionEnd" "ended""#,
        ],
        "{log}"
    );
}

/// Needs the OTLP receiver (`POST /v1/metrics`, `/v1/logs`).
#[tokio::test]
#[ignore = "needs the real Claude Code CLI: scripts/claude_cli.sh"]
async fn real_claude_code_exports_otlp_the_server_takes() {
    let app = App::with_config("");
    let project = app.dir("project");
    let address = app.url("").trim_start_matches("http://").to_owned();
    let (otlp, requests, answers) = relay(&address);
    run_by_hand(&app, &project, &otlp).await;

    // Every OTLP export it made reached the server and was taken.
    let requests = requests.lock().unwrap().clone();
    let answers = answers.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|line| line.starts_with("POST /v1/metrics")),
        "{requests:?}"
    );
    assert_eq!(answers.len(), requests.len(), "{requests:?} {answers:?}");
    assert!(
        answers.iter().all(|line| line.starts_with("HTTP/1.1 200")),
        "{requests:?} {answers:?}"
    );
}
