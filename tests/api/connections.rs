//! Nobody can starve the server of connections (issue 19, item 3), through the real binary:
//! slow clients (slowloris heads, bodies shorter than their Content-Length) are closed at
//! their deadlines while `/health` answers; connections over `server.max_connections` or the
//! per-address cap are refused at once with a 503 envelope; a WebSocket outlives the idle
//! timeout but counts against the caps; and out of file descriptors, the server sheds new
//! connections and accepts again once descriptors are free.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use common::app::App;
use common::PATIENCE;

/// Slow connections of each kind in the slowloris test: 2,000 in all.
const SLOW_EACH: usize = 1000;
/// How long any connection may take to be closed or answered: far beyond every deadline the
/// tests configure, so only a server that never closes it comes near.
const CLOSE_PATIENCE: Duration = Duration::from_secs(120);

/// A server with these `[server]` settings.
fn start(server: &str) -> App {
    App::with_config(&format!("[server]\n{server}"))
}

fn addr(app: &App) -> SocketAddr {
    app.address.parse().unwrap()
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (the server inherits it), or
/// fails saying what is needed.
fn allow_open_files(needed: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= needed {
        return;
    }
    assert!(
        hard >= needed,
        "this test needs {needed} open files, but the hard RLIMIT_NOFILE is {hard}: raise it \
         (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE= in the service running the tests)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
}

/// A connection from `source` (any address of 127/8: all are loopback on Linux).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Everything the server sends until it closes the connection (a reset counts as a close),
/// bounded by [`CLOSE_PATIENCE`].
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(CLOSE_PATIENCE, async {
        let mut buffer = [0u8; 4096];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open: {}",
        String::from_utf8_lossy(&received)
    );
    received
}

/// The status and JSON body of a whole response.
fn parse(response: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A refusal for want of a connection slot, naming the setting that was reached.
fn assert_too_many(response: &[u8], field: &str) {
    let (status, body) = parse(response);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["success"], false, "{body}");
    assert!(body["timestamp"].is_f64(), "{body}");
    assert_eq!(body["error_code"], "too_many_connections", "{body}");
    assert_eq!(body["details"]["field"], field, "{body}");
    assert!(
        String::from_utf8_lossy(response)
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 1\r\n"),
        "{}",
        String::from_utf8_lossy(response)
    );
}

/// `GET /health` on a new connection (no pooled one, which would bypass the accept): its
/// status, or `None` if the connection failed.
async fn health(app: &App) -> Option<u16> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, client.get(app.url("/health")).send())
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}

/// Polls (bounded) until `/health` answers 200.
async fn wait_healthy(app: &App) {
    let deadline = Instant::now() + PATIENCE;
    while health(app).await != Some(200) {
        assert!(
            Instant::now() < deadline,
            "/health never answered 200 again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_slow_clients_are_closed_at_their_deadlines_while_health_answers() {
    allow_open_files(2 * SLOW_EACH as u64 + 512);
    let app = start(
        "header_read_timeout_ms = 3000\nbody_read_timeout_ms = 3000\nidle_timeout_ms = 60000\n\
         max_connections = 4096\nmax_connections_per_address = 4096\n",
    );
    let to = addr(&app);
    // Heads that never end, and bodies shorter than their Content-Length.
    let mut slow_heads = Vec::new();
    let mut slow_bodies = Vec::new();
    for _ in 0..SLOW_EACH {
        let mut head = TcpStream::connect(to).await.unwrap();
        head.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow_heads.push(head);
        let mut body = TcpStream::connect(to).await.unwrap();
        body.write_all(
            b"POST /api/claude/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"name\":",
        )
        .await
        .unwrap();
        slow_bodies.push(body);
    }
    // Every one of them still held by its client: the server answers everyone else.
    for _ in 0..5 {
        assert_eq!(health(&app).await, Some(200));
    }
    let heads = slow_heads
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { read_until_closed(&mut stream).await }));
    let bodies = slow_bodies
        .into_iter()
        .map(|mut stream| tokio::spawn(async move { read_until_closed(&mut stream).await }));
    let heads: Vec<_> = heads.collect();
    let bodies: Vec<_> = bodies.collect();
    for head in heads {
        // Closed without an answer: there was no request to answer.
        let received = head.await.unwrap();
        assert!(
            received.is_empty(),
            "{}",
            String::from_utf8_lossy(&received)
        );
    }
    for body in bodies {
        let (status, body) = parse(&body.await.unwrap());
        assert_eq!(status, 408, "{body}");
        assert_eq!(body["error_code"], "request_timeout", "{body}");
        assert_eq!(
            body["details"]["field"], "server.body_read_timeout_ms",
            "{body}"
        );
    }
    assert_eq!(health(&app).await, Some(200));
}

