//! The monitor against the real server (in process, port 0, a temporary data directory,
//! one sample a second) and a real agent process (`examples/fake_agent`): stored points and
//! the session's live CPU and memory, a session memory alert raised once, seen on the
//! WebSocket `alerts` topic, in `…/status` and by a library sink, then resolved when the
//! agent stops — while a sink that panics on every call is registered before it. The
//! sampling actor, killed, is replaced and goes on with the alert it had open. Claude Code
//! hook events posted to the server change the session's counts, `/analytics` and
//! `/metrics`, raise the error-rate and response-time alerts, and survive a restart.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use session_manager::config::{Overrides, Settings};
use session_manager::monitor::{AlertSink, Monitor, Resource, ResourceAlert};
use session_manager::server::App;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::{fake, PATIENCE};

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Panicking;

impl AlertSink for Panicking {
    fn raised(&self, _: &ResourceAlert) {
        panic!("a sink that always panics");
    }
    fn resolved(&self, _: &ResourceAlert) {
        panic!("a sink that always panics");
    }
}

/// Every call, as `(raised?, alert)`.
#[derive(Default)]
struct Recording(Mutex<Vec<(bool, ResourceAlert)>>);

impl AlertSink for Recording {
    fn raised(&self, alert: &ResourceAlert) {
        self.0.lock().unwrap().push((true, alert.clone()));
    }
    fn resolved(&self, alert: &ResourceAlert) {
        self.0.lock().unwrap().push((false, alert.clone()));
    }
}

