//! Storage faults made real, against the real binary: the database on a small tmpfs that is
//! filled during creates, updates, context writes and an event burst, then freed; and a
//! write lock held by another process. After each, everything acknowledged is there (also
//! after a restart), nothing refused is, and a `since` replay misses no event.
//!
//! Mounting needs root, or a user namespace (`unshare -Urm`, which the test enters by
//! re-running itself when it is not root): those tests are their own suite, run with
//! `cargo test --test storage_faults -- --ignored`. The lock needs nothing and runs with
//! `cargo test`.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::app::{answer, App};
use serde_json::{json, Value};

const SUITE: &str = "storage-faults suite: cargo test --test storage_faults -- --ignored; \
                     needs root or user namespaces (unshare -Urm)";

/// Bound of every wait for the server to notice a change; only a broken server nears it.
const PATIENCE: Duration = Duration::from_secs(30);

/// Whether this process may mount. When it is not root it runs the test again inside
/// `unshare -Urm` (root of a user namespace of its own, which may mount a tmpfs) and
/// returns false once that run passed: the caller then stops. Fails, saying what is
/// needed, when neither works.
fn may_mount(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = Command::new("unshare")
        .args(["-Urm", "--"])
        .arg(exe)
        .args([
            "--exact",
            test,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .status()
        .unwrap_or_else(|error| panic!("{SUITE}: cannot run unshare: {error}"));
    assert!(
        status.success(),
        "{SUITE}: the test failed inside `unshare -Urm` (or user namespaces are not allowed here)"
    );
    false
}

/// Runs a mount tool, failing the test with the suite's requirements when it cannot.
fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{SUITE}: cannot run {program}: {error}"));
    assert!(
        output.status.success(),
        "{SUITE}: `{program} {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A tmpfs mounted for the test, unmounted when dropped — even when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        let at_text = at.to_str().expect("a UTF-8 path");
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at_text,
            ],
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: the server may still hold files in it; the mount goes once they close.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `dir` with one file until it refuses another byte; the file
/// is removed when dropped (the disk freed).
struct Filler(PathBuf);

impl Filler {
    fn fill(dir: &Path) -> Filler {
        let path = dir.join("filler");
        let mut file = File::create(&path).unwrap();
        for chunk in [64 * 1024, 4096, 512, 1] {
            let bytes = vec![0_u8; chunk];
            loop {
                match file.write_all(&bytes) {
                    Ok(()) => {}
                    Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                    Err(error) => panic!("filling {}: {error}", dir.display()),
                }
            }
        }
        Filler(path)
    }

    fn free(self) {}
}

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stops `app`, moves its database onto a fresh tmpfs of `size` and starts it again there.
fn on_tmpfs(app: &mut App, size: &str) -> Tmpfs {
    app.stop();
    let sessions = app.data().join("sessions");
    let aside = app.work.path().join("database-aside");
    std::fs::rename(&sessions, &aside).unwrap();
    std::fs::create_dir(&sessions).unwrap();
    let mount = Tmpfs::mount(&sessions, size);
    for entry in std::fs::read_dir(&aside).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), sessions.join(entry.file_name())).unwrap();
    }
    app.restart();
    mount
}

/// A refusal for storage: 507 `storage_full` with its hint, or 503 `storage_unavailable`
/// with `Retry-After` (a full disk can surface as an I/O error of SQLite's shared memory).
fn assert_storage_refusal(status: u16, body: &Value, what: &str) {
    match status {
        507 => {
            assert_eq!(body["error_code"], "storage_full", "{what}: {body}");
            assert!(body["details"]["hint"].is_string(), "{what}: {body}");
        }
        503 => {
            assert_eq!(body["error_code"], "storage_unavailable", "{what}: {body}");
            assert!(
                body["details"]["retry_after_seconds"].is_u64(),
                "{what}: {body}"
            );
        }
        other => panic!("{what}: expected 507 or 503, got {other}: {body}"),
    }
}

