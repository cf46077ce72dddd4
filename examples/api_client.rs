//! The original service's `examples/api_client_example.py`, in Rust: a tour of every route
//! of a running session-manager, and of `/ws/sessions` while it happens.
//!
//! ```text
//! cargo run --example api_client -- [URL]
//! ```
//! The server is `URL`, else `SESSION_MANAGER_URL`, else `http://127.0.0.1:8082`; the token
//! (`SESSION_MANAGER_TOKEN`, when set) is sent as `Authorization: Bearer`, on the WebSocket
//! upgrade too. The server must see this machine's file system: the sessions work in a
//! temporary directory created here.
//!
//! Each step prints `ok` or `FAIL`, its status, method and path, and the fields that matter;
//! the WebSocket's messages are printed as they arrive (`ws ←`). Every session it creates is
//! purged and the temporary directory removed, whatever failed. Exits 1 if any step failed
//! (the WebSocket must have seen each session created and purged), 2 if it could not start.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const DEFAULT_URL: &str = "http://127.0.0.1:8082";
/// Bound on any single request, and on waiting for a WebSocket message.
const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> ExitCode {
    let base = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("SESSION_MANAGER_URL").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let base = base.trim_end_matches('/').to_owned();
    let token = std::env::var("SESSION_MANAGER_TOKEN")
        .ok()
        .filter(|token| !token.is_empty());
    let work = match tempfile::Builder::new().prefix("api-client-").tempdir() {
        Ok(dir) => dir,
        Err(error) => {
            eprintln!("cannot create a temporary directory: {error}");
            return ExitCode::from(2);
        }
    };
    println!("server  {base}");
    println!("workdir {}", work.path().display());
    let mut tour = match Tour::new(&base, token.as_deref()) {
        Ok(tour) => tour,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let dir = |name: &str| work.path().join(name).to_string_lossy().into_owned();

    tour.run(&dir).await;
    tour.clean_up().await;
    drop(work);

    if tour.failures.is_empty() {
        println!("all steps passed");
        ExitCode::SUCCESS
    } else {
        println!("{} step(s) failed:", tour.failures.len());
        for failure in &tour.failures {
            println!("  {failure}");
        }
        ExitCode::FAILURE
    }
}

struct Tour {
    http: reqwest::Client,
    base: String,
    token: Option<HeaderValue>,
    ws: Option<Ws>,
    /// Sessions created here, purged at the end.
    created: Vec<String>,
    failures: Vec<String>,
}

impl Tour {
    fn new(base: &str, token: Option<&str>) -> Result<Tour, String> {
        let http = reqwest::Client::builder()
            .timeout(PATIENCE)
            .build()
            .map_err(|error| format!("cannot build an HTTP client: {error}"))?;
        let token = token
            .map(|token| HeaderValue::from_str(&format!("Bearer {token}")))
            .transpose()
            .map_err(|_| "SESSION_MANAGER_TOKEN is not a valid header value".to_owned())?;
        Ok(Tour {
            http,
            base: base.to_owned(),
            token,
            ws: None,
            created: Vec::new(),
            failures: Vec::new(),
        })
    }

    fn record(&mut self, label: &str, outcome: Outcome) -> bool {
        match outcome {
            Ok(fields) => {
                println!("ok    {label}  {fields}");
                true
            }
            Err(why) => {
                println!("FAIL  {label}  {why}");
                self.failures.push(format!("{label}: {why}"));
                false
            }
        }
    }

    /// Sends a request and reads the answer as text: (status, body).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, token.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| format!("unreadable body: {e}"))?;
        Ok((status, text))
    }

    /// One API call that must answer `want` with the success envelope; `show` picks and
    /// checks the fields of the payload. Returns the payload when all went well.
    async fn step(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        want: u16,
        show: impl FnOnce(&Value) -> Outcome,
    ) -> Option<Value> {
        let label = format!("{want} {method} {path}");
        let answer = self.send(method, path, body.as_ref()).await;
        let outcome = answer.and_then(|(status, text)| {
            let payload: Value = serde_json::from_str(&text)
                .map_err(|_| format!("{status}, not JSON: {}", clip(&text)))?;
            if status != want || payload["success"] != true {
                return Err(format!(
                    "{status} {}: {}",
                    payload["error_code"].as_str().unwrap_or("?"),
                    payload["error"].as_str().unwrap_or("")
                ));
            }
            if payload["data"].is_null() {
                return Err("no `data` in the envelope".to_owned());
            }
            Ok(payload)
        });
        match outcome {
            Ok(payload) => {
                let shown = show(&payload);
                self.record(&label, shown).then_some(payload)
            }
            Err(why) => {
                self.record(&label, Err(why));
                None
            }
        }
    }

    async fn run(&mut self, dir: &dyn Fn(&str) -> String) {
        // The WebSocket first, so it sees everything the tour does.
        self.open_websocket().await;

        self.step(Method::GET, "/health", None, 200, |p| {
            Ok(format!(
                "status={} version={} uptime={:.1}s",
                field(p, "status")?,
                field(p, "version")?,
                p["uptime_seconds"].as_f64().ok_or("no uptime_seconds")?
            ))
        })
        .await;
        self.openapi().await;
        self.step(Method::GET, "/api/claude/agent-types", None, 200, |p| {
            let types = p["agent_types"].as_object().ok_or("no agent_types")?;
            if types.len() != 12 {
                return Err(format!("{} agent types, want 12", types.len()));
            }
            Ok(format!(
                "{} types: {}",
                types.len(),
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
        .await;
        let project = dir("project");
        self.step(
            Method::POST,
            "/api/claude/validate-path",
            Some(json!({"path": project})),
            200,
            |p| {
                let v = &p["validation"];
                Ok(format!(
                    "valid={} exists={} writable={} warnings={}",
                    v["valid"], v["exists"], v["writable"], v["warnings"]
                ))
            },
        )
        .await;
        self.step(
            Method::POST,
            "/api/claude/validate-paths",
            Some(json!({"paths": [project, "/etc"]})),
            200,
            |p| {
                let summary = &p["summary"];
                if summary["valid"] != 1 || summary["invalid"] != 1 {
                    return Err(format!("summary {summary}, want 1 valid and 1 invalid"));
                }
                Ok(format!("summary={summary}"))
            },
        )
        .await;
        let start_seq = self.last_seq().await;

        // The seed's own example, with two logical agents (no command: any server runs them).
        let created = self
            .step(
                Method::POST,
                "/api/claude/sessions",
                Some(json!({
                    "name": "api-client tour",
                    "working_directory": project,
                    "description": "created by examples/api_client.rs",
                    "agents": [
                        {"agent_type": "ORCHESTRATOR"},
                        {"agent_type": "BACKEND", "name": "backend-services", "enabled": true, "priority": 2}
                    ],
                    "environment_variables": {"NODE_ENV": "development"},
                    "tags": ["api-client"]
                })),
                201,
                |p| {
                    let s = &p["session"];
                    Ok(format!(
                        "id={} status={} agents={}",
                        field(s, "id")?,
                        field(s, "status")?,
                        s["agents"].as_array().map_or(0, Vec::len)
                    ))
                },
            )
            .await;
        let Some(id) = created.and_then(|p| p["session"]["id"].as_str().map(str::to_owned)) else {
            self.failures
                .push("no session: the session steps were skipped".to_owned());
            return;
        };
        self.created.push(id.clone());
        if let Some(ws) = &mut self.ws {
            ws.send(json!({"type": "subscribe_session", "session_id": id}))
                .await;
        }
        self.session_steps(&id, dir).await;

        self.step(Method::GET, "/api/claude/analytics", None, 200, |p| {
            let a = &p["analytics"];
            Ok(format!(
                "total_sessions={} active_sessions={} status_distribution={}",
                a["total_sessions"], a["active_sessions"], a["status_distribution"]
            ))
        })
        .await;
        self.step(Method::GET, "/api/claude/system-status", None, 200, |p| {
            let s = &p["system_status"];
            Ok(format!(
                "uptime={:.1}s websocket_clients={} agent types={}",
                s["uptime_seconds"].as_f64().unwrap_or(f64::NAN),
                s["monitoring"]["websocket_clients"],
                s["agents"]["available_types"]
            ))
        })
        .await;
        self.prometheus().await;

        // Terminate, then purge, every session of the tour.
        for id in self.created.clone() {
            let path = format!("/api/claude/sessions/{id}");
            self.step(Method::DELETE, &path, None, 200, |p| {
                Ok(format!("status={}", field(&p["session"], "status")?))
            })
            .await;
            let purged = self
                .step(
                    Method::DELETE,
                    &format!("{path}?purge=true"),
                    None,
                    200,
                    |_| Ok("purged".to_owned()),
                )
                .await;
            if purged.is_some() {
                self.gone(&id).await;
            }
        }
        self.step(
            Method::GET,
            &format!("/api/claude/events?since={start_seq}&limit=1000"),
            None,
            200,
            |p| {
                let events = p["events"].as_array().ok_or("no events")?;
                let mut kinds: Vec<&str> =
                    events.iter().filter_map(|e| e["type"].as_str()).collect();
                kinds.dedup();
                if !kinds.contains(&"session_created") || !kinds.contains(&"session_purged") {
                    return Err(format!("the log lacks the tour's lifecycle: {kinds:?}"));
                }
                Ok(format!(
                    "{} events since {start_seq}, last_seq={} has_more={}: {}",
                    events.len(),
                    p["last_seq"],
                    p["has_more"],
                    kinds.join(" ")
                ))
            },
        )
        .await;
        self.check_websocket().await;
    }

    /// Every route under `/sessions/{id}`, and the sessions cloned and imported from it.
    async fn session_steps(&mut self, id: &str, dir: &dyn Fn(&str) -> String) {
        let base = format!("/api/claude/sessions/{id}");
        self.step(
            Method::GET,
            "/api/claude/sessions?tag=api-client&sort=-created_at",
            None,
            200,
            |p| {
                let total = p["total"].as_u64().ok_or("no total")?;
                if total < 1 {
                    return Err("the new session is not listed".to_owned());
                }
                Ok(format!(
                    "total={total} limit={} offset={}",
                    p["limit"], p["offset"]
                ))
            },
        )
        .await;
        self.step(Method::GET, &base, None, 200, |p| {
            Ok(format!(
                "status={} agent_statuses={} valid={}",
                field(&p["session"], "status")?,
                p["agent_statuses"],
                p["session"]["validation"]["valid"]
            ))
        })
        .await;
        self.step(
            Method::PUT,
            &base,
            Some(json!({"description": "updated by the tour", "tags": ["api-client", "updated"]})),
            200,
            |p| {
                let s = &p["session"];
                if s["configuration"]["description"] != "updated by the tour" {
                    return Err(format!("description not updated: {}", s["configuration"]));
                }
                Ok(format!("tags={}", s["tags"]))
            },
        )
        .await;
        let other = dir("other");
        self.step(
            Method::POST,
            &format!("{base}/navigate"),
            Some(json!({"path": other, "validate_permissions": true, "update_git_state": true})),
            200,
            |p| {
                let now = &p["session"]["configuration"]["working_directory"];
                if now.as_str() != Some(other.as_str()) {
                    return Err(format!("working_directory is {now}, want {other}"));
                }
                Ok(format!(
                    "working_directory={now} valid={}",
                    p["validation"]["valid"]
                ))
            },
        )
        .await;
        self.step(Method::GET, &format!("{base}/agents"), None, 200, |p| {
            Ok(format!(
                "configured={} active={} statuses={}",
                p["configured_agents"], p["active_agents"], p["agent_statuses"]
            ))
        })
        .await;
        for (op, word) in [
            ("deactivate", "deactivated"),
            ("activate", "activated"),
            ("restart", "restarted"),
        ] {
            self.step(
                Method::POST,
                &format!("{base}/agents/backend-services/{op}"),
                None,
                200,
                |p| {
                    if p["status"] != word {
                        return Err(format!("status {}, want {word}", p["status"]));
                    }
                    Ok(format!(
                        "status={} agent.status={}",
                        p["status"], p["agent"]["status"]
                    ))
                },
            )
            .await;
        }
        self.step(
            Method::GET,
            &format!("{base}/agents/backend-services/logs?tail=20"),
            None,
            200,
            |p| {
                let lines = p["lines"].as_array().ok_or("no lines")?;
                Ok(format!(
                    "{} lines (a logical agent prints none)",
                    lines.len()
                ))
            },
        )
        .await;
        self.step(
            Method::GET,
            &format!("{base}/metrics?hours=1"),
            None,
            200,
            |p| {
                let summary = &p["summary"];
                Ok(format!(
                    "duration_hours={:.4} total_data_points={}",
                    summary["duration_hours"].as_f64().unwrap_or(f64::NAN),
                    summary["total_data_points"]
                ))
            },
        )
        .await;
        self.step(Method::GET, &format!("{base}/status"), None, 200, |p| {
            Ok(format!(
                "status={} active_agents={} alerts={}",
                field(p, "status")?,
                p["active_agents"],
                p["alerts"].as_array().map_or(0, Vec::len)
            ))
        })
        .await;

        let key = format!("{base}/context/plan");
        self.step(
            Method::PUT,
            &key,
            Some(json!({"value": {"step": 1, "todo": ["tour"]}})),
            200,
            |p| Ok(format!("key={} previous={}", p["key"], p["previous"])),
        )
        .await;
        self.step(Method::GET, &key, None, 200, |p| {
            if p["value"]["step"] != 1 {
                return Err(format!("value {}, want step 1", p["value"]));
            }
            Ok(format!("value={}", p["value"]))
        })
        .await;
        self.step(Method::GET, &format!("{base}/context"), None, 200, |p| {
            Ok(format!("context={}", p["context"]))
        })
        .await;
        self.step(
            Method::POST,
            &format!("{base}/events"),
            Some(
                json!({"hook_event_name": "PostToolUse", "tool_name": "Bash",
                        "tool_input": {"command": "ls"}}),
            ),
            202,
            |p| Ok(format!("hook_event_name={}", p["hook_event_name"])),
        )
        .await;

        let cloned = self
            .step(
                Method::POST,
                &format!("{base}/clone"),
                Some(json!({"new_name": "api-client clone", "copy_agents": false})),
                201,
                |p| Ok(format!("id={}", field(&p["session"], "id")?)),
            )
            .await;
        if let Some(clone) = cloned.and_then(|p| p["session"]["id"].as_str().map(str::to_owned)) {
            self.created.push(clone);
        }
        let exported = self
            .step(
                Method::POST,
                &format!("{base}/export"),
                Some(json!({"include_metrics": true})),
                200,
                |p| {
                    let s = &p["snapshot"];
                    Ok(format!(
                        "format_version={} session_id={}",
                        s["format_version"], s["session_id"]
                    ))
                },
            )
            .await;
        if let Some(snapshot) = exported.map(|p| p["snapshot"].clone()) {
            let imported = self
                .step(
                    Method::POST,
                    "/api/claude/sessions/import",
                    Some(json!({"session_data": snapshot, "working_directory": dir("imported")})),
                    201,
                    |p| {
                        let s = &p["session"];
                        if s["id"] == json!(id) {
                            return Err("the import kept the id without keep_id".to_owned());
                        }
                        Ok(format!("id={} name={}", field(s, "id")?, s["name"]))
                    },
                )
                .await;
            if let Some(new) = imported.and_then(|p| p["session"]["id"].as_str().map(str::to_owned))
            {
                self.created.push(new);
            }
        }
        self.step(Method::DELETE, &key, None, 200, |p| {
            Ok(format!("previous={}", p["previous"]))
        })
        .await;
    }

    /// `/openapi.json` is the document itself, not an envelope.
    async fn openapi(&mut self) {
        let outcome = match self.send(Method::GET, "/openapi.json", None).await {
            Ok((200, text)) => serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("not JSON: {e}"))
                .and_then(|doc| {
                    let paths = doc["paths"].as_object().ok_or("no paths")?;
                    Ok(format!("openapi={} {} paths", doc["openapi"], paths.len()))
                }),
            Ok((status, text)) => Err(format!("{status}: {}", clip(&text))),
            Err(why) => Err(why),
        };
        self.record("200 GET /openapi.json", outcome);
    }

    /// `/metrics` is Prometheus text.
    async fn prometheus(&mut self) {
        let outcome = match self.send(Method::GET, "/metrics", None).await {
            Ok((200, text)) if text.contains("# TYPE session_manager_sessions gauge") => {
                let samples = text.lines().filter(|l| !l.starts_with('#')).count();
                let mut shown = format!("{samples} samples");
                for line in text
                    .lines()
                    .filter(|l| l.starts_with("session_manager_sessions"))
                {
                    let _ = write!(shown, "; {line}");
                }
                Ok(shown)
            }
            Ok((status, text)) => Err(format!("{status}: {}", clip(&text))),
            Err(why) => Err(why),
        };
        self.record("200 GET /metrics", outcome);
    }

    /// The newest seq of the event log, where the tour's own events begin.
    async fn last_seq(&mut self) -> u64 {
        self.step(Method::GET, "/api/claude/events?limit=1", None, 200, |p| {
            Ok(format!("last_seq={}", p["last_seq"]))
        })
        .await
        .and_then(|p| p["last_seq"].as_u64())
        .unwrap_or(0)
    }

    /// A purged session answers 404.
    async fn gone(&mut self, id: &str) {
        let path = format!("/api/claude/sessions/{id}");
        let outcome = match self.send(Method::GET, &path, None).await {
            Ok((404, text)) if text.contains("session_not_found") => {
                Ok("session_not_found".to_owned())
            }
            Ok((status, text)) => Err(format!("{status}, want 404: {}", clip(&text))),
            Err(why) => Err(why),
        };
        self.record(&format!("404 GET {path}"), outcome);
    }

    async fn open_websocket(&mut self) {
        let url = format!(
            "{}/ws/sessions",
            self.base
                .replacen("http://", "ws://", 1)
                .replacen("https://", "wss://", 1)
        );
        let label = format!("101 GET {url}");
        let mut request = match url.as_str().into_client_request() {
            Ok(request) => request,
            Err(error) => {
                self.record(&label, Err(error.to_string()));
                return;
            }
        };
        if let Some(token) = &self.token {
            request.headers_mut().insert(AUTHORIZATION, token.clone());
        }
        let socket =
            match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request)).await {
                Ok(Ok((socket, _))) => socket,
                Ok(Err(error)) => {
                    self.record(&label, Err(error.to_string()));
                    return;
                }
                Err(_) => {
                    self.record(&label, Err("no handshake in time".to_owned()));
                    return;
                }
            };
        let mut ws = Ws::start(socket);
        let greeting = ws.wait(|m| m["type"] == "connected").await;
        let outcome = greeting.map(|m| {
            format!(
                "connected: session_count={} topics={} last_seq={}",
                m["session_count"], m["topics"], m["last_seq"]
            )
        });
        let connected = self.record(&label, outcome);
        if !connected {
            return;
        }
        ws.send(json!({"type": "subscribe", "topics": ["sessions", "agents", "alerts"]}))
            .await;
        let subscribed = ws.wait(|m| m["type"] == "subscribed").await;
        self.record(
            "ws    subscribe",
            subscribed.map(|m| format!("topics={}", m["topics"])),
        );
        ws.send(json!({"type": "ping"})).await;
        let pong = ws.wait(|m| m["type"] == "pong").await;
        self.record("ws    ping", pong.map(|_| "pong".to_owned()));
        self.ws = Some(ws);
    }

    /// What the WebSocket must have seen of the tour.
    async fn check_websocket(&mut self) {
        let Some(mut ws) = self.ws.take() else {
            return;
        };
        let first = self.created.first().cloned().unwrap_or_default();
        let status = ws
            .wait(|m| m["type"] == "session_status" && m["session_id"] == json!(first))
            .await;
        self.record(
            "ws    subscribe_session",
            status.map(|m| format!("session_status: {}", m["data"]["status"])),
        );
        for id in self.created.clone() {
            for kind in ["session_created", "session_purged"] {
                let seen = ws
                    .wait(|m| {
                        m["session_id"] == json!(id)
                            && (m["type"] == kind
                                // A clone is announced as `session_cloned`, an import as
                                // `session_imported`.
                                || (kind == "session_created"
                                    && (m["type"] == "session_cloned"
                                        || m["type"] == "session_imported")))
                    })
                    .await;
                self.record(
                    &format!("ws    {kind} {id}"),
                    seen.map(|m| format!("{} seq={}", m["type"], m["seq"])),
                );
            }
        }
        ws.close().await;
    }

    /// Purges whatever the tour created and did not purge (a step failed on the way).
    async fn clean_up(&mut self) {
        for id in std::mem::take(&mut self.created) {
            let path = format!("/api/claude/sessions/{id}?purge=true");
            // Already purged: 404, which is what we want.
            if let Ok((status, _)) = self.send(Method::DELETE, &path, None).await {
                if status != 200 && status != 404 {
                    println!("FAIL  clean-up DELETE {path}: {status}");
                    self.failures.push(format!("clean-up of {id}: {status}"));
                }
            }
        }
    }
}

/// The WebSocket: a reader task prints every message and hands it over.
struct Ws {
    sink: SplitSink<WebSocketStream<MaybeTlsStream<TcpStream>>, Message>,
    received: mpsc::UnboundedReceiver<Value>,
    /// Messages read while waiting for another one.
    seen: Vec<Value>,
}

impl Ws {
    fn start(socket: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Ws {
        let (sink, mut stream) = socket.split();
        let (sender, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => {
                        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        println!("ws ←  {}", describe(&value));
                        if sender.send(value).is_err() {
                            return;
                        }
                    }
                    Message::Close(frame) => {
                        println!("ws ←  close {frame:?}");
                        return;
                    }
                    _ => {}
                }
            }
        });
        Ws {
            sink,
            received,
            seen: Vec::new(),
        }
    }

    async fn send(&mut self, message: Value) {
        println!("ws →  {message}");
        // A failed send shows as the answer never coming.
        let _ = self.sink.send(Message::text(message.to_string())).await;
    }

    /// The first message, seen or still to come, that `wanted` accepts (taken out).
    async fn wait(&mut self, wanted: impl Fn(&Value) -> bool) -> Outcome<Value> {
        if let Some(at) = self.seen.iter().position(&wanted) {
            return Ok(self.seen.remove(at));
        }
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.received.recv()).await {
                Ok(Some(message)) if wanted(&message) => return Ok(message),
                Ok(Some(message)) => self.seen.push(message),
                Ok(None) => return Err("the WebSocket closed".to_owned()),
                Err(_) => return Err(format!("not seen within {PATIENCE:?}")),
            }
        }
    }

    async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
    }
}

