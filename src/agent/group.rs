//! A group of agents under one supervisor: what a session runs. Builds one child spec per
//! resolved agent (dependencies, restart policy, readiness deadline, stop grace), translates
//! the supervisor's events into [`AgentEvent`]s (raising an alert when an agent fails), and
//! answers for the agents' live state, output and health.
//!
//! A logical agent (no command) is a child without an actor ([`Started::without_actor`]):
//! it holds state and its place in the dependency order, and costs no actor, task or file.
//! Events go to the group's sink, if it has one, in the supervisor's own order, and to a
//! broadcast channel created by the first [`AgentGroup::subscribe`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use ractor::Actor;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use crate::config::{Settings, Token};
use crate::paths::{DirectoryRefused, OpenedDirectory, PathPolicy};
use crate::supervision::process::TerminalSize;
use crate::supervision::{
    BoxFuture, ChildSpec, ChildState, ChildTransition, DependencyGraph, StartContext, StartError,
    Started, Strategy, SupervisionError, SupervisorConfig, SupervisorEvent, SupervisorHandle,
    TakenChild, Takeover, Worker,
};

use super::actor::{spawn_process, AgentActor, AgentArgs, AgentLive, AgentShared, Launch};
use super::config::ResolvedAgent;
use super::event::{AgentAlert, AgentEvent, AlertKind, Severity};
use super::output::{LogLine, OutputLog, Rotation};
use super::terminal::Terminal;
use super::AgentType;

/// Extra time the supervisor gives a stopping agent beyond its grace before it kills the
/// actor (whose drop then kills the process group).
const STOP_MARGIN: Duration = Duration::from_secs(2);

/// Events buffered per subscriber of a group. tokio's broadcast allocates every slot up
/// front (about 8 KB here), so the channel exists only once somebody subscribed; a
/// subscriber that falls further behind is told it lagged (the output's history is in
/// `logs()`), never slows an agent.
const EVENT_CAPACITY: usize = 64;

/// Receives every event of a group as it happens, in order, on the thread that produced it
/// (the supervisor's handler, an output pump): it must return at once, never block or wait.
pub type EventSink = Arc<dyn Fn(AgentEvent) + Send + Sync>;

/// Where a group's events go: its sink, and the broadcast channel once somebody subscribed.
pub(crate) struct AgentEvents {
    channel: OnceLock<broadcast::Sender<AgentEvent>>,
    sink: Option<EventSink>,
}

impl std::fmt::Debug for AgentEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentEvents")
            .field("subscribed", &self.channel.get().is_some())
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl AgentEvents {
    fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.channel
            .get_or_init(|| broadcast::channel(EVENT_CAPACITY).0)
            .subscribe()
    }

    /// Whether anybody would see an event (so it is worth building).
    fn heard(&self) -> bool {
        self.sink.is_some() || self.channel.get().is_some()
    }

    pub(crate) fn publish(&self, event: AgentEvent) {
        // No subscriber is fine; a lagging one misses events, it never slows an agent.
        match (self.channel.get(), &self.sink) {
            (Some(channel), Some(sink)) => {
                sink(event.clone());
                let _ = channel.send(event);
            }
            (Some(channel), None) => {
                let _ = channel.send(event);
            }
            (None, Some(sink)) => sink(event),
            (None, None) => {}
        }
    }
}

