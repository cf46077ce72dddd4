//! The event bus: every session, agent and context event of the server, in one order.
//!
//! Publishers (the registry, the session actors, the registry handle) call
//! [`EventBus::publish`], which stamps the event and hands it to every live subscriber.
//! Events that belong in the audit trail (everything but output lines) get the next `seq`;
//! the stamp and the broadcast happen under one lock, so subscribers see `seq` strictly
//! increasing. A subscriber that falls behind is told it lagged; it never slows a publisher.
//!
//! A bus opened on storage ([`EventBus::open`]) also keeps the audit trail: under the same
//! lock, every numbered event goes to an unbounded queue (never lossy, never waited on) that
//! one task writes to the `events` table in batches, one transaction each, with the bus's
//! own `seq`. The bus continues from the stored `latest_seq`, so a seq is never given twice,
//! even across restarts and prunes. [`EventBus::read`] waits until everything published so
//! far is stored before reading, so a reader never sees a gap between the log and the live
//! stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::agent::AgentEvent;
use crate::storage::{NewEvent, Storage, StorageError, StoredEvent};

use super::model::now;
use super::registry::SessionEvent;

/// Events a live subscriber may fall behind by before it is told it lagged.
const LIVE_CAPACITY: usize = 4096;
/// Most events written in one transaction.
const MAX_BATCH: usize = 512;
/// How often events past their retention are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts at storing one batch before it is given up (with an error in the log).
const WRITE_ATTEMPTS: u32 = 10;
/// Wait before the first retry of a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts at a batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

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

/// Turns a numbered event into the row the log keeps (its kind, session and data as JSON).
/// The bus knows no wire shapes; whoever opens it (the server, with the API's mapping) says
/// how an event is written down, so the log and the live stream speak the same language.
pub type Encoder = fn(&Published) -> NewEvent;

