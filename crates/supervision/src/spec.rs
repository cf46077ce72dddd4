//! How a child is described to a supervisor and how it is started.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell};
use tokio::sync::Notify;

use super::error::{BoxError, StartError};
use super::policy::{Backoff, Intensity, Restart, RestartPolicy};
use super::ChildId;

/// A boxed, sendable future: what a [`Worker`] returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a supervisor hands a worker when it starts one incarnation of a child.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartContext {
    /// The supervisor: link the child's actor to it (`Actor::spawn_linked(.., ctx.supervisor)`)
    /// so that its exit reaches the supervisor.
    pub supervisor: ActorCell,
    /// The child being started.
    pub child: ChildId,
    /// How many times the supervisor restarted this child before; 0 on the first start.
    pub restarts: u64,
}

/// What a task child's future returns: `Ok(())` is a normal exit, `Err(error)` a crash
/// ([`ChildError::Failed`](crate::ChildError::Failed)). Any error converts into it with `?`,
/// and so does a message: `Err("disk full".into())`.
pub type TaskResult = Result<(), BoxError>;

/// The stop request of one incarnation of a task child: the supervisor triggers it when it
/// wants the child down, and the task should then finish (clean up, return `Ok(())`). A task
/// still running after the child's shutdown grace is aborted at its next `.await`.
///
/// Cheap to clone (one shared allocation of a few dozen bytes); every clone sees the same
/// request.
#[derive(Clone, Default)]
pub struct StopSignal(Arc<StopShared>);

#[derive(Default)]
struct StopShared {
    requested: AtomicBool,
    notify: Notify,
}

impl StopSignal {
    /// A signal nobody triggered yet.
    pub fn new() -> Self {
        StopSignal::default()
    }

    /// Asks the task to stop; every `stopped()` future, pending or future, completes. Only
    /// the first call does anything. The supervisor calls it; a task may call it on its own
    /// clone too, e.g. to tell helpers of its own to wind down.
    pub fn stop(&self) {
        if !self.0.requested.swap(true, Ordering::AcqRel) {
            self.0.notify.notify_waiters();
        }
    }

    /// Whether a stop was requested.
    pub fn is_stopped(&self) -> bool {
        self.0.requested.load(Ordering::Acquire)
    }

    /// Completes once a stop is requested (at once if it already was). Meant for
    /// `tokio::select!` beside the task's work.
    pub async fn stopped(&self) {
        let notified = self.0.notify.notified();
        let mut notified = std::pin::pin!(notified);
        // Registered before the flag is read, so a `stop` in between is not missed.
        notified.as_mut().enable();
        if self.is_stopped() {
            return;
        }
        notified.await;
    }
}

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StopSignal")
            .field("stopped", &self.is_stopped())
            .finish()
    }
}

/// What a supervisor hands the function that makes one incarnation of a task child (see
/// [`ChildSpec::task`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TaskContext {
    /// The child being started.
    pub child: ChildId,
    /// How many times the supervisor restarted this child before; 0 on the first start.
    pub restarts: u64,
    /// Triggered when the supervisor wants this incarnation down: finish soon after it.
    pub stop: StopSignal,
}

/// The future of a task child and the signal that asks it to stop, before the supervisor
/// spawns it.
pub(crate) struct TaskStart {
    pub(crate) stop: StopSignal,
    pub(crate) run: BoxFuture<TaskResult>,
}

/// A started incarnation: its actor (none for a child without one), or its task, and
/// optionally a readiness future.
pub struct Started {
    pub(crate) cell: Option<ActorCell>,
    pub(crate) task: Option<TaskStart>,
    pub(crate) ready: Option<BoxFuture<Result<(), BoxError>>>,
}

impl Started {
    /// The child is running as soon as its actor exists (an in-process worker).
    pub fn running(cell: ActorCell) -> Self {
        Started {
            cell: Some(cell),
            task: None,
            ready: None,
        }
    }