/// Where and how a group's agents run: what a session gives them.
#[derive(Debug, Clone)]
pub struct AgentContext {
    /// `CLAUDE_SESSION_ID`, and the name of the agents' log directory.
    pub session_id: String,
    /// Where the processes run (`CLAUDE_WORKING_DIR`).
    pub working_dir: PathBuf,
    /// The session's environment, under each agent's own.
    pub environment: BTreeMap<String, String>,
    /// `SESSION_MANAGER_URL`: how agents reach the server.
    pub server_url: String,
    /// Directory of the agents' output logs (`<data_dir>/logs/<session_id>`).
    pub log_dir: PathBuf,
    /// Size at which an agent's log file is rotated.
    pub log_max_bytes: u64,
    /// Rotated files kept per agent.
    pub log_keep_files: usize,
    /// How a crash affects the other agents.
    pub strategy: Strategy,
    /// The policy `working_dir` is judged by at every start of a process.
    pub paths: PathPolicy,
    /// The Claude session id of each Claude agent, by name (the session keeps them with its
    /// record; see [`super::assign_session_ids`]).
    pub claude_sessions: BTreeMap<String, Uuid>,
    /// Bytes of output kept per terminal agent (`agents.terminal.scrollback_bytes`).
    pub scrollback_bytes: usize,
    /// The server's bearer token, which Claude agents' hooks and telemetry send.
    pub server_token: Token,
    /// The git branch of the working directory, a label of Claude agents' telemetry.
    pub git_branch: Option<String>,
}

impl AgentContext {
    /// The context for a session of a server with these settings: logs under the data
    /// directory, the server's configured address as `SESSION_MANAGER_URL`, `one_for_one`,
    /// the path policy of `[paths]` (built here: a server with many sessions shares one
    /// through [`AgentContext::with_paths`]).
    pub fn new(session_id: impl Into<String>, working_dir: PathBuf, settings: &Settings) -> Self {
        let paths = PathPolicy::from_settings(&settings.paths);
        Self::with_paths(session_id, working_dir, settings, paths)
    }

    /// [`AgentContext::new`] with the path policy given.
    pub fn with_paths(
        session_id: impl Into<String>,
        working_dir: PathBuf,
        settings: &Settings,
        paths: PathPolicy,
    ) -> Self {
        let session_id = session_id.into();
        AgentContext {
            log_dir: settings.log_dir().join(&session_id),
            session_id,
            working_dir,
            environment: BTreeMap::new(),
            server_url: format!("http://{}:{}", settings.server.bind, settings.server.port),
            log_max_bytes: settings.logs.max_file_bytes,
            log_keep_files: settings.logs.keep_files,
            strategy: Strategy::OneForOne,
            paths,
            claude_sessions: BTreeMap::new(),
            scrollback_bytes: settings.agents.terminal.scrollback_bytes,
            server_token: settings.server.token.clone(),
            git_branch: None,
        }
    }
}

/// A group's working directory and the verdict of its last judgement, shared by every
/// agent of the group: each start of a process opens the directory and judges what it
/// opened ([`PathPolicy::open_directory`]), and the session reads the verdict to put itself
/// in `error` when the directory no longer passes.
#[derive(Debug)]
pub(crate) struct Workplace {
    raw: String,
    paths: PathPolicy,
    refused: Mutex<Option<DirectoryRefused>>,
}

impl Workplace {
    /// Opens the directory to start a process in; remembers the verdict (a pass clears an
    /// earlier refusal: the directory was put right).
    pub(crate) fn open(&self) -> Result<OpenedDirectory, DirectoryRefused> {
        let verdict = self.paths.open_directory(&self.raw);
        *self.refused() = verdict.as_ref().err().cloned();
        verdict
    }

    /// The directory as the session gives it (its canonical form).
    pub(crate) fn path(&self) -> &str {
        &self.raw
    }

    fn refused(&self) -> std::sync::MutexGuard<'_, Option<DirectoryRefused>> {
        // Plain data: a panic while holding it leaves nothing half-done.
        self.refused.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How the agents of a group are doing, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupHealth {
    /// Some enabled agent is not running yet (pending, starting, backing off).
    Starting,
    /// Every agent that should run is running.
    Active,
    /// An agent failed.
    Degraded,
    /// The ORCHESTRATOR failed.
    Error,
}

/// One agent as the group sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentStatus {
    /// Its name.
    pub name: String,
    /// Its type.
    pub agent_type: AgentType,
    /// Its state.
    pub state: ChildState,
    /// Since when.
    pub since: SystemTime,
    /// Whether it is wanted up (false once deactivated).
    pub active: bool,
    /// Restarts made by the supervisor.
    pub restarts: u64,
    /// Process, exit and memory details.
    pub live: AgentLive,
    /// Whether it runs a process (false for a logical agent).
    pub has_process: bool,
    /// The agents it waits for, as resolved (its own `depends_on`, else its template's, else
    /// its type's defaults): the edges the supervisor starts it by.
    pub depends_on: Arc<[Arc<str>]>,
    /// The conversation a Claude agent starts and resumes; `None` for other agents.
    pub claude_session_id: Option<Uuid>,
    /// The size of the terminal it runs on, if it runs on one.
    pub terminal: Option<TerminalSize>,
}

