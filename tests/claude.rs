//! Claude Code agents against the real binary, with `examples/fake_claude` as the CLI
//! (`[agents.claude] command`): its command line (role, options, conversation flags), the
//! conversation id on the agent object and its life (kept across restarts of the server and
//! updates, new for clones and imports), a crash typed through the API resumed exactly once,
//! a SIGKILLed server leaving exactly one resumed process, and who may give `args`.
//!
//! The server runs with a temporary HOME (`common::app`), which its agents inherit: the
//! fake's transcripts go under it, never under the user's `~/.claude`.

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::app::App;
use common::{alive, example, PATIENCE};

/// The server's configuration: the fake as the Claude CLI, plus `extra` under `[agents]`
/// and `allowed` as `allowed_args`.
fn config(extra: &str, allowed: &[&str]) -> String {
    let fake = example("fake_claude");
    format!(
        "[agents]\n{extra}\n[agents.claude]\ncommand = [{:?}]\nallowed_args = {:?}\n",
        fake.display().to_string(),
        allowed
    )
}

async fn create(app: &App, name: &str, agents: Value) -> (u16, Value) {
    app.post(
        "/api/claude/sessions",
        &json!({"name": name, "working_directory": app.dir(name),
                "git_enabled": false, "agents": agents}),
    )
    .await
}

