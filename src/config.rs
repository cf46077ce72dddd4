//! Typed settings, loaded once at start-up and validated once.
//!
//! Sources, each overriding the one before: the embedded `config/default.toml`, the optional
//! `--config FILE`, the `SESSION_MANAGER_*` environment variables (`__` separates sections,
//! `SESSION_MANAGER_URL` and `SESSION_MANAGER_INSTANCE` are left alone because agents receive
//! them) and the command-line flags.
//! Every source is turned into a [`figment`] layer that remembers where it came from, so an
//! unknown key or a bad value is reported with its full dotted key and its origin, and the
//! server never starts on a configuration it only half understood.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize};
use tracing::level_filters::LevelFilter;

use crate::agent::{validate_backoff, validate_command, validate_name, AgentType};
use crate::supervision::Restart;

/// The embedded defaults; the file is the documentation of every key.
const DEFAULTS: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables read as settings.
pub const ENV_PREFIX: &str = "SESSION_MANAGER_";

/// The prefixed variables that are not settings: the server hands them to its agents (how to
/// reach it, and the mark of its processes), and an agent may run `session-manager hook`.
const ENV_NOT_SETTINGS: [&str; 2] = ["SESSION_MANAGER_URL", "SESSION_MANAGER_INSTANCE"];

/// Settings whose value is text: an environment variable gives them its value verbatim.
const TEXT_KEYS: [&str; 4] = [
    "server.token",
    "server.bind",
    "storage.data_dir",
    "logs.level",
];

/// Separator between nested keys in an environment variable name.
const ENV_SEPARATOR: &str = "__";

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

/// Why the configuration was refused; every variant names the file, variable or key at fault
/// so the operator can fix it without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file is missing or unreadable: a typo in the path must not silently fall
    /// back to the defaults.
    #[error("cannot read config file {}", path.display())]
    ReadFile {
        /// The path as given on the command line.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A TOML source is not valid TOML.
    #[error("cannot parse {origin}")]
    Syntax {
        /// Which source, e.g. `config file /etc/session-manager.toml`.
        origin: String,
        /// The parser's account of the problem, with line and column.
        #[source]
        source: <Toml as Format>::Error,
    },
    /// A `SESSION_MANAGER_*` variable cannot be read as a setting.
    #[error("environment variable {name} {problem}")]
    Environment {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A key is unknown, has the wrong type, or its value is out of range.
    #[error("invalid setting `{key}`{}: {problem}", from_origin(.origin))]
    Invalid {
        /// Full dotted key, e.g. `monitor.thresholds.cpu_percent`.
        key: String,
        /// The source that set the value, when known.
        origin: Option<String>,
        /// What is wrong and what is expected instead.
        problem: String,
    },
}

fn from_origin(origin: &Option<String>) -> String {
    origin
        .as_deref()
        .map(|origin| format!(" (from {origin})"))
        .unwrap_or_default()
}

/// Values given on the command line; they override every other source. Kept apart from the
/// clap types so configuration does not depend on how the command line is parsed.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`: a TOML file layered over the defaults.
    pub config_file: Option<PathBuf>,
    /// `--bind ADDR`: `server.bind`.
    pub bind: Option<String>,
    /// `--port N`: `server.port`.
    pub port: Option<u16>,
    /// `--data-dir DIR`: `storage.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--log-level LEVEL`: `logs.level`.
    pub log_level: Option<String>,
}

/// Every setting of the server, one section per concern, as in `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where and how the HTTP front end listens.
    pub server: ServerSettings,
    /// Where state lives on disk.
    pub storage: StorageSettings,
    /// Limits on sessions.
    pub sessions: SessionSettings,
    /// How agents are started, stopped and restarted.
    pub agents: AgentSettings,
    /// What is logged and how log files are rotated.
    pub logs: LogSettings,
    /// Sampling and alerting.
    pub monitor: MonitorSettings,
    /// Extra rules for the working-directory path policy.
    pub paths: PathSettings,
    /// The event log and its WebSocket listeners.
    pub events: EventSettings,
}

