//! The supervisor actor: applies the restart policy to its children, starts them in dependency
//! layers and stops them in reverse.
//!
//! Every transition is driven by a message (a spawn result, a readiness result, a timer, a
//! supervision event); no handler ever waits on a child, so a slow or stuck child never
//! stalls the supervisor or its other children.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::sync::broadcast;
use tokio::task::{AbortHandle, JoinHandle};

use super::event::{ChildInfo, ChildState, ChildTransition, SupervisorEvent};
use super::graph::DependencyGraph;
use super::policy::{decide, Decision, Exit, RestartHistory, Strategy};
use super::spec::{
    BoxFuture, ChildSpec, StartContext, StartError, Started, StopSignal, TaskResult, TaskStart,
};
use super::{ChildId, SupervisionError};

/// Reason given to a child the supervisor stops on purpose.
const STOP_REASON: &str = "stopped by supervisor";
/// Termination reason ractor reports for a killed actor.
const KILLED: &str = "killed";
/// Exits of unknown actors remembered while waiting for their spawn report; beyond this the
/// memory is dropped (only a worker that links extra actors to the supervisor can cause it).
const MAX_EARLY_EXITS: usize = 4096;

/// Called with every event a supervisor publishes, in order, inside the supervisor's own
/// handler: it must return at once (a channel send, a counter), never block or wait.
pub type Observer = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// How a supervisor behaves as a whole.
#[derive(Clone)]
pub struct SupervisorConfig {
    /// Which siblings are restarted with a crashed child.
    pub strategy: Strategy,
    /// Events buffered per subscriber; a subscriber that falls further behind loses the
    /// oldest ones (it is told so by the broadcast channel), never the supervisor's time.
    /// The channel is allocated (every slot at once) by the first `subscribe`, so a
    /// supervisor nobody subscribes to pays nothing for it.
    pub event_capacity: usize,
    /// Sees every event as it happens, without a channel or a task of its own: what an
    /// embedder that keeps many supervisors uses instead of subscribing to each.
    pub observer: Option<Observer>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            strategy: Strategy::OneForOne,
            event_capacity: 1024,
            observer: None,
        }
    }
}

impl std::fmt::Debug for SupervisorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorConfig")
            .field("strategy", &self.strategy)
            .field("event_capacity", &self.event_capacity)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// Where a supervisor's events go: the observer, if any, and the broadcast channel once
/// somebody subscribed. Shared by the actor and its handles.
struct Events {
    capacity: usize,
    channel: OnceLock<broadcast::Sender<SupervisorEvent>>,
    observer: Option<Observer>,
}