/// What a step reports: the fields worth printing, or why the answer is wrong.
type Outcome<T = String> = Result<T, String>;

/// One line for a WebSocket message: its type, seq, session and the telling data fields.
fn describe(message: &Value) -> String {
    let mut line = message["type"].as_str().unwrap_or("?").to_owned();
    if let Some(seq) = message["seq"].as_u64() {
        let _ = write!(line, " seq={seq}");
    }
    if let Some(id) = message["session_id"].as_str() {
        let _ = write!(line, " session={id}");
    }
    let data = &message["data"];
    match message["type"].as_str() {
        Some("agent_status") => {
            let _ = write!(line, " {} {}→{}", data["agent"], data["from"], data["to"]);
        }
        Some("alert") => {
            let _ = write!(
                line,
                " {} {}: {}",
                data["severity"], data["kind"], data["message"]
            );
        }
        Some("context_changed") => {
            let _ = write!(line, " key={} deleted={}", data["key"], data["deleted"]);
        }
        Some("error") => {
            let _ = write!(line, " {}", message["message"]);
        }
        Some(_) if data.is_object() => {
            if let Some(status) = data["status"].as_str() {
                let _ = write!(line, " status={status}");
            }
        }
        _ => {}
    }
    line
}

/// A string field of `value`, or an error naming it.
fn field<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    value[name]
        .as_str()
        .ok_or_else(|| format!("no string `{name}` in {}", clip(&value.to_string())))
}

fn clip(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}
