//! Agents as real OS processes, through the library API: a group of agents started from the
//! same JSON a session's `agents` holds, against the fake agent program
//! (`examples/fake_agent.rs`, built by `cargo test`).

mod common;

use common::{alive, example, fake, PATIENCE};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use session_manager::agent::{
    resolve_agents, AgentConfig, AgentContext, AgentEvent, AgentGroup, AgentStatus, AlertKind,
    CommandOrigin, GroupHealth, ResolveError, Severity, Stream,
};
use session_manager::config::{Overrides, Settings};
use session_manager::supervision::ChildState;
use tokio::sync::broadcast;

/// A temp dir with a working directory and a data directory, and the settings for it.
struct World {
    dir: tempfile::TempDir,
    settings: Settings,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let mut settings = Settings::load(&Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        })
        .unwrap();
        settings.agents.allow_custom_commands = true;
        settings.agents.stop_grace_ms = 1000;
        World { dir, settings }
    }

    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn context(&self) -> AgentContext {
        AgentContext::new("test-session", self.work(), &self.settings)
    }

    fn resolve(
        &self,
        agents: Value,
    ) -> Result<Vec<session_manager::agent::ResolvedAgent>, ResolveError> {
        let configs: Vec<AgentConfig> = serde_json::from_value(agents).unwrap();
        resolve_agents(&configs, &self.settings.agents, CommandOrigin::Api)
    }

    /// Starts the agents and returns the group with a subscription taken before the start.
    async fn start(&self, agents: Value) -> (AgentGroup, broadcast::Receiver<AgentEvent>) {
        let group = AgentGroup::build(self.context(), self.resolve(agents).unwrap())
            .await
            .unwrap();
        let events = group.subscribe();
        group.start_all().await.unwrap();
        (group, events)
    }
}

/// Waits for the first event `pick` accepts, skipping others.
async fn next<T>(
    events: &mut broadcast::Receiver<AgentEvent>,
    mut pick: impl FnMut(&AgentEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(event)) => {
                if let Some(found) = pick(&event) {
                    return found;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(e)) => panic!("event stream ended: {e}"),
            Err(_) => panic!("no matching event within {PATIENCE:?}"),
        }
    }
}

/// Waits until `agent` enters `state`; returns the transition's reason.
async fn entered(
    events: &mut broadcast::Receiver<AgentEvent>,
    agent: &str,
    state: ChildState,
) -> Option<String> {
    next(events, |e| match e {
        AgentEvent::State {
            agent: a,
            to,
            reason,
            ..
        } if &**a == agent && *to == state => Some(reason.clone()),
        _ => None,
    })
    .await
}

async fn status(group: &AgentGroup, name: &str) -> AgentStatus {
    group
        .statuses()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap()
}

/// `start <pid> <ns>` / `exit <pid> <ns>` lines of a stamp file.
fn stamps(path: &Path, what: &str) -> Vec<(u32, u128)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            (parts.next()? == what).then_some(())?;
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .collect()
}

