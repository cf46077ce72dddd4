//! No session waits for another (issue 23, item 3): while one session is stuck — stopping an
//! agent that ignores SIGTERM, navigating to a directory whose file system does not answer,
//! reading a git repository that does not answer — another session's GET, its agents and
//! logs, `GET /sessions`, an order to one of its agents and the create of a new session all
//! answer, each within a few seconds while the stuck operation still runs; and the stuck
//! operation itself ends with a clear outcome.
//!
//! The hung file system is real, without root or FUSE: a FIFO where libgit2 opens a file.
//! `open(2)` of a FIFO for reading blocks until a writer comes, exactly as a read on a hung
//! NFS or a stopped FUSE daemon does. Validating a directory reads its repository, so a
//! directory whose `.git/config` is a FIFO does not answer (`git2::Repository::open_ext`
//! blocks); one whose `.git/index` is a FIFO opens, and then `git status` blocks. At the end
//! the test opens the FIFOs for writing, so the server's blocked threads return and it exits.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::app::App;
use serde_json::{json, Value};

/// How long any answer may take while another session is stuck: liveness, not speed.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);
/// `paths.deadline_ms` and `agents.stop_grace_ms` of the server under test: long beside
/// [`ANSWER_WITHIN`], so every check runs while the stuck operation still waits.
const STUCK_MS: u64 = 30_000;

fn server() -> App {
    App::with_config(&format!(
        "[paths]\ndeadline_ms = {STUCK_MS}\n[agents]\nallow_custom_commands = true\nstop_grace_ms = {STUCK_MS}\n"
    ))
}

/// `request`, answered within [`ANSWER_WITHIN`] (the test fails otherwise).
async fn soon<T>(what: &str, request: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(ANSWER_WITHIN, request).await {
        Ok(answer) => answer,
        Err(_) => {
            panic!("{what} did not answer within {ANSWER_WITHIN:?} while another session was stuck")
        }
    }
}