/// What can go wrong talking to a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No agent has this name.
    #[error("unknown agent `{0}`")]
    UnknownAgent(String),
    /// The agent runs on pipes or has no process: it has no terminal.
    #[error("agent `{0}` has no terminal (its configuration has no `terminal`)")]
    NoTerminal(String),
    /// The supervisor refused or is gone.
    #[error(transparent)]
    Supervision(#[from] SupervisionError),
    /// A Claude agent was given without its Claude session id (the session assigns one to
    /// every Claude agent before it builds the group).
    #[error("Claude agent `{0}` has no Claude session id")]
    NoClaudeSession(String),
    /// The group ran without a supervisor and an earlier attempt to spawn one failed: there
    /// is none to take the agents over now. (The text is the one this case has always had.)
    #[error("cannot spawn supervisor: the group's supervisor could not be spawned")]
    SupervisorLost,
}

struct Entry {
    agent_type: AgentType,
    has_process: bool,
    claude_session: Option<Uuid>,
    depends_on: Arc<[Arc<str>]>,
    shared: Arc<AgentShared>,
}

/// A running group of agents. Dropping it without [`AgentGroup::shutdown`] kills every
/// agent's process group at once.
///
/// A group whose agents are all logical runs without a supervisor actor until it needs one:
/// starting them is instant and cannot fail, so the group does it in line (the same
/// transitions, in the same order, as a supervisor would publish) and spawns the supervisor,
/// taking the children over as they stand, at the first order (activate, deactivate,
/// restart, shutdown) or [`AgentGroup::supervisor`] call. A server restoring thousands of
/// sessions of logical agents spares an actor each.
pub struct AgentGroup {
    supervisor: tokio::sync::OnceCell<SupervisorHandle>,
    /// The group as it runs before its supervisor exists (taken when it is spawned).
    deferred: Mutex<Option<Deferred>>,
    agents: Arc<BTreeMap<Arc<str>, Entry>>,
    events: Arc<AgentEvents>,
    workplace: Arc<Workplace>,
    /// Set by [`AgentGroup::shutdown`]: the drop then leaves the (stopped) agents alone.
    /// Atomic because a session shares its group with readers (`&self` shutdown).
    shut_down: std::sync::atomic::AtomicBool,
}

/// A group of logical agents without its supervisor yet.
struct Deferred {
    config: SupervisorConfig,
    specs: Vec<ChildSpec>,
    graph: DependencyGraph,
    started: bool,
    children: Vec<Seat>,
}

/// One child of a group run without its supervisor: what the supervisor takes over
/// ([`TakenChild`]) when it is spawned.
#[derive(Debug, Clone, Copy)]
struct Seat {
    wanted: bool,
    running: bool,
    since: SystemTime,
}

