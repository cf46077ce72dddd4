//! The writer thread: the only owner of the SQLite connection, and group commit.
//!
//! SQLite calls block, so they cannot run on the async runtime; and SQLite allows one writer
//! at a time anyway. One dedicated OS thread therefore owns the connection and runs jobs in
//! arrival order; async callers hand it boxed closures over a bounded channel (which gives
//! back-pressure without blocking) and await the answer on a oneshot.
//!
//! **Group commit.** With `synchronous=FULL` every commit is an fsync, and an fsync costs far
//! more than a small job's work: one transaction per job made a hook's event batch wait
//! behind hundreds of creates' fsyncs. So the writer runs the jobs that are queued together
//! (`Msg::Grouped`, up to 256 jobs or 20 ms of work, `LIMITS`) in one
//! transaction with one fsync, each job inside a savepoint of its own. Nothing waits for a
//! group to fill: a group is whatever queued while the previous one committed.
//!
//! Invariants:
//! - A job that fails (or panics) is rolled back to its savepoint: its writes are gone, the
//!   other jobs of its group are untouched, and it gets its own error.
//! - No job is answered before its group's commit returned: an `Ok` is durable, as when
//!   every job committed alone.
//! - When the commit fails (a full disk, an I/O error), or a failure rolls the whole
//!   transaction back (SQLite does so for some I/O errors), every job of the group that had
//!   succeeded gets [`StorageError::NotCommitted`] with that cause, and nothing of the group
//!   is kept.
//! - A job that fails for the storage's condition (a [`Fault`](super::Fault)) ends its group
//!   there: what follows waits for the next transaction rather than join a doomed one.
//! - [`Msg::Alone`] jobs (any closure a caller passes to `Storage::call`, and the slow or
//!   whole-table jobs) run outside any group, after the group before them committed: they
//!   may begin their own transaction, and a long one holds up no one's commit.
//! - The health tracker hears each job's own outcome (a job's success counts as a write
//!   only once it is committed).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::health::Tracker;
use super::{connection, StorageError};

/// How many jobs may wait for the writer before callers are made to wait for room.
const QUEUE_CAPACITY: usize = 1024;

/// How much one group may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Most jobs in one transaction: what a failed commit takes down with it.
    jobs: usize,
    /// Work after which a group takes no more jobs and commits: its first job's caller
    /// waits for the whole group, so a long queue is cut into several commits.
    work: Duration,
}

/// The writer's group limits.
const LIMITS: Limits = Limits {
    jobs: 256,
    work: Duration::from_millis(20),
};

/// The savepoint each grouped job runs in; not rusqlite's `_rusqlite_sp`, which jobs use for
/// their own.
const JOB_SAVEPOINT: &str = "storage_writer_job";

/// A caller's closure wrapped for the writer: runs it and hands back how it went, with the
/// answer held until the writer knows what became of the job's writes.
pub(super) type Job = Box<dyn FnOnce(&mut Connection) -> Box<dyn Ran> + Send>;

/// Where the writer thread sends one answer.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StorageError>>;

/// Answers once the database is open and migrated, or could not be.
pub(super) type Ready = oneshot::Receiver<Result<(), StorageError>>;

/// What travels to the writer thread.
pub(super) enum Msg {
    /// Run inside the current group's transaction, in a savepoint of its own.
    Grouped(Job),
    /// Run outside any transaction, once the group before it is committed.
    Alone(Job),
    /// Stop taking jobs, checkpoint, close, then answer.
    Shutdown(Reply<()>),
}

/// A job that ran, its answer not sent yet.
pub(super) trait Ran: Send {
    /// The job's own error, if it failed (shared: it may also be why its group failed).
    fn error(&self) -> Option<&Arc<StorageError>>;
    /// Whether the job changed the database.
    fn wrote(&self) -> bool;
    /// Sends the caller its result, or `instead` in place of a success.
    fn answer(self: Box<Self>, instead: Option<StorageError>);
}

/// What one caller's closure returned, and where it goes.
struct Done<T> {
    result: Result<T, Arc<StorageError>>,
    wrote: bool,
    reply: Reply<T>,
}

impl<T: Send> Ran for Done<T> {
    fn error(&self) -> Option<&Arc<StorageError>> {
        self.result.as_ref().err()
    }

