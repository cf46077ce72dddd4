//! The event bus: every session, agent and context event of the server, in one order.
//!
//! Publishers (the registry, the session actors, the registry handle) call
//! [`EventBus::publish`], which stamps the event and hands it to every live subscriber.
//! Events that belong in the audit trail (everything but output lines) get the next `seq`;
//! the stamp and the broadcast happen under one lock, so subscribers see `seq` strictly
//! increasing. A subscriber that falls behind is told it lagged; it never slows a publisher.
//!
//! A bus opened on storage ([`EventBus::open`]) also keeps the audit trail: under the same
//! lock, every numbered event goes to an unbounded queue (never waited on) that one task
//! writes to the `events` table in batches, one transaction each, with the bus's own `seq`.
//! The bus continues from the stored `latest_seq`, so a seq is never given twice, even
//! across restarts and prunes. [`EventBus::read`] waits until everything published so far
//! is stored before reading, so a reader never sees a gap between the log and the live
//! stream — and answers at once with [`LogError::Failing`] while storage refuses writes.
//!
//! While storage refuses writes (a full disk, a read-only file system), the writer keeps
//! what it could not store in a backlog, in order, bounded in bytes, and retries until
//! storage takes it. Events that arrive while the backlog is full are given up; once the
//! events before them are stored, a numbered [`SessionEvent::EventsLost`] names the seqs
//! that were lost, and [`EventBus::log_status`] tells `/health` meanwhile. Nothing is
//! dropped silently.
//!
//! Layout: this file is the bus itself (publishing, versions, flush and reads);
//! `record.rs` the row a numbered event is stored as (its kind, session, time, seq);
//! `backlog.rs` what the writer holds while storage refuses; `writer.rs` the writer and
//! pruner tasks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::agent::AgentEvent;
use crate::storage::{Fault, Storage, StorageError, StoredEvent};

use super::model::now;
use super::registry::SessionEvent;

mod backlog;
mod follow;
mod record;
#[cfg(test)]
mod tests;
mod writer;

use backlog::Backlog;
use follow::Followers;
pub use follow::{Follower, Keep};
pub use record::stored_row;
use writer::{prune_log, Writer};

/// Events a live subscriber may fall behind by before it is told it lagged.
const LIVE_CAPACITY: usize = 4096;
/// How long a read waits for the events published before it to be stored; past it, the
/// read fails instead of hanging (storage too slow to answer, but not known to fail).
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// `events.backlog_max_bytes`' default, for the tests.
#[cfg(test)]
const DEFAULT_BACKLOG_MAX_BYTES: u64 = 64 * 1024 * 1024;

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

/// Writes down a numbered event's data (JSON) for the log. The row around it — the event's
/// kind, session, time and seq — is the bus's own (`record.rs`); the data is whatever the
/// server opens the bus with says (the API's mapping, so a replay is byte for byte the
/// message a live client got). The bus knows no wire shape.
pub type Encoder = fn(&Published) -> Value;

/// Why the log could not be read (or an event not accepted).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The writer stopped (storage closed) before it stored what was published.
    #[error("the event log is closed")]
    Closed,
    /// Storage refuses the log's writes now; events wait in the backlog, so the log lacks
    /// some already published.
    #[error("the event log cannot be written: {}", .0.describe())]
    Failing(Fault),
    /// The events published before the read were not stored within the read's deadline.
    #[error("the event log did not catch up within its deadline")]
    TimedOut,
    /// Storage refused the read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The state of the log's writer, for `/health`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogStatus {
    /// Why storage refuses the log's writes, and since when (Unix seconds); `None` while
    /// writes go through.
    pub failing: Option<(Fault, f64)>,
    /// Events published but not stored yet (waiting in the backlog or the queue's batch).
    pub backlog: usize,
    /// What the backlog holds, in bytes (as counted against `events.backlog_max_bytes`).
    pub backlog_bytes: u64,
    /// Events given up since the server started.
    pub lost: u64,
    /// The last range of seqs given up, and when (Unix seconds).
    pub last_lost: Option<LostRange>,
}

/// Seqs the log gave up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LostRange {
    /// The first seq lost.
    pub first: u64,
    /// The last seq lost.
    pub last: u64,
    /// When the last of them was given up (Unix seconds).
    pub at: f64,
}

