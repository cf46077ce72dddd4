//! `/ws/sessions` and `GET /api/claude/events` against the real server (in process, port
//! 0, a temporary data directory): the greeting and requests, live events with their seq,
//! replay after a reconnect without gap or duplicate, the log across a restart, a slow
//! client dropped while another keeps receiving, the close codes of a client's oversized or
//! malformed frames, and (through the real binary) the memory that clients which never read
//! can hold.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::common::app::App as Binary;

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

    /// A client whose 4 KiB receive buffer keeps the kernel from absorbing much of what the
    /// server sends before the client reads.
    async fn connect_with_small_buffer(&self) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let url = format!("ws://{}/ws/sessions", self.addr);
        let (client, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
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
    reconnect_and_replay(settings(&dir.path().join("data")), &dir, json!(0)).await;
}

#[tokio::test]
async fn a_replay_through_a_small_byte_bound_still_meets_the_live_stream_exactly() {
    // Replayed events of 16 KB through an 8 KiB queue to a client with a 4 KiB receive
    // buffer that reads only once the live burst is over: the replay waits for room, and the
    // live events that arrive meanwhile are held back behind it.
    let dir = TempDir::new().unwrap();
    let mut settings = settings(&dir.path().join("data"));
    settings.events.ws_max_queue_bytes = 8192;
    reconnect_and_replay(settings, &dir, json!("m".repeat(16_000))).await;
}

/// Connects, sees everything, leaves; `missed` values are stored while it is away; then it
/// reconnects while events keep coming and resumes: the seqs it gets are exactly the ones
/// after its resume point.
async fn reconnect_and_replay(settings: Settings, dir: &TempDir, missed: Value) {
    let server = spawn_app(&settings).await;

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
            .context_put(id, &format!("b{n}"), missed.clone())
            .await
            .unwrap();
    }
    server.create(dir.path(), "two").await;

    // Reconnect while events keep coming: some arrive live before the subscribe is read.
    let mut second = server.connect_with_small_buffer().await;
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
    // ones after the resume point, each once. Events published before the server read the
    // subscribe go out live at once (the default topics want them), so they may come
    // before the replay; from the first replayed one on, the order is the log's.
    let mut sorted = seen_second.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (resume_at + 1..=last).collect::<Vec<_>>(),
        "{seen_second:?}"
    );
    let first_replayed = seen_second
        .iter()
        .position(|&seq| seq == resume_at + 1)
        .unwrap();
    let from_replay = &seen_second[first_replayed..];
    assert!(
        from_replay.windows(2).all(|w| w[0] < w[1]),
        "{seen_second:?}"
    );
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

    // The slow client reads its greeting, then nothing.
    let mut slow = server.connect_with_small_buffer().await;
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
        assert!(ending.contains("since="), "no resume hint: {ending}");
    }

    // The good client is still served.
    send(&mut good, json!({"type": "ping"})).await;
    assert_eq!(recv_until(&mut good, "pong").await.0["type"], "pong");
    server.stop().await;
}

/// A WebSocket client on a bare TCP socket: it does the upgrade by hand, then writes and
/// reads raw frames, so it can break the protocol, or never read at all.
struct RawClient {
    stream: TcpStream,
}