/// Repeats `attempt(i)` until storage refuses one (asserting the refusal); returns the
/// indexes it acknowledged. Fails when storage never refuses: the fault was not real.
async fn until_refused<F, Fut>(what: &str, mut attempt: F) -> Vec<usize>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = (u16, Value)>,
{
    let mut acknowledged = Vec::new();
    for i in 0..200 {
        let (status, body) = attempt(i).await;
        if (200..300).contains(&status) {
            acknowledged.push(i);
            continue;
        }
        assert_storage_refusal(status, &body, what);
        eprintln!(
            "{what}: {} acknowledged, then {status} {}",
            acknowledged.len(),
            body["error_code"]
        );
        return acknowledged;
    }
    panic!("{what}: storage never refused a write on a full disk");
}

async fn create(app: &App, name: &str, agents: Value) -> (u16, Value) {
    let body = json!({"name": name, "working_directory": app.dir(name), "agents": agents});
    app.post("/api/claude/sessions", &body).await
}

async fn description(app: &App, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/claude/sessions/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["session"]["configuration"]["description"].clone()
}

async fn context_value(app: &App, id: &str) -> Value {
    let (status, body) = app
        .get(&format!("/api/claude/sessions/{id}/context/note"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["value"].clone()
}

async fn session_names(app: &App) -> Vec<String> {
    let (status, body) = app.get("/api/claude/sessions?limit=1000").await;
    assert_eq!(status, 200, "{body}");
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `/health` within a client deadline: (HTTP status, body).
async fn health(app: &App) -> (u16, Value) {
    let response = app
        .client
        .get(app.url("/health"))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("/health answers");
    answer(response).await
}

async fn wait_healthy(app: &App) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = health(app).await;
        if status == 200 && body["status"] == "healthy" {
            return body;
        }
        assert!(Instant::now() < deadline, "never healthy again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every event after `since`, paging through `GET /events` (waiting while it answers 503
/// or 507: the log is catching up); their seqs and types.
async fn events_after(app: &App, since: u64) -> Vec<(u64, String)> {
    let deadline = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    let mut after = since;
    loop {
        let response = app
            .client
            .get(app.url(&format!("/api/claude/events?since={after}&limit=1000")))
            .timeout(PATIENCE)
            .send()
            .await
            .expect("GET /events answers within its deadline");
        let (status, body) = answer(response).await;
        if status == 503 || status == 507 {
            assert!(
                Instant::now() < deadline,
                "the event log never recovered: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200, "{body}");
        for event in body["events"].as_array().unwrap() {
            let seq = event["seq"].as_u64().unwrap();
            events.push((seq, event["type"].as_str().unwrap().to_owned()));
            after = seq;
        }
        if body["has_more"] != true {
            return events;
        }
    }
}

/// The seqs after `since` are exactly `since + 1 ..= last`, none lost.
fn assert_no_gap(events: &[(u64, String)], since: u64) {
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
    let expected: Vec<u64> = (since + 1..=since + seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "a gap in the event log");
    assert!(
        events.iter().all(|(_, kind)| kind != "events_lost"),
        "events were given up: {events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "storage-faults suite: cargo test --test storage_faults -- --ignored; needs root or user namespaces (unshare -Urm)"]
async fn a_full_disk_refuses_writes_loses_no_acknowledged_one_and_no_event() {
    if !may_mount("a_full_disk_refuses_writes_loses_no_acknowledged_one_and_no_event") {
        return;
    }
    let mut app = App::start(&[]);
    let tmpfs = on_tmpfs(&mut app, "4m");
    let agent = json!([{"agent_type": "backend", "name": "worker"}]);
    let (status, body) = create(&app, "kept", agent).await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    let put_note = |value: String| {
        let url = format!("/api/claude/sessions/{id}/context/note");
        let app = &app;
        async move { app.put(&url, &json!({ "value": value })).await }
    };
    assert_eq!(put_note("before".into()).await.0, 200);
    let (_, before) = app.get("/api/claude/events?since=0&limit=1").await;
    let since = before["last_seq"].as_u64().unwrap();
    assert_eq!(health(&app).await.0, 200);

    let filler = Filler::fill(&tmpfs.0);
    let creates = until_refused("create", |i| {
        let name = format!("full-{i}");
        let app = &app;
        async move { create(app, &name, json!([])).await }
    })
    .await;
    let updates = until_refused("update", |i| {
        let url = format!("/api/claude/sessions/{id}");
        let app = &app;
        async move {
            app.put(&url, &json!({"description": format!("update-{i}")}))
                .await
        }
    })
    .await;
    // Nothing of the refused update shows: what GET shows is what a restart restores.
    let last_update = updates.last().map(|i| format!("update-{i}"));
    let shown = description(&app, &id).await;
    match &last_update {
        Some(text) => assert_eq!(shown, json!(text)),
        None => assert_eq!(shown, json!("")),
    }
    let notes = until_refused("context write", |i| put_note(format!("note-{i}"))).await;
    let last_note = notes
        .last()
        .map_or("before".to_owned(), |i| format!("note-{i}"));
    assert_eq!(context_value(&app, &id).await, json!(last_note));

    // An event burst: agent transitions are published whatever storage does; they wait.
    for _ in 0..20 {
        for op in ["deactivate", "activate"] {
            let url = format!("/api/claude/sessions/{id}/agents/worker/{op}");
            let (status, body) = app.post(&url, &json!({})).await;
            assert_eq!(status, 200, "{op}: {body}");
        }
    }
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy", "{body}");
    assert_eq!(body["services"]["storage"], "failing", "{body}");
    assert!(
        body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["part"] == "storage" && p["since"].is_f64()),
        "{body}"
    );
    // Reads of the log answer (503/507 while events wait), never hang.
    let response = app
        .client
        .get(app.url(&format!("/api/claude/events?since={since}")))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("GET /events answers while storage fails");
    let (status, body) = answer(response).await;
    assert!(matches!(status, 200 | 503 | 507), "{status}: {body}");
    eprintln!("GET /events while full: {status} {}", body["error_code"]);

    filler.free();
    wait_healthy(&app).await;
    let events = events_after(&app, since).await;
    assert_no_gap(&events, since);
    let agent_events = events.iter().filter(|(_, k)| k == "agent_status").count();
    eprintln!(
        "{} events after {since}, {agent_events} agent_status",
        events.len()
    );
    assert!(agent_events >= 40, "the burst is in the log: {events:?}");
    let (status, body) = app
        .put(
            &format!("/api/claude/sessions/{id}"),
            &json!({"description": "after"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    app.restart();
    assert_eq!(description(&app, &id).await, json!("after"));
    assert_eq!(context_value(&app, &id).await, json!(last_note));
    let names = session_names(&app).await;
    for i in 0..200 {
        let name = format!("full-{i}");
        assert_eq!(
            names.contains(&name),
            creates.contains(&i),
            "{name}: acknowledged {creates:?}, listed {names:?}"
        );
    }
    let replay = events_after(&app, since).await;
    assert_eq!(&replay[..events.len()], &events[..], "the log survived");
    drop(tmpfs);
}

/// A write lock held by another process (an operator's `sqlite3` shell, a backup tool):
/// writes wait SQLite's busy timeout, then are refused with 503 and change nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_locked_elsewhere_refuses_writes_with_503_and_changes_nothing() {
    let mut app = App::start(&[]);
    let (status, body) = create(&app, "locked", json!([])).await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    let database = app.data().join("sessions").join("session_manager.db");
    let lock = rusqlite::Connection::open(&database).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();

    let url = format!("/api/claude/sessions/{id}");
    let response = app
        .client
        .put(app.url(&url))
        .json(&json!({"description": "while locked"}))
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get("retry-after").cloned();
    let (status, body) = answer(response).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error_code"], "storage_unavailable", "{body}");
    assert!(retry_after.is_some(), "503 without Retry-After");
    let (status, body) = health(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(description(&app, &id).await, json!(""));
    // The log's reads queue behind writes waiting for the lock: answered within their
    // deadline all the same.
    let response = app
        .client
        .get(app.url("/api/claude/events?since=0"))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("GET /events answers while the database is locked");
    let (status, body) = answer(response).await;
    assert!(matches!(status, 200 | 503), "{status}: {body}");

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    wait_healthy(&app).await;
    let (status, body) = app.put(&url, &json!({"description": "after"})).await;
    assert_eq!(status, 200, "{body}");
    app.restart();
    assert_eq!(description(&app, &id).await, json!("after"));
}

/// A bind mount of a directory onto itself, made read-only; unmounted when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn bind(dir: &Path) -> ReadOnly {
        let text = dir.to_str().expect("a UTF-8 path");
        run("mount", &["--bind", text, text]);
        let mount = ReadOnly(dir.to_path_buf());
        run("mount", &["-o", "remount,bind,ro", text]);
        mount
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A read-only data directory. A running server's cannot be made read-only (the kernel
/// refuses to remount a file system read-only while a file on it is open for writing, as
/// the database is), so this is the read-only directory a server is started on: it stops
/// at once, naming what it could not open, instead of serving sessions it cannot keep.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "storage-faults suite: cargo test --test storage_faults -- --ignored; needs root or user namespaces (unshare -Urm)"]
async fn a_read_only_data_directory_stops_start_up_with_a_clear_message() {
    if !may_mount("a_read_only_data_directory_stops_start_up_with_a_clear_message") {
        return;
    }
    let mut app = App::start(&[]);
    let (status, body) = create(&app, "before", json!([])).await;
    assert_eq!(status, 201, "{body}");
    app.stop();
    let sessions = app.data().join("sessions");
    let read_only = ReadOnly::bind(&sessions);
    let output = Command::new(env!("CARGO_BIN_EXE_session-manager"))
        .env("HOME", app.work.path())
        .args(["--port", "0", "--data-dir"])
        .arg(app.data())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started on a read-only data dir");
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "announced itself"
    );
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    drop(read_only);
    app.restart();
    assert_eq!(session_names(&app).await, ["before"]);
}

/// Events past `events.backlog_max_bytes` while the disk is full are given up — said by a
/// numbered `events_lost` in the log (after every event kept before it) and by `/health`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "storage-faults suite: cargo test --test storage_faults -- --ignored; needs root or user namespaces (unshare -Urm)"]
async fn events_past_the_backlog_bound_leave_a_numbered_marker_and_health_says_so() {
    if !may_mount("events_past_the_backlog_bound_leave_a_numbered_marker_and_health_says_so") {
        return;
    }
    let mut app = App::start(&[("SESSION_MANAGER_EVENTS__BACKLOG_MAX_BYTES", "65536")]);
    let tmpfs = on_tmpfs(&mut app, "4m");
    let agent = json!([{"agent_type": "backend", "name": "worker"}]);
    let (status, body) = create(&app, "bounded", agent).await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    let (_, before) = app.get("/api/claude/events?since=0&limit=1").await;
    let since = before["last_seq"].as_u64().unwrap();

    let filler = Filler::fill(&tmpfs.0);
    // Each order publishes its agent's transitions and the order itself (~1 KB each).
    for _ in 0..100 {
        for op in ["deactivate", "activate"] {
            let url = format!("/api/claude/sessions/{id}/agents/worker/{op}");
            assert_eq!(app.post(&url, &json!({})).await.0, 200);
        }
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (_, body) = health(&app).await;
        let told = body["problems"].as_array().unwrap().iter().any(|p| {
            p["part"] == "event_log" && p["reason"].as_str().unwrap().contains("given up")
        });
        if told {
            break;
        }
        assert!(Instant::now() < deadline, "no loss reported: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    filler.free();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, body) = health(&app).await;
        if status == 200 && body["services"]["event_log"] == "degraded" {
            assert_eq!(body["status"], "degraded", "a recent loss: {body}");
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events = events_after(&app, since).await;
    let (status, body) = app
        .get(&format!("/api/claude/events?since={since}&limit=1000"))
        .await;
    assert_eq!(status, 200, "{body}");
    let markers: Vec<Value> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "events_lost")
        .cloned()
        .collect();
    assert!(!markers.is_empty(), "no events_lost in {events:?}");
    let mut lost = Vec::new();
    for marker in &markers {
        let (first, last) = (
            marker["data"]["first_seq"].as_u64().unwrap(),
            marker["data"]["last_seq"].as_u64().unwrap(),
        );
        assert_eq!(marker["data"]["count"].as_u64().unwrap(), last - first + 1);
        assert!(marker["session_id"].is_null(), "{marker}");
        assert!(marker["seq"].as_u64().unwrap() > last, "{marker}");
        lost.push(first..=last);
    }
    // Every seq is there but the lost ones, in order; each marker after its gap.
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
    let newest = *seqs.last().unwrap();
    let expected: Vec<u64> = (since + 1..=newest)
        .filter(|seq| !lost.iter().any(|range| range.contains(seq)))
        .collect();
    assert_eq!(seqs, expected, "lost {lost:?}");
    eprintln!("{} events kept, lost {lost:?}", seqs.len());
    drop(tmpfs);
}
