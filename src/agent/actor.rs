//! The agent actor: one incarnation of an agent with a command, owning one OS process group
//! for the actor's whole life. (A logical agent, without a command, has no actor: see
//! `group::LogicalWorker`.)
//!
//! The actor never reports `running` without a live process: it is spawned only after the
//! process exists (a spawn error fails the start), its readiness waits for the process's
//! `ready_pattern` line, and the process's exit ends the actor at once — cleanly for exit
//! code 0, as a failure otherwise — so the supervisor sees every exit and decides.
//!
//! Stopping (the supervisor's `stop`) runs `post_stop`: SIGTERM to the group, the grace, then
//! SIGKILL. A kill of the actor (supervisor's stop timeout, server teardown) skips
//! `post_stop`, and dropping the state's process group guard kills the group instead.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use regex::Regex;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use supervision::error_chain;
use supervision::process::{self, Command, Output, Process, ProcessExit, SpawnError, Spawned};

use super::claude::conversation_flags;
use super::config::Limits;
use super::event::{AgentAlert, AgentEvent, AlertKind, Severity};
use super::group::{AgentEvents, Workplace};
use super::output::{pump, LogLine, OutputLog, Stream};
use super::terminal::{self, Terminal};

/// How often an agent with `max_memory_mb` samples its process tree.
pub(crate) const MEMORY_SAMPLE_EVERY: Duration = Duration::from_secs(1);

const MIB: u64 = 1024 * 1024;

/// Everything needed to start an incarnation; fixed for the agent's configuration.
#[derive(Debug)]
pub(crate) struct Launch {
    pub(crate) command: Vec<String>,
    /// A Claude agent's conversation: each spawn appends its flag and id to `command`.
    pub(crate) claude_session: Option<Uuid>,
    pub(crate) ready_pattern: Option<Regex>,
    /// The whole environment the agent adds (CLAUDE_*, session's, agent's).
    pub(crate) env: Vec<(String, String)>,
    /// The working directory, judged again at every start.
    pub(crate) workplace: Arc<Workplace>,
    pub(crate) limits: Limits,
    pub(crate) max_memory_mb: Option<u64>,
    pub(crate) grace: Duration,
}

/// What an agent looks like from outside right now; kept across incarnations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentLive {
    /// The process id while a process runs.
    pub pid: Option<u32>,
    /// When the current incarnation started.
    pub started_at: Option<SystemTime>,
    /// How the last process ended.
    pub last_exit: Option<ProcessExit>,
    /// The last failure (start error, crash, memory limit), for people.
    pub last_error: Option<String>,
    /// Resident memory of the whole process tree at the last sample, in MiB.
    pub memory_mb: Option<f64>,
}

/// State shared by every incarnation of one agent and by the group that reads it.
#[derive(Debug)]
pub(crate) struct AgentShared {
    pub(crate) name: Arc<str>,
    pub(crate) log: OutputLog,
    pub(crate) live: Mutex<AgentLive>,
    pub(crate) events: Arc<AgentEvents>,
    /// The terminal the agent runs on, kept across incarnations; `None` runs it on pipes.
    pub(crate) terminal: Option<Arc<Terminal>>,
}

impl Drop for AgentShared {
    /// The last incarnation and the group are gone: the terminal's viewers are told.
    fn drop(&mut self) {
        if let Some(terminal) = &self.terminal {
            terminal.close();
        }
    }
}

impl AgentShared {
    pub(crate) fn live(&self) -> MutexGuard<'_, AgentLive> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, event: AgentEvent) {
        self.events.publish(event);
    }

    /// A line of the server's own about the agent (started, exited, cannot start): kept with
    /// its output and sent to subscribers as one of its lines, so a live tail shows restarts.
    fn note(&self, text: String) {
        let line = self.log.note(text);
        self.publish(AgentEvent::Log {
            agent: self.name.clone(),
            line,
        });
    }

    fn exited(&self, pid: u32, exit: ProcessExit) {
        if let Some(terminal) = &self.terminal {
            terminal.disconnect();
        }
        {
            let mut live = self.live();
            live.pid = None;
            live.last_exit = Some(exit);
            if !exit.success() {
                live.last_error = Some(exit.to_string());
            }
        }
        self.note(format!("process {pid} {exit}"));
        self.publish(AgentEvent::Exited {
            agent: self.name.clone(),
            pid,
            exit,
        });
    }
}