impl Events {
    fn new(config: &SupervisorConfig) -> Arc<Events> {
        Arc::new(Events {
            capacity: config.event_capacity.max(1),
            channel: OnceLock::new(),
            observer: config.observer.clone(),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.channel
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Whether anybody would see an event (so it is worth building).
    fn heard(&self) -> bool {
        self.observer.is_some() || self.channel.get().is_some()
    }

    fn publish(&self, event: SupervisorEvent) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
        if let Some(channel) = self.channel.get() {
            // Nobody listening is fine: the event is informative, not a command.
            let _ = channel.send(event);
        }
    }
}

/// The supervisor actor. Use it through [`SupervisorHandle`].
#[derive(Debug, Default)]
pub struct Supervisor;

/// A worker's spawn outcome, or why the spawn failed.
type SpawnReport = Result<Spawn, String>;

/// What a worker started: an actor, a task still to spawn, or neither (a child without an
/// actor), and whether it still has to become ready.
struct Spawn {
    cell: Option<ActorCell>,
    task: Option<TaskStart>,
    awaits_ready: bool,
}
/// What a started child still has to do before it counts as running.
type Readiness = BoxFuture<Result<(), String>>;

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
        result: Result<(), String>,
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
    failure: Option<String>,
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

/// A running task child's incarnation, as the supervisor holds it. Dropping it aborts the
/// task, so a task never outlives its supervisor's state (ractor runs no `post_stop` for a
/// supervisor that panicked or was killed); once the task has ended the abort does nothing.
struct TaskRun {
    stop: StopSignal,
    abort: AbortHandle,
}

impl Drop for TaskRun {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The timer that kills a stopping incarnation after its grace. Dropping it cancels it: a
/// stop of 100,000 children would otherwise leave as many sleeping timer tasks behind for
/// the whole grace.
struct KillTimer(AbortHandle);

impl Drop for KillTimer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Rides inside a task child's task and tells the supervisor how the task ended when it is
/// dropped: after the future returned or panicked (`exit` set), or when the task was aborted
/// mid-flight (`exit` unset: killed). A report to a supervisor that is gone is lost.
struct TaskReport {
    supervisor: ActorRef<SupervisorMsg>,
    child: ChildId,
    generation: u64,
    exit: Option<Exit>,
}

impl Drop for TaskReport {
    fn drop(&mut self) {
        let exit = self
            .exit
            .take()
            .unwrap_or_else(|| Exit::Abnormal(KILLED.to_string()));
        let _ = self.supervisor.cast(SupervisorMsg(Msg::TaskExited {
            child: self.child.clone(),
            generation: self.generation,
            exit,
        }));
    }
}

/// One incarnation of a task child as spawned: its future, with panics caught, and the
/// report of its end. Fields drop in order, so the future — and all it holds — is gone
/// before the report leaves: a supervisor that hears of the end knows the work has stopped.
struct TaskRunner {
    run: futures::future::CatchUnwind<AssertUnwindSafe<BoxFuture<TaskResult>>>,
    report: TaskReport,
}

impl TaskRunner {
    fn new(run: BoxFuture<TaskResult>, report: TaskReport) -> Self {
        TaskRunner {
            run: AssertUnwindSafe(run).catch_unwind(),
            report,
        }
    }
}

impl Future for TaskRunner {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let exit = match std::task::ready!(self.run.poll_unpin(cx)) {
            Ok(Ok(())) => Exit::Normal,
            Ok(Err(reason)) => Exit::Abnormal(reason),
            Err(panic) => Exit::Abnormal(format!("panicked: {}", panic_message(&*panic))),
        };
        self.report.exit = Some(exit);
        Poll::Ready(())
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(message) = payload.downcast_ref::<&str>() {
        message
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message
    } else {
        "(no message)"
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

/// How the children of a group stand when a supervisor takes it over from a caller that
/// ran it without one (see [`SupervisorHandle::spawn_taking_over`]).
#[derive(Debug, Clone, Default)]
pub struct Takeover {
    /// Whether `start_all` was called: children added later start at once.
    pub started: bool,
    /// One per child, in the order of the specs.
    pub children: Vec<TakenChild>,
}

/// One child of a [`Takeover`].
#[derive(Debug, Clone, Copy)]
pub struct TakenChild {
    /// Whether it is wanted up.
    pub wanted: bool,
    /// Whether it is running (it must be a child whose worker starts without an actor — not
    /// an actor or a task child, which would have nothing running to adopt); otherwise it is
    /// pending.
    pub running: bool,
    /// Since when it has been in that state.
    pub since: SystemTime,
}

fn build_graph(specs: &[&ChildSpec]) -> Result<DependencyGraph, SupervisionError> {
    DependencyGraph::build(
        specs
            .iter()
            .map(|s| (&*s.id, s.depends_on.iter().map(|d| &**d))),
    )
}

impl SupervisorState {
    fn new(args: SupervisorArgs) -> Self {
        let graph = args.graph;
        let mut state = SupervisorState {
            strategy: args.config.strategy,
            children: args.children.into_iter().map(Child::new).collect(),
            index: HashMap::new(),
            by_actor: HashMap::new(),
            graph,
            early_exits: HashMap::new(),
            discarded: HashSet::new(),
            in_motion: Vec::new(),
            waiting: Vec::new(),
            stopping: Vec::new(),
            frontier: 0,
            sweep: 0,
            counts: [0; 7],
            wake: BinaryHeap::new(),
            settle_waiters: Vec::new(),
            stop_all: None,
            advancing: false,
            starting_inline: false,
            group: None,
            groups_formed: 0,
            started: false,
            escalated: None,
            next_generation: 0,
            events: args.events,
        };
        if let Some(takeover) = args.takeover {
            state.take_over(takeover);
        }
        state.reindex();
        state
    }

    /// Puts the children as a [`Takeover`] says, without publishing anything: they already
    /// went through their transitions under whoever ran them. `reindex` follows.
    fn take_over(&mut self, takeover: Takeover) {
        self.started = takeover.started;
        let now = Instant::now();
        for (child, taken) in self.children.iter_mut().zip(takeover.children) {
            child.wanted = taken.wanted;
            child.since = taken.since;
            if taken.running {
                child.state = ChildState::Running;
                child.actorless = true;
                child.history.mark_running(now);
            }
        }
    }

    /// Recomputes every index and counter from the children; O(n), used when the set of
    /// children changes.
    fn reindex(&mut self) {
        self.index = self
            .children
            .iter()
            .enumerate()
            .map(|(i, c)| (c.spec.id.clone(), i))
            .collect();
        self.by_actor = self
            .children
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.cell.as_ref().map(|cell| (cell.get_id(), i)))
            .collect();
        let depth = self.graph.layers().len();
        self.in_motion = vec![0; depth];
        self.waiting = vec![0; depth];
        self.stopping = vec![0; depth];
        self.counts = [0; 7];
        for (i, c) in self.children.iter().enumerate() {
            let layer = self.graph.layer_of(i);
            self.counts[c.state.index()] += 1;
            self.in_motion[layer] += usize::from(c.in_motion());
            self.waiting[layer] += usize::from(c.waiting());
            self.stopping[layer] += usize::from(c.state == ChildState::Stopping);
        }
        self.frontier = self.in_motion.iter().position(|&n| n > 0).unwrap_or(depth);
        // Indices queued before the change may be stale; every layer is looked at again.
        self.wake.clear();
        self.sweep = 0;
        if let Some(progress) = &mut self.stop_all {
            if progress.layer > depth {
                // The layers shrank under it: the layer now current has not been told yet.
                progress.layer = depth;
                progress.issued = false;
            }
        }
    }

    fn wake(&mut self, i: usize) {
        self.wake.push(Reverse((self.graph.layer_of(i), i)));
    }

    fn lookup(&self, id: &str) -> Result<usize, SupervisionError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| SupervisionError::UnknownChild(id.to_string()))
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// Applies a change to child `i` and keeps the layer counters, the frontier and the
    /// wake list in step with it. Every change of `state` or `wanted` goes through here.
    fn update(&mut self, i: usize, change: impl FnOnce(&mut Child)) {
        let layer = self.graph.layer_of(i);
        let child = &mut self.children[i];
        let (was_moving, was_waiting, was_state) =
            (child.in_motion(), child.waiting(), child.state);
        change(child);
        let (is_moving, is_waiting, is_state) = (child.in_motion(), child.waiting(), child.state);
        if was_state != is_state {
            self.counts[was_state.index()] -= 1;
            self.counts[is_state.index()] += 1;
            if was_state == ChildState::Stopping {
                self.stopping[layer] -= 1;
            }
            if is_state == ChildState::Stopping {
                self.stopping[layer] += 1;
            }
            if is_state == ChildState::Running {
                // Field by field, not `self.wake`, to push without copying the list.
                for &d in self.graph.dependents(i) {
                    self.wake.push(Reverse((self.graph.layer_of(d), d)));
                }
            }
        }
        if was_waiting != is_waiting {
            if is_waiting {
                self.waiting[layer] += 1;
                self.wake(i);
            } else {
                self.waiting[layer] -= 1;
            }
        }
        if was_moving != is_moving {
            if is_moving {
                self.in_motion[layer] += 1;
                self.frontier = self.frontier.min(layer);
            } else {
                self.in_motion[layer] -= 1;
                if layer == self.frontier && self.in_motion[layer] == 0 {
                    let depth = self.in_motion.len();
                    while self.frontier < depth && self.in_motion[self.frontier] == 0 {
                        self.frontier += 1;
                    }
                    // Children above the old frontier were turned away; look again.
                    self.sweep = self.sweep.min(layer + 1);
                }
            }
        }
    }

    /// Moves child `i` to `to`, publishing the transition.
    fn transition(
        &mut self,
        i: usize,
        to: ChildState,
        reason: Option<String>,
        delay: Option<Duration>,
    ) {
        let from = self.children[i].state;
        if from == to {
            return;
        }
        let now = SystemTime::now();
        self.update(i, |c| {
            c.state = to;
            c.since = now;
        });
        if !self.events.heard() {
            return;
        }
        let child = &self.children[i];
        self.events.publish(SupervisorEvent::Child(ChildTransition {
            at: now,
            child: child.spec.id.clone(),
            from,
            to,
            reason,
            restarts: child.history.total(),
            delay,
        }));
    }

    fn set_wanted(&mut self, i: usize, wanted: bool) {
        self.update(i, |c| c.wanted = wanted);
    }

    /// Whether nothing is in motion: every child is running, down, or waiting on a
    /// dependency that is down.
    fn is_settled(&self) -> bool {
        self.stop_all.is_none()
            && self.counts[ChildState::Starting.index()] == 0
            && self.counts[ChildState::Backoff.index()] == 0
            && self.counts[ChildState::Stopping.index()] == 0
    }

    fn infos(&self) -> Vec<ChildInfo> {
        (0..self.children.len()).map(|i| self.info(i)).collect()
    }

    fn info(&self, i: usize) -> ChildInfo {
        let c = &self.children[i];
        ChildInfo {
            id: c.spec.id.clone(),
            state: c.state,
            since: c.since,
            wanted: c.wanted,
            restarts: c.history.total(),
            last_exit: c.last_exit.as_deref().cloned(),
            layer: self.graph.layer_of(i),
            depends_on: c.spec.depends_on.clone(),
            actor: c.cell.clone(),
        }
    }

    /// Moves the group restart on, starts every woken child whose turn it is, then answers
    /// whoever waits for calm.
    fn pump(&mut self, myself: &ActorRef<SupervisorMsg>) {
        loop {
            // A start below may fail at once and form or grow a group: go round until calm.
            let groups_before = self.groups_formed;
            self.advance_group(myself);
            let depth = self.graph.layers().len();
            // Lowest layer first, so a layer is under way before the next is considered.
            while let Some(Reverse((_, i))) = self.wake.pop() {
                if self.may_start(i) {
                    self.begin_start(myself, i);
                }
            }
            // Then the next layer the frontier has passed, one at a time: starting it may
            // put the frontier right back there.
            let mut woke = false;
            while self.sweep < depth && self.sweep <= self.frontier {
                let layer = self.sweep;
                self.sweep += 1;
                if self.waiting[layer] > 0 {
                    for &i in &self.graph.layers()[layer] {
                        if self.children[i].waiting() {
                            self.wake.push(Reverse((layer, i)));
                        }
                    }
                    woke = true;
                    break;
                }
            }
            if !woke && self.groups_formed == groups_before {
                break;
            }
        }
        // Drained: give its memory back rather than keep it for every idle supervisor.
        self.wake.shrink_to_fit();
        if self.is_settled() && !self.settle_waiters.is_empty() {
            let infos = self.infos();
            for waiter in self.settle_waiters.drain(..) {
                let _ = waiter.send(infos.clone());
            }
        }
    }

    fn may_start(&self, i: usize) -> bool {
        self.children[i].state == ChildState::Pending && self.gate_open(i)
    }

    /// Whether child `i`, wanted up, may start now: its layer is open and every dependency
    /// is running.
    fn gate_open(&self, i: usize) -> bool {
        self.children[i].wanted
            && self.stop_all.is_none()
            && self.escalated.is_none()
            && self.graph.layer_of(i) <= self.frontier
            && self
                .graph
                .depends_on(i)
                .iter()
                .all(|&d| self.children[d].state == ChildState::Running)
    }

    /// Starts a new incarnation of child `i`.
    ///
    /// The worker's future is polled once right here: an in-process actor is usually spawned
    /// by then, which saves two task hops on the restart path. Whatever is left to wait for
    /// (a slow spawn, a readiness future) continues in a task that reports back by message,
    /// so the supervisor never waits on a child.
    fn begin_start(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        let generation = self.generation();
        self.children[i].generation = generation;
        self.children[i].failure = None;
        self.children[i].actorless = false;
        self.transition(i, ChildState::Starting, None, None);
        let child = &self.children[i];
        let ctx = StartContext {
            supervisor: myself.get_cell(),
            child: child.spec.id.clone(),
            restarts: child.history.total(),
        };
        let id = child.spec.id.clone();
        let timeout = child.spec.start_timeout;
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut start = child.spec.worker.start(ctx);

        let mut cx = Context::from_waker(Waker::noop());
        // What is left to await, if anything: `None` from it means nothing to report.
        let rest: BoxFuture<Option<Result<(), String>>> = match start.as_mut().poll(&mut cx) {
            Poll::Ready(result) => {
                let (spawned, ready) = split_started(result);
                let outer = std::mem::replace(&mut self.starting_inline, true);
                self.on_spawned(myself, &id, generation, spawned);
                self.starting_inline = outer;
                let Some(ready) = ready else { return };
                Box::pin(async move { Some(ready.await) })
            }
            Poll::Pending => {
                let myself = myself.clone();
                let id = id.clone();
                Box::pin(async move {
                    let (spawned, ready) = split_started(start.await);
                    let spawned = Msg::Spawned {
                        child: id,
                        generation,
                        result: spawned,
                    };
                    // A failed send means the supervisor is gone; the child, linked to it,
                    // goes too.
                    myself.cast(SupervisorMsg(spawned)).ok()?;
                    Some(ready?.await)
                })
            }
        };
        let myself = myself.clone();
        tokio::spawn(async move {
            let outcome = match deadline {
                // Dropping `rest` at the deadline cancels whatever it still waits for.
                Some(at) => tokio::time::timeout_at(at, rest)
                    .await
                    .unwrap_or_else(|_| Some(Err(not_running_within(timeout)))),
                None => rest.await,
            };
            if let Some(result) = outcome {
                let _ = myself.cast(SupervisorMsg(Msg::Ready {
                    child: id,
                    generation,
                    result,
                }));
            }
        });
    }

    fn on_spawned(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        result: SpawnReport,
    ) {
        let current = self
            .index
            .get(id)
            .copied()
            .filter(|&i| self.children[i].generation == generation);
        let Some(i) = current else {
            // A superseded incarnation: it must not live on unsupervised. (A task of one is
            // simply never spawned.)
            if let Ok(Spawn {
                cell: Some(cell), ..
            }) = result
            {
                if self.early_exits.remove(&cell.get_id()).is_none() {
                    self.discarded.insert(cell.get_id());
                    cell.stop(Some(STOP_REASON.to_string()));
                }
            }
            return;
        };
        match result {
            Err(reason) => {
                if self.children[i].state == ChildState::Stopping {
                    self.finish_stop(myself, i);
                } else {
                    self.on_exit(myself, i, Exit::Abnormal(format!("start failed: {reason}")));
                }
            }
            Ok(Spawn {
                cell: None,
                task: Some(task),
                awaits_ready,
            }) => {
                if self.children[i].state == ChildState::Stopping {
                    // Asked to stop before it ran: it never will.
                    self.finish_stop(myself, i);
                    return;
                }
                let report = TaskReport {
                    supervisor: myself.clone(),
                    child: self.children[i].spec.id.clone(),
                    generation,
                    exit: None,
                };
                let abort = tokio::spawn(TaskRunner::new(task.run, report)).abort_handle();
                self.children[i].task = Some(TaskRun {
                    stop: task.stop,
                    abort,
                });
                if !awaits_ready {
                    self.mark_running(i);
                }
            }
            Ok(Spawn {
                cell: None,
                task: None,
                ..
            }) => {
                // Nothing runs: the child is up (or, asked to stop meanwhile, down) at once.
                self.children[i].actorless = true;
                if self.children[i].state == ChildState::Stopping {
                    self.finish_stop(myself, i);
                } else {
                    self.mark_running(i);
                }
            }
            Ok(Spawn {
                cell: Some(cell),
                awaits_ready,
                ..
            }) => {
                let actor = cell.get_id();
                self.children[i].cell = Some(cell.clone());
                if let Some(exit) = self.early_exits.remove(&actor) {
                    self.children[i].cell = None;
                    if self.children[i].state == ChildState::Stopping {
                        self.finish_stop(myself, i);
                    } else {
                        self.on_exit(myself, i, exit);
                    }
                    return;
                }
                self.by_actor.insert(actor, i);
                if self.children[i].state == ChildState::Stopping {
                    self.send_stop(myself, i);
                } else if !awaits_ready {
                    self.mark_running(i);
                }
            }
        }
    }

    fn on_ready(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        result: Result<(), String>,
    ) {
        let Some(&i) = self.index.get(id) else { return };
        let child = &self.children[i];
        if child.generation != generation {
            return;
        }
        // Stopped while its spawn was in flight, and the spawn never finished (cut off at
        // the deadline): there is nothing left to wait for.
        let nothing_runs = child.cell.is_none() && child.task.is_none();
        if child.state == ChildState::Stopping && nothing_runs && result.is_err() {
            self.finish_stop(myself, i);
            return;
        }
        if child.state != ChildState::Starting {
            return;
        }
        match result {
            Ok(()) => self.mark_running(i),
            // The spawn itself never finished (timed out): nothing to stop, judge it now.
            Err(reason) if nothing_runs => {
                self.on_exit(myself, i, Exit::Abnormal(reason));
            }
            Err(reason) => {
                // Take it down; its exit is then judged as this failure.
                self.children[i].failure = Some(reason);
                self.send_stop(myself, i);
            }
        }
    }

    fn mark_running(&mut self, i: usize) {
        self.children[i].history.mark_running(Instant::now());
        self.transition(i, ChildState::Running, None, None);
    }

    /// An actor linked to the supervisor ended.
    fn on_actor_exit(&mut self, myself: &ActorRef<SupervisorMsg>, cell: &ActorCell, exit: Exit) {
        let actor = cell.get_id();
        let Some(i) = self.by_actor.remove(&actor) else {
            if !self.discarded.remove(&actor) {
                if self.early_exits.len() >= MAX_EARLY_EXITS {
                    tracing::warn!(
                        "forgetting {} exits of unknown actors",
                        self.early_exits.len()
                    );
                    self.early_exits.clear();
                }
                self.early_exits.insert(actor, exit);
            }
            return;
        };
        self.children[i].cell = None;
        match self.children[i].state {
            ChildState::Stopping => self.finish_stop(myself, i),
            ChildState::Starting | ChildState::Running => {
                let exit = match self.children[i].failure.take() {
                    Some(failure) => Exit::Abnormal(failure),
                    None => exit,
                };
                self.on_exit(myself, i, exit);
            }
            other => {
                tracing::warn!(child = %self.children[i].spec.id, state = %other, "exit of a child that was not up")
            }
        }
    }

    /// The task of a task child ended; `generation` says which incarnation it was.
    fn on_task_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        generation: u64,
        exit: Exit,
    ) {
        let Some(&i) = self.index.get(id) else { return };
        let child = &mut self.children[i];
        if child.generation != generation || child.task.is_none() {
            return;
        }
        child.task = None;
        match child.state {
            ChildState::Stopping => self.finish_stop(myself, i),
            ChildState::Starting | ChildState::Running => {
                let exit = match child.failure.take() {
                    Some(failure) => Exit::Abnormal(failure),
                    None => exit,
                };
                self.on_exit(myself, i, exit);
            }
            other => {
                tracing::warn!(child = %child.spec.id, state = %other, "end of a task that was not up")
            }
        }
    }

    /// Judges an unplanned exit of child `i` and acts on the decision.
    fn on_exit(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize, exit: Exit) {
        let now = Instant::now();
        let child = &mut self.children[i];
        // The incarnation is gone: a kill timer armed for it (its readiness failed) is moot.
        child.kill_timer = None;
        child.history.mark_down();
        child.last_exit = Some(Box::new((exit.clone(), SystemTime::now())));
        let reason = exit.reason().map(str::to_string);
        if !child.wanted || self.stop_all.is_some() || self.escalated.is_some() {
            self.transition(i, ChildState::Stopped, reason, None);
            self.advance_stop_all(myself);
            return;
        }
        let policy = child.spec.policy;
        match decide(&policy, &child.history, &exit, now) {
            Decision::Restart { after } => {
                child.history.record_restart(&policy, now);
                let generation = self.generation();
                self.children[i].generation = generation;
                self.transition(i, ChildState::Backoff, reason, Some(after));
                if !self.hold_for_group(i, after) {
                    self.schedule_restart(myself, i, after);
                }
            }
            Decision::Stop => {
                let to = match exit {
                    Exit::Normal => ChildState::Stopped,
                    Exit::Abnormal(_) => ChildState::Failed,
                };
                self.transition(i, to, reason, None);
            }
            Decision::GiveUp => {
                let window = policy.intensity.window;
                let why = format!(
                    "gave up after {} restarts within {}: {}",
                    child.history.restarts_within(window, now),
                    human(window),
                    reason.as_deref().unwrap_or("normal exit")
                );
                self.transition(i, ChildState::Failed, Some(why), None);
            }
            Decision::Escalate => {
                let why = reason.unwrap_or_else(|| "normal exit".to_string());
                self.transition(i, ChildState::Failed, Some(why.clone()), None);
                self.events.publish(SupervisorEvent::Escalated {
                    at: SystemTime::now(),
                    child: self.children[i].spec.id.clone(),
                    reason: why.clone(),
                });
                self.escalated = Some(format!(
                    "child `{}` escalated: {why}",
                    self.children[i].spec.id
                ));
                self.begin_stop_all(myself, None);
            }
        }
    }

    /// Starts child `i` (in backoff) again after `after`: at once, or by timer.
    fn schedule_restart(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize, after: Duration) {
        if after.is_zero() {
            self.end_backoff(myself, i);
            return;
        }
        let id = self.children[i].spec.id.clone();
        let generation = self.children[i].generation;
        myself.send_after(after, move || {
            SupervisorMsg(Msg::BackoffElapsed {
                child: id,
                generation,
            })
        });
    }

    /// Under `rest_for_one` / `one_for_all`, takes the siblings that restart with crashed
    /// child `i` into the group restart, and holds `i`'s own restart until the group is
    /// down. Returns whether it did (false: restart `i` on its own).
    fn hold_for_group(&mut self, i: usize, after: Duration) -> bool {
        let position = self.graph.position(i);
        let affected: Vec<usize> = match self.strategy {
            Strategy::OneForOne => return false,
            Strategy::RestForOne => (0..self.children.len())
                .filter(|&j| self.graph.position(j) > position)
                .collect(),
            Strategy::OneForAll => (0..self.children.len()).filter(|&j| j != i).collect(),
        };
        // Every sibling in scope that is wanted up joins, whatever it is doing: one left in
        // backoff or pending could start while the group is going down, under a dependency
        // about to be stopped.
        let affected: Vec<usize> = affected
            .into_iter()
            .filter(|&j| {
                let c = &self.children[j];
                c.wanted && !matches!(c.state, ChildState::Stopped | ChildState::Failed)
            })
            .collect();
        if affected.is_empty() && self.group.is_none() {
            return false;
        }
        let mut group = self.group.take().unwrap_or_default();
        for j in affected {
            // Unwanted, it stays down when stopped; the group wants it back when done.
            self.set_wanted(j, false);
            if self.children[j].state == ChildState::Backoff {
                // Its own restart is replaced by the group's; the pending timer goes stale.
                let generation = self.generation();
                self.children[j].generation = generation;
                self.transition(j, ChildState::Stopped, None, None);
            }
            group.members.push(self.children[j].spec.id.clone());
        }
        group
            .crashed
            .push((self.children[i].spec.id.clone(), after));
        self.group = Some(group);
        self.groups_formed += 1;
        true
    }

    /// Stops the group's members top layer first; once all are down, wants them up again
    /// and lets the crashed children's backoff begin.
    fn advance_group(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let members: Vec<usize> = loop {
            let Some(group) = &self.group else { return };
            let members: Vec<usize> = group
                .members
                .iter()
                .filter_map(|id| self.index.get(id).copied())
                .collect();
            if members
                .iter()
                .any(|&j| self.children[j].state == ChildState::Stopping)
            {
                return;
            }
            let up: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&j| {
                    matches!(
                        self.children[j].state,
                        ChildState::Starting | ChildState::Running
                    )
                })
                .collect();
            let Some(top) = up.iter().map(|&j| self.graph.layer_of(j)).max() else {
                break members;
            };
            for j in up {
                if self.graph.layer_of(j) == top {
                    self.stop_child(myself, j);
                }
            }
            // Children without an actor are down already: look at the next layer now, as
            // no exit will come to call back here.
        };
        let Some(group) = self.group.take() else {
            return;
        };
        for j in members {
            self.set_wanted(j, true);
            if self.children[j].state == ChildState::Stopped {
                self.transition(j, ChildState::Pending, None, None);
            }
        }
        for (id, after) in group.crashed {
            if let Some(&i) = self.index.get(&id) {
                if self.children[i].state == ChildState::Backoff {
                    self.schedule_restart(myself, i, after);
                }
            }
        }
    }

    /// An operator's order about child `id` overrides the group restart's plan for it.
    fn leave_group(&mut self, id: &str) {
        if let Some(group) = &mut self.group {
            group.members.retain(|m| &**m != id);
            group.crashed.retain(|(c, _)| &**c != id);
        }
    }

    /// A backoff is over: start now if the gate allows, else wait as pending.
    fn end_backoff(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        if self.starting_inline {
            // This restart was decided inside a start that failed at once: going round
            // through the mailbox keeps a zero-delay crash loop from recursing without
            // bound, and lets other messages in between.
            let child = &self.children[i];
            let elapsed = Msg::BackoffElapsed {
                child: child.spec.id.clone(),
                generation: child.generation,
            };
            // A failed send means the supervisor is stopping anyway.
            let _ = myself.cast(SupervisorMsg(elapsed));
        } else if self.gate_open(i) {
            self.begin_start(myself, i);
        } else {
            self.transition(i, ChildState::Pending, None, None);
        }
    }

    /// Asks child `i` to stop, whatever it is doing.
    fn stop_child(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        match self.children[i].state {
            ChildState::Running | ChildState::Starting => {
                self.transition(i, ChildState::Stopping, None, None);
                if self.children[i].cell.is_some() || self.children[i].task.is_some() {
                    self.send_stop(myself, i);
                } else if self.children[i].actorless {
                    // Nothing to wait for.
                    self.finish_stop(myself, i);
                }
                // Otherwise the spawn is in flight; `on_spawned` stops it on arrival.
            }
            ChildState::Pending | ChildState::Backoff => {
                // No incarnation to wait for; a pending timer becomes stale.
                let generation = self.generation();
                self.children[i].generation = generation;
                self.finish_stop(myself, i);
            }
            ChildState::Stopping => {}
            ChildState::Stopped | ChildState::Failed => {
                self.children[i].after_stop = AfterStop::Stay;
                self.reply_stopped(i);
            }
        }
    }

    /// Sends the stop signal to the current incarnation (its actor, or its task) and arms
    /// the kill timer.
    fn send_stop(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        let child = &self.children[i];
        let signalled = if let Some(cell) = &child.cell {
            cell.stop(Some(STOP_REASON.to_string()));
            true
        } else if let Some(task) = &child.task {
            task.stop.stop();
            true
        } else {
            false
        };
        // A second stop of the same incarnation keeps the first one's deadline.
        if signalled && child.kill_timer.is_none() {
            let id = child.spec.id.clone();
            let generation = child.generation;
            let timer = myself.send_after(child.spec.shutdown, move || {
                SupervisorMsg(Msg::StopTimeout {
                    child: id,
                    generation,
                })
            });
            self.children[i].kill_timer = Some(KillTimer(timer.abort_handle()));
        }
    }

    /// Child `i` is gone after a stop: restart, remove or leave it, as planned.
    fn finish_stop(&mut self, myself: &ActorRef<SupervisorMsg>, i: usize) {
        self.children[i].cell = None;
        self.children[i].actorless = false;
        self.children[i].task = None;
        self.children[i].kill_timer = None;
        self.children[i].history.mark_down();
        match std::mem::replace(&mut self.children[i].after_stop, AfterStop::Stay) {
            AfterStop::Restart if self.children[i].wanted && self.stop_all.is_none() => {
                self.transition(i, ChildState::Pending, None, None);
                // Whoever waited for the stop gets it: that incarnation is gone.
                self.reply_stopped(i);
            }
            AfterStop::Remove => {
                self.transition(i, ChildState::Stopped, None, None);
                self.reply_stopped(i);
                self.remove(i);
            }
            AfterStop::Restart | AfterStop::Stay => {
                self.transition(i, ChildState::Stopped, None, None);
                self.reply_stopped(i);
            }
        }
        self.advance_stop_all(myself);
    }

    fn reply_stopped(&mut self, i: usize) {
        for waiter in self.children[i].stop_waiters.drain(..) {
            let _ = waiter.send(Ok(()));
        }
    }

    fn remove(&mut self, i: usize) {
        self.children.remove(i);
        let specs: Vec<&ChildSpec> = self.children.iter().map(|c| &c.spec).collect();
        match build_graph(&specs) {
            Ok(graph) => self.graph = graph,
            // Removing a child nobody depends on cannot break the graph; keep going with an
            // empty graph rather than panic if that invariant is ever broken.
            Err(err) => {
                tracing::error!(%err, "dependency graph broken by a removal");
                self.graph = DependencyGraph::default();
            }
        }
        self.reindex();
    }

    fn begin_stop_all(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        waiter: Option<RpcReplyPort<()>>,
    ) {
        match &mut self.stop_all {
            Some(progress) => progress.waiters.extend(waiter),
            None => {
                self.started = false;
                // Everything goes down now; the group's plan to bring members back is void.
                self.group = None;
                for i in 0..self.children.len() {
                    self.set_wanted(i, false);
                }
                self.stop_all = Some(StopAll {
                    layer: self.graph.layers().len(),
                    issued: false,
                    waiters: waiter.into_iter().collect(),
                });
            }
        }
        self.advance_stop_all(myself);
    }

    /// Stops the next layer down once the one above is gone; answers when all are.
    fn advance_stop_all(&mut self, myself: &ActorRef<SupervisorMsg>) {
        // A member that stops at once (pending, in backoff) calls back in here from the loop
        // below, before its siblings were told to stop: the outer call carries on instead.
        if self.advancing {
            return;
        }
        self.advancing = true;
        self.advance_stop_all_now(myself);
        self.advancing = false;
    }

    fn advance_stop_all_now(&mut self, myself: &ActorRef<SupervisorMsg>) {
        loop {
            let Some(progress) = &mut self.stop_all else {
                return;
            };
            if progress.layer == 0 {
                if let Some(done) = self.stop_all.take() {
                    for waiter in done.waiters {
                        let _ = waiter.send(());
                    }
                }
                return;
            }
            let layer = progress.layer - 1;
            if !progress.issued {
                progress.issued = true;
                let members = self.graph.layers()[layer].clone();
                for i in members {
                    self.stop_child(myself, i);
                }
            }
            let Some(progress) = &mut self.stop_all else {
                return;
            };
            if self.stopping[layer] > 0 {
                return;
            }
            progress.layer = layer;
            progress.issued = false;
        }
    }

    /// Wants every enabled child up; stopped and failed ones start over with a fresh
    /// restart history.
    fn start_all(&mut self) {
        self.started = true;
        for i in 0..self.children.len() {
            if self.children[i].spec.enabled {
                self.want_up(i);
            }
        }
    }

    /// Wants child `i` up: a stopped or failed one becomes pending with a fresh history,
    /// a stopping one comes back once it is down.
    fn want_up(&mut self, i: usize) {
        if self.children[i].after_stop == AfterStop::Remove {
            return;
        }
        self.set_wanted(i, true);
        let child = &mut self.children[i];
        match child.state {
            ChildState::Stopped | ChildState::Failed => {
                child.history.reset();
                self.transition(i, ChildState::Pending, None, None);
            }
            ChildState::Stopping => child.after_stop = AfterStop::Restart,
            ChildState::Pending
            | ChildState::Starting
            | ChildState::Running
            | ChildState::Backoff => {}
        }
    }

    /// Refuses orders about a child that is on its way out of the supervisor.
    fn not_removing(&self, id: &str) -> Result<usize, SupervisionError> {
        let i = self.lookup(id)?;
        if self.children[i].after_stop == AfterStop::Remove {
            return Err(SupervisionError::Removing(id.to_string()));
        }
        Ok(i)
    }

    fn start_child(&mut self, id: &str) -> Result<(), SupervisionError> {
        let i = self.not_removing(id)?;
        self.leave_group(id);
        self.want_up(i);
        if self.children[i].state == ChildState::Backoff {
            // Asked for by name: start now. (Its timer may belong to a group it just left,
            // which would never have fired.)
            let generation = self.generation();
            self.children[i].generation = generation;
            self.transition(i, ChildState::Pending, None, None);
        }
        Ok(())
    }

    fn restart_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
    ) -> Result<(), SupervisionError> {
        let i = self.not_removing(id)?;
        self.leave_group(id);
        self.set_wanted(i, true);
        self.children[i].history.reset();
        match self.children[i].state {
            ChildState::Running | ChildState::Starting => {
                self.children[i].after_stop = AfterStop::Restart;
                self.stop_child(myself, i);
            }
            ChildState::Stopping => self.children[i].after_stop = AfterStop::Restart,
            ChildState::Backoff | ChildState::Stopped | ChildState::Failed => {
                // A pending backoff timer becomes stale.
                let generation = self.generation();
                self.children[i].generation = generation;
                self.transition(i, ChildState::Pending, None, None);
            }
            ChildState::Pending => {}
        }
        Ok(())
    }

