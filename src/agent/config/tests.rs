//! An agent's configuration read, checked and resolved.

use std::time::Duration;

use serde_json::json;

use super::validate::MAX_PATTERN_BYTES;
use super::*;
use crate::config::{AgentSettings, AgentTemplate};
use crate::rules::{FieldError, FieldErrorKind, MAX_ARG_BYTES, MAX_COMMAND_ARGS};
use crate::supervision::{Backoff, Intensity, RestartPolicy};
use AgentType::*;

fn settings(allow_custom_commands: bool) -> AgentSettings {
    AgentSettings {
        allow_custom_commands,
        stop_grace_ms: 5000,
        restart_window_seconds: 60,
        cgroups: crate::config::CgroupMode::Auto,
        terminal: crate::config::TerminalSettings {
            scrollback_bytes: 1 << 20,
        },
        templates: BTreeMap::new(),
        claude: crate::config::ClaudeSettings {
            command: argv(&["claude"]),
            allowed_args: Vec::new(),
            hook_settings: None,
        },
    }
}

fn with_template(
    mut settings: AgentSettings,
    t: AgentType,
    template: AgentTemplate,
) -> AgentSettings {
    settings.templates.insert(t.as_str().to_owned(), template);
    settings
}

fn template() -> AgentTemplate {
    AgentTemplate {
        command: None,
        depends_on: None,
        restart: None,
        backoff: None,
    }
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

fn parse(value: Value) -> Result<AgentConfig, serde_json::Error> {
    serde_json::from_value(value)
}

fn agents(types: &[AgentType]) -> Vec<AgentConfig> {
    types.iter().map(|&t| AgentConfig::new(t)).collect()
}

fn named(t: AgentType, name: &str) -> AgentConfig {
    AgentConfig {
        name: name.to_owned(),
        ..AgentConfig::new(t)
    }
}

#[test]
fn the_seed_session_configuration_parses_as_agent_configs() {
    let seed = r#"{
        "name": "Session Name",
        "agents": [
            {
                "agent_type": "BACKEND",
                "name": "backend-services",
                "enabled": true,
                "priority": 2,
                "max_memory_mb": 512,
                "timeout_seconds": 300,
                "retry_attempts": 3
            }
        ]
    }"#;
    let session: Value = serde_json::from_str(seed).unwrap();
    let agents: Vec<AgentConfig> = serde_json::from_value(session["agents"].clone()).unwrap();
    let expected = AgentConfig {
        max_memory_mb: Some(512),
        ..AgentConfig::new(Backend)
    };
    assert_eq!(agents, vec![expected]);
    validate_agents(&agents, &settings(false)).unwrap();
}

#[test]
fn a_type_alone_gets_every_default_and_serializes_complete() {
    let config = parse(json!({"agent_type": "database"})).unwrap();
    assert_eq!(config, AgentConfig::new(Database));
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        json!({
            "agent_type": "DATABASE",
            "name": "database-architect",
            "enabled": true,
            "priority": 3,
            "max_memory_mb": null,
            "timeout_seconds": 300,
            "retry_attempts": 3,
            "custom_config": {},
            "command": null,
            "ready_pattern": null,
            "environment": {},
            "limits": null,
            "depends_on": null,
            "restart": null,
            "backoff": null,
            "claude": null,
            "terminal": null,
        })
    );
}

#[test]
fn null_counts_as_absent() {
    let config = parse(json!({
        "agent_type": "Api", "name": null, "enabled": null, "priority": null,
        "timeout_seconds": null, "retry_attempts": null, "custom_config": null,
        "environment": null, "restart": null, "backoff": null, "limits": null,
    }))
    .unwrap();
    assert_eq!(config, AgentConfig::new(Api));
}

