//! An agent's output: every line of stdout and stderr goes to a ring buffer (the last
//! [`RING_LINES`]), to the size-rotated file `<data_dir>/logs/<session_id>/<agent>.log`, and
//! to the session's event stream.
//!
//! Lines are cut at [`MAX_LINE_BYTES`] (a program printing without newlines cannot grow
//! memory) and decoded lossily (invalid UTF-8 becomes U+FFFD). The file is written from the
//! reading task: appends to the page cache take microseconds, and a failing disk is logged
//! once and stops file output for that agent, never the agent itself.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::logfile::RotatingFile;

/// Lines kept in memory per agent.
pub const RING_LINES: usize = 1000;

/// Longest line kept; longer output is split into lines of this size.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of an agent's output. How the API writes it (the time as Unix seconds) is
/// `api::dto::output`'s.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Which pipe.
    pub stream: Stream,
    /// The text, without its newline.
    pub line: String,
    /// When the server read it.
    pub timestamp: SystemTime,
}

/// Where an agent's lines go besides its caller: the ring and the file. Shared by every
/// incarnation of the agent, so a restart keeps the history.
///
/// Nothing is allocated or opened before the first line (the file's path included): a
/// logical agent never writes one, and a server restoring thousands of sessions must not
/// create a file per agent (nor hold its descriptor) up front.
#[derive(Debug)]
pub(crate) struct OutputLog {
    ring: Mutex<VecDeque<LogLine>>,
    file: Mutex<LogFile>,
    /// The directory of the session's logs, shared by its agents.
    dir: Arc<Path>,
    /// The agent's name: its file is `<dir>/<name>.log`.
    name: Arc<str>,
}

/// The agent's log file, opened at the first line.
#[derive(Debug)]
enum LogFile {
    /// Not opened yet.
    Closed(Rotation),
    /// Being written.
    Open(Box<RotatingFile>),
    /// Could not be opened or written: file output is off for this agent.
    Off,
}

/// Size and count of an agent's rotated log files.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rotation {
    pub(crate) max_bytes: u64,
    pub(crate) keep: usize,
}

