//! Sessions and their shared context: one row per session (the record as JSON, with the
//! columns a query or an operator needs beside it), one row per context key.
//!
//! The surface is backend-neutral — records are any serde type, context values are JSON,
//! nothing of SQLite shows — so a PostgreSQL backend can implement the same methods. Storage
//! knows no session type: the session layer maps its record to a [`SessionRow`] and hands the
//! record itself as something serde can write. Every write returns once committed
//! (`synchronous=FULL`): an acknowledged change survives a crash.

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Storage, StorageError};

/// The columns stored beside a session's record: what a query (status, name) or an operator
/// reading the table needs without decoding the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// The session's id, the row's key.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its status word (`active`, `terminated`, ...).
    pub status: String,
    /// Its working directory.
    pub working_directory: String,
    /// Created, in Unix seconds; the load order.
    pub created_at: f64,
    /// Last changed, in Unix seconds.
    pub updated_at: f64,
    /// Terminated, in Unix seconds, if it was.
    pub terminated_at: Option<f64>,
}

/// Every stored session, decoded, and the rows that could not be.
#[derive(Debug)]
pub struct LoadedSessions<R> {
    /// The records, oldest first (ties by id).
    pub records: Vec<R>,
    /// Rows whose record did not decode, kept aside rather than failing the start.
    pub unreadable: Vec<UnreadableSession>,
}

/// A stored row that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadableSession {
    /// The row's id, as stored.
    pub id: String,
    /// Why its record did not decode.
    pub reason: String,
}

/// What a context write did.
#[derive(Debug)]
pub enum ContextPut {
    /// Stored; the value it replaced, if any.
    Stored {
        /// The previous value under the key.
        previous: Option<Value>,
    },
    /// The session's row is gone (purged meanwhile); nothing was written.
    NoSession,
}

