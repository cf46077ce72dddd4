//! Sessions through the registry's typed handle (what the HTTP layer will call), and restore
//! through the real binary after a graceful stop and after kill -9.

mod common;

use common::{alive, fake, PATIENCE};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use session_manager::config::{Overrides, Settings};
use session_manager::session::{
    AgentOp, CloneSession, CreateSession, EventBus, ImportSession, SessionConfig, SessionError,
    SessionEvent, SessionRegistry, SessionStatus, UpdateSession,
};
use session_manager::storage::Storage;
use session_manager::supervision::ChildState;

struct World {
    dir: tempfile::TempDir,
    settings: Settings,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(&Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        })
        .unwrap();
        settings.agents.allow_custom_commands = true;
        settings.agents.stop_grace_ms = 1000;
        World { dir, settings }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn work(&self) -> String {
        self.path("work").to_string_lossy().into_owned()
    }

    async fn start(&self) -> (SessionRegistry, Storage) {
        let storage = Storage::open(&self.settings.db_path()).await.unwrap();
        let registry = SessionRegistry::start(
            Arc::new(self.settings.clone()),
            storage.clone(),
            "http://127.0.0.1:9".into(),
            EventBus::new(0),
        )
        .await
        .unwrap();
        (registry, storage)
    }
}

fn config(value: Value) -> SessionConfig {
    serde_json::from_value(value).unwrap()
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status_of(registry: &SessionRegistry, id: uuid::Uuid) -> SessionStatus {
    registry.get(id).await.unwrap().record.status
}

#[tokio::test]
async fn create_starts_agents_in_a_created_directory_and_the_session_becomes_active() {
    let world = World::new();
    let (registry, storage) = world.start().await;
    let mut events = registry.subscribe();
    let work = format!("{}/nested/project", world.work());
    let view = registry
        .create(CreateSession::new(config(json!({
            "name": "My Project Session",
            "working_directory": work,
            "agents": [
                {"agent_type": "orchestrator", "command": fake(&["--ready-after-ms", "50"]), "ready_pattern": "READY"},
                {"agent_type": "BACKEND", "command": fake(&[])},
                {"agent_type": "documentation"},
            ],
            "environment_variables": {"NODE_ENV": "development"},
        }))))
        .await
        .unwrap();
    assert!(
        Path::new(&work).is_dir(),
        "the missing directory is created"
    );
    let id = view.record.id;
    // Agent events may come first: the agents start before the registry announces the session.
    loop {
        let published = events.recv().await.unwrap();
        if let SessionEvent::Created(r) = &published.event {
            assert_eq!(r.id, id);
            assert!(published.seq.is_some(), "lifecycle events are numbered");
            break;
        }
    }
    until("active", || async {
        status_of(&registry, id).await == SessionStatus::Active
    })
    .await;
    let view = registry.get(id).await.unwrap();
    assert_eq!(view.agents.len(), 3);
    assert!(view.agents.iter().all(|a| a.state == ChildState::Running));
    let backend = view
        .agents
        .iter()
        .find(|a| a.name == "backend-services")
        .unwrap();
    let pid = backend.live.pid.unwrap();
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert_eq!(cwd, Path::new(&work).canonicalize().unwrap());

    let record = registry.terminate(id, false).await.unwrap();
    assert_eq!(record.status, SessionStatus::Terminated);
    until("agent gone", || async { !alive(pid) }).await;
    let listed = registry.list().await.unwrap();
    assert_eq!(listed.len(), 1, "a terminated session is kept");
    assert_eq!(listed[0].status, SessionStatus::Terminated);
    registry.terminate(id, true).await.unwrap();
    assert!(matches!(
        registry.get(id).await,
        Err(SessionError::NotFound(_))
    ));
    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();
    let (registry, _storage) = world.start().await;
    assert!(
        registry.list().await.unwrap().is_empty(),
        "a purge is for good"
    );
    registry.shutdown().await;
}

#[tokio::test]
async fn bad_configurations_are_refused_with_the_field_named_and_nothing_kept() {
    let mut world = World::new();
    world.settings.agents.allow_custom_commands = false;
    let (registry, _storage) = world.start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "", "working_directory": world.work()}),
            "name",
        ),
        (
            json!({"name": "a", "working_directory": world.work(), "max_agents": 0}),
            "max_agents",
        ),
        (
            json!({"name": "a", "working_directory": world.work(),
                   "agents": [{"agent_type": "backend", "timeout_seconds": 0}]}),
            "agents[0].timeout_seconds",
        ),
        (
            json!({"name": "a", "working_directory": world.work(),
                   "agents": [{"agent_type": "backend", "command": ["/bin/true"]}]}),
            "agents[0].command",
        ),
        (
            json!({"name": "a", "working_directory": "/etc/new-project"}),
            "working_directory",
        ),
        (
            json!({"name": "a", "working_directory": "relative/dir"}),
            "working_directory",
        ),
        (
            json!({"name": "a", "working_directory": "/"}),
            "working_directory",
        ),
    ];
    for (body, field) in cases {
        let err = registry
            .create(CreateSession::new(config(body.clone())))
            .await
            .unwrap_err();
        assert_eq!(err.field(), Some(field), "{body}: {err}");
    }
    assert!(matches!(
        registry
            .create(CreateSession::new(config(
                json!({"name": "a", "working_directory": world.work(),
                "agents": [{"agent_type": "backend", "command": ["/bin/true"]}]})
            )))
            .await,
        Err(SessionError::CustomCommandRefused { .. })
    ));
    let mut missing = CreateSession::new(config(
        json!({"name": "a", "working_directory": world.work()}),
    ));
    missing.create_if_missing = false;
    assert!(matches!(
        registry.create(missing).await,
        Err(SessionError::PathRefused { .. })
    ));
    assert!(
        !Path::new(&world.work()).exists(),
        "validation never creates a directory"
    );
    assert!(registry.list().await.unwrap().is_empty());
    registry.shutdown().await;
}

