//! The storage layer against real database files: modes, migrations, concurrency, and
//! durability across `kill -9`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use session_manager::storage::{NewEvent, Storage, StorageError, StoredEvent, SCHEMA_VERSION};
use tempfile::TempDir;

/// A fresh directory and the database path inside it, laid out as the server does (the
/// `sessions/` directory does not exist yet, so `open` must create it).
fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sessions").join("session_manager.db");
    (dir, db)
}

fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(db.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn event(kind: &str, session_id: Option<&str>, at: f64) -> NewEvent {
    NewEvent {
        kind: kind.to_owned(),
        session_id: session_id.map(str::to_owned),
        at,
        payload: json!({"kind": kind, "at": at}),
    }
}

fn seqs(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn opens_in_wal_mode_with_full_sync_and_foreign_keys() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let (mode, synchronous, foreign_keys) = storage
        .call(|conn| {
            let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
            let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0))?;
            let fk: i64 = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
            Ok((mode, sync, fk))
        })
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(synchronous, 2, "2 is FULL");
    assert_eq!(foreign_keys, 1);
    assert_eq!(storage.schema_version().await.unwrap(), SCHEMA_VERSION);

    // WAL is a property of the file, so any other connection sees it too.
    let outside = rusqlite::Connection::open(&db).unwrap();
    let mode: String = outside
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(outside);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn reopening_keeps_the_version_and_the_data() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(
            storage
                .append_event(event("e", Some("s"), f64::from(i)))
                .await
                .unwrap(),
        );
    }
    storage.close().await.unwrap();
    let wal = sidecar(&db, "-wal");
    assert!(
        !wal.exists() || fs::metadata(&wal).unwrap().len() == 0,
        "close must checkpoint the log into the database"
    );

    for _ in 0..2 {
        let storage = Storage::open(&db).await.unwrap();
        assert_eq!(storage.schema_version().await.unwrap(), SCHEMA_VERSION);
        assert_eq!(storage.events_since(0, None, 100).await.unwrap(), written);
        assert_eq!(storage.latest_seq().await.unwrap(), written[2].seq);
        storage.integrity_check().await.unwrap();
        storage.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_left_unchanged() {
    let (_dir, db) = temp_db();
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    let newer = i64::try_from(SCHEMA_VERSION).unwrap() + 1;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE from_the_future (x); INSERT INTO from_the_future VALUES (1);")
        .unwrap();
    conn.pragma_update(None, "user_version", newer).unwrap();
    drop(conn);
    let before = fs::read(&db).unwrap();

    let err = Storage::open(&db).await.unwrap_err();
    assert!(
        matches!(err, StorageError::NewerSchema { found, supported }
            if found == newer && supported == SCHEMA_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    assert_eq!(fs::read(&db).unwrap(), before, "the file must not change");
    assert!(!sidecar(&db, "-wal").exists(), "no switch to WAL either");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let (_dir, db) = temp_db();
    fs::create_dir_all(db.parent().unwrap()).unwrap();
    fs::write(&db, vec![0x5a; 8192]).unwrap();
    let err = Storage::open(&db).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Open { path, .. } if path == &db),
        "{err:?}"
    );
}

#[tokio::test]
async fn seq_is_monotonic_and_not_reused_after_prune_or_reopen() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let mut last = 0;
    for i in 0..5 {
        let stored = storage
            .append_event(event("old", None, f64::from(i)))
            .await
            .unwrap();
        assert!(stored.seq > last);
        last = stored.seq;
    }
    assert_eq!(storage.prune_events_before(10.0).await.unwrap(), 5);
    assert!(storage.events_since(0, None, 100).await.unwrap().is_empty());
    assert_eq!(storage.latest_seq().await.unwrap(), last);
    storage.close().await.unwrap();

    let storage = Storage::open(&db).await.unwrap();
    let fresh = storage
        .append_event(event("new", None, 20.0))
        .await
        .unwrap();
    assert!(
        fresh.seq > last,
        "{} reuses a pruned seq (<= {last})",
        fresh.seq
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn events_since_filters_by_session_and_limit() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let mut a = Vec::new();
    for i in 0..10 {
        let session = ["a", "b"][i % 2];
        let stored = storage
            .append_event(event("e", Some(session), 1.0))
            .await
            .unwrap();
        if session == "a" {
            a.push(stored);
        }
    }
    storage
        .append_event(event("global", None, 1.0))
        .await
        .unwrap();

    let only_a = storage
        .events_since(0, Some("a".to_owned()), 100)
        .await
        .unwrap();
    assert_eq!(only_a, a);
    let page = storage
        .events_since(a[1].seq, Some("a".to_owned()), 2)
        .await
        .unwrap();
    assert_eq!(seqs(&page), vec![a[2].seq, a[3].seq]);
    let all = storage.events_since(0, None, 4).await.unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(storage
        .events_since(0, Some("nobody".to_owned()), 100)
        .await
        .unwrap()
        .is_empty());
    storage.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_callers_all_succeed() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let session = format!("s{}", i % 7);
                storage
                    .append_event(event("concurrent", Some(&session), f64::from(i)))
                    .await
            })
        })
        .collect();
    let mut got = Vec::new();
    for task in tasks {
        got.push(task.await.unwrap().unwrap().seq);
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 200, "every caller gets its own seq");
    let stored = storage.events_since(0, None, 1000).await.unwrap();
    assert_eq!(seqs(&stored), got);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_panicking_job_fails_alone() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let err = storage
        .call(|conn| -> Result<(), StorageError> {
            conn.execute_batch("BEGIN")?;
            conn.execute(
                "INSERT INTO events (at, kind, payload) VALUES (1.0, 'half', '{}')",
                [],
            )?;
            panic!("job exploded")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::JobPanicked(message) if message == "job exploded"),
        "{err:?}"
    );

    let stored = storage
        .append_event(event("after", None, 2.0))
        .await
        .unwrap();
    let all = storage.events_since(0, None, 100).await.unwrap();
    assert_eq!(
        all,
        vec![stored],
        "the panicking job's write is rolled back"
    );

    let err = storage
        .call(|_| -> Result<(), StorageError> {
            Err(StorageError::InvalidData("refused".to_owned()))
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::InvalidData(_)), "{err:?}");
    storage.close().await.unwrap();
}

