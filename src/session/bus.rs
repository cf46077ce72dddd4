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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::agent::AgentEvent;
use crate::storage::{Fault, NewEvent, Storage, StorageError, StoredEvent};

use super::model::now;
use super::registry::SessionEvent;

/// Events a live subscriber may fall behind by before it is told it lagged.
const LIVE_CAPACITY: usize = 4096;
/// Most events written in one transaction.
const MAX_BATCH: usize = 512;
/// How often events past their retention are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts at storing a batch that fails for a reason of its own (not a storage fault)
/// before it is given up, with an `events_lost` marker. A storage fault is retried forever.
const WRITE_ATTEMPTS: u32 = 10;
/// Wait before the first retry of a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts at a batch: how soon a recovered disk is noticed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long a read waits for the events published before it to be stored; past it, the
/// read fails instead of hanging (storage too slow to answer, but not known to fail).
const FLUSH_DEADLINE: Duration = Duration::from_secs(5);
/// How long the writer keeps retrying at shutdown before it gives up what is left.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// What the backlog counts for an event besides its JSON data (kind, times, row).
const ROW_OVERHEAD_BYTES: u64 = 128;
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

/// Turns a numbered event into the row the log keeps (its kind, session and data as JSON).
/// The bus knows no wire shapes; whoever opens it (the server, with the API's mapping) says
/// how an event is written down, so the log and the live stream speak the same language.
pub type Encoder = fn(&Published) -> NewEvent;

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
        let writer = Writer {
            storage,
            encode,
            stored: stored_tx,
            status: status_tx,
            backlog: Backlog::new(backlog_max_bytes),
            // Weak: the writer must not keep the bus alive; it ends when the queue closes.
            bus: Arc::downgrade(&bus.inner),
        };
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

/// One entry of the writer's backlog, in seq order.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    /// An event to store; `bytes` is what it counts against the bound.
    Row { row: StoredEvent, bytes: u64 },
    /// Seqs given up while the backlog was full; its marker is published once every event
    /// before them is stored, so the marker's seq comes after every seq it names.
    Lost { first: i64, last: i64 },
}

/// What the writer has not stored yet: in seq order, at most `max_bytes` of events (a
/// range of lost seqs costs nothing). An event that does not fit is given up (joined to
/// the lost range at the back, or opening one). Once one was given up, events are given
/// up until the backlog is down to half its bound, so an outage leaves one long gap rather
/// than many short ones (each with its own marker); the next event kept closes the range.
#[derive(Debug)]
struct Backlog {
    entries: VecDeque<Pending>,
    bytes: u64,
    max_bytes: u64,
    /// An event was given up and the backlog has not come down to half its bound since.
    overflowing: bool,
}

impl Backlog {
    fn new(max_bytes: u64) -> Backlog {
        Backlog {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            overflowing: false,
        }
    }

    /// Adds `row`, or gives it up when it does not fit; true when it was kept. A marker
    /// (`events_lost`) is always kept: the news that events were lost is never lost itself.
    fn push(&mut self, row: StoredEvent) -> bool {
        let bytes = row_bytes(&row);
        let limit = if self.overflowing {
            self.max_bytes / 2
        } else {
            self.max_bytes
        };
        let fits = self.bytes + bytes <= limit || row.kind == EVENTS_LOST;
        if fits {
            if row.kind != EVENTS_LOST {
                self.overflowing = false;
            }
            self.bytes += bytes;
            self.entries.push_back(Pending::Row { row, bytes });
            return true;
        }
        self.overflowing = true;
        match self.entries.back_mut() {
            Some(Pending::Lost { last, .. }) if *last + 1 == row.seq => *last = row.seq,
            _ => self.entries.push_back(Pending::Lost {
                first: row.seq,
                last: row.seq,
            }),
        }
        false
    }

    /// The rows at the front, up to `most`, stopping at a lost range.
    fn front_rows(&self, most: usize) -> Vec<StoredEvent> {
        self.entries
            .iter()
            .take(most)
            .map_while(|entry| match entry {
                Pending::Row { row, .. } => Some(row.clone()),
                Pending::Lost { .. } => None,
            })
            .collect()
    }