/// The server's event bus; cloning shares it.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The last `seq` given and the log's queue; the lock also orders the broadcast.
    state: Mutex<State>,
    live: broadcast::Sender<Arc<Published>>,
    log: Option<Log>,
    /// Who must see every stored event (see [`EventBus::follow`]); the writer feeds them.
    followers: Arc<Mutex<Followers>>,
}

#[derive(Debug)]
struct State {
    last_seq: u64,
    /// Where numbered events go to be stored; `None` without a log or once closed.
    pending: Option<mpsc::UnboundedSender<Arc<Published>>>,
    /// Changes of sessions (see [`EventBus::changes`]).
    changes: Changes,
}

/// Each change of a session (a numbered event about it, or a touch) takes the next stamp;
/// a session's version is the stamp of its last change. A purged session's entry goes with
/// it and moves `floor`, the version of every session without one, past every stamp given:
/// no version is ever seen again once the session changed.
#[derive(Debug, Default)]
struct Changes {
    stamp: u64,
    floor: u64,
    last: HashMap<Uuid, u64>,
}

impl Changes {
    fn note(&mut self, session: Uuid) {
        self.stamp += 1;
        self.last.insert(session, self.stamp);
    }

    fn forget(&mut self, session: Uuid) {
        self.stamp += 1;
        self.last.remove(&session);
        self.floor = self.stamp;
    }

    fn of(&self, session: Uuid) -> u64 {
        self.last.get(&session).copied().unwrap_or(self.floor)
    }
}

/// The stored side of a bus opened on storage.
#[derive(Debug)]
struct Log {
    storage: Storage,
    /// The highest seq known to be stored (or given up); its sender is the writer's.
    stored: watch::Receiver<u64>,
    /// What the writer reports about itself.
    status: watch::Receiver<LogStatus>,
    /// The writer (finishes once the queue is closed and drained) and the pruner.
    tasks: Mutex<Option<(JoinHandle<()>, JoinHandle<()>)>>,
}

impl EventBus {
    /// A bus without a log whose next sequenced event gets `last_seq + 1`.
    pub fn new(last_seq: u64) -> EventBus {
        EventBus::build(last_seq, None, None)
    }

    /// A bus that keeps its numbered events in `storage`'s event log: it continues after the
    /// log's `latest_seq`, stores every numbered event (encoded by `encode`) without making
    /// the publisher wait, keeps up to `backlog_max_bytes` of them while storage refuses
    /// writes, and prunes events older than `retention` now and every hour.
    /// Call [`EventBus::close`] before closing the storage.
    pub async fn open(
        storage: Storage,
        encode: Encoder,
        retention: Duration,
        backlog_max_bytes: u64,
    ) -> Result<EventBus, StorageError> {
        let latest = storage.latest_seq().await?;
        let last_seq = u64::try_from(latest)
            .map_err(|_| StorageError::Corrupt(format!("negative event seq {latest}")))?;
        let (pending, queue) = mpsc::unbounded_channel();
        let (stored_tx, stored) = watch::channel(last_seq);
        let (status_tx, status) = watch::channel(LogStatus::default());
        let pruner = tokio::spawn(prune_log(storage.clone(), retention));
        let log = Log {
            storage: storage.clone(),
            stored,
            status,
            tasks: Mutex::new(None),
        };
        let bus = EventBus::build(last_seq, Some(log), Some(pending));
        let writer = Writer::new(
            storage,
            encode,
            (stored_tx, status_tx),
            Backlog::new(backlog_max_bytes),
            // Weak: the writer must not keep the bus alive; it ends when the queue closes.
            (Arc::downgrade(&bus.inner), Arc::clone(&bus.inner.followers)),
        );
        let writer = tokio::spawn(writer.run(queue));
        if let Some(log) = &bus.inner.log {
            *log.tasks.lock().unwrap_or_else(PoisonError::into_inner) = Some((writer, pruner));
        }
        Ok(bus)
    }

