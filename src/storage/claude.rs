//! The Claude Code sessions table (schema v6): one row per Claude Code session the hooks
//! told of — its activity state and what it is attributed to — so a restarted server knows
//! which conversation waits for its person and whose it is.
//!
//! Rows go in and out as [`ClaudeRow`], this module's own type (the state as its wire word),
//! so the surface stays backend-neutral.

use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::{Storage, StorageError};

/// One Claude Code session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaudeRow {
    /// Claude Code's session id.
    pub claude_session_id: String,
    /// Our session, when attributed.
    pub session_id: Option<Uuid>,
    /// Our agent, when known.
    pub agent: Option<String>,
    /// How it was attributed (a rank: higher wins), 0 when not.
    pub attributed_by: i64,
    /// The state's wire word.
    pub state: String,
    /// Unix seconds it entered `state`.
    pub since: f64,
    /// Its last working directory.
    pub cwd: Option<String>,
    /// Its transcript file.
    pub transcript_path: Option<String>,
    /// Its last hook's name.
    pub last_event: String,
    /// Unix seconds of its last hook.
    pub last_event_at: f64,
    /// The error of a failed turn.
    pub error: Option<String>,
}

impl Storage {
    /// Writes `row` over the stored one of the same Claude session (or adds it).
    pub async fn put_claude_session(&self, row: ClaudeRow) -> Result<(), StorageError> {
        self.grouped(move |conn| put(conn, &row)).await
    }

    /// Every stored Claude session.
    pub async fn claude_sessions(&self) -> Result<Vec<ClaudeRow>, StorageError> {
        self.call(|conn| all(conn)).await
    }

    /// Forgets the Claude sessions attributed to a purged session.
    pub async fn forget_claude_sessions_of(&self, session: Uuid) -> Result<usize, StorageError> {
        self.grouped(move |conn| {
            Ok(conn.execute(
                "DELETE FROM claude_sessions WHERE session_id = ?1",
                params![session.to_string()],
            )?)
        })
        .await
    }

    /// One stored Claude session.
    pub async fn claude_session(&self, id: String) -> Result<Option<ClaudeRow>, StorageError> {
        self.grouped(move |conn| {
            Ok(conn
                .query_row(
                    &format!("SELECT {COLUMNS} FROM claude_sessions WHERE claude_session_id = ?1"),
                    params![id],
                    row,
                )
                .optional()?)
        })
        .await
    }
}

const COLUMNS: &str = "claude_session_id, session_id, agent, attributed_by, state, since, cwd, \
                       transcript_path, last_event, last_event_at, error";

fn put(conn: &Connection, row: &ClaudeRow) -> Result<(), StorageError> {
    conn.execute(
        &format!(
            "INSERT OR REPLACE INTO claude_sessions ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            row.claude_session_id,
            row.session_id.map(|id| id.to_string()),
            row.agent,
            row.attributed_by,
            row.state,
            row.since,
            row.cwd,
            row.transcript_path,
            row.last_event,
            row.last_event_at,
            row.error,
        ],
    )?;
    Ok(())
}

fn all(conn: &Connection) -> Result<Vec<ClaudeRow>, StorageError> {
    let mut statement = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM claude_sessions ORDER BY last_event_at"
    ))?;
    let rows = statement.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn row(row: &Row<'_>) -> rusqlite::Result<ClaudeRow> {
    let session: Option<String> = row.get(1)?;
    Ok(ClaudeRow {
        claude_session_id: row.get(0)?,
        // A session column that is not a UUID was not written by us: read as unattributed.
        session_id: session.and_then(|s| Uuid::parse_str(&s).ok()),
        agent: row.get(2)?,
        attributed_by: row.get(3)?,
        state: row.get(4)?,
        since: row.get(5)?,
        cwd: row.get(6)?,
        transcript_path: row.get(7)?,
        last_event: row.get(8)?,
        last_event_at: row.get(9)?,
        error: row.get(10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, session: Option<Uuid>) -> ClaudeRow {
        ClaudeRow {
            claude_session_id: id.into(),
            session_id: session,
            agent: Some("coder".into()),
            attributed_by: 3,
            state: "working".into(),
            since: 1.5,
            cwd: Some("/w".into()),
            transcript_path: None,
            last_event: "PreToolUse".into(),
            last_event_at: 2.5,
            error: None,
        }
    }

    #[tokio::test]
    async fn rows_round_trip_replace_and_go_with_their_session() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db.sqlite3")).await.unwrap();
        let ours = Uuid::new_v4();
        storage
            .put_claude_session(sample("a", Some(ours)))
            .await
            .unwrap();
        storage.put_claude_session(sample("b", None)).await.unwrap();
        let mut changed = sample("a", Some(ours));
        changed.state = "idle".into();
        changed.error = Some("boom".into());
        storage.put_claude_session(changed.clone()).await.unwrap();
        let rows = storage.claude_sessions().await.unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            storage.claude_session("a".into()).await.unwrap(),
            Some(changed)
        );
        assert_eq!(storage.forget_claude_sessions_of(ours).await.unwrap(), 1);
        let rows = storage.claude_sessions().await.unwrap();
        assert_eq!(rows, vec![sample("b", None)]);
        storage.close().await.unwrap();
    }
}
