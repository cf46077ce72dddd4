//! The supervision core through its public API, as an embedding service uses it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, ActorStatus};
use supervision::{
    Backoff, ChildError, ChildSpec, ChildState, Exit, Intensity, Restart, StartContext, StartError,
    Started, Strategy, SupervisionError, SupervisorConfig, SupervisorEvent, SupervisorHandle,
    TaskContext,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::timeout;

/// What the test workers did, in order: "start:<id>" and "stop:<id>".
type Journal = Arc<Mutex<Vec<String>>>;

enum Cmd {
    /// Return an error from the handler.
    Fail,
    /// Panic in the handler.
    Panic,
    /// Stop normally.
    Finish,
}

struct TestWorker {
    id: &'static str,
    journal: Journal,
    /// Sleep this long in pre_start, to keep a spawn in flight.
    slow_start: Option<Duration>,
    /// Sleep this long in post_stop, to keep a stop in flight or trip the kill timer.
    slow_stop: Option<Duration>,
}

impl Actor for TestWorker {
    type Msg = Cmd;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Cmd>, _: ()) -> Result<(), ActorProcessingErr> {
        if let Some(d) = self.slow_start {
            tokio::time::sleep(d).await;
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("start:{}", self.id));
        Ok(())
    }

    async fn post_stop(&self, _: ActorRef<Cmd>, _: &mut ()) -> Result<(), ActorProcessingErr> {
        if let Some(d) = self.slow_stop {
            tokio::time::sleep(d).await;
        }
        self.journal
            .lock()
            .unwrap()
            .push(format!("stop:{}", self.id));
        Ok(())
    }

    async fn handle(
        &self,
        me: ActorRef<Cmd>,
        cmd: Cmd,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match cmd {
            Cmd::Fail => Err("worker failed".into()),
            Cmd::Panic => panic!("worker panicked"),
            Cmd::Finish => {
                me.stop(Some("done".into()));
                Ok(())
            }
        }
    }
}

fn worker(id: &'static str, journal: &Journal) -> ChildSpec {
    worker_with(id, journal, None, None)
}

/// A worker whose `post_stop` takes `ms` milliseconds.
fn slow_stop(id: &'static str, journal: &Journal, ms: u64) -> ChildSpec {
    worker_with(id, journal, None, Some(Duration::from_millis(ms)))
}

fn worker_with(
    id: &'static str,
    journal: &Journal,
    slow_start: Option<Duration>,
    slow_stop: Option<Duration>,
) -> ChildSpec {
    let journal = journal.clone();
    ChildSpec::actor(id, move || {
        (
            TestWorker {
                id,
                journal: journal.clone(),
                slow_start,
                slow_stop,
            },
            (),
        )
    })
    .backoff(fast_backoff())
}

/// A supervisor with `children`, started and settled, and a subscription to its events.
async fn started(
    strategy: Strategy,
    children: Vec<ChildSpec>,
) -> (SupervisorHandle, broadcast::Receiver<SupervisorEvent>) {
    let (sup, _join) = SupervisorHandle::spawn(config(strategy), children)
        .await
        .unwrap();
    let rx = sup.subscribe();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    (sup, rx)
}

/// Waits (bounded) for `child` to enter `state`.
async fn until(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    child: &str,
    state: ChildState,
) -> SupervisorEvent {
    wait_for(rx, &format!("{child} {state}"), |e| {
        entered(e, child, state)
    })
    .await
}

/// Asserts every child is in `state`.
async fn assert_all(sup: &SupervisorHandle, state: ChildState) {
    let states = states(sup).await;
    assert!(states.iter().all(|(_, s)| *s == state), "{states:?}");
}

/// A started supervisor whose one child, `m`, takes 200 ms to stop.
async fn running_slow_stopper(
    journal: &Journal,
) -> (SupervisorHandle, broadcast::Receiver<SupervisorEvent>) {
    started(Strategy::OneForOne, vec![slow_stop("m", journal, 200)]).await
}

/// Starts `call` (which stops `m`, alone or with all) in the background and returns once
/// `m` is stopping.
async fn while_stopping<F, Fut>(
    sup: &SupervisorHandle,
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    call: F,
) -> tokio::task::JoinHandle<Result<(), SupervisionError>>
where
    F: FnOnce(SupervisorHandle) -> Fut,
    Fut: std::future::Future<Output = Result<(), SupervisionError>> + Send + 'static,
{
    let in_flight = tokio::spawn(call(sup.clone()));
    wait_for(rx, "m stopping", |e| entered(e, "m", ChildState::Stopping)).await;
    in_flight
}

/// A supervisor whose one child, `s`, is still spawning (its `pre_start` takes 300 ms).
async fn spawning_slowly(journal: &Journal) -> SupervisorHandle {
    let slow = worker_with("s", journal, Some(Duration::from_millis(300)), None);
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![slow])
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup
}

/// A child whose first crash escalates: no restart allowed, `escalate` set.
fn critical(journal: &Journal) -> ChildSpec {
    worker("critical", journal)
        .intensity(Intensity {
            max_restarts: 0,
            window: Duration::from_secs(60),
        })
        .escalate(true)
}

/// A worker whose every restart after the first waits `delay`.
fn steady_backoff(id: &'static str, journal: &Journal, delay: Duration) -> ChildSpec {
    worker(id, journal).backoff(Backoff {
        initial: delay,
        max: delay,
        multiplier: 1.0,
        reset_after: Duration::from_secs(60),
    })
}

/// Crashes `id` until it sits in backoff (its first restart is immediate).
async fn crash_into_backoff(
    sup: &SupervisorHandle,
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    id: &str,
) {
    loop {
        cmd(&actor_of(sup, id).await, Cmd::Fail);
        wait_for(rx, "backoff", |e| entered(e, id, ChildState::Backoff)).await;
        if state_of(sup, id).await == Some(ChildState::Backoff) {
            return;
        }
        wait_for(rx, "running", |e| entered(e, id, ChildState::Running)).await;
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        multiplier: 2.0,
        reset_after: Duration::from_secs(60),
    }
}

fn config(strategy: Strategy) -> SupervisorConfig {
    SupervisorConfig::new().strategy(strategy)
}

const PATIENCE: Duration = Duration::from_secs(10);

