//! The handle embedders hold: one typed async method per operation.

use std::sync::Arc;

use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::bookkeeping::build_graph;
use super::config::Events;
use super::{Msg, Supervisor, SupervisorArgs, SupervisorConfig, SupervisorMsg, Takeover};
use crate::error::SpawnError;
use crate::event::{ChildInfo, SupervisorEvent};
use crate::spec::ChildSpec;
use crate::SupervisionError;

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
        let (actor, join) = spawned.map_err(|e| SupervisionError::Spawn(SpawnError::new(e)))?;
        Ok((SupervisorHandle { actor, events }, join))
    }

    /// Subscribes to state changes. Subscribe before `start_all` to see every transition.
    ///
    /// A subscriber that falls more than the configured capacity behind loses the oldest
    /// events and is told so (`RecvError::Lagged`); the supervisor never waits for it.
    ///
    /// # Examples
    ///
    /// ```
    /// use supervision::{ChildSpec, ChildState, SupervisorConfig, SupervisorEvent, SupervisorHandle};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let worker = ChildSpec::task("worker", |ctx| async move {
    ///     ctx.stop.stopped().await;
    ///     Ok(())
    /// });
    /// let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::new(), vec![worker]).await?;
    /// let mut events = supervisor.subscribe();
    /// supervisor.start_all().await?;
    /// supervisor.stop_all().await?;
    /// let mut seen = Vec::new();
    /// while seen.last() != Some(&ChildState::Stopped) {
    ///     if let SupervisorEvent::Child(t) = events.recv().await? {
    ///         seen.push(t.to);
    ///     }
    /// }
    /// use ChildState::*;
    /// assert_eq!(seen, [Starting, Running, Stopping, Stopped]);
    /// supervisor.shutdown().await?;
    /// # Ok(()) }
    /// ```
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