/// `[server]`: the network surface, which is also the security boundary.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on; anything but loopback requires a token.
    #[serde(deserialize_with = "ip_addr")]
    pub bind: IpAddr,
    /// Port to listen on; 0 lets the OS choose (tests rely on it).
    pub port: u16,
    /// Bearer token; empty means no authentication, which only loopback allows.
    pub token: Token,
    /// Origins trusted besides loopback (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: u64,
    /// Sustained requests per second per client; 0 turns rate limiting off.
    pub rate_limit_per_second: u32,
    /// Burst allowance above the sustained rate.
    pub rate_limit_burst: u32,
    /// Milliseconds a client has to send a whole request head once its first byte arrived;
    /// a slow sender (slowloris) is disconnected after it.
    pub header_read_timeout_ms: u64,
    /// Milliseconds a client has to send a whole request body once a route starts reading
    /// it; a body shorter than its `Content-Length` gets 408 after it.
    pub body_read_timeout_ms: u64,
    /// Milliseconds a kept-alive HTTP connection may stay without a request (nothing read,
    /// nothing written) before it is closed. WebSocket connections are exempt.
    pub idle_timeout_ms: u64,
    /// Most connections open at once (WebSockets included); one beyond gets 503 and is closed.
    pub max_connections: usize,
    /// Most connections open at once from one client (IPv4 address or IPv6 /64).
    pub max_connections_per_address: usize,
}

/// A bearer token: kept out of `Debug` output so settings can be logged safely.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The secret itself, for the one place that compares it with a request header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether authentication is off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            f.write_str("Token(\"\")")
        } else {
            f.write_str("Token(<redacted>)")
        }
    }
}

impl<'de> Deserialize<'de> for Token {
    /// Accepts integers too: an environment variable holding only digits is read as a number,
    /// and a numeric token is still a token.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a string")]
        enum Raw {
            Text(String),
            Unsigned(u64),
            Signed(i64),
        }
        Ok(Token(match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text,
            Raw::Unsigned(number) => number.to_string(),
            Raw::Signed(number) => number.to_string(),
        }))
    }
}

fn ip_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<IpAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        de::Error::invalid_value(
            Unexpected::Str(&text),
            &"an IP address such as 127.0.0.1 or ::1",
        )
    })
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    /// Root of the database, logs and metrics, as written (`~` not yet expanded); use
    /// [`Settings::data_dir`] to get the real path.
    pub data_dir: PathBuf,
}

/// `[sessions]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Most non-terminated sessions at once.
    pub max_sessions: u32,
    /// Days a terminated session is kept before it is purged.
    pub terminated_retention_days: u32,
}

/// `[agents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// Whether API clients may name arbitrary commands.
    pub allow_custom_commands: bool,
    /// Grace between SIGTERM and SIGKILL, in milliseconds.
    pub stop_grace_ms: u64,
    /// Window over which restarts count against `retry_attempts`, in seconds.
    pub restart_window_seconds: u64,
    /// Whether each agent runs in a cgroup v2 of its own.
    pub cgroups: CgroupMode,
    /// Per-type templates, keyed by the canonical (upper-case) agent type.
    #[serde(default)]
    pub templates: BTreeMap<String, AgentTemplate>,
}

/// `agents.cgroups`: whether each agent runs in a cgroup v2 of its own, stopped as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Where the server may create cgroups under its own (root, or a delegated subtree);
    /// elsewhere agents run without, caught by the subreaper and the watchdog.
    Auto,
    /// Never: the subreaper and the watchdog alone.
    Off,
}

/// `[agents.templates.<TYPE>]`: what an agent of that type runs unless its own configuration
/// says otherwise; every field is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTemplate {
    /// Program and arguments.
    pub command: Option<Vec<String>>,
    /// Agent names this type waits for; replaces the default dependencies.
    pub depends_on: Option<Vec<String>>,
    /// When a stopped agent is restarted.
    #[serde(default, deserialize_with = "restart_word")]
    pub restart: Option<Restart>,
    /// How long to wait between restarts.
    pub backoff: Option<BackoffSettings>,
}

