//! The settings as loaded from every source: defaults, files, environment and flags, and
//! each refusal named by its key and origin.

use std::ffi::OsString;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::load::{dotted, expand_home};
use super::validate::log_directives;
use super::*;
use crate::supervision::Restart;

fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)))
        .collect()
}

fn load_env(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    Settings::load_from(&Overrides::default(), env(vars))
}

#[test]
fn text_settings_from_the_environment_are_taken_verbatim() {
    for token in ["0042", "+42", "true", "1.5", " padded "] {
        let settings = load_env(&[("SESSION_MANAGER_SERVER__TOKEN", token)]).unwrap();
        assert_eq!(settings.server.token.expose(), token);
    }
    let settings = load_env(&[("SESSION_MANAGER_STORAGE__DATA_DIR", "2024")]).unwrap();
    assert_eq!(settings.storage.data_dir, std::path::Path::new("2024"));
    // Typed settings are still parsed.
    let settings = load_env(&[("SESSION_MANAGER_SERVER__PORT", "9000")]).unwrap();
    assert_eq!(settings.server.port, 9000);
}

#[test]
fn an_infinite_error_rate_threshold_is_refused() {
    let err = load_file("[monitor.thresholds]\nerror_rate_per_hour = inf\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "monitor.thresholds.error_rate_per_hour"),
        "{err}"
    );
}

#[test]
fn allowed_origins_must_be_real_origins() {
    for origin in [
        "http://a:99999",
        "http://a:b:c",
        "http://*",
        "http://a:",
        "http://a:+80",
        "ftp://a",
        "http://[::1",
        "http://[nope]:80",
        "http://a/path",
    ] {
        let text = format!("[server]\nallowed_origins = [\"{origin}\"]\n");
        let err = load_file(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "server.allowed_origins[0]"),
            "{origin} accepted or wrongly reported: {err}"
        );
    }
    for origin in [
        "http://localhost:3000",
        "https://example.com",
        "http://127.0.0.1:8082",
        "http://[::1]:8082",
        "https://[2001:db8::1]",
    ] {
        let text = format!("[server]\nallowed_origins = [\"{origin}\"]\n");
        assert!(load_file(&text).is_ok(), "{origin} refused");
    }
}

fn load_file(text: &str) -> Result<Settings, ConfigError> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let overrides = Overrides {
        config_file: Some(file.path().to_path_buf()),
        ..Overrides::default()
    };
    Settings::load_from(&overrides, env(&[]))
}

/// Asserts the error is about `key` and returns its message.
fn invalid_key(result: Result<Settings, ConfigError>, key: &str) -> String {
    match result {
        Err(error @ ConfigError::Invalid { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains(&format!("`{key}`")),
                "{message:?} does not name {key}"
            );
            message
        }
        other => panic!("expected an invalid `{key}`, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_documented_values() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.server.bind, IpAddr::from([127, 0, 0, 1]));
    assert_eq!(settings.server.port, 8082);
    assert!(settings.server.token.is_empty());
    assert!(settings.server.allowed_origins.is_empty());
    assert_eq!(settings.server.max_body_bytes, 1_048_576);
    assert_eq!(settings.server.rate_limit_per_second, 1000);
    assert_eq!(settings.server.rate_limit_burst, 2000);
    assert_eq!(settings.storage.data_dir, PathBuf::from("~/.claude"));
    assert_eq!(settings.sessions.max_sessions, 1000);
    assert_eq!(settings.sessions.terminated_retention_days, 30);
    assert!(!settings.agents.allow_custom_commands);
    assert_eq!(settings.agents.stop_grace_ms, 5000);
    assert_eq!(settings.agents.restart_window_seconds, 60);
    assert!(settings.agents.templates.is_empty());
    assert_eq!(settings.logs.level, "info");
    assert_eq!(settings.logs.max_file_bytes, 10_485_760);
    assert_eq!(settings.logs.keep_files, 5);
    assert_eq!(settings.logs.retention_days, 14);
    assert_eq!(settings.monitor.interval_seconds, 1);
    assert_eq!(settings.monitor.retention_hours, 24);
    let thresholds = &settings.monitor.thresholds;
    assert_eq!(thresholds.memory_percent, 85.0);
    assert_eq!(thresholds.cpu_percent, 80.0);
    assert_eq!(thresholds.disk_percent, 90.0);
    assert_eq!(thresholds.error_rate_per_hour, 10.0);
    assert_eq!(thresholds.response_time_ms, 5000);
    assert!(settings.paths.restricted.is_empty());
    assert!(settings.paths.allowed_roots.is_empty());
}

#[test]
fn event_settings_have_documented_defaults_and_ranges() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.events.retention_days, 7);
    assert_eq!(settings.events.websocket_queue, 1024);
    assert_eq!(settings.events.backlog_max_bytes, 64 * 1024 * 1024);
    invalid_key(
        load_file("[events]\nretention_days = 0\n"),
        "events.retention_days",
    );
    invalid_key(
        load_file("[events]\nwebsocket_queue = 0\n"),
        "events.websocket_queue",
    );
    invalid_key(
        load_file("[events]\nbacklog_max_bytes = 1024\n"),
        "events.backlog_max_bytes",
    );
    assert_eq!(settings.events.ws_max_queue_bytes, 8 * 1024 * 1024);
    for bad in ["1023", "1073741825"] {
        invalid_key(
            load_file(&format!("[events]\nws_max_queue_bytes = {bad}\n")),
            "events.ws_max_queue_bytes",
        );
    }
}