#[tokio::test]
async fn max_sessions_is_enforced_and_terminated_ones_do_not_count() {
    let mut world = World::new();
    world.settings.sessions.max_sessions = 2;
    let (registry, _storage) = world.start().await;
    let create = || {
        CreateSession::new(config(
            json!({"name": "s", "working_directory": world.work()}),
        ))
    };
    let first = registry.create(create()).await.unwrap().record.id;
    registry.create(create()).await.unwrap();
    assert!(matches!(
        registry.create(create()).await,
        Err(SessionError::TooManySessions { max: 2 })
    ));
    registry.terminate(first, false).await.unwrap();
    registry.create(create()).await.unwrap();
    registry.shutdown().await;
}

#[tokio::test]
async fn agent_states_drive_the_status_and_agent_operations_work() {
    let world = World::new();
    let (registry, _storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(json!({
            "name": "s", "working_directory": world.work(),
            "agents": [
                {"agent_type": "orchestrator"},
                {"agent_type": "backend", "command": fake(&["--exit-after-ms", "10"]), "retry_attempts": 0},
                {"agent_type": "frontend", "command": fake(&[])},
            ],
        }))))
        .await
        .unwrap()
        .record
        .id;
    until("degraded", || async {
        status_of(&registry, id).await == SessionStatus::Degraded
    })
    .await;
    let agent = registry
        .agent(id, "frontend-architecture", AgentOp::Deactivate)
        .await
        .unwrap();
    assert_eq!(agent.state, ChildState::Stopped);
    let agent = registry
        .agent(id, "frontend-architecture", AgentOp::Activate)
        .await
        .unwrap();
    assert!(agent.active);
    assert!(matches!(
        registry.agent(id, "nobody", AgentOp::Restart).await,
        Err(SessionError::AgentNotFound(_))
    ));
    let lines = registry
        .logs(id, "frontend-architecture", 10)
        .await
        .unwrap();
    assert!(
        lines.iter().any(|l| l.line.starts_with("pid ")),
        "{lines:?}"
    );
    registry.terminate(id, false).await.unwrap();
    assert!(matches!(
        registry
            .agent(id, "frontend-architecture", AgentOp::Restart)
            .await,
        Err(SessionError::Conflict(_))
    ));
    registry.shutdown().await;
}

