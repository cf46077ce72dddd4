//! The event bus: every session, agent and context event of the server, in one order.
//!
//! Publishers (the registry, the session actors, the registry handle) call
//! [`EventBus::publish`], which stamps the event and hands it to every live subscriber.
//! Events that belong in the audit trail (everything but output lines) get the next `seq`;
//! the stamp and the broadcast happen under one lock, so subscribers see `seq` strictly
//! increasing. A subscriber that falls behind is told it lagged; it never slows a publisher.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use crate::agent::AgentEvent;

use super::model::now;
use super::registry::SessionEvent;

/// Events a live subscriber may fall behind by before it is told it lagged.
const LIVE_CAPACITY: usize = 4096;

/// One published event, stamped.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// Its place in the audit trail; `None` for events that are not kept (output lines).
    pub seq: Option<u64>,
    /// Unix seconds at which it was published.
    pub timestamp: f64,
    /// The event.
    pub event: SessionEvent,
}

/// The server's event bus; cloning shares it.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The last `seq` given; the lock also orders the broadcast.
    last_seq: Mutex<u64>,
    live: broadcast::Sender<Arc<Published>>,
}

impl EventBus {
    /// A bus whose next sequenced event gets `last_seq + 1`.
    pub fn new(last_seq: u64) -> EventBus {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventBus {
            inner: Arc::new(Inner {
                last_seq: Mutex::new(last_seq),
                live,
            }),
        }
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.inner.live.subscribe()
    }

    /// The `seq` of the last sequenced event published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        *self
            .inner
            .last_seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stamps `event` and hands it to every subscriber; returns it as published.
    pub fn publish(&self, event: SessionEvent) -> Arc<Published> {
        let mut last_seq = self
            .inner
            .last_seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = if is_kept(&event) {
            *last_seq += 1;
            Some(*last_seq)
        } else {
            None
        };
        let published = Arc::new(Published {
            seq,
            timestamp: now(),
            event,
        });
        // No subscriber is fine.
        let _ = self.inner.live.send(published.clone());
        published
    }
}

/// Whether an event belongs in the audit trail: everything but an agent's output lines.
fn is_kept(event: &SessionEvent) -> bool {
    !matches!(
        event,
        SessionEvent::Agent {
            event: AgentEvent::Log { .. },
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn kept_events_are_numbered_in_order_and_log_lines_are_not() {
        let bus = EventBus::new(41);
        let mut rx = bus.subscribe();
        let first = bus.publish(SessionEvent::Purged(Uuid::nil()));
        let line = crate::agent::LogLine {
            stream: crate::agent::Stream::Stdout,
            line: "hello".into(),
            timestamp: std::time::SystemTime::now(),
        };
        let log = bus.publish(SessionEvent::Agent {
            session: Uuid::nil(),
            event: AgentEvent::Log {
                agent: "a".into(),
                line,
            },
        });
        let second = bus.publish(SessionEvent::Purged(Uuid::nil()));
        assert_eq!((first.seq, log.seq, second.seq), (Some(42), None, Some(43)));
        assert_eq!(bus.last_seq(), 43);
        let seen: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().seq).collect();
        assert_eq!(seen, [Some(42), None, Some(43)]);
    }
}
