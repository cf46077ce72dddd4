//! Terminal agents through the real server, each figure beside its baseline from the same run:
//!
//! - keystroke to echo: a line typed into an echoing program and the program's answer seen,
//!   p50 and p99 over `TERMINAL_BENCH_ROUNDS` × 100 lines, three ways interleaved round by
//!   round so they share the machine's noise:
//!   1. **bare PTY** (the baseline): the program spawned on a pseudo-terminal by
//!      `supervision::process` in this process, its master written and read directly;
//!   2. **WebSocket**: a viewer of `/ws/sessions/{id}/agents/{name}/terminal` sends the line as
//!      a binary frame and reads output frames until the answer;
//!   3. **API**: `POST …/input` then `GET …/screen` back to back until the answer is on the
//!      screen;
//! - memory: the server's RSS with no terminal agent, with 50 idle terminal agents whose 1 MiB
//!   scrollback is full, and with 50 viewers attached to them (per agent, per viewer).
//!
//! ```text
//! cargo bench --bench terminal
//! ```
//! The program is a `sh` read loop (the same for all three ways): `you said: <line>` for each
//! line. Nothing is asserted; the figures go to BENCHMARKS.md.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use supervision::process::{Command, Output, Pty, TerminalSize};
use tokio_tungstenite::tungstenite::Message;

/// The echoing program: one answer per line read.
const PROGRAM: &str = r#"echo ready
while read -r line; do echo "you said: $line"; done"#;

/// Prints `bytes` of output (in lines of 100), then waits: a full scrollback.
const FILLER: &str = r#"i=0; line=$(printf '%099d' 0)
while [ $i -lt $((BYTES / 100)) ]; do echo "$line"; i=$((i + 1)); done
echo filled; exec sleep 100000"#;

const LINES_PER_ROUND: usize = 100;
const MIB: usize = 1024 * 1024;
const IDLE_AGENTS: usize = 50;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Server {
    child: Child,
    address: String,
    client: reqwest::Client,
    _dirs: [tempfile::TempDir; 2],
}