/// Reads a restart type with the supervision core's own parser, so the two never disagree on
/// the accepted words; `null` (JSON) counts as absent.
pub(crate) fn restart_word<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Restart>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|word| word.parse().map_err(de::Error::custom))
        .transpose()
}

/// Exponential backoff between restarts; missing fields take the documented defaults. Also
/// the `backoff` of an agent's configuration, hence `Serialize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BackoffSettings {
    /// Delay before the second restart (the first is immediate), in milliseconds.
    pub initial_ms: u64,
    /// Upper bound of the delay, in milliseconds.
    pub max_ms: u64,
    /// Factor applied to the delay after each restart.
    pub multiplier: f64,
    /// Seconds of healthy running after which the delay starts over.
    pub reset_after_seconds: u64,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        BackoffSettings {
            initial_ms: 100,
            max_ms: 30_000,
            multiplier: 2.0,
            reset_after_seconds: 60,
        }
    }
}

/// `[logs]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// A level or a comma-separated `target=level` list.
    pub level: String,
    /// Size at which the log file is rotated, in bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept besides the current one.
    pub keep_files: usize,
    /// Days log files are kept.
    pub retention_days: u32,
}

impl LogSettings {
    /// The level as `tracing` filter directives, lower-cased, so every spelling the
    /// configuration accepts (`DEBUG`, `info,warp=warn`) means the same to the subscriber.
    pub fn filter_directives(&self) -> Result<String, ConfigError> {
        log_directives(&self.level).map_err(|problem| ConfigError::Invalid {
            key: "logs.level".to_owned(),
            origin: None,
            problem,
        })
    }
}

/// `[monitor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// Seconds between samples.
    pub interval_seconds: u64,
    /// Hours of samples kept.
    pub retention_hours: u64,
    /// Where alerts start.
    pub thresholds: Thresholds,
}

/// `[monitor.thresholds]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Memory use, percent.
    pub memory_percent: f64,
    /// CPU use, percent.
    pub cpu_percent: f64,
    /// Disk use, percent.
    pub disk_percent: f64,
    /// Errors per hour.
    pub error_rate_per_hour: f64,
    /// Response time, milliseconds.
    pub response_time_ms: u64,
}

/// `[paths]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathSettings {
    /// Roots refused on top of the built-in system directories.
    pub restricted: Vec<PathBuf>,
    /// When not empty, the only roots allowed.
    pub allowed_roots: Vec<PathBuf>,
}

/// `[events]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Days a numbered event stays in the log (and can be replayed with `since`).
    pub retention_days: u32,
    /// Messages a WebSocket client may have waiting to be written before it counts as too
    /// slow and is disconnected.
    pub websocket_queue: usize,
    /// Bytes of numbered events (their stored JSON) kept in memory while storage refuses
    /// them, to be written once it recovers. Past it, further events are given up and an
    /// `events_lost` marker says which seqs: memory stays bounded however long the outage.
    pub backlog_max_bytes: u64,
    /// Bytes of messages a WebSocket client may have waiting to be written (the one being
    /// written included) before it counts as too slow: what bounds a client's memory when
    /// events are large, which a count of messages alone does not.
    pub ws_max_queue_bytes: usize,
}

