//! The settings tree as the configuration file spells it: one struct per section, each
//! refusing unknown keys, with the few custom readers the file format needs (a token that may
//! be a number, an address, a restart word). Values are checked in `validate.rs`, once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::{self, Deserializer, Unexpected};
use serde::{Deserialize, Serialize};

use super::load::expand_home;
use super::validate::log_directives;
use super::ConfigError;
use crate::supervision::Restart;

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
    /// Claude Code hooks the server installs by itself.
    pub hooks: HooksSettings,
    /// What the server derives from Claude Code's hooks and telemetry.
    pub claude: ClaudeActivitySettings,
}

/// `[claude]`: Claude Code sessions as their hooks tell of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeActivitySettings {
    /// Seconds a Claude Code session may wait for its person (`waiting_for_input`) before a
    /// `claude_waiting` alert is raised.
    pub waiting_alert_seconds: u64,
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
    /// `[agents.terminal]`: agents that run on a pseudo-terminal.
    pub terminal: TerminalSettings,
    /// Per-type templates, keyed by the canonical (upper-case) agent type.
    #[serde(default)]
    pub templates: BTreeMap<String, AgentTemplate>,
    /// How Claude Code agents (`"claude"` on an agent) are run.
    pub claude: ClaudeSettings,
}

/// `[agents.claude]`: the Claude Code CLI as the server runs it. The program comes from here,
/// never from a request, which is why API clients may create Claude agents without
/// `agents.allow_custom_commands`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaudeSettings {
    /// Program and leading arguments (argv), e.g. `["claude"]` or `["npx", "claude"]`.
    pub command: Vec<String>,
    /// Arguments an agent's `claude.args` may hold without `agents.allow_custom_commands`;
    /// any other argument from a request is refused.
    pub allowed_args: Vec<String>,
    /// Claude Code settings (JSON) every Claude agent gets as `--settings`: the hooks that
    /// report to this server. Not a configuration key: the server computes it once it knows
    /// where it listens (agents cannot import the `claude` module that builds it).
    #[serde(skip)]
    pub hook_settings: Option<String>,
}

/// `[hooks]`: Claude Code's settings files made to report to this server without a
/// `session-manager hooks install` by hand.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksSettings {
    /// Install the hooks in a session's working directory
    /// (`.claude/settings.local.json`) when it is created and when it navigates to another
    /// one. Off by default: it writes into the user's project.
    pub auto_install: bool,
}

/// `[agents.terminal]`: what the server keeps of a terminal agent's output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalSettings {
    /// Bytes of output kept in memory per terminal, replayed to a viewer that attaches.
    pub scrollback_bytes: usize,
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Seconds between two readings of each file system's use (one per file system, however
    /// many sessions work on it).
    pub disk_interval_seconds: u64,
    /// Seconds after which a session whose figures did not change is stored again (its row
    /// then stands for the samples in between).
    pub unchanged_store_seconds: u64,
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
    /// Milliseconds a validation, a git read or a worktree operation may take before the
    /// request gets a `timed_out` answer (504) instead of waiting on a hung file system.
    pub deadline_ms: u64,
    /// Milliseconds a working directory's validation shown in `GET /sessions` may be old:
    /// a listing re-reads only what is older (0: every listing reads every directory).
    pub listing_cache_ms: u64,
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
}