/// The actor (no fields: all is in the state).
pub(crate) struct AgentActor;

/// Messages the actor sends itself.
#[derive(Debug)]
pub(crate) enum AgentMsg {
    /// The process ended.
    Exited(ProcessExit),
    /// Time to sample the process tree's memory.
    Sample,
}

/// What an incarnation starts with: its launch, the shared record, its process (already
/// spawned, see [`spawn_process`]) and where to say it is ready (when it has a ready
/// pattern).
pub(crate) struct AgentArgs {
    pub(crate) launch: Arc<Launch>,
    pub(crate) shared: Arc<AgentShared>,
    pub(crate) spawned: Spawned,
    pub(crate) ready: Option<oneshot::Sender<()>>,
}

/// Spawns the agent's process in its working directory, judged again first: the directory
/// is opened, what was opened is checked against the path policy, and the child enters that
/// descriptor (`fchdir`), so a name swapped after the check cannot move the agent.
///
/// Called synchronously by the supervisor's worker, before the actor exists, so a restart's
/// exec happens while the supervisor handles the exit, not several task hops later.
pub(crate) fn spawn_process(launch: &Launch, shared: &AgentShared) -> Result<Spawned, String> {
    // `command` may be empty here (the spawn refuses it): never index it.
    let program = launch.command.first().map_or("", String::as_str);
    let failed = |message: String| {
        shared.live().last_error = Some(message.clone());
        shared.note(message.clone());
        message
    };
    let argv: Cow<'_, [String]> = match launch.claude_session {
        Some(id) => {
            let flags = conversation_flags(id, Path::new(launch.workplace.path()), &launch.env)
                .map_err(|err| {
                    failed(format!("cannot start `{program}`: {}", error_chain(&err)))
                })?;
            Cow::Owned([launch.command.as_slice(), &flags].concat())
        }
        None => Cow::Borrowed(&launch.command),
    };
    let directory = launch
        .workplace
        .open()
        .map_err(|refused| failed(format!("cannot start `{program}`: {refused}")))?;
    let mut command = Command::from_argv(argv.iter());
    if let Some(terminal) = &shared.terminal {
        command = command.terminal(terminal.size());
    }
    let spawned = command
        .envs(launch.env.iter().cloned())
        .hide_env_prefix(crate::config::ENV_PREFIX)
        .limits(process_limits(&launch.limits))
        .spawn_in(directory.fd())
        .map_err(|err| failed(format!("cannot start `{program}`: {}", spawn_failure(&err))))?;
    let pid = spawned.pid();
    {
        let mut live = shared.live();
        live.pid = Some(pid);
        live.started_at = Some(SystemTime::now());
        live.memory_mb = None;
    }
    shared.note(format!("started process {pid}: {}", argv.join(" ")));
    Ok(spawned)
}

/// An agent's configured limits as the process layer applies them.
fn process_limits(limits: &Limits) -> process::Limits {
    let mut applied = process::Limits::new();
    if let Some(mb) = limits.address_space_mb {
        applied = applied.address_space_mb(mb);
    }
    if let Some(n) = limits.open_files {
        applied = applied.open_files(n);
    }
    if let Some(seconds) = limits.cpu_seconds {
        applied = applied.cpu_seconds(seconds);
    }
    if let Some(nice) = limits.nice {
        applied = applied.nice(nice);
    }
    applied
}