#[test]
fn a_full_configuration_survives_a_round_trip() {
    let input = json!({
        "agent_type": "quality",
        "name": "qa.1",
        "enabled": false,
        "priority": 0,
        "max_memory_mb": 1024,
        "timeout_seconds": 30,
        "retry_attempts": 0,
        "custom_config": {"suite": ["unit", "e2e"]},
        "command": ["qa-agent", "--watch"],
        "ready_pattern": "^ready$",
        "environment": {"NODE_ENV": "test"},
        "limits": {"address_space_mb": 4096, "open_files": 256, "cpu_seconds": 600, "nice": 5},
        "depends_on": ["backend-services"],
        "restart": "Transient",
        "backoff": {"initial_ms": 50, "max_ms": 500, "multiplier": 1.5, "reset_after_seconds": 10},
    });
    let config = parse(input).unwrap();
    config.validate().unwrap();
    assert_eq!(config.agent_type, Quality);
    assert_eq!(config.restart, Some(Restart::Transient));
    let output = serde_json::to_value(&config).unwrap();
    assert_eq!(output["agent_type"], "QUALITY");
    assert_eq!(output["restart"], "transient");
    assert_eq!(parse(output.clone()).unwrap(), config);
    assert_eq!(
        serde_json::to_value(parse(output.clone()).unwrap()).unwrap(),
        output
    );
}

#[test]
fn a_partial_backoff_takes_the_defaults() {
    let config = parse(json!({"agent_type": "API", "backoff": {"max_ms": 1000}})).unwrap();
    assert_eq!(
        config.backoff,
        Some(BackoffSettings {
            max_ms: 1000,
            ..BackoffSettings::default()
        })
    );
}

#[test]
fn unknown_fields_are_refused_by_name() {
    for (input, field) in [
        (json!({"agent_type": "API", "comand": ["x"]}), "comand"),
        (
            json!({"agent_type": "API", "limits": {"nice": 1, "stack": 2}}),
            "stack",
        ),
        (
            json!({"agent_type": "API", "backoff": {"jitter": 1}}),
            "jitter",
        ),
    ] {
        let message = parse(input).unwrap_err().to_string();
        assert!(
            message.contains(&format!("unknown field `{field}`")),
            "{message}"
        );
    }
}

#[test]
fn a_missing_or_unknown_type_is_refused_naming_every_type() {
    let message = parse(json!({"name": "x"})).unwrap_err().to_string();
    assert!(message.contains("missing field `agent_type`"), "{message}");
    let message = parse(json!({"agent_type": "WIZARD"}))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("unknown agent type \"WIZARD\""),
        "{message}"
    );
    for t in AgentType::ALL {
        assert!(message.contains(t.as_str()), "{message} lacks {t}");
    }
}

#[test]
fn a_bad_restart_word_is_refused_naming_the_words() {
    let message = parse(json!({"agent_type": "API", "restart": "always"}))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("permanent, transient, temporary"),
        "{message}"
    );
}

/// Applies `change` to a default agent and returns the field of the error, if any.
fn refused_field(change: impl FnOnce(&mut AgentConfig)) -> Option<String> {
    let mut config = AgentConfig::new(Backend);
    change(&mut config);
    config.validate().err().map(|error| {
        assert_eq!(error.kind, FieldErrorKind::Invalid);
        assert!(error.to_string().starts_with(&error.field), "{error}");
        error.field
    })
}

fn backoff(change: impl FnOnce(&mut BackoffSettings)) -> Option<BackoffSettings> {
    let mut backoff = BackoffSettings::default();
    change(&mut backoff);
    Some(backoff)
}

fn limits(change: impl FnOnce(&mut Limits)) -> Option<Limits> {
    let mut limits = Limits::default();
    change(&mut limits);
    Some(limits)
}