impl Deferred {
    /// What the supervisor's `start_all` does for children that start without an actor:
    /// every enabled child is wanted, and each one whose dependencies run starts, layer by
    /// layer, lowest index first, publishing pending → starting → running (unless `quiet`:
    /// see [`AgentGroup::resume_all`]).
    fn start_all(&mut self, agents: &BTreeMap<Arc<str>, Entry>, events: &AgentEvents, quiet: bool) {
        self.started = true;
        for (child, spec) in self.children.iter_mut().zip(&self.specs) {
            child.wanted |= spec.is_enabled();
        }
        for layer in self.graph.layers() {
            let mut layer = layer.clone();
            layer.sort_unstable();
            for i in layer {
                let startable = self.children[i].wanted
                    && !self.children[i].running
                    && self
                        .graph
                        .depends_on(i)
                        .iter()
                        .all(|&d| self.children[d].running);
                if !startable {
                    continue;
                }
                let id = self.specs[i].id().clone();
                if let Some(entry) = agents.get(&id) {
                    entry.shared.live().started_at = Some(SystemTime::now());
                }
                for (from, to) in [
                    (ChildState::Pending, ChildState::Starting),
                    (ChildState::Starting, ChildState::Running),
                ] {
                    let at = SystemTime::now();
                    self.children[i].since = at;
                    if !quiet && events.heard() {
                        let change = ChildTransition::new(at, id.clone(), from, to);
                        announce(&change, agents, events);
                    }
                }
                self.children[i].running = true;
            }
        }
    }

    fn infos(&self) -> Vec<(Arc<str>, Seat)> {
        self.specs
            .iter()
            .zip(&self.children)
            .map(|(spec, child)| (spec.id().clone(), *child))
            .collect()
    }
}

