//! How a supervisor is configured, and where its events go.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::event::SupervisorEvent;
use crate::policy::Strategy;

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
pub(super) struct Events {
    capacity: usize,
    channel: OnceLock<broadcast::Sender<SupervisorEvent>>,
    observer: Option<Observer>,
}

impl Events {
    pub(super) fn new(config: &SupervisorConfig) -> Arc<Events> {
        Arc::new(Events {
            capacity: config.event_capacity.max(1),
            channel: OnceLock::new(),
            observer: config.observer.clone(),
        })
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.channel
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }

    /// Whether anybody would see an event (so it is worth building).
    pub(super) fn heard(&self) -> bool {
        self.observer.is_some() || self.channel.get().is_some()
    }

    pub(super) fn publish(&self, event: SupervisorEvent) {
        if let Some(observer) = &self.observer {
            observer(&event);
        }
        if let Some(channel) = self.channel.get() {
            // Nobody listening is fine: the event is informative, not a command.
            let _ = channel.send(event);
        }
    }
}