#[test]
fn unknown_key_in_a_file_is_named_with_its_full_path_and_file() {
    let message = invalid_key(
        load_file("[monitor.thresholds]\ncpu_prot = 5\n"),
        "monitor.thresholds.cpu_prot",
    );
    assert!(message.contains("config file"), "{message}");
}

#[test]
fn path_roots_must_be_absolute() {
    let message = invalid_key(
        load_file("[paths]\nallowed_roots = [\"/srv\", \"projects\"]\n"),
        "paths.allowed_roots[1]",
    );
    assert!(message.contains("absolute"), "{message}");
    let settings = load_file("[paths]\nrestricted = [\"~/private\", \"/srv/x\"]\n").unwrap();
    assert_eq!(settings.paths.restricted.len(), 2);
}

#[test]
fn agents_cgroups_is_auto_by_default_and_refuses_other_words_by_name() {
    assert_eq!(load_env(&[]).unwrap().agents.cgroups, CgroupMode::Auto);
    let settings = load_env(&[("SESSION_MANAGER_AGENTS__CGROUPS", "off")]).unwrap();
    assert_eq!(settings.agents.cgroups, CgroupMode::Off);
    let message = invalid_key(
        load_env(&[("SESSION_MANAGER_AGENTS__CGROUPS", "maybe")]),
        "agents.cgroups",
    );
    assert!(message.contains("auto, off"), "{message}");
}

#[test]
fn unknown_section_is_named() {
    invalid_key(load_file("[sever]\nport = 1\n"), "sever");
}

#[test]
fn unknown_key_in_a_template_is_named() {
    invalid_key(
        load_file("[agents.templates.backend]\ncomand = [\"x\"]\n"),
        "agents.templates.BACKEND.comand",
    );
}

#[test]
fn bad_type_through_env_names_key_and_variable() {
    let message = invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER__PORT", "notaport")]),
        "server.port",
    );
    assert!(
        message.contains("SESSION_MANAGER_SERVER__PORT"),
        "{message}"
    );
}

#[test]
fn port_beyond_u16_is_named() {
    invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER__PORT", "70000")]),
        "server.port",
    );
}

#[test]
fn out_of_range_threshold_is_named() {
    let message = invalid_key(
        load_file("[monitor.thresholds]\ncpu_percent = 150\n"),
        "monitor.thresholds.cpu_percent",
    );
    assert!(message.contains("between 0 and 100"), "{message}");
}

#[test]
fn out_of_range_backoff_is_named_under_the_canonical_type() {
    invalid_key(
        load_file("[agents.templates.Backend.backoff]\nmultiplier = 11.0\n"),
        "agents.templates.BACKEND.backoff.multiplier",
    );
    invalid_key(
        load_file("[agents.templates.API.backoff]\ninitial_ms = 500\nmax_ms = 100\n"),
        "agents.templates.API.backoff.max_ms",
    );
    invalid_key(
        load_file("[agents.templates.API.backoff]\nreset_after_seconds = 0\n"),
        "agents.templates.API.backoff.reset_after_seconds",
    );
}

#[test]
fn unknown_agent_type_and_restart_word_are_named() {
    invalid_key(
        load_file("[agents.templates.WIZARD]\nrestart = \"permanent\"\n"),
        "agents.templates.WIZARD",
    );
    invalid_key(
        load_file("[agents.templates.QUALITY]\nrestart = \"always\"\n"),
        "agents.templates.QUALITY.restart",
    );
}

#[test]
fn a_template_command_follows_the_agent_command_rules() {
    invalid_key(
        load_file("[agents.templates.BACKEND]\ncommand = []\n"),
        "agents.templates.BACKEND.command",
    );
    invalid_key(
        load_file("[agents.templates.BACKEND]\ncommand = [\"agent\", \"a\\u0000b\"]\n"),
        "agents.templates.BACKEND.command[1]",
    );
    invalid_key(
        load_file("[agents.templates.BACKEND]\ndepends_on = [\"a b\"]\n"),
        "agents.templates.BACKEND.depends_on[0]",
    );
}

