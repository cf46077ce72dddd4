//! The writer thread: the only owner of the SQLite connection.
//!
//! SQLite calls block, so they cannot run on the async runtime; and SQLite allows one writer
//! at a time anyway. One dedicated OS thread therefore owns the connection and runs jobs in
//! arrival order; async callers hand it boxed closures over a bounded channel (which gives
//! back-pressure without blocking) and await the answer on a oneshot.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::health::Tracker;
use super::{connection, StorageError};

/// How many jobs may wait for the writer before callers are made to wait for room.
const QUEUE_CAPACITY: usize = 1024;

/// A unit of work for the writer thread; it delivers its own result.
type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Where the writer thread sends one answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

/// Answers once the database is open and migrated, or could not be.
pub(super) type Ready = oneshot::Receiver<Result<(), StorageError>>;

/// What travels to the writer thread.
pub(super) enum Msg {
    /// Run this against the connection.
    Job(Job),
    /// Stop taking jobs, checkpoint, close, then answer.
    Shutdown(Reply<()>),
}

/// Starts the writer thread for the database at `path`; returns the job queue and the
/// receiver of the thread's verdict on opening the database.
pub(super) fn spawn(path: Arc<Path>) -> Result<(mpsc::Sender<Msg>, Ready), StorageError> {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("storage-writer".to_owned())
        .spawn(move || run(&path, receiver, ready_tx))
        .map_err(StorageError::Spawn)?;
    Ok((sender, ready_rx))
}

/// Wraps a caller's closure into a job: runs it, turns a panic into an error for this caller
/// only, tells `tracker` what the outcome says about the storage, and sends the result back.
pub(super) fn job<T, F>(f: F, reply: Reply<T>, tracker: Tracker) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
{
    Box::new(move |conn: &mut Connection| {
        tracker.started();
        let changes = conn.total_changes();
        // AssertUnwindSafe: the only state that outlives the panic is the connection, and
        // `run` rolls back whatever transaction the job left open before the next job.
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|payload| Err(StorageError::JobPanicked(panic_message(&*payload))));
        // A job that returns inside a transaction it began has committed nothing: `run` rolls
        // it back, so the caller must not be told its write succeeded.
        let result = match result {
            Ok(_) if !conn.is_autocommit() => Err(StorageError::TransactionLeftOpen),
            other => other,
        };
        let fault = result.as_ref().err().and_then(StorageError::fault);
        tracker.ended(fault, result.is_ok() && conn.total_changes() > changes);
        // The caller may have stopped waiting (its future was dropped); the job still ran,
        // and there is nobody left to tell.
        let _ = reply.send(result);
    })
}

fn run(path: &Path, mut receiver: mpsc::Receiver<Msg>, ready: Reply<()>) {
    let mut conn = match connection::open(path) {
        Ok(conn) => conn,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    tracing::info!(path = %path.display(), "storage opened");
    if ready.send(Ok(())).is_err() {
        // `open` was cancelled; nobody holds a handle, so close at once.
        report_close(connection::close(conn));
        return;
    }

    // `None` once every handle is dropped and the queue is drained.
    let closer = loop {
        match receiver.blocking_recv() {
            Some(Msg::Job(job)) => {
                job(&mut conn);
                end_stray_transaction(&conn);
            }
            Some(Msg::Shutdown(reply)) => break Some(reply),
            None => break None,
        }
    };
    // Refuse jobs sent from now on; the ones already queued behind the shutdown are dropped
    // with the receiver, which tells their callers `Closed`.
    receiver.close();
    let result = connection::close(conn);
    match closer {
        Some(reply) => {
            if let Err(Err(err)) = reply.send(result) {
                report_close(Err(err));
            }
        }
        None => report_close(result),
    }
    tracing::info!(path = %path.display(), "storage closed");
}

/// A job that returns (or panics) inside a transaction it began itself would leave every
/// later write uncommitted, hence not durable; roll it back so each job starts clean.
fn end_stray_transaction(conn: &Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("storage job left a transaction open; rolling it back");
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %err, "storage could not roll back a stray transaction");
        }
    }
}

fn report_close(result: Result<(), StorageError>) {
    if let Err(err) = result {
        tracing::error!(error = %err, "storage did not close cleanly");
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_recovered_from_both_payload_kinds() {
        let literal = panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(&*literal), "literal");
        let formatted = panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "formatted 7");
        let other = panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "non-string panic payload");
    }

    #[test]
    fn a_panicking_job_answers_with_an_error_and_leaves_no_transaction() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let (reply, mut answer) = oneshot::channel::<Result<(), StorageError>>();
        let job = job(
            |conn: &mut Connection| {
                conn.execute_batch("BEGIN; INSERT INTO t VALUES (1);")?;
                panic!("boom")
            },
            reply,
            Tracker::default(),
        );
        job(&mut conn);
        end_stray_transaction(&conn);
        assert!(matches!(answer.try_recv(), Ok(Err(StorageError::JobPanicked(m))) if m == "boom"));
        assert!(conn.is_autocommit());
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0, "the panicking job's insert must be rolled back");
    }
}
