//! The monitor against the real server (in process, port 0, a temporary data directory,
//! one sample a second) and a real agent process (`examples/fake_agent`): stored points and
//! the session's live CPU and memory, a session memory alert raised once, seen on the
//! WebSocket `alerts` topic, in `…/status` and by a library sink, then resolved when the
//! agent stops — while a sink that panics on every call is registered before it.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use session_manager::config::{Overrides, Settings};
use session_manager::monitor::{AlertSink, Monitor, ResourceAlert};
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

/// The next message of `kind` about `session` whose data satisfies `pick`.
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
        if message["type"] == kind && message["session_id"] == session && pick(&message["data"]) {
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