impl Storage {
    /// Inserts or replaces a session's row (`row` beside `record` as JSON) and sets the given
    /// context keys with it, in one transaction: both are stored, or neither.
    pub async fn save_session<R: Serialize>(
        &self,
        row: SessionRow,
        record: &R,
        context: Vec<(String, Value)>,
    ) -> Result<(), StorageError> {
        let context = context
            .into_iter()
            .map(|(key, value)| Ok((key, serde_json::to_string(&value)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        let json = serde_json::to_string(record)?;
        self.grouped(move |conn| save(conn, &row, &json, &context))
            .await
    }

    /// Inserts or replaces many sessions' rows (each beside its record, already JSON), in one
    /// transaction: a checkpoint of every session at a stop is one write.
    pub async fn save_sessions(&self, rows: Vec<(SessionRow, String)>) -> Result<(), StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(move |conn| {
            let tx = conn.savepoint()?;
            for (row, json) in &rows {
                upsert(&tx, row, json)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// Deletes a session and its context; false when there was none.
    pub async fn delete_session(&self, id: Uuid) -> Result<bool, StorageError> {
        self.grouped(move |conn| {
            let tx = conn.savepoint()?;
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

    /// Every stored session decoded as `R`, oldest first (ties by id), and the rows whose
    /// record does not decode. Decoded on the writer thread, off the async workers.
    pub async fn load_sessions<R>(&self) -> Result<LoadedSessions<R>, StorageError>
    where
        R: DeserializeOwned + Send + 'static,
    {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(load).await
    }

    /// Every context key and value of a session, in key order.
    pub async fn session_context(
        &self,
        session: Uuid,
    ) -> Result<Vec<(String, Value)>, StorageError> {
        self.grouped(move |conn| {
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

    /// One context value of a session.
    pub async fn context_value(
        &self,
        session: Uuid,
        key: String,
    ) -> Result<Option<Value>, StorageError> {
        self.grouped(move |conn| decode(stored_value(conn, session, &key)?))
            .await
    }

    /// Sets a context value while the session's row exists; says what it replaced.
    pub async fn put_context(
        &self,
        session: Uuid,
        key: String,
        value: Value,
    ) -> Result<ContextPut, StorageError> {
        let json = serde_json::to_string(&value)?;
        self.grouped(move |conn| put_context(conn, session, &key, &json))
            .await
    }

    /// Deletes a context value; returns it.
    pub async fn delete_context(
        &self,
        session: Uuid,
        key: String,
    ) -> Result<Option<Value>, StorageError> {
        self.grouped(move |conn| {
            let tx = conn.savepoint()?;
            let previous = stored_value(&tx, session, &key)?;
            tx.execute(
                "DELETE FROM session_context WHERE session_id = ?1 AND key = ?2",
                params![session.to_string(), key],
            )?;
            tx.commit()?;
            decode(previous)
        })
        .await
    }
}

/// Inserts or replaces one session's row.
fn upsert(conn: &Connection, row: &SessionRow, json: &str) -> Result<(), StorageError> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO sessions
             (id, name, status, working_directory, created_at, updated_at, terminated_at, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (id) DO UPDATE SET
             name = excluded.name, status = excluded.status,
             working_directory = excluded.working_directory,
             updated_at = excluded.updated_at, terminated_at = excluded.terminated_at,
             record = excluded.record",
    )?;
    upsert.execute(params![
        row.id.to_string(),
        row.name,
        row.status,
        row.working_directory,
        row.created_at,
        row.updated_at,
        row.terminated_at,
        json,
    ])?;
    Ok(())
}

fn save(
    conn: &mut Connection,
    row: &SessionRow,
    json: &str,
    context: &[(String, String)],
) -> Result<(), StorageError> {
    let id = row.id.to_string();
    let tx = conn.savepoint()?;
    upsert(&tx, row, json)?;
    let at = unix_now();
    for (key, value) in context {
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
}

fn load<R: DeserializeOwned>(conn: &mut Connection) -> Result<LoadedSessions<R>, StorageError> {
    // Sorted here, not by SQLite: without an index on created_at it sorts whole rows
    // (records included), spilling to temporary files once there are thousands. The id
    // column is the UUID's hyphenated lower-case text, which sorts as the UUID does.
    let mut statement = conn.prepare("SELECT id, created_at, record FROM sessions")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, f64>(1)?,
            row.get::<_, String>(2)?,
        ))
    })?;
    let mut records = Vec::new();
    let mut unreadable = Vec::new();
    for row in rows {
        let (id, created_at, json) = row?;
        match serde_json::from_str::<R>(&json) {
            Ok(record) => records.push((created_at, id, record)),
            Err(err) => unreadable.push(UnreadableSession {
                id,
                reason: err.to_string(),
            }),
        }
    }
    records.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    Ok(LoadedSessions {
        records: records.into_iter().map(|(_, _, record)| record).collect(),
        unreadable,
    })
}

fn put_context(
    conn: &mut Connection,
    session: Uuid,
    key: &str,
    json: &str,
) -> Result<ContextPut, StorageError> {
    let tx = conn.savepoint()?;
    let previous = stored_value(&tx, session, key)?;
    // Only while the session's row exists: a purge may have deleted it since the caller
    // looked, and a value must not outlive (or fail against) its session.
    let written = tx.execute(
        "INSERT INTO session_context (session_id, key, value, updated_at)
         SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1)
         ON CONFLICT (session_id, key) DO UPDATE SET
             value = excluded.value, updated_at = excluded.updated_at",
        params![session.to_string(), key, json, unix_now()],
    )?;
    tx.commit()?;
    if written == 0 {
        return Ok(ContextPut::NoSession);
    }
    Ok(ContextPut::Stored {
        previous: decode(previous)?,
    })
}

/// The JSON text stored under `key`, if any.
fn stored_value(
    conn: &Connection,
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

fn decode(json: Option<String>) -> Result<Option<Value>, StorageError> {
    Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
}

/// Now, in Unix seconds: when a context key was last set.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::storage::migrations;

    fn db() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        migrations::migrate(&mut conn).unwrap();
        conn
    }

    /// A record of the caller's own type: storage never needs to know what it holds.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Note {
        text: String,
    }

    fn row(id: u128, created_at: f64) -> SessionRow {
        SessionRow {
            id: Uuid::from_u128(id),
            name: format!("s{id}"),
            status: "active".into(),
            working_directory: "/tmp".into(),
            created_at,
            updated_at: created_at,
            terminated_at: None,
        }
    }

    fn note(text: &str) -> String {
        serde_json::to_string(&Note { text: text.into() }).unwrap()
    }

    #[test]
    fn sessions_load_oldest_first_ties_by_id_and_bad_rows_aside() {
        let mut conn = db();
        save(&mut conn, &row(3, 20.0), &note("late"), &[]).unwrap();
        save(&mut conn, &row(2, 10.0), &note("tie b"), &[]).unwrap();
        save(&mut conn, &row(1, 10.0), &note("tie a"), &[]).unwrap();
        save(&mut conn, &row(4, 5.0), "{\"not\": \"a note\"}", &[]).unwrap();
        let loaded: LoadedSessions<Note> = load(&mut conn).unwrap();
        let texts: Vec<&str> = loaded.records.iter().map(|n| n.text.as_str()).collect();
        assert_eq!(texts, ["tie a", "tie b", "late"]);
        assert_eq!(loaded.unreadable.len(), 1);
        assert_eq!(loaded.unreadable[0].id, Uuid::from_u128(4).to_string());
        assert!(
            loaded.unreadable[0].reason.contains("text"),
            "{:?}",
            loaded.unreadable
        );
    }

    #[test]
    fn a_save_replaces_the_row_and_sets_its_context_with_it() {
        let mut conn = db();
        let context = [("plan".to_string(), "[1,2]".to_string())];
        save(&mut conn, &row(1, 1.0), &note("first"), &context).unwrap();
        save(&mut conn, &row(1, 1.0), &note("second"), &[]).unwrap();
        let loaded: LoadedSessions<Note> = load(&mut conn).unwrap();
        assert_eq!(
            loaded.records,
            [Note {
                text: "second".into()
            }]
        );
        let stored = stored_value(&conn, Uuid::from_u128(1), "plan").unwrap();
        assert_eq!(decode(stored).unwrap(), Some(json!([1, 2])));
    }

    #[test]
    fn context_is_written_only_while_its_session_exists() {
        let mut conn = db();
        let id = Uuid::from_u128(7);
        assert!(matches!(
            put_context(&mut conn, id, "k", "1").unwrap(),
            ContextPut::NoSession
        ));
        assert_eq!(stored_value(&conn, id, "k").unwrap(), None);
        save(&mut conn, &row(7, 1.0), &note("n"), &[]).unwrap();
        assert!(matches!(
            put_context(&mut conn, id, "k", "1").unwrap(),
            ContextPut::Stored { previous: None }
        ));
        match put_context(&mut conn, id, "k", "\"two\"").unwrap() {
            ContextPut::Stored { previous } => assert_eq!(previous, Some(json!(1))),
            ContextPut::NoSession => panic!("the session exists"),
        }
    }
}
