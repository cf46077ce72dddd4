//! `/ws/sessions` and `GET /api/claude/events` against the real server (in process, port
//! 0, a temporary data directory): the greeting and requests, live events with their seq,
//! replay after a reconnect without gap or duplicate, the log across a restart, and a slow
//! client dropped while another keeps receiving.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use session_manager::api::ApiContext;
use session_manager::config::{Overrides, Settings};
use session_manager::server::App;
use session_manager::session::{AgentOp, CreateSession, SessionConfig, SessionRegistry};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// Generous bound for anything to happen on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn settings(data: &Path) -> Settings {
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(data.to_path_buf()),
        port: Some(0),
        ..Overrides::default()
    })
    .unwrap();
    // These tests count exact event sequences: the monitor's resource alerts (a busy CI host,
    // a nearly full disk) must not join them. A percentage never goes over 100.
    let thresholds = &mut settings.monitor.thresholds;
    thresholds.cpu_percent = 100.0;
    thresholds.memory_percent = 100.0;
    thresholds.disk_percent = 100.0;
    settings
}

/// A server running in this test's runtime; [`Server::stop`] shuts it down gracefully.
struct Server {
    addr: SocketAddr,
    sessions: SessionRegistry,
    context: ApiContext,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn spawn_app(settings: &Settings) -> Server {
    let app = App::build(settings).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    Server {
        addr: app.local_addr(),
        sessions: app.sessions().clone(),
        context: app.context(),
        stop,
        task: tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        })),
    }
}

impl Server {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the server did not stop in time")
            .unwrap();
    }

    async fn connect(&self) -> Client {
        let url = format!("ws://{}/ws/sessions", self.addr);
        let (client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        client
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = reqwest::get(format!("http://{}{path_and_query}", self.addr))
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// A session with one logical agent, working in `dir`.
    async fn create(&self, dir: &Path, name: &str) -> Uuid {
        let config: SessionConfig = serde_json::from_value(json!({
            "name": name,
            "working_directory": dir.join(name),
            "agents": [{"agent_type": "BACKEND"}],
        }))
        .unwrap();
        let view = self
            .sessions
            .create(CreateSession::new(config))
            .await
            .unwrap();
        view.record.id
    }

    fn last_seq(&self) -> u64 {
        self.sessions.bus().last_seq()
    }

    /// Waits until no event has been published for a while: agents report their states,
    /// and sessions their status, a little after the call that started them returned.
    async fn settle(&self) -> u64 {
        let deadline = Instant::now() + PATIENCE;
        let mut last = self.last_seq();
        let mut quiet_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.last_seq();
            if now != last {
                last = now;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_millis(300) {
                return last;
            }
            assert!(Instant::now() < deadline, "events never stopped coming");
        }
    }
}

async fn send(client: &mut Client, message: Value) {
    client
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The next JSON message (pings and pongs skipped).
async fn recv(client: &mut Client) -> Value {
    loop {
        let message = tokio::time::timeout(PATIENCE, client.next())
            .await
            .expect("no message in time")
            .expect("the connection ended")
            .unwrap();
        match message {
            Message::Text(text) => return serde_json::from_str(&text).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected message {other:?}"),
        }
    }
}

/// Reads until a message of type `kind`, returning it and everything read before it.
async fn recv_until(client: &mut Client, kind: &str) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let message = recv(client).await;
        if message["type"] == kind {
            return (message, before);
        }
        before.push(message);
    }
}

