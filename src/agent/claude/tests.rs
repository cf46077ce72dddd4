//! A Claude agent's configuration read, checked and resolved; its conversation ids.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use crate::agent::{resolve_agents, CommandOrigin, ResolveError};
use crate::config::{AgentSettings, AgentTemplate, CgroupMode, TerminalSettings};

fn settings(allow_custom_commands: bool, allowed_args: &[&str]) -> AgentSettings {
    AgentSettings {
        allow_custom_commands,
        stop_grace_ms: 5000,
        restart_window_seconds: 60,
        cgroups: CgroupMode::Auto,
        terminal: TerminalSettings {
            scrollback_bytes: 1 << 20,
        },
        templates: BTreeMap::new(),
        claude: ClaudeSettings {
            command: vec!["/opt/claude".to_owned(), "--verbose".to_owned()],
            allowed_args: allowed_args.iter().map(|a| (*a).to_owned()).collect(),
            hook_settings: None,
        },
    }
}

fn agent(value: Value) -> AgentConfig {
    serde_json::from_value(value).unwrap()
}

fn resolve_one(
    value: Value,
    settings: &AgentSettings,
    origin: CommandOrigin,
) -> Result<crate::agent::ResolvedAgent, ResolveError> {
    resolve_agents(&[agent(value)], settings, origin).map(|mut all| all.remove(0))
}

#[test]
fn true_is_the_defaults_and_false_or_null_is_no_claude_agent() {
    let config = agent(json!({"agent_type": "BACKEND", "claude": true}));
    assert_eq!(config.claude, Some(ClaudeConfig::default()));
    for none in [json!(false), Value::Null] {
        let config = agent(json!({"agent_type": "BACKEND", "claude": none}));
        assert_eq!(config.claude, None);
    }
    assert_eq!(agent(json!({"agent_type": "BACKEND"})).claude, None);
    let config = agent(json!({"agent_type": "BACKEND", "claude": {
        "model": "opus", "permission_mode": "plan", "args": ["--verbose"]
    }}));
    assert_eq!(
        config.claude,
        Some(ClaudeConfig {
            model: Some("opus".to_owned()),
            permission_mode: Some("plan".to_owned()),
            args: vec!["--verbose".to_owned()],
        })
    );
}

#[test]
fn unknown_options_and_other_shapes_are_refused() {
    for (bad, says) in [
        (json!({"modle": "opus"}), "unknown field `modle`"),
        (json!({"args": "--x"}), "invalid type"),
        (json!("yes"), "model, permission_mode, args"),
        (json!(1), "model, permission_mode, args"),
        (json!(["opus"]), "model, permission_mode, args"),
    ] {
        let parsed =
            serde_json::from_value::<AgentConfig>(json!({"agent_type": "API", "claude": bad}));
        let error = parsed.unwrap_err().to_string();
        assert!(error.contains(says), "{bad}: {error}");
    }
}

#[test]
fn the_written_form_is_the_options_object_or_null_and_reads_back_the_same() {
    let claude = agent(json!({"agent_type": "API", "claude": true}));
    let written = serde_json::to_value(&claude).unwrap();
    assert_eq!(
        written["claude"],
        json!({"model": null, "permission_mode": null, "args": []})
    );
    assert_eq!(agent(written), claude);
    let plain = serde_json::to_value(agent(json!({"agent_type": "API"}))).unwrap();
    assert_eq!(plain["claude"], Value::Null);
}

#[test]
fn options_are_checked_and_named_under_the_agent() {
    let refused = |claude: Value| {
        let config = agent(json!({"agent_type": "QUALITY", "claude": claude}));
        resolve_agents(&[config], &settings(true, &[]), CommandOrigin::Api)
            .unwrap_err()
            .field()
            .to_owned()
    };
    assert_eq!(
        refused(json!({"permission_mode": "yolo"})),
        "agents[0].claude.permission_mode"
    );
    assert_eq!(
        refused(json!({"permission_mode": "ACCEPTEDITS"})),
        "agents[0].claude.permission_mode"
    );
    assert_eq!(refused(json!({"model": ""})), "agents[0].claude.model");
    assert_eq!(
        refused(json!({"model": "--help"})),
        "agents[0].claude.model"
    );
    assert_eq!(refused(json!({"model": "op us"})), "agents[0].claude.model");
    assert_eq!(
        refused(json!({"args": ["ok", "nul\u{0}"]})),
        "agents[0].claude.args[1]"
    );
    for mode in PERMISSION_MODES {
        let config = agent(json!({"agent_type": "QUALITY", "claude": {"permission_mode": mode}}));
        assert!(config.validate().is_ok(), "{mode}");
    }
}

#[test]
fn claude_with_command_is_refused_naming_the_command() {
    let config = agent(json!({"agent_type": "BACKEND", "claude": true, "command": ["x"]}));
    let error =
        resolve_agents(&[config], &settings(true, &[]), CommandOrigin::Trusted).unwrap_err();
    assert_eq!(error.field(), "agents[0].command");
    assert!(error.to_string().contains("claude"), "{error}");
}