async fn create_ok(app: &App, name: &str, agents: Value) -> String {
    let (status, body) = create(app, name, agents).await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// The agent object of `name` in session `id`.
async fn agent(app: &App, id: &str, name: &str) -> Value {
    let (_, body) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    body["agents"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Polls `check` until it gives a value, at most [`PATIENCE`]; `what` says what was awaited.
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The running agent's pid once it is `running` (and not `exclude`).
async fn running_pid(app: &App, id: &str, name: &str, exclude: Option<u32>) -> u32 {
    until(&format!("{name} running"), || async {
        let agent = agent(app, id, name).await;
        let pid = agent["pid"].as_u64().map(|p| p as u32)?;
        (agent["status"] == "running" && Some(pid) != exclude).then_some(pid)
    })
    .await
}

/// The argv of a live process.
fn argv(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Every live process (any user) with `word` as one of its arguments.
fn processes_with(word: &str) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| alive(pid) && argv(pid).iter().any(|arg| arg == word))
        .collect();
    found.sort_unstable();
    found
}

/// The text on the agent's screen, one row a line.
async fn screen(app: &App, id: &str, name: &str) -> String {
    let (status, body) = app
        .get(&format!("/api/claude/sessions/{id}/agents/{name}/screen"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn until_on_screen(app: &App, id: &str, name: &str, text: &str) -> String {
    until(&format!("{text:?} on the screen"), || async {
        let shown = screen(app, id, name).await;
        shown.contains(text).then_some(shown)
    })
    .await
}

async fn type_line(app: &App, id: &str, name: &str, text: &str) {
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{id}/agents/{name}/input"),
            &json!({"text": text, "submit": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["bytes"].as_u64().unwrap() > text.len() as u64,
        "{body}"
    );
}

/// The server's own `started process` lines about the agent, oldest first.
async fn starts(app: &App, id: &str, name: &str) -> Vec<String> {
    let (_, body) = app
        .get(&format!(
            "/api/claude/sessions/{id}/agents/{name}/logs?tail=1000"
        ))
        .await;
    body["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["line"].as_str())
        .filter(|l| l.starts_with("[session-manager] started process "))
        .map(str::to_owned)
        .collect()
}

/// Restarts the server on its data; the client's pooled connections went with the old one.
fn restart(app: &mut App) {
    app.restart();
    app.client = reqwest::Client::new();
}

fn uuid_of(agent: &Value) -> String {
    let id = agent["claude_session_id"].as_str().unwrap_or_default();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{agent}");
    id.to_owned()
}

#[tokio::test]
async fn a_claude_agent_runs_the_cli_in_its_role_on_a_new_conversation() {
    let app = App::with_config(&config("", &[]));
    let id = create_ok(
        &app,
        "role",
        json!([
            {"agent_type": "BACKEND", "name": "coder",
             "claude": {"model": "opus", "permission_mode": "plan"}},
            {"agent_type": "QUALITY", "name": "plain"},
        ]),
    )
    .await;
    let pid = running_pid(&app, &id, "coder", None).await;
    let coder = agent(&app, &id, "coder").await;
    let conversation = uuid_of(&coder);
    assert!(agent(&app, &id, "plain").await["claude_session_id"].is_null());
    let argv = argv(pid);
    assert_eq!(argv[0], example("fake_claude").display().to_string());
    assert_eq!(argv[1], "--append-system-prompt");
    assert!(
        argv[2].starts_with("You are the backend agent of a Claude Code Dev Stack session: ")
            && argv[2].contains("Capabilities: service design"),
        "{argv:?}"
    );
    assert_eq!(argv[3..7], ["--model", "opus", "--permission-mode", "plan"]);
    // The server's hooks, as a JSON string: the user's settings files stay untouched.
    assert_eq!(argv[7], "--settings");
    let hooks: Value = serde_json::from_str(&argv[8]).unwrap();
    let events = hooks["hooks"].as_object().unwrap();
    assert_eq!(events.len(), 15, "{events:?}");
    assert_eq!(
        events["UserPromptSubmit"][0]["hooks"][0]["url"],
        app.url("/api/claude/hooks")
    );
    assert_eq!(
        events["SessionStart"][0]["hooks"][0]["url"],
        app.url("/api/claude/hooks")
    );
    assert_eq!(argv[9..], ["--session-id", &conversation]);
    until_on_screen(
        &app,
        &id,
        "coder",
        &format!("Welcome to Fake Claude Code (session {conversation}, new)"),
    )
    .await;
    // The configuration shows the options as the server reads them.
    let (_, body) = app.get(&format!("/api/claude/sessions/{id}")).await;
    assert_eq!(
        body["session"]["configuration"]["agents"][0]["claude"],
        json!({"model": "opus", "permission_mode": "plan", "args": []})
    );
}

#[tokio::test]
async fn a_crash_typed_through_the_api_restarts_it_once_on_the_same_conversation() {
    let app = App::with_config(&config("", &[]));
    let id = create_ok(
        &app,
        "crash",
        json!([{"agent_type": "BACKEND", "name": "coder", "claude": true}]),
    )
    .await;
    let first = running_pid(&app, &id, "coder", None).await;
    let conversation = uuid_of(&agent(&app, &id, "coder").await);
    until_on_screen(&app, &id, "coder", "(session").await;
    type_line(&app, &id, "coder", "hello").await;
    until_on_screen(&app, &id, "coder", "you said: hello").await;
    type_line(&app, &id, "coder", "crash").await;

    let second = running_pid(&app, &id, "coder", Some(first)).await;
    until_on_screen(
        &app,
        &id,
        "coder",
        &format!("(session {conversation}, resumed)"),
    )
    .await;
    assert!(!alive(first));
    let resumed = argv(second);
    assert_eq!(
        resumed[resumed.len() - 2..],
        ["--resume".to_owned(), conversation.clone()]
    );
    let coder = agent(&app, &id, "coder").await;
    assert_eq!(coder["restart_count"], 1, "{coder}");
    assert_eq!(coder["claude_session_id"], conversation.as_str());
    assert_eq!(coder["pid"], second);
    // Exactly one restart: two starts logged, one process on the conversation.
    let started = starts(&app, &id, "coder").await;
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(started[0].ends_with(&format!("--session-id {conversation}")));
    assert!(started[1].ends_with(&format!("--resume {conversation}")));
    assert_eq!(processes_with(&conversation), [second]);
    // The resumed conversation goes on.
    type_line(&app, &id, "coder", "again").await;
    until_on_screen(&app, &id, "coder", "you said: again").await;
}

#[tokio::test]
async fn a_killed_server_leaves_exactly_one_resumed_process_after_its_restart() {
    let mut app = App::with_config(&config("", &[]));
    let id = create_ok(
        &app,
        "killed",
        json!([{"agent_type": "BACKEND", "name": "coder", "claude": true,
                "retry_attempts": 20}]),
    )
    .await;
    let before = running_pid(&app, &id, "coder", None).await;
    let conversation = uuid_of(&agent(&app, &id, "coder").await);
    until_on_screen(&app, &id, "coder", "(session").await;

    app.kill();
    restart(&mut app);
    let after = running_pid(&app, &id, "coder", Some(before)).await;
    until_on_screen(
        &app,
        &id,
        "coder",
        &format!("(session {conversation}, resumed)"),
    )
    .await;
    assert!(
        !alive(before),
        "the old incarnation {before} outlived its server"
    );
    assert_eq!(
        agent(&app, &id, "coder").await["claude_session_id"],
        conversation.as_str(),
        "the conversation survives the restart"
    );
    let argv = argv(after);
    assert_eq!(
        argv[argv.len() - 2..],
        ["--resume".to_owned(), conversation.clone()]
    );
    assert_eq!(processes_with(&conversation), [after]);
}

#[tokio::test]
async fn args_need_the_custom_command_right_or_every_one_listed() {
    let app = App::with_config(&config("", &["--verbose"]));
    let (status, body) = create(
        &app,
        "refused",
        json!([{"agent_type": "API", "claude": {"args": ["--verbose", "--debug"]}}]),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["details"]["field"], "agents[0].claude.args", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("allow_custom_commands"),
        "{body}"
    );
    let (_, listed) = app.get("/api/claude/sessions").await;
    assert_eq!(
        listed["total"], 0,
        "a refused create keeps nothing: {listed}"
    );

    // Listed, they pass; so does a Claude agent without args, with no right at all.
    let id = create_ok(
        &app,
        "listed",
        json!([{"agent_type": "API", "name": "a", "claude": {"args": ["--verbose"]}}]),
    )
    .await;
    let pid = running_pid(&app, &id, "a", None).await;
    assert!(argv(pid).contains(&"--verbose".to_owned()));

    let free = App::with_config(&config("allow_custom_commands = true", &[]));
    create_ok(
        &free,
        "free",
        json!([{"agent_type": "API", "claude": {"args": ["--debug"]}}]),
    )
    .await;
}

#[tokio::test]
async fn claude_with_command_and_bad_options_are_refused_naming_the_field() {
    let app = App::with_config(&config("allow_custom_commands = true", &[]));
    for (agents, status, field) in [
        (
            json!([{"agent_type": "API", "claude": true, "command": ["x"]}]),
            422,
            "agents[0].command",
        ),
        (
            json!([{"agent_type": "API", "claude": {"permission_mode": "yolo"}}]),
            400,
            "agents[0].claude.permission_mode",
        ),
        (
            json!([{"agent_type": "API", "claude": {"model": ""}}]),
            400,
            "agents[0].claude.model",
        ),
    ] {
        let (got, body) = create(&app, "bad", agents.clone()).await;
        assert_eq!(got, status, "{agents}: {body}");
        assert_eq!(body["details"]["field"], field, "{body}");
    }
    let (status, body) = create(
        &app,
        "shape",
        json!([{"agent_type": "API", "claude": "yes"}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("claude"), "{body}");
}

#[tokio::test]
async fn conversations_are_kept_by_updates_and_restarts_and_never_shared_by_copies() {
    let mut app = App::with_config(&config("", &[]));
    let agents = json!([{"agent_type": "BACKEND", "name": "coder", "claude": true}]);
    let id = create_ok(&app, "origin", agents.clone()).await;
    let base = format!("/api/claude/sessions/{id}");
    let first = uuid_of(&agent(&app, &id, "coder").await);

    // An update that adds an agent keeps the first one's conversation.
    let (status, body) = app
        .put(
            &base,
            &json!({"agents": [
                {"agent_type": "BACKEND", "name": "coder", "claude": true},
                {"agent_type": "QUALITY", "name": "tester", "claude": true},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        agent(&app, &id, "coder").await["claude_session_id"],
        first.as_str()
    );
    let tester = uuid_of(&agent(&app, &id, "tester").await);
    assert_ne!(tester, first);

    // A clone and an import get conversations of their own.
    let (status, body) = app
        .post(&format!("{base}/clone"), &json!({"new_name": "copy"}))
        .await;
    assert_eq!(status, 201, "{body}");
    let clone = body["session"]["id"].as_str().unwrap().to_owned();
    let (_, body) = app.post(&format!("{base}/export"), &json!({})).await;
    let snapshot = body["snapshot"].clone();
    assert!(
        !snapshot.to_string().contains(&first),
        "an export carries no conversation id"
    );
    let (status, body) = app
        .post(
            "/api/claude/sessions/import",
            &json!({"session_data": snapshot}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let imported = body["session"]["id"].as_str().unwrap().to_owned();
    let mut seen = vec![first.clone(), tester.clone()];
    for copy in [&clone, &imported] {
        for name in ["coder", "tester"] {
            let conversation = uuid_of(&agent(&app, copy, name).await);
            assert!(!seen.contains(&conversation), "{conversation} shared");
            seen.push(conversation);
        }
    }

    // Removing an agent forgets its conversation; adding it back starts a new one.
    let (status, body) = app.put(&base, &json!({"agents": agents})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = app
        .put(
            &base,
            &json!({"agents": [
                {"agent_type": "BACKEND", "name": "coder", "claude": true},
                {"agent_type": "QUALITY", "name": "tester", "claude": true},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tester_again = uuid_of(&agent(&app, &id, "tester").await);
    assert!(!seen.contains(&tester_again));

    // A restart of the server keeps every conversation.
    restart(&mut app);
    assert_eq!(
        agent(&app, &id, "coder").await["claude_session_id"],
        first.as_str()
    );
    assert_eq!(
        agent(&app, &id, "tester").await["claude_session_id"],
        tester_again.as_str()
    );
}

/// A process of the server's user with the conversation id in its argv (as a person's own
/// `claude --resume <id>`), killed and reaped on drop.
struct Holder(std::process::Child);

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn no_start_while_another_process_holds_the_conversation() {
    let app = App::with_config(&config("", &[]));
    let id = create_ok(
        &app,
        "held",
        json!([{"agent_type": "BACKEND", "name": "coder", "claude": true,
                "retry_attempts": 50,
                "backoff": {"initial_ms": 50, "max_ms": 300}}]),
    )
    .await;
    let first = running_pid(&app, &id, "coder", None).await;
    let conversation = uuid_of(&agent(&app, &id, "coder").await);
    // The banner comes after the transcript: the conversation exists, the next start resumes.
    until_on_screen(&app, &id, "coder", "(session").await;
    let base = format!("/api/claude/sessions/{id}/agents/coder");
    let (status, body) = app.post(&format!("{base}/deactivate"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    until("the agent stopped", || async {
        (!alive(first)).then_some(())
    })
    .await;

    // `sh -c SCRIPT NAME`: NAME stays in the argv, as `claude --resume <id>` would.
    let holder = Holder(
        std::process::Command::new("sh")
            .args(["-c", "sleep 60", &format!("--resume={conversation}")])
            .spawn()
            .unwrap(),
    );
    let held_by = holder.0.id();
    until("the holder's argv", || async {
        processes_with(&format!("--resume={conversation}"))
            .contains(&held_by)
            .then_some(())
    })
    .await;
    let (status, body) = app.post(&format!("{base}/activate"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let refusal = until("the refused start", || async {
        let coder = agent(&app, &id, "coder").await;
        let error = coder["last_error"].as_str()?.to_owned();
        error.contains("in use").then_some(error)
    })
    .await;
    assert!(
        refusal.contains(&conversation) && refusal.contains(&held_by.to_string()),
        "{refusal}"
    );
    assert!(agent(&app, &id, "coder").await["pid"].is_null());

    // Once it is gone, the next retry starts the agent, resuming the conversation.
    drop(holder);
    let second = running_pid(&app, &id, "coder", Some(first)).await;
    let argv = argv(second);
    assert_eq!(
        argv[argv.len() - 2..],
        ["--resume".to_owned(), conversation.clone()]
    );
    assert_eq!(processes_with(&conversation), [second]);
}

/// The real CLI: `$CLAUDE_CLI`, as `scripts/claude_cli.sh` installs it from npm.
fn real_cli() -> String {
    let cli = std::env::var("CLAUDE_CLI").unwrap_or_default();
    assert!(
        !cli.is_empty() && std::path::Path::new(&cli).is_file(),
        "the real Claude Code CLI is needed: run scripts/claude_cli.sh (npm install of \
         @anthropic-ai/claude-code under target/claude-cli; apt-get install -y nodejs npm), \
         or set CLAUDE_CLI to a `claude` executable"
    );
    cli
}

/// The real Claude Code, offline with a dummy key: it takes the server's command line (an
/// unknown flag or a bad value would end it at once with a usage error) and draws its
/// welcome screen on the agent's terminal, then says it cannot reach Anthropic.
#[tokio::test]
#[ignore = "needs the real Claude Code CLI: scripts/claude_cli.sh"]
async fn real_claude_code_draws_its_welcome_screen_on_the_agents_terminal() {
    let cli = real_cli();
    let app = App::with_config(&format!(
        "[agents.claude]\ncommand = [{cli:?}]\nallowed_args = []\n"
    ));
    let id = create_ok(
        &app,
        "real",
        json!([{"agent_type": "BACKEND", "name": "coder",
                "claude": {"model": "sonnet", "permission_mode": "plan"},
                "environment": {"ANTHROPIC_API_KEY": "sk-ant-offline-test",
                                "DISABLE_AUTOUPDATER": "1"}}]),
    )
    .await;
    let pid = running_pid(&app, &id, "coder", None).await;
    let conversation = uuid_of(&agent(&app, &id, "coder").await);
    assert!(argv(pid).ends_with(&["--session-id".to_owned(), conversation]));
    until_on_screen(&app, &id, "coder", "Welcome to Claude Code v").await;
    let shown = until_on_screen(&app, &id, "coder", "Unable to connect").await;
    assert!(!shown.contains("unknown option"), "{shown}");
}