/// On a single-threaded runtime a blocking `call` would stall every other task. The job
/// waits for a signal from a task that needs the runtime to make progress, so the job only
/// completes if the runtime kept running while it waited; otherwise it times out and the
/// test fails (no timing is asserted).
#[tokio::test(flavor = "current_thread")]
async fn a_slow_job_does_not_block_the_runtime() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let (ticked, wait_for_ticks) = mpsc::channel::<u32>();
    let ticker = tokio::spawn(async move {
        for tick in 1..=10 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if tick == 10 {
                ticked.send(tick).unwrap();
            }
        }
    });
    let seen = storage
        .call(move |_| Ok(wait_for_ticks.recv_timeout(Duration::from_secs(30)).ok()))
        .await
        .unwrap();
    assert_eq!(seen, Some(10), "the ticker starved while the job ran");
    ticker.await.unwrap();
    storage.close().await.unwrap();
}

#[tokio::test]
async fn close_stops_every_clone() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let other = storage.clone();
    let third = storage.clone();
    storage.close().await.unwrap();
    let err = other
        .append_event(event("late", None, 1.0))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Closed), "{err:?}");
    third.close().await.unwrap();

    let storage = Storage::open(&db).await.unwrap();
    assert!(storage.events_since(0, None, 10).await.unwrap().is_empty());
    storage.close().await.unwrap();
}

// --- Durability: acknowledged writes survive SIGKILL ---------------------------------------

/// Set (to the database path) only in the child process of the durability test.
const CHILD_DB_ENV: &str = "SESSION_MANAGER_TEST_DURABILITY_CHILD_DB";
/// The child's test name, as `--exact` wants it.
const CHILD_TEST: &str = "durability_child";
const ROUNDS: usize = 5;
const MIN_ACKS: usize = 50;
/// A backstop so an orphaned child cannot write forever (it also stops when its stdout closes).
const CHILD_MAX_EVENTS: u64 = 1_000_000;
/// How long the parent waits for the child's next line before giving up.
const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The child half: appends events as fast as it can and prints each acknowledged seq. Only
/// the parent test runs it (as a separate process); on its own it returns at once.
#[test]
#[ignore = "child process of acknowledged_writes_survive_sigkill"]
fn durability_child() {
    let Some(db) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = Storage::open(Path::new(&db)).await.unwrap();
        let pid = std::process::id();
        let mut out = std::io::stdout().lock();
        for n in 0..CHILD_MAX_EVENTS {
            let stored = storage
                .append_event(NewEvent {
                    kind: "durability".to_owned(),
                    session_id: None,
                    at: 1.0,
                    payload: json!({"pid": pid, "n": n}),
                })
                .await
                .unwrap();
            if writeln!(out, "ACK {} {n}", stored.seq)
                .and_then(|()| out.flush())
                .is_err()
            {
                return; // the parent is gone
            }
        }
    });
}

