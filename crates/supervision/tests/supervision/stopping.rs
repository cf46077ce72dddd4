//! stop_all and single stops against spawns, timers and orders in flight, and other corner cases.

use super::*;

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
    .backoff(
        Backoff::new(Duration::ZERO, Duration::ZERO)
            .with_multiplier(1.0)
            .with_reset_after(Duration::from_secs(60)),
    )
    .intensity(Intensity::new(50_000, Duration::from_secs(600)));
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