/// Creates a session in `dir` with `agents`; its id.
async fn create(app: &App, name: &str, dir: &str, agents: Value, git: bool) -> String {
    let body = json!({
        "name": name,
        "working_directory": dir,
        "git_enabled": git,
        "agents": agents,
    });
    let (status, body) = app.post("/api/claude/sessions", &body).await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// A quiet session of one process agent (`worker`) and one logical agent (`notes`).
async fn bystander(app: &App, name: &str) -> String {
    let dir = app.dir(name);
    let agents = json!([
        {"agent_type": "BACKEND", "name": "worker", "command": common::fake(&[])},
        {"agent_type": "DOCUMENTATION", "name": "notes"},
    ]);
    create(app, name, &dir, agents, false).await
}

/// Everything another session may be asked while `stuck` is: each answers in time, right.
async fn others_answer(app: &App, other: &str, round: &str) {
    let path = |tail: &str| format!("/api/claude/sessions/{other}{tail}");
    let (status, body) = soon("GET of another session", app.get(&path(""))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["id"], other, "{body}");
    let (status, body) = soon("its agents", app.get(&path("/agents"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = soon("its logs", app.get(&path("/agents/worker/logs"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = soon("GET /sessions", app.get("/api/claude/sessions")).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["sessions"].as_array().unwrap();
    assert!(listed.iter().any(|s| s["id"] == other), "{body}");
    let order = path("/agents/notes/restart");
    let (status, body) = soon("an agent order", app.post(&order, &json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let name = format!("new-{round}");
    let created = soon(
        "a create",
        create(app, &name, &app.dir(&name), json!([]), false),
    )
    .await;
    let (status, _) = soon(
        "the new session",
        app.get(&format!("/api/claude/sessions/{created}")),
    )
    .await;
    assert_eq!(status, 200);
}

/// A git repository with one commit at `dir`, whose `file` inside `.git` is then swapped
/// for a FIFO: reading it blocks until somebody writes.
fn repository_with_fifo(dir: &Path, file: &str) -> PathBuf {
    let repo = git2::Repository::init(dir).unwrap();
    let signature = git2::Signature::now("t", "t@example.com").unwrap();
    let tree = repo.treebuilder(None).unwrap().write().unwrap();
    let tree = repo.find_tree(tree).unwrap();
    repo.commit(Some("HEAD"), &signature, &signature, "one", &tree, &[])
        .unwrap();
    let fifo = dir.join(".git").join(file);
    let _ = std::fs::remove_file(&fifo);
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o600)).unwrap();
    fifo
}

/// Lets every reader blocked on `fifo` go (they read an empty file) and puts a regular
/// file there, so no later reader blocks.
fn release(fifo: &Path) {
    let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK;
    // Fails (ENXIO) when nobody is blocked on it: nothing to release then.
    let writer: Option<OwnedFd> = rustix::fs::open(fifo, flags, rustix::fs::Mode::empty()).ok();
    std::fs::remove_file(fifo).unwrap();
    std::fs::write(fifo, "").unwrap();
    drop(writer);
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "never {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_ignores_sigterm_delays_no_other_session() {
    let mut app = server();
    let other = bystander(&app, "other").await;
    let agents = json!([
        {"agent_type": "BACKEND", "name": "stubborn", "command": common::fake(&["--ignore-sigterm"])},
        {"agent_type": "DOCUMENTATION", "name": "notes"},
    ]);
    let stuck = create(&app, "stuck", &app.dir("stuck"), agents, false).await;
    let agent_of = async |app: &App| {
        let (_, body) = app
            .get(&format!("/api/claude/sessions/{stuck}/agents"))
            .await;
        let agents = body["agents"].as_array().cloned().unwrap_or_default();
        let stubborn = agents.into_iter().find(|a| a["name"] == "stubborn");
        stubborn.unwrap_or_default()
    };
    until("the stubborn agent running", async || {
        agent_of(&app).await["status"] == "running"
    })
    .await;
    let pid = agent_of(&app).await["pid"].as_u64().unwrap() as u32;

    let url = app.url(&format!(
        "/api/claude/sessions/{stuck}/agents/stubborn/deactivate"
    ));
    let deactivate = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap_or_default(),
        )
    });
    // Its own reads answer too: they do not go through its busy actor.
    until("the agent stopping", async || {
        soon("the stuck session's agents", agent_of(&app)).await["status"] == "stopping"
    })
    .await;
    others_answer(&app, &other, "sigterm").await;
    let (status, body) = soon(
        "the stuck session",
        app.get(&format!("/api/claude/sessions/{stuck}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Nor do its other orders: the stop waits on a task, not in its actor.
    let order = format!("/api/claude/sessions/{stuck}/agents/notes/restart");
    let (status, body) = soon(
        "another order of the stuck session",
        app.post(&order, &json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !deactivate.is_finished(),
        "the grace is long: the stop still waits"
    );
    assert!(
        common::alive(pid),
        "SIGTERM is ignored until the grace ends"
    );

    // Done after the grace: the agent killed, stopped, and kept down.
    let (status, body) = deactivate.await.unwrap();
    assert_eq!(status, 200, "{body}");
    until("the stubborn agent killed", async || !common::alive(pid)).await;
    assert_eq!(agent_of(&app).await["status"], "stopped");
    app.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_navigate_to_a_hung_file_system_delays_no_other_session_and_times_out() {
    let mut app = server();
    let other = bystander(&app, "other").await;
    let stuck = create(&app, "mover", &app.dir("mover"), json!([]), false).await;
    let hung = PathBuf::from(app.dir("hung"));
    let fifo = repository_with_fifo(&hung, "config");

    let url = app.url(&format!("/api/claude/sessions/{stuck}/navigate"));
    let target = hung.to_string_lossy().into_owned();
    let navigate = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&json!({"path": target}))
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    });
    // Until the validation is surely under way (it blocks in `open` of the FIFO).
    tokio::time::sleep(Duration::from_millis(500)).await;
    others_answer(&app, &other, "navigate").await;
    let (status, body) = soon(
        "the moving session",
        app.get(&format!("/api/claude/sessions/{stuck}")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !navigate.is_finished(),
        "the deadline is long: the navigate still waits"
    );

    // An error naming the deadline and the path; the session stays where it was.
    let (status, body) = navigate.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error_code"], "timed_out", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{STUCK_MS} ms")) && message.contains("hung"),
        "{body}"
    );
    let (_, body) = app.get(&format!("/api/claude/sessions/{stuck}")).await;
    assert_eq!(
        body["session"]["working_directory"],
        app.dir("mover"),
        "{body}"
    );
    // The path stays known as hung until it answers: asked again, no second wait.
    let (status, body) = soon(
        "a second validation of the hung path",
        app.post("/api/claude/validate-path", &json!({"path": hung})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    release(&fifo);
    app.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_git_call_that_hangs_delays_no_other_session_and_times_out() {
    let mut app = server();
    let other = bystander(&app, "other").await;
    let repo = PathBuf::from(app.dir("repo"));
    let fifo = repository_with_fifo(&repo, "index");

    // The repository opens; `git status` (its dirty and untracked counts) blocks on the
    // index: a create there waits on git, and must not make anybody else wait.
    let url = app.url("/api/claude/sessions");
    let body = json!({"name": "in-repo", "working_directory": repo, "git_enabled": true});
    let create_in_repo = tokio::spawn(async move {
        let response = reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json::<Value>().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    others_answer(&app, &other, "git").await;
    assert!(
        !create_in_repo.is_finished(),
        "the deadline is long: the create still waits"
    );

    let (status, body) = create_in_repo.await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error_code"], "timed_out", "{body}");
    assert_eq!(body["details"]["field"], "working_directory", "{body}");
    let (_, body) = app.get("/api/claude/sessions").await;
    let names: Vec<&Value> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["name"])
        .collect();
    assert!(
        !names.contains(&&json!("in-repo")),
        "nothing of it was created: {body}"
    );
    release(&fifo);
    app.stop();
}
