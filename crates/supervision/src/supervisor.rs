//! The supervisor actor: applies the restart policy to its children, starts them in dependency
//! layers and stops them in reverse.
//!
//! Every transition is driven by a message (a spawn result, a readiness result, a timer, a
//! supervision event); no handler ever waits on a child, so a slow or stuck child never
//! stalls the supervisor or its other children.
//!
//! The state and the messages are defined here, with the `Actor` impl that dispatches them;
//! the state's behaviour is split by concern: `bookkeeping` (indexes, per-layer counters, the
//! start frontier, published transitions, the pump), `start` (an incarnation's spawn and
//! readiness), `restart` (exits judged by the policy, backoff, group restarts), `stop` (one
//! child, removal, the reverse-order stop of all), `task` (task children's plumbing),
//! `config` (the configuration and where events go) and `handle` (what embedders hold).

mod bookkeeping;
mod config;
mod handle;
mod restart;
mod start;
mod stop;
mod task;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use super::error::{human, BoxError, ChildError, StartError};
use super::event::{ChildInfo, ChildState};
use super::graph::DependencyGraph;
use super::policy::{Exit, RestartHistory, Strategy};
use super::spec::{BoxFuture, ChildSpec, TaskStart};
use super::{ChildId, SupervisionError};

pub use bookkeeping::{TakenChild, Takeover};
pub use config::{Observer, SupervisorConfig};
pub use handle::SupervisorHandle;

use config::Events;
use task::{KillTimer, TaskRun};

/// Reason given to a child the supervisor stops on purpose.
const STOP_REASON: &str = "stopped by supervisor";
/// The termination reason ractor gives a killed actor: the text of its kill signal (its
/// `ActorTerminated` carries the state either way). ractor has no other mark of a kill, so
/// this is read once, at the boundary (`handle_supervisor_evt`); past it a kill is
/// [`ChildError::Killed`].
static RACTOR_KILL: LazyLock<String> = LazyLock::new(|| ractor::Signal::Kill.to_string());
/// Exits of unknown actors remembered while waiting for their spawn report; beyond this the
/// memory is dropped (only a worker that links extra actors to the supervisor can cause it).
const MAX_EARLY_EXITS: usize = 4096;

/// The supervisor actor. Use it through [`SupervisorHandle`].
#[derive(Debug, Default)]
pub struct Supervisor;

/// A worker's spawn outcome, or why the spawn failed.
type SpawnReport = Result<Spawn, StartError>;

/// What a worker started: an actor, a task still to spawn, or neither (a child without an
/// actor), and whether it still has to become ready.
struct Spawn {
    cell: Option<ActorCell>,
    task: Option<TaskStart>,
    awaits_ready: bool,
}
/// What a started child still has to do before it counts as running.
type Readiness = BoxFuture<Result<(), BoxError>>;

/// A message to the supervisor. Opaque: build them through [`SupervisorHandle`].
pub struct SupervisorMsg(Msg);

enum Msg {
    StartAll(RpcReplyPort<()>),
    Settled(RpcReplyPort<Vec<ChildInfo>>),
    StopAll(RpcReplyPort<()>),
    StartChild(ChildId, RpcReplyPort<Result<(), SupervisionError>>),
    StopChild(ChildId, RpcReplyPort<Result<(), SupervisionError>>),
    RestartChild(ChildId, RpcReplyPort<Result<(), SupervisionError>>),
    AddChild(Box<ChildSpec>, RpcReplyPort<Result<(), SupervisionError>>),
    RemoveChild(ChildId, RpcReplyPort<Result<(), SupervisionError>>),
    Children(RpcReplyPort<Vec<ChildInfo>>),
    Spawned {
        child: ChildId,
        generation: u64,
        result: SpawnReport,
    },
    Ready {
        child: ChildId,
        generation: u64,
        result: Result<(), ChildError>,
    },
    BackoffElapsed {
        child: ChildId,
        generation: u64,
    },
    StopTimeout {
        child: ChildId,
        generation: u64,
    },
    /// The task of a task child ended (or was aborted), sent by the task itself.
    TaskExited {
        child: ChildId,
        generation: u64,
        exit: Exit,
    },
}

/// What happens to a stopping child once it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// Stay stopped.
    Stay,
    /// Start again (a sibling's group restart or a manual restart).
    Restart,
    /// Remove it from the supervisor.
    Remove,
}

