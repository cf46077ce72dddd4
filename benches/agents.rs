//! Restart and stop latency of process agents, side by side with the floors they are
//! judged against, measured in one run on the same program:
//!
//! - a bare tokio loop that spawns the program and awaits it (the floor of our own stack);
//! - plain shell loops (`while`), in `sh` (dash here) and in bash;
//! - an [`AgentGroup`] with one permanent agent and immediate restarts.
//!
//! The program is `examples/fake_agent`, which stamps `start <pid> <ns>` as its first act and
//! `exit <pid> <ns>` as its last, so a restart's latency is the gap between one run's exit
//! stamp and the next run's start stamp, whoever does the restarting.
//!
//! ```text
//! cargo build --release --example fake_agent && cargo bench --bench agents
//! ```
//! `AGENTS_BENCH_BLOCKS` (default 3), `AGENTS_BENCH_RESTARTS` (per block, default 20) and
//! `AGENTS_BENCH_RUN_MS` (default 300, how long each run lives) tune it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use session_manager::agent::{
    resolve_agents, AgentConfig, AgentContext, AgentEvent, AgentGroup, CommandOrigin,
};
use session_manager::config::{Overrides, Settings};
use session_manager::supervision::ChildState;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fake_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let path = profile.join("examples/fake_agent");
    if !path.is_file() {
        eprintln!(
            "{} is missing: run `cargo build --release --example fake_agent` first",
            path.display()
        );
        std::process::exit(2);
    }
    path
}

/// Gaps in microseconds between each exit stamp and the next start stamp.
fn gaps(stamp: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(stamp).unwrap_or_default();
    let mut gaps = Vec::new();
    let mut last_exit: Option<u128> = None;
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(what), Some(_pid), Some(ns)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(ns) = ns.parse::<u128>() else { continue };
        match what {
            "exit" => last_exit = Some(ns),
            "start" => {
                if let Some(exit) = last_exit.take() {
                    gaps.push((ns.saturating_sub(exit)) as f64 / 1000.0);
                }
            }
            _ => {}
        }
    }
    gaps
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(name: &str, mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let p50 = percentile(&values, 50.0);
    println!(
        "{name:<34} n={:<3} p50 {:>8.3} ms  p90 {:>8.3} ms  p99 {:>8.3} ms  min {:>8.3} ms",
        values.len(),
        p50 / 1000.0,
        percentile(&values, 90.0) / 1000.0,
        percentile(&values, 99.0) / 1000.0,
        values.first().copied().unwrap_or(f64::NAN) / 1000.0,
    );
    p50
}

fn program_args(stamp: &Path, run_ms: u64) -> Vec<String> {
    vec![
        "--stamp".into(),
        stamp.to_string_lossy().into_owned(),
        "--exit-after-ms".into(),
        run_ms.to_string(),
        "--code".into(),
        "1".into(),
    ]
}

/// The floor: tokio spawns and awaits the program. With `fork`, a `pre_exec` hook is set,
/// which makes `std` fork instead of `posix_spawn` (what a supervisor that sets up its
/// children with `pre_exec` pays).
async fn tokio_loop(
    program: &Path,
    stamp: &Path,
    restarts: u64,
    run_ms: u64,
    fork: bool,
) -> Vec<f64> {
    for _ in 0..=restarts {
        let mut command = tokio::process::Command::new(program);
        command
            .args(program_args(stamp, run_ms))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if fork {
            // SAFETY: the hook does nothing.
            unsafe {
                command.pre_exec(|| Ok(()));
            }
        }
        command.status().await.expect("program runs");
    }
    gaps(stamp)
}

fn shell_loop(shell: &str, program: &Path, stamp: &Path, restarts: u64, run_ms: u64) -> Vec<f64> {
    let args = program_args(stamp, run_ms)
        .into_iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "i=0; while [ $i -le {restarts} ]; do '{}' {args} >/dev/null 2>&1; i=$((i+1)); done",
        program.display()
    );
    std::process::Command::new(shell)
        .arg("-c")
        .arg(script)
        .status()
        .expect("the shell runs");
    gaps(stamp)
}

fn settings(dir: &Path) -> Settings {
    let mut settings = Settings::load(&Overrides {
        data_dir: Some(dir.join("data")),
        ..Overrides::default()
    })
    .expect("default settings");
    settings.agents.allow_custom_commands = true;
    settings
}

async fn group_of(dir: &Path, agent: serde_json::Value) -> AgentGroup {
    let settings = settings(dir);
    let configs: Vec<AgentConfig> = serde_json::from_value(json!([agent])).expect("config");
    let agents =
        resolve_agents(&configs, &settings.agents, CommandOrigin::Trusted).expect("resolves");
    let context = AgentContext::new("bench", dir.to_path_buf(), &settings);
    AgentGroup::build(context, agents).await.expect("group")
}

