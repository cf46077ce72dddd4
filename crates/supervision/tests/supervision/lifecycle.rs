//! Start in layers, the three strategies, backoff, intensity, escalation, restart types, manual orders, readiness, and the embedding example.

use super::*;

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

/// A child actor killed by someone else is a crash whose error is `ChildError::Killed` (not a
/// text to compare), and whose reason reads `killed`, as it always has.
#[tokio::test]
async fn a_killed_child_is_known_by_its_type_and_restarted() {
    let j = journal();
    let (sup, _join) = SupervisorHandle::spawn(config(Strategy::OneForOne), vec![worker("k", &j)])
        .await
        .unwrap();
    let mut rx = sup.subscribe();
    sup.start_all().await.unwrap();
    until(&mut rx, "k", ChildState::Running).await;
    actor_of(&sup, "k").await.kill();
    let backoff = wait_for(&mut rx, "backoff", |e| entered(e, "k", ChildState::Backoff)).await;
    match backoff {
        SupervisorEvent::Child(t) => assert_eq!(t.reason.as_deref(), Some("killed"), "{t:?}"),
        other => panic!("{other:?}"),
    }
    until(&mut rx, "k", ChildState::Running).await;
    let info = sup.children().await.unwrap().remove(0);
    assert!(
        matches!(
            info.last_exit,
            Some((Exit::Abnormal(ChildError::Killed), _))
        ),
        "{:?}",
        info.last_exit
    );
    sup.shutdown().await.unwrap();
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
    let spec = worker("c", &j).intensity(Intensity::new(10, Duration::from_secs(60)));
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
    let fragile = worker("fragile", &j).intensity(Intensity::new(2, Duration::from_secs(60)));
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
    .intensity(Intensity::new(1, Duration::from_secs(60)))
    .backoff(fast_backoff());
    let broken = ChildSpec::new("broken", |_ctx: StartContext| async move {
        Err::<Started, _>(StartError::from("no such binary"))
    })
    .intensity(Intensity::new(1, Duration::from_secs(60)))
    .backoff(fast_backoff());
    // Its worker never finishes spawning: the deadline covers the spawn too.
    let stuck = ChildSpec::new("stuck", |_ctx: StartContext| async move {
        std::future::pending::<Result<Started, StartError>>().await
    })
    .start_timeout(Duration::from_millis(30))
    .intensity(Intensity::new(1, Duration::from_secs(60)))
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
