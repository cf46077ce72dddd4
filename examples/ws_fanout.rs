//! WebSocket fan-out latency: many clients on `/ws/sessions`, each event timed from its
//! publication (the `timestamp` the server stamps when it publishes) to its arrival at every
//! client. Run by `benches/ws_fanout.sh`, which starts the server; it works against any.
//!
//! ```text
//! cargo run --release --example ws_fanout -- [--url URL] [--clients N] [--mode sessions|alerts]
//!                                            [--events N] [--seconds S] [--session FILE]
//! ```
//! - `--url`: the server (default `SESSION_MANAGER_URL`, else `http://127.0.0.1:8082`); the
//!   token is `SESSION_MANAGER_TOKEN`, as for `api_client`.
//! - `--clients` (default 1000) connect, each keeping only the topic measured (`sessions` or
//!   `alerts`); the soft limit on open files is raised to the hard one first.
//! - `--mode sessions` (default): `--events` times (default 20) a session is created, then
//!   purged, once every client received its `session_created`; every `sessions` event
//!   (created, terminated, purged) is measured.
//! - `--mode alerts`: one session is created from the JSON body in `--session FILE` (default:
//!   a BACKEND agent with `max_memory_mb: 16`, for a server whose BACKEND template allocates
//!   more), and every `alert` / `alert_resolved` published during the next `--seconds` (default
//!   15) is measured; then the session is purged.
//!
//! Only events published once every client is subscribed count. Prints the latency
//! percentiles over all receipts (clients × events), per event kind and per event; exits 1
//! when a client missed an event or nothing was measured. Both ends run on the same machine
//! and clock: the client's own CPU use (1,000 sockets read on the same cores) is part of
//! what is measured.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use futures::SinkExt;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connections being opened at once.
const CONNECT_CONCURRENCY: usize = 64;
/// Bound on one connection's handshake and subscription, and on one event reaching all.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sessions,
    Alerts,
}

impl Mode {
    fn topic(self) -> &'static str {
        match self {
            Mode::Sessions => "sessions",
            Mode::Alerts => "alerts",
        }
    }
}