    /// Removes the first `count` entries (rows that were stored, or given up).
    fn pop_front(&mut self, count: usize) {
        for entry in self.entries.drain(..count.min(self.entries.len())) {
            if let Pending::Row { bytes, .. } = entry {
                self.bytes -= bytes;
            }
        }
    }

    /// The lost range at the front, removed, if the front is one.
    fn pop_lost(&mut self) -> Option<(i64, i64)> {
        match self.entries.front() {
            Some(&Pending::Lost { first, last }) => {
                self.entries.pop_front();
                Some((first, last))
            }
            _ => None,
        }
    }

    /// Events waiting (lost ranges not counted).
    fn len(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| matches!(entry, Pending::Row { .. }))
            .count()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The `kind` of the marker event, as the API's encoder writes it.
const EVENTS_LOST: &str = "events_lost";

/// What an event costs in the backlog: its data as JSON text plus a fixed overhead.
fn row_bytes(row: &StoredEvent) -> u64 {
    let mut counter = ByteCounter(0);
    // Writing to a counter cannot fail; a payload that cannot be serialized is refused
    // by the insert anyway, and costs only the overhead meanwhile.
    let _ = serde_json::to_writer(&mut counter, &row.payload);
    counter.0 + row.kind.len() as u64 + ROW_OVERHEAD_BYTES
}

/// Counts the bytes written to it.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log's writer task.
struct Writer {
    storage: Storage,
    encode: Encoder,
    /// The highest seq stored or given up.
    stored: watch::Sender<u64>,
    status: watch::Sender<LogStatus>,
    backlog: Backlog,
    /// To publish the `events_lost` marker.
    bus: Weak<Inner>,
}

/// How one attempt at the front of the backlog went.
enum Attempt {
    /// Stored (or nothing to store).
    Stored,
    /// Failed; retry after a wait.
    Failed,
    /// Storage is closed: nothing can be stored any more.
    Closed,
}

impl Writer {
    /// Takes what is queued, stores it in batches of up to [`MAX_BATCH`] (one transaction
    /// each), and announces the last seq stored; while storage refuses, keeps taking the
    /// queue into the bounded backlog and retries with backoff. Ends once the queue is
    /// closed and everything is stored, or (at shutdown) [`CLOSE_DEADLINE`] after the
    /// queue closed with storage still refusing.
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Arc<Published>>) {
        let mut delay = FIRST_RETRY_DELAY;
        let mut attempts = 0;
        let mut closed_at: Option<tokio::time::Instant> = None;
        let mut incoming = Vec::with_capacity(MAX_BATCH);
        loop {
            if self.backlog.is_empty() {
                if closed_at.is_some() || queue.recv_many(&mut incoming, MAX_BATCH).await == 0 {
                    return;
                }
                self.take(&mut incoming);
            }
            match self.attempt().await {
                Attempt::Stored => {
                    delay = FIRST_RETRY_DELAY;
                    attempts = 0;
                }
                Attempt::Closed => {
                    self.give_up_all(queue.len(), "the event log closed with events unstored");
                    return;
                }
                Attempt::Failed => {
                    attempts += 1;
                    if attempts >= WRITE_ATTEMPTS && self.status.borrow().failing.is_none() {
                        // Not the storage: this batch itself is refused. Give it up, said.
                        self.give_up_front();
                        attempts = 0;
                        continue;
                    }
                    if closed_at.is_some_and(|at| at.elapsed() >= CLOSE_DEADLINE) {
                        self.give_up_all(0, "events could not be stored before shutdown");
                        return;
                    }
                    // Meanwhile the queue keeps coming into the (bounded) backlog.
                    let wait = tokio::time::sleep(delay);
                    tokio::pin!(wait);
                    loop {
                        tokio::select! {
                            () = &mut wait => break,
                            taken = queue.recv_many(&mut incoming, MAX_BATCH), if closed_at.is_none() => {
                                if taken == 0 {
                                    closed_at = Some(tokio::time::Instant::now());
                                } else {
                                    self.take(&mut incoming);
                                }
                            }
                        }
                    }
                    delay = (delay * 2).min(MAX_RETRY_DELAY);
                }
            }
            // Published while this round ran: behind what is already waiting.
            while let Ok(published) = queue.try_recv() {
                incoming.push(published);
                if incoming.len() == MAX_BATCH {
                    self.take(&mut incoming);
                }
            }
            self.take(&mut incoming);
        }
    }