/// What a failed spawn says after "cannot start `program`: " — the OS's words with the step
/// that failed, as agents' `last_error` has always read.
fn spawn_failure(err: &SpawnError) -> String {
    match err {
        SpawnError::Spawn { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// One incarnation's state.
pub(crate) struct AgentState {
    launch: Arc<Launch>,
    shared: Arc<AgentShared>,
    process: Option<Process>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for AgentState {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(process) = &self.process {
            self.shared.live().pid = None;
            tracing::debug!(agent = %self.shared.name, pid = process.pid(), "dropping the agent's process group");
        }
        // Dropping `process` kills its group.
    }
}

impl Actor for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Arguments = AgentArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let AgentArgs {
            launch,
            shared,
            spawned,
            ready,
        } = args;
        let mut state = AgentState {
            launch: launch.clone(),
            shared: shared.clone(),
            process: None,
            tasks: Vec::new(),
        };
        let me = myself.clone();
        let (process, output) = spawned.watch(move |exit| {
            let _ = me.cast(AgentMsg::Exited(exit));
        });
        state.process = Some(process);

        let mut ready = ready;
        let pattern = launch.ready_pattern.clone();
        let mut on_line = {
            let shared = shared.clone();
            move |line: &LogLine| {
                if let (Some(pattern), true) = (&pattern, ready.is_some()) {
                    if pattern.is_match(&line.line) {
                        if let Some(ready) = ready.take() {
                            let _ = ready.send(());
                        }
                    }
                }
                shared.publish(AgentEvent::Log {
                    agent: shared.name.clone(),
                    line: line.clone(),
                });
            }
        };
        // The output pumps are not aborted with the incarnation: they end at end-of-file, once
        // the group is gone, so the last lines a process printed are never lost.
        match (output, shared.terminal.clone()) {
            (Output::Terminal(pty), Some(screen)) => {
                screen.connect(pty.clone());
                let out = shared.clone();
                tokio::spawn(async move {
                    terminal::pump(pty, &screen, &out.log, on_line).await;
                });
            }
            (Output::Pipes { stdout, stderr }, _) => {
                let out = shared.clone();
                tokio::spawn(async move {
                    pump(stdout, Stream::Stdout, &out.log, &mut on_line).await;
                });
                let err = shared.clone();
                tokio::spawn(async move {
                    pump(stderr, Stream::Stderr, &err.log, |line| {
                        err.publish(AgentEvent::Log {
                            agent: err.name.clone(),
                            line: line.clone(),
                        });
                    })
                    .await;
                });
            }
            (other, None) => {
                // Unreachable: the spawn asks for a terminal exactly when there is one.
                return Err(format!("unexpected output for an agent on pipes: {other:?}").into());
            }
            (other, Some(_)) => {
                return Err(format!("unexpected output for a terminal agent: {other:?}").into());
            }
        }

        if launch.max_memory_mb.is_some() {
            let sampler = myself.send_interval(MEMORY_SAMPLE_EVERY, || AgentMsg::Sample);
            state.tasks.push(sampler);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Exited(exit) => {
                let Some(process) = state.process.take() else {
                    return Ok(());
                };
                state.shared.exited(process.pid(), exit);
                // Dropping the process kills whatever the agent left in its group.
                drop(process);
                if exit.success() {
                    myself.stop(Some(exit.to_string()));
                    Ok(())
                } else {
                    Err(exit.to_string().into())
                }
            }
            AgentMsg::Sample => {
                let (Some(limit_mb), Some(process)) = (state.launch.max_memory_mb, &state.process)
                else {
                    return Ok(());
                };
                let Some(rss) = process::tree_rss_bytes(process.pid()) else {
                    return Ok(());
                };
                state.shared.live().memory_mb = Some(rss as f64 / MIB as f64);
                if rss <= limit_mb.saturating_mul(MIB) {
                    return Ok(());
                }
                let reason = format!(
                    "memory_limit: the process tree uses {} MiB, over its limit of {limit_mb} MiB",
                    rss / MIB
                );
                state.shared.publish(AgentEvent::Alert(AgentAlert {
                    agent: state.shared.name.clone(),
                    kind: AlertKind::MemoryLimit,
                    severity: Severity::High,
                    message: reason.clone(),
                    at: SystemTime::now(),
                }));
                if let Some(mut process) = state.process.take() {
                    let exit = process.kill().await;
                    state.shared.exited(process.pid(), exit);
                }
                state.shared.live().last_error = Some(reason.clone());
                Err(reason.into())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<AgentMsg>,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(mut process) = state.process.take() {
            let exit = process.terminate(state.launch.grace).await;
            state.shared.exited(process.pid(), exit);
        }
        Ok(())
    }
}
