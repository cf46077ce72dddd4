//! Group restarts and layer bookkeeping under concurrent orders; children without an actor; the observer.

use super::*;

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