async fn gone(pids: &[u32]) {
    let deadline = Instant::now() + PATIENCE;
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "still alive: {:?}",
            pids.iter().filter(|&&p| alive(p)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn line_starting(
    events: &mut broadcast::Receiver<AgentEvent>,
    agent: &str,
    prefix: &str,
) -> String {
    next(events, |e| match e {
        AgentEvent::Log { agent: a, line } if &**a == agent && line.line.starts_with(prefix) => {
            Some(line.line[prefix.len()..].trim().to_string())
        }
        _ => None,
    })
    .await
}

#[tokio::test]
async fn a_process_agent_runs_in_its_directory_with_its_environment_and_output_kept() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "backend",
            "command": fake(&["--env", "CLAUDE_SESSION_ID", "--env", "CLAUDE_WORKING_DIR",
                "--env", "CLAUDE_AGENT_NAME", "--env", "CLAUDE_AGENT_TYPE",
                "--env", "CLAUDE_MEMORY_LIMIT", "--env", "CLAUDE_TIMEOUT",
                "--env", "SESSION_MANAGER_URL", "--env", "MY_VAR", "--env", "PWD_CHECK",
                "--lines", "3", "--ready-after-ms", "0"]),
            "ready_pattern": "^READY$",
            "max_memory_mb": 512,
            "timeout_seconds": 30,
            "environment": {"MY_VAR": "hello"},
        }]))
        .await;
    entered(&mut events, "backend-services", ChildState::Running).await;
    let lines: Vec<String> = group
        .logs("backend-services", 100)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect();
    let work = world.work().to_string_lossy().into_owned();
    for expected in [
        "CLAUDE_SESSION_ID=test-session".to_string(),
        format!("CLAUDE_WORKING_DIR={work}"),
        "CLAUDE_AGENT_NAME=backend-services".to_string(),
        "CLAUDE_AGENT_TYPE=BACKEND".to_string(),
        "CLAUDE_MEMORY_LIMIT=512".to_string(),
        "CLAUDE_TIMEOUT=30".to_string(),
        "SESSION_MANAGER_URL=http://127.0.0.1:8082".to_string(),
        "MY_VAR=hello".to_string(),
        "line 3".to_string(),
        "READY".to_string(),
    ] {
        assert!(lines.contains(&expected), "{expected:?} not in {lines:?}");
    }
    // stderr is read by its own task: it may trail stdout a little.
    let deadline = Instant::now() + PATIENCE;
    while !group
        .logs("backend-services", 100)
        .unwrap()
        .iter()
        .any(|l| l.stream == Stream::Stderr && l.line == "err 1")
    {
        assert!(Instant::now() < deadline, "no `err 1` on stderr");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let agent = status(&group, "backend-services").await;
    let pid = agent.live.pid.expect("a running process agent has a pid");
    assert!(agent.has_process);
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, world.work().canonicalize().unwrap());
    // Its own process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let pgrp: u32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, pid);

    group.shutdown().await.unwrap();
    gone(&[pid]).await;
    let file =
        std::fs::read_to_string(world.file("data/logs/test-session/backend-services.log")).unwrap();
    assert!(file.contains(" stdout line 3\n"), "{file}");
    assert!(file.contains(" stderr err 1\n"), "{file}");
    assert!(
        file.contains(&format!("process {pid} ")),
        "the exit is noted: {file}"
    );
}