async fn request(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The next message of `kind` about `session` (`*`: any) whose data satisfies `pick`.
async fn next_event(
    client: &mut Client,
    kind: &str,
    session: &str,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, client.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event in time"))
            .expect("the connection stays open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        let about = session == "*" || message["session_id"] == session;
        if message["type"] == kind && about && pick(&message["data"]) {
            return message;
        }
    }
}

/// Polls `check` until it returns something, within [`PATIENCE`].
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} did not happen in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_alerts_and_sinks_for_a_session_with_a_process_agent() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(data.path().to_path_buf()),
        port: Some(0),
        ..Overrides::default()
    })
    .unwrap();
    settings.monitor.interval_seconds = 1;
    settings.agents.allow_custom_commands = true;
    let app = App::build(&settings).await.unwrap();
    let addr: SocketAddr = app.local_addr();
    let monitor: Monitor = app.monitor().clone();
    let recording = Arc::new(Recording::default());
    monitor.add_sink(Arc::new(Panicking));
    monitor.add_sink(recording.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let api = |path: &str| format!("http://{addr}/api/claude{path}");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/sessions"))
        .await
        .unwrap();

    // 60 MiB of a session allowed 64: over 85 % of its max_memory_mb.
    let (status, created) = request(
        reqwest::Method::POST,
        api("/sessions"),
        Some(json!({
            "name": "watched",
            "working_directory": work.path(),
            "max_memory_mb": 64,
            "agents": [{
                "agent_type": "BACKEND",
                "name": "hog",
                "max_memory_mb": 1024,
                "command": fake(&["--alloc-mb", "60"]),
            }],
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_owned();

    let raised = next_event(&mut ws, "alert", &id, |d| d["kind"] == "memory_usage").await;
    let alert = &raised["data"];
    assert!(
        raised["seq"].as_u64().is_some(),
        "alerts are kept: {raised}"
    );
    assert_eq!(alert["scope"], "session");
    assert_eq!(alert["session_id"], id.as_str());
    assert_eq!(alert["threshold"], 85.0);
    assert!(alert["value"].as_f64().unwrap() > 85.0, "{alert}");
    assert!(["medium", "high", "critical"].contains(&alert["severity"].as_str().unwrap()));
    let alert_id = alert["id"].as_str().unwrap().to_owned();

    let (_, status) = request(
        reqwest::Method::GET,
        api(&format!("/sessions/{id}/status")),
        None,
    )
    .await;
    let open: Vec<&Value> = status["alerts"].as_array().unwrap().iter().collect();
    assert!(
        open.iter().any(|a| a["id"] == alert_id.as_str()),
        "{status}"
    );

    // Stored points, with the agent's process tree.
    let (code, metrics) = request(
        reqwest::Method::GET,
        api(&format!("/sessions/{id}/metrics?hours=1")),
        None,
    )
    .await;
    assert_eq!(code, 200, "{metrics}");
    let points = metrics["metrics"].as_array().unwrap();
    assert!(!points.is_empty(), "{metrics}");
    let last = points.last().unwrap();
    assert!(last["memory_usage_mb"].as_f64().unwrap() > 50.0, "{last}");
    assert_eq!(last["agents"][0]["name"], "hog");
    assert!(last["agents"][0]["pid"].as_u64().is_some());
    assert!(last["agents"][0]["threads"].as_u64().unwrap() >= 1);
    let summary = &metrics["summary"];
    assert_eq!(
        summary["total_data_points"].as_u64().unwrap() as usize,
        points.len()
    );
    assert!(
        summary["peak_memory_mb"].as_f64().unwrap() > 50.0,
        "{summary}"
    );
    assert!(summary["averages_last_hour"]["memory_usage_mb"]
        .as_f64()
        .is_some());
    assert!(summary["latest_metrics"]["cpu_usage_percent"]
        .as_f64()
        .is_some());

    // The session object carries the latest sample.
    let (_, got) = request(reqwest::Method::GET, api(&format!("/sessions/{id}")), None).await;
    let session = &got["session"];
    assert!(
        session["metrics"]["cpu_usage_percent"].as_f64().is_some(),
        "{session}"
    );
    assert!(session["metrics"]["memory_usage_mb"].as_f64().unwrap() > 50.0);
    assert!(
        session["agents"][0]["cpu_percent"].as_f64().is_some(),
        "{session}"
    );

    // The agent stops: memory falls under the line, the same alert resolves.
    let (code, _) = request(
        reqwest::Method::POST,
        api(&format!("/sessions/{id}/agents/hog/deactivate")),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let resolved = next_event(&mut ws, "alert_resolved", &id, |d| {
        d["id"] == alert_id.as_str()
    })
    .await;
    assert!(
        resolved["data"]["resolved_at"].as_f64().is_some(),
        "{resolved}"
    );
    assert!(resolved["data"]["value"].as_f64().unwrap() < 85.0);

    // The panicking sink, called first each time, did not keep the second from hearing
    // both, nor the monitor from sampling on.
    let calls = eventually("the recording sink hears the resolution", async || {
        let calls = recording.0.lock().unwrap().clone();
        let ours: Vec<_> = calls
            .into_iter()
            .filter(|(_, a)| a.id.to_string() == alert_id)
            .map(|(raised, _)| raised)
            .collect();
        (ours.len() == 2).then_some(ours)
    })
    .await;
    assert_eq!(calls, [true, false]);
    let ticks = monitor.ticks();
    eventually("another tick after the panics", async || {
        (monitor.ticks() > ticks + 1).then_some(())
    })
    .await;
    let (_, status) = request(
        reqwest::Method::GET,
        api(&format!("/sessions/{id}/status")),
        None,
    )
    .await;
    assert!(
        !status["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == alert_id.as_str()),
        "{status}"
    );

    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

/// Starts the server in process with `settings`; returns it, its address and how to stop it.
async fn serve(
    settings: &Settings,
) -> (
    Monitor,
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let app = App::build(settings).await.unwrap();
    let addr = app.local_addr();
    let monitor = app.monitor().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    (monitor, addr, stop, server)
}

fn settings_in(data: &std::path::Path) -> Settings {
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(data.to_path_buf()),
        port: Some(0),
        ..Overrides::default()
    })
    .unwrap();
    settings.monitor.interval_seconds = 1;
    settings.agents.allow_custom_commands = true;
    settings
}

/// Every `alert` / `alert_resolved` message about the host received within `window`.
async fn host_alerts(client: &mut Client, window: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + window;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(
        deadline.saturating_duration_since(Instant::now()),
        client.next(),
    )
    .await
    {
        let Message::Text(text) = frame else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        if (message["type"] == "alert" || message["type"] == "alert_resolved")
            && message["data"]["scope"] == "host"
        {
            seen.push(message);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_monitor_is_replaced_and_keeps_its_open_alerts() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings_in(data.path());
    // Any host memory use is over a 0 % line: one host alert, open for as long as we look.
    settings.monitor.thresholds.memory_percent = 0.0;
    let (monitor, addr, stop, server) = serve(&settings).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/sessions"))
        .await
        .unwrap();
    let alert_id = eventually("the host memory alert", async || {
        monitor
            .open_alerts(None)
            .into_iter()
            .find(|a| a.resource == Resource::Memory)
            .map(|a| a.id)
    })
    .await;
    let before = monitor.status().await;
    assert!(before.running);
    assert_eq!(before.restarts, 0);

    let first = monitor.actor().expect("a sampling actor runs");
    first.kill();
    let after = eventually("a new sampling actor", async || {
        let status = monitor.status().await;
        let now = monitor.actor()?;
        (status.running && status.restarts == 1 && now.get_id() != first.get_id()).then_some(now)
    })
    .await;
    assert_ne!(after.get_id(), first.get_id());
    let ticks = monitor.ticks();
    eventually("ticks after the restart", async || {
        (monitor.ticks() >= ticks + 3).then_some(())
    })
    .await;

    // The same alert is still the open one, and nothing about the host was raised again
    // or resolved meanwhile (the new actor took the lines over).
    let open: Vec<_> = monitor
        .open_alerts(None)
        .iter()
        .filter(|a| a.resource == Resource::Memory)
        .map(|a| a.id)
        .collect();
    assert_eq!(open, [alert_id]);
    let seen = host_alerts(&mut ws, Duration::from_millis(2500)).await;
    // (The host's CPU may cross its line on a busy machine: only memory is looked at.)
    let memory: Vec<_> = seen
        .iter()
        .filter(|m| m["data"]["kind"] == "memory_usage")
        .collect();
    assert!(
        memory
            .iter()
            .all(|m| m["type"] == "alert" && m["data"]["id"] == alert_id.to_string()),
        "{memory:?}"
    );
    let (code, status) = request(
        reqwest::Method::GET,
        format!("http://{addr}/api/claude/system-status"),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let monitoring = &status["system_status"]["monitoring"];
    assert_eq!(monitoring["active"], true, "{monitoring}");
    assert_eq!(monitoring["restarts"], 1, "{monitoring}");

    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

/// The `analytics` object.
async fn analytics(addr: SocketAddr) -> Value {
    let (code, body) = request(
        reqwest::Method::GET,
        format!("http://{addr}/api/claude/analytics"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["analytics"].clone()
}

async fn hook(addr: SocketAddr, id: &str, payload: Value) {
    let (code, body) = request(
        reqwest::Method::POST,
        format!("http://{addr}/api/claude/sessions/{id}/events"),
        Some(payload),
    )
    .await;
    assert_eq!(code, 202, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hook_events_change_counts_analytics_and_raise_alerts() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut settings = settings_in(data.path());
    // Any error is over the line; so is any measured response time.
    settings.monitor.thresholds.error_rate_per_hour = 0.0;
    settings.monitor.thresholds.response_time_ms = 1;
    let (_monitor, addr, stop, server) = serve(&settings).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/sessions"))
        .await
        .unwrap();
    let (status, created) = request(
        reqwest::Method::POST,
        format!("http://{addr}/api/claude/sessions"),
        Some(json!({
            "name": "hooked",
            "working_directory": work.path(),
            "agents": [{"agent_type": "BACKEND"}],
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_owned();
    let before = analytics(addr).await;
    assert_eq!(before["activity"]["commands_executed"], 0, "{before}");
    // The original's keys are kept.
    for key in [
        "total_sessions",
        "active_sessions",
        "status_distribution",
        "average_duration_seconds",
        "most_used_agents",
        "last_updated",
    ] {
        assert!(before.get(key).is_some(), "{key} missing: {before}");
    }

    let new_file = work.path().join("new.rs");
    let tool = |event: &str, name: &str, use_id: &str, input: Value, response: Value| {
        json!({
            "hook_event_name": event,
            "session_id": "claude-code-own-id",
            "tool_name": name,
            "tool_use_id": use_id,
            "tool_input": input,
            "tool_response": response,
        })
    };
    let rm = json!({"command": "rm -f old.txt tmp.log"});
    hook(
        addr,
        &id,
        tool("PreToolUse", "Bash", "t1", rm.clone(), json!(null)),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    hook(
        addr,
        &id,
        tool("PostToolUse", "Bash", "t1", rm, json!({"stdout": ""})),
    )
    .await;
    let write = json!({"file_path": new_file, "content": "fn main() {}"});
    hook(
        addr,
        &id,
        tool("PreToolUse", "Write", "t2", write.clone(), json!(null)),
    )
    .await;
    hook(
        addr,
        &id,
        tool("PostToolUse", "Write", "t2", write, json!({})),
    )
    .await;
    let edit = json!({"file_path": new_file, "old_string": "a", "new_string": "b"});
    hook(
        addr,
        &id,
        tool("PostToolUse", "Edit", "t3", edit, json!({})),
    )
    .await;
    let failing = json!({"command": "cargo test"});
    hook(
        addr,
        &id,
        tool(
            "PostToolUse",
            "Bash",
            "t4",
            failing,
            json!({"error": "exit 101"}),
        ),
    )
    .await;
    hook(addr, &id, json!({"hook_event_name": "Stop"})).await;

    let counted = eventually("the hook events counted in /analytics", async || {
        let now = analytics(addr).await;
        // The totals are counted in memory first, the hours once stored.
        let hours = now["trends"]["hours"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let stored = hours
            .last()
            .is_some_and(|h| h["activity"]["tool_uses"] == 4);
        (now["activity"]["tool_uses"] == 4 && stored).then_some(now)
    })
    .await;
    let activity = &counted["activity"];
    assert_eq!(activity["commands_executed"], 2, "{activity}");
    assert_eq!(activity["files_created"], 1, "{activity}");
    assert_eq!(activity["files_modified"], 1, "{activity}");
    assert_eq!(activity["files_deleted"], 2, "{activity}");
    assert_eq!(activity["errors"], 1, "{activity}");
    // Two pairs of PreToolUse and PostToolUse: t1 50 ms apart or more, t2 at once.
    assert!(activity["max_response_time_ms"].as_f64().unwrap() >= 50.0);
    assert!(activity["average_response_time_ms"].as_f64().unwrap() >= 25.0);
    let commands = counted["most_used_commands"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c["command"] == "cargo" && c["uses"] == 1)
            && commands.iter().any(|c| c["command"] == "rm"),
        "{commands:?}"
    );
    assert_eq!(
        counted["most_used_files"][0]["path"],
        new_file.to_str().unwrap()
    );
    assert_eq!(counted["most_used_files"][0]["uses"], 2);
    let this_hour = counted["trends"]["hours"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert_eq!(this_hour["activity"]["tool_uses"], 4, "{this_hour}");
    assert!(counted["error_rates"]["errors_last_hour"].as_f64().unwrap() >= 1.0);
    assert!(counted["anomalies"].is_array());
    assert!(counted["resources"]["agents"]["memory_mb"].is_number());

    // The session's own counts.
    let (_, got) = request(
        reqwest::Method::GET,
        format!("http://{addr}/api/claude/sessions/{id}"),
        None,
    )
    .await;
    let metrics = &got["session"]["metrics"];
    assert_eq!(metrics["commands_executed"], 2, "{metrics}");
    assert_eq!(metrics["files_modified"], 1);
    assert_eq!(metrics["files_created"], 1);
    assert_eq!(metrics["errors_encountered"], 1);

    // The lines: an error over 0 per hour, a response time over 1 ms.
    for kind in ["error_rate", "response_time"] {
        let raised = next_event(&mut ws, "alert", &id, |d| d["kind"] == kind).await;
        assert_eq!(raised["data"]["severity"], "critical", "{raised}");
    }
    let (_, status) = request(
        reqwest::Method::GET,
        format!("http://{addr}/api/claude/sessions/{id}/status"),
        None,
    )
    .await;
    assert_eq!(status["health"], "critical", "{status}");
    assert!(status["metrics"]["errors_last_hour"].as_f64().unwrap() >= 1.0);

    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "session_manager_commands_executed_total 2",
        "session_manager_files_total{change=\"created\"} 1",
        "session_manager_files_total{change=\"deleted\"} 2",
        "session_manager_tool_errors_total 1",
        "session_manager_tool_response_seconds_count 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }

    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();

    // The counts are stored: a restarted server has them.
    let (_monitor, addr, stop, server) = serve(&settings).await;
    let again = analytics(addr).await;
    assert_eq!(again["activity"]["commands_executed"], 2, "{again}");
    assert_eq!(again["activity"]["files_deleted"], 2, "{again}");
    let _ = stop.send(());
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_of_a_polled_session_follows_every_stored_tick() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (monitor, addr, stop, server) = serve(&settings_in(data.path())).await;
    let (status, created) = request(
        reqwest::Method::POST,
        format!("http://{addr}/api/claude/sessions"),
        Some(json!({
            "name": "polled",
            "working_directory": work.path(),
            "agents": [{"agent_type": "BACKEND", "command": fake(&["--sleep-forever"])}],
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_string();
    let uuid: uuid::Uuid = id.parse().unwrap();
    // Polled far more often than the monitor samples (once a second): the summary, kept
    // between writes, must still count each stored tick as soon as it is stored.
    let mut seen = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while seen.len() < 3 {
        let (status, body) = request(
            reqwest::Method::GET,
            format!("http://{addr}/api/claude/sessions/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let points = body["monitoring"]["total_data_points"].as_u64().unwrap();
        if seen.last() != Some(&points) {
            seen.push(points);
        }
        assert!(Instant::now() < deadline, "the summary stopped at {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    // What the route shows is what the database says now.
    let direct = monitor.summary(uuid, 1.0).await.unwrap();
    assert!(direct.total_data_points as u64 >= *seen.last().unwrap());
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_sessions_alerts_are_resolved_and_the_others_stay_open() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut settings = settings_in(data.path());
    // Any file system in use is over 0.5 %: every session's disk line is crossed.
    settings.monitor.thresholds.disk_percent = 0.5;
    let (_monitor, addr, stop, server) = serve(&settings).await;
    let api = |path: &str| format!("http://{addr}/api/claude{path}");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/sessions"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for name in ["leaving", "staying"] {
        let (status, created) = request(
            reqwest::Method::POST,
            api("/sessions"),
            Some(json!({"name": name, "working_directory": work.path(), "git_enabled": false})),
        )
        .await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["session"]["id"].as_str().unwrap().to_owned());
    }
    // Both are raised in the same tick, in no particular order.
    let mut alerts = [String::new(), String::new()];
    while alerts.iter().any(String::is_empty) {
        let raised = next_event(&mut ws, "alert", "*", |d| d["kind"] == "disk_usage").await;
        let session = raised["session_id"].as_str().unwrap_or_default();
        if let Some(i) = ids.iter().position(|id| id == session) {
            alerts[i] = raised["data"]["id"].as_str().unwrap().to_owned();
        }
    }

    let (status, _) = request(
        reqwest::Method::DELETE,
        api(&format!("/sessions/{}", ids[0])),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let resolved = next_event(&mut ws, "alert_resolved", &ids[0], |d| {
        d["id"] == alerts[0].as_str()
    })
    .await;
    assert!(
        resolved["data"]["resolved_at"].as_f64().is_some(),
        "{resolved}"
    );

    // The other session's line is still watched: its alert stays open, ticks later.
    let (_, status) = request(
        reqwest::Method::GET,
        api(&format!("/sessions/{}/status", ids[1])),
        None,
    )
    .await;
    let open = status["alerts"].as_array().unwrap();
    assert!(
        open.iter().any(|a| a["id"] == alerts[1].as_str()),
        "{status}"
    );

    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_stored_when_it_changes_and_its_rows_count_every_sample() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut settings = settings_in(data.path());
    // No repeat of unchanged figures within the test: only changes are stored.
    settings.monitor.unchanged_store_seconds = 3600;
    let (monitor, addr, stop, server) = serve(&settings).await;
    let base = format!("http://{addr}/api/claude/sessions");
    let (status, created) = request(
        reqwest::Method::POST,
        base.clone(),
        Some(json!({
            "name": "idle",
            "working_directory": work.path(),
            "agents": [
                {"agent_type": "BACKEND", "name": "b"},
                {"agent_type": "FRONTEND", "name": "f"},
            ],
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["session"]["id"].as_str().unwrap().to_string();
    let uuid: uuid::Uuid = id.parse().unwrap();
    let history = || async {
        let (status, body) =
            request(reqwest::Method::GET, format!("{base}/{id}/metrics"), None).await;
        assert_eq!(status, 200, "{body}");
        body
    };
    // The first sample, then the same once its file system's use is read (a change).
    let settled = eventually("a sample with the disk's use", || async {
        let body = history().await;
        let points = body["metrics"].as_array().unwrap().clone();
        points
            .last()
            .is_some_and(|p| p["disk_usage_percent"].is_number())
            .then_some(points.len())
    })
    .await;
    assert!(settled <= 3, "{settled} rows");
    // Ticks go by with nothing to change: nothing more is stored.
    let ticks = monitor.ticks();
    eventually("three more ticks", || async {
        (monitor.ticks() >= ticks + 3).then_some(())
    })
    .await;
    let quiet = history().await;
    assert_eq!(
        quiet["metrics"].as_array().unwrap().len(),
        settled,
        "{quiet}"
    );
    assert_eq!(
        quiet["metrics"][settled - 1]["agents_running"],
        2,
        "{quiet}"
    );

    // A change: the end of the flat stretch and the new figures are stored.
    let (status, body) = request(
        reqwest::Method::POST,
        format!("{base}/{id}/agents/f/deactivate"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let changed = eventually("the change stored", || async {
        let body = history().await;
        let points = body["metrics"].as_array().unwrap().clone();
        (points.last().unwrap()["agents_running"] == 1).then_some(body)
    })
    .await;
    let points = changed["metrics"].as_array().unwrap();
    assert_eq!(points.len(), settled + 2, "{changed}");
    assert_eq!(
        points[settled]["agents_running"], 2,
        "the flat stretch's end: {changed}"
    );
    // The rows stand for every sample taken: the three quiet ticks at least, beyond the
    // rows stored.
    let counted = changed["summary"]["total_data_points"].as_u64().unwrap();
    assert!(
        counted >= settled as u64 + 4,
        "{counted} samples counted: {changed}"
    );
    let direct = monitor.summary(uuid, 1.0).await.unwrap();
    assert_eq!(direct.total_data_points as u64, counted);
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}
