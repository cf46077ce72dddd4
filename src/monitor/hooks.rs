//! The hook counter: every `SessionEvent::Hook` in the event log goes to the ledger and its
//! counts to storage; a purged session's counts are forgotten.
//!
//! It follows the stored log ([`EventBus::follow`]), never the lossy live broadcast: it sees
//! every hook event the log kept, in order, and a burst it cannot keep up with slows the
//! log's writer (and so the hook POSTs waiting for storage) instead of being dropped. It
//! takes what is queued in one go and stores the batch's counts in one transaction, so a
//! burst of hook events costs a write per batch, not per event. At stop it counts everything
//! published before, then ends.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::session::{EventBus, Follower, Published, SessionEvent};

use super::activity::Delta;
use super::{hour_of, store, Shared};

/// Most hook events counted per batch (one storage transaction).
const MAX_BATCH: usize = 1024;
/// How long a stop waits for the counter to count what was published before it; past it,
/// the counter is ended where it is (storage too slow to take the counts).
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// The events the counter acts on: hook events, purges, and the log's gap markers.
fn counted(event: &SessionEvent) -> bool {
    matches!(
        event,
        SessionEvent::Hook { .. } | SessionEvent::Purged(_) | SessionEvent::EventsLost { .. }
    )
}

/// The running counter; cloning shares it.
#[derive(Clone)]
pub(super) struct HookCounter {
    inner: Arc<CounterInner>,
}

struct CounterInner {
    bus: EventBus,
    /// Told at stop: the counter takes no more events, counts what it has, and ends.
    stopping: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HookCounter {
    /// Follows `bus`'s log from now on and counts into `shared`. Follow before reading the
    /// stored counts: nothing counted is then missed or doubled (only this task writes them).
    pub(super) fn follow(bus: &EventBus) -> Follower {
        bus.follow(counted)
    }

    /// Starts counting what `events` hands over.
    pub(super) fn start(bus: EventBus, events: Follower, shared: Arc<Shared>) -> HookCounter {
        let inner = Arc::new(CounterInner {
            bus,
            stopping: Notify::new(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(count_hooks(events, shared, Arc::clone(&inner)));
        *inner.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        HookCounter { inner }
    }

    /// Counts every hook event published before the call (once the log stored it), then
    /// ends the counter; bounded by a deadline, past which it is ended where it is.
    /// Stopping twice is harmless.
    pub(super) async fn stop(&self) {
        let task = self
            .inner
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(mut task) = task else {
            return;
        };
        let finish = async {
            // Every event published so far is stored and queued for the counter.
            if let Err(error) = self.inner.bus.flush().await {
                tracing::warn!(%error, "stopping the hook counter before the log caught up");
            }
            self.inner.stopping.notify_one();
            let _ = (&mut task).await;
        };
        if tokio::time::timeout(STOP_DEADLINE, finish).await.is_err() {
            tracing::warn!("the hook counter did not finish in time; some counts are not stored");
            task.abort();
        }
    }
}

/// Counts what `events` hands over, a batch at a time, until the log closes or the counter
/// is stopped (then what is queued is counted first).
async fn count_hooks(mut events: Follower, shared: Arc<Shared>, counter: Arc<CounterInner>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    loop {
        tokio::select! {
            biased;
            () = counter.stopping.notified(), if !stopping => {
                stopping = true;
                events.close();
            }
            taken = events.recv_many(&mut batch, MAX_BATCH) => {
                if taken == 0 {
                    return;
                }
                count(&shared, &mut batch).await;
            }
        }
    }
}

/// Counts `batch` into the ledger and stores the counts in one call; a purge in the batch
/// first stores what came before it.
async fn count(shared: &Shared, batch: &mut Vec<Arc<Published>>) {
    let mut deltas: Vec<(Uuid, i64, Delta)> = Vec::new();
    for published in batch.drain(..) {
        match &published.event {
            SessionEvent::Hook {
                session,
                name,
                payload,
            } => {
                let at = published.timestamp;
                // Asked before the ledger is locked, on the blocking pool, within a
                // deadline: a path on a hung file system holds one blocking thread, never
                // the counter, the ledger or (through the follower) the event log.
                let existed = match super::activity::path_to_check(name, payload) {
                    Some(path) => exists_within(path.to_owned()).await,
                    None => true,
                };
                let delta = shared
                    .ledger()
                    .record(*session, name, payload, at, |_| existed);
                if !delta.activity.is_empty() {
                    deltas.push((*session, hour_of(at), delta));
                }
            }
            SessionEvent::Purged(session) => {
                shared.changed();
                store_counts(shared, std::mem::take(&mut deltas)).await;
                shared.ledger().forget(*session);
                shared.changed();
                if let Err(error) = store::forget_activity(&shared.storage, *session).await {
                    tracing::warn!(%error, "hook counts of a purged session not deleted");
                }
            }
            SessionEvent::EventsLost { first, last } => {
                tracing::warn!(
                    first,
                    last,
                    "the event log gave up events; hook events among them are not counted"
                );
            }
            _ => {}
        }
    }
    shared.changed();
    store_counts(shared, deltas).await;
}

async fn store_counts(shared: &Shared, deltas: Vec<(Uuid, i64, Delta)>) {
    if deltas.is_empty() {
        return;
    }
    let events = deltas.len();
    if let Err(error) = store::add_activities(&shared.storage, deltas).await {
        tracing::warn!(%error, events, "hook counts not stored");
    }
}

/// How long the counter waits to learn whether a written file existed before.
const EXISTS_DEADLINE: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether `path` exists, asked on the blocking pool; a path that does not answer within
/// [`EXISTS_DEADLINE`] counts as existing (the write is counted as a modification).
async fn exists_within(path: String) -> bool {
    let asked = tokio::task::spawn_blocking(move || std::path::Path::new(&path).exists());
    match tokio::time::timeout(EXISTS_DEADLINE, asked).await {
        Ok(Ok(exists)) => exists,
        _ => true,
    }
}
