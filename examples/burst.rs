//! A burst against a running session-manager, for `benches/burst.sh`: `SESSIONS` sessions
//! of `AGENTS` logical agents (no process) created by `CLIENTS` clients as fast as they
//! can, while hook events are posted at `HOOKS_PER_SECOND` (open loop: one request every
//! tick, up to 128 in flight), alternating `POST /sessions/{id}/events` and `POST
//! /api/claude/hooks`. Then prints, after the monitor caught up (or 60 s): hook events
//! posted (accepted) against counted (`/analytics`' `tool_uses`), and events published
//! (the log's `last_seq`) against events in the log (`GET /events` paged from seq 1), with
//! gaps and `events_lost` markers. Exits 1 when something was lost.
//!
//! ```text
//! cargo run --release --example burst -- URL [SESSIONS] [CLIENTS] [HOOKS_PER_SECOND] [AGENTS]
//! ```
//! Defaults: 10000 sessions, 16 clients, 1000 hooks per second, 12 agents. The server must
//! allow that many sessions (`SESSION_MANAGER_SESSIONS__MAX_SESSIONS`) and requests
//! (`SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND=0`), and see this machine's file system.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Sessions the hook events are for.
const HOOKED: usize = 16;
/// Hook requests in flight at most (the server caps connections per client at 256): when
/// the server answers slower than the rate asks, fewer are posted.
const IN_FLIGHT: usize = 128;
/// How long the counts may take to catch up with the hooks accepted.
const CATCH_UP: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str) -> Result<Value, String> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        response.json().await.map_err(|e| e.to_string())
    }

    async fn create(&self, name: &str, dir: &str, agents: usize) -> Result<String, String> {
        let list: Vec<Value> = (0..agents)
            .map(|n| json!({"agent_type": "BACKEND", "name": format!("agent-{n}")}))
            .collect();
        let body =
            json!({"name": name, "working_directory": dir, "max_agents": agents, "agents": list});
        let response = self
            .client
            .post(format!("{}/api/claude/sessions", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        match body["session"]["id"].as_str() {
            Some(id) if status.as_u16() == 201 => Ok(id.to_owned()),
            _ => Err(format!("{status}: {body}")),
        }
    }

    /// One finished tool use (one `tool_uses`); true when accepted.
    async fn hook(&self, session: &str, n: u64) -> bool {
        let mut hook = json!({
            "hook_event_name": "PostToolUse", "tool_name": "Read",
            "tool_use_id": format!("use-{n}"), "tool_input": {"file_path": "/tmp/x"},
            "tool_response": {},
        });
        if n.is_multiple_of(2) {
            hook["session_id"] = json!(format!("claude-{session}-{}", n % 7));
        }
        let request = if n.is_multiple_of(2) {
            let url = format!("{}/api/claude/sessions/{session}/events", self.base);
            self.client.post(url).json(&hook)
        } else {
            let url = format!("{}/api/claude/hooks", self.base);
            self.client
                .post(url)
                .header("x-session-manager-session", session)
                .json(&hook)
        };
        request.send().await.is_ok_and(|r| r.status().is_success())
    }

    async fn counted(&self) -> Result<u64, String> {
        let body = self.get("/api/claude/analytics").await?;
        body["analytics"]["activity"]["tool_uses"]
            .as_u64()
            .ok_or_else(|| format!("no tool_uses in {body}"))
    }
}

/// What the log holds: (events, last seq published, gaps, `events_lost` markers,
/// `session_hook` events).
async fn read_log(api: &Api) -> Result<(u64, u64, u64, u64, u64), String> {
    let (mut events, mut gaps, mut lost, mut hooks) = (0, 0, 0, 0);
    let (mut since, mut last_seq) = (0, 0);
    loop {
        let page = api
            .get(&format!("/api/claude/events?since={since}&limit=1000"))
            .await?;
        last_seq = page["last_seq"].as_u64().unwrap_or(last_seq);
        for event in page["events"].as_array().ok_or("no events")? {
            let seq = event["seq"].as_u64().ok_or("no seq")?;
            if seq != since + 1 {
                gaps += 1;
            }
            since = seq;
            events += 1;
            lost += u64::from(event["type"] == "events_lost");
            hooks += u64::from(event["type"] == "session_hook");
        }
        if page["has_more"] != true {
            return Ok((events, last_seq, gaps, lost, hooks));
        }
    }
}

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(base) = std::env::args().nth(1) else {
        eprintln!("usage: burst URL [SESSIONS] [CLIENTS] [HOOKS_PER_SECOND] [AGENTS]");
        return ExitCode::from(2);
    };
    let (sessions, clients, rate, agents) = (arg(2, 10_000), arg(3, 16), arg(4, 1_000), arg(5, 12));
    let api = Api {
        client: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_owned(),
    };
    let dir = std::env::temp_dir().join(format!("burst-{}", std::process::id()));
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return ExitCode::from(2);
    }
    let dir = dir.to_string_lossy().into_owned();
    let outcome = run(&api, &dir, sessions, clients, rate, agents as usize).await;
    // The sessions' working directory (empty: logical agents write nothing).
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("burst failed: {error}");
            ExitCode::from(2)
        }
    }
}