#[test]
fn every_range_accepts_its_bounds_and_refuses_one_step_beyond() {
    type Change = Box<dyn FnOnce(&mut AgentConfig)>;
    let cases: Vec<(&str, Change, Change)> = vec![
        (
            "priority",
            Box::new(|c| c.priority = 100),
            Box::new(|c| c.priority = 101),
        ),
        (
            "max_memory_mb",
            Box::new(|c| c.max_memory_mb = Some(1)),
            Box::new(|c| c.max_memory_mb = Some(0)),
        ),
        (
            "max_memory_mb",
            Box::new(|c| c.max_memory_mb = Some(1_048_576)),
            Box::new(|c| c.max_memory_mb = Some(1_048_577)),
        ),
        (
            "timeout_seconds",
            Box::new(|c| c.timeout_seconds = 1),
            Box::new(|c| c.timeout_seconds = 0),
        ),
        (
            "timeout_seconds",
            Box::new(|c| c.timeout_seconds = 86_400),
            Box::new(|c| c.timeout_seconds = 86_401),
        ),
        (
            "retry_attempts",
            Box::new(|c| c.retry_attempts = 100_000),
            Box::new(|c| c.retry_attempts = 100_001),
        ),
        (
            "backoff.initial_ms",
            Box::new(|c| {
                c.backoff = backoff(|b| {
                    b.initial_ms = 600_000;
                    b.max_ms = 600_000
                })
            }),
            Box::new(|c| {
                c.backoff = backoff(|b| {
                    b.initial_ms = 600_001;
                    b.max_ms = 700_000
                })
            }),
        ),
        (
            "backoff.max_ms",
            Box::new(|c| {
                c.backoff = backoff(|b| {
                    b.initial_ms = 500;
                    b.max_ms = 500
                })
            }),
            Box::new(|c| {
                c.backoff = backoff(|b| {
                    b.initial_ms = 500;
                    b.max_ms = 499
                })
            }),
        ),
        (
            "backoff.max_ms",
            Box::new(|c| c.backoff = backoff(|b| b.max_ms = 3_600_000)),
            Box::new(|c| c.backoff = backoff(|b| b.max_ms = 3_600_001)),
        ),
        (
            "backoff.multiplier",
            Box::new(|c| c.backoff = backoff(|b| b.multiplier = 1.0)),
            Box::new(|c| c.backoff = backoff(|b| b.multiplier = 0.999)),
        ),
        (
            "backoff.multiplier",
            Box::new(|c| c.backoff = backoff(|b| b.multiplier = 10.0)),
            Box::new(|c| c.backoff = backoff(|b| b.multiplier = 10.001)),
        ),
        (
            "backoff.reset_after_seconds",
            Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 1)),
            Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 0)),
        ),
        (
            "backoff.reset_after_seconds",
            Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 86_400)),
            Box::new(|c| c.backoff = backoff(|b| b.reset_after_seconds = 86_401)),
        ),
        (
            "limits.nice",
            Box::new(|c| c.limits = limits(|l| l.nice = Some(-20))),
            Box::new(|c| c.limits = limits(|l| l.nice = Some(-21))),
        ),
        (
            "limits.nice",
            Box::new(|c| c.limits = limits(|l| l.nice = Some(19))),
            Box::new(|c| c.limits = limits(|l| l.nice = Some(20))),
        ),
        (
            "limits.address_space_mb",
            Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(1))),
            Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(0))),
        ),
        (
            "limits.address_space_mb",
            Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(134_217_728))),
            Box::new(|c| c.limits = limits(|l| l.address_space_mb = Some(134_217_729))),
        ),
        (
            "limits.open_files",
            Box::new(|c| c.limits = limits(|l| l.open_files = Some(1_048_576))),
            Box::new(|c| c.limits = limits(|l| l.open_files = Some(1_048_577))),
        ),
        (
            "limits.cpu_seconds",
            Box::new(|c| c.limits = limits(|l| l.cpu_seconds = Some(31_536_000))),
            Box::new(|c| c.limits = limits(|l| l.cpu_seconds = Some(31_536_001))),
        ),
        (
            "name",
            Box::new(|c| c.name = "a".repeat(128)),
            Box::new(|c| c.name = "a".repeat(129)),
        ),
        (
            "name",
            Box::new(|c| c.name = "A-z_0.9".to_owned()),
            Box::new(|c| c.name = String::new()),
        ),
        (
            "name",
            Box::new(|c| c.name = "x".to_owned()),
            Box::new(|c| c.name = "a b".to_owned()),
        ),
        (
            "depends_on[1]",
            Box::new(|c| c.depends_on = Some(argv(&["a", "b"]))),
            Box::new(|c| c.depends_on = Some(argv(&["a", "b/c"]))),
        ),
        (
            "command",
            Box::new(|c| c.command = Some(argv(&["x"]))),
            Box::new(|c| c.command = Some(vec![])),
        ),
        (
            "command[0]",
            Box::new(|c| c.command = Some(argv(&["x", ""]))),
            Box::new(|c| c.command = Some(argv(&["", "x"]))),
        ),
        (
            "command[1]",
            Box::new(|c| c.command = Some(argv(&["x", "a b"]))),
            Box::new(|c| c.command = Some(argv(&["x", "a\0b"]))),
        ),
        (
            "command[1]",
            Box::new(|c| c.command = Some(vec!["x".into(), "a".repeat(MAX_ARG_BYTES)])),
            Box::new(|c| c.command = Some(vec!["x".into(), "a".repeat(MAX_ARG_BYTES + 1)])),
        ),
        (
            "command",
            Box::new(|c| c.command = Some(vec!["x".into(); MAX_COMMAND_ARGS])),
            Box::new(|c| c.command = Some(vec!["x".into(); MAX_COMMAND_ARGS + 1])),
        ),
        (
            "ready_pattern",
            Box::new(|c| c.ready_pattern = Some(r"^listening on \d+$".into())),
            Box::new(|c| c.ready_pattern = Some("(unclosed".into())),
        ),
        (
            "ready_pattern",
            Box::new(|c| c.ready_pattern = Some("a".repeat(MAX_PATTERN_BYTES))),
            Box::new(|c| c.ready_pattern = Some("a".repeat(MAX_PATTERN_BYTES + 1))),
        ),
        (
            "ready_pattern",
            Box::new(|c| c.ready_pattern = Some(r"\w{10}".into())),
            Box::new(|c| c.ready_pattern = Some(r"\w{1000}{1000}".into())),
        ),
        (
            "environment.1X",
            Box::new(|c| {
                c.environment.insert("_X1".into(), "v".into());
            }),
            Box::new(|c| {
                c.environment.insert("1X".into(), "v".into());
            }),
        ),
        (
            "environment.A-B",
            Box::new(|c| {
                c.environment.insert("AB".into(), String::new());
            }),
            Box::new(|c| {
                c.environment.insert("A-B".into(), "v".into());
            }),
        ),
        (
            "environment.CLAUDE_SESSION_ID",
            Box::new(|c| {
                c.environment.insert("CLAUDE_SESSION".into(), "v".into());
            }),
            Box::new(|c| {
                c.environment.insert("CLAUDE_SESSION_ID".into(), "v".into());
            }),
        ),
        (
            "environment.SESSION_MANAGER_URL",
            Box::new(|c| {
                c.environment
                    .insert("session_manager_url".into(), "v".into());
            }),
            Box::new(|c| {
                c.environment
                    .insert("SESSION_MANAGER_URL".into(), "v".into());
            }),
        ),
        (
            "environment.X",
            Box::new(|c| {
                c.environment.insert("X".into(), "a=b c".into());
            }),
            Box::new(|c| {
                c.environment.insert("X".into(), "a\0".into());
            }),
        ),
        (
            "custom_config",
            Box::new(|c| c.custom_config = json!({"a": [1, null]})),
            Box::new(|c| c.custom_config = json!([1])),
        ),
    ];
    for (field, inside, outside) in cases {
        assert_eq!(refused_field(inside), None, "{field}: valid value refused");
        assert_eq!(refused_field(outside).as_deref(), Some(field), "{field}");
    }
}

