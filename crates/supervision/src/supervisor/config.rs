//! How a supervisor is configured, and where its events go.

use std::sync::{Arc, OnceLock};

use tokio::sync::broadcast;

use crate::event::SupervisorEvent;
use crate::policy::Strategy;

/// Called with every event a supervisor publishes, in order, inside the supervisor's own
/// handler: it must return at once (a channel send, a counter), never block or wait.
pub type Observer = Arc<dyn Fn(&SupervisorEvent) + Send + Sync>;

/// How a supervisor behaves as a whole: built from [`SupervisorConfig::new`] (one_for_one,
/// 1024 events per subscriber, no observer) with one method per setting.
///
/// # Examples
///
/// ```
/// use supervision::{Strategy, SupervisorConfig};
///
/// let config = SupervisorConfig::new()
///     .strategy(Strategy::RestForOne)
///     .event_capacity(64)
///     .observer(|event| println!("{event:?}"));
/// assert_eq!(config.get_strategy(), Strategy::RestForOne);
/// ```
#[derive(Clone)]
pub struct SupervisorConfig {
    pub(super) strategy: Strategy,
    pub(super) event_capacity: usize,
    pub(super) observer: Option<Observer>,
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

impl SupervisorConfig {
    /// The defaults: `one_for_one`, 1024 events buffered per subscriber, no observer.
    pub fn new() -> Self {
        SupervisorConfig::default()
    }

    /// Which siblings are restarted with a crashed child.
    pub fn strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Events buffered per subscriber (at least 1); a subscriber that falls further behind
    /// loses the oldest ones (it is told so by the broadcast channel), never the
    /// supervisor's time. The channel is allocated (every slot at once) by the first
    /// `subscribe`, so a supervisor nobody subscribes to pays nothing for it.
    pub fn event_capacity(mut self, capacity: usize) -> Self {
        self.event_capacity = capacity;
        self
    }

    /// Sees every event as it happens, without a channel or a task of its own: what an
    /// embedder that keeps many supervisors uses instead of subscribing to each. It runs
    /// inside the supervisor's handler, so it must return at once (see [`Observer`]).
    pub fn observer(mut self, observer: impl Fn(&SupervisorEvent) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The restart strategy it sets.
    pub fn get_strategy(&self) -> Strategy {
        self.strategy
    }

    /// The per-subscriber event buffer it sets.
    pub fn get_event_capacity(&self) -> usize {
        self.event_capacity
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