async fn agent_loop(
    program: &Path,
    dir: &Path,
    stamp: &Path,
    restarts: u64,
    run_ms: u64,
) -> Vec<f64> {
    let mut argv = vec![program.to_string_lossy().into_owned()];
    argv.extend(program_args(stamp, run_ms));
    let group = group_of(
        dir,
        json!({
            "agent_type": "BACKEND",
            "command": argv,
            "retry_attempts": 100000,
            "backoff": {"initial_ms": 0, "max_ms": 0, "multiplier": 1.0, "reset_after_seconds": 1},
        }),
    )
    .await;
    group.start_all().await.expect("start");
    // Polled from the stamp file, not followed through events: a subscriber woken on every
    // transition would compete for the CPU with the restarts it measures.
    let expected = usize::try_from(restarts).unwrap_or(usize::MAX);
    while gaps(stamp).len() < expected {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    group.shutdown().await.expect("shutdown");
    gaps(stamp)
}

/// Stop latency: from asking for the stop to the agent reported stopped, for a program that
/// dies at once on SIGTERM; and the same for a bare spawned child (SIGTERM, await).
async fn stop_latency(program: &Path, dir: &Path, rounds: u64) -> (Vec<f64>, Vec<f64>) {
    let mut bare = Vec::new();
    for _ in 0..rounds {
        let mut child = tokio::process::Command::new(program)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let pid = child.id().expect("pid") as libc::pid_t;
        let asked = Instant::now();
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        child.wait().await.expect("wait");
        bare.push(asked.elapsed().as_secs_f64() * 1e6);
    }

    let group = group_of(
        dir,
        json!({"agent_type": "BACKEND", "command": [program.to_string_lossy()]}),
    )
    .await;
    let mut events = group.subscribe();
    let mut ours = Vec::new();
    for round in 0..rounds {
        if round == 0 {
            group.start_all().await.expect("start");
        } else {
            group.activate("backend-services").await.expect("activate");
        }
        wait_for(&mut events, ChildState::Running).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let asked = Instant::now();
        group
            .deactivate("backend-services")
            .await
            .expect("deactivate");
        wait_for(&mut events, ChildState::Stopped).await;
        ours.push(asked.elapsed().as_secs_f64() * 1e6);
    }
    group.shutdown().await.expect("shutdown");
    (bare, ours)
}

async fn wait_for(events: &mut tokio::sync::broadcast::Receiver<AgentEvent>, state: ChildState) {
    loop {
        if let Ok(AgentEvent::State { to, .. }) = events.recv().await {
            if to == state {
                return;
            }
        }
    }
}

fn main() {
    let restarts = env_number("AGENTS_BENCH_RESTARTS", 20);
    let blocks = env_number("AGENTS_BENCH_BLOCKS", 3);
    let run_ms = env_number("AGENTS_BENCH_RUN_MS", 300);
    let program = fake_agent();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    println!(
        "restart latency, child exit -> next exec of the same program \
         ({blocks} blocks x {restarts} restarts per contender, order rotated per block, each run {run_ms} ms)"
    );
    // Contenders run in alternating blocks so that a change in the machine's load hits all.
    let names = [
        "bare tokio spawn+await loop",
        "tokio loop, fork (pre_exec hook)",
        "shell loop (sh = dash, while)",
        "shell loop (bash, while)",
        "session-manager agent",
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for block in 0..blocks {
        for turn in 0..names.len() {
            let contender = (turn + block as usize) % names.len();
            let stamp = dir.path().join(format!("{contender}-{block}.stamp"));
            let gaps = match contender {
                0 => runtime.block_on(tokio_loop(&program, &stamp, restarts, run_ms, false)),
                1 => runtime.block_on(tokio_loop(&program, &stamp, restarts, run_ms, true)),
                2 => shell_loop("sh", &program, &stamp, restarts, run_ms),
                3 => shell_loop("bash", &program, &stamp, restarts, run_ms),
                _ => runtime.block_on(agent_loop(&program, dir.path(), &stamp, restarts, run_ms)),
            };
            results[contender].extend(gaps);
        }
    }
    let p50: Vec<f64> = names
        .iter()
        .zip(results)
        .map(|(name, gaps)| report(name, gaps))
        .collect();
    println!(
        "ours / tokio loop = {:.2}x, ours / sh loop = {:.2}x, ours / bash loop = {:.2}x",
        p50[4] / p50[0],
        p50[4] / p50[2],
        p50[4] / p50[3]
    );
    println!("stop latency, stop asked -> stopped, for a program that exits on SIGTERM");
    let (bare, ours) = runtime.block_on(stop_latency(&program, dir.path(), 30));
    let bare_p50 = report("bare SIGTERM + await", bare);
    let ours_p50 = report("session-manager deactivate", ours);
    println!(
        "overhead over the bare stop: {:.3} ms",
        (ours_p50 - bare_p50) / 1000.0
    );
}