struct Child {
    spec: ChildSpec,
    state: ChildState,
    since: SystemTime,
    wanted: bool,
    generation: u64,
    cell: Option<ActorCell>,
    /// The current incarnation has no actor ([`Started::without_actor`]): it stops at once.
    actorless: bool,
    /// The current incarnation's task ([`Started::task`]), until its end is reported.
    task: Option<TaskRun>,
    /// The kill timer of a stop in progress, cancelled once the incarnation is gone.
    kill_timer: Option<KillTimer>,
    history: RestartHistory,
    /// Boxed: most children never exit, and a supervisor per session keeps many of them.
    last_exit: Option<Box<(Exit, SystemTime)>>,
    after_stop: AfterStop,
    /// Why the current incarnation is being taken down, when the supervisor decided it
    /// (readiness failed or timed out): its exit is reported as this failure.
    failure: Option<ChildError>,
    stop_waiters: Vec<RpcReplyPort<Result<(), SupervisionError>>>,
}

impl Child {
    fn new(spec: ChildSpec) -> Self {
        Child {
            spec,
            state: ChildState::Pending,
            since: SystemTime::now(),
            wanted: false,
            generation: 0,
            cell: None,
            actorless: false,
            task: None,
            kill_timer: None,
            history: RestartHistory::new(),
            last_exit: None,
            after_stop: AfterStop::Stay,
            failure: None,
            stop_waiters: Vec::new(),
        }
    }

    /// A child the layer gate waits for: wanted up and on its way there (or back). A pending
    /// child is not in motion: it either starts at once, or waits for a dependency that is
    /// down and must not hold up unrelated layers.
    fn in_motion(&self) -> bool {
        self.wanted
            && matches!(
                self.state,
                ChildState::Starting | ChildState::Backoff | ChildState::Stopping
            )
    }

    /// Wanted up but not started yet.
    fn waiting(&self) -> bool {
        self.wanted && self.state == ChildState::Pending
    }
}

/// Siblings taken down together with crashed children (`rest_for_one`, `one_for_all`): they
/// are stopped top layer first, and nothing of the group starts again until all are down.
#[derive(Default)]
struct GroupRestart {
    /// Siblings held down until the group is down.
    members: Vec<ChildId>,
    /// Crashed children whose backoff starts once the group is down.
    crashed: Vec<(ChildId, Duration)>,
}

/// Progress of a reverse-order stop of every child.
struct StopAll {
    /// Layers above this one are stopped; `layer - 1` is being stopped.
    layer: usize,
    /// Whether the stop of `layer - 1` has been issued.
    issued: bool,
    waiters: Vec<RpcReplyPort<()>>,
}

/// The supervisor's state. Public only because ractor's `Actor` trait names it.
pub struct SupervisorState {
    strategy: Strategy,
    children: Vec<Child>,
    index: HashMap<ChildId, usize>,
    by_actor: HashMap<ActorId, usize>,
    graph: DependencyGraph,
    /// Exits of actors whose spawn report has not arrived yet.
    early_exits: HashMap<ActorId, Exit>,
    /// Actors of superseded incarnations, stopped on arrival; their exit is expected.
    discarded: HashSet<ActorId>,
    /// Per layer, children in motion (see [`Child::in_motion`]).
    in_motion: Vec<usize>,
    /// Per layer, children wanted up and pending.
    waiting: Vec<usize>,
    /// Per layer, children in `Stopping`.
    stopping: Vec<usize>,
    /// Lowest layer with children in motion (the layer count when none): layers up to it
    /// may start, the ones above wait.
    frontier: usize,
    /// Next layer whose waiting children must be looked at again because the frontier rose
    /// past it (the layer count when none).
    sweep: usize,
    /// Children per state.
    counts: [usize; 7],
    /// Children that may have become startable, lowest layer first.
    wake: BinaryHeap<Reverse<(usize, usize)>>,
    settle_waiters: Vec<RpcReplyPort<Vec<ChildInfo>>>,
    stop_all: Option<StopAll>,
    /// Set while `advance_stop_all` runs, so a stop that completes at once inside it does
    /// not re-enter it.
    advancing: bool,
    /// Set while a start's immediate outcome is handled inside `begin_start`.
    starting_inline: bool,
    group: Option<GroupRestart>,
    /// Counts crashes taken into a group restart, so `pump` knows to move the group on.
    groups_formed: u64,
    /// Whether `start_all` was called since the last `stop_all`: children added now start.
    started: bool,
    escalated: Option<String>,
    next_generation: u64,
    events: Arc<Events>,
}