impl Server {
    fn start() -> Server {
        let (home, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut child = Process::new(env!("CARGO_BIN_EXE_session-manager"))
            .env("HOME", home.path())
            .env("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true")
            .env("SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND", "1000000")
            .args(["--port", "0", "--data-dir"])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("session-manager listening on http://")
            .expect("the listening line")
            .to_owned();
        Server {
            child,
            address,
            client: reqwest::Client::new(),
            _dirs: [home, data],
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        response.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A session with `agents` programs on terminals; its id once every screen shows `ready`.
    async fn session(&self, agents: usize, script: &str, ready: &str) -> String {
        let agents: Vec<Value> = (0..agents)
            .map(|i| {
                json!({"agent_type": "backend", "name": format!("t{i}"), "depends_on": [],
                       "command": ["sh", "-c", script], "terminal": true})
            })
            .collect();
        let work = tempfile::tempdir().unwrap().keep();
        let body = self
            .post(
                "/api/claude/sessions",
                &json!({"name": "bench", "working_directory": work, "max_agents": 100,
                        "agents": agents}),
            )
            .await;
        let id = body["session"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("not created: {body}"))
            .to_owned();
        for i in 0..agents.len() {
            let path = format!("/api/claude/sessions/{id}/agents/t{i}/screen");
            while !self.get(&path).await["lines"].to_string().contains(ready) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        id
    }

    fn rss_mib(&self) -> f64 {
        rss_kib(self.child.id()) as f64 / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

/// Reads `pty` until its output contains `wanted`.
async fn pty_until(pty: &Pty, seen: &mut Vec<u8>, wanted: &[u8]) {
    let mut buffer = [0u8; 4096];
    while !contains(seen, wanted) {
        let n = pty.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the program ended");
        seen.extend_from_slice(&buffer[..n]);
    }
}

async fn socket_until(socket: &mut Socket, seen: &mut Vec<u8>, wanted: &[u8]) {
    while !contains(seen, wanted) {
        match socket.next().await {
            Some(Ok(Message::Binary(bytes))) => seen.extend_from_slice(&bytes),
            Some(Ok(_)) => {}
            other => panic!("the viewer ended: {other:?}"),
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// One line typed and its answer seen, `rounds` × [`LINES_PER_ROUND`] times each way.
async fn latency(server: &Server, rounds: usize) -> [Vec<Duration>; 3] {
    let spawned = Command::new("sh")
        .args(["-c", PROGRAM])
        .terminal(TerminalSize::new(40, 120))
        .spawn()
        .unwrap();
    let (_process, Output::Terminal(pty)) = spawned.watch(|_| ()) else {
        unreachable!("a terminal child")
    };
    let mut seen = Vec::new();
    pty_until(&pty, &mut seen, b"ready").await;

    let id = server.session(1, PROGRAM, "ready").await;
    let url = format!(
        "ws://{}/ws/sessions/{id}/agents/t0/terminal",
        server.address
    );
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap();
    let mut frames = Vec::new();
    socket_until(&mut socket, &mut frames, b"ready").await;
    let input = format!("/api/claude/sessions/{id}/agents/t0/input");
    let screen = format!("/api/claude/sessions/{id}/agents/t0/screen");

    let mut times: [Vec<Duration>; 3] = Default::default();
    let mut n = 0usize;
    for _ in 0..rounds {
        for _ in 0..LINES_PER_ROUND {
            n += 1;
            let answer = format!("you said: bare{n}");
            let start = Instant::now();
            pty.write_all(format!("bare{n}\r").as_bytes())
                .await
                .unwrap();
            pty_until(&pty, &mut seen, answer.as_bytes()).await;
            times[0].push(start.elapsed());
            seen.clear();
        }
        for _ in 0..LINES_PER_ROUND {
            n += 1;
            let answer = format!("you said: ws{n}");
            let start = Instant::now();
            socket
                .send(Message::binary(format!("ws{n}\r").into_bytes()))
                .await
                .unwrap();
            socket_until(&mut socket, &mut frames, answer.as_bytes()).await;
            times[1].push(start.elapsed());
            frames.clear();
        }
        for _ in 0..LINES_PER_ROUND {
            n += 1;
            let answer = format!("you said: api{n}");
            let start = Instant::now();
            server
                .post(&input, &json!({"text": format!("api{n}"), "submit": true}))
                .await;
            while !server.get(&screen).await["lines"]
                .to_string()
                .contains(&answer)
            {}
            times[2].push(start.elapsed());
        }
        // The viewer saw the API's lines too: drop them before the next round.
        socket_until(
            &mut socket,
            &mut frames,
            format!("you said: api{n}").as_bytes(),
        )
        .await;
        frames.clear();
    }
    times
}

fn percentile(times: &mut [Duration], p: f64) -> f64 {
    times.sort();
    let index = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[index].as_secs_f64() * 1e6
}

async fn memory(server: &Server) -> (f64, f64, f64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let empty = server.rss_mib();
    let filler = FILLER.replace("BYTES", &MIB.to_string());
    let id = server.session(IDLE_AGENTS, &filler, "filled").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let filled = server.rss_mib();
    let mut viewers = Vec::new();
    for i in 0..IDLE_AGENTS {
        let url = format!(
            "ws://{}/ws/sessions/{id}/agents/t{i}/terminal",
            server.address
        );
        let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .unwrap();
        let mut seen = Vec::new();
        socket_until(&mut socket, &mut seen, b"filled").await;
        viewers.push(socket);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let viewed = server.rss_mib();
    drop(viewers);
    (empty, filled, viewed)
}

fn main() {
    let rounds: usize = std::env::var("TERMINAL_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let server = Server::start();
        let [mut bare, mut ws, mut api] = latency(&server, rounds).await;
        println!("keystroke to echo, {} lines each way ({} rounds interleaved), µs:", bare.len(), rounds);
        println!("| path | p50 | p99 |\n|---|---|---|");
        for (name, times) in [
            ("bare PTY (baseline)", &mut bare),
            ("WebSocket viewer", &mut ws),
            ("API input → screen", &mut api),
        ] {
            println!("| {name} | {:.0} | {:.0} |", percentile(times, 0.5), percentile(times, 0.99));
        }
        drop(server);

        let server = Server::start();
        let (empty, filled, viewed) = memory(&server).await;
        println!("\nserver RSS, MiB: no terminal {empty:.1}; {IDLE_AGENTS} idle terminal agents with a full 1 MiB scrollback {filled:.1}; {IDLE_AGENTS} viewers attached {viewed:.1}");
        println!(
            "per idle terminal agent {:.2} MiB; per viewer {:.3} MiB",
            (filled - empty) / IDLE_AGENTS as f64,
            (viewed - filled) / IDLE_AGENTS as f64
        );
    });
}