    fn wrote(&self) -> bool {
        self.wrote
    }

    fn answer(self: Box<Self>, instead: Option<StorageError>) {
        let result = match (self.result, instead) {
            (Ok(_), Some(error)) => Err(error),
            (Ok(value), None) => Ok(value),
            // Its own error, unless its group's failure shares it.
            (Err(error), _) => {
                Err(Arc::try_unwrap(error).unwrap_or_else(StorageError::NotCommitted))
            }
        };
        // The caller may have stopped waiting (its future was dropped); the job still ran,
        // and there is nobody left to tell.
        let _ = self.reply.send(result);
    }
}

/// Starts the writer thread for the database at `path`, telling `tracker` how jobs go;
/// returns the job queue and the receiver of the thread's verdict on opening the database.
pub(super) fn spawn(
    path: Arc<Path>,
    tracker: Tracker,
) -> Result<(mpsc::Sender<Msg>, Ready), StorageError> {
    let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
    let (ready_tx, ready_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("storage-writer".to_owned())
        .spawn(move || run(&path, receiver, ready_tx, &tracker))
        .map_err(StorageError::Spawn)?;
    Ok((sender, ready_rx))
}

/// Wraps a caller's closure into a job: runs it, turns a panic into an error for this caller
/// only, and keeps the result for the writer to send once its fate is known.
pub(super) fn job<T, F>(f: F, reply: Reply<T>) -> Job
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
{
    Box::new(move |conn: &mut Connection| {
        let changes = conn.total_changes();
        // AssertUnwindSafe: the only state that outlives the panic is the connection, and
        // the writer rolls back what the job did (its savepoint, or the transaction it left
        // open) before the next job.
        let result = panic::catch_unwind(AssertUnwindSafe(|| f(conn)))
            .unwrap_or_else(|payload| Err(StorageError::JobPanicked(panic_message(&*payload))));
        Box::new(Done {
            wrote: result.is_ok() && conn.total_changes() > changes,
            result: result.map_err(Arc::new),
            reply,
        })
    })
}

fn run(path: &Path, mut receiver: mpsc::Receiver<Msg>, ready: Reply<()>, tracker: &Tracker) {
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

    // A message that ended a group early, handled next.
    let mut next = None;
    // `None` once every handle is dropped and the queue is drained.
    let closer = loop {
        match next.take().or_else(|| receiver.blocking_recv()) {
            Some(Msg::Grouped(job)) => {
                next = run_group(&mut conn, job, &mut receiver, tracker, LIMITS);
            }
            Some(Msg::Alone(job)) => run_alone(&mut conn, job, tracker),
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
    let commits = tracker.commits();
    tracing::info!(
        path = %path.display(),
        group_commits = commits.groups,
        grouped_jobs = commits.jobs,
        "storage closed"
    );
}

/// Runs a job outside any transaction, as it asks.
fn run_alone(conn: &mut Connection, job: Job, tracker: &Tracker) {
    tracker.started();
    let ran = job(conn);
    // A job that returns inside a transaction it began has committed nothing: it is rolled
    // back, so the caller must not be told its write succeeded.
    let left_open = !conn.is_autocommit();
    end_stray_transaction(conn);
    finish(
        ran,
        left_open.then_some(StorageError::TransactionLeftOpen),
        tracker,
    );
}

/// How one grouped job went.
enum Step {
    /// It ran; if it failed, its writes are rolled back and the group goes on.
    Kept(Box<dyn Ran>),
    /// The group's transaction did not survive it, for this cause.
    Lost(Box<dyn Ran>, Arc<StorageError>),
    /// Its savepoint could not be opened: it did not run.
    Unrun(Job),
}

/// Runs `first` and the grouped jobs queued behind it in one transaction, commits it, then
/// answers them all. Returns what ended the group early (a job to run alone, a job that
/// could not run in the group, or the shutdown), to be handled next.
fn run_group(
    conn: &mut Connection,
    first: Job,
    receiver: &mut mpsc::Receiver<Msg>,
    tracker: &Tracker,
    limits: Limits,
) -> Option<Msg> {
    if let Err(error) = conn.execute_batch("BEGIN") {
        tracing::warn!(%error, "storage could not begin a group transaction; the job runs alone");
        run_alone(conn, first, tracker);
        return None;
    }
    tracker.started();
    let began = Instant::now();
    let mut group: Vec<Box<dyn Ran>> = Vec::new();
    let mut job = first;
    let next = loop {
        let ran = match run_in_savepoint(conn, job) {
            Step::Kept(ran) => ran,
            Step::Lost(ran, cause) => {
                group.push(ran);
                abandon(conn, group, &cause, tracker);
                return None;
            }
            Step::Unrun(job) => break Some(Msg::Alone(job)),
        };
        let faulted = ran.error().is_some_and(|error| error.fault().is_some());
        group.push(ran);
        if faulted || group.len() >= limits.jobs || began.elapsed() >= limits.work {
            break None;
        }
        match receiver.try_recv() {
            Ok(Msg::Grouped(queued)) => job = queued,
            Ok(other) => break Some(other),
            // Empty, or every handle gone: the main loop finds out which.
            Err(_) => break None,
        }
    };
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            tracker.committed(group.len());
            for ran in group {
                finish(ran, None, tracker);
            }
        }
        Err(error) => {
            tracing::error!(%error, jobs = group.len(), "storage could not commit a group of jobs; none is kept");
            abandon(conn, group, &Arc::new(StorageError::Sqlite(error)), tracker);
        }
    }
    next
}

/// Runs one job of a group inside a savepoint of its own, rolled back if the job failed.
fn run_in_savepoint(conn: &mut Connection, job: Job) -> Step {
    if let Err(error) = conn.execute_batch(&format!("SAVEPOINT {JOB_SAVEPOINT}")) {
        tracing::warn!(%error, "storage could not open a job's savepoint; the job runs alone");
        return Step::Unrun(job);
    }
    let ran = job(conn);
    if conn.is_autocommit() {
        // SQLite rolled the transaction back on the job's error (it does for some I/O
        // errors and a full disk), or the job ended it itself.
        let cause = ran
            .error()
            .cloned()
            .unwrap_or_else(|| Arc::new(StorageError::TransactionEnded));
        return Step::Lost(ran, cause);
    }
    let undone = match ran.error() {
        Some(_) => conn.execute_batch(&format!("ROLLBACK TO {JOB_SAVEPOINT}")),
        None => Ok(()),
    };
    match undone.and_then(|()| conn.execute_batch(&format!("RELEASE {JOB_SAVEPOINT}"))) {
        Ok(()) => Step::Kept(ran),
        // What the transaction holds is unknown: none of it may be committed.
        Err(error) => Step::Lost(ran, Arc::new(StorageError::Sqlite(error))),
    }
}

/// The group's transaction is not to be committed: rolls back what is left of it and tells
/// every job that had succeeded why its writes are gone.
fn abandon(
    conn: &Connection,
    group: Vec<Box<dyn Ran>>,
    cause: &Arc<StorageError>,
    tracker: &Tracker,
) {
    rollback(conn);
    for ran in group {
        finish(
            ran,
            Some(StorageError::NotCommitted(Arc::clone(cause))),
            tracker,
        );
    }
}

/// Tells the tracker how a job ended (`instead` replaces a success) and answers its caller.
fn finish(ran: Box<dyn Ran>, instead: Option<StorageError>, tracker: &Tracker) {
    let fault = match (ran.error(), &instead) {
        (Some(error), _) => error.fault(),
        (None, Some(error)) => error.fault(),
        (None, None) => None,
    };
    let wrote = ran.error().is_none() && instead.is_none() && ran.wrote();
    tracker.ended(fault, wrote);
    ran.answer(instead);
}

/// A job that returns (or panics) inside a transaction it began itself would leave every
/// later write uncommitted, hence not durable; roll it back so each job starts clean.
fn end_stray_transaction(conn: &Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("storage job left a transaction open; rolling it back");
        rollback(conn);
    }
}