#[test]
fn template_from_file_and_env_merge_into_one_type() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[agents.templates.backend]\ncommand = [\"agent\", \"--serve\"]\n")
        .unwrap();
    let overrides = Overrides {
        config_file: Some(file.path().to_path_buf()),
        ..Overrides::default()
    };
    let settings = Settings::load_from(
        &overrides,
        env(&[(
            "SESSION_MANAGER_AGENTS__TEMPLATES__BACKEND__RESTART",
            "transient",
        )]),
    )
    .unwrap();
    let template = &settings.agents.templates["BACKEND"];
    assert_eq!(
        template.command.as_deref(),
        Some(&["agent".to_owned(), "--serve".to_owned()][..])
    );
    assert_eq!(template.restart, Some(Restart::Transient));
    assert_eq!(template.backoff, None);
}

#[test]
fn partial_backoff_takes_the_defaults() {
    let settings = load_file("[agents.templates.DEVOPS.backoff]\ninitial_ms = 250\n").unwrap();
    let backoff = settings.agents.templates["DEVOPS"].backoff.clone().unwrap();
    assert_eq!(
        backoff,
        BackoffSettings {
            initial_ms: 250,
            ..BackoffSettings::default()
        }
    );
}

#[test]
fn same_type_twice_in_one_file_is_refused() {
    invalid_key(
        load_file("[agents.templates.api]\n[agents.templates.API]\n"),
        "agents.templates.API",
    );
}

#[test]
fn env_overrides_file_and_flags_override_env() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[server]\nport = 1000\n[logs]\nlevel = \"warn\"\n")
        .unwrap();
    let overrides = Overrides {
        config_file: Some(file.path().to_path_buf()),
        log_level: Some("DEBUG".to_owned()),
        ..Overrides::default()
    };
    let settings = Settings::load_from(
        &overrides,
        env(&[
            ("SESSION_MANAGER_SERVER__PORT", "2000"),
            ("SESSION_MANAGER_LOGS__LEVEL", "error"),
        ]),
    )
    .unwrap();
    assert_eq!(settings.server.port, 2000);
    assert_eq!(settings.logs.level, "DEBUG");
    assert_eq!(settings.logs.filter_directives().unwrap(), "debug");
}

#[test]
fn what_the_server_hands_its_agents_is_not_a_setting() {
    let settings = load_env(&[
        ("SESSION_MANAGER_URL", "http://127.0.0.1:8082"),
        ("SESSION_MANAGER_INSTANCE", "4242-0123abcd"),
    ])
    .unwrap();
    assert_eq!(settings.server.port, 8082);
}

#[test]
fn unknown_env_variable_is_refused() {
    invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER_PORT", "1")]),
        "server_port",
    );
    assert!(matches!(
        load_env(&[("SESSION_MANAGER_SERVER____PORT", "1")]),
        Err(ConfigError::Environment { .. })
    ));
}

#[test]
fn numeric_token_from_env_is_a_token() {
    let settings = load_env(&[("SESSION_MANAGER_SERVER__TOKEN", "12345")]).unwrap();
    assert_eq!(settings.server.token.expose(), "12345");
    assert_eq!(format!("{:?}", settings.server.token), "Token(<redacted>)");
}

#[test]
fn non_loopback_bind_needs_a_token() {
    invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER__BIND", "0.0.0.0")]),
        "server.token",
    );
    let settings = load_env(&[
        ("SESSION_MANAGER_SERVER__BIND", "0.0.0.0"),
        ("SESSION_MANAGER_SERVER__TOKEN", "s3cret"),
    ])
    .unwrap();
    assert_eq!(settings.server.bind, IpAddr::from([0, 0, 0, 0]));
}

#[test]
fn bind_must_be_an_ip_address() {
    invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER__BIND", "localhost")]),
        "server.bind",
    );
}

#[test]
fn bad_origin_is_named_with_its_index() {
    invalid_key(
        load_file("[server]\nallowed_origins = [\"http://ok:1\", \"ftp://x\"]\n"),
        "server.allowed_origins[1]",
    );
}

#[test]
fn connection_limits_are_checked() {
    for key in [
        "HEADER_READ_TIMEOUT_MS",
        "BODY_READ_TIMEOUT_MS",
        "IDLE_TIMEOUT_MS",
        "MAX_CONNECTIONS",
    ] {
        let name = format!("SESSION_MANAGER_SERVER__{key}");
        invalid_key(
            load_env(&[(name.as_str(), "0")]),
            &format!("server.{}", key.to_ascii_lowercase()),
        );
    }
    // A per-address cap above the total one could never be reached.
    invalid_key(
        load_env(&[
            ("SESSION_MANAGER_SERVER__MAX_CONNECTIONS", "10"),
            ("SESSION_MANAGER_SERVER__MAX_CONNECTIONS_PER_ADDRESS", "11"),
        ]),
        "server.max_connections_per_address",
    );
}