#[test]
fn a_range_error_names_the_field_and_the_range() {
    let error = AgentConfig {
        timeout_seconds: 0,
        ..AgentConfig::new(Api)
    }
    .validate()
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "timeout_seconds must be between 1 and 86400, got 0"
    );
    assert_eq!(
        error.within("agents[3]").to_string(),
        "agents[3].timeout_seconds must be between 1 and 86400, got 0"
    );
}

#[test]
fn paths_join_fields_and_indices() {
    let error = FieldError::invalid("[2]", "x")
        .within("command")
        .within("agents[0]");
    assert_eq!(error.field, "agents[0].command[2]");
    assert_eq!(
        FieldError::invalid("", "x").within("command").field,
        "command"
    );
}

#[test]
fn duplicate_names_are_refused_at_the_second_one() {
    let list = vec![
        AgentConfig::new(Orchestrator),
        AgentConfig::new(Backend),
        named(Frontend, "backend-services"),
    ];
    let error = validate_agents(&list, &settings(false)).unwrap_err();
    assert_eq!(error.field, "agents[2].name");
    assert_eq!(error.kind, FieldErrorKind::Inconsistent);
    assert!(error.message.contains("agents[1]"), "{error}");
}

#[test]
fn an_agent_error_is_named_from_the_session() {
    let mut list = agents(&[Orchestrator, Backend]);
    list[1].backoff = backoff(|b| b.max_ms = 1);
    let error = validate_agents(&list, &settings(false)).unwrap_err();
    assert_eq!(error.field, "agents[1].backoff.max_ms");
}

