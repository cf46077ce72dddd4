//! Every value checked once, at start-up, so the rest of the server can trust the settings: a
//! refused value is named by its full dotted key (`agents.templates.API.backoff.max_ms`),
//! whose origin `load.rs` then looks up.

use std::fmt;
use std::path::Component;

use tracing::level_filters::LevelFilter;

use super::load::expand_home;
use super::origin::Origin;
use super::{AgentTemplate, BackoffSettings, Settings};
use crate::rules::{
    self, validate_arguments, validate_command, validate_name, AgentType, FieldError,
};

/// `events.ws_max_queue_bytes` bounds: a queue must hold a few ordinary events, and the byte
/// count is handed to a semaphore, whose permits are counted in `u32`.
const MIN_WS_QUEUE_BYTES: usize = 1024;
const MAX_WS_QUEUE_BYTES: usize = 1 << 30;

/// The agent types a `[agents.templates.<TYPE>]` table may name, in their canonical spelling:
/// the catalog's, so the two can never disagree.
pub const AGENT_TYPES: [&str; 12] = {
    let mut words = [""; 12];
    let mut i = 0;
    while i < words.len() {
        words[i] = AgentType::ALL[i].as_str();
        i += 1;
    }
    words
};

impl Settings {
    /// Checks every value; the first refused one is named by its dotted key.
    pub(super) fn validate(&self) -> Result<(), Problem> {
        self.validate_server()?;
        self.validate_storage()?;
        let sessions = &self.sessions;
        at_least(sessions.max_sessions, 1, "sessions.max_sessions")?;
        at_least(
            sessions.terminated_retention_days,
            1,
            "sessions.terminated_retention_days",
        )?;
        self.validate_agents()?;
        self.validate_logs()?;
        self.validate_monitor()?;
        in_range(
            self.claude.waiting_alert_seconds,
            1,
            604_800,
            "claude.waiting_alert_seconds",
        )?;
        in_range(
            self.events.retention_days,
            1,
            36_500,
            "events.retention_days",
        )?;
        in_range(
            self.events.websocket_queue,
            1,
            1_000_000,
            "events.websocket_queue",
        )?;
        in_range(
            self.events.backlog_max_bytes,
            64 * 1024,
            16 * 1024 * 1024 * 1024,
            "events.backlog_max_bytes",
        )?;
        in_range(
            self.events.ws_max_queue_bytes,
            MIN_WS_QUEUE_BYTES,
            MAX_WS_QUEUE_BYTES,
            "events.ws_max_queue_bytes",
        )?;
        for (name, list) in [
            ("restricted", &self.paths.restricted),
            ("allowed_roots", &self.paths.allowed_roots),
        ] {
            for (index, path) in list.iter().enumerate() {
                ensure(!path.as_os_str().is_empty(), || Problem {
                    key: format!("paths.{name}[{index}]"),
                    problem: "must not be empty".to_owned(),
                })?;
                // A relative root would never match the absolute paths the policy compares,
                // so a typo would silently restrict nothing (or allow nothing).
                ensure(path.is_absolute() || path.starts_with("~"), || Problem {
                    key: format!("paths.{name}[{index}]"),
                    problem: "must be absolute or start with `~`".to_owned(),
                })?;
            }
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), Problem> {
        let server = &self.server;
        ensure(
            server.bind.is_loopback() || !server.token.is_empty(),
            || Problem {
                key: "server.token".to_owned(),
                problem: format!(
                    "must be set because `server.bind` ({}) is not a loopback address",
                    server.bind
                ),
            },
        )?;
        for (index, origin) in server.allowed_origins.iter().enumerate() {
            ensure(Origin::parse(origin).is_some(), || Problem {
                key: format!("server.allowed_origins[{index}]"),
                problem: format!("`{origin}` is not an origin like http://host:port"),
            })?;
        }
        at_least(server.max_body_bytes, 1, "server.max_body_bytes")?;
        at_least(
            server.header_read_timeout_ms,
            1,
            "server.header_read_timeout_ms",
        )?;
        at_least(
            server.body_read_timeout_ms,
            1,
            "server.body_read_timeout_ms",
        )?;
        at_least(server.idle_timeout_ms, 1, "server.idle_timeout_ms")?;
        at_least(server.max_connections, 1, "server.max_connections")?;
        in_range(
            server.max_connections_per_address,
            1,
            server.max_connections,
            "server.max_connections_per_address",
        )?;
        ensure(
            server.rate_limit_per_second == 0 || server.rate_limit_burst > 0,
            || Problem {
                key: "server.rate_limit_burst".to_owned(),
                problem: "must be at least 1 while `server.rate_limit_per_second` is not 0"
                    .to_owned(),
            },
        )
    }

    fn validate_storage(&self) -> Result<(), Problem> {
        let data_dir = &self.storage.data_dir;
        let problem = |problem: &str| Problem {
            key: "storage.data_dir".to_owned(),
            problem: problem.to_owned(),
        };
        ensure(!data_dir.as_os_str().is_empty(), || {
            problem("must not be empty")
        })?;
        if let Some(Component::Normal(first)) = data_dir.components().next() {
            let first = first.to_string_lossy();
            ensure(!first.starts_with('~') || first == "~", || {
                problem("`~user` is not supported; use `~` or an absolute path")
            })?;
        }
        ensure(
            expand_home(data_dir, dirs::home_dir().as_deref()).is_some(),
            || problem("starts with `~` but the home directory is unknown"),
        )
    }

    fn validate_agents(&self) -> Result<(), Problem> {
        let agents = &self.agents;
        in_range(agents.stop_grace_ms, 0, 3_600_000, "agents.stop_grace_ms")?;
        in_range(
            agents.restart_window_seconds,
            1,
            86_400,
            "agents.restart_window_seconds",
        )?;
        in_range(
            agents.terminal.scrollback_bytes,
            1024,
            1 << 30,
            "agents.terminal.scrollback_bytes",
        )?;
        for (agent_type, template) in &agents.templates {
            let key = format!("agents.templates.{agent_type}");
            ensure(AGENT_TYPES.contains(&agent_type.as_str()), || Problem {
                key: key.clone(),
                problem: format!(
                    "unknown agent type, expected one of {}",
                    AGENT_TYPES.join(", ")
                ),
            })?;
            validate_template(template, &key)?;
        }
        let claude = &agents.claude;
        let problem = |error: FieldError| Problem {
            key: error.field,
            problem: error.message,
        };
        validate_command(&claude.command)
            .map_err(|e| problem(e.within("agents.claude.command")))?;
        validate_arguments(&claude.allowed_args)
            .map_err(|e| problem(e.within("agents.claude.allowed_args")))
    }

    fn validate_logs(&self) -> Result<(), Problem> {
        let logs = &self.logs;
        log_directives(&logs.level).map_err(|problem| Problem {
            key: "logs.level".to_owned(),
            problem,
        })?;
        at_least(logs.max_file_bytes, 1, "logs.max_file_bytes")?;
        ensure(usize::try_from(logs.max_file_bytes).is_ok(), || Problem {
            key: "logs.max_file_bytes".to_owned(),
            problem: "is too large for this platform".to_owned(),
        })?;
        at_least(logs.retention_days, 1, "logs.retention_days")
    }

    fn validate_monitor(&self) -> Result<(), Problem> {
        let monitor = &self.monitor;
        in_range(
            monitor.interval_seconds,
            1,
            3_600,
            "monitor.interval_seconds",
        )?;
        at_least(monitor.retention_hours, 1, "monitor.retention_hours")?;
        in_range(
            monitor.disk_interval_seconds,
            1,
            3_600,
            "monitor.disk_interval_seconds",
        )?;
        in_range(
            monitor.unchanged_store_seconds,
            1,
            86_400,
            "monitor.unchanged_store_seconds",
        )?;
        let thresholds = &monitor.thresholds;
        for (name, value) in [
            ("memory_percent", thresholds.memory_percent),
            ("cpu_percent", thresholds.cpu_percent),
            ("disk_percent", thresholds.disk_percent),
        ] {
            in_range(value, 0.0, 100.0, &format!("monitor.thresholds.{name}"))?;
        }
        ensure(thresholds.error_rate_per_hour.is_finite(), || Problem {
            key: "monitor.thresholds.error_rate_per_hour".to_owned(),
            problem: format!(
                "must be a finite number, got {}",
                thresholds.error_rate_per_hour
            ),
        })?;
        at_least(
            thresholds.error_rate_per_hour,
            0.0,
            "monitor.thresholds.error_rate_per_hour",
        )?;
        at_least(
            thresholds.response_time_ms,
            1,
            "monitor.thresholds.response_time_ms",
        )
    }
}

/// The same rules as an agent's own configuration, so a template can hold nothing an agent
/// could not.
fn validate_template(template: &AgentTemplate, key: &str) -> Result<(), Problem> {
    let problem = |error: FieldError| Problem {
        key: error.field,
        problem: error.message,
    };
    if let Some(command) = &template.command {
        validate_command(command).map_err(|e| problem(e.within(&format!("{key}.command"))))?;
    }
    for (index, name) in template.depends_on.iter().flatten().enumerate() {
        validate_name(name, &format!("{key}.depends_on[{index}]")).map_err(problem)?;
    }
    if let Some(backoff) = &template.backoff {
        validate_backoff(backoff).map_err(|e| problem(e.within(&format!("{key}.backoff"))))?;
    }
    Ok(())
}

/// A validation failure before its origin is looked up.
#[derive(Debug)]
pub(super) struct Problem {
    pub(super) key: String,
    pub(super) problem: String,
}

fn ensure(ok: bool, problem: impl FnOnce() -> Problem) -> Result<(), Problem> {
    if ok {
        Ok(())
    } else {
        Err(problem())
    }
}

fn in_range<T>(value: T, min: T, max: T, key: &str) -> Result<(), Problem>
where
    T: PartialOrd + fmt::Display,
{
    // Written so that NaN fails.
    ensure(value >= min && value <= max, || Problem {
        key: key.to_owned(),
        problem: format!("must be between {min} and {max}, got {value}"),
    })
}

fn at_least<T>(value: T, min: T, key: &str) -> Result<(), Problem>
where
    T: PartialOrd + fmt::Display,
{
    ensure(value >= min, || Problem {
        key: key.to_owned(),
        problem: format!("must be at least {min}, got {value}"),
    })
}

/// Checks backoff settings; errors are relative to the backoff table (`max_ms`). An agent's
/// own `backoff` is checked with it too, so it lives with the settings type it checks.
pub(crate) fn validate_backoff(backoff: &BackoffSettings) -> Result<(), FieldError> {
    rules::in_range(backoff.initial_ms, 0, 600_000, "initial_ms")?;
    rules::in_range(backoff.max_ms, backoff.initial_ms, 3_600_000, "max_ms")?;
    rules::in_range(backoff.multiplier, 1.0, 10.0, "multiplier")?;
    rules::in_range(
        backoff.reset_after_seconds,
        1,
        86_400,
        "reset_after_seconds",
    )
}

/// Turns a level or `target=level` list into lower-case `tracing` directives. Stricter than
/// `EnvFilter`, which would take a misspelt level for a target name and log nothing.
pub(super) fn log_directives(spec: &str) -> Result<String, String> {
    let mut directives = Vec::new();
    for directive in spec.split(',').map(str::trim) {
        let (target, level) = match directive.rsplit_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, directive),
        };
        let level = level
            .parse::<LevelFilter>()
            .ok()
            .filter(|_| !level.is_empty())
            .ok_or_else(|| {
                format!("`{level}` is not a level (trace, debug, info, warn, error, off)")
            })?;
        match target {
            None => directives.push(level.to_string()),
            Some(target)
                if !target.is_empty()
                    && target
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-')) =>
            {
                directives.push(format!("{target}={level}"));
            }
            Some(target) => return Err(format!("`{target}` is not a module path")),
        }
    }
    Ok(directives.join(","))
}