/// Start-up arguments of the supervisor actor.
pub struct SupervisorArgs {
    config: SupervisorConfig,
    children: Vec<ChildSpec>,
    /// Built (and so checked) by the handle before spawning, for a typed error.
    graph: DependencyGraph,
    events: Arc<Events>,
    takeover: Option<Takeover>,
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(SupervisorState::new(args))
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        SupervisorMsg(message): Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let shutting_down = state.stop_all.is_some() || state.escalated.is_some();
        match message {
            Msg::StartAll(reply) => {
                if !shutting_down {
                    state.start_all();
                }
                let _ = reply.send(());
            }
            Msg::Settled(reply) => state.settle_waiters.push(reply),
            Msg::StopAll(reply) => state.begin_stop_all(&myself, Some(reply)),
            Msg::StartChild(id, reply) => {
                let result = if shutting_down {
                    Err(SupervisionError::ShuttingDown)
                } else {
                    state.start_child(&id)
                };
                let _ = reply.send(result);
            }
            Msg::StopChild(id, reply) => match state.lookup(&id) {
                Ok(i) => {
                    state.leave_group(&id);
                    state.set_wanted(i, false);
                    state.children[i].stop_waiters.push(reply);
                    state.stop_child(&myself, i);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Msg::RestartChild(id, reply) => {
                let result = if shutting_down {
                    Err(SupervisionError::ShuttingDown)
                } else {
                    state.restart_child(&myself, &id)
                };
                let _ = reply.send(result);
            }
            Msg::AddChild(spec, reply) => {
                let _ = reply.send(state.add_child(*spec));
            }
            Msg::RemoveChild(id, reply) => {
                if shutting_down {
                    let _ = reply.send(Err(SupervisionError::ShuttingDown));
                } else {
                    state.remove_child(&myself, &id, reply);
                }
            }
            Msg::Children(reply) => {
                let _ = reply.send(state.infos());
            }
            Msg::Spawned {
                child,
                generation,
                result,
            } => state.on_spawned(&myself, &child, generation, result),
            Msg::Ready {
                child,
                generation,
                result,
            } => state.on_ready(&myself, &child, generation, result),
            Msg::TaskExited {
                child,
                generation,
                exit,
            } => state.on_task_exit(&myself, &child, generation, exit),
            Msg::BackoffElapsed { child, generation } => {
                if let Some(&i) = state.index.get(&child) {
                    let c = &state.children[i];
                    if c.generation == generation && c.state == ChildState::Backoff {
                        state.end_backoff(&myself, i);
                    }
                }
            }
            Msg::StopTimeout { child, generation } => {
                if let Some(&i) = state.index.get(&child) {
                    // The incarnation that was told to stop is still there: kill it. (It may
                    // still be `Starting` when its readiness failed.) An aborted task reports
                    // its end like any other, once it is dropped.
                    let c = &state.children[i];
                    if c.generation == generation && (c.cell.is_some() || c.task.is_some()) {
                        tracing::warn!(child = %c.spec.id, "did not stop within {}; killing it", human(c.spec.shutdown));
                        if let Some(cell) = &c.cell {
                            cell.kill();
                        } else if let Some(task) = &c.task {
                            task.abort.abort();
                        }
                    }
                }
            }
        }
        state.pump(&myself);
        escalation_result(state)
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // Overrides ractor's default, which would stop this supervisor with its first child.
        match event {
            SupervisionEvent::ActorFailed(cell, err) => {
                let error = ChildError::Failed(Arc::from(err));
                state.on_actor_exit(&myself, &cell, Exit::Abnormal(error));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let exit = if reason.as_deref() == Some(&**RACTOR_KILL) {
                    Exit::Abnormal(ChildError::Killed)
                } else {
                    Exit::Normal
                };
                state.on_actor_exit(&myself, &cell, exit);
            }
            _ => return Ok(()),
        }
        state.pump(&myself);
        escalation_result(state)
    }
}

/// After an escalation has stopped every child, the supervisor fails so its parent hears.
fn escalation_result(state: &SupervisorState) -> Result<(), ActorProcessingErr> {
    match (&state.escalated, &state.stop_all) {
        (Some(reason), None) => Err(reason.clone().into()),
        _ => Ok(()),
    }
}