/// Waits for an event matching `pred`, failing the test after `PATIENCE`.
async fn wait_for(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    what: &str,
    mut pred: impl FnMut(&SupervisorEvent) -> bool,
) -> SupervisorEvent {
    let found = tokio::time::timeout(PATIENCE, async {
        loop {
            match rx.recv().await {
                Ok(ev) if pred(&ev) => return ev,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => panic!("lagged {n} events"),
                Err(broadcast::error::RecvError::Closed) => panic!("events closed"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn entered(ev: &SupervisorEvent, child: &str, to: ChildState) -> bool {
    matches!(ev, SupervisorEvent::Child(t) if &*t.child == child && t.to == to)
}

async fn actor_of(sup: &SupervisorHandle, id: &str) -> ActorCell {
    let children = sup.children().await.unwrap();
    let child = children.iter().find(|c| &*c.id == id).unwrap();
    child.actor.clone().unwrap()
}

fn cmd(cell: &ActorCell, c: Cmd) {
    ActorRef::<Cmd>::from(cell.clone()).cast(c).unwrap();
}

async fn state_of(sup: &SupervisorHandle, id: &str) -> Option<ChildState> {
    sup.children()
        .await
        .unwrap()
        .into_iter()
        .find(|c| &*c.id == id)
        .map(|c| c.state)
}

/// Waits (bounded) until nothing is in motion.
async fn calm(sup: &SupervisorHandle) {
    timeout(PATIENCE, sup.settled())
        .await
        .expect("settled() hung")
        .unwrap();
}

async fn states(sup: &SupervisorHandle) -> Vec<(String, ChildState)> {
    sup.children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.to_string(), c.state))
        .collect()
}

fn journal() -> Journal {
    Arc::new(Mutex::new(Vec::new()))
}

fn entries(j: &Journal, prefix: &str) -> Vec<String> {
    j.lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.strip_prefix(prefix).map(str::to_string))
        .collect()
}

/// db <- api <- web, plus an independent cache; declared out of order on purpose.
fn web_stack(j: &Journal) -> Vec<ChildSpec> {
    vec![
        worker("web", j).depends_on(["api", "db"]),
        worker("api", j).depends_on(["db"]),
        worker("db", j),
        worker("cache", j),
    ]
}

#[tokio::test]
async fn starts_in_dependency_layers_and_stops_in_reverse() {
    let j = journal();
    let (sup, join) = SupervisorHandle::spawn(config(Strategy::OneForOne), web_stack(&j))
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    let settled = sup.settled().await.unwrap();
    assert!(
        settled.iter().all(|c| c.state == ChildState::Running),
        "{settled:?}"
    );

    let started = entries(&j, "start:");
    let pos = |id: &str| started.iter().position(|s| s == id).unwrap();
    assert!(
        pos("db") < pos("api") && pos("api") < pos("web"),
        "{started:?}"
    );
    assert!(
        pos("cache") < pos("api"),
        "layer 0 before layer 1: {started:?}"
    );

    sup.stop_all().await.unwrap();
    let stopped = entries(&j, "stop:");
    let pos = |id: &str| stopped.iter().position(|s| s == id).unwrap();
    assert!(
        pos("web") < pos("api") && pos("api") < pos("db"),
        "{stopped:?}"
    );
    assert!(
        pos("api") < pos("cache"),
        "layer 1 before layer 0: {stopped:?}"
    );
    assert!(states(&sup)
        .await
        .iter()
        .all(|(_, s)| *s == ChildState::Stopped));

    sup.shutdown().await.unwrap();
    join.await.unwrap();
}

#[tokio::test]
async fn a_layer_waits_until_the_one_below_is_ready() {
    let j = journal();
    let (release, ready) = tokio::sync::watch::channel(false);
    let slow_journal = j.clone();
    // "db" is spawned at once but only ready when the test says so.
    let slow = ChildSpec::new("db", move |ctx: StartContext| {
        let journal = slow_journal.clone();
        let mut ready = ready.clone();
        async move {
            let w = TestWorker {
                id: "db",
                journal,
                slow_start: None,
                slow_stop: None,
            };
            let (actor, _) = Actor::spawn_linked(None, w, (), ctx.supervisor).await?;
            Ok(Started::when_ready(actor.get_cell(), async move {
                ready
                    .wait_for(|r| *r)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string().into())
            }))
        }
    });
    let children = vec![
        slow,
        worker("api", &j).depends_on(["db"]),
        worker("cache", &j),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    until(&mut rx, "cache", ChildState::Running).await;
    assert_eq!(
        states(&sup).await,
        vec![
            ("db".into(), ChildState::Starting),
            ("api".into(), ChildState::Pending),
            ("cache".into(), ChildState::Running),
        ]
    );
    assert!(!entries(&j, "start:").contains(&"api".to_string()));

    release.send(true).unwrap();
    let settled = sup.settled().await.unwrap();
    assert!(
        settled.iter().all(|c| c.state == ChildState::Running),
        "{settled:?}"
    );
    sup.shutdown().await.unwrap();
}

/// Crashes `victim` under `strategy` and returns which children got a new incarnation.
async fn restarted_after_crash(strategy: Strategy, victim: &str) -> Vec<String> {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(strategy), web_stack(&j))
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup.settled().await.unwrap();
    let before = sup.children().await.unwrap();
    let mut rx = sup.subscribe();
    cmd(&actor_of(&sup, victim).await, Cmd::Fail);
    until(&mut rx, victim, ChildState::Running).await;
    let after = sup.settled().await.unwrap();
    assert!(
        after.iter().all(|c| c.state == ChildState::Running),
        "{after:?}"
    );
    let mut renewed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| {
            b.actor.as_ref().map(ActorCell::get_id) != a.actor.as_ref().map(ActorCell::get_id)
        })
        .map(|(b, _)| b.id.to_string())
        .collect();
    renewed.sort();
    sup.shutdown().await.unwrap();
    renewed
}

#[tokio::test]
async fn one_for_one_restarts_only_the_crashed_child() {
    assert_eq!(
        restarted_after_crash(Strategy::OneForOne, "api").await,
        vec!["api"]
    );
}

#[tokio::test]
async fn rest_for_one_restarts_the_children_started_after_it() {
    // Start order: db, cache (layer 0), api (layer 1), web (layer 2).
    assert_eq!(
        restarted_after_crash(Strategy::RestForOne, "api").await,
        vec!["api", "web"]
    );
    assert_eq!(
        restarted_after_crash(Strategy::RestForOne, "db").await,
        vec!["api", "cache", "db", "web"]
    );
}

#[tokio::test]
async fn one_for_all_restarts_every_child() {
    assert_eq!(
        restarted_after_crash(Strategy::OneForAll, "web").await,
        vec!["api", "cache", "db", "web"]
    );
}

#[tokio::test]
async fn a_panicking_child_is_restarted_and_the_supervisor_survives() {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![worker("p", &j)])
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    until(&mut rx, "p", ChildState::Running).await;
    cmd(&actor_of(&sup, "p").await, Cmd::Panic);
    let backoff = wait_for(&mut rx, "backoff", |e| entered(e, "p", ChildState::Backoff)).await;
    match backoff {
        SupervisorEvent::Child(t) => {
            assert!(
                t.reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("worker panicked"),
                "{t:?}"
            );
            assert_eq!(t.delay, Some(Duration::ZERO), "first restart is immediate");
            assert_eq!(t.restarts, 1);
        }
        other => panic!("{other:?}"),
    }
    until(&mut rx, "p", ChildState::Running).await;
    assert_eq!(sup.actor().get_status(), ActorStatus::Running);
    assert_eq!(entries(&j, "start:").len(), 2);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn backoff_grows_between_consecutive_crashes() {
    let j = journal();
    let spec = worker("c", &j).intensity(Intensity {
        max_restarts: 10,
        window: Duration::from_secs(60),
    });
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![spec])
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    let mut delays = Vec::new();
    for _ in 0..5 {
        until(&mut rx, "c", ChildState::Running).await;
        cmd(&actor_of(&sup, "c").await, Cmd::Fail);
        if let SupervisorEvent::Child(t) =
            wait_for(&mut rx, "backoff", |e| entered(e, "c", ChildState::Backoff)).await
        {
            delays.push(t.delay.unwrap());
        }
    }
    let ms = Duration::from_millis;
    assert_eq!(delays, vec![ms(0), ms(10), ms(20), ms(40), ms(40)]);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn exhausted_intensity_fails_the_child_and_spares_its_siblings() {
    let j = journal();
    let fragile = worker("fragile", &j).intensity(Intensity {
        max_restarts: 2,
        window: Duration::from_secs(60),
    });
    let (sup, _join) = SupervisorHandle::spawn(
        config(Strategy::OneForOne),
        vec![fragile, worker("steady", &j)],
    )
    .await
    .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    for _ in 0..3 {
        until(&mut rx, "fragile", ChildState::Running).await;
        cmd(&actor_of(&sup, "fragile").await, Cmd::Fail);
    }
    let failed = wait_for(&mut rx, "failed", |e| {
        entered(e, "fragile", ChildState::Failed)
    })
    .await;
    match failed {
        SupervisorEvent::Child(t) => {
            let reason = t.reason.unwrap_or_default();
            assert!(reason.contains("gave up after 2 restarts"), "{reason}");
            assert!(reason.contains("worker failed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let after = sup.settled().await.unwrap();
    assert_eq!(after[0].state, ChildState::Failed);
    assert!(matches!(&after[0].last_exit, Some((Exit::Abnormal(_), _))));
    assert_eq!(after[1].state, ChildState::Running);
    assert_eq!(sup.actor().get_status(), ActorStatus::Running);

    // An operator can bring it back: a fresh restart history.
    sup.start_child("fragile").await.unwrap();
    until(&mut rx, "fragile", ChildState::Running).await;
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn escalation_stops_everything_and_fails_the_supervisor() {
    let j = journal();
    let critical = critical(&j);
    let (sup, join) = SupervisorHandle::spawn(
        config(Strategy::OneForOne),
        vec![critical, worker("other", &j).depends_on(["critical"])],
    )
    .await
    .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    until(&mut rx, "other", ChildState::Running).await;
    cmd(&actor_of(&sup, "critical").await, Cmd::Fail);
    wait_for(
        &mut rx,
        "escalated",
        |e| matches!(e, SupervisorEvent::Escalated { child, .. } if &**child == "critical"),
    )
    .await;
    tokio::time::timeout(PATIENCE, join).await.unwrap().unwrap();
    assert!(entries(&j, "stop:").contains(&"other".to_string()));
    assert_eq!(
        sup.children().await.unwrap_err(),
        SupervisionError::Unavailable
    );
}

#[tokio::test]
async fn restart_types_decide_what_an_exit_means() {
    let j = journal();
    let children = vec![
        worker("transient-ok", &j).restart(Restart::Transient),
        worker("transient-crash", &j).restart(Restart::Transient),
        worker("temporary", &j).restart(Restart::Temporary),
        worker("permanent-ok", &j).restart(Restart::Permanent),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    sup.settled().await.unwrap();
    cmd(&actor_of(&sup, "transient-ok").await, Cmd::Finish);
    cmd(&actor_of(&sup, "transient-crash").await, Cmd::Fail);
    cmd(&actor_of(&sup, "temporary").await, Cmd::Fail);
    cmd(&actor_of(&sup, "permanent-ok").await, Cmd::Finish);
    until(&mut rx, "transient-crash", ChildState::Running).await;
    until(&mut rx, "permanent-ok", ChildState::Running).await;
    let s = states(&sup).await;
    assert_eq!(s[0], ("transient-ok".into(), ChildState::Stopped));
    assert_eq!(s[2], ("temporary".into(), ChildState::Failed));
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_dependency_cycle_is_refused_and_named() {
    let j = journal();
    let children = vec![
        worker("a", &j).depends_on(["c"]),
        worker("b", &j).depends_on(["a"]),
        worker("c", &j).depends_on(["b"]),
    ];
    let err = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap_err();
    let SupervisionError::Cycle(path) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path.first(), path.last());
    assert_eq!(path.len(), 4);
    assert!(err.to_string().starts_with("dependency cycle: "), "{err}");
    assert!(entries(&j, "start:").is_empty(), "nothing started");

    let err = SupervisorHandle::spawn(
        config(Strategy::OneForOne),
        vec![worker("a", &j).depends_on(["ghost"])],
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "child `a` depends on unknown child `ghost`"
    );
}

#[tokio::test]
async fn a_stopped_child_stays_down_until_started() {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), web_stack(&j))
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup.settled().await.unwrap();
    sup.stop_child("cache").await.unwrap();
    let s = sup.settled().await.unwrap();
    assert_eq!(s[3].state, ChildState::Stopped);
    assert!(!s[3].wanted);
    assert!(entries(&j, "stop:").contains(&"cache".to_string()));
    assert_eq!(
        entries(&j, "start:").len(),
        4,
        "a stop is not a crash: no restart"
    );

    let mut rx = sup.subscribe();
    sup.start_child("cache").await.unwrap();
    until(&mut rx, "cache", ChildState::Running).await;
    assert_eq!(
        sup.start_child("nope").await.unwrap_err(),
        SupervisionError::UnknownChild("nope".into())
    );
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn manual_restart_replaces_the_incarnation_without_counting() {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![worker("m", &j)])
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup.settled().await.unwrap();
    let first = actor_of(&sup, "m").await.get_id();
    let mut rx = sup.subscribe();
    sup.restart_child("m").await.unwrap();
    until(&mut rx, "m", ChildState::Running).await;
    let info = sup.children().await.unwrap().remove(0);
    assert_ne!(info.actor.unwrap().get_id(), first);
    assert_eq!(info.restarts, 0);
    assert_eq!(entries(&j, "stop:"), vec!["m"]);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn children_can_be_added_and_removed_live() {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![worker("db", &j)])
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    sup.add_child(worker("api", &j).depends_on(["db"]))
        .await
        .unwrap();
    until(&mut rx, "api", ChildState::Running).await;
    assert_eq!(
        sup.add_child(worker("api", &j)).await.unwrap_err(),
        SupervisionError::DuplicateChild("api".into())
    );
    assert!(matches!(
        sup.add_child(worker("x", &j).depends_on(["x"])).await,
        Err(SupervisionError::Cycle(_))
    ));
    assert!(matches!(
        sup.remove_child("db").await,
        Err(SupervisionError::HasDependents { .. })
    ));
    sup.remove_child("api").await.unwrap();
    let left: Vec<_> = states(&sup).await;
    assert_eq!(left, vec![("db".into(), ChildState::Running)]);
    assert_eq!(entries(&j, "stop:"), vec!["api"]);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_child_that_will_not_stop_is_killed_after_its_grace() {
    let j = journal();
    let jj = j.clone();
    let stubborn = ChildSpec::actor("stubborn", move || {
        (
            TestWorker {
                id: "stubborn",
                journal: jj.clone(),
                slow_start: None,
                slow_stop: Some(Duration::from_secs(3600)),
            },
            (),
        )
    })
    .shutdown(Duration::from_millis(50));
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![stubborn])
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    sup.settled().await.unwrap();
    tokio::time::timeout(PATIENCE, sup.stop_child("stubborn"))
        .await
        .expect("stop returns once the kill timer fired")
        .unwrap();
    assert_eq!(states(&sup).await[0].1, ChildState::Stopped);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn readiness_timeout_and_start_errors_count_as_crashes() {
    let never_ready = ChildSpec::new("never", |ctx: StartContext| async move {
        let j = journal();
        let w = TestWorker {
            id: "never",
            journal: j,
            slow_start: None,
            slow_stop: None,
        };
        let (actor, _) = Actor::spawn_linked(None, w, (), ctx.supervisor).await?;
        Ok(Started::when_ready(
            actor.get_cell(),
            std::future::pending(),
        ))
    })
    .start_timeout(Duration::from_millis(30))
    .intensity(Intensity {
        max_restarts: 1,
        window: Duration::from_secs(60),
    })
    .backoff(fast_backoff());
    let broken = ChildSpec::new("broken", |_ctx: StartContext| async move {
        Err::<Started, _>(StartError::from("no such binary"))
    })
    .intensity(Intensity {
        max_restarts: 1,
        window: Duration::from_secs(60),
    })
    .backoff(fast_backoff());
    // Its worker never finishes spawning: the deadline covers the spawn too.
    let stuck = ChildSpec::new("stuck", |_ctx: StartContext| async move {
        std::future::pending::<Result<Started, StartError>>().await
    })
    .start_timeout(Duration::from_millis(30))
    .intensity(Intensity {
        max_restarts: 1,
        window: Duration::from_secs(60),
    })
    .backoff(fast_backoff());
    let children = vec![never_ready, broken, stuck];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    let settled = sup.settled().await.unwrap();
    assert!(
        settled.iter().all(|c| c.state == ChildState::Failed),
        "{settled:?}"
    );
    assert!(settled.iter().all(|c| c.restarts == 1));
    let reason = |i: usize| match &settled[i].last_exit {
        Some((Exit::Abnormal(r), _)) => r.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        reason(0).contains("not running within 30ms"),
        "{}",
        reason(0)
    );
    assert!(
        reason(2).contains("not running within 30ms"),
        "{}",
        reason(2)
    );
    assert!(
        reason(1).contains("start failed: no such binary"),
        "{}",
        reason(1)
    );
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn dependents_wait_while_a_dependency_is_down() {
    let j = journal();
    let children = vec![
        worker("db", &j).enabled(false),
        worker("api", &j).depends_on(["db"]),
        worker("cache", &j),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    let s = sup.settled().await.unwrap();
    assert_eq!(s[0].state, ChildState::Pending, "disabled: not started");
    assert_eq!(s[1].state, ChildState::Pending, "its dependency is down");
    assert_eq!(s[2].state, ChildState::Running);
    let mut rx = sup.subscribe();
    sup.start_child("db").await.unwrap();
    until(&mut rx, "api", ChildState::Running).await;
    sup.shutdown().await.unwrap();
}

/// The embedding example (`cargo run -p supervision --example embed`) exits 0 by itself, having
/// restarted its crashing worker three times. `cargo test` builds examples before tests.
#[test]
fn the_embedding_example_runs_to_completion() {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let example = profile_dir.join("examples/embed");
    assert!(
        example.is_file(),
        "{} is missing: run the whole suite with `cargo test`, which builds examples",
        example.display()
    );
    let mut child = std::process::Command::new(&example)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the example did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "{status:?}\n{stdout}");
    assert!(
        stdout.contains("indexer: running after 3 restarts"),
        "{stdout}"
    );
    assert!(stdout.contains("next start in 200ms"), "{stdout}");
    assert!(stdout.contains("supervisor stopped cleanly"), "{stdout}");
}

// stop_all: every member of a layer is down before the layer below is stopped.

/// One layer: a pending (disabled) child listed before a running child that is slow to stop.
/// stop_all must not return before the running child is stopped.
#[tokio::test]
async fn stop_all_waits_for_every_member_of_a_layer() {
    let j = journal();
    let children = vec![
        worker("idle", &j).enabled(false),
        slow_stop("busy", &j, 500),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    assert_eq!(
        state_of(&sup, "busy").await,
        Some(ChildState::Stopped),
        "stop_all returned while `busy` was still stopping; journal: {:?}",
        entries(&j, "stop:")
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

/// db (layer 0) <- {idle (disabled), api (slow to stop)} (layer 1): db must stop after api.
#[tokio::test]
async fn stop_all_stops_a_dependency_after_its_dependent_even_beside_an_idle_sibling() {
    let j = journal();
    let children = vec![
        worker("db", &j),
        worker("idle", &j).depends_on(["db"]).enabled(false),
        slow_stop("api", &j, 300).depends_on(["db"]),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    assert_eq!(
        entries(&j, "stop:"),
        vec!["api", "db"],
        "reverse dependency order violated"
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

/// Same as A1 but with a realistic trigger: a crashed sibling in backoff.
#[tokio::test]
async fn stop_all_waits_for_a_slow_sibling_of_a_child_in_backoff() {
    let j = journal();
    let crashy = steady_backoff("crashy", &j, Duration::from_secs(5));
    let children = vec![crashy, slow_stop("busy", &j, 500)];
    let (sup, mut rx) = started(Strategy::OneForOne, children).await;
    // First crash restarts at once, second waits 5 s in backoff.
    for _ in 0..2 {
        let cell = actor_of(&sup, "crashy").await;
        cmd(&cell, Cmd::Fail);
        until(&mut rx, "crashy", ChildState::Backoff).await;
        if state_of(&sup, "crashy").await == Some(ChildState::Backoff) {
            break;
        }
        until(&mut rx, "crashy", ChildState::Running).await;
    }
    assert_eq!(state_of(&sup, "crashy").await, Some(ChildState::Backoff));
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    assert_eq!(
        state_of(&sup, "busy").await,
        Some(ChildState::Stopped),
        "stop_all returned while `busy` was still stopping"
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

// A child stopped while its spawn is in flight, and the spawn then cut off by the deadline.

fn stuck_spawn(id: &'static str) -> ChildSpec {
    ChildSpec::new(id, |_ctx: StartContext| async move {
        std::future::pending::<Result<Started, StartError>>().await
    })
    .start_timeout(Duration::from_millis(300))
    .backoff(fast_backoff())
}

#[tokio::test]
async fn stop_child_during_a_spawn_cut_off_by_its_deadline_returns() {
    let (sup, _join) =
        SupervisorHandle::spawn(config(Strategy::OneForOne), vec![stuck_spawn("stuck")])
            .await
            .unwrap();
    sup.start_all().await.unwrap();
    assert_eq!(state_of(&sup, "stuck").await, Some(ChildState::Starting));
    let stopped = timeout(PATIENCE, sup.stop_child("stuck")).await;
    let st = state_of(&sup, "stuck").await;
    assert!(
        matches!(stopped, Ok(Ok(()))),
        "stop_child never returned; child is {st:?}"
    );
}

#[tokio::test]
async fn stop_all_during_a_spawn_cut_off_by_its_deadline_returns() {
    let (sup, _join) =
        SupervisorHandle::spawn(config(Strategy::OneForOne), vec![stuck_spawn("stuck")])
            .await
            .unwrap();
    sup.start_all().await.unwrap();
    let stopped = timeout(PATIENCE, sup.stop_all()).await;
    assert!(matches!(stopped, Ok(Ok(()))), "stop_all never returned");
}

// Orders that would reshape the children while stop_all runs are refused.

#[tokio::test]
async fn remove_child_during_stop_all_is_refused_and_the_supervisor_survives() {
    let j = journal();
    let children = vec![worker("a", &j), slow_stop("b", &j, 300).depends_on(["a"])];
    let (sup, join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    let s2 = sup.clone();
    let stop_all = tokio::spawn(async move { s2.stop_all().await });
    until(&mut rx, "b", ChildState::Stopping).await;
    let removed = timeout(PATIENCE, sup.remove_child("b")).await;
    let stop_all = timeout(PATIENCE, stop_all).await.unwrap().unwrap();
    assert_eq!(removed.unwrap(), Err(SupervisionError::ShuttingDown));
    assert_eq!(
        stop_all,
        Ok(()),
        "supervisor died (finished: {})",
        join.is_finished()
    );
}

// Orders that override a stop in flight still answer whoever waits for the stop.

#[tokio::test]
async fn stop_child_is_answered_when_a_restart_overrides_it() {
    let j = journal();
    let (sup, mut rx) = running_slow_stopper(&j).await;
    let stop = while_stopping(&sup, &mut rx, |s| async move { s.stop_child("m").await }).await;
    sup.restart_child("m").await.unwrap();
    until(&mut rx, "m", ChildState::Running).await;
    let stop = timeout(PATIENCE, stop).await;
    assert!(
        matches!(stop, Ok(Ok(Ok(())))),
        "stop_child never answered although `m` did stop"
    );
}

#[tokio::test]
async fn a_child_being_removed_refuses_a_restart() {
    let j = journal();
    let (sup, mut rx) = running_slow_stopper(&j).await;
    let remove = while_stopping(&sup, &mut rx, |s| async move { s.remove_child("m").await }).await;
    assert_eq!(
        sup.restart_child("m").await,
        Err(SupervisionError::Removing("m".into()))
    );
    assert_eq!(
        sup.start_child("m").await,
        Err(SupervisionError::Removing("m".into()))
    );
    let remove = timeout(PATIENCE, remove).await;
    assert!(matches!(remove, Ok(Ok(Ok(())))), "{remove:?}");
    assert!(sup.children().await.unwrap().is_empty());
}

// start_child on a stopping child brings it back once it is down.

#[tokio::test]
async fn start_child_while_stopping_brings_the_child_back() {
    let j = journal();
    let (sup, mut rx) = running_slow_stopper(&j).await;
    let stop = while_stopping(&sup, &mut rx, |s| async move { s.stop_child("m").await }).await;
    sup.start_child("m").await.unwrap();
    timeout(PATIENCE, stop).await.unwrap().unwrap().unwrap();
    calm(&sup).await;
    let info = sup.children().await.unwrap().remove(0);
    assert_eq!(
        (info.state, info.wanted),
        (ChildState::Running, true),
        "start_child was accepted but the child stays down"
    );
}

// start_all after stop_all starts everything again.

#[tokio::test]
async fn start_all_after_stop_all_starts_everything_again() {
    let j = journal();
    let children = vec![worker("db", &j), worker("api", &j).depends_on(["db"])];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    sup.stop_all().await.unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    let s: Vec<_> = sup
        .children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.id.to_string(), c.state, c.wanted))
        .collect();
    assert!(
        s.iter().all(|(_, st, _)| *st == ChildState::Running),
        "nothing restarted after stop_all + start_all: {s:?}"
    );
}

// The layer gate waits for children in motion, not for ones blocked by a down dependency.

#[tokio::test]
async fn a_child_waiting_on_a_down_dependency_does_not_block_unrelated_layers() {
    let j = journal();
    let children = vec![
        worker("db", &j).enabled(false),
        worker("api", &j).depends_on(["db"]), // layer 1, waits on db forever
        worker("cache", &j),
        worker("cache2", &j).depends_on(["cache"]), // layer 1, runs
        worker("web", &j).depends_on(["cache2"]),   // layer 2: its deps run
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    assert_eq!(state_of(&sup, "cache2").await, Some(ChildState::Running));
    assert_eq!(
        state_of(&sup, "web").await,
        Some(ChildState::Running),
        "web's only dependency is running, yet it never starts"
    );
}

// Group restarts stop dependents before their dependencies.

#[tokio::test]
async fn a_group_restart_stops_dependents_before_their_dependencies() {
    let j = journal();
    let children = vec![
        worker("db", &j),
        slow_stop("api", &j, 300).depends_on(["db"]),
        worker("cache", &j),
    ];
    let (sup, mut rx) = started(Strategy::OneForAll, children).await;
    let cell = actor_of(&sup, "cache").await;
    cmd(&cell, Cmd::Fail);
    until(&mut rx, "api", ChildState::Running).await;
    calm(&sup).await;
    let stops = entries(&j, "stop:");
    let pos = |id: &str| stops.iter().position(|s| s == id).unwrap();
    assert!(
        pos("api") < pos("db"),
        "db (a dependency) stopped before its dependent api: {stops:?}"
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

// Corner cases: stale timers, orders during spawns, escalation, chains.

#[tokio::test]
async fn a_removed_childs_stale_timer_leaves_its_successor_alone() {
    let j = journal();
    let crashy = steady_backoff("c", &j, Duration::from_millis(200));
    let (sup, mut rx) = started(Strategy::OneForOne, vec![crashy]).await;
    crash_into_backoff(&sup, &mut rx, "c").await;
    timeout(PATIENCE, sup.remove_child("c"))
        .await
        .unwrap()
        .unwrap();
    assert!(sup.children().await.unwrap().is_empty());
    sup.add_child(worker("c", &j)).await.unwrap();
    calm(&sup).await;
    let first = actor_of(&sup, "c").await.get_id();
    // Absence of an effect: give the old backoff timer time to fire.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(actor_of(&sup, "c").await.get_id(), first);
    assert_eq!(state_of(&sup, "c").await, Some(ChildState::Running));
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn add_child_while_stopping_all_is_refused() {
    let j = journal();
    let (sup, mut rx) = running_slow_stopper(&j).await;
    let stop = while_stopping(&sup, &mut rx, |s| async move { s.stop_all().await }).await;
    assert_eq!(
        sup.add_child(worker("n", &j)).await,
        Err(SupervisionError::ShuttingDown)
    );
    timeout(PATIENCE, stop).await.unwrap().unwrap().unwrap();
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn stop_child_during_a_slow_spawn_stops_the_actor_on_arrival() {
    let j = journal();
    let sup = spawning_slowly(&j).await;
    timeout(PATIENCE, sup.stop_child("s"))
        .await
        .unwrap()
        .unwrap();
    let info = sup.children().await.unwrap().remove(0);
    assert_eq!(info.state, ChildState::Stopped);
    assert!(info.actor.is_none());
    assert_eq!(entries(&j, "stop:"), vec!["s"], "spawned actor was stopped");
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn remove_child_during_a_slow_spawn_leaves_no_actor() {
    let j = journal();
    let sup = spawning_slowly(&j).await;
    timeout(PATIENCE, sup.remove_child("s"))
        .await
        .unwrap()
        .unwrap();
    assert!(sup.children().await.unwrap().is_empty());
    assert_eq!(entries(&j, "stop:"), vec!["s"], "spawned actor was stopped");
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn stop_all_cancels_a_restart_in_backoff() {
    let j = journal();
    let crashy = steady_backoff("c", &j, Duration::from_millis(200));
    let (sup, mut rx) = started(Strategy::OneForOne, vec![crashy, worker("d", &j)]).await;
    crash_into_backoff(&sup, &mut rx, "c").await;
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    let starts = entries(&j, "start:").len();
    // Absence of an effect: give the cancelled backoff timer time to fire.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(entries(&j, "start:").len(), starts);
    assert!(sup
        .children()
        .await
        .unwrap()
        .iter()
        .all(|c| c.state == ChildState::Stopped));
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn escalation_answers_a_stop_child_in_flight() {
    let j = journal();
    let critical = critical(&j);
    let (sup, join) = SupervisorHandle::spawn(
        config(Strategy::OneForOne),
        vec![critical, slow_stop("slow", &j, 300)],
    )
    .await
    .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    let s2 = sup.clone();
    let stop = tokio::spawn(async move { s2.stop_child("slow").await });
    until(&mut rx, "slow", ChildState::Stopping).await;
    let cell = actor_of(&sup, "critical").await;
    cmd(&cell, Cmd::Fail);
    assert_eq!(timeout(PATIENCE, stop).await.unwrap().unwrap(), Ok(()));
    timeout(PATIENCE, join).await.unwrap().unwrap();
    assert!(entries(&j, "stop:").contains(&"slow".to_string()));
}

#[tokio::test]
async fn rest_for_one_restarts_a_dependency_chain_in_order() {
    let j = journal();
    let children = vec![
        worker("db", &j),
        worker("api", &j).depends_on(["db"]),
        worker("web", &j).depends_on(["api"]),
    ];
    let (sup, mut rx) = started(Strategy::RestForOne, children).await;
    j.lock().unwrap().clear();
    let cell = actor_of(&sup, "db").await;
    cmd(&cell, Cmd::Fail);
    until(&mut rx, "web", ChildState::Running).await;
    calm(&sup).await;
    assert_eq!(entries(&j, "start:"), vec!["db", "api", "web"]);
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn restart_child_of_a_child_in_backoff_starts_it_at_once() {
    let j = journal();
    let crashy = steady_backoff("c", &j, Duration::from_secs(5));
    let (sup, mut rx) = started(Strategy::OneForOne, vec![crashy]).await;
    crash_into_backoff(&sup, &mut rx, "c").await;
    sup.restart_child("c").await.unwrap();
    calm(&sup).await;
    assert_eq!(state_of(&sup, "c").await, Some(ChildState::Running));
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_child_that_fails_to_start_at_once_with_no_backoff_neither_recurses_nor_hogs() {
    // Fails on the first poll, restarts without delay: each restart must go round the
    // mailbox, not recurse (50,000 nested starts would overflow the stack).
    let broken = ChildSpec::new("broken", |_ctx: StartContext| async move {
        Err::<Started, _>(StartError::from("no such binary"))
    })
    .backoff(Backoff {
        initial: Duration::ZERO,
        max: Duration::ZERO,
        multiplier: 1.0,
        reset_after: Duration::from_secs(60),
    })
    .intensity(Intensity {
        max_restarts: 50_000,
        window: Duration::from_secs(600),
    });
    let j = journal();
    let (sup, _join) =
        SupervisorHandle::spawn(config(Strategy::OneForOne), vec![broken, worker("ok", &j)])
            .await
            .unwrap();
    sup.start_all().await.unwrap();
    let settled = timeout(PATIENCE, sup.settled()).await.unwrap().unwrap();
    assert_eq!(settled[0].state, ChildState::Failed);
    assert_eq!(settled[0].restarts, 50_000);
    assert_eq!(settled[1].state, ChildState::Running);
    sup.shutdown().await.unwrap();
}

// Group restarts and layer bookkeeping under concurrent orders.

#[tokio::test]
async fn stop_all_still_stops_every_layer_when_a_removal_shrinks_the_layers() {
    let j = journal();
    let children = vec![
        worker("a", &j),
        worker("b", &j).depends_on(["a"]),
        slow_stop("r", &j, 300).depends_on(["b"]),
    ];
    let (sup, mut rx) = started(Strategy::OneForOne, children).await;
    let s2 = sup.clone();
    let removal = tokio::spawn(async move { s2.remove_child("r").await });
    until(&mut rx, "r", ChildState::Stopping).await;
    timeout(PATIENCE, sup.stop_all())
        .await
        .expect("stop_all hung")
        .unwrap();
    timeout(PATIENCE, removal).await.unwrap().unwrap().unwrap();
    assert_eq!(
        states(&sup).await,
        vec![
            ("a".into(), ChildState::Stopped),
            ("b".into(), ChildState::Stopped)
        ],
        "stop_all returned with a child still up; stops: {:?}",
        entries(&j, "stop:")
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn start_child_on_a_crashed_child_held_by_its_group_restarts_it() {
    let j = journal();
    let children = vec![slow_stop("a", &j, 300), worker("b", &j)];
    let (sup, mut rx) = started(Strategy::OneForAll, children).await;
    cmd(&actor_of(&sup, "b").await, Cmd::Fail);
    until(&mut rx, "a", ChildState::Stopping).await;
    assert_eq!(state_of(&sup, "b").await, Some(ChildState::Backoff));
    sup.start_child("b").await.unwrap();
    let back = timeout(Duration::from_secs(3), async {
        loop {
            if state_of(&sup, "b").await == Some(ChildState::Running) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(back.is_ok(), "b never restarted: {:?}", states(&sup).await);
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn a_sibling_in_backoff_joins_the_group_instead_of_starting_under_it() {
    let j = journal();
    let children = vec![
        worker("db", &j),
        worker("mid", &j).depends_on(["db"]),
        slow_stop("peer", &j, 600).depends_on(["db"]),
        steady_backoff("x", &j, Duration::from_millis(300)).depends_on(["db"]),
    ];
    let (sup, mut rx) = started(Strategy::OneForAll, children).await;
    // The first restart is immediate (group held); the second backs off 300 ms.
    cmd(&actor_of(&sup, "x").await, Cmd::Fail);
    until(&mut rx, "x", ChildState::Backoff).await;
    calm(&sup).await;
    cmd(&actor_of(&sup, "x").await, Cmd::Fail);
    // Wait until the group of x's crash is over: everyone but x runs again, x still backs off.
    timeout(PATIENCE, async {
        loop {
            let s = states(&sup).await;
            let ok = s.iter().all(|(id, st)| {
                if id == "x" {
                    *st == ChildState::Backoff
                } else {
                    *st == ChildState::Running
                }
            });
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("group of x never ended"));
    let db_before = actor_of(&sup, "db").await.get_id();
    let before = j.lock().unwrap().len();
    cmd(&actor_of(&sup, "mid").await, Cmd::Fail);
    // db is a member of mid's group: it is stopped and restarted.
    calm(&sup).await;
    assert_ne!(actor_of(&sup, "db").await.get_id(), db_before);
    let after: Vec<String> = j.lock().unwrap()[before..].to_vec();
    let at = |entry: &str| after.iter().position(|e| e == entry);
    let (stop_db, start_db, start_x) = (at("stop:db"), at("start:db"), at("start:x"));
    assert!(
        stop_db < start_db && start_db < start_x && stop_db.is_some(),
        "x (in backoff, depends on db) must wait for the group, db stopped then restarted \
         first: {after:?}"
    );
    assert_eq!(state_of(&sup, "x").await, Some(ChildState::Running));
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn a_group_formed_by_a_start_that_fails_at_once_moves_on_by_itself() {
    let j = journal();
    let broken = ChildSpec::new("broken", |_ctx: StartContext| async move {
        Err::<Started, _>(StartError::from("no such binary"))
    })
    .backoff(fast_backoff());
    // `s` is declared (and started) first, so it is running when `broken` fails.
    let (sup, _join) =
        SupervisorHandle::spawn(config(Strategy::OneForAll), vec![worker("s", &j), broken])
            .await
            .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    // No further message is sent to the supervisor: the group must move by itself.
    let moved = timeout(Duration::from_secs(2), async {
        loop {
            match rx.recv().await {
                Ok(e) if entered(&e, "s", ChildState::Stopping) => return,
                Ok(_) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await;
    let now = states(&sup).await;
    assert!(
        moved.is_ok(),
        "group restart never began its stop of s; states before this query: {now:?}"
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

fn group_chain(j: &Journal) -> Vec<ChildSpec> {
    vec![
        worker("db", j),
        worker("cache", j),
        worker("api", j).depends_on(["db"]),
        slow_stop("web", j, 400).depends_on(["api"]),
    ]
}

#[tokio::test]
async fn two_crashes_in_one_rest_for_one_group_bring_everything_back() {
    let j = journal();
    let (sup, mut rx) = started(Strategy::RestForOne, group_chain(&j)).await;
    cmd(&actor_of(&sup, "api").await, Cmd::Fail);
    until(&mut rx, "web", ChildState::Stopping).await;
    cmd(&actor_of(&sup, "db").await, Cmd::Fail);
    until(&mut rx, "db", ChildState::Backoff).await;
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn stop_all_and_a_member_crash_in_the_middle_of_a_group() {
    let j = journal();
    let (sup, mut rx) = started(Strategy::OneForAll, group_chain(&j)).await;
    cmd(&actor_of(&sup, "cache").await, Cmd::Fail);
    until(&mut rx, "web", ChildState::Stopping).await;
    // A held member crashes on its own.
    cmd(&actor_of(&sup, "db").await, Cmd::Fail);
    until(&mut rx, "db", ChildState::Stopped).await;
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    cmd(&actor_of(&sup, "cache").await, Cmd::Fail);
    until(&mut rx, "web", ChildState::Stopping).await;
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    assert_all(&sup, ChildState::Stopped).await;
    sup.start_all().await.unwrap();
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn operator_orders_on_group_members_are_all_answered() {
    let j = journal();
    let (sup, mut rx) = started(Strategy::OneForAll, group_chain(&j)).await;
    cmd(&actor_of(&sup, "cache").await, Cmd::Fail);
    until(&mut rx, "web", ChildState::Stopping).await;
    // Remove the stopping member, restart a held running one, stop the other.
    let s2 = sup.clone();
    let rm = tokio::spawn(async move { s2.remove_child("web").await });
    sup.restart_child("api").await.unwrap();
    timeout(PATIENCE, sup.stop_child("db"))
        .await
        .unwrap()
        .unwrap();
    timeout(PATIENCE, rm).await.unwrap().unwrap().unwrap();
    calm(&sup).await;
    let s = states(&sup).await;
    // api was restarted by hand while db still ran; stop_child(db) leaves dependents alone.
    assert_eq!(
        s[..2],
        [
            ("db".into(), ChildState::Stopped),
            ("cache".into(), ChildState::Running)
        ]
    );
    assert_eq!(s.len(), 3);
    sup.start_child("db").await.unwrap();
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

/// A child without an actor of its own.
fn placeholder(id: &'static str) -> ChildSpec {
    ChildSpec::new(id, |_: StartContext| async {
        Ok::<_, StartError>(Started::without_actor())
    })
}

#[tokio::test]
async fn children_without_an_actor_keep_their_place_in_the_order_and_stop_at_once() {
    let j = journal();
    // base (no actor) <- api (an actor) <- tag (no actor).
    let children = vec![
        placeholder("tag").depends_on(["api"]),
        worker("api", &j).depends_on(["base"]),
        placeholder("base"),
    ];
    let (sup, mut rx) = started(Strategy::OneForOne, children).await;
    let infos = sup.children().await.unwrap();
    assert!(
        infos.iter().all(|c| c.state == ChildState::Running),
        "{infos:?}"
    );
    let actors: Vec<bool> = infos.iter().map(|c| c.actor.is_some()).collect();
    assert_eq!(actors, [false, true, false], "only api has an actor");

    // Stopped at once, started again by name, restarted by hand.
    timeout(PATIENCE, sup.stop_child("tag"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state_of(&sup, "tag").await, Some(ChildState::Stopped));
    sup.start_child("tag").await.unwrap();
    calm(&sup).await;
    assert_eq!(state_of(&sup, "tag").await, Some(ChildState::Running));
    sup.restart_child("base").await.unwrap();
    until(&mut rx, "base", ChildState::Running).await;
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;

    // Stopped in reverse order: tag, then api (whose actor really stops), then base.
    let mut order = Vec::new();
    let mut seen = sup.subscribe();
    timeout(PATIENCE, sup.stop_all()).await.unwrap().unwrap();
    while let Ok(SupervisorEvent::Child(t)) = seen.try_recv() {
        if t.to == ChildState::Stopped {
            order.push(t.child.to_string());
        }
    }
    assert_eq!(order, ["tag", "api", "base"]);
    assert_eq!(entries(&j, "stop:"), ["api"]);
    sup.remove_child("tag").await.unwrap();
    assert_eq!(sup.children().await.unwrap().len(), 2);
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn a_group_restart_takes_children_without_an_actor_down_and_up_again() {
    let j = journal();
    // Two layers of children without an actor around the one that crashes: no exit will
    // come from them to move the group restart on.
    let children = vec![
        placeholder("base"),
        worker("w", &j),
        placeholder("top").depends_on(["w", "base"]),
    ];
    let (sup, mut rx) = started(Strategy::OneForAll, children).await;
    cmd(&actor_of(&sup, "w").await, Cmd::Fail);
    until(&mut rx, "top", ChildState::Stopped).await;
    until(&mut rx, "base", ChildState::Stopped).await;
    until(&mut rx, "top", ChildState::Running).await;
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    assert_eq!(entries(&j, "start:"), ["w", "w"]);
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

#[tokio::test]
async fn an_observer_sees_every_event_in_order_without_subscribing() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    let config = SupervisorConfig::new().observer(move |event: &SupervisorEvent| {
        if let SupervisorEvent::Child(t) = event {
            log.lock().unwrap().push(format!("{} {}", t.child, t.to));
        }
    });
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(
        config,
        vec![worker("b", &j).depends_on(["a"]), placeholder("a")],
    )
    .await
    .unwrap();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    sup.stop_all().await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "a starting",
            "a running",
            "b starting",
            "b running",
            "b stopping",
            "b stopped",
            "a stopping",
            "a stopped"
        ]
    );
    let _ = timeout(PATIENCE, sup.shutdown()).await;
}

// ---- Task children: a tokio task per incarnation instead of an actor ----

/// Orders for whichever incarnation of a task child is running.
enum TaskCmd {
    /// Return `Err`.
    Fail,
    /// Panic.
    Panic,
    /// Return `Ok(())`.
    Finish,
}

/// Drives a task child from a test: orders go to the incarnation running, `starts` counts
/// incarnations that began, `live` those whose future still exists (it drops to 0 only once
/// the future itself was dropped, so it proves the task's work is over).
#[derive(Clone)]
struct TaskProbe {
    orders: mpsc::UnboundedSender<TaskCmd>,
    inbox: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<TaskCmd>>>,
    starts: Arc<watch::Sender<usize>>,
    live: Arc<AtomicUsize>,
}

impl TaskProbe {
    fn new() -> Self {
        let (orders, inbox) = mpsc::unbounded_channel();
        TaskProbe {
            orders,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            starts: Arc::new(watch::channel(0).0),
            live: Arc::default(),
        }
    }

    fn order(&self, cmd: TaskCmd) {
        self.orders.send(cmd).unwrap();
    }

    /// Waits (bounded) until `n` incarnations have begun.
    async fn started(&self, n: usize) {
        let mut starts = self.starts.subscribe();
        timeout(PATIENCE, starts.wait_for(|&s| s >= n))
            .await
            .unwrap_or_else(|_| panic!("task never started {n} times"))
            .unwrap();
    }

    fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
}

/// Counts a future as live from its first poll until it is dropped.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Live(count.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A task child that journals "start:<id>", obeys the probe's orders and, if `honours_stop`,
/// journals "stop:<id>" and returns when asked to stop; otherwise it ignores the request.
fn task_child(id: &'static str, j: &Journal, probe: &TaskProbe, honours_stop: bool) -> ChildSpec {
    let (j, probe) = (j.clone(), probe.clone());
    ChildSpec::task(id, move |ctx: TaskContext| {
        let (j, probe) = (j.clone(), probe.clone());
        async move {
            let _live = Live::new(&probe.live);
            assert_eq!(&*ctx.child, id);
            j.lock().unwrap().push(format!("start:{id}"));
            probe.starts.send_modify(|n| *n += 1);
            let mut inbox = probe.inbox.lock().await;
            tokio::select! {
                _ = ctx.stop.stopped(), if honours_stop => {
                    j.lock().unwrap().push(format!("stop:{id}"));
                    Ok(())
                }
                cmd = inbox.recv() => match cmd {
                    Some(TaskCmd::Fail) => Err("task failed".into()),
                    Some(TaskCmd::Panic) => panic!("task panicked"),
                    Some(TaskCmd::Finish) | None => Ok(()),
                },
            }
        }
    })
    .backoff(fast_backoff())
}

/// Every child transition received so far, as "<child> <state>".
fn drain(rx: &mut broadcast::Receiver<SupervisorEvent>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = rx.try_recv() {
        if let SupervisorEvent::Child(t) = event {
            seen.push(format!("{} {}", t.child, t.to));
        }
    }
    seen
}

fn position(seen: &[String], what: &str) -> usize {
    seen.iter()
        .position(|s| s == what)
        .unwrap_or_else(|| panic!("no `{what}` in {seen:?}"))
}

#[tokio::test]
async fn a_task_child_that_returns_an_error_is_restarted_with_backoff() {
    let (j, probe) = (journal(), TaskProbe::new());
    let spec = task_child("t", &j, &probe, true).intensity(Intensity {
        max_restarts: 10,
        window: Duration::from_secs(60),
    });
    let (sup, mut rx) = started(Strategy::OneForOne, vec![spec]).await;
    let mut delays = Vec::new();
    for n in 1..=3 {
        probe.started(n).await;
        probe.order(TaskCmd::Fail);
        if let SupervisorEvent::Child(t) =
            wait_for(&mut rx, "backoff", |e| entered(e, "t", ChildState::Backoff)).await
        {
            assert_eq!(t.reason.as_deref(), Some("task failed"));
            assert_eq!(t.restarts, n as u64);
            delays.push(t.delay.unwrap());
        }
        until(&mut rx, "t", ChildState::Running).await;
    }
    let ms = Duration::from_millis;
    assert_eq!(delays, vec![ms(0), ms(10), ms(20)]);
    probe.started(4).await;
    let info = sup.children().await.unwrap().remove(0);
    assert_eq!(info.restarts, 3);
    assert!(info.actor.is_none(), "a task child has no actor");
    assert!(
        matches!(
            &info.last_exit,
            Some((Exit::Abnormal(ChildError::Failed(e)), _)) if e.to_string() == "task failed"
        ),
        "{:?}",
        info.last_exit
    );
    sup.shutdown().await.unwrap();
    assert_eq!(probe.live(), 0);
}

#[tokio::test]
async fn a_panicking_task_child_is_restarted_and_the_supervisor_survives() {
    let (j, probe) = (journal(), TaskProbe::new());
    let (sup, mut rx) = started(Strategy::OneForOne, vec![task_child("p", &j, &probe, true)]).await;
    probe.started(1).await;
    probe.order(TaskCmd::Panic);
    match wait_for(&mut rx, "backoff", |e| entered(e, "p", ChildState::Backoff)).await {
        SupervisorEvent::Child(t) => {
            assert_eq!(t.reason.as_deref(), Some("panicked: task panicked"));
            assert_eq!(t.restarts, 1);
        }
        other => panic!("{other:?}"),
    }
    until(&mut rx, "p", ChildState::Running).await;
    probe.started(2).await;
    assert_eq!(sup.actor().get_status(), ActorStatus::Running);
    assert_eq!(probe.live(), 1, "the panicked incarnation is gone");
    sup.shutdown().await.unwrap();
    assert_eq!(entries(&j, "stop:"), ["p"]);
}

#[tokio::test]
async fn restart_types_decide_what_a_task_childs_exit_means() {
    let j = journal();
    let probes: Vec<TaskProbe> = (0..4).map(|_| TaskProbe::new()).collect();
    let children = vec![
        task_child("transient-ok", &j, &probes[0], true).restart(Restart::Transient),
        task_child("transient-crash", &j, &probes[1], true).restart(Restart::Transient),
        task_child("temporary", &j, &probes[2], true).restart(Restart::Temporary),
        task_child("permanent-ok", &j, &probes[3], true).restart(Restart::Permanent),
    ];
    let (sup, mut rx) = started(Strategy::OneForOne, children).await;
    for probe in &probes {
        probe.started(1).await;
    }
    probes[0].order(TaskCmd::Finish);
    probes[1].order(TaskCmd::Fail);
    probes[2].order(TaskCmd::Fail);
    probes[3].order(TaskCmd::Finish);
    until(&mut rx, "transient-crash", ChildState::Running).await;
    until(&mut rx, "permanent-ok", ChildState::Running).await;
    calm(&sup).await;
    let s = states(&sup).await;
    assert_eq!(s[0], ("transient-ok".into(), ChildState::Stopped));
    assert_eq!(s[1], ("transient-crash".into(), ChildState::Running));
    assert_eq!(s[2], ("temporary".into(), ChildState::Failed));
    assert_eq!(s[3], ("permanent-ok".into(), ChildState::Running));
    probes[1].started(2).await;
    probes[3].started(2).await;
    let starts: Vec<usize> = probes.iter().map(|p| *p.starts.borrow()).collect();
    assert_eq!(starts, [1, 2, 1, 2]);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_child_that_honours_its_stop_signal_stops_gracefully() {
    let (j, probe) = (journal(), TaskProbe::new());
    // A grace far longer than the test: a stop that finishes was not an abort.
    let spec = task_child("g", &j, &probe, true).shutdown(Duration::from_secs(3600));
    let (sup, mut rx) = started(Strategy::OneForOne, vec![spec]).await;
    probe.started(1).await;
    drain(&mut rx);

    timeout(PATIENCE, sup.stop_child("g"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut rx), ["g stopping", "g stopped"]);
    assert_eq!(entries(&j, "stop:"), ["g"], "the task ran its own clean-up");
    assert_eq!(
        probe.live(),
        0,
        "the task is gone once the child is stopped"
    );
    let info = sup.children().await.unwrap().remove(0);
    assert_eq!(info.restarts, 0);
    assert!(info.last_exit.is_none(), "a stop is not an exit");

    // Started by name, then restarted by hand: a fresh incarnation, not counted.
    sup.start_child("g").await.unwrap();
    calm(&sup).await;
    probe.started(2).await;
    sup.restart_child("g").await.unwrap();
    until(&mut rx, "g", ChildState::Running).await;
    probe.started(3).await;
    assert_eq!(entries(&j, "stop:"), ["g", "g"]);
    assert_eq!(sup.children().await.unwrap()[0].restarts, 0);

    // Removed: stopped the same way, then gone.
    timeout(PATIENCE, sup.remove_child("g"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entries(&j, "stop:"), ["g", "g", "g"]);
    assert_eq!(probe.live(), 0);
    assert!(sup.children().await.unwrap().is_empty());
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_task_child_that_ignores_its_stop_signal_is_aborted_after_its_grace() {
    let (j, probe) = (journal(), TaskProbe::new());
    let spec = task_child("deaf", &j, &probe, false).shutdown(Duration::from_millis(50));
    let (sup, mut rx) = started(Strategy::OneForOne, vec![spec]).await;
    probe.started(1).await;
    assert_eq!(probe.live(), 1);
    drain(&mut rx);

    timeout(PATIENCE, sup.stop_child("deaf"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(drain(&mut rx), ["deaf stopping", "deaf stopped"]);
    assert_eq!(probe.live(), 0, "aborted: its future was dropped");
    assert!(entries(&j, "stop:").is_empty(), "it never saw the stop");
    assert_eq!(state_of(&sup, "deaf").await, Some(ChildState::Stopped));

    // The kill was the supervisor's, not a crash: nothing restarted, and it starts again.
    sup.start_child("deaf").await.unwrap();
    until(&mut rx, "deaf", ChildState::Running).await;
    probe.started(2).await;
    assert_eq!(sup.children().await.unwrap()[0].restarts, 0);
    timeout(PATIENCE, sup.shutdown()).await.unwrap().unwrap();
    assert_eq!(probe.live(), 0);
}

#[tokio::test]
async fn task_children_start_in_dependency_layers_and_stop_in_reverse() {
    let j = journal();
    let probes: Vec<TaskProbe> = (0..4).map(|_| TaskProbe::new()).collect();
    // db <- api <- web, plus an independent cache; declared out of order on purpose.
    let children = vec![
        task_child("web", &j, &probes[0], true).depends_on(["api", "db"]),
        task_child("api", &j, &probes[1], true).depends_on(["db"]),
        task_child("db", &j, &probes[2], true),
        task_child("cache", &j, &probes[3], true),
    ];
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), children)
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    calm(&sup).await;
    assert_all(&sup, ChildState::Running).await;
    let seen = drain(&mut rx);
    let at = |what: &str| position(&seen, what);
    assert!(at("db running") < at("api starting"), "{seen:?}");
    assert!(at("api running") < at("web starting"), "{seen:?}");
    assert!(at("cache running") < at("api starting"), "{seen:?}");
    for probe in &probes {
        probe.started(1).await;
    }

    sup.stop_all().await.unwrap();
    // Each stop journal entry is written by the task before it ends, and a layer is
    // stopped only once the one above has ended.
    let stopped = entries(&j, "stop:");
    let pos = |id: &str| stopped.iter().position(|s| s == id).unwrap();
    assert!(
        pos("web") < pos("api") && pos("api") < pos("db"),
        "{stopped:?}"
    );
    assert!(pos("api") < pos("cache"), "{stopped:?}");
    assert_all(&sup, ChildState::Stopped).await;
    assert!(probes.iter().all(|p| p.live() == 0));
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn actor_and_task_children_restart_together_under_rest_for_one() {
    let j = journal();
    let (a, c) = (TaskProbe::new(), TaskProbe::new());
    // a (task) <- b (actor) <- c (task)
    let children = vec![
        task_child("a", &j, &a, true),
        worker("b", &j).depends_on(["a"]),
        task_child("c", &j, &c, true).depends_on(["b"]),
    ];
    let (sup, mut rx) = started(Strategy::RestForOne, children).await;
    c.started(1).await;

    // The task at the bottom crashes: the actor and the task above it go down, top first,
    // and everything comes back in order.
    a.order(TaskCmd::Fail);
    until(&mut rx, "c", ChildState::Running).await;
    calm(&sup).await;
    c.started(2).await;
    let seen = drain(&mut rx);
    let at = |what: &str| position(&seen, what);
    assert!(at("c stopped") < at("b stopping"), "{seen:?}");
    assert!(at("b stopped") < at("a starting"), "{seen:?}");
    assert!(at("a running") < at("b starting"), "{seen:?}");
    assert!(at("b running") < at("c starting"), "{seen:?}");
    assert_eq!(entries(&j, "stop:"), ["c", "b"], "both stopped gracefully");
    assert_eq!(*a.starts.borrow(), 2);

    // The actor in the middle crashes: only the task above it restarts with it.
    cmd(&actor_of(&sup, "b").await, Cmd::Fail);
    until(&mut rx, "c", ChildState::Running).await;
    calm(&sup).await;
    c.started(3).await;
    assert_all(&sup, ChildState::Running).await;
    assert_eq!(*a.starts.borrow(), 2, "a is below b: left alone");
    assert_eq!(
        entries(&j, "start:").iter().filter(|s| *s == "b").count(),
        3
    );
    assert_eq!(a.live() + c.live(), 2);
    sup.shutdown().await.unwrap();
    assert_eq!(a.live() + c.live(), 0);
}

#[tokio::test]
async fn a_supervisor_that_dies_takes_its_tasks_with_it() {
    let (j, probe) = (journal(), TaskProbe::new());
    let (sup, mut rx) = started(
        Strategy::OneForOne,
        vec![task_child("orphan", &j, &probe, false)],
    )
    .await;
    until(&mut rx, "orphan", ChildState::Running).await;
    probe.started(1).await;
    // Killed: no stop_all and no post_stop, only the supervisor's state being dropped.
    sup.actor().kill();
    timeout(PATIENCE, async {
        while probe.live() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the task outlived its supervisor");
}

#[tokio::test]
async fn a_worker_that_prepares_before_its_task_runs_is_supervised_the_same() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    // The worker awaits something first (so its start goes through the supervisor's
    // mailbox), then hands over a task that fails on its first run only.
    let spec = ChildSpec::new("prepared", move |ctx: StartContext| {
        let runs = counted.clone();
        async move {
            tokio::task::yield_now().await;
            let stop = supervision::StopSignal::new();
            let first = ctx.restarts == 0;
            let signal = stop.clone();
            Ok::<_, StartError>(Started::task(stop, async move {
                runs.fetch_add(1, Ordering::SeqCst);
                if first {
                    return Err("first run fails".into());
                }
                signal.stopped().await;
                Ok(())
            }))
        }
    })
    .backoff(fast_backoff());
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![spec])
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    match wait_for(&mut rx, "backoff", |e| {
        entered(e, "prepared", ChildState::Backoff)
    })
    .await
    {
        SupervisorEvent::Child(t) => assert_eq!(t.reason.as_deref(), Some("first run fails")),
        other => panic!("{other:?}"),
    }
    until(&mut rx, "prepared", ChildState::Running).await;
    timeout(PATIENCE, sup.stop_child("prepared"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(state_of(&sup, "prepared").await, Some(ChildState::Stopped));
    sup.shutdown().await.unwrap();
}