    fn build(
        last_seq: u64,
        log: Option<Log>,
        pending: Option<mpsc::UnboundedSender<Arc<Published>>>,
    ) -> EventBus {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        EventBus {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    last_seq,
                    pending,
                    changes: Changes::default(),
                }),
                live,
                log,
                followers: Arc::default(),
            }),
        }
    }

    /// Every event published from now on, live — and lossy: a receiver that falls behind
    /// is told it lagged and misses events. For live views that can catch up from the log
    /// (the WebSocket); a consumer that keeps state from the events follows the log
    /// instead ([`EventBus::follow`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.inner.live.subscribe()
    }

    /// Every numbered event published from now on that `keep` accepts, handed over once it
    /// is stored, in seq order, none dropped. While this follower's queue is full the log's
    /// writer waits for it, so publishers that wait for storage (hook POSTs) wait too: the
    /// follower must never itself wait on the log (a flush, a stored publish), or the two
    /// would wait on each other — such a consumer uses [`EventBus::follow_unbounded`].
    /// Without a log (tests), events are handed over as published, unbounded.
    pub fn follow(&self, keep: Keep) -> Follower {
        self.follow_with(keep, self.inner.log.is_some())
    }

    /// As [`EventBus::follow`], but the queue is unbounded: the writer never waits for this
    /// follower. For a consumer that waits on the log itself; `keep` should take only the
    /// few events it acts on, since nothing bounds what it holds.
    pub fn follow_unbounded(&self, keep: Keep) -> Follower {
        self.follow_with(keep, false)
    }

    fn follow_with(&self, keep: Keep, bounded: bool) -> Follower {
        // Under the state lock: no event is published between reading the last seq and
        // joining, so the follower starts exactly after it.
        let state = self.state();
        let from = state.last_seq + 1;
        let follower = follow::lock(&self.inner.followers).add(from, keep, bounded);
        drop(state);
        follower
    }

    /// The `seq` of the last sequenced event published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.state().last_seq
    }

    /// A session's version: it moves with every numbered event about the session and every
    /// [`EventBus::touch`], and never comes back to a value it had. Read it before reading
    /// the session: what was read is current as long as the version has not moved.
    pub fn changes(&self, session: Uuid) -> u64 {
        self.state().changes.of(session)
    }

    /// Counts a change of `session` now, for one announced later: a session actor changes its
    /// record before the registry publishes the change.
    pub fn touch(&self, session: Uuid) {
        self.state().changes.note(session);
    }

    /// Stamps `event` and hands it to the log (when kept) and to every subscriber; returns it
    /// as published. Never waits on storage or on a subscriber.
    pub fn publish(&self, event: SessionEvent) -> Arc<Published> {
        let mut state = self.state();
        let seq = if is_kept(&event) {
            state.last_seq += 1;
            match &event {
                SessionEvent::Purged(session) => state.changes.forget(*session),
                event => {
                    if let Some(session) = event.session() {
                        state.changes.note(session);
                    }
                }
            }
            Some(state.last_seq)
        } else {
            None
        };
        let published = Arc::new(Published {
            seq,
            timestamp: now(),
            event,
        });
        if seq.is_some() {
            if let Some(pending) = &state.pending {
                // Fails only once the writer is gone (storage closed at shutdown); the event
                // still goes to live subscribers.
                let _ = pending.send(published.clone());
            } else if self.inner.log.is_none() {
                // No writer to feed the followers: they are fed here, in seq order (under
                // the lock), without waiting.
                follow::lock(&self.inner.followers).offer(&published);
            }
        }
        // No subscriber is fine.
        let _ = self.inner.live.send(published.clone());
        published
    }

    /// Waits until every numbered event published before this call is stored. Immediate for
    /// a bus without a log. Fails at once with [`LogError::Failing`] while storage refuses
    /// the log's writes, and with [`LogError::TimedOut`] when the events are not stored
    /// within a few seconds: a caller is never held for as long as an outage lasts.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.flush_to(self.last_seq()).await
    }

    /// [`EventBus::flush`] up to `target` only.
    async fn flush_to(&self, target: u64) -> Result<(), LogError> {
        let Some(log) = &self.inner.log else {
            return Ok(());
        };
        let mut stored = log.stored.clone();
        let mut status = log.status.clone();
        let caught_up = async {
            let done = stored.wait_for(|&seq| seq >= target).await.is_ok();
            if done {
                Ok(())
            } else {
                Err(LogError::Closed)
            }
        };
        let failing = async {
            let fault = status
                .wait_for(|status| status.failing.is_some())
                .await
                .ok()
                .and_then(|status| status.failing.map(|(fault, _)| fault));
            match fault {
                Some(fault) => LogError::Failing(fault),
                // The writer is gone: only the stored seq can still answer.
                None => std::future::pending().await,
            }
        };
        let wait = async {
            tokio::select! {
                biased;
                done = caught_up => done,
                error = failing => Err(error),
            }
        };
        tokio::time::timeout(FLUSH_DEADLINE, wait)
            .await
            .unwrap_or(Err(LogError::TimedOut))
    }

    /// Publishes `event` only if the log takes writes now, and returns once it is stored:
    /// for events a client is told were accepted (a hook event's 202), which must not exist
    /// only in memory. Refused with [`LogError::Failing`] while storage refuses the log (the
    /// event is then not published at all); a [`LogError::TimedOut`] after publishing means
    /// it waits in the backlog and will be stored once storage takes it.
    pub async fn publish_stored(&self, event: SessionEvent) -> Result<Arc<Published>, LogError> {
        if let Some((fault, _)) = self.log_status().and_then(|status| status.failing) {
            return Err(LogError::Failing(fault));
        }
        let published = self.publish(event);
        if let Some(seq) = published.seq {
            self.flush_to(seq).await?;
        }
        Ok(published)
    }

    /// The log writer's state now; `None` for a bus without a log.
    pub fn log_status(&self) -> Option<LogStatus> {
        self.inner
            .log
            .as_ref()
            .map(|log| log.status.borrow().clone())
    }

    /// Up to `limit` stored events with a seq above `since`, oldest first, of one session
    /// or all; everything published before the call is stored first, so the answer joins
    /// the live stream without a gap. Empty for a bus without a log. Answers within 5 s:
    /// [`LogError::Failing`] at once while storage refuses the log, [`LogError::TimedOut`]
    /// when the flush and the read together take longer.
    pub async fn read(
        &self,
        since: u64,
        session: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        self.read_within(since, session, limit, usize::MAX).await
    }

    /// As [`EventBus::read`], but the page also ends once its payloads reach `max_bytes`
    /// (with at least one event in it when there is one), so a replay of large events holds
    /// a page of bounded size.
    pub async fn read_within(
        &self,
        since: u64,
        session: Option<Uuid>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let Some(log) = &self.inner.log else {
            return Ok(Vec::new());
        };
        // Seqs start at 1 and stay far below i64::MAX; a larger `since` finds nothing.
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        let read = async {
            self.flush().await?;
            Ok(log
                .storage
                .events_since_within(since, session.map(|id| id.to_string()), limit, max_bytes)
                .await?)
        };
        // One deadline for both: the read queues behind writes that may be waiting for a
        // lock held elsewhere, and a reader must not wait for as long as that lasts.
        tokio::time::timeout(FLUSH_DEADLINE, read)
            .await
            .unwrap_or(Err(LogError::TimedOut))
    }

    /// Stops logging: events published from now on are only broadcast. Waits until every
    /// event published before is stored (or the writer gave up) and handed to the
    /// followers, whose feeds then end, and stops the pruner. For shutdown, before the
    /// storage closes; closing twice is harmless.
    pub async fn close(&self) {
        let Some(log) = &self.inner.log else {
            follow::lock(&self.inner.followers).clear();
            return;
        };
        // Dropping the sender lets the writer drain the queue and finish.
        drop(self.state().pending.take());
        let tasks = log
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((writer, pruner)) = tasks {
            pruner.abort();
            if let Err(error) = writer.await {
                tracing::error!(%error, "the event log writer failed");
            }
        }
        // Everything stored was handed over: the followers' feeds end.
        follow::lock(&self.inner.followers).clear();
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether an event belongs in the audit trail: everything but an agent's output lines.
fn is_kept(event: &SessionEvent) -> bool {
    !matches!(
        event,
        SessionEvent::Agent {
            event: AgentEvent::Log { .. },
            ..
        } | SessionEvent::Metrics(_)
    )
}
