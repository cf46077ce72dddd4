//! Typed settings, loaded once at start-up and validated once.
//!
//! Sources, each overriding the one before: the embedded `config/default.toml`, the optional
//! `--config FILE`, the `SESSION_MANAGER_*` environment variables (`__` separates sections,
//! `SESSION_MANAGER_URL` and `SESSION_MANAGER_INSTANCE` are left alone because agents receive
//! them) and the command-line flags.
//! Every source is turned into a [`figment`] layer that remembers where it came from, so an
//! unknown key or a bad value is reported with its full dotted key and its origin, and the
//! server never starts on a configuration it only half understood.
//!
//! - `types.rs`: the settings tree, as the file spells it;
//! - `validate.rs`: every value checked once, named by its dotted key;
//! - `load.rs`: the sources as layers, merged, extracted and validated;
//! - [`origin`]: the one parser of web origins, for `server.allowed_origins` here and for the
//!   `Origin` and `Host` headers in `api`.

use std::path::PathBuf;

use figment::providers::{Format, Toml};

mod load;
pub mod origin;
mod types;
mod validate;

pub use load::ENV_PREFIX;
pub(crate) use types::restart_word;
pub use types::{
    AgentSettings, AgentTemplate, BackoffSettings, CgroupMode, ClaudeActivitySettings,
    ClaudeSettings, EventSettings, HooksSettings, LogSettings, MonitorSettings, Overrides,
    PathSettings, ServerSettings, SessionSettings, Settings, StorageSettings, TerminalSettings,
    Thresholds, Token,
};
pub(crate) use validate::validate_backoff;
pub use validate::AGENT_TYPES;

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

#[cfg(test)]
mod tests;
