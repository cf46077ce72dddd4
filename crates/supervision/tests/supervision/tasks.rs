//! Task children: a tokio task per incarnation instead of an actor.

use super::*;

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
    let spec =
        task_child("t", &j, &probe, true).intensity(Intensity::new(10, Duration::from_secs(60)));
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