impl std::fmt::Debug for AgentGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentGroup")
            .field("agents", &self.agents.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl AgentGroup {
    /// Builds the supervisor for `agents` (already resolved: valid, dependencies named) and
    /// starts every enabled agent in dependency order. Returns at once; subscribe, or call
    /// [`AgentGroup::settled`], to follow the start.
    pub async fn start(
        context: AgentContext,
        agents: Vec<ResolvedAgent>,
    ) -> Result<AgentGroup, AgentError> {
        let group = Self::build(context, agents).await?;
        group.start_all().await?;
        Ok(group)
    }

    /// Builds the group without starting anything.
    pub async fn build(
        context: AgentContext,
        agents: Vec<ResolvedAgent>,
    ) -> Result<AgentGroup, AgentError> {
        Self::build_inner(context, agents, None).await
    }

    /// Builds the group without starting anything; every event goes to `sink` as it happens
    /// (besides any subscriber), with no channel or task in between.
    pub async fn build_with_sink(
        context: AgentContext,
        agents: Vec<ResolvedAgent>,
        sink: EventSink,
    ) -> Result<AgentGroup, AgentError> {
        Self::build_inner(context, agents, Some(sink)).await
    }

    async fn build_inner(
        context: AgentContext,
        agents: Vec<ResolvedAgent>,
        sink: Option<EventSink>,
    ) -> Result<AgentGroup, AgentError> {
        let events = Arc::new(AgentEvents {
            channel: OnceLock::new(),
            sink,
        });
        let rotation = Rotation {
            max_bytes: context.log_max_bytes,
            keep: context.log_keep_files,
        };
        let log_dir: Arc<Path> = Arc::from(context.log_dir.as_path());
        let workplace = Arc::new(Workplace {
            raw: context.working_dir.to_string_lossy().into_owned(),
            paths: context.paths.clone(),
            refused: Mutex::new(None),
        });
        // One allocation per name: the table, the child spec and every dependency on it
        // share it.
        let names: BTreeMap<&str, Arc<str>> = agents
            .iter()
            .map(|a| (a.name.as_str(), Arc::from(a.name.as_str())))
            .collect();
        let mut table = BTreeMap::new();
        let mut specs = Vec::with_capacity(agents.len());
        for agent in &agents {
            let name = names[agent.name.as_str()].clone();
            let shared = Arc::new(AgentShared {
                name: name.clone(),
                log: OutputLog::new(log_dir.clone(), name.clone(), rotation),
                live: Default::default(),
                events: events.clone(),
                terminal: agent
                    .terminal
                    .map(|size| Arc::new(Terminal::new(size, context.scrollback_bytes))),
            });
            let claude_session = if agent.claude {
                let id = context.claude_sessions.get(&agent.name);
                Some(*id.ok_or_else(|| AgentError::NoClaudeSession(agent.name.clone()))?)
            } else {
                None
            };
            let spec = match &agent.command {
                Some(command) => {
                    let launch = Arc::new(Launch {
                        claude_session,
                        env: environment(&context, agent),
                        command: command.clone(),
                        ready_pattern: agent.ready_pattern.clone(),
                        workplace: workplace.clone(),
                        limits: agent.limits,
                        max_memory_mb: agent.max_memory_mb,
                        grace: agent.stop_grace,
                    });
                    let worker = AgentWorker {
                        launch,
                        shared: shared.clone(),
                    };
                    ChildSpec::new(name.clone(), worker)
                }
                None => ChildSpec::new(
                    name.clone(),
                    LogicalWorker {
                        shared: shared.clone(),
                    },
                ),
            };
            let depends_on: Arc<[Arc<str>]> = agent
                .depends_on
                .iter()
                .map(|d| match names.get(d.as_str()) {
                    Some(name) => name.clone(),
                    // Resolved agents name only agents of the group; the graph refuses others.
                    None => Arc::from(d.as_str()),
                })
                .collect();
            specs.push(
                spec.depends_on(depends_on.iter().cloned())
                    .policy(agent.policy)
                    .enabled(agent.enabled)
                    .start_timeout(agent.start_timeout)
                    .shutdown(agent.stop_grace + STOP_MARGIN),
            );
            table.insert(
                name,
                Entry {
                    agent_type: agent.agent_type,
                    has_process: agent.command.is_some(),
                    claude_session,
                    depends_on,
                    shared,
                },
            );
        }
        let agents = Arc::new(table);
        let observer = {
            let agents = agents.clone();
            let events = events.clone();
            move |event: &SupervisorEvent| {
                if let SupervisorEvent::Child(change) = event {
                    if events.heard() {
                        announce(change, &agents, &events);
                    }
                }
            }
        };
        let config = SupervisorConfig::new()
            .strategy(context.strategy)
            .event_capacity(EVENT_CAPACITY)
            .observer(observer);
        let mut group = AgentGroup {
            supervisor: tokio::sync::OnceCell::new(),
            deferred: Mutex::new(None),
            agents,
            events,
            workplace,
            shut_down: std::sync::atomic::AtomicBool::new(false),
        };
        if group.agents.values().any(|entry| entry.has_process) {
            let (supervisor, _) = SupervisorHandle::spawn(config, specs).await?;
            group.supervisor = tokio::sync::OnceCell::new_with(Some(supervisor));
        } else {
            // Checked now, as a spawn would: a cycle or an unknown dependency is refused.
            let graph = DependencyGraph::build(
                specs
                    .iter()
                    .map(|s| (&**s.id(), s.dependencies().iter().map(|d| &**d))),
            )?;
            let since = SystemTime::now();
            let children = vec![
                Seat {
                    wanted: false,
                    running: false,
                    since,
                };
                specs.len()
            ];
            *group.deferred_mut() = Some(Deferred {
                config,
                specs,
                graph,
                started: false,
                children,
            });
        }
        Ok(group)
    }

    fn deferred_mut(&self) -> std::sync::MutexGuard<'_, Option<Deferred>> {
        // A panic while holding it leaves plain data: carry on with it.
        self.deferred.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The supervisor, spawned now if the group ran without one so far.
    async fn supervision(&self) -> Result<&SupervisorHandle, AgentError> {
        self.supervisor
            .get_or_try_init(|| async {
                let deferred = self.deferred_mut().take();
                let Some(d) = deferred else {
                    return Err(AgentError::SupervisorLost);
                };
                let children = d.children.iter().map(|seat| {
                    TakenChild::new(seat.since)
                        .wanted(seat.wanted)
                        .running(seat.running)
                });
                let takeover = Takeover::new(d.started, children);
                let (supervisor, _) =
                    SupervisorHandle::spawn_taking_over(d.config, d.specs, takeover).await?;
                Ok(supervisor)
            })
            .await
    }

    /// Starts every enabled agent, in dependency order; returns at once (subscribe, or call
    /// [`AgentGroup::settled`], to follow the start).
    pub async fn start_all(&self) -> Result<(), AgentError> {
        self.start_every(false).await
    }

    /// [`AgentGroup::start_all`] for agents that come back as they were: those of a stored
    /// session the server restores. A group of logical agents takes its state back without
    /// announcing a transition (nothing ran before, nothing starts now; 100,000 restored
    /// sessions of 12 would otherwise log 2.4 million of them); agents with a process start
    /// and announce as ever.
    pub async fn resume_all(&self) -> Result<(), AgentError> {
        self.start_every(true).await
    }

    async fn start_every(&self, quiet: bool) -> Result<(), AgentError> {
        if self.supervisor.get().is_none() {
            if let Some(deferred) = self.deferred_mut().as_mut() {
                deferred.start_all(&self.agents, &self.events, quiet);
                return Ok(());
            }
        }
        Ok(self.supervision().await?.start_all().await?)
    }

    /// Stops every agent and keeps them all down (each can be activated or restarted again).
    pub async fn stop_all(&self) -> Result<(), AgentError> {
        Ok(self.supervision().await?.stop_all().await?)
    }

    /// Why the working directory was refused at the last start of a process, if it was
    /// (a later start that passes clears it).
    pub fn directory_refused(&self) -> Option<DirectoryRefused> {
        self.workplace.refused().clone()
    }

    /// Every agent event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.events.subscribe()
    }

    /// The supervisor, for callers that want its own events or operations (spawned now,
    /// taking the agents over as they stand, if the group ran without one so far).
    pub async fn supervisor(&self) -> Result<&SupervisorHandle, AgentError> {
        self.supervision().await
    }

    /// Every agent's state, in name order.
    pub async fn statuses(&self) -> Result<Vec<AgentStatus>, AgentError> {
        let children: Vec<(Arc<str>, ChildState, SystemTime, bool, u64)> =
            match self.deferred_view() {
                Some(children) => children
                    .into_iter()
                    .map(|(id, c)| {
                        let state = if c.running {
                            ChildState::Running
                        } else {
                            ChildState::Pending
                        };
                        (id, state, c.since, c.wanted, 0)
                    })
                    .collect(),
                None => self
                    .supervision()
                    .await?
                    .children()
                    .await?
                    .into_iter()
                    .map(|c| (c.id, c.state, c.since, c.wanted, c.restarts))
                    .collect(),
            };
        let mut statuses: Vec<AgentStatus> = children
            .into_iter()
            .filter_map(|(id, state, since, wanted, restarts)| {
                let entry = self.agents.get(&id)?;
                Some(AgentStatus {
                    name: id.to_string(),
                    agent_type: entry.agent_type,
                    state,
                    since,
                    active: wanted,
                    restarts,
                    live: entry.shared.live().clone(),
                    has_process: entry.has_process,
                    depends_on: entry.depends_on.clone(),
                    claude_session_id: entry.claude_session,
                    terminal: entry.shared.terminal.as_ref().map(|t| t.size()),
                })
            })
            .collect();
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(statuses)
    }

    /// The children as the group runs them while it has no supervisor.
    fn deferred_view(&self) -> Option<Vec<(Arc<str>, Seat)>> {
        if self.supervisor.get().is_some() {
            return None;
        }
        self.deferred_mut().as_ref().map(Deferred::infos)
    }

    /// Waits until no agent is starting, stopping or backing off, then returns the states.
    pub async fn settled(&self) -> Result<Vec<AgentStatus>, AgentError> {
        // Logical agents without a supervisor start in line: nothing is ever in motion.
        if self.deferred_view().is_none() {
            self.supervision().await?.settled().await?;
        }
        self.statuses().await
    }

    /// The group's health, from its agents' states.
    pub async fn health(&self) -> Result<GroupHealth, AgentError> {
        Ok(health(&self.statuses().await?))
    }

    /// Starts an agent (and lets the supervisor restart it again).
    pub async fn activate(&self, name: &str) -> Result<(), AgentError> {
        self.known(name)?;
        Ok(self.supervision().await?.start_child(name).await?)
    }

    /// Stops an agent and keeps it down: no restart until it is activated.
    pub async fn deactivate(&self, name: &str) -> Result<(), AgentError> {
        self.known(name)?;
        Ok(self.supervision().await?.stop_child(name).await?)
    }

    /// Stops and starts an agent again (a manual restart: it does not count against
    /// `retry_attempts`).
    pub async fn restart(&self, name: &str) -> Result<(), AgentError> {
        self.known(name)?;
        Ok(self.supervision().await?.restart_child(name).await?)
    }

    /// An agent's terminal.
    ///
    /// # Errors
    ///
    /// [`AgentError::UnknownAgent`], or [`AgentError::NoTerminal`] for an agent on pipes
    /// or without a process.
    pub fn terminal(&self, name: &str) -> Result<Arc<Terminal>, AgentError> {
        self.known(name)?
            .shared
            .terminal
            .clone()
            .ok_or_else(|| AgentError::NoTerminal(name.to_owned()))
    }

    /// The last `n` lines of an agent's output, oldest first.
    pub fn logs(&self, name: &str, n: usize) -> Result<Vec<LogLine>, AgentError> {
        Ok(self.known(name)?.shared.log.tail(n))
    }

    /// Whether the group runs under its supervisor (false for logical agents nobody gave
    /// an order since they started: they cannot have restarted).
    pub fn supervised(&self) -> bool {
        self.supervisor.get().is_some()
    }

    /// At the server's stop: a group that never needed its supervisor (logical agents only,
    /// no order since they started) has nothing to stop, and goes without announcing
    /// anything — its agents are restored as they are ([`AgentGroup::resume_all`]). Any
    /// other group is [shut down](AgentGroup::shutdown).
    pub async fn close(&self) -> Result<(), AgentError> {
        if self.supervisor.get().is_none() && self.deferred_mut().is_some() {
            self.shut_down
                .store(true, std::sync::atomic::Ordering::Release);
            return Ok(());
        }
        self.shutdown().await
    }

    /// Stops every agent in reverse dependency order (each with its grace), then the
    /// supervisor. Takes `&self` so a group shared with readers (a session's, whose
    /// statuses are read without its actor) can be shut down while they look.
    pub async fn shutdown(&self) -> Result<(), AgentError> {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        let supervisor = self.supervision().await?;
        let stopped = supervisor.stop_all().await;
        let down = supervisor.shutdown().await;
        stopped?;
        down?;
        Ok(())
    }

    fn known(&self, name: &str) -> Result<&Entry, AgentError> {
        self.agents
            .get(name)
            .ok_or_else(|| AgentError::UnknownAgent(name.to_string()))
    }
}

