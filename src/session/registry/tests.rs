//! The registry with real storage and logical agents: rebuilds, restore, purge.

use std::time::{Duration, Instant};

use ractor::ActorId;
use serde_json::json;

use super::actor::MAX_REBUILDS;
use super::*;
use crate::config::Overrides;
use crate::session::model::{SessionConfig, SessionStatus};
use crate::session::store;

const PATIENCE: Duration = Duration::from_secs(20);

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The session's actor, once it is another than `not`.
async fn actor_other_than(
    registry: &SessionRegistry,
    id: Uuid,
    not: Option<ActorId>,
) -> ActorRef<SessionMsg> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        // For an order: a dormant session is woken.
        if let Ok((_, Some(live))) = registry.find(id, true).await {
            if let Some(actor) = live.actor().filter(|a| Some(a.get_id()) != not) {
                return actor;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for a new actor"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_session_actor_that_dies_is_rebuilt_then_left_in_error_after_too_many_deaths() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::load(&Overrides {
        data_dir: Some(dir.path().join("data")),
        ..Overrides::default()
    })
    .unwrap();
    let storage = Storage::open(&settings.db_path()).await.unwrap();
    let registry = SessionRegistry::start(
        Arc::new(settings),
        storage.clone(),
        "http://127.0.0.1:9".into(),
        EventBus::new(0),
    )
    .await
    .unwrap();
    let config: SessionConfig = serde_json::from_value(json!({
        "name": "fragile",
        "working_directory": dir.path().join("work").to_string_lossy(),
        "git_enabled": false,
        "agents": [{"agent_type": "ORCHESTRATOR"}, {"agent_type": "BACKEND"}],
    }))
    .unwrap();
    let created = registry.create(CreateSession::new(config)).await.unwrap();
    let id = created.record.id;

    let mut actor = actor_other_than(&registry, id, None).await;
    for _ in 0..MAX_REBUILDS {
        // Killed: no post_stop, as after a panic.
        actor.kill();
        actor = actor_other_than(&registry, id, Some(actor.get_id())).await;
        until(
            "the rebuilt session active with its agents running",
            || async {
                let view = registry.get(id).await.unwrap();
                view.record.status == SessionStatus::Active
                    && view.agents.len() == 2
                    && view
                        .agents
                        .iter()
                        .all(|a| a.state == crate::supervision::ChildState::Running)
            },
        )
        .await;
        let view = registry.get(id).await.unwrap();
        assert_eq!(view.record.configuration, created.record.configuration);
        assert_eq!(view.record.created_at, created.record.created_at);
        assert_eq!(view.record.error_message, None);
    }

    // One death more than it is rebuilt for.
    actor.kill();
    until("the session in error", || async {
        registry.get(id).await.unwrap().record.status == SessionStatus::Error
    })
    .await;
    let (record, actor) = registry.lookup(id).await.unwrap();
    assert!(actor.is_none(), "no actor is left running it");
    let message = record.error_message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("died {} times", MAX_REBUILDS + 1)) && message.contains("killed"),
        "{message}"
    );
    // Stored so (on a task of the registry's, so soon after): a restart does not bring it
    // back as if nothing happened.
    until("the error stored", || async {
        let stored = store::load_all(&storage).await.unwrap().records;
        let stored = stored.iter().find(|r| r.id == id).unwrap();
        stored.status == SessionStatus::Error
            && stored.error_message.as_deref() == Some(message.as_str())
    })
    .await;
    registry.shutdown().await;
}

#[tokio::test]
async fn a_session_of_logical_agents_has_no_actor_until_an_order_and_its_start_is_stored_at_the_stop(
) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Arc::new(
        Settings::load(&Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        })
        .unwrap(),
    );
    let storage = Storage::open(&settings.db_path()).await.unwrap();
    let start = || {
        SessionRegistry::start(
            settings.clone(),
            storage.clone(),
            "http://127.0.0.1:9".into(),
            EventBus::new(0),
        )
    };
    let registry = start().await.unwrap();
    let config = |name: &str| -> SessionConfig {
        serde_json::from_value(json!({
            "name": name,
            "working_directory": dir.path().join("work").to_string_lossy(),
            "git_enabled": false,
            "agents": [{"agent_type": "ORCHESTRATOR"}, {"agent_type": "BACKEND"}],
        }))
        .unwrap()
    };
    let idle = registry
        .create(CreateSession::new(config("idle")))
        .await
        .unwrap();
    let ordered = registry
        .create(CreateSession::new(config("ordered")))
        .await
        .unwrap();
    let (idle, ordered) = (idle.record.id, ordered.record.id);

    // Dormant: readable (record, agents) without an actor.
    for id in [idle, ordered] {
        let (record, live) = registry.lookup(id).await.unwrap();
        assert_eq!(record.status, SessionStatus::Active);
        assert!(
            live.unwrap().actor().is_none(),
            "a session of logical agents has no actor"
        );
        let view = registry.get(id).await.unwrap();
        assert_eq!(view.agents.len(), 2);
        assert!(view.agents.iter().all(|a| a.active));
    }
    // Derived at its start, not stored yet: a dormant session writes nothing.
    let stored = store::load_all(&storage).await.unwrap().records;
    assert!(stored
        .iter()
        .all(|r| r.status == SessionStatus::Initializing));

    // An order wakes it: carried out and counted.
    let agent = registry
        .agent(ordered, "backend-services", AgentOp::Restart)
        .await
        .unwrap();
    assert!(agent.active);
    let (record, live) = registry.lookup(ordered).await.unwrap();
    assert!(live.unwrap().actor().is_some(), "the order woke its actor");
    assert_eq!(record.agent_activations.get("backend-services"), Some(&1));
    let (_, live) = registry.lookup(idle).await.unwrap();
    assert!(live.unwrap().actor().is_none(), "the other one sleeps on");
    // An unknown agent of a dormant session is refused like any, without waking it.
    assert!(matches!(
        registry.agent(idle, "nobody", AgentOp::Restart).await,
        Err(SessionError::AgentNotFound(_))
    ));
    let (_, live) = registry.lookup(idle).await.unwrap();
    assert!(
        live.unwrap().actor().is_none(),
        "a refused order wakes nobody"
    );

    // The stop stores what the dormant ones derived at their start, with the woken one's.
    registry.shutdown().await;
    let stored = store::load_all(&storage).await.unwrap().records;
    let stored = |id| stored.iter().find(|r| r.id == id).unwrap().clone();
    assert_eq!(stored(idle).status, SessionStatus::Active);
    assert_eq!(stored(ordered).status, SessionStatus::Active);
    assert_eq!(
        stored(ordered).agent_activations.get("backend-services"),
        Some(&1)
    );

    // Restored: dormant again, as they were; terminating one wakes it and ends it.
    let registry = start().await.unwrap();
    for id in [idle, ordered] {
        let (record, live) = registry.lookup(id).await.unwrap();
        assert_eq!(record.status, SessionStatus::Active);
        assert!(live.unwrap().actor().is_none());
    }
    let ended = registry.terminate(ordered, false).await.unwrap();
    assert_eq!(ended.status, SessionStatus::Terminated);
    let (record, live) = registry.lookup(ordered).await.unwrap();
    assert_eq!(record.status, SessionStatus::Terminated);
    assert!(live.is_none());
    registry.shutdown().await;
}
