//! Sessions and their shared context in the SQLite store: one row per session (the record as
//! JSON, with the columns a query or an operator needs beside it), one row per context key.
//! Every method returns once the change is committed (`synchronous=FULL`): an acknowledged
//! change survives a crash.

use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use uuid::Uuid;

use crate::storage::{Storage, StorageError};

use super::model::{now, SessionRecord};

/// Inserts or replaces a session's row.
pub(crate) async fn save(storage: &Storage, record: &SessionRecord) -> Result<(), StorageError> {
    save_new(storage, record, Vec::new()).await
}

/// Inserts or replaces a session's row and sets the given context keys with it, in one
/// transaction: both are stored, or neither.
pub(crate) async fn save_new(
    storage: &Storage,
    record: &SessionRecord,
    context: Vec<(String, Value)>,
) -> Result<(), StorageError> {
    let context = context
        .into_iter()
        .map(|(key, value)| Ok((key, serde_json::to_string(&value)?)))
        .collect::<Result<Vec<_>, StorageError>>()?;
    let json = serde_json::to_string(record)?;
    // The columns beside the JSON, not a copy of the whole record.
    let (id, name, status, directory) = (
        record.id.to_string(),
        record.configuration.name.clone(),
        record.status.as_str(),
        record.configuration.working_directory.clone(),
    );
    let (created_at, updated_at, terminated_at) =
        (record.created_at, record.updated_at, record.terminated_at);
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO sessions
                     (id, name, status, working_directory, created_at, updated_at, terminated_at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, status = excluded.status,
                     working_directory = excluded.working_directory,
                     updated_at = excluded.updated_at, terminated_at = excluded.terminated_at,
                     record = excluded.record",
                params![
                    id,
                    name,
                    status,
                    directory,
                    created_at,
                    updated_at,
                    terminated_at,
                    json,
                ],
            )?;
            let at = now();
            for (key, value) in &context {
                tx.execute(
                    "INSERT INTO session_context (session_id, key, value, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (session_id, key) DO UPDATE SET
                         value = excluded.value, updated_at = excluded.updated_at",
                    params![id, key, value, at],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
}

/// Deletes a session and its context; false when there was none.
pub(crate) async fn delete(storage: &Storage, id: Uuid) -> Result<bool, StorageError> {
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "DELETE FROM session_context WHERE session_id = ?1",
                [id.to_string()],
            )?;
            let deleted = tx.execute("DELETE FROM sessions WHERE id = ?1", [id.to_string()])?;
            tx.commit()?;
            Ok(deleted > 0)
        })
        .await
}

/// A stored row that could not be read back, kept aside rather than failing the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreadable {
    pub(crate) id: String,
    pub(crate) reason: String,
}

/// Every stored session, oldest first, and the rows that could not be decoded.
pub(crate) async fn load_all(
    storage: &Storage,
) -> Result<(Vec<SessionRecord>, Vec<Unreadable>), StorageError> {
    storage
        .call(|conn| {
            // Sorted here, not by SQLite: without an index on created_at it sorts whole rows
            // (records included), spilling to temporary files once there are thousands.
            let mut statement = conn.prepare("SELECT id, record FROM sessions")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut records = Vec::new();
            let mut unreadable = Vec::new();
            for row in rows {
                let (id, json) = row?;
                match serde_json::from_str::<SessionRecord>(&json) {
                    Ok(record) => records.push(record),
                    Err(err) => unreadable.push(Unreadable {
                        id,
                        reason: err.to_string(),
                    }),
                }
            }
            records.sort_by(|a: &SessionRecord, b| {
                a.created_at.total_cmp(&b.created_at).then(a.id.cmp(&b.id))
            });
            Ok((records, unreadable))
        })
        .await
}

/// One context value.
pub(crate) async fn context_get(
    storage: &Storage,
    session: Uuid,
    key: String,
) -> Result<Option<Value>, StorageError> {
    storage
        .call(move |conn| {
            let json = stored_value(conn, session, &key)?;
            Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
        })
        .await
}

/// Every context key and value of a session, in key order.
pub(crate) async fn context_all(
    storage: &Storage,
    session: Uuid,
) -> Result<Vec<(String, Value)>, StorageError> {
    storage
        .call(move |conn| {
            let mut statement = conn.prepare(
                "SELECT key, value FROM session_context WHERE session_id = ?1 ORDER BY key",
            )?;
            let rows = statement.query_map([session.to_string()], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (key, json) = row?;
                out.push((key, serde_json::from_str(&json)?));
            }
            Ok(out)
        })
        .await
}

/// Sets a context value; returns the previous one.
pub(crate) async fn context_put(
    storage: &Storage,
    session: Uuid,
    key: String,
    value: Value,
) -> Result<ContextPut, StorageError> {
    let json = serde_json::to_string(&value)?;
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            let previous = stored_value(&tx, session, &key)?;
            // Only while the session's row exists: a purge may have deleted it since the
            // caller looked, and a value must not outlive (or fail against) its session.
            let written = tx.execute(
                "INSERT INTO session_context (session_id, key, value, updated_at)
                 SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1)
                 ON CONFLICT (session_id, key) DO UPDATE SET
                     value = excluded.value, updated_at = excluded.updated_at",
                params![session.to_string(), key, json, now()],
            )?;
            tx.commit()?;
            if written == 0 {
                return Ok(ContextPut::NoSession);
            }
            Ok(ContextPut::Stored {
                previous: previous.map(|p| serde_json::from_str(&p)).transpose()?,
            })
        })
        .await
}

/// What a context write did.
#[derive(Debug)]
pub(crate) enum ContextPut {
    /// Stored; the value it replaced, if any.
    Stored { previous: Option<Value> },
    /// The session's row is gone (purged meanwhile); nothing was written.
    NoSession,
}

/// Deletes a context value; returns it.
pub(crate) async fn context_delete(
    storage: &Storage,
    session: Uuid,
    key: String,
) -> Result<Option<Value>, StorageError> {
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            let previous = stored_value(&tx, session, &key)?;
            tx.execute(
                "DELETE FROM session_context WHERE session_id = ?1 AND key = ?2",
                params![session.to_string(), key],
            )?;
            tx.commit()?;
            Ok(previous.map(|p| serde_json::from_str(&p)).transpose()?)
        })
        .await
}

/// The JSON text stored under `key`, if any.
fn stored_value(
    conn: &rusqlite::Connection,
    session: Uuid,
    key: &str,
) -> Result<Option<String>, rusqlite::Error> {
    conn.query_row(
        "SELECT value FROM session_context WHERE session_id = ?1 AND key = ?2",
        params![session.to_string(), key],
        |row| row.get(0),
    )
    .optional()
}