#[tokio::test]
async fn a_failed_orchestrator_puts_the_session_in_error() {
    let world = World::new();
    let (registry, _storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(json!({
            "name": "s", "working_directory": world.work(),
            "agents": [{"agent_type": "orchestrator", "command": fake(&["--exit-after-ms", "0"]), "retry_attempts": 0}],
        }))))
        .await
        .unwrap()
        .record
        .id;
    until("error", || async {
        status_of(&registry, id).await == SessionStatus::Error
    })
    .await;
    let record = registry.get(id).await.unwrap().record;
    assert!(record.error_message.is_some());
    registry.shutdown().await;
}

#[tokio::test]
async fn shared_context_is_durable_and_announced() {
    let world = World::new();
    let (registry, storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(
            json!({"name": "s", "working_directory": world.work()}),
        )))
        .await
        .unwrap()
        .record
        .id;
    let mut events = registry.subscribe();
    assert_eq!(
        registry
            .context_put(id, "plan", json!({"step": 1}))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        registry
            .context_put(id, "plan", json!({"step": 2}))
            .await
            .unwrap(),
        Some(json!({"step": 1}))
    );
    let changed = loop {
        if let SessionEvent::ContextChanged { key, value, .. } = &events.recv().await.unwrap().event
        {
            break (key.clone(), value.clone());
        }
    };
    assert_eq!(changed, ("plan".to_string(), Some(json!({"step": 1}))));
    assert!(registry.context_put(id, "", json!(1)).await.is_err());
    assert!(registry
        .context_put(uuid::Uuid::new_v4(), "k", json!(1))
        .await
        .is_err());
    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();

    let (registry, _storage) = world.start().await;
    assert_eq!(
        registry.context_get(id, "plan").await.unwrap(),
        Some(json!({"step": 2}))
    );
    assert_eq!(
        registry.context_delete(id, "plan").await.unwrap(),
        Some(json!({"step": 2}))
    );
    assert!(registry.context(id).await.unwrap().is_empty());
    registry.shutdown().await;
}