#[tokio::test]
async fn connections_over_the_caps_are_refused_at_once_and_a_websocket_counts() {
    let app = start("max_connections = 6\nmax_connections_per_address = 3\n");
    let to = addr(&app);
    // A WebSocket and two idle connections: 127.0.0.1 is at its cap.
    let (websocket, _) = tokio_tungstenite::connect_async(format!("ws://{to}/ws/sessions"))
        .await
        .unwrap();
    let mut held = vec![
        connect_from("127.0.0.1", to).await,
        connect_from("127.0.0.1", to).await,
    ];
    let mut over = connect_from("127.0.0.1", to).await;
    assert_too_many(
        &read_until_closed(&mut over).await,
        "server.max_connections_per_address",
    );
    // Another client still gets in, up to the total cap.
    for _ in 0..3 {
        held.push(connect_from("127.0.0.2", to).await);
    }
    let mut over = connect_from("127.0.0.3", to).await;
    assert_too_many(
        &read_until_closed(&mut over).await,
        "server.max_connections",
    );
    // A slot given back is free again (the server notices the close: bounded polling).
    drop(websocket);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut stream = connect_from("127.0.0.3", to).await;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (status, body) = parse(&read_until_closed(&mut stream).await);
        if status == 200 {
            break;
        }
        assert_eq!(body["error_code"], "too_many_connections", "{body}");
        assert!(Instant::now() < deadline, "the slot was never given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(held);
}

#[tokio::test]
async fn an_idle_connection_is_closed_but_a_websocket_is_not() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let app = start("idle_timeout_ms = 500\n");
    let to = addr(&app);
    let (mut websocket, _) = tokio_tungstenite::connect_async(format!("ws://{to}/ws/sessions"))
        .await
        .unwrap();
    // A connection that answered one request, then says nothing: closed at its deadline.
    let mut idle = TcpStream::connect(to).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = parse(&read_until_closed(&mut idle).await);
    assert_eq!(status, 200);
    // The WebSocket, as idle for as long, still answers a ping.
    websocket
        .send(Message::Ping(b"still there?".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            match websocket.next().await {
                Some(Ok(Message::Pong(payload))) => return payload.to_vec(),
                Some(Ok(_)) => {}
                other => panic!("the WebSocket was closed: {other:?}"),
            }
        }
    })
    .await
    .expect("no pong");
    assert_eq!(pong, b"still there?");
}

/// Open descriptors of process `pid`.
fn open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count() as u64
}

/// Sets the soft RLIMIT_NOFILE of another process (the server) to `soft`.
fn limit_open_files(pid: u32, soft: u64) {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: prlimit reads `limit`, a valid rlimit, and writes nothing (old_limit is null).
    let result = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn out_of_descriptors_it_sheds_connections_and_then_accepts_again() {
    let app = start("max_connections = 1024\nmax_connections_per_address = 1024\n");
    assert_eq!(health(&app).await, Some(200));
    let to = addr(&app);
    // Room for a few connections more than are open now, then none.
    let room = 20;
    limit_open_files(app.pid(), open_files(app.pid()) + room);
    let mut idle = Vec::new();
    let mut shed = None;
    for _ in 0..(room * 3) {
        let mut stream = TcpStream::connect(to).await.unwrap();
        // Served connections stay silent; a shed one is answered and closed at once.
        let mut buffer = [0u8; 4096];
        match tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {
                shed = Some(buffer[..n].to_vec());
                break;
            }
            _ => idle.push(stream),
        }
    }
    let shed = shed.expect("the server never ran out of descriptors");
    assert_too_many(&shed, "server.max_connections");
    // Clients see the server full, not hung.
    assert_ne!(health(&app).await, Some(200));
    drop(idle);
    wait_healthy(&app).await;
    // Logged once, not once per failed accept.
    let log = std::fs::read_to_string(app.data().join("logs/session_manager.log")).unwrap();
    let lines = log
        .lines()
        .filter(|line| line.contains("cannot accept connections"))
        .count();
    assert!((1..=2).contains(&lines), "{lines} lines:\n{log}");
}
