//! The one error type of the storage layer.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong between a caller and the database.
///
/// Callers above the storage layer mostly need to tell three situations apart: the database
/// cannot be used at all (`CreateDir`, `Open`, `JournalMode`, `NewerSchema`, `Migration`,
/// `Corrupt`), the storage is gone (`Closed`, e.g. during shutdown), or one request failed and
/// the next may well succeed (the rest).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The directory that should hold the database file could not be created; without it
    /// nothing can be persisted, so start-up must stop here.
    #[error("cannot create the database directory {}", .path.display())]
    CreateDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// Why the operating system refused.
        #[source]
        source: io::Error,
    },

    /// The database file could not be opened or configured (not a database, permissions,
    /// locked by another program, ...). Carries the path because the SQLite message does not.
    #[error("cannot open the database {}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        #[source]
        source: rusqlite::Error,
    },

    /// SQLite would not switch the database to write-ahead logging. Refused rather than run
    /// in another mode, because the durability and concurrency guarantees assume WAL.
    #[error("the database {} refused write-ahead logging (journal mode is {mode})", .path.display())]
    JournalMode {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite reported instead of `wal`.
        mode: String,
    },

    /// The dedicated writer thread could not be started.
    #[error("cannot start the storage writer thread")]
    Spawn(#[source] io::Error),

    /// A statement failed; the connection itself is still usable.
    #[error("sqlite statement failed")]
    Sqlite(#[from] rusqlite::Error),

    /// Bringing the schema up to date failed; the migration's transaction was rolled back, so
    /// the database is still at its previous version.
    #[error("cannot migrate the database schema")]
    Migration(#[from] rusqlite_migration::Error),

    /// The database was written by a newer binary. It is left untouched: migrating down or
    /// writing with an older schema in mind could lose the newer binary's data.
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    NewerSchema {
        /// The version recorded in the database.
        found: i64,
        /// The latest version this binary knows.
        supported: usize,
    },

    /// The writer thread is gone (the storage was closed, or is closing), so the request was
    /// not executed.
    #[error("storage is closed")]
    Closed,

    /// The job panicked. Only its caller sees this: any transaction it left open was rolled
    /// back and the writer thread goes on with the next job.
    #[error("storage job panicked: {0}")]
    JobPanicked(String),
    /// A job returned while a transaction it began was still open; its writes were rolled
    /// back, so the job failed whatever it returned.
    #[error("storage job left a transaction open; its writes were rolled back")]
    TransactionLeftOpen,

    /// The database content is damaged or not what this binary wrote (integrity check
    /// failure, impossible schema version, ...).
    #[error("database is corrupt: {0}")]
    Corrupt(String),

    /// The caller asked to store something the schema cannot hold (e.g. a non-finite time).
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// An event payload could not be turned into JSON text, or stored text is not JSON.
    #[error("event payload is not valid json")]
    Json(#[from] serde_json::Error),
}
