//! The log's tasks: the writer, which stores what the bus queues in batches (keeping a
//! bounded backlog and retrying while storage refuses), and the pruner.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::storage::{Storage, StorageError, StoredEvent};

use super::backlog::{Backlog, Pending};
use super::follow::{deliver, Followers};
use super::record::stored_row;
use super::{now, Encoder, EventBus, Inner, LogStatus, LostRange, Published, SessionEvent};

/// Most events written in one transaction.
pub(super) const MAX_BATCH: usize = 512;
/// How often events past their retention are pruned (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Attempts at storing a batch that fails for a reason of its own (not a storage fault)
/// before it is given up, with an `events_lost` marker. A storage fault is retried forever.
const WRITE_ATTEMPTS: u32 = 10;
/// Wait before the first retry of a failed batch; doubled up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between two attempts at a batch: how soon a recovered disk is noticed.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// How long the writer keeps retrying at shutdown before it gives up what is left.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// The log's writer task.
pub(super) struct Writer {
    storage: Storage,
    encode: Encoder,
    /// The highest seq stored or given up.
    stored: watch::Sender<u64>,
    status: watch::Sender<LogStatus>,
    backlog: Backlog,
    /// To publish the `events_lost` marker.
    bus: Weak<Inner>,
    /// Who is handed each event once it is stored.
    followers: Arc<Mutex<Followers>>,
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
    pub(super) fn new(
        storage: Storage,
        encode: Encoder,
        (stored, status): (watch::Sender<u64>, watch::Sender<LogStatus>),
        backlog: Backlog,
        (bus, followers): (Weak<Inner>, Arc<Mutex<Followers>>),
    ) -> Writer {
        Writer {
            storage,
            encode,
            stored,
            status,
            backlog,
            bus,
            followers,
        }
    }

    /// Takes what is queued, stores it in batches of up to [`MAX_BATCH`] (one transaction
    /// each), and announces the last seq stored; while storage refuses, keeps taking the
    /// queue into the bounded backlog and retries with backoff. Ends once the queue is
    /// closed and everything is stored, or (at shutdown) [`CLOSE_DEADLINE`] after the
    /// queue closed with storage still refusing.
    pub(super) async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Arc<Published>>) {
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
            let Some(row) = stored_row(&published, self.encode) else {
                continue;
            };
            let seq = row.seq;
            if !self.backlog.push(row, published) {
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
                let stored = self.backlog.pop_front(rows.len());
                // Before the stored seq moves: once a flush returns, its events are with
                // every follower, and a slow follower holds back what waits for storage.
                deliver(&self.followers, &stored).await;
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

/// Deletes events older than `retention`, now and every [`PRUNE_EVERY`].
pub(super) async fn prune_log(storage: Storage, retention: Duration) {
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