/// Kills and reaps the child on every path out of the test, panics included.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Debug, Clone, Copy)]
struct Ack {
    seq: i64,
    n: u64,
}

/// libtest may print its own text around the child's output, so the ack is looked for
/// anywhere in the line.
fn parse_ack(line: &str) -> Option<Ack> {
    let (_, rest) = line.split_once("ACK ")?;
    let mut fields = rest.split_whitespace();
    Some(Ack {
        seq: fields.next()?.parse().ok()?,
        n: fields.next()?.parse().ok()?,
    })
}

/// Runs one child until it has acknowledged at least `wanted` events, SIGKILLs it mid-stream
/// and returns its pid with every ack it printed (including those still in the pipe).
fn run_child_until_killed(db: &Path, wanted: usize) -> (u32, Vec<Ack>) {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                CHILD_TEST,
                "--nocapture",
                "--ignored",
                "--test-threads=1",
            ])
            .env(CHILD_DB_ENV, db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut acks = Vec::new();
    while acks.len() < wanted {
        let line = lines
            .recv_timeout(LINE_TIMEOUT)
            .unwrap_or_else(|err| panic!("child stopped after {} acks: {err}", acks.len()));
        acks.extend(parse_ack(&line));
    }
    kill(Pid::from_raw(i32::try_from(pid).unwrap()), Signal::SIGKILL).unwrap();
    let status = child.0.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    // The pipe is at EOF now that the child is dead; what it still held was acknowledged.
    reader.join().unwrap();
    acks.extend(lines.try_iter().filter_map(|line| parse_ack(&line)));
    (pid, acks)
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let (_dir, db) = temp_db();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut previous_last_seq = 0;
    for round in 0..ROUNDS {
        let (pid, acks) = run_child_until_killed(&db, MIN_ACKS + round * 11);
        assert!(acks.len() >= MIN_ACKS);
        assert!(
            acks.windows(2).all(|w| w[0].seq < w[1].seq),
            "acknowledged seqs must increase"
        );
        assert!(
            acks[0].seq > previous_last_seq,
            "round {round} reused a seq from an earlier round"
        );
        previous_last_seq = acks[acks.len() - 1].seq;

        runtime.block_on(async {
            let storage = Storage::open(&db).await.unwrap();
            storage.integrity_check().await.unwrap();
            let stored: HashMap<i64, StoredEvent> = storage
                .events_since(0, None, usize::MAX)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.seq, e))
                .collect();
            for ack in &acks {
                let event = stored.get(&ack.seq).unwrap_or_else(|| {
                    panic!("round {round}: acknowledged seq {} was lost", ack.seq)
                });
                assert_eq!(event.payload, json!({"pid": pid, "n": ack.n}));
            }
            storage.close().await.unwrap();
        });
    }
}

#[tokio::test]
async fn a_job_that_leaves_its_transaction_open_fails_and_writes_nothing() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let answer = storage
        .call(|conn| {
            conn.execute_batch(
                "BEGIN; INSERT INTO events (at, kind, payload) VALUES (1.0, 'k', '{}');",
            )?;
            Ok(())
        })
        .await;
    assert!(
        matches!(answer, Err(StorageError::TransactionLeftOpen)),
        "{answer:?}"
    );
    assert!(storage.events_since(0, None, 10).await.unwrap().is_empty());
    // The next job starts clean.
    storage
        .append_event(event("after", None, 2.0))
        .await
        .unwrap();
    storage.close().await.unwrap();
}

const DISK_FULL_CHILD: &str = "disk_full_child";
const DISK_FULL_DB_ENV: &str = "SESSION_MANAGER_TEST_DISK_FULL_DB";