#[tokio::test]
async fn a_hundred_concurrent_creates_lose_nothing() {
    let world = World::new();
    let (registry, storage) = world.start().await;
    let creates = (0..100).map(|i| {
        let registry = registry.clone();
        let work = world.work();
        async move {
            registry
                .create(CreateSession::new(config(json!({
                    "name": format!("s{i}"), "working_directory": work,
                    "agents": [{"agent_type": "backend"}],
                }))))
                .await
                .map(|v| v.record.id)
        }
    });
    let ids: Vec<_> = futures::future::join_all(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let contexts = ids.iter().map(|&id| {
        let registry = registry.clone();
        async move { registry.context_put(id, "n", json!(id.to_string())).await }
    });
    for result in futures::future::join_all(contexts).await {
        result.unwrap();
    }
    assert_eq!(registry.list().await.unwrap().len(), 100);
    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();

    let (registry, _storage) = world.start().await;
    let restored = registry.list().await.unwrap();
    assert_eq!(restored.len(), 100);
    assert_eq!(registry.restore_report().await.unwrap().restored, 100);
    for id in ids {
        assert_eq!(
            registry.context_get(id, "n").await.unwrap(),
            Some(json!(id.to_string()))
        );
    }
    registry.shutdown().await;
}

#[tokio::test]
async fn a_session_whose_directory_vanished_is_restored_in_error_not_dropped() {
    let world = World::new();
    let (registry, storage) = world.start().await;
    let gone = format!("{}/gone", world.work());
    let id = registry
        .create(CreateSession::new(config(
            json!({"name": "s", "working_directory": gone}),
        )))
        .await
        .unwrap()
        .record
        .id;
    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();
    std::fs::remove_dir(&gone).unwrap();

    let (registry, _storage) = world.start().await;
    let record = registry.get(id).await.unwrap().record;
    assert_eq!(record.status, SessionStatus::Error);
    assert!(record.error_message.unwrap().contains("no longer exists"));
    assert_eq!(registry.restore_report().await.unwrap().errored, 1);
    registry.shutdown().await;
}

/// Pids from `start <pid> <ns>` lines of a fake agent's stamp file.
fn starts(stamp: &Path) -> Vec<u32> {
    std::fs::read_to_string(stamp)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("start ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// The real binary restores sessions: after a graceful stop and after kill -9 it starts the
/// stored session's agent again (seen in the agent's own stamp file), and kill -9 leaves no
/// agent behind.
#[tokio::test]
async fn the_server_restores_sessions_after_a_graceful_stop_and_after_kill_9() {
    let world = World::new();
    let stamp = world.path("stamp");
    {
        let (registry, storage) = world.start().await;
        registry
            .create(CreateSession::new(config(json!({
                "name": "restored", "working_directory": world.work(),
                "agents": [{"agent_type": "backend", "command": fake(&["--stamp", &stamp.to_string_lossy()])}],
            }))))
            .await
            .unwrap();
        until("first start", || async { starts(&stamp).len() == 1 }).await;
        registry.shutdown().await;
        drop(registry);
        storage.close().await.unwrap();
    }

    let config_file = world.path("server.toml");
    std::fs::write(
        &config_file,
        "[agents]\nallow_custom_commands = true\nstop_grace_ms = 1000\n",
    )
    .unwrap();
    let serve = || -> ServerGuard {
        let home = world.path("home");
        std::fs::create_dir_all(&home).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_session-manager"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SESSION_MANAGER_") {
                command.env_remove(name);
            }
        }
        let child = command
            .env("HOME", &home)
            .args(["--port", "0", "--config"])
            .arg(&config_file)
            .arg("--data-dir")
            .arg(world.path("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        ServerGuard(child)
    };

    // A graceful stop, then a start: the agent runs again under the new server.
    let mut server = serve();
    until("restored agent", || async { starts(&stamp).len() == 2 }).await;
    let second = starts(&stamp)[1];
    assert!(alive(second));
    server.signal(libc::SIGTERM);
    until("agent stopped with the server", || async { !alive(second) }).await;

    // kill -9, then a start: no agent left behind, and the session comes back again.
    let mut server = serve();
    until("restored agent again", || async {
        starts(&stamp).len() == 3
    })
    .await;
    let third = starts(&stamp)[2];
    server.signal(libc::SIGKILL);
    until("agent killed with the server", || async { !alive(third) }).await;
    let mut server = serve();
    until("restored after kill -9", || async {
        starts(&stamp).len() == 4
    })
    .await;
    server.signal(libc::SIGTERM);
}

struct ServerGuard(Child);

impl ServerGuard {
    fn signal(&mut self, signal: libc::c_int) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        let deadline = Instant::now() + PATIENCE;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn update_changes_fields_and_agents_live_and_refuses_bad_values_unchanged() {
    let mut world = World::new();
    world.settings.agents.allow_custom_commands = false;
    world.settings.agents.templates.insert(
        "BACKEND".into(),
        serde_json::from_value::<session_manager::config::AgentTemplate>(json!({
            "command": fake(&[])
        }))
        .unwrap(),
    );
    let (registry, storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(json!({
            "name": "before", "working_directory": world.work(),
            "agents": [{"agent_type": "orchestrator"}],
        }))))
        .await
        .unwrap()
        .record
        .id;
    let view = registry
        .update(
            id,
            UpdateSession {
                name: Some("after".into()),
                tags: Some(vec!["blue".into()]),
                agents: Some(vec![
                    serde_json::from_value(json!({"agent_type": "orchestrator"})).unwrap(),
                    serde_json::from_value(json!({"agent_type": "backend"})).unwrap(),
                ]),
                ..UpdateSession::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(view.record.configuration.name, "after");
    assert_eq!(view.record.tags, ["blue"]);
    until("backend running", || async {
        registry.get(id).await.unwrap().agents.iter().any(|a| {
            a.name == "backend-services" && a.state == ChildState::Running && a.live.pid.is_some()
        })
    })
    .await;

    let refused = registry
        .update(
            id,
            UpdateSession {
                name: Some("third".into()),
                agents: Some(vec![
                    serde_json::from_value(json!({"agent_type": "orchestrator"})).unwrap(),
                    serde_json::from_value(json!({"agent_type": "api", "command": ["/bin/true"]}))
                        .unwrap(),
                ]),
                ..UpdateSession::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.field(), Some("agents[1].command"), "{refused}");
    let bad = registry
        .update(
            id,
            UpdateSession {
                max_agents: Some(0),
                ..UpdateSession::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(bad.field(), Some("max_agents"));
    let unchanged = registry.get(id).await.unwrap().record;
    assert_eq!(unchanged.configuration.name, "after");
    assert_eq!(unchanged.configuration.agents.len(), 2);

    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();
    let (registry, _storage) = world.start().await;
    let stored = registry.get(id).await.unwrap().record;
    assert_eq!(stored.configuration.name, "after");
    assert_eq!(stored.tags, ["blue"]);
    registry.shutdown().await;
}

#[tokio::test]
async fn navigate_moves_the_agents_and_a_refused_path_leaves_the_session_unchanged() {
    let world = World::new();
    let (registry, _storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(json!({
            "name": "s", "working_directory": world.work(),
            "agents": [{"agent_type": "backend", "command": fake(&[])}],
        }))))
        .await
        .unwrap()
        .record
        .id;
    let pid_of = |view: &session_manager::session::SessionView| view.agents[0].live.pid;
    until("running", || async {
        pid_of(&registry.get(id).await.unwrap()).is_some()
    })
    .await;
    let before = registry.get(id).await.unwrap();
    let old_pid = pid_of(&before).unwrap();

    let err = registry
        .navigate(id, "/etc/somewhere", true)
        .await
        .unwrap_err();
    assert_eq!(err.field(), Some("path"));
    let after = registry.get(id).await.unwrap();
    assert_eq!(
        after.record.configuration.working_directory,
        before.record.configuration.working_directory
    );
    assert_eq!(pid_of(&after), Some(old_pid), "the agents were not touched");

    let target = format!("{}/elsewhere", world.work());
    let (view, validation) = registry.navigate(id, &target, true).await.unwrap();
    assert!(validation.valid);
    assert_eq!(view.record.configuration.working_directory, target);
    until("agent restarted in the new directory", || async {
        let view = registry.get(id).await.unwrap();
        pid_of(&view).is_some_and(|pid| {
            pid != old_pid
                && std::fs::read_link(format!("/proc/{pid}/cwd")).ok()
                    == Some(PathBuf::from(&target))
        })
    })
    .await;
    until("old agent gone", || async { !alive(old_pid) }).await;
    registry.shutdown().await;
}

#[tokio::test]
async fn clone_copies_by_flags_into_a_new_directory_or_a_new_worktree() {
    let world = World::new();
    let (registry, _storage) = world.start().await;
    let repo = world.path("repo");
    {
        let repository = git2::Repository::init(&repo).unwrap();
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let tree_id = repository.index().unwrap().write_tree().unwrap();
        let tree = repository.find_tree(tree_id).unwrap();
        repository
            .commit(Some("HEAD"), &signature, &signature, "first", &tree, &[])
            .unwrap();
    }
    let source = registry
        .create(CreateSession::new(config(json!({
            "name": "source", "working_directory": repo.to_string_lossy(),
            "agents": [{"agent_type": "backend"}],
            "environment_variables": {"A": "1"},
        }))))
        .await
        .unwrap();
    let id = source.record.id;
    assert!(
        source.record.git.is_some(),
        "the git state is read at create"
    );

    let plain = registry
        .clone_session(id, CloneSession::new("copy"))
        .await
        .unwrap();
    assert_ne!(plain.record.id, id);
    assert_eq!(
        plain.record.configuration.agents,
        source.record.configuration.agents
    );
    assert_eq!(
        plain.record.configuration.working_directory,
        source.record.configuration.working_directory
    );

    let mut bare = CloneSession::new("bare");
    bare.copy_agents = false;
    bare.copy_environment = false;
    bare.new_working_directory = Some(world.path("other").to_string_lossy().into_owned());
    let bare = registry.clone_session(id, bare).await.unwrap();
    assert!(bare.record.configuration.agents.is_empty());
    assert!(bare.record.configuration.environment_variables.is_empty());
    assert!(world.path("other").is_dir());

    let mut tree = CloneSession::new("feature");
    tree.git_worktree = Some("feature-x".into());
    let tree = registry.clone_session(id, tree).await.unwrap();
    let expected = world.path("repo-feature-x");
    assert_eq!(
        tree.record.configuration.working_directory,
        expected.to_string_lossy()
    );
    assert!(
        expected.join(".git").is_file(),
        "a linked worktree has a .git file"
    );
    let git = tree.record.git.unwrap();
    assert_eq!(git["branch"], "feature-x");

    assert!(matches!(
        registry
            .clone_session(uuid::Uuid::new_v4(), CloneSession::new("x"))
            .await,
        Err(SessionError::NotFound(_))
    ));
    assert_eq!(
        registry
            .clone_session(id, CloneSession::new(""))
            .await
            .unwrap_err()
            .field(),
        Some("name")
    );
    assert_eq!(registry.list().await.unwrap().len(), 4);
    registry.shutdown().await;
}

#[tokio::test]
async fn auto_save_checkpoints_restart_counts_and_retention_purges_terminated_sessions() {
    let mut world = World::new();
    world.settings.sessions.terminated_retention_days = 0;
    let (registry, storage) = world.start().await;
    let id = registry
        .create(CreateSession::new(config(json!({
            "name": "s", "working_directory": world.work(), "save_interval_seconds": 1,
            "agents": [{"agent_type": "backend", "command": fake(&["--exit-after-ms", "20"]),
                        "retry_attempts": 1000,
                        "backoff": {"initial_ms": 10, "max_ms": 10, "multiplier": 1.0, "reset_after_seconds": 60}}],
        }))))
        .await
        .unwrap()
        .record
        .id;
    let db = world.settings.db_path();
    until("a checkpoint with restarts", || {
        let db = db.clone();
        async move {
            let conn = rusqlite::Connection::open_with_flags(
                &db,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            let json: String = conn
                .query_row(
                    "SELECT record FROM sessions WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .unwrap();
            let record: Value = serde_json::from_str(&json).unwrap();
            record["agent_restarts"]["backend-services"]
                .as_u64()
                .unwrap_or(0)
                > 0
        }
    })
    .await;
    registry.terminate(id, false).await.unwrap();
    registry.shutdown().await;
    drop(registry);
    storage.close().await.unwrap();

    let (registry, _storage) = world.start().await;
    assert_eq!(registry.restore_report().await.unwrap().purged, 1);
    assert!(registry.list().await.unwrap().is_empty());
    registry.shutdown().await;
}

#[tokio::test]
async fn export_then_import_then_export_is_identical_apart_from_ids_and_times() {
    let world = World::new();
    let (registry, _storage) = world.start().await;
    let mut create = CreateSession::new(config(json!({
        "name": "exported", "working_directory": world.work(), "description": "round trip",
        "agents": [{"agent_type": "orchestrator"}, {"agent_type": "backend", "environment": {"PORT": "1"}}],
        "environment_variables": {"NODE_ENV": "test"}, "custom_settings": {"theme": "dark"},
    })));
    create.tags = vec!["t1".into()];
    let id = registry.create(create).await.unwrap().record.id;
    registry
        .context_put(id, "plan", json!([1, 2]))
        .await
        .unwrap();
    until("active", || async {
        status_of(&registry, id).await == SessionStatus::Active
    })
    .await;
    let first = registry.export(id, true).await.unwrap();
    let document = serde_json::to_value(&first).unwrap();

    let imported = registry
        .import(ImportSession::new(document.clone()))
        .await
        .unwrap();
    let new_id = imported.record.id;
    assert_ne!(new_id, id);
    assert_eq!(
        registry.context_get(new_id, "plan").await.unwrap(),
        Some(json!([1, 2]))
    );
    until("imported active", || async {
        status_of(&registry, new_id).await == SessionStatus::Active
    })
    .await;
    let second = registry.export(new_id, true).await.unwrap();
    let normalise = |mut v: Value| {
        for key in ["session_id", "timestamp"] {
            v[key] = Value::Null;
        }
        for key in ["session_id", "last_activity"] {
            v["context"][key] = Value::Null;
        }
        v
    };
    assert_eq!(
        normalise(serde_json::to_value(&second).unwrap()),
        normalise(document.clone())
    );

    // keep_id is refused while the id exists; hostile documents name their field.
    let mut keep = ImportSession::new(document.clone());
    keep.keep_id = true;
    assert!(matches!(
        registry.import(keep).await,
        Err(SessionError::Conflict(_))
    ));
    let mut wrong_version = document.clone();
    wrong_version["format_version"] = json!(2);
    let mut wrong_type = document.clone();
    wrong_type["configuration"]["max_agents"] = json!("ten");
    let mut huge = document.clone();
    huge["configuration"]["name"] = json!("x".repeat(1 << 20));
    let mut traversal = document.clone();
    traversal["configuration"]["working_directory"] = json!("/tmp/../etc/passwd-dir");
    for (doc, field) in [
        (wrong_version, "session_data.format_version"),
        (wrong_type, "session_data.configuration.max_agents"),
        (huge, "session_data.configuration.name"),
        (traversal, "session_data.configuration.working_directory"),
        (json!("not an object"), "session_data"),
    ] {
        let err = registry.import(ImportSession::new(doc)).await.unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
    }
    assert_eq!(registry.list().await.unwrap().len(), 2);
    registry.shutdown().await;
}

/// 200 sessions of logical agents, stopped and restored in the background: every one is
/// there at once, the report waits for the restore, and a session that comes back as it
/// was stored is neither written nor announced — nor are its logical agents' transitions,
/// at the restore or at the stop. What a session left unstored is stored at the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logical_sessions_come_back_as_they_were_without_a_word_and_the_stop_stores_what_changed() {
    let world = World::new();
    std::fs::create_dir_all(world.work()).unwrap();
    let (registry, storage) = world.start().await;
    let mut ids = Vec::new();
    for i in 0..200 {
        let view = registry
            .create(CreateSession::new(config(json!({
                "name": format!("s{i}"), "working_directory": world.work(),
                "agents": [{"agent_type": "backend"}, {"agent_type": "frontend"}],
            }))))
            .await
            .unwrap();
        ids.push(view.record.id);
    }
    let before: Vec<_> = registry.list().await.unwrap();
    // Runtime state only (an activation count): stored at the next checkpoint, or the stop.
    let agent = registry.get(ids[0]).await.unwrap().agents[0].name.clone();
    registry
        .agent(ids[0], &agent, AgentOp::Restart)
        .await
        .unwrap();
    let mut events = registry.subscribe();
    registry.shutdown().await;
    let mut told = Vec::new();
    while let Ok(published) = events.try_recv() {
        // The restarted session's group has its supervisor now: it stops as ever.
        if published.event.session() != Some(ids[0]) {
            told.push(published.event.kind().to_owned());
        }
    }
    assert!(told.is_empty(), "the stop announced {told:?}");
    drop(registry);
    storage.close().await.unwrap();

    let storage = Storage::open(&world.settings.db_path()).await.unwrap();
    let bus = EventBus::new(0);
    let mut events = bus.subscribe();
    let registry = SessionRegistry::start_restoring(
        Arc::new(world.settings.clone()),
        storage.clone(),
        "http://127.0.0.1:9".into(),
        bus,
    )
    .await
    .unwrap();
    assert_eq!(
        registry.list().await.unwrap().len(),
        200,
        "all there at once"
    );
    let report = registry.restore_report().await.unwrap();
    assert_eq!(report.restored, 200, "{report:?}");
    let after = registry.list().await.unwrap();
    for record in &after {
        assert_eq!(record.status, SessionStatus::Active, "{}", record.id);
        let old = before.iter().find(|r| r.id == record.id).unwrap();
        if record.id != ids[0] {
            assert_eq!(record.updated_at, old.updated_at, "{}", record.id);
        }
    }
    let restarted = after.iter().find(|r| r.id == ids[0]).unwrap();
    assert_eq!(restarted.agent_activations.get(&agent), Some(&1));
    let view = registry.get(ids[1]).await.unwrap();
    assert!(view.agents.iter().all(|a| a.state == ChildState::Running));
    let mut told = Vec::new();
    while let Ok(published) = events.try_recv() {
        // The restarted session's stop was stored: it comes back changed.
        if published.event.session() != Some(ids[0]) {
            told.push(published.event.kind().to_owned());
        }
    }
    assert!(told.is_empty(), "the restore announced {told:?}");
    registry.shutdown().await;
}
