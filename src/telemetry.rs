//! Logging: every event goes to stderr, for whoever runs the server in a terminal or under a
//! service manager, and to `<data_dir>/logs/session_manager.log`, where the original service
//! kept its log, rotated by size so a long-running server cannot fill the disk.
//!
//! The file is written from a background thread (`tracing_appender::non_blocking`), so a slow
//! disk never stalls a request; the [`TelemetryGuard`] flushes it when dropped.

use std::fs::{self, File, OpenOptions};
use std::io::IsTerminal;
use std::io::{self, Write};
use std::path::PathBuf;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};
use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{ConfigError, Settings};

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

/// The log file, rotated by size: `session_manager.log` is written until the next line would
/// take it past `max_bytes`; then `.N` becomes `.N+1` (the oldest beyond `keep` is dropped)
/// and the file becomes `.1`.
///
/// Written here rather than taken from a crate: the one tried kept a list of rotated files
/// and panicked, ending file logging for good, when somebody deleted one by hand to free
/// disk. This keeps no list; a missing file is simply skipped.
struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    written: u64,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        let file = Self::append_to(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            max_bytes,
            keep,
            file,
            written,
        })
    }

    fn append_to(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let shifts = (1..self.keep)
            .rev()
            .map(|n| (self.numbered(n), self.numbered(n + 1)));
        let last = (self.keep > 0).then(|| (self.path.clone(), self.numbered(1)));
        for (from, to) in shifts.chain(last) {
            skip_missing(fs::rename(from, to))?;
        }
        if self.keep == 0 {
            skip_missing(fs::remove_file(&self.path))?;
        }
        self.file = Self::append_to(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written > 0 && self.written.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written = self
            .written
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A file that is not there needs no renaming or removing.
fn skip_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotates_by_size_and_keeps_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path().join("x.log"), 10, 2).unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            log.write_all(line.as_bytes()).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log", "x.log.1", "x.log.2"]);
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("x.log"), "dddddd\n");
        assert_eq!(read("x.log.1"), "cccccc\n");
        assert_eq!(read("x.log.2"), "bbbbbb\n");
    }

    #[test]
    fn rotated_files_deleted_by_hand_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path().join("x.log"), 10, 3).unwrap();
        for _ in 0..5 {
            log.write_all(b"0123456789").unwrap();
        }
        for name in ["x.log.1", "x.log.2", "x.log.3"] {
            fs::remove_file(dir.path().join(name)).unwrap();
        }
        log.write_all(b"after\n").unwrap();
        log.write_all(b"again\n").unwrap();
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log", "x.log.1", "x.log.2"]);
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("x.log"), "again\n");
        assert_eq!(read("x.log.1"), "after\n");
        assert_eq!(read("x.log.2"), "0123456789");
    }

    #[test]
    fn keep_zero_truncates_and_a_reopen_continues_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut log = RotatingFile::open(path.clone(), 10, 0).unwrap();
        log.write_all(b"123456").unwrap();
        log.write_all(b"789012").unwrap();
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "789012");
        drop(log);
        // The size already written counts after a restart.
        let mut log = RotatingFile::open(path.clone(), 10, 0).unwrap();
        log.write_all(b"34567").unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "34567");
    }
}