    /// The child is a task: `run` is spawned on the tokio runtime by the supervisor, which
    /// counts the child running at once. `run` ending with `Ok(())` is a normal exit, with
    /// `Err(reason)` or a panic a crash; either way the restart policy decides what follows.
    /// To stop the child the supervisor triggers `stop` (which `run` should watch, e.g.
    /// through a clone moved into it), and aborts `run` if it is still there after the
    /// child's shutdown grace — an abort that takes effect at `run`'s next `.await`, so a
    /// task must not compute for long without one.
    ///
    /// [`ChildSpec::task`] builds the usual case; this is for a [`Worker`] that prepares
    /// something asynchronously before its task runs.
    pub fn task<F>(stop: StopSignal, run: F) -> Self
    where
        F: Future<Output = TaskResult> + Send + 'static,
    {
        Started {
            cell: None,
            task: Some(TaskStart {
                stop,
                run: Box::pin(run),
            }),
            ready: None,
        }
    }

    /// The child has no actor of its own: it is state the supervisor keeps (dependency order,
    /// activation, restarts by hand) for something that does no work, such as a placeholder
    /// other children depend on. It is running at once, is stopped at once when asked, and
    /// never exits by itself — so it never crashes and is never restarted by policy. It
    /// costs the supervisor a few hundred bytes instead of an actor's several kilobytes.
    pub fn without_actor() -> Self {
        Started {
            cell: None,
            task: None,
            ready: None,
        }
    }

    /// The child is running once `ready` resolves `Ok` (e.g. a process printed its ready
    /// line). An `Err` or the child's start timeout stops it and counts as a crash.
    pub fn when_ready<F>(cell: ActorCell, ready: F) -> Self
    where
        F: Future<Output = Result<(), BoxError>> + Send + 'static,
    {
        Started {
            cell: Some(cell),
            task: None,
            ready: Some(Box::pin(ready)),
        }
    }
}

/// Starts incarnations of a child. Implement it for your own actors, or pass a closure
/// `Fn(StartContext) -> impl Future<Output = Result<Started, StartError>>`.
///
/// The worker must link the actor it spawns to `ctx.supervisor`; the supervisor learns of
/// the child's exit only through that link. A worker that returns [`Started::task`] spawns
/// nothing itself: the supervisor spawns the task and sees its end.
pub trait Worker: Send + Sync + 'static {
    /// Spawns one incarnation.
    fn start(&self, ctx: StartContext) -> BoxFuture<Result<Started, StartError>>;
}

