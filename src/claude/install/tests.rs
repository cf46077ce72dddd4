use super::*;

const SERVER: &str = "http://127.0.0.1:8080";

fn shim() -> PathBuf {
    PathBuf::from("/opt/sm/bin/session-manager")
}

/// A settings object as a user might have it: other keys, a hook of theirs on an event we
/// use, one on an event we do not, and an empty array they left there.
fn users_settings() -> Map<String, Value> {
    let value = json!({
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"]},
        "hooks": {
            "PreToolUse": [
                {"matcher": "Bash", "hooks": [{"type": "command", "command": "./guard.sh"}]}
            ],
            "Stop": [],
            "Setup": [{"hooks": [{"type": "command", "command": "make setup"}]}]
        }
    });
    value.as_object().cloned().unwrap()
}

#[test]
fn every_event_is_an_http_hook_but_session_start_a_command() {
    let entries = hook_entries("http://127.0.0.1:8080/", Some(&shim()));
    let events = entries.as_object().unwrap();
    assert_eq!(events.len(), EVENTS.len());
    for event in EVENTS {
        let handler = &events[event][0]["hooks"][0];
        assert!(is_ours(handler), "{event}");
        if event == "SessionStart" {
            assert_eq!(handler["type"], "command");
            assert_eq!(
                handler["command"],
                "SESSION_MANAGER_URL='http://127.0.0.1:8080' \"/opt/sm/bin/session-manager\" hook"
            );
            continue;
        }
        assert_eq!(handler["type"], "http", "{event}");
        assert_eq!(handler["url"], "http://127.0.0.1:8080/api/claude/hooks");
        assert_eq!(
            handler["headers"]["Authorization"],
            "Bearer $SESSION_MANAGER_TOKEN"
        );
        assert_eq!(
            handler["headers"]["X-Session-Manager-Session"],
            "$CLAUDE_SESSION_ID"
        );
        assert_eq!(
            handler["allowedEnvVars"],
            json!([
                "SESSION_MANAGER_TOKEN",
                "CLAUDE_SESSION_ID",
                "CLAUDE_AGENT_NAME"
            ])
        );
        let matcher = events[event][0].get("matcher");
        assert_eq!(
            matcher.is_some(),
            TOOL_EVENTS.contains(&event),
            "{event}: tool events match every tool, others have no matcher"
        );
    }
}

#[test]
fn ours_is_recognised_by_the_route_or_the_shim_and_nothing_else() {
    for handler in [
        json!({"type": "http", "url": "http://h:1/api/claude/hooks"}),
        json!({"type": "http", "url": "http://h:1/api/claude/hooks/"}),
        json!({"type": "command", "command": "SESSION_MANAGER_URL='http://h:1' \"/a b/session-manager\" hook"}),
        json!({"type": "command", "command": "SESSION_MANAGER_URL='http://h:1' /usr/bin/session-manager hook"}),
    ] {
        assert!(is_ours(&handler), "{handler}");
    }
    for handler in [
        // A user's own shim command, as the README once showed: theirs, not ours.
        json!({"type": "command", "command": "session-manager hook"}),
        json!({"type": "command", "command": "\"/a b/session-manager\" hook"}),
        json!({"type": "http", "url": "http://h:1/api/other"}),
        json!({"type": "command", "command": "./guard.sh"}),
        json!({"type": "command", "command": "session-manager hook --other"}),
        json!({"type": "command", "command": "my-tool hook"}),
        json!({"type": "prompt", "prompt": "/api/claude/hooks"}),
    ] {
        assert!(!is_ours(&handler), "{handler}");
    }
}

#[test]
fn merge_keeps_the_users_hooks_and_is_idempotent() {
    let mut settings = users_settings();
    let changed = merge(&mut settings, &hook_entries(SERVER, Some(&shim())));
    assert_eq!(changed.len(), EVENTS.len());
    // Theirs first and unchanged, ours as a group of its own after it.
    let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 2);
    assert_eq!(pre[0], users_settings()["hooks"]["PreToolUse"][0]);
    assert!(is_ours(&pre[1]["hooks"][0]));
    assert_eq!(
        settings["hooks"]["Setup"],
        users_settings()["hooks"]["Setup"]
    );
    assert_eq!(settings["model"], "opus");
    assert_eq!(settings["permissions"], users_settings()["permissions"]);

    let once = settings.clone();
    assert!(merge(&mut settings, &hook_entries(SERVER, Some(&shim()))).is_empty());
    assert_eq!(settings, once);
}

