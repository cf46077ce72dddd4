//! `session-manager attach`: the real binary run on a pseudo-terminal this test opens (as a
//! user's terminal emulator would), against the real server with an agent on a terminal
//! (`cat`, which the agent's terminal echoes and then prints again). What is typed reaches
//! the agent and its output comes back, the outer terminal's size becomes the agent's (at
//! start and on a resize, through SIGWINCH), `Ctrl-]` detaches with exit 0 while the agent
//! keeps running, and the outer terminal's mode is put back. Refusals (no terminal, no such
//! agent, no token, an ambiguous name, stdin not a terminal) and the server closing the
//! terminal are errors that say so, with a non-zero exit.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::app::App;
use common::PATIENCE;

const TOKEN: &str = "attach-test-token";

/// A pseudo-terminal pair of `rows` × `cols`: (master, slave). The master is not inherited
/// by children.
fn openpty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors it opened, which we then own.
    let (master, slave) = unsafe {
        let rc = libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        );
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave))
    };
    // SAFETY: plain fcntl on a descriptor we own.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    (master, slave)
}

/// The outer terminal's local flags (ICANON, ECHO, …) as its master sees them.
fn local_flags(master: &OwnedFd) -> libc::tcflag_t {
    // SAFETY: tcgetattr fills the zeroed struct we pass.
    unsafe {
        let mut termios: libc::termios = std::mem::zeroed();
        assert_eq!(libc::tcgetattr(master.as_raw_fd(), &mut termios), 0);
        termios.c_lflag
    }
}