/// Child half of `a_failed_commit_is_never_acknowledged`: a file-size limit stops the WAL
/// from growing, so the next append cannot commit. Prints what `append_event` answered and
/// how many events are readable afterwards.
#[test]
#[ignore = "child process of a_failed_commit_is_never_acknowledged"]
fn disk_full_child() {
    let Some(db) = std::env::var_os(DISK_FULL_DB_ENV) else {
        return;
    };
    let db = PathBuf::from(db);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = Storage::open(&db).await.unwrap();
        storage
            .append_event(event("warm", None, 1.0))
            .await
            .unwrap();
        let limit = fs::metadata(sidecar(&db, "-wal")).unwrap().len();
        // SAFETY: plain libc calls that change only this process's own limits.
        unsafe {
            nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
            let rlimit = nix::libc::rlimit {
                rlim_cur: limit,
                rlim_max: nix::libc::RLIM_INFINITY,
            };
            assert_eq!(nix::libc::setrlimit(nix::libc::RLIMIT_FSIZE, &rlimit), 0);
        }
        let mut big = event("big", None, 2.0);
        big.payload = json!({ "big": "x".repeat(64 * 1024) });
        let answer = storage.append_event(big).await;
        let visible = storage.events_since(0, None, 100).await.unwrap().len();
        match answer {
            Ok(stored) => println!("RESULT ACK {} VISIBLE {visible}", stored.seq),
            Err(error) => println!("RESULT ERR {error} VISIBLE {visible}"),
        }
    });
}

#[test]
fn a_failed_commit_is_never_acknowledged() {
    let result = child_result(DISK_FULL_CHILD, DISK_FULL_DB_ENV);
    assert!(
        result.starts_with("ERR ") && result.ends_with("VISIBLE 1"),
        "a write that could not commit must fail, and only the first event exist: {result}"
    );
}

/// Runs the ignored test `child` in a child process of its own (its file-size limit must
/// not reach this one) on a fresh database named by `db_env`, and returns what it printed
/// after `RESULT `.
fn child_result(child: &str, db_env: &str) -> String {
    let (_dir, db) = temp_db();
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child, "--nocapture", "--ignored"])
            .env(db_env, &db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut stdout = child.0.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        let _ = sender.send(text);
    });
    let output = receiver.recv_timeout(LINE_TIMEOUT).unwrap();
    output
        .lines()
        .find_map(|line| line.split_once("RESULT ").map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no result from the child: {output}"))
}

/// Holds the writer thread in a job of its own until the returned sender is dropped or
/// sent to, so that the jobs sent meanwhile queue up and are then committed as one group.
async fn hold_writer(storage: &Storage) -> (tokio::task::JoinHandle<()>, mpsc::Sender<()>) {
    let (release, released) = mpsc::channel::<()>();
    let holder = storage.clone();
    let held = tokio::spawn(async move {
        holder
            .call(move |_| {
                let _ = released.recv_timeout(LINE_TIMEOUT);
                Ok(())
            })
            .await
            .unwrap();
    });
    wait_for(
        || storage.health().busy_for.is_some(),
        "the writer to run the holding job",
    )
    .await;
    (held, release)
}

/// Polls `done` until it holds; fails the test after [`LINE_TIMEOUT`].
async fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + LINE_TIMEOUT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "waited too long for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends the jobs `send` starts (one task each) while the writer is held, waits until all
/// of them are queued, then lets the writer go: it commits them as one group.
async fn queued_together<T, F>(storage: &Storage, jobs: Vec<F>) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (held, release) = hold_writer(storage).await;
    let count = jobs.len();
    let tasks: Vec<_> = jobs.into_iter().map(tokio::spawn).collect();
    wait_for(|| storage.health().queued == count, "the jobs to queue").await;
    release.send(()).unwrap();
    held.await.unwrap();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

/// One append, boxed so that appends and an insert can be queued together.
type Queued =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<i64>, StorageError>> + Send>>;

fn append_job(storage: &Storage, at: f64) -> Queued {
    let storage = storage.clone();
    Box::pin(async move {
        let stored = storage.append_event(event("grouped", None, at)).await?;
        Ok(Some(stored.seq))
    })
}