/// Reads events until one with `seq` ≥ `last` arrived; returns the seqs of all events read.
async fn seqs_until(client: &mut Client, last: u64, seen: &mut Vec<u64>) {
    while seen.last().is_none_or(|&seq| seq < last) {
        let message = recv(client).await;
        if let Some(seq) = message["seq"].as_u64() {
            seen.push(seq);
        }
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn greeting_ping_errors_and_shutdown() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    let mut client = server.connect().await;

    let greeting = recv(&mut client).await;
    assert_eq!(greeting["type"], "connected");
    assert!(greeting["timestamp"].is_f64(), "{greeting}");
    assert_eq!(greeting["session_count"], 0);
    assert_eq!(greeting["active_sessions"], 0);
    until("the client is counted", || {
        server.context.websocket_clients() == 1
    })
    .await;

    send(&mut client, json!({"type": "ping"})).await;
    let pong = recv(&mut client).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].is_f64());

    // Each bad message gets an error and the connection stays usable.
    for bad in [
        Message::text("{not json"),
        Message::text(r#"{"type": "dance"}"#),
        Message::text(r#"{"type": "subscribe", "topics": ["weather"]}"#),
        Message::binary(vec![1, 2, 3]),
    ] {
        client.send(bad.clone()).await.unwrap();
        let error = recv(&mut client).await;
        assert_eq!(error["type"], "error", "{bad:?}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    send(&mut client, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut client).await["type"], "pong");

    // A plain GET of the WebSocket path is a 400 envelope, not a hang.
    let (status, body) = server.get("/ws/sessions").await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "session_validation_error");

    // Shutdown closes the connection with 1001.
    let stopping = tokio::spawn(server.stop());
    let close = loop {
        match tokio::time::timeout(PATIENCE, client.next()).await.unwrap() {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1001));
    stopping.await.unwrap();
}

#[tokio::test]
async fn session_and_agent_events_arrive_with_their_seq() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    let mut client = server.connect().await;
    assert_eq!(recv(&mut client).await["type"], "connected");

    let id = server.create(dir.path(), "first").await;
    // Agent events may come before the session's: the agents start first.
    let mut running = false;
    let mut created = None;
    let mut seqs = Vec::new();
    while !(running && created.is_some()) {
        let event = recv(&mut client).await;
        seqs.push(event["seq"].as_u64().expect("every event here is numbered"));
        assert_eq!(event["session_id"], id.to_string(), "{event}");
        match event["type"].as_str().unwrap() {
            "session_created" => created = Some(event),
            "agent_status" => {
                assert_eq!(event["data"]["agent"], "backend-services");
                running |= event["data"]["to"] == "running";
            }
            _ => {}
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let created = created.unwrap();
    assert_eq!(created["data"]["id"], id.to_string());
    assert_eq!(created["data"]["name"], "first");
    assert!(created["timestamp"].is_f64());

    send(
        &mut client,
        json!({"type": "subscribe_session", "session_id": id}),
    )
    .await;
    let (status, _) = recv_until(&mut client, "session_status").await;
    assert_eq!(status["session_id"], id.to_string());
    assert_eq!(status["data"]["id"], id.to_string());
    send(
        &mut client,
        json!({"type": "subscribe_session", "session_id": Uuid::new_v4()}),
    )
    .await;
    let (error, _) = recv_until(&mut client, "error").await;
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("unknown session"));

    // Unsubscribed from agents: a restart's command event no longer arrives, while the
    // context change made after it (so published after it) does.
    send(
        &mut client,
        json!({"type": "unsubscribe", "topics": ["agents"]}),
    )
    .await;
    let (unsubscribed, _) = recv_until(&mut client, "unsubscribed").await;
    assert_eq!(unsubscribed["topics"], json!(["sessions", "alerts"]));
    server
        .sessions
        .agent(id, "backend-services", AgentOp::Restart)
        .await
        .unwrap();
    server
        .sessions
        .context_put(id, "phase", json!("build"))
        .await
        .unwrap();
    let (changed, before) = recv_until(&mut client, "context_changed").await;
    assert_eq!(
        changed["data"],
        json!({"key": "phase", "value": "build", "deleted": false})
    );
    assert!(
        before
            .iter()
            .all(|m| !m["type"].as_str().unwrap().starts_with("agent_")),
        "{before:?}"
    );

    // A new connection's greeting counts the session.
    let mut late = server.connect().await;
    let greeting = recv(&mut late).await;
    assert_eq!(greeting["session_count"], 1);
    assert_eq!(greeting["active_sessions"], 1);
    assert!(greeting["last_seq"].as_u64().unwrap() >= changed["seq"].as_u64().unwrap());
    server.stop().await;
}

#[tokio::test]
async fn a_reconnect_with_since_replays_exactly_the_missed_events() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;

    // The first connection sees everything from the start.
    let mut first = server.connect().await;
    assert_eq!(recv(&mut first).await["type"], "connected");
    let id = server.create(dir.path(), "one").await;
    server
        .sessions
        .context_put(id, "a", json!(1))
        .await
        .unwrap();
    let mut seen_first = Vec::new();
    seqs_until(&mut first, server.settle().await, &mut seen_first).await;
    first.close(None).await.unwrap();
    let resume_at = *seen_first.last().unwrap();
    assert_eq!(seen_first, (1..=resume_at).collect::<Vec<_>>());

    // Missed while away.
    for n in 0..5 {
        server
            .sessions
            .context_put(id, "b", json!(n))
            .await
            .unwrap();
    }
    server.create(dir.path(), "two").await;

    // Reconnect while events keep coming: some arrive live before the subscribe is read.
    let mut second = server.connect().await;
    assert_eq!(recv(&mut second).await["type"], "connected");
    let sessions = server.sessions.clone();
    let busy = tokio::spawn(async move {
        for n in 0..20 {
            sessions.context_put(id, "c", json!(n)).await.unwrap();
        }
    });
    send(
        &mut second,
        json!({"type": "subscribe", "topics": ["sessions", "agents", "alerts"], "since": resume_at}),
    )
    .await;
    busy.await.unwrap();
    let last = server.settle().await;
    let mut seen_second = Vec::new();
    let mut subscribed = None;
    while subscribed.is_none() || seen_second.last().is_none_or(|&s| s < last) {
        let message = recv(&mut second).await;
        match message["seq"].as_u64() {
            Some(seq) => seen_second.push(seq),
            None if message["type"] == "subscribed" => subscribed = Some(message),
            None => panic!("unexpected {message}"),
        }
    }
    // Every numbered event belongs to one of these topics: the seqs must be exactly the
    // ones after the resume point, in order, each once.
    assert_eq!(seen_second, (resume_at + 1..=last).collect::<Vec<_>>());
    let subscribed = subscribed.unwrap();
    assert!(subscribed["replayed"].as_u64().unwrap() > 0, "{subscribed}");
    server.stop().await;
}

#[tokio::test]
async fn a_replay_does_not_repeat_what_the_connection_already_delivered() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    let mut client = server.connect().await;
    assert_eq!(recv(&mut client).await["type"], "connected");
    let id = server.create(dir.path(), "once").await;
    let head = server.settle().await;
    let mut seen = Vec::new();
    seqs_until(&mut client, head, &mut seen).await;
    assert_eq!(seen, (1..=head).collect::<Vec<_>>());

    // Asking again from the start, with one more topic: only what this connection has not
    // had comes (nothing: every numbered event was already delivered), then live ones.
    send(
        &mut client,
        json!({"type": "subscribe", "topics": ["logs"], "since": 0}),
    )
    .await;
    let (subscribed, before) = recv_until(&mut client, "subscribed").await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(subscribed["replayed"], 0);
    assert_eq!(subscribed["last_seq"], head);
    assert_eq!(
        subscribed["topics"],
        json!(["sessions", "agents", "alerts", "logs"])
    );
    server
        .sessions
        .context_put(id, "next", json!(true))
        .await
        .unwrap();
    let live = recv(&mut client).await;
    assert_eq!(live["type"], "context_changed");
    assert_eq!(live["seq"], head + 1);

    // A new connection asking for one session from a seq gets that session's events only.
    let other = server.create(dir.path(), "other").await;
    let head = server.settle().await;
    let mut fresh = server.connect().await;
    assert_eq!(recv(&mut fresh).await["type"], "connected");
    send(
        &mut fresh,
        json!({"type": "subscribe", "session_id": other, "since": 0}),
    )
    .await;
    let (subscribed, replayed) = recv_until(&mut fresh, "subscribed").await;
    assert_eq!(subscribed["session_ids"], json!([other.to_string()]));
    assert_eq!(subscribed["replayed"], replayed.len());
    assert!(!replayed.is_empty());
    assert!(replayed
        .iter()
        .all(|e| e["session_id"] == other.to_string()));
    assert_eq!(replayed.last().unwrap()["seq"], head);
    server.stop().await;
}