struct Options {
    url: String,
    token: Option<HeaderValue>,
    clients: usize,
    mode: Mode,
    events: usize,
    seconds: u64,
    session: Option<Value>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        url: std::env::var("SESSION_MANAGER_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8082".into()),
        token: None,
        clients: 1000,
        mode: Mode::Sessions,
        events: 20,
        seconds: 15,
        session: None,
    };
    if let Ok(token) = std::env::var("SESSION_MANAGER_TOKEN") {
        if !token.is_empty() {
            options.token = Some(
                HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "SESSION_MANAGER_TOKEN is not a valid header value")?,
            );
        }
    }
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| {
            text.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {text}"))
        };
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--clients" => options.clients = number(value()?)? as usize,
            "--events" => options.events = number(value()?)? as usize,
            "--seconds" => options.seconds = number(value()?)?,
            "--mode" => {
                options.mode = match value()?.as_str() {
                    "sessions" => Mode::Sessions,
                    "alerts" => Mode::Alerts,
                    other => return Err(format!("--mode: sessions or alerts, not {other}")),
                }
            }
            "--session" => {
                let file = value()?;
                let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
                options.session =
                    Some(serde_json::from_str(&text).map_err(|e| format!("{file}: {e}"))?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    options.url = options.url.trim_end_matches('/').to_owned();
    if options.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    Ok(options)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// What a client reads of an event; the rest (the session object) is skipped.
#[derive(Deserialize)]
struct Head {
    #[serde(rename = "type")]
    kind: String,
    timestamp: f64,
    seq: Option<u64>,
    session_id: Option<String>,
    data: Option<DataHead>,
}

/// An alert's `kind` (`memory_limit` from an agent, `memory_usage` … from the monitor).
#[derive(Deserialize)]
struct DataHead {
    kind: Option<String>,
}

/// Every receipt of one event.
#[derive(Debug, Default)]
struct Event {
    kind: String,
    session_id: Option<String>,
    published: f64,
    received: Vec<f64>,
}

type Receipts = Arc<Mutex<BTreeMap<u64, Event>>>;

#[tokio::main]
async fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    match run(options).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(options: Options) -> Result<bool, String> {
    let limit = raise_open_files();
    println!(
        "{} clients on {}/ws/sessions, topic {}, open-file limit {limit}; {} cores, load {}",
        options.clients,
        options.url,
        options.mode.topic(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );
    let started = Instant::now();
    let sockets: Vec<Socket> = stream::iter(0..options.clients)
        .map(|_| connect(&options))
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    println!(
        "connected and subscribed in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let receipts: Receipts = Arc::default();
    let from = now();
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| tokio::spawn(read(socket, receipts.clone(), from)))
        .collect();

    let http = reqwest::Client::builder()
        .timeout(PATIENCE)
        .build()
        .map_err(|e| e.to_string())?;
    let api = Api {
        http,
        base: options.url.clone(),
        token: options.token.clone(),
    };
    let work = tempfile::Builder::new()
        .prefix("ws-fanout-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let mut sent = Vec::new();
    match options.mode {
        Mode::Sessions => {
            for round in 0..options.events {
                let dir = work.path().join(format!("s{round}"));
                let body = json!({"name": format!("fanout {round}"),
                                  "working_directory": dir, "agents": []});
                let asked = now();
                let id = api.create(&body).await?;
                sent.push((id.clone(), asked));
                let all = wait_all(&receipts, "session_created", &id, options.clients).await;
                api.purge(&id).await?;
                let purged = wait_all(&receipts, "session_purged", &id, options.clients).await;
                if !(all && purged) {
                    println!("round {round}: not every client got the events in {PATIENCE:?}");
                }
            }
        }
        Mode::Alerts => {
            let body = options.session.clone().unwrap_or_else(|| {
                json!({"name": "fanout alerts", "working_directory": work.path().join("alerts"),
                       "agents": [{"agent_type": "BACKEND", "max_memory_mb": 16,
                                   "retry_attempts": 100}]})
            });
            let id = api.create(&body).await?;
            println!(
                "session {id} created; collecting alerts for {} s",
                options.seconds
            );
            tokio::time::sleep(Duration::from_secs(options.seconds)).await;
            api.purge(&id).await?;
            // The last alerts' stragglers.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    for reader in &readers {
        reader.abort();
    }
    drop(work);
    Ok(report(&receipts, options.clients, &sent))
}

/// Raises the soft limit on open files to the hard one; returns the limit now in force.
fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

/// Opens one connection and leaves it subscribed to the measured topic only.
async fn connect(options: &Options) -> Result<Socket, String> {
    let url = format!(
        "{}/ws/sessions",
        options
            .url
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(token) = &options.token {
        request.headers_mut().insert(AUTHORIZATION, token.clone());
    }
    let subscribe = async {
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        expect(&mut socket, "connected").await?;
        let others: Vec<&str> = ["sessions", "agents", "alerts"]
            .into_iter()
            .filter(|topic| *topic != options.mode.topic())
            .collect();
        let request = json!({"type": "unsubscribe", "topics": others});
        socket
            .send(Message::text(request.to_string()))
            .await
            .map_err(|e| format!("unsubscribe: {e}"))?;
        expect(&mut socket, "unsubscribed").await?;
        Ok(socket)
    };
    tokio::time::timeout(PATIENCE, subscribe)
        .await
        .map_err(|_| "a connection took too long".to_owned())?
}

/// Reads until a message of type `kind`; anything else before it is an error.
async fn expect(socket: &mut Socket, kind: &str) -> Result<(), String> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => {
                let head: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if head["type"] == kind {
                    return Ok(());
                }
                return Err(format!("expected {kind}, got {text}"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return Err(format!("expected {kind}, got {other:?}")),
        }
    }
}

/// One client: the arrival time of every numbered event published since `from`.
async fn read(mut socket: Socket, receipts: Receipts, from: f64) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        // Before parsing: the client's own work is not the server's latency.
        let arrived = now();
        let Ok(head) = serde_json::from_str::<Head>(&text) else {
            continue;
        };
        let Some(seq) = head.seq else { continue };
        if head.timestamp < from {
            continue;
        }
        let mut receipts = receipts.lock().unwrap_or_else(|e| e.into_inner());
        let kind = match head.data.and_then(|data| data.kind) {
            Some(detail) => format!("{}/{detail}", head.kind),
            None => head.kind,
        };
        let event = receipts.entry(seq).or_insert_with(|| Event {
            kind,
            session_id: head.session_id,
            published: head.timestamp,
            received: Vec::new(),
        });
        event.received.push(arrived);
    }
}

/// Waits until `clients` receipts of the `kind` event of session `id` are in.
async fn wait_all(receipts: &Receipts, kind: &str, id: &str, clients: usize) -> bool {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let done = receipts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|e| {
                e.kind == kind && e.session_id.as_deref() == Some(id) && e.received.len() >= clients
            });
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: Option<HeaderValue>,
}

impl Api {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, token.clone()),
            None => request,
        }
    }

    async fn create(&self, body: &Value) -> Result<String, String> {
        let response = self
            .request(reqwest::Method::POST, "/api/claude/sessions")
            .json(body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let answer: Value = response.json().await.map_err(|e| e.to_string())?;
        match answer["session"]["id"].as_str() {
            Some(id) if status.as_u16() == 201 => Ok(id.to_owned()),
            _ => Err(format!("create: {status} {answer}")),
        }
    }

    async fn purge(&self, id: &str) -> Result<(), String> {
        let path = format!("/api/claude/sessions/{id}?purge=true");
        let response = self
            .request(reqwest::Method::DELETE, &path)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match response.status().as_u16() {
            200 => Ok(()),
            status => Err(format!("purge {id}: {status}")),
        }
    }
}

/// Prints the percentiles; false when a client missed an event or nothing was measured.
fn report(receipts: &Receipts, clients: usize, sent: &[(String, f64)]) -> bool {
    let receipts = receipts.lock().unwrap_or_else(|e| e.into_inner());
    let mut all = Vec::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut complete = true;
    println!("per event: seq kind receipts/clients p50 p99 max (ms, publish → receipt)");
    for (seq, event) in receipts.iter() {
        let mut latencies: Vec<f64> = event
            .received
            .iter()
            .map(|at| (at - event.published) * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);
        if event.received.len() < clients {
            complete = false;
        }
        println!(
            "  {seq} {} {}/{clients} {:.2} {:.2} {:.2}",
            event.kind,
            event.received.len(),
            percentile(&latencies, 50.0),
            percentile(&latencies, 99.0),
            latencies.last().copied().unwrap_or(f64::NAN)
        );
        by_kind
            .entry(event.kind.as_str())
            .or_default()
            .extend(&latencies);
        all.extend(latencies);
    }
    for latencies in by_kind.values_mut() {
        latencies.sort_by(f64::total_cmp);
    }
    all.sort_by(f64::total_cmp);
    for (kind, latencies) in &by_kind {
        summary(kind, latencies);
    }
    summary("all", &all);
    // The create request, as a client of the API sees it: asked → every client has it.
    let mut created = Vec::new();
    for (id, asked) in sent {
        if let Some(event) = receipts
            .values()
            .find(|e| e.kind == "session_created" && e.session_id.as_deref() == Some(id.as_str()))
        {
            created.extend(event.received.iter().map(|at| (at - asked) * 1000.0));
        }
    }
    if !created.is_empty() {
        created.sort_by(f64::total_cmp);
        summary("POST /sessions sent → session_created received", &created);
    }
    if !complete {
        println!("INCOMPLETE: some clients missed events");
    }
    println!("load after: {}", load());
    complete && !all.is_empty()
}

fn summary(what: &str, sorted: &[f64]) {
    println!(
        "{what}: {} receipts, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sorted.len(),
        percentile(sorted, 50.0),
        percentile(sorted, 90.0),
        percentile(sorted, 99.0),
        sorted.last().copied().unwrap_or(f64::NAN)
    );
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