    fn remove_child(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        id: &str,
        reply: RpcReplyPort<Result<(), SupervisionError>>,
    ) {
        let i = match self.lookup(id) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let dependents: Vec<String> = self
            .graph
            .dependents(i)
            .iter()
            .map(|&d| self.children[d].spec.id.to_string())
            .collect();
        if !dependents.is_empty() {
            let _ = reply.send(Err(SupervisionError::HasDependents {
                child: id.to_string(),
                dependents,
            }));
            return;
        }
        self.leave_group(id);
        self.set_wanted(i, false);
        self.children[i].stop_waiters.push(reply);
        match self.children[i].state {
            ChildState::Running | ChildState::Starting | ChildState::Stopping => {
                self.children[i].after_stop = AfterStop::Remove;
                self.stop_child(myself, i);
            }
            ChildState::Pending
            | ChildState::Backoff
            | ChildState::Stopped
            | ChildState::Failed => {
                self.reply_stopped(i);
                self.remove(i);
            }
        }
    }

    fn add_child(&mut self, spec: ChildSpec) -> Result<(), SupervisionError> {
        if self.stop_all.is_some() || self.escalated.is_some() {
            return Err(SupervisionError::ShuttingDown);
        }
        let mut specs: Vec<&ChildSpec> = self.children.iter().map(|c| &c.spec).collect();
        specs.push(&spec);
        let graph = build_graph(&specs)?;
        let wanted = self.started && spec.enabled;
        let mut child = Child::new(spec);
        child.wanted = wanted;
        self.children.push(child);
        self.graph = graph;
        self.reindex();
        Ok(())
    }
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
                state.on_actor_exit(&myself, &cell, Exit::Abnormal(err.to_string()));
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                let exit = match reason.as_deref() {
                    Some(KILLED) => Exit::Abnormal(KILLED.to_string()),
                    _ => Exit::Normal,
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

/// Splits a worker's result into the spawn report and the readiness future, if any.
fn split_started(result: Result<Started, StartError>) -> (SpawnReport, Option<Readiness>) {
    match result {
        Ok(started) => {
            let spawn = Spawn {
                cell: started.cell,
                task: started.task,
                awaits_ready: started.ready.is_some(),
            };
            (Ok(spawn), started.ready)
        }
        Err(e) => (Err(e.to_string()), None),
    }
}

fn not_running_within(timeout: Option<Duration>) -> String {
    format!("not running within {}", human(timeout.unwrap_or_default()))
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A cheap, cloneable handle on a running supervisor, with one typed method per operation.
#[derive(Clone)]
pub struct SupervisorHandle {
    actor: ActorRef<SupervisorMsg>,
    events: Arc<Events>,
}

impl std::fmt::Debug for SupervisorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupervisorHandle")
            .field("actor", &self.actor.get_id())
            .finish()
    }
}

impl SupervisorHandle {
    /// Spawns a supervisor with no parent. Children are checked (ids, dependencies, cycles)
    /// but not started: call [`SupervisorHandle::start_all`].
    pub async fn spawn(
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
    ) -> Result<(Self, JoinHandle<()>), SupervisionError> {
        Self::spawn_with(config, children, None, None).await
    }