impl RawClient {
    /// Upgrades a connection to `addr`; `recv_buffer` shrinks the socket's receive buffer,
    /// so that the kernel absorbs little of what a client that never reads is sent.
    async fn connect(addr: SocketAddr, recv_buffer: Option<u32>) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(bytes) = recv_buffer {
            socket.set_recv_buffer_size(bytes).unwrap();
        }
        let mut stream = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /ws/sessions HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // Byte by byte, so that no frame after the head is read.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
            assert!(head.len() < 4096, "no end to the response head");
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawClient { stream }
    }

    /// Sends a text frame, masked as a client must (with a zero key, which leaves the
    /// payload as it is).
    async fn send_text(&mut self, text: &str) {
        let mut frame = vec![0x81];
        match text.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len => {
                frame.push(0x80 | 126);
                frame.extend(u16::try_from(len).unwrap().to_be_bytes());
            }
        }
        frame.extend([0; 4]);
        frame.extend(text.as_bytes());
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next frame (opcode, payload), or `None` once the connection is gone.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut head = [0u8; 2];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = match head[1] & 0x7f {
            126 => u64::from(self.stream.read_u16().await.ok()?),
            127 => self.stream.read_u64().await.ok()?,
            len => u64::from(len),
        };
        let mut payload = vec![0; usize::try_from(len).unwrap()];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((head[0] & 0x0f, payload))
    }

    /// Reads until the connection is gone (bounded): the close frame's code and reason if
    /// one came, and how many text frames came before.
    async fn until_gone(&mut self) -> (Option<(u16, String)>, usize) {
        let mut texts = 0;
        let mut close = None;
        let deadline = Instant::now() + PATIENCE;
        loop {
            let frame = tokio::time::timeout_at(deadline.into(), self.frame())
                .await
                .expect("the server never ended the connection");
            match frame {
                None => return (close, texts),
                Some((0x1, _)) => texts += 1,
                Some((0x8, payload)) if payload.len() >= 2 => {
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                    close = Some((code, reason));
                }
                Some(_) => {}
            }
        }
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_closed_with_1009() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    let mut client = RawClient::connect(server.addr, None).await;
    // A masked text frame announcing 10 MB; the server refuses it on its header.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend(10_000_000u64.to_be_bytes());
    header.extend([0; 4]);
    client.stream.write_all(&header).await.unwrap();
    let (close, texts) = client.until_gone().await;
    assert_eq!(texts, 1, "the greeting, then nothing");
    let (code, reason) = close.expect("a close frame");
    assert_eq!(code, 1009, "{reason}");
    assert!(reason.contains("65536"), "{reason}");
    until("the client is gone", || {
        server.context.websocket_clients() == 0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_protocol_error_is_closed_with_1002() {
    let dir = TempDir::new().unwrap();
    let server = spawn_app(&settings(&dir.path().join("data"))).await;
    for (what, frame) in [
        ("reserved bits set", vec![0xf1, 0x80, 0, 0, 0, 0]),
        ("an unmasked frame", vec![0x81, 0x02, b'h', b'i']),
        ("an unknown opcode", vec![0x83, 0x80, 0, 0, 0, 0]),
    ] {
        let mut client = RawClient::connect(server.addr, None).await;
        // A valid request first: the connection works until the bad frame.
        client.send_text(r#"{"type":"ping"}"#).await;
        client.stream.write_all(&frame).await.unwrap();
        let (close, texts) = client.until_gone().await;
        assert_eq!(texts, 2, "{what}: the greeting and the pong");
        let (code, reason) = close.unwrap_or_else(|| panic!("{what}: no close frame"));
        assert_eq!(code, 1002, "{what}: {reason}");
    }
    until("the clients are gone", || {
        server.context.websocket_clients() == 0
    })
    .await;
    server.stop().await;
}

/// `VmRSS` and `VmHWM` (the peak) of process `pid`, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The server's `websocket_clients`.
async fn websocket_clients(app: &Binary) -> u64 {
    let (_, body) = app.get("/api/claude/system-status").await;
    body["system_status"]["monitoring"]["websocket_clients"]
        .as_u64()
        .unwrap()
}

async fn until_clients(app: &Binary, wanted: u64, what: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let now = websocket_clients(app).await;
        if now == wanted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now} websocket clients, waiting for {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn clients_that_never_read_are_closed_and_hold_the_servers_memory_bounded() {
    const NEVER_READING: usize = 10;
    const REPLAYING: usize = 3;
    const EVENTS: usize = 40;
    const MB: usize = 1_000_000;
    const LIMIT_KB: u64 = 200 * 1024;
    let app = Binary::start(&[("SESSION_MANAGER_SERVER__MAX_BODY_BYTES", "4194304")]);
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "big", "working_directory": app.dir("big")}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["session"]["id"].as_str().unwrap().to_owned();
    let (rss_before, _) = memory_kb(app.pid());

    let mut silent = Vec::new();
    for _ in 0..NEVER_READING {
        silent.push(RawClient::connect(app.address.parse().unwrap(), Some(4096)).await);
    }
    let url = format!("ws://{}/ws/sessions", app.address);
    let (mut reader, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(recv(&mut reader).await["type"], "connected");
    until_clients(&app, NEVER_READING as u64 + 1, "all connected", PATIENCE).await;

    // Hook payloads of 1 MB each (context values are capped at 256 KiB), published and
    // logged as `session_hook` events. The reading client gets each event before the next
    // is posted: it is never the slow one.
    let output = "x".repeat(MB);
    let hooks = format!("/api/claude/sessions/{id}/events");
    for n in 0..EVENTS {
        let hook = json!({"hook_event_name": "PostToolUse", "n": n, "tool_output": output});
        let (status, body) = app.post(&hooks, &hook).await;
        assert_eq!(status, 202, "{body}");
        let (event, _) = recv_until(&mut reader, "session_hook").await;
        let payload = &event["data"]["payload"];
        assert_eq!(payload["n"], n, "{}", event["data"]["hook_event_name"]);
        assert_eq!(payload["tool_output"].as_str().map(str::len), Some(MB));
    }
    until_clients(&app, 1, "the silent clients closed", PATIENCE).await;
    let mut close_frames = 0;
    for client in &mut silent {
        let (close, texts) = client.until_gone().await;
        assert!(texts < EVENTS, "a silent client got all {texts} events");
        // Its socket was full, so the frame may not have reached it; when it did, it says
        // where to resume.
        if let Some((code, reason)) = close {
            assert_eq!(code, 1008, "{reason}");
            assert!(reason.contains("since="), "{reason}");
            close_frames += 1;
        }
    }
    let (_, peak_live) = memory_kb(app.pid());

    // Three more replay the whole log (40 MB of hooks) and read nothing either.
    let mut replaying = Vec::new();
    for _ in 0..REPLAYING {
        let mut client = RawClient::connect(app.address.parse().unwrap(), Some(4096)).await;
        client
            .send_text(r#"{"type":"subscribe","topics":["sessions"],"since":0}"#)
            .await;
        replaying.push(client);
    }
    until_clients(
        &app,
        REPLAYING as u64 + 1,
        "the replaying clients connected",
        PATIENCE,
    )
    .await;
    // A replay waits up to 10 s for room before its client counts as slow.
    let replay_stall = Duration::from_secs(10);
    until_clients(
        &app,
        1,
        "the replaying clients closed",
        replay_stall + PATIENCE,
    )
    .await;
    for client in &mut replaying {
        let (_, texts) = client.until_gone().await;
        assert!(texts < EVENTS, "a silent client got the whole replay");
    }

    // The reading client is still served.
    send(&mut reader, json!({"type": "ping"})).await;
    assert_eq!(recv_until(&mut reader, "pong").await.0["type"], "pong");
    let (rss_after, peak) = memory_kb(app.pid());
    eprintln!(
        "server memory: RSS {rss_before} kB before, {rss_after} kB after; peak {peak_live} kB \
         with {NEVER_READING} silent clients and {EVENTS} events of 1 MB, {peak} kB after \
         {REPLAYING} silent replays; {close_frames} of the silent clients got their close frame"
    );
    assert!(
        peak < LIMIT_KB,
        "the server's RSS peaked at {peak} kB (limit {LIMIT_KB} kB)"
    );
}
