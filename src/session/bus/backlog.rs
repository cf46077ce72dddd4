//! What the log's writer holds while storage refuses its writes: events in seq order,
//! bounded in bytes, and the ranges of seqs given up past the bound.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::storage::StoredEvent;

use super::record::EVENTS_LOST;
use super::Published;

/// What the backlog counts for an event besides its JSON data (kind, times, row).
const ROW_OVERHEAD_BYTES: u64 = 128;

/// One entry of the writer's backlog, in seq order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Pending {
    /// An event to store, as stored and as published (for the followers, once stored);
    /// `bytes` is what it counts against the bound.
    Row {
        row: StoredEvent,
        published: Arc<Published>,
        bytes: u64,
    },
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
pub(super) struct Backlog {
    pub(super) entries: VecDeque<Pending>,
    pub(super) bytes: u64,
    max_bytes: u64,
    /// An event was given up and the backlog has not come down to half its bound since.
    overflowing: bool,
}

impl Backlog {
    pub(super) fn new(max_bytes: u64) -> Backlog {
        Backlog {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            overflowing: false,
        }
    }

    /// Adds `row`, or gives it up when it does not fit; true when it was kept. A marker
    /// (`events_lost`) is always kept: the news that events were lost is never lost itself.
    pub(super) fn push(&mut self, row: StoredEvent, published: Arc<Published>) -> bool {
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
            self.entries.push_back(Pending::Row {
                row,
                published,
                bytes,
            });
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
    pub(super) fn front_rows(&self, most: usize) -> Vec<StoredEvent> {
        self.entries
            .iter()
            .take(most)
            .map_while(|entry| match entry {
                Pending::Row { row, .. } => Some(row.clone()),
                Pending::Lost { .. } => None,
            })
            .collect()
    }

    /// Removes the first `count` entries (rows that were stored, or given up); returns
    /// their events as published.
    pub(super) fn pop_front(&mut self, count: usize) -> Vec<Arc<Published>> {
        let mut removed = Vec::with_capacity(count);
        for entry in self.entries.drain(..count.min(self.entries.len())) {
            if let Pending::Row {
                bytes, published, ..
            } = entry
            {
                self.bytes -= bytes;
                removed.push(published);
            }
        }
        removed
    }

    /// The lost range at the front, removed, if the front is one.
    pub(super) fn pop_lost(&mut self) -> Option<(i64, i64)> {
        match self.entries.front() {
            Some(&Pending::Lost { first, last }) => {
                self.entries.pop_front();
                Some((first, last))
            }
            _ => None,
        }
    }

    /// Events waiting (lost ranges not counted).
    pub(super) fn len(&self) -> usize {
        self.entries
            .iter()
            .filter(|entry| matches!(entry, Pending::Row { .. }))
            .count()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What an event costs in the backlog: its data as JSON text plus a fixed overhead.
pub(super) fn row_bytes(row: &StoredEvent) -> u64 {
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