    /// Spawns a supervisor that takes over children someone ran without one: each is
    /// running or pending, wanted or not, as `takeover` says, and no transition is
    /// published for getting there. Only children whose workers start without an actor
    /// ([`Started::without_actor`](crate::Started::without_actor)) may be
    /// running: nothing is started for them.
    pub async fn spawn_taking_over(
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
        takeover: Takeover,
    ) -> Result<(Self, JoinHandle<()>), SupervisionError> {
        Self::spawn_with(config, children, None, Some(takeover)).await
    }

    /// Spawns a supervisor linked to `parent`, which hears of its escalation or failure.
    pub async fn spawn_linked(
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
        parent: ActorCell,
    ) -> Result<(Self, JoinHandle<()>), SupervisionError> {
        Self::spawn_with(config, children, Some(parent), None).await
    }

    async fn spawn_with(
        config: SupervisorConfig,
        children: Vec<ChildSpec>,
        parent: Option<ActorCell>,
        takeover: Option<Takeover>,
    ) -> Result<(Self, JoinHandle<()>), SupervisionError> {
        // Checked here so the caller gets the typed error, not a spawn failure string.
        let graph = build_graph(&children.iter().collect::<Vec<_>>())?;
        let events = Events::new(&config);
        let args = SupervisorArgs {
            config,
            children,
            graph,
            events: events.clone(),
            takeover,
        };
        let spawned = match parent {
            Some(parent) => Actor::spawn_linked(None, Supervisor, args, parent).await,
            None => Actor::spawn(None, Supervisor, args).await,
        };
        let (actor, join) = spawned.map_err(|e| SupervisionError::Spawn(e.to_string()))?;
        Ok((SupervisorHandle { actor, events }, join))
    }