#[tokio::test]
async fn a_logical_agent_is_running_without_a_process() {
    let world = World::new();
    let (group, mut events) = world.start(json!([{"agent_type": "DOCUMENTATION"}])).await;
    entered(&mut events, "technical-documentation", ChildState::Running).await;
    let agent = status(&group, "technical-documentation").await;
    assert!(!agent.has_process);
    assert_eq!(agent.live.pid, None);
    assert_eq!(group.health().await.unwrap(), GroupHealth::Active);
    // It never writes a line, so it has no log file (nor a directory for one).
    assert!(!world.file("data/logs/test-session").exists());
    group.restart("technical-documentation").await.unwrap();
    entered(&mut events, "technical-documentation", ChildState::Stopping).await;
    entered(&mut events, "technical-documentation", ChildState::Running).await;
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn agents_start_in_dependency_order_seen_in_their_own_timestamps() {
    let world = World::new();
    let stamp = |name: &str| world.file(name).to_string_lossy().into_owned();
    let agent = |kind: &str, file: &str| {
        json!({
            "agent_type": kind,
            "command": fake(&["--stamp", &stamp(file), "--ready-after-ms", "150"]),
            "ready_pattern": "READY",
        })
    };
    // Listed backwards on purpose: DATABASE → BACKEND → ORCHESTRATOR by the default types.
    let (group, _events) = world
        .start(json!([
            agent("database", "db"),
            agent("backend", "be"),
            agent("orchestrator", "or"),
        ]))
        .await;
    let settled = group.settled().await.unwrap();
    assert!(
        settled.iter().all(|a| a.state == ChildState::Running),
        "{settled:?}"
    );
    let first = |file: &str| stamps(&world.file(file), "start")[0].1;
    let (or, be, db) = (first("or"), first("be"), first("db"));
    // Each started only after the one it depends on printed READY (150 ms after its start).
    assert!(
        be >= or + 150_000_000,
        "backend at {be}, orchestrator at {or}"
    );
    assert!(db >= be + 150_000_000, "database at {db}, backend at {be}");
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_crash_loop_backs_off_more_each_time_and_then_fails_with_an_alert() {
    let world = World::new();
    let stamp = world.file("crash");
    let (group, mut events) = world
        .start(json!([
            {"agent_type": "ORCHESTRATOR"},
            {
                "agent_type": "BACKEND",
                "command": fake(&["--stamp", &stamp.to_string_lossy(), "--exit-after-ms", "20", "--code", "3"]),
                "retry_attempts": 4,
                "backoff": {"initial_ms": 100, "max_ms": 10000, "multiplier": 2.0, "reset_after_seconds": 60},
            }
        ]))
        .await;
    let alert = next(&mut events, |e| match e {
        AgentEvent::Alert(a) if a.kind == AlertKind::Failed => Some(a.clone()),
        _ => None,
    })
    .await;
    assert_eq!(&*alert.agent, "backend-services");
    assert_eq!(alert.severity, Severity::High);
    assert!(
        alert.message.contains("exited with code 3"),
        "{}",
        alert.message
    );

    let starts = stamps(&stamp, "start");
    let exits = stamps(&stamp, "exit");
    assert_eq!(
        starts.len(),
        5,
        "the first start and 4 restarts: {starts:?}"
    );
    let gaps_ms: Vec<u128> = exits
        .iter()
        .zip(&starts[1..])
        .map(|((_, exit), (_, start))| (start - exit) / 1_000_000)
        .collect();
    // First restart immediate, then 100, 200, 400 ms at least.
    for (gap, floor) in gaps_ms[1..].iter().zip([100, 200, 400]) {
        assert!(*gap >= floor, "gaps {gaps_ms:?}");
    }
    assert!(
        gaps_ms.windows(2).all(|w| w[1] > w[0]),
        "gaps grow: {gaps_ms:?}"
    );

    let agent = status(&group, "backend-services").await;
    assert_eq!(agent.state, ChildState::Failed);
    assert_eq!(agent.restarts, 4);
    assert_eq!(agent.live.last_exit.unwrap().code(), Some(3));
    assert_eq!(agent.live.last_error.as_deref(), Some("exited with code 3"));
    assert_eq!(group.health().await.unwrap(), GroupHealth::Degraded);
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_orchestrator_puts_the_group_in_error_with_a_critical_alert() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "orchestrator",
            "command": fake(&["--exit-after-ms", "0"]),
            "retry_attempts": 0,
        }]))
        .await;
    let alert = next(&mut events, |e| match e {
        AgentEvent::Alert(a) => Some(a.clone()),
        _ => None,
    })
    .await;
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(group.health().await.unwrap(), GroupHealth::Error);
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_sigterm_ignoring_agent_and_its_grandchild_are_killed_after_the_grace() {
    let mut world = World::new();
    world.settings.agents.stop_grace_ms = 300;
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "backend",
            "command": fake(&["--ignore-sigterm", "--fork-grandchild"]),
        }]))
        .await;
    let grandchild: u32 = line_starting(&mut events, "backend-services", "grandchild ")
        .await
        .parse()
        .unwrap();
    let pid = status(&group, "backend-services").await.live.pid.unwrap();
    assert!(alive(grandchild));

    let asked = Instant::now();
    group.deactivate("backend-services").await.unwrap();
    entered(&mut events, "backend-services", ChildState::Stopped).await;
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "the grace was not given"
    );
    gone(&[pid, grandchild]).await;
    let agent = status(&group, "backend-services").await;
    assert_eq!(agent.live.last_exit.unwrap().signal(), Some(libc::SIGKILL));
    assert!(!agent.active);

    // Deactivated means down for good: nothing restarts it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status(&group, "backend-services").await.state,
        ChildState::Stopped
    );
    group.activate("backend-services").await.unwrap();
    entered(&mut events, "backend-services", ChildState::Running).await;
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_well_behaved_agent_stops_on_sigterm_and_its_grandchild_with_it() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{"agent_type": "api", "command": fake(&["--fork-grandchild"])}]))
        .await;
    let grandchild: u32 = line_starting(&mut events, "api-integration-specialist", "grandchild ")
        .await
        .parse()
        .unwrap();
    let pid = status(&group, "api-integration-specialist")
        .await
        .live
        .pid
        .unwrap();
    group.shutdown().await.unwrap();
    gone(&[pid, grandchild]).await;
}