async fn run(
    api: &Api,
    dir: &str,
    sessions: u64,
    clients: u64,
    rate: u64,
    agents: usize,
) -> Result<bool, String> {
    let mut hooked = Vec::new();
    for n in 0..HOOKED {
        hooked.push(api.create(&format!("hooked-{n}"), dir, agents).await?);
    }
    let done = Arc::new(AtomicBool::new(false));
    let (posted, refused) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let poster = {
        let (api, done, posted, refused) =
            (api.clone(), done.clone(), posted.clone(), refused.clone());
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
            let mut requests = tokio::task::JoinSet::new();
            let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) {
                every.tick().await;
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                n += 1;
                let (api, session) = (api.clone(), hooked[n as usize % HOOKED].clone());
                let (posted, refused) = (posted.clone(), refused.clone());
                requests.spawn(async move {
                    let counter = if api.hook(&session, n).await {
                        posted
                    } else {
                        refused
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                });
                while requests.try_join_next().is_some() {}
            }
            requests.join_all().await;
        })
    };
    let started = Instant::now();
    let creators: Vec<_> = (0..clients)
        .map(|c| {
            let (api, dir) = (api.clone(), dir.to_owned());
            let each = sessions / clients + u64::from(c < sessions % clients);
            tokio::spawn(async move {
                for n in 0..each {
                    api.create(&format!("burst-{c}-{n}"), &dir, agents).await?;
                }
                Ok::<u64, String>(each)
            })
        })
        .collect();
    let mut created = 0;
    for creator in creators {
        created += creator.await.map_err(|e| e.to_string())??;
    }
    let took = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    poster.await.map_err(|e| e.to_string())?;
    let (posted, refused) = (
        posted.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    println!(
        "created {created} sessions of {agents} agents with {clients} clients in {took:.1} s ({:.0}/s)",
        created as f64 / took
    );
    println!(
        "hook events posted: {posted} accepted ({:.0}/s), {refused} refused",
        posted as f64 / took
    );
    let deadline = Instant::now() + CATCH_UP;
    let mut counted = api.counted().await?;
    while counted < posted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        counted = api.counted().await?;
    }
    println!("hook events counted: {counted} of {posted} accepted");
    let (events, last_seq, gaps, lost, hooks) = read_log(api).await?;
    println!(
        "events published: {last_seq}, in the log: {events} ({gaps} gaps, {lost} events_lost, {hooks} session_hook)"
    );
    Ok(counted == posted && events == last_seq && gaps == 0 && lost == 0 && hooks == posted)
}