#[test]
fn another_server_replaces_ours_in_place() {
    let mut settings = users_settings();
    merge(&mut settings, &hook_entries(SERVER, Some(&shim())));
    // The user adds a hook after ours: ours must not move behind it.
    settings["hooks"]["PreToolUse"]
        .as_array_mut()
        .unwrap()
        .push(json!({"hooks": [{"type": "command", "command": "./after.sh"}]}));
    let changed = merge(
        &mut settings,
        &hook_entries("http://10.0.0.2:9", Some(&shim())),
    );
    assert_eq!(
        changed.len(),
        EVENTS.len(),
        "the shim command names the server too"
    );
    let pre = settings["hooks"]["PreToolUse"].as_array().unwrap();
    assert_eq!(pre.len(), 3);
    assert_eq!(
        pre[1]["hooks"][0]["url"],
        "http://10.0.0.2:9/api/claude/hooks"
    );
    assert_eq!(pre[2]["hooks"][0]["command"], "./after.sh");
    let ours = EVENTS
        .iter()
        .flat_map(|event| settings["hooks"][event].as_array().unwrap().iter())
        .filter(|group| is_ours(&group["hooks"][0]))
        .count();
    assert_eq!(ours, EVENTS.len(), "one hook of ours per event, not two");
}

#[test]
fn remove_takes_exactly_what_merge_added() {
    let mut settings = users_settings();
    merge(&mut settings, &hook_entries(SERVER, Some(&shim())));
    let removed = remove(&mut settings);
    assert_eq!(removed.len(), EVENTS.len());
    // The user's `Stop: []` received ours and, emptied again, went: an empty event and a
    // missing one mean the same to Claude Code, and nothing marks which arrays were theirs.
    let mut expected = users_settings();
    expected["hooks"].as_object_mut().unwrap().remove("Stop");
    assert_eq!(settings, expected);
    assert!(remove(&mut settings).is_empty());

    // Empty arrays and groups the user has are not ours to tidy.
    let mut theirs = users_settings();
    theirs["hooks"]["Stop"] = json!([{"hooks": []}]);
    let before = theirs.clone();
    assert!(remove(&mut theirs).is_empty());
    assert_eq!(theirs, before);

    // Into an empty file and out again: nothing of ours is left, not even `hooks`.
    let mut empty = Map::new();
    merge(&mut empty, &hook_entries(SERVER, Some(&shim())));
    remove(&mut empty);
    assert_eq!(empty, Map::new());

    // A user's `hooks: {}` stays.
    let mut theirs = json!({"hooks": {}}).as_object().cloned().unwrap();
    remove(&mut theirs);
    assert_eq!(Value::Object(theirs), json!({"hooks": {}}));
}

#[test]
fn a_handler_of_ours_beside_a_users_in_one_group_goes_alone() {
    let mut settings = json!({"hooks": {"Stop": [{"hooks": [
        {"type": "command", "command": "./mine.sh"},
        {"type": "command", "command": "SESSION_MANAGER_URL='http://h:1' session-manager hook"}
    ]}]}})
    .as_object()
    .cloned()
    .unwrap();
    remove(&mut settings);
    assert_eq!(
        Value::Object(settings),
        json!({"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "./mine.sh"}]}]}})
    );
}

#[test]
fn files_are_created_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let [local, shared] = project_files(dir.path());
    let none = status(&local, SERVER, Some(&shim())).unwrap();
    assert!(!none.exists);
    assert_eq!(none.summary(), "none");

    let change = install(&local, SERVER, Some(&shim())).unwrap();
    assert!(change.written);
    assert_eq!(change.events.len(), EVENTS.len());
    assert!(!install(&local, SERVER, Some(&shim())).unwrap().written);
    let complete = status(&local, SERVER, Some(&shim())).unwrap();
    assert_eq!(complete.summary(), "complete");
    assert_eq!(complete.servers, vec![SERVER.to_owned()]);
    assert_eq!(
        status(&local, "http://other:1", Some(&shim()))
            .unwrap()
            .summary(),
        "outdated"
    );

    fs::write(&shared, "[1, 2]").unwrap();
    for result in [
        install(&shared, SERVER, Some(&shim())).map(|_| ()),
        uninstall(&shared).map(|_| ()),
    ] {
        assert!(matches!(result, Err(InstallError::NotSettings { .. })));
    }
    fs::write(&shared, r#"{"hooks": {"Stop": {"not": "an array"}}}"#).unwrap();
    let error = install(&shared, SERVER, Some(&shim())).unwrap_err();
    assert!(error.to_string().contains("hooks.Stop"), "{error}");
    fs::write(&shared, "{ nope").unwrap();
    assert!(matches!(
        install(&shared, SERVER, Some(&shim())),
        Err(InstallError::NotJson { .. })
    ));
    assert_eq!(fs::read_to_string(&shared).unwrap(), "{ nope");

    assert!(uninstall(&local).unwrap().written);
    assert_eq!(fs::read_to_string(&local).unwrap(), "{}\n");
}

#[cfg(unix)]
#[test]
fn the_files_mode_is_kept() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = user_file(dir.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, "{}").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    install(&path, SERVER, Some(&shim())).unwrap();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[test]
fn without_a_shim_every_event_is_http_and_agents_get_it_as_one_json_string() {
    let entries = hook_entries(SERVER, None);
    assert_eq!(entries["SessionStart"][0]["hooks"][0]["type"], "http");
    let settings: Value = serde_json::from_str(&agent_settings(SERVER)).unwrap();
    assert_eq!(settings, json!({"hooks": hook_entries(SERVER, None)}));
}