/// Rolls back the open transaction, if one is.
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            tracing::error!(error = %err, "storage could not roll back a transaction");
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

    /// No work bound: a test's group is never cut by how slow the machine is.
    const UNBOUNDED: Limits = Limits {
        jobs: LIMITS.jobs,
        work: Duration::MAX,
    };

    #[test]
    fn panic_messages_are_recovered_from_both_payload_kinds() {
        let literal = panic::catch_unwind(|| panic!("literal")).unwrap_err();
        assert_eq!(panic_message(&*literal), "literal");
        let formatted = panic::catch_unwind(|| panic!("formatted {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "formatted 7");
        let other = panic::catch_unwind(|| std::panic::panic_any(7_u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "non-string panic payload");
    }

    type Answer = oneshot::Receiver<Result<(), StorageError>>;

    /// A job running `sql`, and where its answer arrives.
    fn sql_job(sql: &'static str) -> (Job, Answer) {
        let (reply, answer) = oneshot::channel();
        (job(move |conn| Ok(conn.execute_batch(sql)?), reply), answer)
    }

    fn values(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT x FROM t ORDER BY x").unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Queues `jobs` behind `first`, as callers would while the writer is busy, and runs
    /// them as the writer does: they form one group.
    fn run_as_one_group(conn: &mut Connection, first: Job, jobs: Vec<Job>, tracker: &Tracker) {
        let (sender, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
        for job in jobs {
            assert!(sender.try_send(Msg::Grouped(job)).is_ok());
        }
        assert!(run_group(conn, first, &mut receiver, tracker, UNBOUNDED).is_none());
        assert!(receiver.try_recv().is_err(), "every job ran in the group");
        assert!(conn.is_autocommit(), "the group's transaction is over");
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
        );
        run_alone(&mut conn, job, &Tracker::default());
        assert!(matches!(answer.try_recv(), Ok(Err(StorageError::JobPanicked(m))) if m == "boom"));
        assert!(conn.is_autocommit());
        assert!(
            values(&conn).is_empty(),
            "the panicking job's insert must be rolled back"
        );
    }

    #[test]
    fn a_failing_job_in_a_group_loses_only_its_own_writes() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)")
            .unwrap();
        let tracker = Tracker::default();
        let (first, mut first_answer) = sql_job("INSERT INTO t VALUES (1)");
        // Writes 2, then fails: 2 must go with it.
        let (refused, mut refused_answer) =
            sql_job("INSERT INTO t VALUES (2); INSERT INTO t VALUES (1);");
        let (third, mut third_answer) = sql_job("INSERT INTO t VALUES (3)");
        let (reply, mut panicked_answer) = oneshot::channel::<Result<(), StorageError>>();
        let panicking = job(
            |conn: &mut Connection| {
                conn.execute_batch("INSERT INTO t VALUES (4)")?;
                panic!("boom")
            },
            reply,
        );
        let (last, mut last_answer) = sql_job("INSERT INTO t VALUES (5)");
        run_as_one_group(
            &mut conn,
            first,
            vec![refused, third, panicking, last],
            &tracker,
        );

        assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
        assert!(matches!(
            refused_answer.try_recv(),
            Ok(Err(StorageError::Sqlite(_)))
        ));
        assert!(matches!(third_answer.try_recv(), Ok(Ok(()))));
        assert!(matches!(
            panicked_answer.try_recv(),
            Ok(Err(StorageError::JobPanicked(_)))
        ));
        assert!(matches!(last_answer.try_recv(), Ok(Ok(()))));
        assert_eq!(values(&conn), [1, 3, 5]);
        let commits = tracker.commits();
        assert_eq!(
            (commits.groups, commits.jobs),
            (1, 5),
            "one transaction held them all"
        );
    }

    /// A deferred foreign key is only checked at COMMIT: each job's savepoint is released
    /// without complaint, and then SQLite refuses to commit the group, as it would on a full
    /// disk.
    #[test]
    fn a_group_whose_commit_fails_acknowledges_nothing_and_keeps_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (x INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO parent VALUES (1), (2);",
        )
        .unwrap();
        let tracker = Tracker::default();
        let (first, first_answer) = sql_job("INSERT INTO t VALUES (1)");
        let (orphan, orphan_answer) = sql_job("INSERT INTO t VALUES (9)");
        let (last, last_answer) = sql_job("INSERT INTO t VALUES (2)");
        run_as_one_group(&mut conn, first, vec![orphan, last], &tracker);

        for mut answer in [first_answer, orphan_answer, last_answer] {
            match answer.try_recv() {
                Ok(Err(StorageError::NotCommitted(cause))) => {
                    assert!(matches!(*cause, StorageError::Sqlite(_)), "{cause:?}");
                }
                other => panic!("a job of a group that did not commit answered {other:?}"),
            }
        }
        assert!(values(&conn).is_empty(), "nothing of the group is kept");
        assert_eq!(tracker.commits().groups, 0);
        // The writer goes on: the next group commits.
        let (next, mut next_answer) = sql_job("INSERT INTO t VALUES (2)");
        run_as_one_group(&mut conn, next, Vec::new(), &tracker);
        assert!(matches!(next_answer.try_recv(), Ok(Ok(()))));
        assert_eq!(values(&conn), [2]);
    }

    #[test]
    fn a_job_that_ends_the_shared_transaction_fails_with_the_jobs_before_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let tracker = Tracker::default();
        let (first, mut first_answer) = sql_job("INSERT INTO t VALUES (1)");
        let (ender, mut ender_answer) = sql_job("ROLLBACK");
        let (after, mut after_answer) = sql_job("INSERT INTO t VALUES (3)");
        let (sender, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
        assert!(sender.try_send(Msg::Grouped(ender)).is_ok());
        assert!(sender.try_send(Msg::Grouped(after)).is_ok());
        assert!(run_group(&mut conn, first, &mut receiver, &tracker, UNBOUNDED).is_none());
        for answer in [&mut first_answer, &mut ender_answer] {
            assert!(matches!(
                answer.try_recv(),
                Ok(Err(StorageError::NotCommitted(_)))
            ));
        }
        assert!(values(&conn).is_empty());
        // What queued behind it is a group of its own.
        let Ok(Msg::Grouped(after)) = receiver.try_recv() else {
            panic!("the job after it was not left queued");
        };
        run_as_one_group(&mut conn, after, Vec::new(), &tracker);
        assert!(matches!(after_answer.try_recv(), Ok(Ok(()))));
        assert_eq!(values(&conn), [3]);
    }

    #[test]
    fn a_job_failing_for_the_storage_s_condition_ends_its_group() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let tracker = Tracker::default();
        let (first, mut first_answer) = sql_job("INSERT INTO t VALUES (1)");
        let (reply, mut full_answer) = oneshot::channel::<Result<(), StorageError>>();
        let full = job(
            |conn: &mut Connection| {
                conn.execute_batch("INSERT INTO t VALUES (2)")?;
                let code = rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL);
                Err(StorageError::Sqlite(rusqlite::Error::SqliteFailure(
                    code, None,
                )))
            },
            reply,
        );
        let (after, mut after_answer) = sql_job("INSERT INTO t VALUES (3)");
        let (sender, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
        assert!(sender.try_send(Msg::Grouped(full)).is_ok());
        assert!(sender.try_send(Msg::Grouped(after)).is_ok());
        assert!(run_group(&mut conn, first, &mut receiver, &tracker, UNBOUNDED).is_none());
        assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
        assert!(matches!(full_answer.try_recv(), Ok(Err(error)) if error.fault().is_some()));
        assert_eq!(values(&conn), [1]);
        assert!(
            after_answer.try_recv().is_err(),
            "the job behind a fault waits for the next transaction"
        );
        assert!(matches!(receiver.try_recv(), Ok(Msg::Grouped(_))));
    }

    #[test]
    fn a_job_to_run_alone_ends_the_group_and_waits_for_its_commit() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let tracker = Tracker::default();
        let (first, mut first_answer) = sql_job("INSERT INTO t VALUES (1)");
        let (alone, _alone_answer) = sql_job("BEGIN; INSERT INTO t VALUES (2); COMMIT;");
        let (sender, mut receiver) = mpsc::channel(QUEUE_CAPACITY);
        assert!(sender.try_send(Msg::Alone(alone)).is_ok());
        let next = run_group(&mut conn, first, &mut receiver, &tracker, UNBOUNDED);
        assert!(
            matches!(next, Some(Msg::Alone(_))),
            "the group hands the job back"
        );
        assert!(matches!(first_answer.try_recv(), Ok(Ok(()))));
        assert!(
            conn.is_autocommit(),
            "committed before the job that runs alone"
        );
    }
}