/// `session-manager attach …` running on a pseudo-terminal, its output collected.
struct Attached {
    child: Child,
    master: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Attached {
    /// Runs `attach args…` against `app` on a fresh 24 × 80 terminal, as the session leader
    /// with that terminal as its controlling one (so a resize sends it SIGWINCH).
    fn start(app: &App, args: &[&str], token: Option<&str>) -> Attached {
        let (master, slave) = openpty(24, 80);
        let mut command = attach_command(app, args, token);
        command
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        // The slave's copies went to the child with `command`, dropped here: the master
        // reads EIO once the child is gone.
        drop(command);
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = File::from(master.try_clone().unwrap());
        let sink = output.clone();
        thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        Attached {
            child,
            master,
            output,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `bytes` on the outer terminal.
    fn type_bytes(&self, bytes: &[u8]) {
        File::from(self.master.try_clone().unwrap())
            .write_all(bytes)
            .unwrap();
    }

    /// Waits until the output holds `needle` at least `count` times.
    fn wait_output(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.text().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {count} × {needle:?} in:\n{}",
                self.text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resizes the outer terminal (the kernel sends SIGWINCH to its foreground group).
    fn resize(&self, rows: u16, cols: u16) {
        let size = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads the struct we pass.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits (bounded) for the command to exit: its status and everything it printed.
    fn wait_exit(mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // What it printed last may still be in the pty.
                thread::sleep(Duration::from_millis(100));
                return (status, self.text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("attach did not exit; it printed:\n{}", self.text());
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn attach_command(app: &App, args: &[&str], token: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_session-manager"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SESSION_MANAGER_") {
            command.env_remove(name);
        }
    }
    command
        .arg("attach")
        .args(args)
        .env("SESSION_MANAGER_URL", app.url(""))
        .env("HOME", app.work.path())
        .current_dir(app.work.path());
    if let Some(token) = token {
        command.env("SESSION_MANAGER_SERVER__TOKEN", token);
    }
    command
}

/// A request with the token, when the server has one → (status, body).
async fn call(app: &App, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app
        .client
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    common::app::answer(request.send().await.unwrap()).await
}

/// Creates a session `name` with `shell` (`cat` on a 30 × 100 terminal) and `plain` (a
/// process without one), both running: its id.
async fn session_with_a_terminal(app: &App, name: &str) -> String {
    let (status, body) = call(
        app,
        "POST",
        "/api/claude/sessions",
        Some(json!({
            "name": name,
            "working_directory": app.dir(name),
            "create_if_missing": true,
            "agents": [
                {"agent_type": "documentation", "name": "shell", "command": ["cat"],
                 "terminal": {"rows": 30, "cols": 100}},
                {"agent_type": "quality", "name": "plain", "command": ["sh", "-c", "exec sleep 1000"]},
            ],
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    until(
        app,
        &format!("/api/claude/sessions/{id}"),
        "both agents running",
        |b| {
            b["session"]["agents"]
                .as_array()
                .is_some_and(|agents| agents.iter().all(|a| a["status"] == "running"))
        },
    )
    .await;
    id
}

/// Polls `GET path` until `check` holds on its body; returns that body.
async fn until(app: &App, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = call(app, "GET", path, None).await;
        if status == 200 && check(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn agent<'a>(session: &'a Value, name: &str) -> &'a Value {
    session["session"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()
}

async fn screen_size(app: &App, id: &str, rows: u64, cols: u64) -> Value {
    until(
        app,
        &format!("/api/claude/sessions/{id}/agents/shell/screen"),
        &format!("the agent's screen at {rows} × {cols}"),
        |screen| screen["rows"] == rows && screen["cols"] == cols,
    )
    .await
}

#[tokio::test]
async fn attach_by_name_echoes_follows_resizes_and_detaches_leaving_the_agent_running() {
    let app = App::start(&[
        ("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true"),
        ("SESSION_MANAGER_SERVER__TOKEN", TOKEN),
    ]);
    let id = session_with_a_terminal(&app, "attach-work").await;
    let before = call(&app, "GET", &format!("/api/claude/sessions/{id}"), None).await;
    let pid = agent(&before.1, "shell")["pid"].as_u64().unwrap();
    // What a fresh terminal's mode is, to compare with after the detach.
    let (fresh, _slave) = openpty(1, 1);
    let cooked = local_flags(&fresh);
    assert_ne!(cooked & libc::ICANON, 0);

    let attached = Attached::start(&app, &["attach-work", "shell"], Some(TOKEN));
    // Its size is sent once it is attached and raw: the agent's 30 × 100 becomes 24 × 80.
    screen_size(&app, &id, 24, 80).await;
    let raw = local_flags(&attached.master);
    assert_eq!(
        raw & (libc::ICANON | libc::ECHO),
        0,
        "the outer terminal is raw"
    );
    assert!(
        attached.text().contains("Ctrl-] detaches"),
        "{}",
        attached.text()
    );

    attached.type_bytes(b"hello-from-attach\r");
    // The agent's terminal echoes the line, then cat prints it.
    attached.wait_output("hello-from-attach", 2);
    let screen = screen_size(&app, &id, 24, 80).await;
    let lines = screen["lines"].as_array().unwrap();
    assert!(
        lines.iter().filter(|l| *l == "hello-from-attach").count() >= 2,
        "{screen}"
    );

    attached.resize(33, 101);
    screen_size(&app, &id, 33, 101).await;

    attached.type_bytes(&[0x1d]);
    let master = attached.master.try_clone().unwrap();
    let (status, output) = attached.wait_exit();
    assert!(status.success(), "{status}: {output}");
    assert!(
        output.contains("detached from shell (the agent keeps running)"),
        "{output}"
    );
    assert_eq!(
        local_flags(&master) & (libc::ICANON | libc::ECHO),
        cooked & (libc::ICANON | libc::ECHO),
        "the outer terminal's mode is put back"
    );
    let after = call(&app, "GET", &format!("/api/claude/sessions/{id}"), None).await;
    let shell = agent(&after.1, "shell");
    assert_eq!(shell["status"], "running", "{shell}");
    assert_eq!(
        shell["pid"].as_u64(),
        Some(pid),
        "the same process: {shell}"
    );

    // Attached again, by id: the scrollback shows what happened before, with no new output.
    let again = Attached::start(&app, &[id.as_str(), "shell"], Some(TOKEN));
    again.wait_output("hello-from-attach", 2);
    again.type_bytes(&[0x1d]);
    let (status, output) = again.wait_exit();
    assert!(status.success(), "{status}: {output}");
}

#[tokio::test]
async fn attach_refuses_what_it_cannot_attach_to_saying_why() {
    let app = App::start(&[
        ("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true"),
        ("SESSION_MANAGER_SERVER__TOKEN", TOKEN),
    ]);
    let id = session_with_a_terminal(&app, "twice").await;
    let other = session_with_a_terminal(&app, "twice").await;

    let refusal = |args: &[&str], token: Option<&str>| {
        let (status, output) = Attached::start(&app, args, token).wait_exit();
        assert!(!status.success(), "{args:?} succeeded: {output}");
        output
    };
    let output = refusal(&[id.as_str(), "plain"], Some(TOKEN));
    assert!(
        output.contains("(409)") && output.contains("to attach to plain"),
        "{output}"
    );
    let output = refusal(&[id.as_str(), "nobody"], Some(TOKEN));
    assert!(output.contains("(404)"), "{output}");
    let output = refusal(&[id.as_str(), "shell"], None);
    assert!(
        output.contains("(401)") && output.contains("SESSION_MANAGER_SERVER__TOKEN"),
        "{output}"
    );
    let output = refusal(&["twice", "shell"], Some(TOKEN));
    assert!(
        output.contains("2 sessions are named \"twice\"")
            && output.contains(&id)
            && output.contains(&other),
        "{output}"
    );
    let output = refusal(&["nameless", "shell"], Some(TOKEN));
    assert!(output.contains("no session is named"), "{output}");

    // Without a terminal on stdin it refuses before asking the server anything.
    let piped = attach_command(&app, &[id.as_str(), "shell"], Some(TOKEN))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!piped.status.success(), "{stderr}");
    assert!(stderr.contains("stdin is not a terminal"), "{stderr}");
}

#[tokio::test]
async fn attach_fails_saying_so_when_the_server_closes_the_terminal() {
    let app = App::start(&[
        ("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true"),
        ("SESSION_MANAGER_SERVER__TOKEN", TOKEN),
    ]);
    let id = session_with_a_terminal(&app, "ending").await;
    let attached = Attached::start(&app, &[id.as_str(), "shell"], Some(TOKEN));
    screen_size(&app, &id, 24, 80).await;
    let (status, body) = call(&app, "DELETE", &format!("/api/claude/sessions/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, output) = attached.wait_exit();
    assert!(!status.success(), "{status}: {output}");
    assert!(
        output.contains("the server closed the terminal"),
        "{output}"
    );
}
