//! Sessions through the registry (no HTTP):
//!
//! - 1,000 sessions × 12 logical agents created one after another through
//!   `SessionRegistry::create` (path validation, storage, actors, agents started);
//! - 10,000 stored sessions × 12 logical agents restored by a fresh process: how long until
//!   `SessionRegistry::start` returns (every session restored) and its RSS then, how long
//!   until every session is `active` (polling `list`, which copies every record: the RSS
//!   after it is reported too); the same for 10,000 sessions without agents.
//!
//! ```text
//! cargo bench --bench sessions
//! ```
//! The restore is measured in a child process (this binary with `SESSIONS_BENCH_PROBE`), so
//! its RSS is the restore's alone. `SESSIONS_BENCH_DIR=DIR` keeps the stored sessions in
//! `DIR` and reuses them on the next run (seeding 20,000 sessions takes a while); delete it
//! after a change of the stored format. `SESSIONS_BENCH_ONLY=create` (or `restore`) runs one
//! half, e.g. under a profiler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use session_manager::config::{Overrides, Settings};
use session_manager::session::{
    CreateSession, EventBus, SessionConfig, SessionRegistry, SessionStatus,
};
use session_manager::storage::Storage;

/// How long the probe waits for every restored session to be active before giving up.
const PATIENCE: Duration = Duration::from_secs(300);

fn settings(data: &Path) -> Settings {
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(data.to_path_buf()),
        ..Overrides::default()
    })
    .expect("settings");
    settings.sessions.max_sessions = 100_000;
    settings
}

async fn registry(data: &Path) -> (SessionRegistry, Storage) {
    let settings = settings(data);
    let storage = Storage::open(&settings.db_path()).await.expect("storage");
    let registry = SessionRegistry::start(
        Arc::new(settings),
        storage.clone(),
        "http://127.0.0.1:9".into(),
        EventBus::new(0),
    )
    .await
    .expect("registry");
    (registry, storage)
}

fn twelve_agents() -> serde_json::Value {
    json!([
        {"agent_type": "ORCHESTRATOR"}, {"agent_type": "FRONTEND"}, {"agent_type": "BACKEND"},
        {"agent_type": "DATABASE"}, {"agent_type": "API"}, {"agent_type": "MIDDLEWARE"},
        {"agent_type": "DEVOPS"}, {"agent_type": "SECURITY"}, {"agent_type": "PERFORMANCE"},
        {"agent_type": "QUALITY"}, {"agent_type": "DOCUMENTATION"}, {"agent_type": "MONITORING"}
    ])
}

async fn create_many(
    registry: &SessionRegistry,
    work: &Path,
    count: usize,
    agents: &serde_json::Value,
) {
    for i in 0..count {
        let config: SessionConfig = serde_json::from_value(json!({
            "name": format!("s{i}"), "working_directory": work.to_string_lossy(),
            "git_enabled": false, "max_agents": 12, "agents": agents,
        }))
        .expect("config");
        registry
            .create(CreateSession::new(config))
            .await
            .expect("create");
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// In the child: restore the data dir given; report how many sessions were restored, the
/// seconds until `start` returned and the RSS then, the seconds until every one was active
/// and the RSS after that.
fn probe(data: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let (registry, _storage) = registry(data).await;
        let returned = started.elapsed();
        let rss_restored = rss_mb();
        let report = registry.restore_report().await.expect("report");
        loop {
            let records = registry.list().await.expect("list");
            let active = records
                .iter()
                .filter(|r| r.status == SessionStatus::Active)
                .count();
            if active == records.len() {
                break;
            }
            if started.elapsed() > PATIENCE {
                eprintln!("only {active} of {} sessions active", records.len());
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready = started.elapsed();
        println!(
            "{} {:.3} {:.1} {:.3} {:.1}",
            report.restored,
            returned.as_secs_f64(),
            rss_restored,
            ready.as_secs_f64(),
            rss_mb()
        );
        std::process::exit(0);
    });
}

struct Restore {
    restored: usize,
    returned: f64,
    rss_restored: f64,
    ready: f64,
    rss_listed: f64,
}

fn restore_in_child(data: &Path) -> Restore {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env("SESSIONS_BENCH_PROBE", data)
        .output()
        .expect("probe runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let restored = number();
    Restore {
        restored: if restored.is_nan() {
            0
        } else {
            restored as usize
        },
        returned: number(),
        rss_restored: number(),
        ready: number(),
        rss_listed: number(),
    }
}

/// Stores `count` sessions with `agents` under `data` through a registry, unless a previous
/// run left them there.
fn seed(
    runtime: &tokio::runtime::Runtime,
    data: &Path,
    work: &Path,
    count: usize,
    agents: &serde_json::Value,
) {
    let done = data.join("seeded");
    if done.exists() {
        return;
    }
    runtime.block_on(async {
        let (registry, storage) = registry(data).await;
        create_many(&registry, work, count, agents).await;
        registry.shutdown().await;
        drop(registry);
        storage.close().await.expect("close");
    });
    std::fs::write(done, count.to_string()).expect("seeded mark");
}

fn main() {
    if let Some(data) = std::env::var_os("SESSIONS_BENCH_PROBE") {
        probe(&PathBuf::from(data));
        return;
    }
    let temp = tempfile::tempdir().expect("temp dir");
    let kept = std::env::var_os("SESSIONS_BENCH_DIR").map(PathBuf::from);
    let root = kept.as_deref().unwrap_or(temp.path());
    let work = root.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let only = std::env::var("SESSIONS_BENCH_ONLY").unwrap_or_default();
    if only != "restore" {
        create_bench(&runtime, temp.path(), &work);
    }
    if only == "create" {
        return;
    }
    for (label, agents) in [
        ("12 logical agents", twelve_agents()),
        ("no agents", json!([])),
    ] {
        let data = root.join(label.replace(' ', "-"));
        seed(&runtime, &data, &work, 10_000, &agents);
        let r = restore_in_child(&data);
        println!(
            "restore 10,000 stored sessions ({label}) in a fresh process: {} restored, start returned in {:.2} s with RSS {:.0} MB, all active in {:.2} s, RSS {:.0} MB after listing them (targets < 2 s, < 300 MB)",
            r.restored, r.returned, r.rss_restored, r.ready, r.rss_listed
        );
    }
}

fn create_bench(runtime: &tokio::runtime::Runtime, root: &Path, work: &Path) {
    let data = root.join("create");
    let seconds = runtime.block_on(async {
        let (registry, storage) = registry(&data).await;
        let started = Instant::now();
        create_many(&registry, work, 1000, &twelve_agents()).await;
        let seconds = started.elapsed().as_secs_f64();
        registry.shutdown().await;
        drop(registry);
        storage.close().await.expect("close");
        seconds
    });
    println!("create 1,000 sessions x 12 logical agents through the registry: {seconds:.2} s (target < 5 s)");
}