#[test]
fn depends_on_must_name_an_agent_of_the_session() {
    let mut list = agents(&[Orchestrator, Backend]);
    list[1].depends_on = Some(argv(&["master-orchestrator", "ghost"]));
    let error = validate_agents(&list, &settings(false)).unwrap_err();
    assert_eq!(error.field, "agents[1].depends_on[1]");
    assert_eq!(error.kind, FieldErrorKind::Inconsistent);
    assert!(error.message.contains("\"ghost\""), "{error}");
}

#[test]
fn an_explicit_cycle_is_named() {
    let mut list = vec![named(Api, "a"), named(Api, "b")];
    list[0].depends_on = Some(argv(&["b"]));
    list[1].depends_on = Some(argv(&["a"]));
    let error = validate_agents(&list, &settings(false)).unwrap_err();
    assert_eq!(error.kind, FieldErrorKind::Inconsistent);
    assert!(error.field == "agents[0].depends_on" || error.field == "agents[1].depends_on");
    assert!(
        error.message == "dependency cycle: a -> b -> a"
            || error.message == "dependency cycle: b -> a -> b",
        "{error}"
    );
}

#[test]
fn a_cycle_through_default_dependencies_is_found() {
    // The orchestrator waits for the backend, which by default waits for the orchestrator.
    let mut list = agents(&[Orchestrator, Backend]);
    list[0].depends_on = Some(argv(&["backend-services"]));
    let error = validate_agents(&list, &settings(false)).unwrap_err();
    assert!(error.message.starts_with("dependency cycle: "), "{error}");
    assert!(error.message.contains("master-orchestrator"), "{error}");
    assert!(error.message.contains("backend-services"), "{error}");
}

#[test]
fn default_dependencies_apply_only_over_the_types_present() {
    let s = settings(false);
    // DEVOPS waits for BACKEND, DATABASE and SECURITY; only DATABASE is here.
    let list = agents(&[Devops, Database]);
    assert_eq!(
        effective_depends_on(&list[0], &list, &s),
        argv(&["database-architect"])
    );
    // DATABASE waits for BACKEND, which is absent: nothing.
    assert!(effective_depends_on(&list[1], &list, &s).is_empty());
    let full = agents(&AgentType::ALL);
    validate_agents(&full, &s).unwrap();
    let monitoring = &full[11];
    assert_eq!(
        effective_depends_on(monitoring, &full, &s),
        argv(&["backend-services", "performance-optimization"])
    );
    assert!(effective_depends_on(&full[0], &full, &s).is_empty());
}

