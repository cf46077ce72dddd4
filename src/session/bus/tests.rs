//! The bus, its log, its backlog and its writer, against a real database.

use serde_json::json;
use uuid::Uuid;

use super::backlog::{row_bytes, Backlog};
use super::record::EVENTS_LOST;
use super::*;

fn purged(n: u128) -> SessionEvent {
    SessionEvent::Purged(Uuid::from_u128(n))
}

fn log_line() -> SessionEvent {
    SessionEvent::Agent {
        session: Uuid::nil(),
        event: AgentEvent::Log {
            agent: "a".into(),
            line: crate::agent::LogLine {
                stream: crate::agent::Stream::Stdout,
                line: "hello".into(),
                timestamp: std::time::SystemTime::now(),
            },
        },
    }
}

/// A stand-in for the API's mapping: the purged session as data.
fn encode(published: &Published) -> Value {
    let session = match &published.event {
        SessionEvent::Purged(id) => Some(id.to_string()),
        _ => None,
    };
    json!({ "session": session })
}

const WEEK: Duration = Duration::from_secs(7 * 86_400);

async fn storage(dir: &tempfile::TempDir) -> Storage {
    Storage::open(&dir.path().join("events.db")).await.unwrap()
}

fn seqs(events: &[StoredEvent]) -> Vec<i64> {
    events.iter().map(|e| e.seq).collect()
}

#[test]
fn kept_events_are_numbered_in_order_and_log_lines_are_not() {
    let bus = EventBus::new(41);
    let mut rx = bus.subscribe();
    let first = bus.publish(purged(1));
    let log = bus.publish(log_line());
    let second = bus.publish(purged(2));
    assert_eq!((first.seq, log.seq, second.seq), (Some(42), None, Some(43)));
    assert_eq!(bus.last_seq(), 43);
    let seen: Vec<_> = (0..3).map(|_| rx.try_recv().unwrap().seq).collect();
    assert_eq!(seen, [Some(42), None, Some(43)]);
}

#[test]
fn a_session_version_moves_with_its_events_and_touches_and_never_comes_back() {
    let bus = EventBus::new(0);
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let hook = |session| SessionEvent::Hook {
        session,
        name: "Stop".into(),
        payload: json!({}),
    };
    let mut seen = vec![bus.changes(a)];
    bus.publish(hook(a));
    seen.push(bus.changes(a));
    let b_before = bus.changes(b);
    bus.touch(a);
    seen.push(bus.changes(a));
    assert_eq!(bus.changes(b), b_before, "another session's change");
    let quiet = bus.changes(a);
    bus.publish(log_line());
    let mut line_of_a = log_line();
    if let SessionEvent::Agent { session, .. } = &mut line_of_a {
        *session = a;
    }
    bus.publish(line_of_a);
    assert_eq!(bus.changes(a), quiet, "output lines change nothing");
    bus.publish(purged(1));
    seen.push(bus.changes(a));
    bus.publish(hook(a));
    seen.push(bus.changes(a));
    let distinct: std::collections::BTreeSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len(), "a version came back: {seen:?}");
    assert_ne!(
        bus.changes(b),
        b_before,
        "a purge moves the sessions never changed"
    );
}

#[tokio::test]
async fn a_bus_without_a_log_reads_nothing_and_flushes_at_once() {
    let bus = EventBus::new(0);
    bus.publish(purged(1));
    bus.flush().await.unwrap();
    assert!(bus.read(0, None, 10).await.unwrap().is_empty());
    bus.close().await;
}

