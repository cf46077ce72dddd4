//! Sessions through the registry (no HTTP):
//!
//! - 1,000 sessions × 12 logical agents created one after another through
//!   `SessionRegistry::create` (path validation, storage, actors, agents started);
//! - 10,000 stored sessions restored by a fresh process (`SessionRegistry::start` until it
//!   answers), and that process's RSS, for sessions without agents and with one logical agent.
//!
//! ```text
//! cargo bench --bench sessions
//! ```
//! The restore is measured in a child process (this binary with `SESSIONS_BENCH_PROBE`), so
//! its RSS is the restore's alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use session_manager::config::{Overrides, Settings};
use session_manager::session::{CreateSession, EventBus, SessionConfig, SessionRegistry};
use session_manager::storage::Storage;

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
    agents: serde_json::Value,
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

/// In the child: restore the data dir given and report time and RSS.
fn probe(data: &Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        let (registry, _storage) = registry(data).await;
        let report = registry.restore_report().await.expect("report");
        let elapsed = started.elapsed();
        println!(
            "{} {:.3} {:.1}",
            report.restored,
            elapsed.as_secs_f64(),
            rss_mb()
        );
        std::process::exit(0);
    });
}

fn restore_in_child(data: &Path) -> (usize, f64, f64) {
    let output = std::process::Command::new(std::env::current_exe().expect("own path"))
        .env("SESSIONS_BENCH_PROBE", data)
        .output()
        .expect("probe runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split_whitespace();
    let restored = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let seconds = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(f64::NAN);
    let rss = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(f64::NAN);
    (restored, seconds, rss)
}

fn main() {
    if let Some(data) = std::env::var_os("SESSIONS_BENCH_PROBE") {
        probe(&PathBuf::from(data));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let data = dir.path().join("twelve");
    let seconds = runtime.block_on(async {
        let (registry, storage) = registry(&data).await;
        let started = Instant::now();
        create_many(&registry, &work, 1000, twelve_agents()).await;
        let seconds = started.elapsed().as_secs_f64();
        registry.shutdown().await;
        drop(registry);
        storage.close().await.expect("close");
        seconds
    });
    println!("create 1,000 sessions x 12 logical agents through the registry: {seconds:.2} s (target < 5 s)");

    for (label, agents) in [
        ("no agents", json!([])),
        ("1 logical agent", json!([{"agent_type": "BACKEND"}])),
    ] {
        let data = dir.path().join(label.replace(' ', "-"));
        runtime.block_on(async {
            let (registry, storage) = registry(&data).await;
            create_many(&registry, &work, 10_000, agents).await;
            registry.shutdown().await;
            drop(registry);
            storage.close().await.expect("close");
        });
        let (restored, seconds, rss) = restore_in_child(&data);
        println!(
            "restore 10,000 stored sessions ({label}) in a fresh process: {restored} restored in {seconds:.2} s, RSS {rss:.0} MB (targets < 2 s, < 300 MB)"
        );
    }
}
