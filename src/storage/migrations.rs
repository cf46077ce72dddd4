//! The schema, as an append-only list of migrations.
//!
//! The schema version is SQLite's `user_version`, maintained by `rusqlite_migration`: version N
//! means the first N entries of [`MIGRATION_LIST`] have been applied, each run in one
//! transaction with the version bump. To change the schema, append a migration; never edit or
//! reorder one that has shipped, since databases in the field already recorded it as applied.

use rusqlite::Connection;
use rusqlite_migration::{Migrations, M};

use super::StorageError;

const MIGRATION_LIST: &[M<'static>] = &[
    // v1: the event log, the audit trail that WebSocket and HTTP replay with `since`.
    // AUTOINCREMENT (not a plain rowid alias) so a pruned seq is never handed out again: a
    // client that remembers seq 42 must never be shown a different event 42 later.
    M::up(
        "CREATE TABLE events (
            seq        INTEGER PRIMARY KEY AUTOINCREMENT,
            at         REAL NOT NULL,    -- unix seconds
            kind       TEXT NOT NULL,
            session_id TEXT NULL,
            payload    TEXT NOT NULL     -- JSON
        );
        CREATE INDEX events_session_seq ON events (session_id, seq);
        CREATE INDEX events_at ON events (at);",
    ),
    // v2: sessions (the whole record as JSON, the columns a query needs beside it) and each
    // session's shared context. A context dies with its session.
    M::up(
        "CREATE TABLE sessions (
            id                TEXT PRIMARY KEY,
            name              TEXT NOT NULL,
            status            TEXT NOT NULL,
            working_directory TEXT NOT NULL,
            created_at        REAL NOT NULL,
            updated_at        REAL NOT NULL,
            terminated_at     REAL NULL,
            record            TEXT NOT NULL   -- JSON
        );
        CREATE INDEX sessions_status ON sessions (status);
        CREATE TABLE session_context (
            session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            key        TEXT NOT NULL,
            value      TEXT NOT NULL,         -- JSON
            updated_at REAL NOT NULL,
            PRIMARY KEY (session_id, key)
        );",
    ),
    // v3: the monitor's samples. `session_id` NULL is the host. The columns the summary
    // reads stand alone; `detail` holds the rest as JSON (each agent's tree for a session;
    // memory totals and load average for the host).
    M::up(
        "CREATE TABLE metrics (
            id             INTEGER PRIMARY KEY,
            session_id     TEXT NULL,
            at             REAL NOT NULL,    -- unix seconds
            cpu_percent    REAL NOT NULL,
            memory_mb      REAL NOT NULL,
            memory_percent REAL NULL,
            disk_percent   REAL NULL,
            agents_running INTEGER NOT NULL,
            agents_total   INTEGER NOT NULL,
            restarts       INTEGER NOT NULL,
            errors         INTEGER NOT NULL,
            detail         TEXT NOT NULL     -- JSON
        );
        CREATE INDEX metrics_session_at ON metrics (session_id, at);
        CREATE INDEX metrics_at ON metrics (at);",
    ),
    M::up(
        "CREATE TABLE hook_activity (
            session_id        TEXT NOT NULL,
            hour              INTEGER NOT NULL,  -- unix seconds of the hour's start
            tool_uses         INTEGER NOT NULL,
            commands_executed INTEGER NOT NULL,
            files_created     INTEGER NOT NULL,
            files_modified    INTEGER NOT NULL,
            files_deleted     INTEGER NOT NULL,
            errors            INTEGER NOT NULL,
            responses         INTEGER NOT NULL,
            response_ms_total REAL NOT NULL,
            response_ms_max   REAL NOT NULL,
            PRIMARY KEY (session_id, hour)
        );
        CREATE INDEX hook_activity_hour ON hook_activity (hour);
        CREATE TABLE hook_names (
            session_id TEXT NOT NULL,
            kind       TEXT NOT NULL,            -- tool, command or file
            name       TEXT NOT NULL,
            uses       INTEGER NOT NULL,
            PRIMARY KEY (session_id, kind, name)
        );",
    ),
    // One row that `Storage::probe` rewrites to learn whether the database takes writes.
    M::up(
        "CREATE TABLE storage_probe (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            at REAL NOT NULL
        );",
    ),
    // v6: Claude Code sessions as their hooks told of them (`claude` module): the activity
    // state and the session of ours each is attributed to (NULL: none yet).
    M::up(
        "CREATE TABLE claude_sessions (
            claude_session_id TEXT PRIMARY KEY,
            session_id        TEXT NULL,
            agent             TEXT NULL,
            attributed_by     INTEGER NOT NULL,
            state             TEXT NOT NULL,
            since             REAL NOT NULL,    -- unix seconds
            cwd               TEXT NULL,
            transcript_path   TEXT NULL,
            last_event        TEXT NOT NULL,
            last_event_at     REAL NOT NULL,
            error             TEXT NULL
        );
        CREATE INDEX claude_sessions_session ON claude_sessions (session_id);",
    ),
    // v7: the usage ledger of Claude Code's telemetry (src/storage/usage.rs): one row per
    // bucket (Claude session id, our session and agent, model; '' when absent) and the last
    // value of every cumulative series, so a restart neither loses nor double-counts usage.
    M::up(
        "CREATE TABLE claude_usage (
            claude_session        TEXT NOT NULL,
            session_id            TEXT NOT NULL,
            agent                 TEXT NOT NULL,
            model                 TEXT NOT NULL,
            cost_usd              REAL NOT NULL,
            input_tokens          REAL NOT NULL,
            output_tokens         REAL NOT NULL,
            cache_read_tokens     REAL NOT NULL,
            cache_creation_tokens REAL NOT NULL,
            lines_added           REAL NOT NULL,
            lines_removed         REAL NOT NULL,
            commits               REAL NOT NULL,
            pull_requests         REAL NOT NULL,
            active_time_seconds   REAL NOT NULL,
            api_errors            INTEGER NOT NULL,
            last_api_error        TEXT NULL,
            updated_at            REAL NOT NULL,
            PRIMARY KEY (claude_session, session_id, agent, model)
        );
        CREATE TABLE claude_usage_series (
            key   TEXT PRIMARY KEY,
            start INTEGER NOT NULL,    -- unix nanoseconds
            value REAL NOT NULL
        );",
    ),
    // v8: a session whose sample did not change is not stored every tick (issue 23): a row
    // stands for `ticks` samples of the same figures, so means, counts and the trend hours
    // weigh it by them. Rows stored before stand for one.
    M::up("ALTER TABLE metrics ADD COLUMN ticks INTEGER NOT NULL DEFAULT 1;"),
];