    /// Subscribes to state changes. Subscribe before `start_all` to see every transition.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// The supervisor's actor, e.g. to link it or to watch it end.
    pub fn actor(&self) -> ActorCell {
        self.actor.get_cell()
    }

    async fn call<T: Send + 'static>(
        &self,
        build: impl FnOnce(RpcReplyPort<T>) -> Msg,
    ) -> Result<T, SupervisionError> {
        match self
            .actor
            .call(|reply| SupervisorMsg(build(reply)), None)
            .await
        {
            Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
            _ => Err(SupervisionError::Unavailable),
        }
    }

    /// Starts every enabled child (stopped and failed ones too, with a fresh restart
    /// history), layer by layer: a child starts once its dependencies are running and no
    /// child of a lower layer is still starting, backing off or stopping. A child whose
    /// dependency is down waits without holding up anyone else. Returns once the start is
    /// under way; see [`SupervisorHandle::settled`].
    pub async fn start_all(&self) -> Result<(), SupervisionError> {
        self.call(Msg::StartAll).await
    }

    /// Waits until nothing is in motion — every child running, down, or waiting on a
    /// dependency that is down — and returns the children as they are then.
    pub async fn settled(&self) -> Result<Vec<ChildInfo>, SupervisionError> {
        self.call(Msg::Settled).await
    }