#[test]
fn every_agent_of_a_dependency_type_is_waited_for() {
    let list = vec![
        named(Backend, "api-server"),
        named(Backend, "worker"),
        AgentConfig::new(Database),
    ];
    assert_eq!(
        effective_depends_on(&list[2], &list, &settings(false)),
        argv(&["api-server", "worker"])
    );
}

#[test]
fn explicit_depends_on_replaces_the_defaults() {
    let mut list = agents(&[Orchestrator, Backend, Database]);
    list[2].depends_on = Some(argv(&["master-orchestrator"]));
    assert_eq!(
        effective_depends_on(&list[2], &list, &settings(false)),
        argv(&["master-orchestrator"])
    );
    list[2].depends_on = Some(vec![]);
    assert!(effective_depends_on(&list[2], &list, &settings(false)).is_empty());
}

#[test]
fn a_template_depends_on_replaces_the_defaults_over_the_names_present() {
    let s = with_template(
        settings(false),
        Database,
        AgentTemplate {
            depends_on: Some(argv(&["master-orchestrator", "not-in-this-session"])),
            ..template()
        },
    );
    let mut list = agents(&[Orchestrator, Backend, Database]);
    assert_eq!(
        effective_depends_on(&list[2], &list, &s),
        argv(&["master-orchestrator"])
    );
    list[2].depends_on = Some(argv(&["backend-services"]));
    assert_eq!(
        effective_depends_on(&list[2], &list, &s),
        argv(&["backend-services"])
    );
}

#[test]
fn without_any_command_an_agent_is_logical() {
    let list = agents(&[Backend]);
    let resolved = resolve(&list[0], &list, &settings(false), CommandOrigin::Api).unwrap();
    assert!(resolved.is_logical());
    assert!(resolved.depends_on.is_empty());
}

#[test]
fn the_template_command_is_used_when_the_agent_names_none() {
    let s = with_template(
        settings(false),
        Backend,
        AgentTemplate {
            command: Some(argv(&["backend-agent", "--serve"])),
            ..template()
        },
    );
    let list = agents(&[Backend, Frontend]);
    let resolved = resolve(&list[0], &list, &s, CommandOrigin::Api).unwrap();
    assert_eq!(resolved.command, Some(argv(&["backend-agent", "--serve"])));
    // Other types do not inherit it.
    let frontend = resolve(&list[1], &list, &s, CommandOrigin::Api).unwrap();
    assert!(frontend.is_logical());
}

#[test]
fn a_custom_command_from_the_api_is_refused_while_disabled() {
    let mut list = agents(&[Orchestrator, Backend]);
    list[1].command = Some(argv(&["sh", "-c", "anything"]));
    let refused = resolve_agents(&list, &settings(false), CommandOrigin::Api).unwrap_err();
    assert_eq!(
        refused,
        ResolveError::CustomCommandRefused {
            field: "agents[1].command".to_owned()
        }
    );
    assert_eq!(refused.field(), "agents[1].command");
    let accepted = resolve_agents(&list, &settings(true), CommandOrigin::Api).unwrap();
    assert_eq!(accepted[1].command, Some(argv(&["sh", "-c", "anything"])));
    // Restored from our own storage, it was accepted once already.
    let restored = resolve_agents(&list, &settings(false), CommandOrigin::Trusted).unwrap();
    assert_eq!(restored[1].command, Some(argv(&["sh", "-c", "anything"])));
}

