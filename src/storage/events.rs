//! The event log: an append-only audit trail of lifecycle, agent-state and alert events.
//!
//! Its `seq` is what WebSocket and HTTP clients resume from (`since`), so it is strictly
//! increasing and never reused, even after old events are pruned.

use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

use super::{Storage, StorageError};

/// An event to append; the log assigns its `seq`.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened, e.g. `session_created` or `agent_status`; replay filters on it.
    pub kind: String,
    /// The session it belongs to, `None` for server-wide events, so one session's history can
    /// be replayed alone.
    pub session_id: Option<String>,
    /// When it happened, in Unix seconds, chosen by the caller so the stored time is the
    /// event's, not the time the writer got round to it.
    pub at: f64,
    /// The event's data, kept as JSON text because its shape varies with `kind`.
    pub payload: Value,
}

/// An event as stored, with the `seq` that orders it among all others.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Position in the log: strictly increasing, never reused; clients resume after it.
    pub seq: i64,
    /// When it happened, in Unix seconds.
    pub at: f64,
    /// What happened.
    pub kind: String,
    /// The session it belongs to, if any.
    pub session_id: Option<String>,
    /// The event's data.
    pub payload: Value,
}

impl Storage {
    /// Appends `event` and returns it with its `seq`. When this returns `Ok`, the event is
    /// committed and synced to disk, so it is safe to publish it to live listeners.
    pub async fn append_event(&self, event: NewEvent) -> Result<StoredEvent, StorageError> {
        self.grouped(move |conn| append(conn, event)).await
    }

    /// Stores events whose `seq` the caller already assigned (the event bus numbers events
    /// as it publishes them), in one transaction: all of them or none. A `seq` already in the
    /// log is refused. The slice is shared so that a caller can retry the same batch.
    pub async fn insert_events(&self, events: Arc<[StoredEvent]>) -> Result<(), StorageError> {
        self.grouped(move |conn| insert(conn, &events)).await
    }

    /// Returns up to `limit` events with a seq above `since_seq`, oldest first, optionally of
    /// one session only: the page a reconnecting client needs to catch up.
    pub async fn events_since(
        &self,
        since_seq: i64,
        session_id: Option<String>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        self.events_since_within(since_seq, session_id, limit, usize::MAX)
            .await
    }

    /// As [`Storage::events_since`], but the page also stops once its payloads reach
    /// `max_bytes` (it always holds at least one event when there is one): a reader paging
    /// through large events holds a page of bounded size, not `limit` of them.
    pub async fn events_since_within(
        &self,
        since_seq: i64,
        session_id: Option<String>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, StorageError> {
        self.grouped(move |conn| {
            since_within(conn, since_seq, session_id.as_deref(), limit, max_bytes)
        })
        .await
    }

    /// Deletes the events that happened before `at` (Unix seconds), for retention; returns how
    /// many went. Their seqs are not handed out again.
    pub async fn prune_events_before(&self, at: f64) -> Result<usize, StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(move |conn| prune_before(conn, at)).await
    }

    /// The seq of the last event ever appended (0 if none), even if it was pruned since:
    /// where a new live subscriber starts.
    pub async fn latest_seq(&self) -> Result<i64, StorageError> {
        self.grouped(|conn| latest_seq(conn)).await
    }
}