#[tokio::test]
async fn the_log_survives_a_restart_and_seqs_continue_above_it() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let server = spawn_app(&settings(&data)).await;
    let id = server.create(dir.path(), "kept").await;
    server
        .sessions
        .context_put(id, "k", json!("v"))
        .await
        .unwrap();
    server.sessions.terminate(id, false).await.unwrap();
    let published = server.last_seq();
    // Served at once: events not yet written by the log's writer are flushed first.
    let (status, body) = server.get("/api/claude/events?since=0&limit=1000").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["events"], body["events"],
        "the envelope's two copies"
    );
    let seqs: Vec<u64> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.len() as u64 >= published,
        "{seqs:?} misses some of 1..={published}"
    );
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // Whatever the agents still report on the way out is stored before storage closes.
    let bus = server.sessions.bus().clone();
    server.stop().await;
    let before = bus.last_seq();

    let server = spawn_app(&settings(&data)).await;
    let (status, body) = server.get("/api/claude/events?since=0").await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert_eq!(body["has_more"], false);
    let events = body["events"].as_array().unwrap();
    let stored: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(stored, (1..=before).collect::<Vec<_>>());
    assert_eq!(body["last_seq"], before);
    assert_eq!(
        server.last_seq(),
        before,
        "a terminated session is not restored"
    );
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    for kind in [
        "session_created",
        "agent_status",
        "context_changed",
        "session_terminated",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let created = &events[kinds.iter().position(|k| *k == "session_created").unwrap()];
    assert_eq!(created["session_id"], id.to_string());
    assert_eq!(created["data"]["id"], id.to_string());
    assert!(created["timestamp"].is_f64());

    // New events continue above the old ones.
    let other = server.create(dir.path(), "after").await;
    assert!(server.last_seq() > before);
    let (_, body) = server
        .get(&format!(
            "/api/claude/events?since={before}&session_id={other}"
        ))
        .await;
    let fresh = body["events"].as_array().unwrap();
    assert!(!fresh.is_empty());
    assert!(fresh
        .iter()
        .all(|e| e["seq"].as_u64().unwrap() > before && e["session_id"] == other.to_string()));

    // Paging: `last_seq` is where the next page starts.
    let (_, page) = server.get("/api/claude/events?since=0&limit=2").await;
    assert_eq!(page["has_more"], true);
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert_eq!(page["last_seq"], 2);
    let (_, next) = server.get("/api/claude/events?since=2&limit=1").await;
    assert_eq!(next["events"][0]["seq"], 3);
    server.stop().await;
}