#[tokio::test]
async fn a_memory_hog_raises_an_alert_and_is_restarted_with_reason_memory_limit() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "performance",
            "command": fake(&["--alloc-mb", "96"]),
            "max_memory_mb": 48,
        }]))
        .await;
    let alert = next(&mut events, |e| match e {
        AgentEvent::Alert(a) if a.kind == AlertKind::MemoryLimit => Some(a.clone()),
        _ => None,
    })
    .await;
    assert!(
        alert.message.starts_with("memory_limit"),
        "{}",
        alert.message
    );
    let reason = next(&mut events, |e| match e {
        AgentEvent::State {
            from: ChildState::Running,
            reason,
            ..
        } => Some(reason.clone()),
        _ => None,
    })
    .await
    .unwrap_or_default();
    assert!(reason.starts_with("memory_limit"), "{reason}");
    entered(&mut events, "performance-optimization", ChildState::Running).await;
    assert!(status(&group, "performance-optimization").await.restarts >= 1);
    let down = group.logs("performance-optimization", 50).unwrap();
    assert!(
        down.iter().any(|l| l.line.contains("killed by signal 9")),
        "{down:?}"
    );
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_the_readiness_deadline_counts_as_a_crash_and_never_shows_running() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "security",
            "command": fake(&["--ready-after-ms", "10000"]),
            "ready_pattern": "READY",
            "timeout_seconds": 1,
            "retry_attempts": 0,
        }]))
        .await;
    let mut seen = Vec::new();
    let reason = next(&mut events, |e| match e {
        AgentEvent::State { to, reason, .. } => {
            seen.push(*to);
            (*to == ChildState::Failed).then(|| reason.clone())
        }
        _ => None,
    })
    .await;
    assert!(!seen.contains(&ChildState::Running), "{seen:?}");
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("1s") || reason.contains("ready"),
        "{reason}"
    );
    assert_eq!(status(&group, "security-architecture").await.live.pid, None);
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_with_the_reason() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "quality",
            "command": ["/nonexistent/program"],
            "retry_attempts": 0,
        }]))
        .await;
    let reason = entered(&mut events, "quality-assurance", ChildState::Failed)
        .await
        .unwrap();
    assert!(
        reason.contains("cannot start `/nonexistent/program`"),
        "{reason}"
    );
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn limits_are_applied_before_exec() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "middleware",
            "command": fake(&[]),
            "limits": {"open_files": 64, "cpu_seconds": 3600, "address_space_mb": 4096, "nice": 5},
        }]))
        .await;
    entered(&mut events, "middleware-specialist", ChildState::Running).await;
    let pid = status(&group, "middleware-specialist")
        .await
        .live
        .pid
        .unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let row = |name: &str| {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert!(
        row("Max open files").contains(&"64".to_string()),
        "{limits}"
    );
    assert!(
        row("Max cpu time").contains(&"3600".to_string()),
        "{limits}"
    );
    assert!(
        row("Max address space").contains(&(4096u64 << 20).to_string()),
        "{limits}"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let nice: i32 = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(nice, 5);
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn restart_replaces_the_process_and_unknown_agents_are_named() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{"agent_type": "devops", "command": fake(&[])}]))
        .await;
    entered(&mut events, "devops-deployment", ChildState::Running).await;
    let before = status(&group, "devops-deployment").await.live.pid.unwrap();
    group.restart("devops-deployment").await.unwrap();
    entered(&mut events, "devops-deployment", ChildState::Running).await;
    let after = status(&group, "devops-deployment").await.live.pid.unwrap();
    assert_ne!(before, after);
    gone(&[before]).await;
    let err = group.restart("nobody").await.unwrap_err();
    assert_eq!(err.to_string(), "unknown agent `nobody`");
    assert!(group.logs("nobody", 1).is_err());
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_servers_own_lines_about_an_agent_reach_subscribers_live() {
    // A live tail (the dashboard's, a WebSocket client's) shows a restart as it happens: the
    // exit and the new start are lines of the agent, not only in its log file.
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{"agent_type": "devops", "command": fake(&[])}]))
        .await;
    let agent = "devops-deployment";
    let started = "[session-manager] started process";
    let first = line_starting(&mut events, agent, started).await;
    entered(&mut events, agent, ChildState::Running).await;
    let before = status(&group, agent).await.live.pid.unwrap();
    assert!(first.starts_with(&format!("{before}: ")), "{first}");
    group.restart(agent).await.unwrap();
    let exit = format!("[session-manager] process {before} ");
    assert!(!line_starting(&mut events, agent, &exit).await.is_empty());
    let second = line_starting(&mut events, agent, started).await;
    entered(&mut events, agent, ChildState::Running).await;
    let after = status(&group, agent).await.live.pid.unwrap();
    assert!(second.starts_with(&format!("{after}: ")), "{second}");
    // The same lines are in the kept tail, in that order.
    let tail: Vec<String> = group
        .logs(agent, 100)
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .filter(|l| l.starts_with("[session-manager]"))
        .collect();
    assert_eq!(tail.len(), 3, "{tail:?}");
    assert!(tail[1].starts_with(&exit), "{tail:?}");
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_clean_exit_of_a_transient_agent_is_not_restarted() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{
            "agent_type": "monitoring",
            "command": fake(&["--exit-after-ms", "10", "--code", "0"]),
            "restart": "transient",
        }]))
        .await;
    entered(&mut events, "monitoring-observability", ChildState::Stopped).await;
    let agent = status(&group, "monitoring-observability").await;
    assert_eq!(agent.restarts, 0);
    assert_eq!(agent.live.last_exit.unwrap().code(), Some(0));
    group.shutdown().await.unwrap();
}