impl Settings {
    /// Loads the settings from every source (see the module documentation) and validates them,
    /// so the rest of the server can trust every value.
    pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
        Self::load_from(overrides, std::env::vars_os())
    }

    fn load_from<I>(overrides: &Overrides, env: I) -> Result<Settings, ConfigError>
    where
        I: IntoIterator<Item = (OsString, OsString)>,
    {
        let mut figment = Figment::new().merge(Layer::toml("built-in defaults", DEFAULTS)?);
        if let Some(path) = &overrides.config_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            figment = figment.merge(Layer::toml(
                &format!("config file {}", path.display()),
                &text,
            )?);
        }
        for layer in env_layers(env)? {
            figment = figment.merge(layer);
        }
        for layer in flag_layers(overrides)? {
            figment = figment.merge(layer);
        }
        let settings: Settings = figment.extract().map_err(invalid_setting)?;
        settings
            .validate()
            .map_err(|Problem { key, problem }| ConfigError::Invalid {
                origin: figment
                    .find_metadata(lookup_key(&key))
                    .map(|metadata| metadata.name.to_string()),
                key,
                problem,
            })?;
        Ok(settings)
    }

    /// The data directory with a leading `~` replaced by the home directory.
    pub fn data_dir(&self) -> PathBuf {
        expand_home(&self.storage.data_dir, dirs::home_dir().as_deref())
            .unwrap_or_else(|| self.storage.data_dir.clone())
    }

    /// The SQLite database, where the original service kept it.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir().join("sessions").join("session_manager.db")
    }

    /// The directory of the server's (and agents') log files.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir().join("logs")
    }

    /// The directory of archived metrics.
    pub fn metrics_dir(&self) -> PathBuf {
        self.data_dir().join("session_metrics")
    }

    fn validate(&self) -> Result<(), Problem> {
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
            ensure(is_origin(origin), || Problem {
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
        Ok(())
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
    let problem = |error: crate::agent::FieldError| Problem {
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
struct Problem {
    key: String,
    problem: String,
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

/// The key figment knows a value under: list indices are not keys of their own.
fn lookup_key(key: &str) -> &str {
    key.split('[').next().unwrap_or(key)
}

/// `http(s)://host[:port]`, as browsers send it in `Origin`: a host name, an IPv4 address
/// or a bracketed IPv6 address, and a port that fits in 16 bits.
fn is_origin(origin: &str) -> bool {
    let Some(authority) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let (host_ok, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((address, rest)) = v6.split_once(']') else {
            return false;
        };
        let port = match rest {
            "" => None,
            rest => match rest.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        (address.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'));
        (host_ok, port)
    };
    host_ok
        && port.is_none_or(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        })
}

/// Turns a level or `target=level` list into lower-case `tracing` directives. Stricter than
/// `EnvFilter`, which would take a misspelt level for a target name and log nothing.
fn log_directives(spec: &str) -> Result<String, String> {
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

/// `~` and `~/…` are relative to `home`; `None` when that is needed but unknown.
fn expand_home(path: &Path, home: Option<&Path>) -> Option<PathBuf> {
    match path.strip_prefix("~") {
        Ok(rest) if rest.as_os_str().is_empty() => home.map(Path::to_path_buf),
        Ok(rest) => home.map(|home| home.join(rest)),
        Err(_) => Some(path.to_path_buf()),
    }
}

/// One source of settings, already parsed, named for error messages.
struct Layer {
    origin: String,
    dict: Dict,
}

impl Layer {
    fn new(origin: String, mut dict: Dict) -> Result<Layer, ConfigError> {
        canonicalize_templates(&mut dict, &origin)?;
        Ok(Layer { origin, dict })
    }

    fn toml(origin: &str, text: &str) -> Result<Layer, ConfigError> {
        let dict = Toml::from_str::<Dict>(text).map_err(|source| ConfigError::Syntax {
            origin: origin.to_owned(),
            source,
        })?;
        Layer::new(origin.to_owned(), dict)
    }

    fn value(origin: String, key: &str, value: Value) -> Result<Layer, ConfigError> {
        match figment::util::nest(key, value) {
            Value::Dict(_, dict) => Layer::new(origin, dict),
            _ => Err(ConfigError::Invalid {
                key: key.to_owned(),
                origin: Some(origin),
                problem: "does not name a setting".to_owned(),
            }),
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        Ok(Map::from([(Profile::Default, self.dict.clone())]))
    }
}

/// Agent types are case-insensitive; one spelling per type lets a file's `[agents.templates.
/// backend]` and an environment variable's `BACKEND` land in the same table.
fn canonicalize_templates(dict: &mut Dict, origin: &str) -> Result<(), ConfigError> {
    let Some(Value::Dict(_, agents)) = dict.get_mut("agents") else {
        return Ok(());
    };
    let Some(Value::Dict(_, templates)) = agents.get_mut("templates") else {
        return Ok(());
    };
    for (name, template) in std::mem::take(templates) {
        let canonical = name.to_ascii_uppercase();
        if templates.insert(canonical.clone(), template).is_some() {
            return Err(ConfigError::Invalid {
                key: format!("agents.templates.{canonical}"),
                origin: Some(origin.to_owned()),
                problem: "is given more than once (agent types ignore case)".to_owned(),
            });
        }
    }
    Ok(())
}

/// One layer per `SESSION_MANAGER_*` variable, in name order, so an error names the variable.
fn env_layers<I>(env: I) -> Result<Vec<Layer>, ConfigError>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut vars: Vec<(String, OsString)> = env
        .into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
        .filter(|(name, _)| {
            name.starts_with(ENV_PREFIX) && !ENV_NOT_SETTINGS.contains(&name.as_str())
        })
        .collect();
    vars.sort();
    vars.into_iter()
        .map(|(name, value)| {
            let problem = |problem: &str| ConfigError::Environment {
                name: name.clone(),
                problem: problem.to_owned(),
            };
            let segments: Vec<String> = name[ENV_PREFIX.len()..]
                .split(ENV_SEPARATOR)
                .map(str::to_ascii_lowercase)
                .collect();
            if segments.iter().any(|s| s.is_empty() || s.contains('.')) {
                return Err(problem(
                    "does not name a setting (expected SESSION_MANAGER_SECTION__KEY)",
                ));
            }
            let value = value
                .into_string()
                .map_err(|_| problem("is not valid UTF-8"))?;
            let key = segments.join(".");
            // Text settings are taken word for word: parsed, a token `0042` would become the
            // number 42 and a data_dir `2024` would be refused.
            let value = if TEXT_KEYS.contains(&key.as_str()) {
                Value::from(value)
            } else {
                let Ok(parsed) = value.parse::<Value>();
                parsed
            };
            Layer::value(format!("environment variable {name}"), &key, value)
        })
        .collect()
}

fn flag_layers(overrides: &Overrides) -> Result<Vec<Layer>, ConfigError> {
    let mut layers = Vec::new();
    let flag = |name: &str| format!("command-line flag --{name}");
    if let Some(bind) = &overrides.bind {
        layers.push(Layer::value(
            flag("bind"),
            "server.bind",
            Value::from(bind.as_str()),
        )?);
    }
    if let Some(port) = overrides.port {
        layers.push(Layer::value(
            flag("port"),
            "server.port",
            Value::from(port),
        )?);
    }
    if let Some(data_dir) = &overrides.data_dir {
        let data_dir = data_dir.to_str().ok_or_else(|| ConfigError::Invalid {
            key: "storage.data_dir".to_owned(),
            origin: Some(flag("data-dir")),
            problem: "is not valid UTF-8".to_owned(),
        })?;
        layers.push(Layer::value(
            flag("data-dir"),
            "storage.data_dir",
            Value::from(data_dir),
        )?);
    }
    if let Some(level) = &overrides.log_level {
        layers.push(Layer::value(
            flag("log-level"),
            "logs.level",
            Value::from(level.as_str()),
        )?);
    }
    Ok(layers)
}

/// Names the key (full dotted path) and the source of a value serde refused.
fn invalid_setting(error: figment::Error) -> ConfigError {
    let mut path = error.path.clone();
    if let Kind::MissingField(field) = &error.kind {
        path.push(field.to_string());
    }
    let problem = match &error.kind {
        Kind::UnknownField(_, expected) => {
            format!("unknown key, expected one of {}", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!(
                "unknown value `{found}`, expected one of {}",
                expected.join(", ")
            )
        }
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!("expected {expected}, found {found}")
        }
        Kind::MissingField(_) => "is required".to_owned(),
        other => other.to_string(),
    };
    ConfigError::Invalid {
        key: dotted(&path),
        origin: error.metadata.map(|metadata| metadata.name.to_string()),
        problem,
    }
}

/// `["server", "allowed_origins", "0"]` → `server.allowed_origins[0]`.
fn dotted(path: &[String]) -> String {
    let mut key = String::new();
    for segment in path {
        if !key.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
            key.push_str(&format!("[{segment}]"));
        } else {
            if !key.is_empty() {
                key.push('.');
            }
            key.push_str(segment);
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
}
