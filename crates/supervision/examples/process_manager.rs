//! A small process manager on the `process` feature: supervises the commands a TOML file
//! lists — restart type, backoff, dependencies, stop grace — prints every state change as it
//! happens (restart intensity too), and on Ctrl-C or SIGTERM stops them in reverse dependency order (SIGTERM to each
//! process group, the grace, SIGKILL) and exits 0. Their output goes to this program's.
//!
//! ```text
//! cargo run -p supervision --features process --example process_manager -- \
//!     crates/supervision/examples/process_manager.toml
//! ```
//!
//! What it prints, one line per event: `<name>: <from> -> <to>`, with `(restart N)` once a
//! child was restarted, `in <delay>` entering backoff and `: <reason>` after a crash; then
//! `stopping on SIGINT` (or SIGTERM) and `all stopped` at the end. Exit status 2 for a file
//! that cannot be read or is invalid.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use supervision::process::{self, Command, Containment};
use supervision::{
    Backoff, ChildSpec, Intensity, Restart, SupervisorConfig, SupervisorEvent, SupervisorHandle,
};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::broadcast::error::RecvError;

/// The file: defaults, then one `[[process]]` table per command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Stop grace of every process without its own, in milliseconds.
    #[serde(default = "default_grace_ms")]
    grace_ms: u64,
    #[serde(default, rename = "process")]
    processes: Vec<ProcessConfig>,
}

/// One supervised command.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessConfig {
    name: String,
    /// Program and arguments.
    command: Vec<String>,
    /// `permanent` (default), `transient` or `temporary`.
    #[serde(default)]
    restart: Option<String>,
    #[serde(default)]
    backoff: Option<BackoffConfig>,
    #[serde(default)]
    intensity: Option<IntensityConfig>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default)]
    grace_ms: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    dir: Option<String>,
}

/// Delays between restarts; what is left out is the crate's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackoffConfig {
    initial_ms: Option<u64>,
    max_ms: Option<u64>,
    multiplier: Option<f64>,
    reset_after_ms: Option<u64>,
}

/// At most `max_restarts` restarts within `window_ms`, then the process is left `failed`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntensityConfig {
    max_restarts: u32,
    window_ms: u64,
}

fn default_grace_ms() -> u64 {
    5_000
}

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: process_manager FILE.toml");
        std::process::exit(2);
    };
    let children = match load(Path::new(&path)) {
        Ok(children) => children,
        Err(err) => {
            eprintln!("{path}: {err}");
            std::process::exit(2);
        }
    };
    if let Err(err) = run(children).await {
        eprintln!("process_manager: {err}");
        std::process::exit(1);
    }
}

/// Reads and checks the file, and makes a child spec of each process.
fn load(path: &Path) -> Result<Vec<ChildSpec>, String> {
    let text = std::fs::read_to_string(path).map_err(|err| err.to_string())?;
    let config: Config = toml::from_str(&text).map_err(|err| err.to_string())?;
    if config.processes.is_empty() {
        return Err("no [[process]] listed".to_owned());
    }
    config
        .processes
        .iter()
        .map(|p| child(p, config.grace_ms))
        .collect()
}

fn child(config: &ProcessConfig, default_grace_ms: u64) -> Result<ChildSpec, String> {
    if config.command.is_empty() {
        return Err(format!("process `{}`: empty command", config.name));
    }
    let restart = match config.restart.as_deref() {
        None => Restart::Permanent,
        Some(word) => word
            .parse()
            .map_err(|err| format!("process `{}`: {err}", config.name))?,
    };
    let mut command = Command::from_argv(config.command.iter().cloned())
        .envs(config.env.clone())
        .grace(Duration::from_millis(
            config.grace_ms.unwrap_or(default_grace_ms),
        ));
    if let Some(dir) = &config.dir {
        command = command.current_dir(dir);
    }
    let mut spec = command
        .child(config.name.as_str())
        .restart(restart)
        .backoff(backoff(config.backoff.as_ref()))
        .depends_on(config.depends_on.iter().map(String::as_str));
    if let Some(intensity) = &config.intensity {
        spec = spec.intensity(Intensity::new(
            intensity.max_restarts,
            Duration::from_millis(intensity.window_ms),
        ));
    }
    Ok(spec)
}

fn backoff(config: Option<&BackoffConfig>) -> Backoff {
    let default = Backoff::default();
    let Some(config) = config else {
        return default;
    };
    let ms = |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
    Backoff::new(
        ms(config.initial_ms, default.initial()),
        ms(config.max_ms, default.max()),
    )
    .with_multiplier(config.multiplier.unwrap_or(default.multiplier()))
    .with_reset_after(ms(config.reset_after_ms, default.reset_after()))
}

/// Supervises `children` until SIGINT or SIGTERM, then stops them all.
async fn run(children: Vec<ChildSpec>) -> Result<(), Box<dyn std::error::Error>> {
    // This program owns its process: it may adopt what its children leave behind (a
    // daemon, a double fork) and kill it at the end. Then the cgroups, the watchdog and
    // the subreaper, before the first child starts.
    process::adopt_orphans();
    process::contain(&Containment::new().cgroup_prefix("process-manager-"));
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;

    let (supervisor, _join) =
        SupervisorHandle::spawn(SupervisorConfig::default(), children).await?;
    let mut events = supervisor.subscribe();
    supervisor.start_all().await?;

    let name = loop {
        tokio::select! {
            event = events.recv() => if !print_received(event) {
                break "the supervisor's end";
            },
            _ = interrupt.recv() => break "SIGINT",
            _ = terminate.recv() => break "SIGTERM",
        }
    };
    println!("stopping on {name}");
    let shutdown = supervisor.shutdown();
    tokio::pin!(shutdown);
    let mut open = true;
    loop {
        tokio::select! {
            done = &mut shutdown => {
                done?;
                break;
            }
            event = events.recv(), if open => open = print_received(event),
        }
    }
    // What the last stops published while the shutdown was returning.
    while let Ok(event) = events.try_recv() {
        print_event(&event);
    }
    process::release().await;
    println!("all stopped");
    Ok(())
}

/// Prints an event; says so when this program fell behind and some were dropped. False once
/// the supervisor is gone (no event will come).
fn print_received(event: Result<SupervisorEvent, RecvError>) -> bool {
    match event {
        Ok(event) => print_event(&event),
        Err(RecvError::Lagged(n)) => println!("({n} events dropped)"),
        Err(RecvError::Closed) => return false,
    }
    true
}

fn print_event(event: &SupervisorEvent) {
    match event {
        SupervisorEvent::Child(t) => {
            let mut line = format!("{}: {} -> {}", t.child, t.from, t.to);
            if t.restarts > 0 {
                line.push_str(&format!(" (restart {})", t.restarts));
            }
            if let Some(delay) = t.delay {
                line.push_str(&format!(" in {delay:?}"));
            }
            if let Some(reason) = &t.reason {
                line.push_str(&format!(": {reason}"));
            }
            println!("{line}");
        }
        SupervisorEvent::Escalated { child, reason, .. } => {
            println!("{child}: escalated: {reason}");
        }
        // The event list may grow (`#[non_exhaustive]`); a manager prints what it knows.
        _ => {}
    }
}