    /// Moves published events into the backlog, encoded.
    fn take(&mut self, incoming: &mut Vec<Arc<Published>>) {
        for published in incoming.drain(..) {
            let Some(row) = row(&published, self.encode) else {
                continue;
            };
            let seq = row.seq;
            if !self.backlog.push(row) {
                self.note_lost(seq, seq);
            }
        }
        self.report();
    }

    /// Stores the rows at the front of the backlog (or publishes the marker of the lost
    /// range there).
    async fn attempt(&mut self) -> Attempt {
        if let Some((first, last)) = self.backlog.pop_lost() {
            self.announce_lost(first, last);
            self.advance(last);
            self.report();
            return Attempt::Stored;
        }
        let rows: Arc<[StoredEvent]> = self.backlog.front_rows(MAX_BATCH).into();
        let Some(last) = rows.last().map(|row| row.seq) else {
            return Attempt::Stored;
        };
        match self.storage.insert_events(rows.clone()).await {
            Ok(()) => {
                self.backlog.pop_front(rows.len());
                self.advance(last);
                if self.status.borrow().failing.is_some() {
                    tracing::info!(last_seq = last, "the event log is stored again");
                }
                self.status.send_modify(|status| status.failing = None);
                self.report();
                Attempt::Stored
            }
            Err(StorageError::Closed) => Attempt::Closed,
            Err(error) => {
                let fault = error.fault();
                let was = self.status.borrow().failing.map(|(fault, _)| fault);
                if was != fault {
                    match fault {
                        Some(_) => {
                            tracing::error!(%error, first = rows[0].seq, "storing events failed; keeping them until storage recovers");
                        }
                        None => tracing::warn!(%error, "storing events failed; retrying"),
                    }
                    self.status.send_modify(|status| {
                        status.failing = fault.map(|fault| (fault, now()));
                    });
                }
                self.report();
                Attempt::Failed
            }
        }
    }

    /// The front batch keeps failing for a reason of its own: given up, with a marker.
    fn give_up_front(&mut self) {
        let rows = self.backlog.front_rows(MAX_BATCH);
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        let (first, last) = (first.seq, last.seq);
        tracing::error!(first, last, "events could not be stored; given up");
        self.backlog.pop_front(rows.len());
        self.note_lost(first, last);
        self.announce_lost(first, last);
        self.advance(last);
        self.report();
    }