fn append(conn: &Connection, event: NewEvent) -> Result<StoredEvent, StorageError> {
    check(event.at, &event.kind)?;
    let payload = serde_json::to_string(&event.payload)?;
    // Committed with its group (the writer answers only once the COMMIT returned, which is
    // what makes the acknowledgement durable). Not `INSERT … RETURNING` read with
    // `query_row`: run alone, its commit would happen when the statement is reset on drop,
    // and rusqlite drops a failed commit's error.
    conn.prepare_cached(
        "INSERT INTO events (at, kind, session_id, payload) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![event.at, event.kind, event.session_id, payload])?;
    let seq = conn.last_insert_rowid();
    Ok(StoredEvent {
        seq,
        at: event.at,
        kind: event.kind,
        session_id: event.session_id,
        payload: event.payload,
    })
}

fn insert(conn: &mut Connection, events: &[StoredEvent]) -> Result<(), StorageError> {
    let tx = conn.savepoint()?;
    {
        let mut statement = tx.prepare_cached(
            "INSERT INTO events (seq, at, kind, session_id, payload) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for event in events {
            check(event.at, &event.kind)?;
            let payload = serde_json::to_string(&event.payload)?;
            // An explicit seq above the AUTOINCREMENT counter raises it, so `latest_seq`
            // follows the bus's numbering across restarts and prunes.
            statement.execute(params![
                event.seq,
                event.at,
                event.kind,
                event.session_id,
                payload
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn check(at: f64, kind: &str) -> Result<(), StorageError> {
    if !at.is_finite() {
        return Err(StorageError::InvalidData(format!(
            "event time must be a finite number of seconds, got {at}"
        )));
    }
    if kind.is_empty() {
        return Err(StorageError::InvalidData("event kind is empty".to_owned()));
    }
    Ok(())
}

/// A row as SQLite returns it, before its payload is parsed (which can fail in a way a
/// `rusqlite` row mapper cannot report).
type RawEvent = (i64, f64, String, Option<String>, String);

/// Unbounded in bytes; what the tests read with.
#[cfg(test)]
fn since(
    conn: &Connection,
    since_seq: i64,
    session_id: Option<&str>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StorageError> {
    since_within(conn, since_seq, session_id, limit, usize::MAX)
}

/// Up to `limit` events after `since_seq`, stopping once their payloads reach `max_bytes`.
fn since_within(
    conn: &Connection,
    since_seq: i64,
    session_id: Option<&str>,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<StoredEvent>, StorageError> {
    // SQLite's LIMIT takes an i64; more rows than that cannot exist anyway.
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let read = |row: &rusqlite::Row<'_>| -> rusqlite::Result<RawEvent> {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
        ))
    };
    // Two statements rather than `(?2 IS NULL OR session_id = ?2)`, so the planner can use the
    // (session_id, seq) index when a session is given.
    let raw: Vec<RawEvent> = match session_id {
        None => conn
            .prepare_cached(
                "SELECT seq, at, kind, session_id, payload FROM events
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?
            .query_map(params![since_seq, limit], read)?
            .scan(0, within(max_bytes))
            .collect::<Result<_, _>>()?,
        Some(session_id) => conn
            .prepare_cached(
                "SELECT seq, at, kind, session_id, payload FROM events
                 WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?
            .query_map(params![session_id, since_seq, limit], read)?
            .scan(0, within(max_bytes))
            .collect::<Result<_, _>>()?,
    };
    raw.into_iter()
        .map(|(seq, at, kind, session_id, payload)| {
            Ok(StoredEvent {
                seq,
                at,
                kind,
                session_id,
                payload: serde_json::from_str(&payload)?,
            })
        })
        .collect()
}

/// A `scan` step that passes rows until their payloads have reached `max_bytes` (the row
/// that reaches it included); rows are read lazily, so the rest are never fetched.
fn within(
    max_bytes: usize,
) -> impl FnMut(&mut usize, rusqlite::Result<RawEvent>) -> Option<rusqlite::Result<RawEvent>> {
    move |read, row| {
        if *read >= max_bytes {
            return None;
        }
        if let Ok(raw) = &row {
            *read = read.saturating_add(raw.4.len());
        }
        Some(row)
    }
}

fn prune_before(conn: &Connection, at: f64) -> Result<usize, StorageError> {
    if at.is_nan() {
        return Err(StorageError::InvalidData(
            "prune time must be a number".to_owned(),
        ));
    }
    Ok(conn
        .prepare_cached("DELETE FROM events WHERE at < ?1")?
        .execute(params![at])?)
}

fn latest_seq(conn: &Connection) -> Result<i64, StorageError> {
    // AUTOINCREMENT keeps the highest seq ever assigned in sqlite_sequence, which survives the
    // deletion of the events themselves; MAX(seq) would go back after a prune.
    Ok(conn
        .prepare_cached("SELECT seq FROM sqlite_sequence WHERE name = 'events'")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::storage::migrations;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    fn event(kind: &str, session_id: Option<&str>, at: f64) -> NewEvent {
        NewEvent {
            kind: kind.to_owned(),
            session_id: session_id.map(str::to_owned),
            at,
            payload: json!({"kind": kind, "at": at}),
        }
    }

    #[test]
    fn append_returns_the_stored_event_with_increasing_seqs() {
        let conn = db();
        let first = append(&conn, event("a", Some("s1"), 1.5)).unwrap();
        let second = append(&conn, event("b", None, 2.5)).unwrap();
        assert!(second.seq > first.seq);
        assert_eq!(first.kind, "a");
        assert_eq!(first.session_id.as_deref(), Some("s1"));
        assert_eq!(first.payload, json!({"kind": "a", "at": 1.5}));
        assert_eq!(
            since(&conn, 0, None, 10).unwrap(),
            vec![first.clone(), second]
        );
        assert_eq!(since(&conn, first.seq, None, 10).unwrap().len(), 1);
    }

    #[test]
    fn since_filters_by_session_and_limit_in_seq_order() {
        let conn = db();
        let mut s1 = Vec::new();
        for i in 0..6 {
            let session = if i % 2 == 0 { "s1" } else { "s2" };
            let stored = append(&conn, event("e", Some(session), f64::from(i))).unwrap();
            if session == "s1" {
                s1.push(stored.seq);
            }
        }
        append(&conn, event("global", None, 9.0)).unwrap();

        let got: Vec<i64> = since(&conn, 0, Some("s1"), 100)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(got, s1);
        let page: Vec<i64> = since(&conn, s1[0], Some("s1"), 1)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(page, vec![s1[1]]);
        assert_eq!(since(&conn, 0, None, 3).unwrap().len(), 3);
        assert!(since(&conn, 0, None, 0).unwrap().is_empty());
        assert_eq!(since(&conn, 0, None, usize::MAX).unwrap().len(), 7);
    }

    #[test]
    fn a_page_stops_once_its_payloads_reach_the_byte_bound() {
        let conn = db();
        let big = |n: usize| NewEvent {
            payload: json!("x".repeat(n)),
            ..event("big", None, 1.0)
        };
        // Payloads are stored as JSON text: 1,002, 10 and 1,002 bytes.
        let seqs: Vec<i64> = [1000, 8, 1000]
            .into_iter()
            .map(|n| append(&conn, big(n)).unwrap().seq)
            .collect();
        let page = |after, max_bytes| -> Vec<i64> {
            since_within(&conn, after, None, 10, max_bytes)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(page(0, 1), vec![seqs[0]], "the first event always comes");
        assert_eq!(page(0, 1002), vec![seqs[0]]);
        assert_eq!(
            page(0, 1003),
            seqs[..2],
            "the event reaching the bound comes too"
        );
        assert_eq!(page(0, 1013), seqs);
        assert_eq!(page(seqs[0], 5), vec![seqs[1]]);
        assert_eq!(page(0, usize::MAX), seqs);
        assert!(page(seqs[2], 1).is_empty());
    }

    #[test]
    fn pruned_seqs_are_never_reused() {
        let conn = db();
        append(&conn, event("old", None, 10.0)).unwrap();
        let last_old = append(&conn, event("old", None, 11.0)).unwrap();
        assert_eq!(prune_before(&conn, 100.0).unwrap(), 2);
        assert_eq!(latest_seq(&conn).unwrap(), last_old.seq);
        let fresh = append(&conn, event("new", None, 200.0)).unwrap();
        assert!(fresh.seq > last_old.seq);
    }

    #[test]
    fn prune_keeps_events_at_or_after_the_cut() {
        let conn = db();
        append(&conn, event("old", None, 10.0)).unwrap();
        let kept = append(&conn, event("edge", None, 20.0)).unwrap();
        assert_eq!(prune_before(&conn, 20.0).unwrap(), 1);
        assert_eq!(since(&conn, 0, None, 10).unwrap(), vec![kept]);
    }

    fn numbered(seq: i64, kind: &str, at: f64) -> StoredEvent {
        StoredEvent {
            seq,
            at,
            kind: kind.to_owned(),
            session_id: None,
            payload: json!({"n": seq}),
        }
    }

    #[test]
    fn inserted_events_keep_their_seq_and_raise_the_counter() {
        let mut conn = db();
        let batch = [numbered(5, "a", 1.0), numbered(6, "b", 2.0)];
        insert(&mut conn, &batch).unwrap();
        assert_eq!(since(&conn, 0, None, 10).unwrap(), batch.to_vec());
        assert_eq!(latest_seq(&conn).unwrap(), 6);
        // Pruned away, the numbering still goes on above them.
        assert_eq!(prune_before(&conn, 100.0).unwrap(), 2);
        assert_eq!(latest_seq(&conn).unwrap(), 6);
        assert_eq!(append(&conn, event("c", None, 3.0)).unwrap().seq, 7);
    }

    #[test]
    fn a_batch_with_a_taken_seq_stores_nothing() {
        let mut conn = db();
        insert(&mut conn, &[numbered(1, "a", 1.0)]).unwrap();
        let err = insert(
            &mut conn,
            &[numbered(2, "b", 2.0), numbered(1, "again", 3.0)],
        );
        assert!(matches!(err, Err(StorageError::Sqlite(_))), "{err:?}");
        assert!(conn.is_autocommit());
        let kinds: Vec<String> = since(&conn, 0, None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, ["a"]);
        assert!(matches!(
            insert(&mut conn, &[numbered(3, "", 1.0)]),
            Err(StorageError::InvalidData(_))
        ));
    }

    #[test]
    fn latest_seq_is_zero_for_an_empty_log() {
        assert_eq!(latest_seq(&db()).unwrap(), 0);
    }

    #[test]
    fn unstorable_events_are_refused() {
        let conn = db();
        for at in [f64::NAN, f64::INFINITY] {
            assert!(matches!(
                append(&conn, event("e", None, at)),
                Err(StorageError::InvalidData(_))
            ));
        }
        assert!(matches!(
            append(&conn, event("", None, 1.0)),
            Err(StorageError::InvalidData(_))
        ));
        assert!(matches!(
            prune_before(&conn, f64::NAN),
            Err(StorageError::InvalidData(_))
        ));
        assert_eq!(latest_seq(&conn).unwrap(), 0);
    }

    #[test]
    fn a_stored_payload_that_is_not_json_is_reported() {
        let conn = db();
        conn.execute(
            "INSERT INTO events (at, kind, payload) VALUES (1.0, 'e', 'not json')",
            [],
        )
        .unwrap();
        assert!(matches!(
            since(&conn, 0, None, 10),
            Err(StorageError::Json(_))
        ));
    }
}