const MIGRATIONS: Migrations<'static> = Migrations::from_slice(MIGRATION_LIST);

/// The schema version this binary creates and understands; databases above it are refused.
pub const SCHEMA_VERSION: usize = MIGRATION_LIST.len();

/// Reads the schema version recorded in the database (0 for a new, empty one).
pub(super) fn user_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

/// Refuses a database this binary must not touch. Only reads, so it is safe to run before
/// anything (even the journal mode switch) writes to the file.
pub(super) fn check_version(found: i64) -> Result<(), StorageError> {
    if found < 0 {
        return Err(StorageError::Corrupt(format!(
            "negative schema version {found}"
        )));
    }
    match usize::try_from(found) {
        Ok(version) if version <= SCHEMA_VERSION => {}
        _ => {
            return Err(StorageError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            })
        }
    }
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`]; a no-op when it is already there.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StorageError> {
    check_version(user_version(conn)?)?;
    MIGRATIONS.to_latest(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_to_an_empty_database() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn migrate_reaches_the_latest_version_and_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION as i64);
    }

    #[test]
    fn a_newer_schema_is_refused_without_change() {
        let mut conn = Connection::open_in_memory().unwrap();
        let newer = SCHEMA_VERSION as i64 + 1;
        conn.pragma_update(None, "user_version", newer).unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, StorageError::NewerSchema { found, supported }
                if found == newer && supported == SCHEMA_VERSION),
            "{err:?}"
        );
        assert_eq!(user_version(&conn).unwrap(), newer);
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
            .unwrap();
        assert_eq!(tables, 0, "nothing may be created in a refused database");
    }

    #[test]
    fn a_negative_schema_version_is_corruption() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", -3).unwrap();
        assert!(matches!(migrate(&mut conn), Err(StorageError::Corrupt(_))));
    }
}