#[tokio::test]
async fn custom_commands_are_refused_unless_allowed() {
    let mut world = World::new();
    world.settings.agents.allow_custom_commands = false;
    let err = world
        .resolve(json!([{"agent_type": "BACKEND", "command": ["/bin/true"]}]))
        .unwrap_err();
    assert_eq!(err.field(), "agents[0].command");
    // A template may always name a command.
    world.settings.agents.templates.insert(
        "BACKEND".into(),
        toml_template(&format!(
            "command = [{:?}]",
            example("fake_agent").to_string_lossy()
        )),
    );
    let agents = world.resolve(json!([{"agent_type": "BACKEND"}])).unwrap();
    assert!(agents[0].command.is_some());
}

fn toml_template(text: &str) -> session_manager::config::AgentTemplate {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("[agents.templates.BACKEND]\n{text}\n")).unwrap();
    let settings = Settings::load(&Overrides {
        config_file: Some(path),
        data_dir: Some(dir.path().to_path_buf()),
        ..Overrides::default()
    })
    .unwrap();
    settings.agents.templates["BACKEND"].clone()
}

/// SIGKILL of a program that runs agents (examples/run_agents.rs) leaves no agent process and
/// no grandchild behind: the parent-death signal takes the first processes, the watchdog the
/// rest of each group.
#[tokio::test]
async fn a_sigkilled_runner_leaves_no_agent_or_grandchild_behind() {
    let world = World::new();
    let agents = json!([
        {"agent_type": "orchestrator", "command": fake(&["--fork-grandchild", "--ignore-sigterm"])},
        {"agent_type": "backend", "command": fake(&["--fork-grandchild"])},
        {"agent_type": "frontend", "command": fake(&[])},
    ]);
    let file = world.file("agents.json");
    std::fs::write(&file, agents.to_string()).unwrap();
    let mut runner = tokio::process::Command::new(example("run_agents"))
        .arg(&file)
        .arg(world.work())
        .arg(world.file("data"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(runner.stdout.take().unwrap()));
    let mut pids: HashMap<String, u32> = HashMap::new();
    let mut grandchildren = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while pids.len() < 3 || grandchildren.len() < 2 {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("runner output")
            .unwrap()
            .expect("runner alive");
        let words: Vec<&str> = line.split(' ').collect();
        match words.as_slice() {
            ["pid", agent, pid] => {
                pids.insert(agent.to_string(), pid.parse().unwrap());
            }
            ["log", _, "grandchild", pid] => grandchildren.push(pid.parse().unwrap()),
            _ => {}
        }
    }
    let everyone: Vec<u32> = pids.values().copied().chain(grandchildren).collect();
    assert!(everyone.iter().all(|&p| alive(p)));
    runner.start_kill().unwrap();
    runner.wait().await.unwrap();
    gone(&everyone).await;
}

#[tokio::test]
async fn a_started_at_is_recorded_for_a_running_agent() {
    let world = World::new();
    let (group, mut events) = world
        .start(json!([{"agent_type": "database", "command": fake(&[])}]))
        .await;
    entered(&mut events, "database-architect", ChildState::Running).await;
    let agent = status(&group, "database-architect").await;
    let started = agent.live.started_at.unwrap();
    assert!(started <= SystemTime::now());
    group.shutdown().await.unwrap();
}

/// A spawn that fails in the agent layer itself (an argv no configuration check let through)
/// is a failed start with a reason, not a panic that takes the group's supervisor down.
#[tokio::test]
async fn an_empty_argv_fails_the_start_instead_of_panicking() {
    let world = World::new();
    let mut agents = world
        .resolve(json!([{"agent_type": "api", "command": fake(&[]), "retry_attempts": 0}]))
        .unwrap();
    // `ResolvedAgent` is public with public fields: a library user can build this one.
    agents[0].command = Some(vec![]);
    let group = AgentGroup::build(world.context(), agents).await.unwrap();
    let mut events = group.subscribe();
    group.start_all().await.unwrap();
    let reason = entered(
        &mut events,
        "api-integration-specialist",
        ChildState::Failed,
    )
    .await
    .unwrap_or_default();
    assert!(reason.contains("empty command"), "{reason}");
    group.shutdown().await.unwrap();
}

/// An agent gets exactly stdin, stdout and stderr: no descriptor of the server's, not even
/// one the server inherited without close-on-exec (a systemd socket-activation listener, a
/// launcher's status pipe), or the agent holds it open for as long as it runs.
#[tokio::test]
async fn an_agent_inherits_no_descriptor_besides_its_stdio() {
    // A descriptor without close-on-exec, as a parent process may hand the server.
    // SAFETY: dup(2) of our own stderr; closed below.
    let stray = unsafe { libc::dup(2) };
    assert!(stray > 2);
    let world = World::new();
    // Running once it printed READY: past the program's own start-up, during which the
    // C library may briefly hold a descriptor of its own (glibc reads /proc/self/maps).
    let (group, mut events) = world
        .start(
            json!([{"agent_type": "api", "command": fake(&["--ready-after-ms", "1"]),
                        "ready_pattern": "READY"}]),
        )
        .await;
    entered(
        &mut events,
        "api-integration-specialist",
        ChildState::Running,
    )
    .await;
    let pid = status(&group, "api-integration-specialist")
        .await
        .live
        .pid
        .unwrap();
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    group.shutdown().await.unwrap();
    gone(&[pid]).await;
    // SAFETY: closing the descriptor dup'ed above.
    unsafe { libc::close(stray) };
    assert_eq!(fds, ["0", "1", "2"], "stray descriptor {stray}");
}

/// The transitions a group published so far, as (agent, from, to).
fn drained(events: &mut broadcast::Receiver<AgentEvent>) -> Vec<(String, ChildState, ChildState)> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let AgentEvent::State {
            agent, from, to, ..
        } = event
        {
            seen.push((agent.to_string(), from, to));
        }
    }
    seen
}

