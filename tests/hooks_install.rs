//! `session-manager hooks install|uninstall|status` through the real binary, on settings
//! files that already hold the user's own hooks and keys, with HOME in a temporary
//! directory so the user's real `~/.claude` is never touched; and `[hooks] auto_install`,
//! the server doing the same in a session's working directory.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

/// What the user had before: their own keys, a hook of theirs on an event we use and one on
/// an event we do not.
fn users_settings() -> Value {
    json!({
        "model": "opus",
        "env": {"FOO": "bar"},
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "./guard.sh"}]}
            ],
            "Setup": [{"hooks": [{"type": "command", "command": "make setup"}]}]
        }
    })
}

/// Runs `session-manager hooks ARGS` in `cwd` with HOME at `home`, against a server said to
/// listen on port 4242.
fn hooks(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_session-manager"))
        .args(["--port", "4242", "hooks"])
        .args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("SESSION_MANAGER_URL")
        .env_remove("SESSION_MANAGER_TOKEN")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "status {:?}, stderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn read(path: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

/// Every hook handler of ours in a settings object, as (event, handler).
fn ours(settings: &Value) -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for (event, groups) in settings["hooks"].as_object().unwrap() {
        for group in groups.as_array().unwrap() {
            for handler in group["hooks"].as_array().unwrap() {
                let url = handler["url"].as_str().unwrap_or_default();
                let command = handler["command"].as_str().unwrap_or_default();
                if url.ends_with("/api/claude/hooks") || command.ends_with("session-manager\" hook")
                {
                    found.push((event.clone(), handler.clone()));
                }
            }
        }
    }
    found
}

#[test]
fn install_and_uninstall_leave_the_users_settings_as_they_were() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join(".claude/settings.local.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        serde_json::to_string_pretty(&users_settings()).unwrap(),
    )
    .unwrap();

    let said = stdout(&hooks(project.path(), home.path(), &["install"]));
    assert!(said.contains("installed hooks for 15 event(s)"), "{said}");
    assert!(said.contains("http://127.0.0.1:4242"), "{said}");
    let installed = read(&file);
    assert_eq!(installed["model"], "opus");
    assert_eq!(installed["env"], json!({"FOO": "bar"}));
    assert_eq!(
        installed["hooks"]["Setup"],
        users_settings()["hooks"]["Setup"]
    );
    assert_eq!(
        installed["hooks"]["PreToolUse"][0],
        users_settings()["hooks"]["PreToolUse"][0]
    );
    let handlers = ours(&installed);
    assert_eq!(handlers.len(), 15, "{handlers:?}");
    for (event, handler) in &handlers {
        if event == "SessionStart" {
            let command = handler["command"].as_str().unwrap();
            assert!(
                command.starts_with("SESSION_MANAGER_URL='http://127.0.0.1:4242' \"")
                    && command.ends_with("\" hook"),
                "{command}"
            );
            continue;
        }
        assert_eq!(handler["url"], "http://127.0.0.1:4242/api/claude/hooks");
        assert_eq!(
            handler["headers"]["Authorization"],
            "Bearer $SESSION_MANAGER_TOKEN"
        );
    }
    let text = fs::read_to_string(&file).unwrap();
    assert!(!text.contains("Bearer ey") && text.contains("$SESSION_MANAGER_TOKEN"));

    // Idempotent: the second install writes nothing.
    let said = stdout(&hooks(project.path(), home.path(), &["install"]));
    assert!(said.contains("already installed"), "{said}");
    assert_eq!(fs::read_to_string(&file).unwrap(), text);

    let said = stdout(&hooks(project.path(), home.path(), &["status"]));
    assert!(
        said.contains(
            "settings.local.json: complete (15 of 15 events, server http://127.0.0.1:4242)"
        ),
        "{said}"
    );
    assert!(said.contains("settings.json: absent"), "{said}");

    // Another server: ours replaced, not duplicated; the user's untouched.
    let moved = Command::new(env!("CARGO_BIN_EXE_session-manager"))
        .args(["hooks", "install", project.path().to_str().unwrap()])
        .env("HOME", home.path())
        .env("SESSION_MANAGER_URL", "http://10.1.2.3:9000")
        .output()
        .unwrap();
    stdout(&moved);
    let handlers = ours(&read(&file));
    assert_eq!(handlers.len(), 15);
    assert!(handlers.iter().all(|(_, handler)| {
        handler["url"] == "http://10.1.2.3:9000/api/claude/hooks"
            || handler["command"]
                .as_str()
                .is_some_and(|c| c.starts_with("SESSION_MANAGER_URL='http://10.1.2.3:9000'"))
    }));
    let said = stdout(&hooks(project.path(), home.path(), &["status"]));
    assert!(said.contains("outdated"), "{said}");

    let said = stdout(&hooks(project.path(), home.path(), &["uninstall"]));
    assert!(
        said.contains("removed hooks of session-manager from 15 event(s)"),
        "{said}"
    );
    assert_eq!(read(&file), users_settings());
    let said = stdout(&hooks(project.path(), home.path(), &["uninstall"]));
    assert!(said.contains("no hooks of session-manager"), "{said}");
}

