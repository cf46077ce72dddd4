//! Persistence: one SQLite database (bundled, WAL mode, versioned migrations) behind an async
//! handle.
//!
//! [`Storage`] is a cheap, cloneable handle to a dedicated writer thread that owns the only
//! connection; async code sends it closures and awaits the result, so the runtime never
//! blocks on SQLite. Every write is committed with `synchronous=FULL`: once a method returns
//! `Ok`, the data survives `kill -9` of the server (and a power cut). The writer commits the
//! typed methods' jobs that queue together in one transaction, one fsync for all (group
//! commit, see `writer`): a job that fails loses only its own writes, and none is answered
//! before its group's commit returned.
//!
//! Layout: `connection` opens and configures the database, `migrations` holds the schema,
//! `writer` the thread, and one module per table family (`events`, `sessions`, `metrics`,
//! `hooks`, `claude`, ...) adds its typed methods to [`Storage`] on top of `Storage::grouped`
//! (or [`Storage::call`] for long jobs, which run alone), taking and returning its own
//! row types: no rusqlite type crosses that surface, so it is the seam another backend
//! implements.

mod claude;
mod connection;
mod error;
mod events;
mod health;
mod hooks;
mod metrics;
mod migrations;
mod sessions;
mod usage;
mod writer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use claude::ClaudeRow;
pub use error::{Fault, StorageError};
pub use events::{NewEvent, StoredEvent};
pub use health::{Commits, StorageHealth};
pub use hooks::{HookCounts, HookCountsAdded, HookNameKind, HookNames};
pub use metrics::{
    AgentRow, HostRow, SampleBatch, SampleHour, SampleMinute, SampleSummary, SessionSampleRow,
};
pub use migrations::SCHEMA_VERSION;
pub use sessions::{ContextPut, LoadedSessions, SessionRow, UnreadableSession};
pub use usage::{StoredUsage, UsageOwner, UsageSeries, UsageTotals};

/// Handle to the database. Clone it freely: all clones share one writer thread, which runs
/// their jobs one at a time in arrival order (committing those that queue together at once).
/// The thread finishes the queued jobs,
/// checkpoints and closes the database once every clone is dropped or [`Storage::close`]
/// is called.
#[derive(Clone)]
pub struct Storage {
    sender: mpsc::Sender<writer::Msg>,
    path: Arc<Path>,
    tracker: health::Tracker,
}

impl Storage {
    /// Opens (creating if needed, with its directory) the database at `path`, switches it to
    /// WAL, and migrates it to [`SCHEMA_VERSION`]. A database written by a newer binary is
    /// refused with [`StorageError::NewerSchema`] and left untouched.
    pub async fn open(path: &Path) -> Result<Storage, StorageError> {
        let path: Arc<Path> = Arc::from(path);
        let tracker = health::Tracker::default();
        let (sender, ready) = writer::spawn(Arc::clone(&path), tracker.clone())?;
        // The thread answers before it exits in every case, so a dropped answer means it died.
        ready.await.map_err(|_| StorageError::Closed)??;
        Ok(Storage {
            sender,
            path,
            tracker,
        })
    }

    /// Runs `f` on the writer thread with the connection and returns its result, alone: no
    /// other job's writes share its transaction, and `f` may begin and commit its own (or run
    /// what cannot run inside one, such as `VACUUM`). A transaction inside it sees no
    /// interleaved writes; a panic in `f` becomes [`StorageError::JobPanicked`] for this
    /// caller only, and a transaction `f` leaves open is rolled back
    /// ([`StorageError::TransactionLeftOpen`]). Once sent, the job runs even if this future
    /// is dropped.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, StorageError> + Send + 'static,
    {
        self.send(f, writer::Msg::Alone).await
    }

    /// Runs `f` on the writer thread inside the transaction of a group of jobs committed
    /// together (one fsync for all, see `writer`): the building block of the typed methods.
    /// `f`'s writes are all or nothing (a savepoint of its own, rolled back when it fails),
    /// and its result comes back once the group is committed. `f` must not begin, commit or
    /// roll back a transaction (a savepoint is fine), and should be short: the jobs grouped
    /// before it wait for it.
    async fn grouped<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, StorageError> + Send + 'static,
    {
        self.send(f, writer::Msg::Grouped).await
    }

    async fn send<T, F>(
        &self,
        f: F,
        kind: fn(writer::Job) -> writer::Msg,
    ) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut rusqlite::Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(kind(writer::job(f, reply)))
            .await
            .map_err(|_| StorageError::Closed)?;
        answer.await.map_err(|_| StorageError::Closed)?
    }

    /// Stops the writer for every clone and waits until the database is checkpointed and
    /// closed, so a shutdown can be sure nothing is left in flight. Jobs queued before this
    /// call still run; later ones get [`StorageError::Closed`]. Closing storage that another
    /// clone already closed is not an error.
    pub async fn close(self) -> Result<(), StorageError> {
        let (reply, answer) = oneshot::channel();
        if self
            .sender
            .send(writer::Msg::Shutdown(reply))
            .await
            .is_err()
        {
            return Ok(());
        }
        // A dropped answer means a concurrent close won the race; the thread is done either way.
        answer.await.unwrap_or(Ok(()))
    }

    /// The storage's condition as the writer last found it: the fault writes hit (cleared
    /// by the next successful write), how long the running job has taken, how many wait.
    /// Never waits for the writer.
    pub fn health(&self) -> StorageHealth {
        let queued = self.sender.max_capacity() - self.sender.capacity();
        self.tracker.read(queued)
    }

    /// How many group transactions the writer committed so far, holding how many jobs: the
    /// measure of group commit, for benchmarks and tests.
    pub fn commits(&self) -> Commits {
        self.tracker.commits()
    }

    /// Writes one small row (and commits it) to learn whether the database takes writes
    /// now; a success clears the fault [`Storage::health`] reports. For `/health`, which
    /// would otherwise report a fault until the next real write, and which anyone may ask:
    /// at most one probe a second is sent, a call within that time returns at once.
    pub async fn probe(&self) -> Result<(), StorageError> {
        if !self.tracker.may_probe() {
            return Ok(());
        }
        self.grouped(|conn| {
            conn.execute(
                "INSERT INTO storage_probe (id, at) VALUES (1, unixepoch('subsec'))
                 ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                [],
            )?;
            Ok(())
        })
        .await
    }

    /// The schema version recorded in the database, for diagnostics (`/health`, logs).
    pub async fn schema_version(&self) -> Result<usize, StorageError> {
        self.grouped(|conn| {
            let version = migrations::user_version(conn)?;
            usize::try_from(version)
                .map_err(|_| StorageError::Corrupt(format!("negative schema version {version}")))
        })
        .await
    }

    /// Runs SQLite's full integrity check; [`StorageError::Corrupt`] lists what it found.
    /// Slow on large databases: meant for start-up checks, tests and operators, not hot paths.
    pub async fn integrity_check(&self) -> Result<(), StorageError> {
        self.call(|conn| {
            let mut problems = Vec::new();
            conn.pragma_query(None, "integrity_check", |row| {
                problems.push(row.get::<_, String>(0)?);
                Ok(())
            })?;
            if problems == ["ok"] {
                Ok(())
            } else {
                Err(StorageError::Corrupt(problems.join("; ")))
            }
        })
        .await
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
