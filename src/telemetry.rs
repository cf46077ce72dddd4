//! Logging: every event goes to stderr, for whoever runs the server in a terminal or under a
//! service manager, and to `<data_dir>/logs/session_manager.log`, where the original service
//! kept its log, rotated by size so a long-running server cannot fill the disk.
//!
//! The file is written from a background thread (`tracing_appender::non_blocking`), so a slow
//! disk never stalls a request; the [`TelemetryGuard`] flushes it when dropped.

use std::fs;
use std::io::IsTerminal;
use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{ConfigError, Settings};
use crate::logfile::RotatingFile;

/// Name of the server's log file inside [`Settings::log_dir`].
pub const LOG_FILE_NAME: &str = "session_manager.log";

/// Why logging could not be set up; the server refuses to run blind.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log directory could not be created.
    #[error("cannot create log directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be opened for appending.
    #[error("cannot open log file {}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `logs.level` is not a filter (settings that were not validated).
    #[error("invalid log level")]
    Level(#[source] ConfigError),
    /// `tracing_subscriber` refused the filter directives.
    #[error("invalid log filter")]
    Filter(#[source] tracing_subscriber::filter::ParseError),
    /// A global subscriber was installed before, e.g. twice in one process.
    #[error("logging is already initialised")]
    AlreadyInitialised(#[source] TryInitError),
}

/// Keeps the background log writer alive; dropping it flushes what is still queued, so hold
/// it until the very end of `main`.
#[must_use = "dropping the guard stops writing the log file"]
#[derive(Debug)]
pub struct TelemetryGuard {
    _writer: WorkerGuard,
}

/// Installs the global subscriber: level from `logs.level` (where `--log-level` already took
/// precedence), output to stderr and to the rotated log file.
pub fn init(settings: &Settings) -> Result<TelemetryGuard, TelemetryError> {
    let directives = settings
        .logs
        .filter_directives()
        .map_err(TelemetryError::Level)?;
    let filter = EnvFilter::try_new(directives).map_err(TelemetryError::Filter)?;

    let dir = settings.log_dir();
    fs::create_dir_all(&dir).map_err(|source| TelemetryError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(LOG_FILE_NAME);
    let rotating = RotatingFile::open(
        path.clone(),
        settings.logs.max_file_bytes,
        settings.logs.keep_files,
    )
    .map_err(|source| TelemetryError::OpenFile { path, source })?;
    let (file_writer, guard) = tracing_appender::non_blocking(rotating);

    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(fmt::layer().with_writer(file_writer).with_ansi(false))
        .try_init()
        .map_err(TelemetryError::AlreadyInitialised)?;
    Ok(TelemetryGuard { _writer: guard })
}

/// `error: cause: cause …`, one line for a log or a terminal: the supervision crate's, which
/// its process layer logs with too.
pub use supervision::error_chain;