#[test]
fn the_template_command_is_never_custom() {
    let s = with_template(
        settings(false),
        Backend,
        AgentTemplate {
            command: Some(argv(&["backend-agent"])),
            ..template()
        },
    );
    let mut list = agents(&[Backend]);
    list[0].command = Some(argv(&["backend-agent"]));
    let resolved = resolve(&list[0], &list, &s, CommandOrigin::Api).unwrap();
    assert_eq!(resolved.command, Some(argv(&["backend-agent"])));
    list[0].command = Some(argv(&["backend-agent", "--extra"]));
    assert!(matches!(
        resolve(&list[0], &list, &s, CommandOrigin::Api),
        Err(ResolveError::CustomCommandRefused { .. })
    ));
}

#[test]
fn policy_comes_from_the_agent_then_the_template_then_the_defaults() {
    let template_backoff = BackoffSettings {
        initial_ms: 10,
        max_ms: 20,
        multiplier: 1.0,
        reset_after_seconds: 5,
    };
    let s = with_template(
        settings(false),
        Api,
        AgentTemplate {
            restart: Some(Restart::Transient),
            backoff: Some(template_backoff.clone()),
            ..template()
        },
    );
    let mut list = agents(&[Backend, Api]);
    list[1].retry_attempts = 7;
    let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
    assert_eq!(
        resolved[0].policy,
        RestartPolicy::default().with_intensity(Intensity::new(3, Duration::from_secs(60)))
    );
    assert_eq!(resolved[1].policy.restart(), Restart::Transient);
    assert_eq!(
        resolved[1].policy.backoff(),
        Backoff::from(&template_backoff)
    );
    assert_eq!(
        resolved[1].policy.backoff().max(),
        Duration::from_millis(20)
    );
    assert_eq!(resolved[1].policy.intensity().max_restarts(), 7);
    assert!(!resolved[1].policy.escalate());

    list[1].restart = Some(Restart::Temporary);
    list[1].backoff = Some(BackoffSettings::default());
    let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
    assert_eq!(resolved[1].policy.restart(), Restart::Temporary);
    assert_eq!(resolved[1].policy.backoff(), Backoff::default());
}

#[test]
fn everything_else_is_carried_over() {
    let mut config = named(Monitoring, "watcher");
    config.enabled = false;
    config.priority = 42;
    config.timeout_seconds = 12;
    config.max_memory_mb = Some(256);
    config.ready_pattern = Some(r"^ready on port \d+$".to_owned());
    config
        .environment
        .insert("LEVEL".to_owned(), "debug".to_owned());
    config.limits = limits(|l| l.nice = Some(10));
    let mut s = settings(false);
    s.stop_grace_ms = 1500;
    s.restart_window_seconds = 600;
    let list = vec![AgentConfig::new(Backend), config];
    let resolved = resolve_agents(&list, &s, CommandOrigin::Api).unwrap();
    let agent = &resolved[1];
    assert_eq!(agent.name, "watcher");
    assert_eq!(agent.agent_type, Monitoring);
    assert!(!agent.enabled);
    assert_eq!(agent.priority, 42);
    assert_eq!(agent.start_timeout, Duration::from_secs(12));
    assert_eq!(agent.stop_grace, Duration::from_millis(1500));
    assert_eq!(agent.policy.intensity().window(), Duration::from_secs(600));
    assert_eq!(agent.max_memory_mb, Some(256));
    assert_eq!(agent.environment["LEVEL"], "debug");
    assert_eq!(agent.limits.nice, Some(10));
    assert_eq!(agent.depends_on, argv(&["backend-services"]));
    let pattern = agent.ready_pattern.as_ref().unwrap();
    assert!(pattern.is_match("ready on port 8080"));
    assert!(!pattern.is_match("not ready on port 8080"));
}

#[test]
fn resolve_refuses_an_invalid_configuration() {
    let mut config = AgentConfig::new(Api);
    config.ready_pattern = Some("[".to_owned());
    let error = resolve(&config, &[], &settings(true), CommandOrigin::Trusted).unwrap_err();
    assert_eq!(error.field(), "ready_pattern");
    assert!(
        error.to_string().contains("not a valid regular expression"),
        "{error}"
    );
    assert!(!error.to_string().contains('\n'), "{error}");
}