impl Drop for AgentGroup {
    fn drop(&mut self) {
        if !self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            // ractor kills the supervisor's linked agents; dropping their state kills the
            // process groups. A group without a supervisor has no process to kill.
            if let Some(supervisor) = self.supervisor.get() {
                supervisor.actor().kill();
            }
        }
    }
}

/// The health of a set of agent states.
pub fn health(statuses: &[AgentStatus]) -> GroupHealth {
    let failed = |s: &&AgentStatus| s.state == ChildState::Failed;
    if statuses
        .iter()
        .filter(failed)
        .any(|s| s.agent_type == AgentType::Orchestrator)
    {
        GroupHealth::Error
    } else if statuses.iter().any(|s| failed(&s)) {
        GroupHealth::Degraded
    } else if statuses.iter().any(|s| {
        s.active
            && matches!(
                s.state,
                ChildState::Pending | ChildState::Starting | ChildState::Backoff
            )
    }) {
        GroupHealth::Starting
    } else {
        GroupHealth::Active
    }
}

/// Turns a supervisor transition into an agent event; a failed agent raises an alert.
fn announce(change: &ChildTransition, agents: &BTreeMap<Arc<str>, Entry>, events: &AgentEvents) {
    events.publish(AgentEvent::State {
        agent: change.child.clone(),
        from: change.from,
        to: change.to,
        reason: change.reason.clone(),
        restarts: change.restarts,
        at: change.at,
    });
    if change.to == ChildState::Failed {
        let orchestrator = agents
            .get(&change.child)
            .is_some_and(|e| e.agent_type == AgentType::Orchestrator);
        events.publish(AgentEvent::Alert(AgentAlert {
            agent: change.child.clone(),
            kind: AlertKind::Failed,
            severity: if orchestrator {
                Severity::Critical
            } else {
                Severity::High
            },
            message: format!(
                "agent {} failed after {} restarts: {}",
                change.child,
                change.restarts,
                change.reason.as_deref().unwrap_or("no reason given")
            ),
            at: change.at,
        }));
    }
}

