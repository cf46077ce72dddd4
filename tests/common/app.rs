//! The real `session-manager` binary, started on port 0 with a temporary data directory and
//! HOME, for tests that talk to it over HTTP. Killed when dropped; SIGTERM stops its agents.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// Generous: a cold debug binary on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENING_PREFIX: &str = "session-manager listening on http://";

/// A running server.
pub struct App {
    child: Child,
    /// `host:port` it listens on.
    pub address: String,
    /// Its data directory.
    pub data_dir: TempDir,
    /// A scratch directory for working directories.
    pub work: TempDir,
    _home: TempDir,
    /// Its `--config` file, if any, and its `SESSION_MANAGER_*` settings (for `restart`).
    config: Option<PathBuf>,
    envs: Vec<(String, String)>,
    /// A client without a timeout of its own.
    pub client: reqwest::Client,
}

impl App {
    /// Starts the binary with these `SESSION_MANAGER_*` settings.
    pub fn start(envs: &[(&str, &str)]) -> App {
        App::start_with(None, envs)
    }

    /// Starts the binary with `config` (TOML) as its `--config` file.
    pub fn with_config(config: &str) -> App {
        App::start_with(Some(config), &[])
    }

    fn start_with(config: Option<&str>, envs: &[(&str, &str)]) -> App {
        let home = TempDir::new().unwrap();
        let data_dir = TempDir::new().unwrap();
        let work = TempDir::new().unwrap();
        let config = config.map(|config| {
            let file = work.path().join("config.toml");
            std::fs::write(&file, config).unwrap();
            file
        });
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let (child, address) = spawn(home.path(), data_dir.path(), config.as_deref(), &envs, 0);
        App {
            address,
            child,
            data_dir,
            work,
            _home: home,
            config,
            envs,
            client: reqwest::Client::new(),
        }
    }

    /// SIGKILLs the server (no shutdown code runs) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the server (SIGTERM) if it still runs — after [`App::kill`] it does not — and
    /// starts it again on the same port, with the same data, HOME, configuration and
    /// environment: what a client sees when the server restarts.
    pub fn restart(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
        let port: u16 = self.address.rsplit(':').next().unwrap().parse().unwrap();
        let (child, address) = spawn(
            self._home.path(),
            self.data_dir.path(),
            self.config.as_deref(),
            &self.envs,
            port,
        );
        assert_eq!(address, self.address, "restarted on another address");
        self.child = child;
    }

    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// A path under the scratch directory, as a string.
    pub fn dir(&self, name: &str) -> String {
        self.work.path().join(name).to_string_lossy().into_owned()
    }

    /// GET → (status, body).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        answer(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// `GET path` as text (the Prometheus exposition of `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        response.text().await.unwrap()
    }

    /// DELETE → (status, body).
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        answer(self.client.delete(self.url(path)).send().await.unwrap()).await
    }

    /// POST with a JSON body → (status, body).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(
            self.client
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// PUT with a JSON body → (status, body).
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        answer(
            self.client
                .put(self.url(path))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POST with raw bytes and a content type → (status, body).
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body);
        answer(request.send().await.unwrap()).await
    }

    /// Whether it still answers `/health`.
    pub async fn healthy(&self) -> bool {
        self.get("/health").await.0 == 200
    }

    /// Sends `signal` to the server.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
    }

    /// Waits (at most `timeout`) for the server to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, then waits (bounded) for it to exit; the agents stop with it.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(20)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The data directory's path.
    pub fn data(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// Starts the binary on `port` (0: any) and waits for its `listening` line: (child, address).
fn spawn(
    home: &Path,
    data_dir: &Path,
    config: Option<&Path>,
    envs: &[(String, String)],
    port: u16,
) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-manager"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SESSION_MANAGER_") {
            command.env_remove(name);
        }
    }
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .env("HOME", home)
        .args(["--port", &port.to_string(), "--data-dir"])
        .arg(data_dir)
        .envs(envs.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(START_TIMEOUT).unwrap_or_default();
    let Some(address) = line
        .strip_prefix(LISTENING_PREFIX)
        .and_then(|rest| rest.strip_suffix('\n'))
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not announce itself: {line:?}");
    };
    (child, address.to_owned())
}

/// Status and JSON body; checks the envelope every JSON answer has.
pub async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(body["success"].is_boolean(), "no envelope: {body}");
    assert!(body["timestamp"].is_f64(), "no float timestamp: {body}");
    assert!(body.get("error").is_some(), "no error key: {body}");
    if body["success"] == true {
        assert!(body["error"].is_null(), "{body}");
        // The payload stands at the top level and under `data`, the same.
        let data = body["data"].as_object().expect("data object");
        for (key, value) in data {
            assert_eq!(&body[key], value, "`{key}` differs from data.{key}");
        }
    } else {
        assert!(body["error_code"].is_string(), "no error_code: {body}");
    }
    (status, body)
}