#[test]
fn user_settings_live_under_home() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let said = stdout(&hooks(
        elsewhere.path(),
        home.path(),
        &["install", "--user"],
    ));
    let file = home.path().join(".claude/settings.json");
    assert!(said.contains(&file.display().to_string()), "{said}");
    assert_eq!(ours(&read(&file)).len(), 15);
    assert!(!elsewhere.path().join(".claude").exists());
    let said = stdout(&hooks(elsewhere.path(), home.path(), &["status", "--user"]));
    assert!(said.contains("complete"), "{said}");
    assert_eq!(said.lines().count(), 1, "only the user's file: {said}");
    stdout(&hooks(
        elsewhere.path(),
        home.path(),
        &["uninstall", "--user"],
    ));
    assert_eq!(read(&file), json!({}));
}

#[test]
fn a_file_that_is_not_a_settings_object_is_refused_unchanged() {
    let home = tempfile::tempdir().unwrap();
    let project = tempfile::tempdir().unwrap();
    let file = project.path().join(".claude/settings.local.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    for text in ["[\"hooks\"]", "{\"hooks\": 3}", "not json"] {
        fs::write(&file, text).unwrap();
        for action in ["install", "uninstall", "status"] {
            let output = hooks(project.path(), home.path(), &[action]);
            assert_eq!(output.status.code(), Some(1), "{action} on {text}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                stderr.starts_with("error: ") && stderr.contains("settings.local.json"),
                "{stderr}"
            );
            assert_eq!(fs::read_to_string(&file).unwrap(), text);
        }
    }
}

/// `[hooks] auto_install = true`: a created session's directory gets the hooks, and so does
/// the directory it navigates to; a settings file it cannot merge into is a warning, not a
/// failed create. Off (the default), nothing is written.
#[tokio::test]
async fn auto_install_writes_the_hooks_where_a_session_works() {
    let app = common::app::App::with_config("[hooks]\nauto_install = true\n");
    let dir = app.dir("auto");
    let file = Path::new(&dir).join(".claude/settings.local.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, r#"{"model": "opus"}"#).unwrap();
    let (status, created) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "auto", "working_directory": dir, "git_enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let installed = read(&file);
    assert_eq!(installed["model"], "opus");
    let handlers = ours(&installed);
    assert_eq!(handlers.len(), 15);
    assert!(handlers
        .iter()
        .any(|(_, handler)| handler["url"] == app.url("/api/claude/hooks")));

    let id = created["session"]["id"].as_str().unwrap();
    let moved = app.dir("auto-moved");
    let (status, body) = app
        .post(
            &format!("/api/claude/sessions/{id}/navigate"),
            &json!({"path": moved, "create_if_missing": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ours(&read(
            &Path::new(&moved).join(".claude/settings.local.json")
        ))
        .len(),
        15
    );

    let refused = app.dir("refused");
    let file = Path::new(&refused).join(".claude/settings.local.json");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(&file, "[1]").unwrap();
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "refused", "working_directory": refused, "git_enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "[1]");

    let off = common::app::App::with_config("");
    let dir = off.dir("off");
    let (status, body) = off
        .post(
            "/api/claude/sessions",
            &json!({"name": "off", "working_directory": dir, "git_enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(!Path::new(&dir).join(".claude").exists());
}