/// The agent's environment: the session's, then the agent's, then the server's own
/// variables, which always win.
fn environment(context: &AgentContext, agent: &ResolvedAgent) -> Vec<(String, String)> {
    let mut env = context.environment.clone();
    env.extend(agent.environment.clone());
    let ours = [
        ("CLAUDE_SESSION_ID", context.session_id.clone()),
        (
            "CLAUDE_WORKING_DIR",
            context.working_dir.to_string_lossy().into_owned(),
        ),
        ("CLAUDE_AGENT_NAME", agent.name.clone()),
        ("CLAUDE_AGENT_TYPE", agent.agent_type.as_str().to_string()),
        (
            "CLAUDE_MEMORY_LIMIT",
            agent.max_memory_mb.unwrap_or(0).to_string(),
        ),
        ("CLAUDE_TIMEOUT", agent.start_timeout.as_secs().to_string()),
        ("SESSION_MANAGER_URL", context.server_url.clone()),
        (
            super::containment::INSTANCE_VAR,
            supervision::process::instance().to_owned(),
        ),
    ];
    for (name, value) in ours {
        env.insert(name.to_string(), value);
    }
    if agent.claude {
        let telemetry = super::claude::Telemetry {
            server_url: &context.server_url,
            token: Some(context.server_token.expose()),
            session_id: &context.session_id,
            agent: &agent.name,
            branch: context.git_branch.as_deref(),
        };
        for (name, value) in super::claude::telemetry_environment(telemetry) {
            env.insert(name.to_string(), value);
        }
    }
    env.into_iter().collect()
}