    /// Storage is gone for good (shutdown): what is left is lost; said in the log, since
    /// nothing can be stored any more.
    fn give_up_all(&mut self, queued: usize, why: &str) {
        let seqs: Vec<i64> = self
            .backlog
            .entries
            .iter()
            .flat_map(|entry| match entry {
                Pending::Row { row, .. } => [row.seq, row.seq],
                Pending::Lost { first, last } => [*first, *last],
            })
            .collect();
        if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
            tracing::error!(first, last, queued, "{why}");
        } else if queued > 0 {
            tracing::error!(queued, "{why}");
        }
    }

    /// Counts given-up seqs (`first..=last`) for `/health`.
    fn note_lost(&mut self, first: i64, last: i64) {
        let first = u64::try_from(first).unwrap_or_default();
        let last = u64::try_from(last).unwrap_or_default();
        self.status.send_modify(|status| {
            status.lost += last - first + 1;
            let at = now();
            status.last_lost = Some(match status.last_lost {
                // Contiguous with the last range: the same gap, grown.
                Some(range) if range.last + 1 == first => LostRange {
                    first: range.first,
                    last,
                    at,
                },
                _ => LostRange { first, last, at },
            });
        });
    }

    /// Publishes the numbered marker of a lost range.
    fn announce_lost(&self, first: i64, last: i64) {
        let (first, last) = (
            u64::try_from(first).unwrap_or_default(),
            u64::try_from(last).unwrap_or_default(),
        );
        tracing::error!(first, last, "events were given up; announcing the gap");
        if let Some(inner) = self.bus.upgrade() {
            EventBus { inner }.publish(SessionEvent::EventsLost { first, last });
        }
    }

    fn advance(&self, last: i64) {
        self.stored
            .send_replace(u64::try_from(last).unwrap_or_default());
    }

    fn report(&self) {
        let (backlog, bytes) = (self.backlog.len(), self.backlog.bytes);
        self.status.send_if_modified(|status| {
            let changed = status.backlog != backlog || status.backlog_bytes != bytes;
            status.backlog = backlog;
            status.backlog_bytes = bytes;
            changed
        });
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
        let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
            .await
            .unwrap();
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
        let bus = EventBus::open(storage1.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
            .await
            .unwrap();
        for n in 0..5 {
            bus.publish(purged(n));
        }
        // Close flushes: nothing published before it is lost.
        bus.close().await;
        storage1.close().await.unwrap();

        let storage2 = storage(&dir).await;
        let bus = EventBus::open(storage2.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
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
        let bus = EventBus::open(storage3.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
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
        let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
            .await
            .unwrap();
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

    fn row(seq: i64, kind: &str, pad: usize) -> StoredEvent {
        StoredEvent {
            seq,
            at: 1.0,
            kind: kind.into(),
            session_id: None,
            payload: json!({ "pad": "x".repeat(pad) }),
        }
    }

    #[test]
    fn the_backlog_keeps_events_in_order_within_its_bound_and_names_the_gap() {
        let one = row_bytes(&row(1, "test", 100));
        let mut backlog = Backlog::new(4 * one);
        for seq in 1..=4 {
            assert!(backlog.push(row(seq, "test", 100)));
        }
        assert_eq!(backlog.bytes, 4 * one);
        // Full: 5 and 6 are given up as one range; the marker is kept beyond the bound.
        assert!(!backlog.push(row(5, "test", 100)));
        assert!(!backlog.push(row(6, "test", 100)));
        assert!(backlog.push(row(7, EVENTS_LOST, 10)));
        assert_eq!(backlog.len(), 5);
        assert_eq!(
            seqs(&backlog.front_rows(10)),
            [1, 2, 3, 4],
            "a batch stops at the gap"
        );
        let marker = row_bytes(&row(7, EVENTS_LOST, 10));
        backlog.pop_front(3);
        assert_eq!(backlog.bytes, one + marker);
        // Room, but not down to half the bound: still given up, the same gap grows.
        assert!(!backlog.push(row(8, "test", 100)));
        backlog.pop_front(1);
        assert_eq!(backlog.pop_lost(), Some((5, 6)));
        assert_eq!(seqs(&backlog.front_rows(10)), [7]);
        backlog.pop_front(1);
        // Down to half: kept again, behind the gap of 8 (which it closes).
        assert!(backlog.push(row(9, "test", 100)));
        assert_eq!(backlog.pop_lost(), Some((8, 8)));
        assert_eq!(seqs(&backlog.front_rows(10)), [9]);
        backlog.pop_front(1);
        assert!(backlog.is_empty());
        assert_eq!(backlog.bytes, 0);
    }

    /// An encoder whose events weigh about `PAD` bytes, and that names the gap marker as the
    /// API does.
    fn heavy(published: &Published) -> NewEvent {
        const PAD: usize = 2_000;
        let kind = match published.event {
            SessionEvent::EventsLost { .. } => EVENTS_LOST,
            _ => "test",
        };
        let payload = match published.event {
            SessionEvent::EventsLost { first, last } => json!({ "first": first, "last": last }),
            _ => json!({ "pad": "x".repeat(PAD) }),
        };
        NewEvent {
            kind: kind.into(),
            session_id: None,
            at: published.timestamp,
            payload,
        }
    }

    /// Makes the database full for real (SQLite's own `SQLITE_FULL`), or lets it grow again.
    async fn cap_pages(storage: &Storage, full: bool) {
        storage
            .call(move |conn| {
                let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
                let cap = if full { pages } else { 1 << 30 };
                conn.query_row(&format!("PRAGMA max_page_count = {cap}"), [], |_| Ok(()))?;
                Ok(())
            })
            .await
            .unwrap();
    }

    async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn events_storage_refuses_wait_in_order_and_a_marker_names_those_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let bound = 20 * 2_200;
        let bus = EventBus::open(storage.clone(), heavy, WEEK, bound)
            .await
            .unwrap();
        let mut live = bus.subscribe();
        bus.publish(purged(0));
        bus.flush().await.unwrap();
        cap_pages(&storage, true).await;

        for n in 1..=5 {
            bus.publish(purged(n));
        }
        wait_until("the log reports the full disk", || {
            bus.log_status().unwrap().failing.is_some()
        })
        .await;
        let started = tokio::time::Instant::now();
        assert!(matches!(
            bus.read(0, None, 100).await,
            Err(LogError::Failing(Fault::Full))
        ));
        assert!(started.elapsed() < FLUSH_DEADLINE, "a read is told at once");
        assert!(matches!(
            bus.publish_stored(purged(99)).await,
            Err(LogError::Failing(Fault::Full))
        ));
        // Past the bound: some are given up, and /health's status counts them.
        for n in 6..=40 {
            bus.publish(purged(n));
        }
        wait_until("events are given up", || bus.log_status().unwrap().lost > 0).await;
        let status = bus.log_status().unwrap();
        assert!(status.backlog_bytes <= bound, "{status:?}");
        let lost = status.last_lost.unwrap();
        assert_eq!(lost.last, 41, "{status:?}");
        assert_eq!(status.lost, lost.last - lost.first + 1);

        cap_pages(&storage, false).await;
        wait_until("the backlog is stored", || {
            let status = bus.log_status().unwrap();
            status.failing.is_none() && status.backlog == 0
        })
        .await;
        let marker_seq = 42;
        bus.flush().await.unwrap();
        let all = bus.read(0, None, 1_000).await.unwrap();
        let expected: Vec<i64> = (1..i64::try_from(lost.first).unwrap())
            .chain([marker_seq])
            .collect();
        assert_eq!(
            seqs(&all),
            expected,
            "every event kept, in order, then the marker"
        );
        let marker = all.last().unwrap();
        assert_eq!(marker.kind, EVENTS_LOST);
        assert_eq!(
            marker.payload,
            json!({ "first": lost.first, "last": lost.last })
        );
        let mut saw_marker = false;
        while let Ok(published) = live.try_recv() {
            if let SessionEvent::EventsLost { first, last } = published.event {
                assert_eq!((first, last), (lost.first, lost.last));
                assert_eq!(published.seq, Some(42));
                saw_marker = true;
            }
        }
        assert!(saw_marker, "live subscribers are told too");
        bus.close().await;
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_backlog_within_its_bound_is_stored_whole_once_storage_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let bus = EventBus::open(storage.clone(), heavy, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
            .await
            .unwrap();
        cap_pages(&storage, true).await;
        for n in 1..=300 {
            bus.publish(purged(n));
        }
        wait_until("the log reports the full disk", || {
            bus.log_status().unwrap().failing.is_some()
        })
        .await;
        cap_pages(&storage, false).await;
        wait_until("the backlog is stored", || {
            bus.log_status().unwrap().backlog == 0
        })
        .await;
        let all = bus.read(0, None, 1_000).await.unwrap();
        assert_eq!(seqs(&all), (1..=300).collect::<Vec<i64>>());
        let status = bus.log_status().unwrap();
        assert_eq!((status.lost, status.failing), (0, None));
        bus.close().await;
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_storage_ends_the_writer_and_readers_are_told() {
        let dir = tempfile::tempdir().unwrap();
        let storage = storage(&dir).await;
        let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
            .await
            .unwrap();
        storage.close().await.unwrap();
        bus.publish(purged(1));
        assert!(matches!(bus.read(0, None, 10).await, Err(LogError::Closed)));
        bus.close().await;
    }
}