    /// Stops every child in reverse start order (a layer once the layers above it are gone)
    /// and returns when all are stopped. Nothing restarts afterwards until started again.
    pub async fn stop_all(&self) -> Result<(), SupervisionError> {
        self.call(Msg::StopAll).await
    }

    /// Wants one child up again (a stopped or failed one starts over with a fresh restart
    /// history) and starts it when its dependencies are running.
    pub async fn start_child(&self, id: &str) -> Result<(), SupervisionError> {
        self.call(|r| Msg::StartChild(id.into(), r)).await?
    }

    /// Stops one child and keeps it down; returns once it is stopped.
    pub async fn stop_child(&self, id: &str) -> Result<(), SupervisionError> {
        self.call(|r| Msg::StopChild(id.into(), r)).await?
    }

    /// Restarts one child by hand: stopped gracefully, then started again at once. Does not
    /// count against its restart intensity and resets its backoff.
    pub async fn restart_child(&self, id: &str) -> Result<(), SupervisionError> {
        self.call(|r| Msg::RestartChild(id.into(), r)).await?
    }

    /// Adds a child; it starts at once (dependencies permitting) if the supervisor was started.
    pub async fn add_child(&self, spec: ChildSpec) -> Result<(), SupervisionError> {
        self.call(|r| Msg::AddChild(Box::new(spec), r)).await?
    }

    /// Stops and removes a child nobody depends on; returns once it is gone.
    pub async fn remove_child(&self, id: &str) -> Result<(), SupervisionError> {
        self.call(|r| Msg::RemoveChild(id.into(), r)).await?
    }

    /// Every child as it is now, in declaration order.
    pub async fn children(&self) -> Result<Vec<ChildInfo>, SupervisionError> {
        self.call(Msg::Children).await
    }

    /// Stops every child in reverse order, then the supervisor itself.
    pub async fn shutdown(&self) -> Result<(), SupervisionError> {
        self.stop_all().await?;
        self.actor
            .stop_and_wait(Some("shutdown".to_string()), None)
            .await
            .map_err(|_| SupervisionError::Unavailable)
    }
}
