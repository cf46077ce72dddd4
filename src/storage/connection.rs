//! Opening, configuring and closing the single SQLite connection.
//!
//! Everything here blocks, so it only ever runs on the writer thread.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::{migrations, StorageError};

/// How long a statement waits for a lock held by another connection (a backup tool, an
/// operator's `sqlite3` shell) before failing, instead of failing at once.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the database at `path`, creating it and its directory if needed, and brings it to a
/// state every job may rely on: WAL, full sync, foreign keys, latest schema.
pub(super) fn open(path: &Path) -> Result<Connection, StorageError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let open_err = |source| StorageError::Open {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;

    // Before anything writes to the file: a database from a newer binary is refused as it is.
    migrations::check_version(migrations::user_version(&conn).map_err(open_err)?)?;

    // WAL lets readers proceed during a write and makes a commit a single append to the log.
    // The setting is persistent, and SQLite silently keeps the old mode when it cannot switch
    // (e.g. on file systems without shared memory), so the answer is checked.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::JournalMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    // In WAL mode, NORMAL only syncs at checkpoints: a commit survives the process being
    // killed but not a power cut or kernel crash. FULL fsyncs the log at every commit, so
    // once a write is acknowledged to the caller it is on disk, whatever happens next.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    // Off by default in SQLite, per connection; later schemas rely on their REFERENCES.
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(open_err)?;

    migrations::migrate(&mut conn)?;
    Ok(conn)
}

/// Folds the write-ahead log back into the database and closes the connection, so a stopped
/// server leaves one self-contained file behind (easy to copy, quick to open next time).
pub(super) fn close(conn: Connection) -> Result<(), StorageError> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        // Another connection (a reader outside this process) kept part of the log in use; it
        // stays in the WAL file, which is safe and will be checkpointed later.
        tracing::warn!("storage checkpoint incomplete: the database is in use elsewhere");
    }
    conn.close().map_err(|(_, err)| StorageError::Sqlite(err))
}
