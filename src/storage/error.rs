//! The one error type of the storage layer.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

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
    /// A job that shares its transaction with others (see `writer`) committed or rolled
    /// back that transaction itself; it and the jobs before it in the transaction fail,
    /// since what became of their writes cannot be told.
    #[error("storage job ended the transaction it shared with other jobs")]
    TransactionEnded,
    /// The job succeeded, but the transaction it shared with other jobs was not committed:
    /// the commit failed (a full disk, an I/O error) or another job's failure rolled the
    /// whole transaction back. None of its writes was kept. The source is that failure,
    /// shared by every job of the transaction.
    #[error("the transaction holding this job's writes was not committed")]
    NotCommitted(#[source] Arc<StorageError>),

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

/// What a failure says about the storage as a whole, as opposed to about one request: the
/// answer a caller owes its client depends on it (507 for [`Fault::Full`], 503 with a
/// `Retry-After` for [`Fault::Unavailable`]), and `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The file system holding the database is full (`SQLITE_FULL`, `ENOSPC`, a quota):
    /// nothing more is written until space is freed.
    Full,
    /// The database cannot be written right now for another reason the operator or time
    /// can fix: a read-only file system, an I/O error, a file that cannot be opened, a lock
    /// held elsewhere, or storage closing at shutdown.
    Unavailable,
}

impl Fault {
    /// The fault in our own words, for `/health` and logs (never a path or an OS message).
    pub fn describe(self) -> &'static str {
        match self {
            Fault::Full => "the disk holding the database is full",
            Fault::Unavailable => "the database cannot be written (read-only, I/O error or locked)",
        }
    }
}

impl StorageError {
    /// Whether this failure is the storage's condition (a full disk, a read-only or failing
    /// file system) rather than this request's; `None` for a failure of the request itself
    /// (bad data, a bug), which retrying or freeing space would not cure.
    pub fn fault(&self) -> Option<Fault> {
        match self {
            StorageError::Sqlite(error) | StorageError::Open { source: error, .. } => {
                sqlite_fault(error)
            }
            StorageError::Migration(rusqlite_migration::Error::RusqliteError { err, .. }) => {
                sqlite_fault(err)
            }
            StorageError::CreateDir { source, .. } | StorageError::Spawn(source) => {
                Some(io_fault(source))
            }
            StorageError::Closed => Some(Fault::Unavailable),
            StorageError::NotCommitted(cause) => cause.fault(),
            _ => None,
        }
    }
}

/// SQLite's unix file layer reports `ENOSPC` as `SQLITE_FULL`; the other codes here name a
/// condition of the file system or of another process, not of the statement.
fn sqlite_fault(error: &rusqlite::Error) -> Option<Fault> {
    use rusqlite::ffi::ErrorCode;
    match error.sqlite_error_code()? {
        ErrorCode::DiskFull => Some(Fault::Full),
        ErrorCode::ReadOnly
        | ErrorCode::SystemIoFailure
        | ErrorCode::CannotOpen
        | ErrorCode::PermissionDenied
        | ErrorCode::DatabaseBusy
        | ErrorCode::DatabaseLocked
        | ErrorCode::FileLockingProtocolFailed => Some(Fault::Unavailable),
        _ => None,
    }
}

fn io_fault(error: &io::Error) -> Fault {
    match error.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Fault::Full,
        _ => Fault::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::ffi;

    use super::*;

    fn sqlite(code: std::ffi::c_int) -> StorageError {
        StorageError::Sqlite(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
    }

    #[test]
    fn a_full_disk_is_told_apart_from_an_unwritable_one_and_from_a_bad_request() {
        assert_eq!(sqlite(ffi::SQLITE_FULL).fault(), Some(Fault::Full));
        for code in [
            ffi::SQLITE_READONLY,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_CANTOPEN,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
            ffi::SQLITE_PROTOCOL,
            ffi::SQLITE_PERM,
        ] {
            assert_eq!(
                sqlite(code).fault(),
                Some(Fault::Unavailable),
                "code {code}"
            );
        }
        for code in [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_MISMATCH,
            ffi::SQLITE_ERROR,
        ] {
            assert_eq!(sqlite(code).fault(), None, "code {code}");
        }
        assert_eq!(StorageError::Closed.fault(), Some(Fault::Unavailable));
        assert_eq!(StorageError::Corrupt("x".into()).fault(), None);
        assert_eq!(StorageError::InvalidData("x".into()).fault(), None);
        let full = Arc::new(sqlite(ffi::SQLITE_FULL));
        assert_eq!(StorageError::NotCommitted(full).fault(), Some(Fault::Full));
        let own = Arc::new(StorageError::InvalidData("x".into()));
        assert_eq!(StorageError::NotCommitted(own).fault(), None);
    }

    #[test]
    fn a_directory_that_cannot_be_created_for_lack_of_space_is_a_full_disk() {
        let full = StorageError::CreateDir {
            path: PathBuf::from("/x"),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(full.fault(), Some(Fault::Full));
        let quota = StorageError::CreateDir {
            path: PathBuf::from("/x"),
            source: io::Error::from_raw_os_error(libc::EDQUOT),
        };
        assert_eq!(quota.fault(), Some(Fault::Full));
        let read_only = StorageError::CreateDir {
            path: PathBuf::from("/x"),
            source: io::Error::from_raw_os_error(libc::EROFS),
        };
        assert_eq!(read_only.fault(), Some(Fault::Unavailable));
    }
}
