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
        if let Ok((_, Some(live))) = registry.lookup(id).await {
            if Some(live.actor.get_id()) != not {
                return live.actor;
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