#[test]
fn the_command_line_is_the_configured_program_the_role_and_the_options() {
    let resolved = resolve_one(
        json!({"agent_type": "BACKEND", "claude": {
            "model": "sonnet", "permission_mode": "acceptEdits", "args": ["--debug"]
        }}),
        &settings(true, &[]),
        CommandOrigin::Api,
    )
    .unwrap();
    let role = role(AgentType::Backend);
    assert_eq!(
        resolved.command.unwrap(),
        [
            "/opt/claude",
            "--verbose",
            "--append-system-prompt",
            &role,
            "--model",
            "sonnet",
            "--permission-mode",
            "acceptEdits",
            "--debug",
        ]
    );
    assert!(resolved.claude);
    assert_eq!(
        resolved.terminal,
        Some(crate::agent::terminal::DEFAULT_SIZE),
        "Claude Code needs a terminal"
    );
    let bare = resolve_one(
        json!({"agent_type": "API", "claude": true}),
        &settings(false, &[]),
        CommandOrigin::Api,
    )
    .unwrap();
    assert_eq!(
        bare.command.unwrap(),
        [
            "/opt/claude",
            "--verbose",
            "--append-system-prompt",
            &super::role(AgentType::Api)
        ]
    );
}

#[test]
fn the_servers_hooks_come_as_settings_before_the_agents_own_args() {
    let mut with_hooks = settings(true, &[]);
    with_hooks.claude.hook_settings = Some(r#"{"hooks":{}}"#.to_owned());
    let resolved = resolve_one(
        json!({"agent_type": "API", "claude": {"args": ["--settings", "mine.json"]}}),
        &with_hooks,
        CommandOrigin::Api,
    )
    .unwrap();
    let command = resolved.command.unwrap();
    assert_eq!(
        command[4..],
        ["--settings", r#"{"hooks":{}}"#, "--settings", "mine.json"]
    );
}

#[test]
fn the_role_is_the_types_description_and_capabilities() {
    assert_eq!(
        role(AgentType::Backend),
        "You are the backend agent of a Claude Code Dev Stack session: Builds server-side \
         services, business logic and internal APIs. Capabilities: service design, api \
         development, business logic."
    );
    for agent_type in AgentType::ALL {
        let role = role(agent_type);
        assert!(role.contains(agent_type.info().description), "{role}");
        assert!(!role.contains('\n') && !role.contains('_'), "{role}");
    }
}

#[test]
fn a_claude_agent_needs_no_custom_command_right_but_its_args_do() {
    let plain = json!({"agent_type": "BACKEND", "claude": {"model": "opus"}});
    // The program is the server's: no right needed, even over a template command.
    let mut with_template = settings(false, &[]);
    with_template.templates.insert(
        "BACKEND".to_owned(),
        AgentTemplate {
            command: Some(vec!["backend-agent".to_owned()]),
            depends_on: None,
            restart: None,
            backoff: None,
        },
    );
    let resolved = resolve_one(plain, &with_template, CommandOrigin::Api).unwrap();
    assert_eq!(resolved.command.unwrap()[0], "/opt/claude");

    let with_args = json!({"agent_type": "BACKEND", "claude": {"args": ["--debug", "--x"]}});
    let refused =
        resolve_one(with_args.clone(), &settings(false, &[]), CommandOrigin::Api).unwrap_err();
    assert_eq!(
        refused,
        ResolveError::CustomCommandRefused {
            field: "agents[0].claude.args".to_owned()
        }
    );
    assert!(refused.to_string().contains("agents.allow_custom_commands"));
    // One listed argument is not enough: every one must be.
    let partly = settings(false, &["--debug"]);
    assert!(resolve_one(with_args.clone(), &partly, CommandOrigin::Api).is_err());
    let listed = settings(false, &["--x", "--debug"]);
    assert!(resolve_one(with_args.clone(), &listed, CommandOrigin::Api).is_ok());
    assert!(resolve_one(with_args.clone(), &settings(true, &[]), CommandOrigin::Api).is_ok());
    // Accepted once, a stored configuration is not asked again.
    assert!(resolve_one(with_args, &settings(false, &[]), CommandOrigin::Trusted).is_ok());
}

#[test]
fn other_agents_resolve_as_before() {
    let resolved = resolve_one(
        json!({"agent_type": "BACKEND", "command": ["agent"]}),
        &settings(true, &[]),
        CommandOrigin::Api,
    )
    .unwrap();
    assert_eq!(resolved.command.unwrap(), ["agent"]);
    assert!(!resolved.claude);
    assert_eq!(resolved.terminal, None);
}

#[test]
fn ids_are_kept_for_agents_that_stay_new_for_agents_that_join_and_gone_with_those_that_leave() {
    let agents = |names: &[(&str, bool)]| -> Vec<AgentConfig> {
        names
            .iter()
            .map(|(name, claude)| {
                agent(json!({"agent_type": "BACKEND", "name": name, "claude": claude}))
            })
            .collect()
    };
    let first = assign_session_ids(
        &BTreeMap::new(),
        &agents(&[("a", true), ("b", true), ("plain", false)]),
    );
    assert_eq!(
        first.keys().map(String::as_str).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_ne!(first["a"], first["b"]);
    let next = assign_session_ids(&first, &agents(&[("a", true), ("c", true), ("b", false)]));
    assert_eq!(next["a"], first["a"]);
    assert!(!next.contains_key("b"), "no longer a Claude agent");
    let known: BTreeSet<Uuid> = first.values().copied().collect();
    assert!(!known.contains(&next["c"]));
    // A new session (create, import, clone) starts from nothing: new conversations.
    let copy = assign_session_ids(&BTreeMap::new(), &agents(&[("a", true), ("b", true)]));
    assert!(copy.values().all(|id| !known.contains(id)));
    // Removed and added again: a new conversation.
    let removed = assign_session_ids(&next, &agents(&[("c", true)]));
    let back = assign_session_ids(&removed, &agents(&[("a", true), ("c", true)]));
    assert_ne!(back["a"], first["a"]);
    assert_eq!(back["c"], next["c"]);
}
