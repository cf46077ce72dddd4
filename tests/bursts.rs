//! No loss under a burst, through the real binary: sessions of 12 agents created as fast as
//! 16 clients can while hook events arrive at about 1,000 per second (`POST
//! /sessions/{id}/events` and `POST /api/claude/hooks`). Far more events are published
//! than a live broadcast holds (4,096), and still every hook event is counted by the
//! monitor and every event is in the log, contiguous, without a gap marker.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::app::App;
use common::PATIENCE;
use serde_json::{json, Value};

/// Clients creating sessions at once.
const CREATORS: usize = 16;
/// Sessions each of them creates.
const SESSIONS_EACH: usize = 30;
/// Agents per session (logical: no process).
const AGENTS: usize = 12;
/// Sessions the hook events are for.
const HOOKED: usize = 16;
/// Clients posting hook events, each at most every [`HOOK_EVERY`]: about 1,000 per second
/// together when the server answers fast enough (a hook POST waits for storage, so a debug
/// build on a loaded machine takes fewer; many at once is what overruns a broadcast).
const HOOKERS: usize = 64;
const HOOK_EVERY: Duration = Duration::from_millis(64);

/// Answers `(status, body)`; the body is `Null` when empty (the hooks route's 200).
async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A session of `AGENTS` logical agents in `dir`; its id.
async fn create(client: &reqwest::Client, base: &str, name: &str, dir: &str) -> String {
    let agents: Vec<Value> = (0..AGENTS)
        .map(|n| json!({"agent_type": "BACKEND", "name": format!("agent-{n}")}))
        .collect();
    let body = json!({
        "name": name,
        "working_directory": dir,
        "max_agents": AGENTS,
        "agents": agents,
    });
    let (status, body) = send(
        client
            .post(format!("{base}/api/claude/sessions"))
            .json(&body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// A finished tool use: one `tool_uses` for the monitor. Every other one names a Claude
/// session, so the Claude tracker takes part too.
fn tool_use(session: &str, n: u64) -> Value {
    let mut hook = json!({
        "hook_event_name": "PostToolUse",
        "tool_name": "Read",
        "tool_use_id": format!("use-{n}"),
        "tool_input": {"file_path": "/tmp/x"},
        "tool_response": {},
    });
    if n.is_multiple_of(2) {
        hook["session_id"] = json!(format!("claude-{session}-{}", n % 7));
    }
    hook
}

/// Posts hook events to `session` every [`HOOK_EVERY`] until `done`, alternating the two
/// routes; counts each accepted.
async fn post_hooks(
    client: reqwest::Client,
    base: String,
    session: String,
    done: Arc<AtomicBool>,
    posted: Arc<AtomicU64>,
) {
    let mut every = tokio::time::interval(HOOK_EVERY);
    let mut n = 0u64;
    while !done.load(Ordering::Relaxed) {
        every.tick().await;
        n += 1;
        let hook = tool_use(&session, n);
        let (status, body) = if n.is_multiple_of(2) {
            let url = format!("{base}/api/claude/sessions/{session}/events");
            send(client.post(url).json(&hook)).await
        } else {
            let url = format!("{base}/api/claude/hooks");
            let request = client
                .post(url)
                .header("x-session-manager-session", &session)
                .json(&hook);
            send(request).await
        };
        assert!(
            status == 202 || status == 200,
            "hook {n} refused: {status} {body}"
        );
        posted.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every stored event, paged from seq 1.
async fn whole_log(app: &App) -> Vec<Value> {
    let mut events = Vec::new();
    let mut since = 0;
    loop {
        let (status, body) = app
            .get(&format!("/api/claude/events?since={since}&limit=1000"))
            .await;
        assert_eq!(status, 200, "{body}");
        let page = body["events"].as_array().unwrap().clone();
        if let Some(last) = page.last() {
            since = last["seq"].as_u64().unwrap();
        }
        events.extend(page);
        if body["has_more"] != true {
            return events;
        }
    }
}

/// The hook events the monitor counted, over every session.
async fn counted(app: &App) -> u64 {
    let (status, body) = app.get("/api/claude/analytics").await;
    assert_eq!(status, 200, "{body}");
    body["analytics"]["activity"]["tool_uses"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_sessions_and_hooks_loses_no_count_and_no_event() {
    let mut app = App::start(&[
        ("SESSION_MANAGER_SERVER__RATE_LIMIT_PER_SECOND", "0"),
        ("SESSION_MANAGER_SESSIONS__MAX_SESSIONS", "10000"),
    ]);
    let base = app.url("");
    let client = app.client.clone();
    let dir = app.dir("work");
    std::fs::create_dir_all(&dir).unwrap();

    let mut hooked = Vec::new();
    for n in 0..HOOKED {
        hooked.push(create(&client, &base, &format!("hooked-{n}"), &dir).await);
    }
    let done = Arc::new(AtomicBool::new(false));
    let posted = Arc::new(AtomicU64::new(0));
    let hookers: Vec<_> = (0..HOOKERS)
        .map(|n| {
            tokio::spawn(post_hooks(
                client.clone(),
                base.clone(),
                hooked[n % HOOKED].clone(),
                Arc::clone(&done),
                Arc::clone(&posted),
            ))
        })
        .collect();

    let creators: Vec<_> = (0..CREATORS)
        .map(|c| {
            let (client, base, dir) = (client.clone(), base.clone(), dir.clone());
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..SESSIONS_EACH {
                    ids.push(create(&client, &base, &format!("burst-{c}-{n}"), &dir).await);
                }
                ids
            })
        })
        .collect();
    let mut created: Vec<String> = hooked.clone();
    for creator in creators {
        created.extend(creator.await.unwrap());
    }
    done.store(true, Ordering::Relaxed);
    for hooker in hookers {
        hooker.await.unwrap();
    }
    let posted = posted.load(Ordering::Relaxed);
    assert!(posted > 0, "no hook event was posted");

    // Every hook event counted (the counts follow the log, a little behind it).
    let deadline = Instant::now() + PATIENCE;
    let mut seen = counted(&app).await;
    while seen != posted && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen = counted(&app).await;
    }
    assert_eq!(seen, posted, "hook events counted against posted");

    // Every event in the log: seqs 1, 2, 3, … without a gap or a gap marker.
    let log = whole_log(&app).await;
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.len() > 4096 * 2,
        "the burst should overrun a live broadcast; only {} events",
        seqs.len()
    );
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "the log has a gap"
    );
    assert!(
        log.iter().all(|e| e["type"] != "events_lost"),
        "the log gave events up"
    );
    eprintln!(
        "{} sessions created, {posted} hook events posted, {} events in the log",
        created.len(),
        seqs.len()
    );
    let hooks = log.iter().filter(|e| e["type"] == "session_hook").count();
    assert_eq!(hooks as u64, posted, "hook events in the log");
    let announced: HashSet<&str> = log
        .iter()
        .filter(|e| e["type"] == "session_created")
        .filter_map(|e| e["session_id"].as_str())
        .collect();
    let missing: Vec<&String> = created
        .iter()
        .filter(|id| !announced.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "session_created missing for {missing:?}"
    );

    // The counts were stored, batch by batch: a restarted server has every one.
    app.restart();
    assert_eq!(
        counted(&app).await,
        posted,
        "hook events counted after a restart"
    );
}