#[tokio::test]
async fn bad_event_parameters_are_400_naming_the_parameter() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    for (query, field) in [
        ("since=-1", "since"),
        ("since=soon", "since"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("session_id=not-a-uuid", "session_id"),
        ("colour=blue", "colour"),
    ] {
        let (status, body) = server.get(&format!("/api/claude/events?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error_code"], "session_validation_error");
        assert_eq!(body["details"]["field"], field, "{query}: {body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_dropped_while_another_keeps_receiving() {
    const PUTS: usize = 60;
    let dir = TempDir::new().unwrap();
    let mut settings = settings(&dir.path().join("data"));
    settings.events.websocket_queue = 2;
    let server = spawn_app(&settings).await;
    // Created before the clients connect: a session's start publishes a burst of agent
    // events in one go, more than the two-message queue of this test holds.
    let id = server.create(dir.path(), "flood").await;
    server.settle().await;

    // The slow client reads its greeting, then nothing; a small receive buffer keeps the
    // kernel from absorbing much of what the server sends it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(
        format!("ws://{}/ws/sessions", server.addr),
        MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    assert_eq!(recv(&mut slow).await["type"], "connected");
    let mut good = server.connect().await;
    assert_eq!(recv(&mut good).await["type"], "connected");
    until("both clients counted", || {
        server.context.websocket_clients() == 2
    })
    .await;

    let big = "x".repeat(200_000);
    let sessions = server.sessions.clone();
    let flood = tokio::spawn(async move {
        for n in 0..PUTS {
            sessions
                .context_put(id, &format!("key-{n}"), json!(big))
                .await
                .unwrap();
        }
    });
    let mut received = 0;
    while received < PUTS {
        let message = recv(&mut good).await;
        if message["type"] == "context_changed" {
            assert_eq!(message["data"]["key"], format!("key-{received}"));
            received += 1;
        }
    }
    flood.await.unwrap();
    until("the slow client is dropped", || {
        server.context.websocket_clients() == 1
    })
    .await;

    // What reached the slow client before it was dropped: not everything.
    let mut got = 0;
    let ending = loop {
        match tokio::time::timeout(PATIENCE, slow.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).unwrap();
                if message["type"] == "context_changed" {
                    got += 1;
                }
            }
            Some(Ok(Message::Close(frame))) => break format!("close {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(error)) => break format!("error {error}"),
            None => break "end".to_owned(),
        }
    };
    assert!(
        got < PUTS,
        "the slow client got all {got} events ({ending})"
    );
    if ending.starts_with("close") {
        assert!(
            ending.contains("1008") || ending.contains("Policy"),
            "{ending}"
        );
    }

    // The good client is still served.
    send(&mut good, json!({"type": "ping"})).await;
    assert_eq!(recv_until(&mut good, "pong").await.0["type"], "pong");
    server.stop().await;
}