#[tokio::test]
async fn a_failing_job_committed_with_others_loses_only_its_own_writes() {
    let (_dir, db) = temp_db();
    let storage = Storage::open(&db).await.unwrap();
    let first = storage
        .append_event(event("first", None, 1.0))
        .await
        .unwrap();
    let before = storage.commits();

    // Writes seq 500, then hits the seq the log already holds: the whole batch is refused.
    let refused = {
        let storage = storage.clone();
        let rows: Arc<[StoredEvent]> = vec![
            StoredEvent {
                seq: 500,
                ..first.clone()
            },
            first.clone(),
        ]
        .into();
        Box::pin(async move { storage.insert_events(rows).await.map(|()| None) }) as Queued
    };
    let jobs = vec![
        append_job(&storage, 2.0),
        append_job(&storage, 3.0),
        refused,
        append_job(&storage, 4.0),
    ];
    let answers = queued_together(&storage, jobs).await;

    let after = storage.commits();
    assert_eq!(
        (after.groups - before.groups, after.jobs - before.jobs),
        (1, 4),
        "the four jobs were committed in one transaction"
    );
    assert!(
        matches!(&answers[2], Err(StorageError::Sqlite(_))),
        "the refused batch gets its own error: {:?}",
        answers[2]
    );
    let mut appended: Vec<i64> = [0, 1, 3]
        .iter()
        .map(|&n| answers[n].as_ref().unwrap().unwrap())
        .collect();
    appended.sort_unstable();
    // Had seq 500 survived, the counter would have moved past it.
    assert_eq!(appended, [2, 3, 4], "the refused batch's seq 500 is gone");
    let stored = storage.events_since(0, None, 100).await.unwrap();
    assert_eq!(seqs(&stored), [1, 2, 3, 4]);
    storage.close().await.unwrap();

    // And it is all on disk.
    let storage = Storage::open(&db).await.unwrap();
    assert_eq!(
        seqs(&storage.events_since(0, None, 100).await.unwrap()),
        [1, 2, 3, 4]
    );
    storage.close().await.unwrap();
}

const GROUP_FAIL_CHILD: &str = "group_commit_failure_child";
const GROUP_FAIL_DB_ENV: &str = "SESSION_MANAGER_TEST_GROUP_FAIL_DB";

/// Child half of `a_group_whose_commit_fails_acknowledges_none_of_its_jobs`: as in
/// `disk_full_child`, a file-size limit stops the WAL from growing, then four appends are
/// queued together. Prints how they were answered and what is readable afterwards.
#[test]
#[ignore = "child process of a_group_whose_commit_fails_acknowledges_none_of_its_jobs"]
fn group_commit_failure_child() {
    let Some(db) = std::env::var_os(GROUP_FAIL_DB_ENV) else {
        return;
    };
    let db = PathBuf::from(db);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let storage = Storage::open(&db).await.unwrap();
        storage.append_event(event("warm", None, 1.0)).await.unwrap();
        let limit = fs::metadata(sidecar(&db, "-wal")).unwrap().len();
        // SAFETY: plain libc calls that change only this process's own limits.
        unsafe {
            nix::libc::signal(nix::libc::SIGXFSZ, nix::libc::SIG_IGN);
            let rlimit = nix::libc::rlimit {
                rlim_cur: limit,
                rlim_max: nix::libc::RLIM_INFINITY,
            };
            assert_eq!(nix::libc::setrlimit(nix::libc::RLIMIT_FSIZE, &rlimit), 0);
        }
        let jobs = (0..4).map(|n| append_job(&storage, 2.0 + f64::from(n))).collect();
        let answers = queued_together(&storage, jobs).await;
        let acked = answers.iter().filter(|answer| answer.is_ok()).count();
        let not_committed = answers
            .iter()
            .filter(|answer| {
                matches!(answer, Err(error @ StorageError::NotCommitted(_)) if error.fault().is_some())
            })
            .count();
        let groups = storage.commits().groups;
        let visible = storage.events_since(0, None, 100).await.unwrap().len();
        println!("RESULT acked={acked} not_committed={not_committed} visible={visible} groups={groups}");
    });
}

#[test]
fn a_group_whose_commit_fails_acknowledges_none_of_its_jobs() {
    let result = child_result(GROUP_FAIL_CHILD, GROUP_FAIL_DB_ENV);
    // groups=1: the warm append's; the failed group is not counted.
    assert_eq!(
        result, "acked=0 not_committed=4 visible=1 groups=1",
        "every job of a group that could not commit fails with the storage's fault, and none is stored"
    );
}