impl OutputLog {
    /// The log of agent `name`, whose file is `<dir>/<name>.log` (appended to, the
    /// directory created, at the first line).
    pub(crate) fn new(dir: Arc<Path>, name: Arc<str>, rotation: Rotation) -> OutputLog {
        OutputLog {
            ring: Mutex::new(VecDeque::new()),
            file: Mutex::new(LogFile::Closed(rotation)),
            dir,
            name,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    /// Opens the file for the first line. A file that cannot be opened is logged and
    /// skipped: the ring buffer and the events still work.
    fn open(&self, rotation: Rotation) -> LogFile {
        let path = self.path();
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| RotatingFile::open(path.clone(), rotation.max_bytes, rotation.keep))
            .map_or_else(
                |err| {
                    tracing::warn!(path = %path.display(), "cannot open agent log file: {err}");
                    LogFile::Off
                },
                |file| LogFile::Open(Box::new(file)),
            )
    }

    /// Keeps one line in the ring and the file.
    pub(crate) fn record(&self, line: &LogLine) {
        {
            let mut ring = lock(&self.ring);
            if ring.len() == RING_LINES {
                ring.pop_front();
            }
            ring.push_back(line.clone());
        }
        let mut file = lock(&self.file);
        if let LogFile::Closed(rotation) = *file {
            *file = self.open(rotation);
        }
        if let LogFile::Open(writer) = &mut *file {
            let written = writeln!(
                writer,
                "{:.3} {} {}",
                seconds(line.timestamp),
                line.stream,
                line.line
            );
            if let Err(err) = written {
                tracing::warn!(path = %self.path().display(), "agent log file disabled after a write error: {err}");
                *file = LogFile::Off;
            }
        }
    }

    /// Writes a line of the server's own about the agent (start, exit) to the file and ring;
    /// returns it, for the caller to hand on live like the lines the agent printed.
    pub(crate) fn note(&self, text: String) -> LogLine {
        let line = LogLine {
            stream: Stream::Stderr,
            line: format!("[session-manager] {text}"),
            timestamp: SystemTime::now(),
        };
        self.record(&line);
        line
    }

    /// The last `n` lines, oldest first.
    pub(crate) fn tail(&self, n: usize) -> Vec<LogLine> {
        let ring = lock(&self.ring);
        ring.iter()
            .skip(ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Flushes the file.
    pub(crate) fn flush(&self) {
        if let LogFile::Open(writer) = &mut *lock(&self.file) {
            let _ = writer.flush();
        }
    }
}

/// A poisoned lock only means a panic elsewhere while holding it; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Reads `pipe` to its end, handing every line to `each` (after recording it in `log`).
pub(crate) async fn pump<R, F>(pipe: R, stream: Stream, log: &OutputLog, mut each: F)
where
    R: AsyncRead + Unpin,
    F: FnMut(&LogLine),
{
    let mut reader = BufReader::with_capacity(8192, pipe);
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (take, complete) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE_BYTES - pending.len();
        let take = take.min(room);
        pending.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        if complete && pending.last() == Some(&b'\n') || pending.len() == MAX_LINE_BYTES {
            emit(&mut pending, stream, log, &mut each);
        }
    }
    if !pending.is_empty() {
        emit(&mut pending, stream, log, &mut each);
    }
    log.flush();
}

fn emit<F: FnMut(&LogLine)>(pending: &mut Vec<u8>, stream: Stream, log: &OutputLog, each: &mut F) {
    if pending.last() == Some(&b'\n') {
        pending.pop();
        if pending.last() == Some(&b'\r') {
            pending.pop();
        }
    }
    let line = LogLine {
        stream,
        line: String::from_utf8_lossy(pending).into_owned(),
        timestamp: SystemTime::now(),
    };
    pending.clear();
    log.record(&line);
    each(&line);
}

/// Unix seconds as a float, as the log file writes a line's time.
fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(dir: &tempfile::TempDir) -> Arc<OutputLog> {
        Arc::new(OutputLog::new(
            Arc::from(dir.path().join("s")),
            Arc::from("a"),
            Rotation {
                max_bytes: 1 << 20,
                keep: 1,
            },
        ))
    }

    async fn lines_of(input: &[u8], log: Arc<OutputLog>) -> Vec<String> {
        let mut seen = Vec::new();
        pump(input, Stream::Stdout, &log, |l| seen.push(l.line.clone())).await;
        seen
    }

    #[tokio::test]
    async fn lines_are_split_trimmed_and_kept_in_ring_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(&dir);
        let seen = lines_of(b"one\r\ntwo\n\nlast without newline", log.clone()).await;
        assert_eq!(seen, ["one", "two", "", "last without newline"]);
        let tail: Vec<_> = log.tail(2).into_iter().map(|l| l.line).collect();
        assert_eq!(tail, ["", "last without newline"]);
        let file = std::fs::read_to_string(dir.path().join("s/a.log")).unwrap();
        assert_eq!(file.lines().count(), 4);
        assert!(file.lines().all(|l| l.contains(" stdout ")), "{file}");
    }

    #[test]
    fn nothing_is_created_before_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(&dir);
        assert!(log.tail(10).is_empty());
        log.flush();
        assert!(!dir.path().join("s").exists(), "no directory, no file yet");
        log.note("first".into());
        assert!(dir.path().join("s/a.log").is_file());
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_bad_utf8_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let mut input = vec![b'x'; MAX_LINE_BYTES + 10];
        input.extend_from_slice(b"\n\xff\xfe ok\n");
        let seen = lines_of(&input, log(&dir)).await;
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].len(), MAX_LINE_BYTES);
        assert_eq!(seen[1], "x".repeat(10));
        assert_eq!(seen[2], "\u{fffd}\u{fffd} ok");
    }

    #[tokio::test]
    async fn the_ring_keeps_the_last_thousand_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = log(&dir);
        let input: String = (0..RING_LINES + 5).map(|i| format!("{i}\n")).collect();
        lines_of(input.as_bytes(), log.clone()).await;
        let tail = log.tail(usize::MAX);
        assert_eq!(tail.len(), RING_LINES);
        assert_eq!(tail[0].line, "5");
        assert_eq!(tail[RING_LINES - 1].line, (RING_LINES + 4).to_string());
    }
}