/// Why the log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The writer stopped (storage closed) before it stored what was published.
    #[error("the event log is closed")]
    Closed,
    /// Storage refused the read.
    #[error(transparent)]
    Storage(#[from] StorageError),
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
    /// the publisher wait, and prunes events older than `retention` now and every hour.
    /// Call [`EventBus::close`] before closing the storage.
    pub async fn open(
        storage: Storage,
        encode: Encoder,
        retention: Duration,
    ) -> Result<EventBus, StorageError> {
        let latest = storage.latest_seq().await?;
        let last_seq = u64::try_from(latest)
            .map_err(|_| StorageError::Corrupt(format!("negative event seq {latest}")))?;
        let (pending, queue) = mpsc::unbounded_channel();
        let (stored_tx, stored) = watch::channel(last_seq);
        let writer = tokio::spawn(write_log(queue, storage.clone(), encode, stored_tx));
        let pruner = tokio::spawn(prune_log(storage.clone(), retention));
        let log = Log {
            storage,
            stored,
            tasks: Mutex::new(Some((writer, pruner))),
        };
        Ok(EventBus::build(last_seq, Some(log), Some(pending)))
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
            }),
        }
    }

    /// Every event published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.inner.live.subscribe()
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
            }
        }
        // No subscriber is fine.
        let _ = self.inner.live.send(published.clone());
        published
    }

    /// Waits until every numbered event published before this call is stored. Immediate for
    /// a bus without a log.
    pub async fn flush(&self) -> Result<(), LogError> {
        let Some(log) = &self.inner.log else {
            return Ok(());
        };
        let target = self.last_seq();
        let mut stored = log.stored.clone();
        stored
            .wait_for(|&seq| seq >= target)
            .await
            .map(|_| ())
            .map_err(|_| LogError::Closed)
    }

    /// Up to `limit` stored events with a seq above `since`, oldest first, of one session
    /// or all; everything published before the call is stored first, so the answer joins
    /// the live stream without a gap. Empty for a bus without a log.
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
        self.flush().await?;
        // Seqs start at 1 and stay far below i64::MAX; a larger `since` finds nothing.
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        Ok(log
            .storage
            .events_since_within(since, session.map(|id| id.to_string()), limit, max_bytes)
            .await?)
    }

    /// Stops logging: events published from now on are only broadcast. Waits until every
    /// event published before is stored (or the writer gave up), and stops the pruner. For
    /// shutdown, before the storage closes; closing twice is harmless.
    pub async fn close(&self) {
        let Some(log) = &self.inner.log else {
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

/// The log's writer: takes what is queued (up to [`MAX_BATCH`] at a time), stores it in one
/// transaction, and announces the last seq stored. Ends once the queue is closed and empty.
async fn write_log(
    mut queue: mpsc::UnboundedReceiver<Arc<Published>>,
    storage: Storage,
    encode: Encoder,
    stored: watch::Sender<u64>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let rows: Arc<[StoredEvent]> = batch
            .drain(..)
            .filter_map(|published| row(&published, encode))
            .collect();
        let Some(last) = rows.last().map(|row| row.seq) else {
            continue;
        };
        if !store(&storage, rows).await {
            // Storage is closed: nothing queued can be stored any more. Waiters are told
            // by the dropped sender.
            let left = queue.len();
            tracing::error!(
                last_seq = last,
                left,
                "the event log closed with events unstored"
            );
            return;
        }
        stored.send_replace(u64::try_from(last).unwrap_or_default());
    }
}

fn row(published: &Published, encode: Encoder) -> Option<StoredEvent> {
    let seq = i64::try_from(published.seq?).ok()?;
    let NewEvent {
        kind,
        session_id,
        at,
        payload,
    } = encode(published);
    Some(StoredEvent {
        seq,
        at,
        kind,
        session_id,
        payload,
    })
}

/// Stores one batch, retrying a failure with backoff; a batch that keeps failing is given up
/// with an error in the log, so one bad batch cannot hold every later event back. False
/// when storage is closed.
async fn store(storage: &Storage, rows: Arc<[StoredEvent]>) -> bool {
    let mut delay = FIRST_RETRY_DELAY;
    for attempt in 1..=WRITE_ATTEMPTS {
        match storage.insert_events(rows.clone()).await {
            Ok(()) => return true,
            Err(StorageError::Closed) => return false,
            Err(error) if attempt == WRITE_ATTEMPTS => {
                let (first, last) = (rows[0].seq, rows[rows.len() - 1].seq);
                tracing::error!(%error, first, last, "events could not be stored; given up");
            }
            Err(error) => {
                tracing::warn!(%error, attempt, "storing events failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
    true
}

/// Deletes events older than `retention`, now and every [`PRUNE_EVERY`].
async fn prune_log(storage: Storage, retention: Duration) {
    let mut every = tokio::time::interval(PRUNE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match storage
            .prune_events_before(now() - retention.as_secs_f64())
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "events past their retention pruned"),
            Err(StorageError::Closed) => return,
            Err(error) => tracing::warn!(%error, "pruning the event log failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn purged(n: u128) -> SessionEvent {
        SessionEvent::Purged(Uuid::from_u128(n))
    }

    fn log_line() -> SessionEvent {
        SessionEvent::Agent {
            session: Uuid::nil(),
            event: AgentEvent::Log {
                agent: "a".into(),
                line: crate::agent::LogLine {
                    stream: crate::agent::Stream::Stdout,
                    line: "hello".into(),
                    timestamp: std::time::SystemTime::now(),
                },
            },
        }
    }

    /// A stand-in for the API's mapping: the purged session as session and data.
    fn encode(published: &Published) -> NewEvent {
        let session = match &published.event {
            SessionEvent::Purged(id) => Some(id.to_string()),
            _ => None,
        };
        NewEvent {
            kind: "test".into(),
            session_id: session.clone(),
            at: published.timestamp,
            payload: json!({ "session": session }),
        }
    }

    const WEEK: Duration = Duration::from_secs(7 * 86_400);

    async fn storage(dir: &tempfile::TempDir) -> Storage {
        Storage::open(&dir.path().join("events.db")).await.unwrap()
    }

    fn seqs(events: &[StoredEvent]) -> Vec<i64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn kept_events_are_numbered_in_order_and_log_lines_are_not() {
        let bus = EventBus::new(41);
        let mut rx = bus.subscribe();
        let first = bus.publish(purged(1));
        let log = bus.publish(log_line());
        let second = bus.publish(purged(2));
        assert_eq!((first.seq, log.seq, second.seq), (Some(42), None, Some(43)));
        assert_eq!(bus.last_seq(), 43);
        let seen: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().seq).collect();
        assert_eq!(seen, [Some(42), None, Some(43)]);
    }

    #[test]
    fn a_session_version_moves_with_its_events_and_touches_and_never_comes_back() {
        let bus = EventBus::new(0);
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let hook = |session| SessionEvent::Hook {
            session,
            name: "Stop".into(),
            payload: json!({}),
        };
        let mut seen = vec![bus.changes(a)];
        bus.publish(hook(a));
        seen.push(bus.changes(a));
        let b_before = bus.changes(b);
        bus.touch(a);
        seen.push(bus.changes(a));
        assert_eq!(bus.changes(b), b_before, "another session's change");
        let quiet = bus.changes(a);
        bus.publish(log_line());
        let mut line_of_a = log_line();
        if let SessionEvent::Agent { session, .. } = &mut line_of_a {
            *session = a;
        }
        bus.publish(line_of_a);
        assert_eq!(bus.changes(a), quiet, "output lines change nothing");
        bus.publish(purged(1));
        seen.push(bus.changes(a));
        bus.publish(hook(a));
        seen.push(bus.changes(a));
        let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(distinct.len(), seen.len(), "a version came back: {seen:?}");
        assert_ne!(
            bus.changes(b),
            b_before,
            "a purge moves the sessions never changed"
        );
    }

    #[tokio::test]
    async fn a_bus_without_a_log_reads_nothing_and_flushes_at_once() {
        let bus = EventBus::new(0);
        bus.publish(purged(1));
        bus.flush().await.unwrap();
        assert!(bus.read(0, None, 10).await.unwrap().is_empty());
        bus.close().await;
    }

    #[tokio::test]
    async fn every_numbered_event_is_stored_with_its_seq_and_read_back_without_a_gap() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let bus = EventBus::open(storage.clone(), encode, WEEK).await.unwrap();
        let mut published = Vec::new();
        for n in 0..2_000 {
            // Log lines take no seq and are not stored.
            if n % 10 == 0 {
                bus.publish(log_line());
            }
            published.push(bus.publish(purged(n)).seq.unwrap() as i64);
        }
        // Read at once, before the writer could have caught up on its own: nothing missing.
        let all = bus.read(0, None, 10_000).await.unwrap();
        assert_eq!(seqs(&all), published);
        assert_eq!(
            all[0].payload,
            json!({"session": Uuid::from_u128(0).to_string()})
        );
        let one = bus.read(0, Some(Uuid::from_u128(7)), 10).await.unwrap();
        assert_eq!(seqs(&one), [published[7]]);
        assert_eq!(
            seqs(&bus.read(1_990, None, 5).await.unwrap()),
            [1_991, 1_992, 1_993, 1_994, 1_995]
        );
        bus.close().await;
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_reopened_log_continues_after_the_last_seq_even_when_it_was_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let storage1 = storage(&dir).await;
        let bus = EventBus::open(storage1.clone(), encode, WEEK)
            .await
            .unwrap();
        for n in 0..5 {
            bus.publish(purged(n));
        }
        // Close flushes: nothing published before it is lost.
        bus.close().await;
        storage1.close().await.unwrap();

        let storage2 = storage(&dir).await;
        let bus = EventBus::open(storage2.clone(), encode, WEEK)
            .await
            .unwrap();
        assert_eq!(bus.last_seq(), 5);
        assert_eq!(
            seqs(&bus.read(0, None, 100).await.unwrap()),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(bus.publish(purged(9)).seq, Some(6));
        bus.close().await;
        // After close the bus still numbers and broadcasts, but stores nothing.
        let mut rx = bus.subscribe();
        assert_eq!(bus.publish(purged(10)).seq, Some(7));
        assert_eq!(rx.try_recv().unwrap().seq, Some(7));
        assert_eq!(
            seqs(&storage2.events_since(0, None, 100).await.unwrap()),
            [1, 2, 3, 4, 5, 6]
        );
        storage2.prune_events_before(f64::MAX).await.unwrap();
        storage2.close().await.unwrap();

        let storage3 = storage(&dir).await;
        let bus = EventBus::open(storage3.clone(), encode, WEEK)
            .await
            .unwrap();
        assert_eq!(
            bus.last_seq(),
            6,
            "a pruned log still remembers its last seq"
        );
        assert_eq!(bus.publish(purged(11)).seq, Some(7));
        bus.close().await;
        storage3.close().await.unwrap();
    }

    #[tokio::test]
    async fn events_past_their_retention_are_pruned_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let old = StoredEvent {
            seq: 3,
            at: now() - 10.0 * 86_400.0,
            kind: "old".into(),
            session_id: None,
            payload: json!(null),
        };
        let recent = StoredEvent {
            seq: 4,
            at: now() - 86_400.0,
            kind: "recent".into(),
            ..old.clone()
        };
        storage
            .insert_events(Arc::from([old, recent]))
            .await
            .unwrap();
        let bus = EventBus::open(storage.clone(), encode, WEEK).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let kinds: Vec<String> = bus
                .read(0, None, 10)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.kind)
                .collect();
            if kinds == ["recent"] {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still stored: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(bus.publish(purged(1)).seq, Some(5));
        bus.close().await;
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_storage_ends_the_writer_and_readers_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let bus = EventBus::open(storage.clone(), encode, WEEK).await.unwrap();
        storage.close().await.unwrap();
        bus.publish(purged(1));
        assert!(matches!(bus.read(0, None, 10).await, Err(LogError::Closed)));
        bus.close().await;
    }
}