#[test]
fn zero_sizes_are_refused() {
    invalid_key(
        load_env(&[("SESSION_MANAGER_SERVER__MAX_BODY_BYTES", "0")]),
        "server.max_body_bytes",
    );
    invalid_key(
        load_env(&[("SESSION_MANAGER_LOGS__MAX_FILE_BYTES", "0")]),
        "logs.max_file_bytes",
    );
}

#[test]
fn log_levels_are_checked_strictly() {
    assert_eq!(log_directives("info").unwrap(), "info");
    assert_eq!(
        log_directives("WARN, session_manager=Debug").unwrap(),
        "warn,session_manager=debug"
    );
    assert!(log_directives("verbose").is_err());
    assert!(log_directives("").is_err());
    assert!(log_directives("info,").is_err());
    assert!(log_directives("=debug").is_err());
    invalid_key(
        Settings::load_from(
            &Overrides {
                log_level: Some("loud".to_owned()),
                ..Overrides::default()
            },
            env(&[]),
        ),
        "logs.level",
    );
}

#[test]
fn missing_config_file_names_the_file() {
    let overrides = Overrides {
        config_file: Some(PathBuf::from("/nonexistent/session-manager.toml")),
        ..Overrides::default()
    };
    let error = Settings::load_from(&overrides, env(&[])).unwrap_err();
    assert!(matches!(error, ConfigError::ReadFile { .. }));
    assert!(error
        .to_string()
        .contains("/nonexistent/session-manager.toml"));
}

#[test]
fn toml_syntax_error_names_the_file() {
    let error = load_file("[server\n").unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error:?}");
    assert!(error.to_string().contains("config file"));
}

#[test]
fn home_is_expanded_only_at_the_start() {
    let home = Path::new("/home/me");
    assert_eq!(
        expand_home(Path::new("~/.claude"), Some(home)),
        Some(PathBuf::from("/home/me/.claude"))
    );
    assert_eq!(
        expand_home(Path::new("~"), Some(home)),
        Some(PathBuf::from("/home/me"))
    );
    assert_eq!(
        expand_home(Path::new("/srv/~/x"), Some(home)),
        Some(PathBuf::from("/srv/~/x"))
    );
    assert_eq!(expand_home(Path::new("~/x"), None), None);
    invalid_key(
        load_env(&[("SESSION_MANAGER_STORAGE__DATA_DIR", "~root/x")]),
        "storage.data_dir",
    );
}

#[test]
fn file_layout_follows_the_data_dir() {
    let settings = Settings::load_from(
        &Overrides {
            data_dir: Some(PathBuf::from("/srv/sm")),
            ..Overrides::default()
        },
        env(&[]),
    )
    .unwrap();
    assert_eq!(settings.data_dir(), PathBuf::from("/srv/sm"));
    assert_eq!(
        settings.db_path(),
        PathBuf::from("/srv/sm/sessions/session_manager.db")
    );
    assert_eq!(settings.log_dir(), PathBuf::from("/srv/sm/logs"));
    assert_eq!(
        settings.metrics_dir(),
        PathBuf::from("/srv/sm/session_metrics")
    );
}

#[test]
fn dotted_keys_show_list_indices() {
    let path = ["server", "allowed_origins", "2"].map(String::from);
    assert_eq!(dotted(&path), "server.allowed_origins[2]");
}

#[test]
fn claude_settings_default_to_the_cli_and_no_allowed_arguments() {
    let settings = load_env(&[]).unwrap();
    assert_eq!(settings.agents.claude.command, vec!["claude".to_owned()]);
    assert!(settings.agents.claude.allowed_args.is_empty());
    let settings = load_file(
        "[agents.claude]\ncommand = [\"npx\", \"claude\"]\nallowed_args = [\"--verbose\"]\n",
    )
    .unwrap();
    assert_eq!(settings.agents.claude.command, ["npx", "claude"]);
    assert_eq!(settings.agents.claude.allowed_args, ["--verbose"]);
}

#[test]
fn claude_settings_follow_the_command_rules_and_are_named() {
    invalid_key(
        load_file("[agents.claude]\ncommand = []\n"),
        "agents.claude.command",
    );
    invalid_key(
        load_file("[agents.claude]\ncommand = [\"\"]\n"),
        "agents.claude.command[0]",
    );
    invalid_key(
        load_file("[agents.claude]\nallowed_args = [\"ok\", \"a\\u0000b\"]\n"),
        "agents.claude.allowed_args[1]",
    );
    invalid_key(
        load_file("[agents.claude]\nprogram = [\"claude\"]\n"),
        "agents.claude.program",
    );
}
