//! End-to-end tests of the real `session-manager` binary: start-up, the HTTP envelope,
//! configuration errors, logging and graceful shutdown.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// Generous: a cold debug binary on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
const LISTENING_PREFIX: &str = "session-manager listening on http://";

/// The real binary with a clean environment: its own HOME and no `SESSION_MANAGER_*`
/// variable from whoever runs the tests.
fn command(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-manager"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SESSION_MANAGER_") {
            command.env_remove(name);
        }
    }
    command.env("HOME", home);
    command
}

/// Kills the child when dropped, so a failing test never leaves a server behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Polls until the child exits; panics (and the guard kills it) after `timeout`.
fn wait_for_exit(child: &mut KillOnDrop, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "the process did not exit within {timeout:?}"
        );
        thread::sleep(POLL_INTERVAL);
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        let _ = sender.send(text);
    });
    receiver
}

/// What a run that is expected to end by itself produced.
struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` and `envs` until it exits on its own (bounded).
fn run_to_exit(args: &[&str], envs: &[(&str, &str)]) -> Finished {
    let home = TempDir::new().unwrap();
    let data_dir = TempDir::new().unwrap();
    let mut command = command(home.path());
    command
        .args(args)
        .env("SESSION_MANAGER_STORAGE__DATA_DIR", data_dir.path())
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().unwrap());
    let stdout = read_in_background(child.0.stdout.take().unwrap());
    let stderr = read_in_background(child.0.stderr.take().unwrap());
    let status = wait_for_exit(&mut child, EXIT_TIMEOUT);
    Finished {
        status,
        stdout: stdout.recv_timeout(EXIT_TIMEOUT).unwrap(),
        stderr: stderr.recv_timeout(EXIT_TIMEOUT).unwrap(),
    }
}

/// Asserts a configuration error: exit status 2 and `error: …` naming `needle` on stderr.
fn assert_config_error(finished: &Finished, needle: &str) {
    assert_refused(finished, 2, needle);
    // Refused before logging starts: the message is all there is.
    assert!(
        finished.stderr.starts_with("error: "),
        "stderr: {}",
        finished.stderr
    );
}

/// Asserts start-up was refused: exit status `code`, `error: …` containing `needle` on
/// stderr, and nothing announced on stdout.
fn assert_refused(finished: &Finished, code: i32, needle: &str) {
    assert_eq!(
        finished.status.code(),
        Some(code),
        "stderr: {}",
        finished.stderr
    );
    assert!(
        finished
            .stderr
            .lines()
            .any(|line| line.starts_with("error: ") && line.contains(needle)),
        "no `error: …{needle}…` line on stderr: {}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "stdout: {}", finished.stdout);
}

/// A server started on port 0 with a temporary data directory and HOME.
struct TestApp {
    child: KillOnDrop,
    address: String,
    data_dir: TempDir,
    _home: TempDir,
    client: reqwest::Client,
}

fn spawn_app() -> TestApp {
    spawn_app_with(&[], &[])
}

/// `args` come first, so they may start with a subcommand.
fn spawn_app_with(args: &[&str], envs: &[(&str, &str)]) -> TestApp {
    let home = TempDir::new().unwrap();
    let data_dir = TempDir::new().unwrap();
    let mut command = command(home.path());
    command
        .args(args)
        .args(["--port", "0", "--data-dir"])
        .arg(data_dir.path())
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = KillOnDrop(command.spawn().unwrap());

    let stdout = child.0.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(START_TIMEOUT)
        .expect("the server did not print its listening line in time");
    let address = line
        .strip_prefix(LISTENING_PREFIX)
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected first line on stdout: {line:?}"))
        .to_owned();

    TestApp {
        child,
        address,
        data_dir,
        _home: home,
        client: reqwest::Client::new(),
    }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM)
    }

    fn signal(&mut self, signal: Signal) -> ExitStatus {
        let pid = Pid::from_raw(i32::try_from(self.child.0.id()).unwrap());
        kill(pid, signal).unwrap();
        wait_for_exit(&mut self.child, EXIT_TIMEOUT)
    }

    fn log_file(&self) -> String {
        let path = self.data_dir.path().join("logs/session_manager.log");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
    }
}

/// Checks the keys every envelope has, and the content type, and returns the body.
async fn envelope(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = response.json().await.unwrap();
    assert!(body["success"].is_boolean(), "{body}");
    let timestamp = body["timestamp"].as_f64().unwrap();
    assert!(body["timestamp"].is_f64(), "{body}");
    assert!(timestamp > 1.6e9, "{body}");
    assert!(body.get("error").is_some(), "{body}");
    body
}

async fn assert_error_envelope(response: reqwest::Response, status: u16, code: &str) -> Value {
    let body = envelope(response, status).await;
    assert_eq!(body["success"], false, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    body
}

#[tokio::test]
async fn health_answers_with_the_envelope() {
    let app = spawn_app();
    let body = envelope(app.get("/health").await, 200).await;

    assert_eq!(body["success"], true);
    assert!(body["error"].is_null());
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_seconds"].is_f64(), "{body}");
    assert!(body["uptime_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(body["services"]["api"], "running");
    assert_eq!(body["services"]["storage"], "running");

    let data = body["data"].as_object().unwrap();
    let mut keys: Vec<&str> = data.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "problems",
            "services",
            "status",
            "uptime_seconds",
            "version"
        ]
    );
    assert_eq!(body["problems"], serde_json::json!([]), "{body}");
    for part in ["event_log", "monitor"] {
        assert_eq!(body["services"][part], "running", "{body}");
    }
    for (key, value) in data {
        assert_eq!(
            &body[key], value,
            "top-level `{key}` differs from data.{key}"
        );
    }
}

#[tokio::test]
async fn serve_subcommand_takes_the_same_flags() {
    let app = spawn_app_with(&["serve"], &[]);
    let body = envelope(app.get("/health").await, 200).await;
    assert_eq!(body["status"], "healthy");
}

#[tokio::test]
async fn unknown_route_gets_a_404_envelope() {
    let app = spawn_app();
    for path in ["/nope", "/api/claude/nothing-here", "/health/extra"] {
        let body = assert_error_envelope(app.get(path).await, 404, "not_found").await;
        assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    }
    let response = app
        .client
        .post(app.url("/api/claude/nope"))
        .send()
        .await
        .unwrap();
    assert_error_envelope(response, 404, "not_found").await;
}

#[tokio::test]
async fn wrong_method_on_a_known_path_gets_a_405_envelope() {
    let app = spawn_app();
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::PATCH,
        reqwest::Method::OPTIONS,
    ] {
        let response = app
            .client
            .request(method, app.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some("GET, HEAD"),
            "a 405 names the allowed methods"
        );
        assert_error_envelope(response, 405, "method_not_allowed").await;
    }
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let app = spawn_app();
    let response = app.client.head(app.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "application/json"
    );
    assert!(response.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn sigterm_stops_the_server_with_status_0() {
    let mut app = spawn_app();
    envelope(app.get("/health").await, 200).await;
    let status = app.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[tokio::test]
async fn sigint_stops_the_server_with_status_0() {
    let mut app = spawn_app();
    envelope(app.get("/health").await, 200).await;
    assert_eq!(app.signal(Signal::SIGINT).code(), Some(0));
}

#[tokio::test]
async fn the_database_is_created_under_the_data_dir_and_closed_cleanly() {
    let mut app = spawn_app();
    let db = app.data_dir.path().join("sessions/session_manager.db");
    assert!(db.is_file(), "{} missing", db.display());
    assert_eq!(app.terminate().code(), Some(0));

    // Closed with a checkpoint: nothing left in the write-ahead log.
    let wal = db.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{} still holds data",
        wal.display()
    );
    let storage = session_manager::storage::Storage::open(&db).await.unwrap();
    assert_eq!(
        storage.schema_version().await.unwrap(),
        session_manager::storage::SCHEMA_VERSION
    );
    storage.integrity_check().await.unwrap();
    storage.close().await.unwrap();
}

#[test]
fn a_database_that_cannot_be_opened_stops_start_up() {
    // `sessions` is a file, so the database directory cannot be created.
    let data_dir = TempDir::new().unwrap();
    std::fs::write(data_dir.path().join("sessions"), "not a directory").unwrap();
    let data_dir_arg = data_dir.path().to_str().unwrap();
    let finished = run_to_exit(&["--port", "0", "--data-dir", data_dir_arg], &[]);
    assert_refused(&finished, 1, "cannot open the database");
}

#[tokio::test]
async fn log_file_is_written_under_the_data_dir() {
    let mut app = spawn_app();
    envelope(app.get("/health").await, 200).await;
    assert_eq!(app.terminate().code(), Some(0));
    let log = app.log_file();
    assert!(log.contains("listening"), "log file: {log}");
    assert!(log.contains("received SIGTERM"), "log file: {log}");
}

#[tokio::test]
async fn the_log_file_is_rotated_by_size_and_old_files_are_dropped() {
    let mut app = spawn_app_with(
        &["--log-level", "debug"],
        &[
            ("SESSION_MANAGER_LOGS__MAX_FILE_BYTES", "2000"),
            ("SESSION_MANAGER_LOGS__KEEP_FILES", "2"),
        ],
    );
    // Every request writes a debug line of a hundred bytes or more.
    for _ in 0..100 {
        envelope(app.get("/health").await, 200).await;
    }
    assert_eq!(app.terminate().code(), Some(0));
    let logs = app.data_dir.path().join("logs");
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "session_manager.log",
            "session_manager.log.1",
            "session_manager.log.2"
        ],
        "rotated files, at most keep_files of them"
    );
    for name in &names[1..] {
        let size = std::fs::metadata(logs.join(name)).unwrap().len();
        assert!(size <= 2000, "{name} grew to {size} bytes before rotating");
        assert!(size > 1000, "{name} was rotated early, at {size} bytes");
    }
}

#[tokio::test]
async fn logging_goes_on_when_rotated_files_are_deleted_by_hand() {
    let mut app = spawn_app_with(
        &["--log-level", "debug"],
        &[
            ("SESSION_MANAGER_LOGS__MAX_FILE_BYTES", "2000"),
            ("SESSION_MANAGER_LOGS__KEEP_FILES", "3"),
        ],
    );
    let logs = app.data_dir.path().join("logs");
    let rotated = logs.join("session_manager.log.1");
    for _ in 0..60 {
        envelope(app.get("/health").await, 200).await;
    }
    assert!(rotated.exists(), "no rotation yet");
    for n in 1..=3 {
        let _ = std::fs::remove_file(logs.join(format!("session_manager.log.{n}")));
    }
    for _ in 0..60 {
        envelope(app.get("/health").await, 200).await;
    }
    assert_error_envelope(app.get("/after-the-deletion").await, 404, "not_found").await;
    assert_eq!(app.terminate().code(), Some(0));
    let mut all = String::new();
    for entry in std::fs::read_dir(&logs).unwrap() {
        all.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(all.contains("/after-the-deletion"), "file logging stopped");
}

#[tokio::test]
async fn environment_overrides_apply() {
    let app = spawn_app_with(
        &[],
        &[
            ("SESSION_MANAGER_SERVER__MAX_BODY_BYTES", "16"),
            // Not a setting: agents receive it, the server must not trip over it.
            ("SESSION_MANAGER_URL", "http://127.0.0.1:1"),
        ],
    );
    let response = app
        .client
        .post(app.url("/health"))
        .header("content-type", "application/json")
        .body(format!("{{\"padding\": \"{}\"}}", "x".repeat(64)))
        .send()
        .await
        .unwrap();
    let body = assert_error_envelope(response, 413, "payload_too_large").await;
    assert_eq!(body["details"]["limit_bytes"], 16);
}

#[tokio::test]
async fn log_level_comes_from_the_environment_and_the_flag_wins() {
    let mut from_env = spawn_app_with(&[], &[("SESSION_MANAGER_LOGS__LEVEL", "debug")]);
    envelope(from_env.get("/health").await, 200).await;
    assert_eq!(from_env.terminate().code(), Some(0));
    let log = from_env.log_file();
    assert!(log.contains("DEBUG"), "log file: {log}");

    let mut flag_wins = spawn_app_with(
        &["--log-level", "warn"],
        &[("SESSION_MANAGER_LOGS__LEVEL", "debug")],
    );
    envelope(flag_wins.get("/health").await, 200).await;
    assert_eq!(flag_wins.terminate().code(), Some(0));
    let log = flag_wins.log_file();
    assert!(
        !log.contains("DEBUG") && !log.contains("INFO"),
        "log file: {log}"
    );
}

#[test]
fn unknown_key_in_config_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[monitor.thresholds]\ncpu_prot = 5\n").unwrap();
    let finished = run_to_exit(&["--port", "0", "--config", file.to_str().unwrap()], &[]);
    assert_config_error(&finished, "monitor.thresholds.cpu_prot");
}

#[test]
fn bad_value_in_environment_is_refused() {
    let finished = run_to_exit(&[], &[("SESSION_MANAGER_SERVER__PORT", "notaport")]);
    assert_config_error(&finished, "server.port");
    assert!(finished.stderr.contains("SESSION_MANAGER_SERVER__PORT"));
}

#[test]
fn out_of_range_value_is_refused() {
    let finished = run_to_exit(
        &["--port", "0"],
        &[("SESSION_MANAGER_MONITOR__THRESHOLDS__CPU_PERCENT", "150")],
    );
    assert_config_error(&finished, "monitor.thresholds.cpu_percent");
}

#[test]
fn missing_config_file_is_refused() {
    let finished = run_to_exit(&["--port", "0", "--config", "/nonexistent/sm.toml"], &[]);
    assert_config_error(&finished, "/nonexistent/sm.toml");
}

#[test]
fn non_loopback_bind_without_token_is_refused() {
    let finished = run_to_exit(&["--bind", "0.0.0.0", "--port", "0"], &[]);
    assert_config_error(&finished, "server.token");
}

#[test]
fn version_is_printed() {
    let finished = run_to_exit(&["--version"], &[]);
    assert!(finished.status.success());
    assert_eq!(
        finished.stdout.trim(),
        format!("session-manager {}", env!("CARGO_PKG_VERSION"))
    );
}
