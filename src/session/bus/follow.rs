//! Followers: consumers that keep state from the events (the monitor's hook counts, the
//! Claude tracker) and so must see every one of them. A follower reads the stored log, not
//! the live broadcast: the writer hands it each event it chose once the event is stored, in
//! seq order, and never drops one. A bounded follower slows the writer when it falls behind
//! (back-pressure reaches the publishers that wait for storage, such as hook POSTs); an
//! unbounded one never does, for a consumer that itself waits on the log. Events the log
//! gave up are not stored, so no follower sees them; the `events_lost` marker that names
//! them is stored, and a follower that keeps it learns of the gap.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use super::{Published, SessionEvent};

/// Which events a follower wants; the others are never queued for it.
pub type Keep = fn(&SessionEvent) -> bool;

/// Events a bounded follower may have waiting before the writer waits for it.
pub(super) const FOLLOWER_CAPACITY: usize = 1024;

/// The receiving end of a follower: the stored events it keeps, in seq order, none
/// missing. Dropping it (or [`Follower::close`]) releases the writer from waiting on it.
#[derive(Debug)]
pub struct Follower {
    feed: Feed,
}

#[derive(Debug)]
enum Feed {
    Bounded(mpsc::Receiver<Arc<Published>>),
    Unbounded(mpsc::UnboundedReceiver<Arc<Published>>),
}

impl Follower {
    /// The next event; `None` once the log closed (or the follower was closed) and
    /// everything queued before was taken.
    pub async fn recv(&mut self) -> Option<Arc<Published>> {
        match &mut self.feed {
            Feed::Bounded(rx) => rx.recv().await,
            Feed::Unbounded(rx) => rx.recv().await,
        }
    }

    /// Waits for at least one event, then takes what is queued, up to `limit`, into
    /// `buffer`; 0 once the feed ended. For a consumer that handles events in batches.
    pub async fn recv_many(&mut self, buffer: &mut Vec<Arc<Published>>, limit: usize) -> usize {
        match &mut self.feed {
            Feed::Bounded(rx) => rx.recv_many(buffer, limit).await,
            Feed::Unbounded(rx) => rx.recv_many(buffer, limit).await,
        }
    }

    /// Takes no more events; what is already queued can still be received. The writer is
    /// no longer held by this follower.
    pub fn close(&mut self) {
        match &mut self.feed {
            Feed::Bounded(rx) => rx.close(),
            Feed::Unbounded(rx) => rx.close(),
        }
    }
}

/// The writer's end of a follower.
#[derive(Debug, Clone)]
enum Sink {
    Bounded(mpsc::Sender<Arc<Published>>),
    Unbounded(mpsc::UnboundedSender<Arc<Published>>),
}

impl Sink {
    /// Queues `published`, waiting for room on a bounded feed; false once the follower
    /// is gone.
    async fn send(&self, published: Arc<Published>) -> bool {
        match self {
            Sink::Bounded(tx) => tx.send(published).await.is_ok(),
            Sink::Unbounded(tx) => tx.send(published).is_ok(),
        }
    }
}

/// One follower as the writer sees it.
#[derive(Debug, Clone)]
struct Slot {
    id: u64,
    /// The first seq it gets: the one after the last published when it began following.
    from: u64,
    keep: Keep,
    sink: Sink,
}

impl Slot {
    fn wants(&self, published: &Published) -> bool {
        published.seq.is_some_and(|seq| seq >= self.from) && (self.keep)(&published.event)
    }
}

/// Every follower of a bus.
#[derive(Debug, Default)]
pub(super) struct Followers {
    next_id: u64,
    slots: Vec<Slot>,
}

impl Followers {
    /// A new follower of the events numbered `from` on that `keep` accepts.
    pub(super) fn add(&mut self, from: u64, keep: Keep, bounded: bool) -> Follower {
        let (sink, feed) = if bounded {
            let (tx, rx) = mpsc::channel(FOLLOWER_CAPACITY);
            (Sink::Bounded(tx), Feed::Bounded(rx))
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            (Sink::Unbounded(tx), Feed::Unbounded(rx))
        };
        self.next_id += 1;
        self.slots.push(Slot {
            id: self.next_id,
            from,
            keep,
            sink,
        });
        Follower { feed }
    }

    /// Hands `published` to every follower at once, without waiting: for a bus without a
    /// log, whose followers are all unbounded (there is no writer to slow down). A follower
    /// gone is forgotten.
    pub(super) fn offer(&mut self, published: &Arc<Published>) {
        self.slots.retain(|slot| match &slot.sink {
            Sink::Unbounded(tx) if slot.wants(published) => tx.send(published.clone()).is_ok(),
            Sink::Unbounded(tx) => !tx.is_closed(),
            // Never made without a log; dropped rather than waited on by a publisher.
            Sink::Bounded(_) => false,
        });
    }

    /// Ends every feed: each follower gets what is queued, then `None`.
    pub(super) fn clear(&mut self) {
        self.slots.clear();
    }

    fn remove(&mut self, gone: &[u64]) {
        self.slots.retain(|slot| !gone.contains(&slot.id));
    }
}

/// Hands `stored` (events just stored, in seq order) to every follower that wants them,
/// waiting while a bounded follower's queue is full; forgets the followers that are gone.
/// The lock is held only to copy the list, never across a wait.
pub(super) async fn deliver(followers: &Mutex<Followers>, stored: &[Arc<Published>]) {
    let slots = lock(followers).slots.clone();
    if slots.is_empty() {
        return;
    }
    let mut gone = Vec::new();
    for slot in &slots {
        for published in stored.iter().filter(|published| slot.wants(published)) {
            if !slot.sink.send(published.clone()).await {
                gone.push(slot.id);
                break;
            }
        }
    }
    if !gone.is_empty() {
        lock(followers).remove(&gone);
    }
}

pub(super) fn lock(followers: &Mutex<Followers>) -> std::sync::MutexGuard<'_, Followers> {
    followers.lock().unwrap_or_else(PoisonError::into_inner)
}