impl<F, Fut> Worker for F
where
    F: Fn(StartContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Started, StartError>> + Send + 'static,
{
    fn start(&self, ctx: StartContext) -> BoxFuture<Result<Started, StartError>> {
        Box::pin(self(ctx))
    }
}

/// A child as the supervisor knows it: id, dependencies, restart policy, and how to start it.
#[derive(Clone)]
pub struct ChildSpec {
    pub(crate) id: ChildId,
    pub(crate) depends_on: Vec<ChildId>,
    pub(crate) policy: RestartPolicy,
    pub(crate) enabled: bool,
    pub(crate) start_timeout: Option<Duration>,
    pub(crate) shutdown: Duration,
    pub(crate) worker: Arc<dyn Worker>,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("depends_on", &self.depends_on)
            .field("policy", &self.policy)
            .field("enabled", &self.enabled)
            .field("start_timeout", &self.start_timeout)
            .field("shutdown", &self.shutdown)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A permanent child with default backoff and intensity, no dependencies, no start
    /// timeout, and 5 s to stop before it is killed.
    pub fn new(id: impl Into<ChildId>, worker: impl Worker) -> Self {
        ChildSpec {
            id: id.into(),
            depends_on: Vec::new(),
            policy: RestartPolicy::default(),
            enabled: true,
            start_timeout: None,
            shutdown: Duration::from_secs(5),
            worker: Arc::new(worker),
        }
    }

    /// A child whose worker spawns a fresh ractor actor from `make` and counts it running as
    /// soon as its `pre_start` succeeded.
    pub fn actor<A, F>(id: impl Into<ChildId>, make: F) -> Self
    where
        A: Actor,
        F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    {
        ChildSpec::new(id, move |ctx: StartContext| {
            let (actor, args) = make();
            async move {
                let (actor, _) = Actor::spawn_linked(None, actor, args, ctx.supervisor).await?;
                Ok(Started::running(actor.get_cell()))
            }
        })
    }

    /// A task child: each incarnation is the future `make` returns, spawned as a tokio task
    /// and counted running at once (see [`Started::task`] for what its end means and how it
    /// is stopped). It honours everything a spec says, like an actor child, at a fraction of
    /// the cost: a task and a stop signal, a few hundred bytes, where a ractor actor takes
    /// several kilobytes. Use it for in-process work that needs no mailbox of its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use supervision::{ChildSpec, SupervisorConfig, SupervisorHandle};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let ticks = Arc::new(AtomicU64::new(0));
    /// let counter = ticks.clone();
    /// let ticker = ChildSpec::task("ticker", move |ctx| {
    ///     let ticks = counter.clone();
    ///     async move {
    ///         loop {
    ///             tokio::select! {
    ///                 _ = ctx.stop.stopped() => return Ok(()),
    ///                 _ = tokio::time::sleep(Duration::from_millis(5)) => {}
    ///             }
    ///             // One tick of work; `return Err(..)` to crash and be restarted.
    ///             ticks.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     }
    /// });
    /// let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::new(), vec![ticker]).await?;
    /// supervisor.start_all().await?;
    /// while ticks.load(Ordering::Relaxed) < 3 {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// supervisor.stop_child("ticker").await?; // the task saw its stop signal and returned
    /// let children = supervisor.children().await?;
    /// assert!(children[0].actor.is_none(), "a task child has no actor");
    /// supervisor.shutdown().await?;
    /// # Ok(()) }
    /// ```
    pub fn task<F, Fut>(id: impl Into<ChildId>, make: F) -> Self
    where
        F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        ChildSpec::new(id, move |ctx: StartContext| {
            let stop = StopSignal::new();
            let run = make(TaskContext {
                child: ctx.child,
                restarts: ctx.restarts,
                stop: stop.clone(),
            });
            std::future::ready(Ok(Started::task(stop, run)))
        })
    }

    /// The child's id.
    pub fn id(&self) -> &ChildId {
        &self.id
    }

    /// The children it depends on.
    pub fn dependencies(&self) -> &[ChildId] {
        &self.depends_on
    }

    /// Whether `start_all` starts it.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Children that must be running before this one starts.
    pub fn depends_on<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ChildId>,
    {
        self.depends_on = ids.into_iter().map(Into::into).collect();
        self
    }

    /// The whole restart policy at once.
    pub fn policy(mut self, policy: RestartPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.policy.restart = restart;
        self
    }

    /// Backoff between restarts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.policy.backoff = backoff;
        self
    }

    /// Restart intensity.
    pub fn intensity(mut self, intensity: Intensity) -> Self {
        self.policy.intensity = intensity;
        self
    }

    /// Whether exhausting the intensity takes the supervisor down.
    pub fn escalate(mut self, escalate: bool) -> Self {
        self.policy.escalate = escalate;
        self
    }

    /// Whether `start_all` starts it (a disabled child starts only when asked by id).
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Deadline for an incarnation to become running; missing it counts as a crash. A
    /// worker's start future still pending at the deadline is dropped, so it must not leave
    /// anything behind when cancelled between two awaits.
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// How long a stopping child may take before it is killed.
    pub fn shutdown(mut self, grace: Duration) -> Self {
        self.shutdown = grace;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::StopSignal;

    #[tokio::test]
    async fn a_stop_reaches_every_clone_whether_it_waits_already_or_later() {
        let signal = StopSignal::new();
        assert!(!signal.is_stopped());
        let waiting = tokio::spawn({
            let signal = signal.clone();
            async move { signal.stopped().await }
        });
        // Let the waiter register before the stop.
        tokio::task::yield_now().await;
        signal.stop();
        signal.stop(); // a second request changes nothing
        waiting.await.unwrap();
        let late = signal.clone();
        assert!(late.is_stopped());
        late.stopped().await; // already stopped: completes at once
    }
}