#[tokio::test]
async fn every_numbered_event_is_stored_with_its_seq_and_read_back_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    let mut published = Vec::new();
    for n in 0..2_000 {
        // Log lines take no seq and are not stored.
        if n % 10 == 0 {
            bus.publish(log_line());
        }
        published.push(bus.publish(purged(n)).seq.unwrap() as i64);
    }
    // Read at once, before the writer could have caught up on its own: nothing missing.
    let all = bus.read(0, None, 10_000).await.unwrap();
    assert_eq!(seqs(&all), published);
    assert_eq!(
        all[0].payload,
        json!({"session": Uuid::from_u128(0).to_string()})
    );
    let one = bus.read(0, Some(Uuid::from_u128(7)), 10).await.unwrap();
    assert_eq!(seqs(&one), [published[7]]);
    assert_eq!(
        seqs(&bus.read(1_990, None, 5).await.unwrap()),
        [1_991, 1_992, 1_993, 1_994, 1_995]
    );
    bus.close().await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_reopened_log_continues_after_the_last_seq_even_when_it_was_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let storage1 = storage(&dir).await;
    let bus = EventBus::open(storage1.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    for n in 0..5 {
        bus.publish(purged(n));
    }
    // Close flushes: nothing published before it is lost.
    bus.close().await;
    storage1.close().await.unwrap();

    let storage2 = storage(&dir).await;
    let bus = EventBus::open(storage2.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(bus.last_seq(), 5);
    assert_eq!(
        seqs(&bus.read(0, None, 100).await.unwrap()),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(bus.publish(purged(9)).seq, Some(6));
    bus.close().await;
    // After close the bus still numbers and broadcasts, but stores nothing.
    let mut rx = bus.subscribe();
    assert_eq!(bus.publish(purged(10)).seq, Some(7));
    assert_eq!(rx.try_recv().unwrap().seq, Some(7));
    assert_eq!(
        seqs(&storage2.events_since(0, None, 100).await.unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    storage2.prune_events_before(f64::MAX).await.unwrap();
    storage2.close().await.unwrap();

    let storage3 = storage(&dir).await;
    let bus = EventBus::open(storage3.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    assert_eq!(
        bus.last_seq(),
        6,
        "a pruned log still remembers its last seq"
    );
    assert_eq!(bus.publish(purged(11)).seq, Some(7));
    bus.close().await;
    storage3.close().await.unwrap();
}

#[tokio::test]
async fn events_past_their_retention_are_pruned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let old = StoredEvent {
        seq: 3,
        at: now() - 10.0 * 86_400.0,
        kind: "old".into(),
        session_id: None,
        payload: json!(null),
    };
    let recent = StoredEvent {
        seq: 4,
        at: now() - 86_400.0,
        kind: "recent".into(),
        ..old.clone()
    };
    storage
        .insert_events(Arc::from([old, recent]))
        .await
        .unwrap();
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let kinds: Vec<String> = bus
            .read(0, None, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        if kinds == ["recent"] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still stored: {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bus.publish(purged(1)).seq, Some(5));
    bus.close().await;
    storage.close().await.unwrap();
}

fn row(seq: i64, kind: &str, pad: usize) -> StoredEvent {
    StoredEvent {
        seq,
        at: 1.0,
        kind: kind.into(),
        session_id: None,
        payload: json!({ "pad": "x".repeat(pad) }),
    }
}

/// The event a backlog row stands for (the backlog only hands it back).
fn stamped(seq: u64) -> Arc<Published> {
    Arc::new(Published {
        seq: Some(seq),
        timestamp: 1.0,
        event: purged(u128::from(seq)),
    })
}

#[test]
fn the_backlog_keeps_events_in_order_within_its_bound_and_names_the_gap() {
    let one = row_bytes(&row(1, "test", 100));
    let mut backlog = Backlog::new(4 * one);
    for seq in 1..=4 {
        assert!(backlog.push(row(seq, "test", 100), stamped(seq as u64)));
    }
    assert_eq!(backlog.bytes, 4 * one);
    // Full: 5 and 6 are given up as one range; the marker is kept beyond the bound.
    assert!(!backlog.push(row(5, "test", 100), stamped(5)));
    assert!(!backlog.push(row(6, "test", 100), stamped(6)));
    assert!(backlog.push(row(7, EVENTS_LOST, 10), stamped(7)));
    assert_eq!(backlog.len(), 5);
    assert_eq!(
        seqs(&backlog.front_rows(10)),
        [1, 2, 3, 4],
        "a batch stops at the gap"
    );
    let marker = row_bytes(&row(7, EVENTS_LOST, 10));
    let stored: Vec<_> = backlog.pop_front(3).iter().map(|p| p.seq).collect();
    assert_eq!(stored, [Some(1), Some(2), Some(3)]);
    assert_eq!(backlog.bytes, one + marker);
    // Room, but not down to half the bound: still given up, the same gap grows.
    assert!(!backlog.push(row(8, "test", 100), stamped(8)));
    backlog.pop_front(1);
    assert_eq!(backlog.pop_lost(), Some((5, 6)));
    assert_eq!(seqs(&backlog.front_rows(10)), [7]);
    backlog.pop_front(1);
    // Down to half: kept again, behind the gap of 8 (which it closes).
    assert!(backlog.push(row(9, "test", 100), stamped(9)));
    assert_eq!(backlog.pop_lost(), Some((8, 8)));
    assert_eq!(seqs(&backlog.front_rows(10)), [9]);
    backlog.pop_front(1);
    assert!(backlog.is_empty());
    assert_eq!(backlog.bytes, 0);
}

/// An encoder whose events weigh about `PAD` bytes (the gap marker's data names its range).
fn heavy(published: &Published) -> Value {
    const PAD: usize = 2_000;
    match published.event {
        SessionEvent::EventsLost { first, last } => json!({ "first": first, "last": last }),
        _ => json!({ "pad": "x".repeat(PAD) }),
    }
}

/// Makes the database full for real (SQLite's own `SQLITE_FULL`), or lets it grow again.
async fn cap_pages(storage: &Storage, full: bool) {
    storage
        .call(move |conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0))?;
            let cap = if full { pages } else { 1 << 30 };
            conn.query_row(&format!("PRAGMA max_page_count = {cap}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
        .unwrap();
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn events_storage_refuses_wait_in_order_and_a_marker_names_those_past_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bound = 20 * 2_200;
    let bus = EventBus::open(storage.clone(), heavy, WEEK, bound)
        .await
        .unwrap();
    let mut live = bus.subscribe();
    bus.publish(purged(0));
    bus.flush().await.unwrap();
    cap_pages(&storage, true).await;

    for n in 1..=5 {
        bus.publish(purged(n));
    }
    wait_until("the log reports the full disk", || {
        bus.log_status().unwrap().failing.is_some()
    })
    .await;
    let started = tokio::time::Instant::now();
    assert!(matches!(
        bus.read(0, None, 100).await,
        Err(LogError::Failing(Fault::Full))
    ));
    assert!(started.elapsed() < FLUSH_DEADLINE, "a read is told at once");
    assert!(matches!(
        bus.publish_stored(purged(99)).await,
        Err(LogError::Failing(Fault::Full))
    ));
    // Past the bound: some are given up, and /health's status counts them.
    for n in 6..=40 {
        bus.publish(purged(n));
    }
    wait_until("events are given up", || bus.log_status().unwrap().lost > 0).await;
    let status = bus.log_status().unwrap();
    assert!(status.backlog_bytes <= bound, "{status:?}");
    let lost = status.last_lost.unwrap();
    assert_eq!(lost.last, 41, "{status:?}");
    assert_eq!(status.lost, lost.last - lost.first + 1);

    cap_pages(&storage, false).await;
    wait_until("the backlog is stored", || {
        let status = bus.log_status().unwrap();
        status.failing.is_none() && status.backlog == 0
    })
    .await;
    let marker_seq = 42;
    bus.flush().await.unwrap();
    let all = bus.read(0, None, 1_000).await.unwrap();
    let expected: Vec<i64> = (1..i64::try_from(lost.first).unwrap())
        .chain([marker_seq])
        .collect();
    assert_eq!(
        seqs(&all),
        expected,
        "every event kept, in order, then the marker"
    );
    let marker = all.last().unwrap();
    assert_eq!(marker.kind, EVENTS_LOST);
    assert_eq!(
        marker.payload,
        json!({ "first": lost.first, "last": lost.last })
    );
    let mut saw_marker = false;
    while let Ok(published) = live.try_recv() {
        if let SessionEvent::EventsLost { first, last } = published.event {
            assert_eq!((first, last), (lost.first, lost.last));
            assert_eq!(published.seq, Some(42));
            saw_marker = true;
        }
    }
    assert!(saw_marker, "live subscribers are told too");
    bus.close().await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_backlog_within_its_bound_is_stored_whole_once_storage_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), heavy, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    cap_pages(&storage, true).await;
    for n in 1..=300 {
        bus.publish(purged(n));
    }
    wait_until("the log reports the full disk", || {
        bus.log_status().unwrap().failing.is_some()
    })
    .await;
    cap_pages(&storage, false).await;
    wait_until("the backlog is stored", || {
        bus.log_status().unwrap().backlog == 0
    })
    .await;
    let all = bus.read(0, None, 1_000).await.unwrap();
    assert_eq!(seqs(&all), (1..=300).collect::<Vec<i64>>());
    let status = bus.log_status().unwrap();
    assert_eq!((status.lost, status.failing), (0, None));
    bus.close().await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_closed_storage_ends_the_writer_and_readers_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    storage.close().await.unwrap();
    bus.publish(purged(1));
    assert!(matches!(bus.read(0, None, 10).await, Err(LogError::Closed)));
    bus.close().await;
}

fn purges_only(event: &SessionEvent) -> bool {
    matches!(event, SessionEvent::Purged(_))
}

fn everything(_: &SessionEvent) -> bool {
    true
}

/// Takes what `follower` has queued now (waiting at most a moment for each event).
async fn drain(follower: &mut Follower) -> Vec<Arc<Published>> {
    let mut got = Vec::new();
    while let Ok(Some(published)) =
        tokio::time::timeout(Duration::from_millis(200), follower.recv()).await
    {
        got.push(published);
    }
    got
}

fn seqs_of(events: &[Arc<Published>]) -> Vec<u64> {
    events.iter().filter_map(|p| p.seq).collect()
}

#[tokio::test]
async fn a_follower_gets_every_stored_event_it_keeps_in_order_from_when_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    let before = bus.publish(purged(0)).seq.unwrap();
    let mut purges = bus.follow(purges_only);
    let mut all = bus.follow_unbounded(everything);
    let mut kept = Vec::new();
    // More than a live subscriber's capacity: a broadcast would have dropped some.
    for n in 1..=(LIVE_CAPACITY as u128 + 1_000) {
        bus.publish(log_line());
        kept.push(bus.publish(purged(n)).seq.unwrap());
        if n % 100 == 0 {
            bus.publish(SessionEvent::Hook {
                session: Uuid::from_u128(n),
                name: "Stop".into(),
                payload: json!({}),
            });
        }
    }
    let last = bus.last_seq();
    // The bounded follower is read while the rest is stored: it holds the writer back.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(published) = purges.recv().await {
            got.push(published);
        }
        got
    });
    bus.flush().await.unwrap();
    let stored = bus.read(0, None, 100_000).await.unwrap();
    bus.close().await;
    let got = reader.await.unwrap();
    assert_eq!(seqs_of(&got), kept, "every purge after it began, in order");
    assert!(got.iter().all(|p| p.seq > Some(before)));
    let everything = drain(&mut all).await;
    assert_eq!(
        seqs_of(&everything),
        ((before + 1)..=last).collect::<Vec<_>>(),
        "the stored log from when it began, no output line"
    );
    assert_eq!(
        seqs(&stored),
        (1..=i64::try_from(last).unwrap()).collect::<Vec<_>>()
    );
    assert!(all.recv().await.is_none(), "the feed ends with the log");
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_follower_that_falls_behind_holds_the_writer_back_until_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    let mut follower = bus.follow(everything);
    let published = follow::FOLLOWER_CAPACITY + 2 * writer::MAX_BATCH;
    for n in 0..published {
        bus.publish(purged(n as u128));
    }
    // Its queue is full and it does not read: the rest is not stored yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), bus.flush())
            .await
            .is_err(),
        "the writer went past a follower that did not read"
    );
    let mut got = Vec::new();
    let mut batch = Vec::new();
    while got.len() < published {
        assert!(follower.recv_many(&mut batch, 100).await > 0);
        got.append(&mut batch);
    }
    assert_eq!(
        seqs_of(&got),
        (1..=published as u64).collect::<Vec<_>>(),
        "nothing dropped, in order"
    );
    bus.flush().await.unwrap();
    bus.close().await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_follower_that_ends_no_longer_holds_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bus = EventBus::open(storage.clone(), encode, WEEK, DEFAULT_BACKLOG_MAX_BYTES)
        .await
        .unwrap();
    let dropped = bus.follow(everything);
    let mut closed = bus.follow(everything);
    let mut reading = bus.follow(purges_only);
    let published = 3 * follow::FOLLOWER_CAPACITY;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(published) = reading.recv().await {
            got.push(published);
        }
        got
    });
    for n in 0..published {
        bus.publish(purged(n as u128));
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), bus.flush())
            .await
            .is_err(),
        "held by the followers that do not read"
    );
    drop(dropped);
    closed.close();
    bus.flush().await.unwrap();
    bus.close().await;
    let got = reader.await.unwrap();
    assert_eq!(seqs_of(&got), (1..=published as u64).collect::<Vec<_>>());
    // What was queued before it closed can still be taken, and then it ends.
    let mut queued = Vec::new();
    while let Some(published) = closed.recv().await {
        queued.push(published);
    }
    assert_eq!(
        seqs_of(&queued),
        (1..=follow::FOLLOWER_CAPACITY as u64).collect::<Vec<_>>()
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_follower_never_sees_events_the_log_gave_up_and_is_told_of_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(&dir).await;
    let bound = 20 * 2_200;
    let bus = EventBus::open(storage.clone(), heavy, WEEK, bound)
        .await
        .unwrap();
    let mut follower = bus.follow_unbounded(everything);
    bus.publish(purged(0));
    bus.flush().await.unwrap();
    cap_pages(&storage, true).await;
    for n in 1..=40 {
        bus.publish(purged(n));
    }
    wait_until("events are given up", || bus.log_status().unwrap().lost > 0).await;
    cap_pages(&storage, false).await;
    wait_until("the backlog is stored", || {
        let status = bus.log_status().unwrap();
        status.failing.is_none() && status.backlog == 0
    })
    .await;
    bus.flush().await.unwrap();
    let lost = bus.log_status().unwrap().last_lost.unwrap();
    let got = drain(&mut follower).await;
    let stored = bus.read(0, None, 1_000).await.unwrap();
    assert_eq!(
        seqs_of(&got)
            .into_iter()
            .map(|s| s as i64)
            .collect::<Vec<_>>(),
        seqs(&stored),
        "exactly the stored log"
    );
    assert!(seqs_of(&got)
        .iter()
        .all(|seq| !(lost.first..=lost.last).contains(seq)));
    match &got.last().unwrap().event {
        SessionEvent::EventsLost { first, last } => {
            assert_eq!((*first, *last), (lost.first, lost.last));
        }
        other => panic!("the last event is not the gap's marker: {other:?}"),
    }
    bus.close().await;
    storage.close().await.unwrap();
}

#[tokio::test]
async fn a_follower_of_a_bus_without_a_log_gets_events_as_published() {
    let bus = EventBus::new(0);
    let mut follower = bus.follow(purges_only);
    for n in 1..=(LIVE_CAPACITY as u128 * 2) {
        bus.publish(log_line());
        bus.publish(purged(n));
    }
    bus.close().await;
    let mut got = Vec::new();
    while let Some(published) = follower.recv().await {
        got.push(published);
    }
    assert_eq!(
        seqs_of(&got),
        (1..=(LIVE_CAPACITY as u64 * 2)).collect::<Vec<_>>()
    );
}