/// Starts incarnations of a logical agent: nothing runs, so there is no actor.
struct LogicalWorker {
    shared: Arc<AgentShared>,
}

impl Worker for LogicalWorker {
    fn start(&self, _ctx: StartContext) -> BoxFuture<Result<Started, StartError>> {
        self.shared.live().started_at = Some(SystemTime::now());
        Box::pin(std::future::ready(Ok(Started::without_actor())))
    }
}

/// Starts incarnations of an agent with a command for the supervisor.
struct AgentWorker {
    launch: Arc<Launch>,
    shared: Arc<AgentShared>,
}

impl Worker for AgentWorker {
    fn start(&self, ctx: StartContext) -> BoxFuture<Result<Started, StartError>> {
        let launch = self.launch.clone();
        let shared = self.shared.clone();
        let spawned = spawn_process(&launch, &shared);
        Box::pin(async move {
            let spawned = spawned.map_err(StartError::from)?;
            let waits = launch.ready_pattern.is_some();
            let (ready, is_ready) = if waits {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            let args = AgentArgs {
                launch,
                shared: shared.clone(),
                spawned,
                ready,
            };
            let (actor, _) = Actor::spawn_linked(None, AgentActor, args, ctx.supervisor)
                .await
                .map_err(|err| {
                    // The process went with the arguments (its drop killed it).
                    shared.live().pid = None;
                    match err {
                        ractor::SpawnErr::StartupFailed(reason) => StartError::new(reason),
                        other => StartError::from(other),
                    }
                })?;
            let cell = actor.get_cell();
            Ok(match is_ready {
                None => Started::running(cell),
                Some(is_ready) => Started::when_ready(cell, async move {
                    is_ready
                        .await
                        .map_err(|_| "output ended before a line matched ready_pattern".into())
                }),
            })
        })
    }
}