/// What a group shows of its agents: (name, state, wanted up).
async fn shown(group: &AgentGroup) -> Vec<(String, ChildState, bool)> {
    let statuses = group.settled().await.unwrap();
    statuses
        .into_iter()
        .map(|s| (s.name, s.state, s.active))
        .collect()
}

#[tokio::test]
async fn logical_agents_run_without_a_supervisor_exactly_as_under_one_until_it_takes_over() {
    let world = World::new();
    let agents = json!([
        {"agent_type": "DOCUMENTATION", "name": "e", "depends_on": ["a", "b"]},
        {"agent_type": "DOCUMENTATION", "name": "b", "depends_on": ["a"]},
        {"agent_type": "DOCUMENTATION", "name": "a"},
        {"agent_type": "DOCUMENTATION", "name": "c", "enabled": false},
        {"agent_type": "DOCUMENTATION", "name": "d", "depends_on": ["c"]},
        {"agent_type": "DOCUMENTATION", "name": "f"},
    ]);
    // The same agents twice: run by the group in line, and by a supervisor from the start.
    let mut runs = Vec::new();
    for supervised_from_the_start in [false, true] {
        let group = AgentGroup::build(world.context(), world.resolve(agents.clone()).unwrap())
            .await
            .unwrap();
        let mut events = group.subscribe();
        if supervised_from_the_start {
            group.supervisor().await.unwrap().start_all().await.unwrap();
        } else {
            group.start_all().await.unwrap();
        }
        let started = shown(&group).await;
        let start_events = drained(&mut events);
        // Orders after the start: the first one makes the in-line group spawn its
        // supervisor, which must take every agent over as it stands.
        group.deactivate("b").await.unwrap();
        let after_deactivate = shown(&group).await;
        group.activate("c").await.unwrap();
        group.activate("b").await.unwrap();
        group.restart("a").await.unwrap();
        let after_orders = shown(&group).await;
        let order_events = drained(&mut events);
        group.shutdown().await.unwrap();
        runs.push((
            started,
            start_events,
            after_deactivate,
            after_orders,
            order_events,
            drained(&mut events),
        ));
    }
    let (inline, supervised) = (&runs[0], &runs[1]);
    assert_eq!(inline.0, supervised.0, "states after the start");
    assert_eq!(inline.1, supervised.1, "transitions of the start");
    assert_eq!(inline.2, supervised.2, "states after a deactivate");
    assert_eq!(inline.3, supervised.3, "states after the orders");
    assert_eq!(inline.4, supervised.4, "transitions of the orders");
    assert_eq!(inline.5, supervised.5, "transitions of the shutdown");
    // And what that is: dependencies first, a disabled agent and its dependent pending.
    use ChildState::*;
    let names = |list: &[(String, ChildState, ChildState)], to: ChildState| {
        list.iter()
            .filter(|(_, _, t)| *t == to)
            .map(|(n, _, _)| n.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&inline.1, Running), ["a", "f", "b", "e"]);
    assert_eq!(
        inline.0,
        [
            ("a".to_string(), Running, true),
            ("b".to_string(), Running, true),
            ("c".to_string(), Pending, false),
            ("d".to_string(), Pending, true),
            ("e".to_string(), Running, true),
            ("f".to_string(), Running, true),
        ]
    );
    assert!(inline.2.contains(&("b".to_string(), Stopped, false)));
    assert!(inline.3.iter().all(|(_, state, _)| *state == Running));
}
