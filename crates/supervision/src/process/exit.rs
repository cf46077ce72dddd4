//! How a process ended: exit code or signal, and when it was seen.

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::SystemTime;

/// How a process ended.
///
/// # Examples
///
/// ```
/// use std::time::SystemTime;
/// use supervision::process::ProcessExit;
///
/// let exit = ProcessExit::new(None, Some(9), SystemTime::now());
/// assert!(!exit.success());
/// assert_eq!(exit.to_string(), "killed by signal 9 (SIGKILL)");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessExit {
    code: Option<i32>,
    signal: Option<i32>,
    at: SystemTime,
}

impl ProcessExit {
    /// An exit as given: a code when it exited, a signal number when a signal ended it,
    /// neither when nothing is known (it was reaped elsewhere).
    pub fn new(code: Option<i32>, signal: Option<i32>, at: SystemTime) -> Self {
        ProcessExit { code, signal, at }
    }

    /// The exit from a wait's result, seen now.
    pub(crate) fn from_wait(status: io::Result<ExitStatus>) -> ProcessExit {
        let at = SystemTime::now();
        match status {
            Ok(status) => ProcessExit::new(status.code(), status.signal(), at),
            // It could not be waited for (reaped elsewhere): nothing is known.
            Err(_) => ProcessExit::new(None, None, at),
        }
    }

    /// The exit code, when it exited.
    pub fn code(&self) -> Option<i32> {
        self.code
    }

    /// The signal number, when a signal ended it.
    pub fn signal(&self) -> Option<i32> {
        self.signal
    }

    /// When the exit was seen (reaped).
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for ProcessExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => {
                write!(f, "killed by signal {signal} ({})", signal_name(signal))
            }
            (None, None) => f.write_str("exited, status unknown"),
        }
    }
}

/// A process child's exit other than with code 0: the error its task child ends with, so an
/// observer can take the [`ProcessExit`] back out of a [`ChildError`](crate::ChildError)
/// (`error.source()` down to this, then [`ExitError::exit`]) instead of reading text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{exit}")]
pub struct ExitError {
    exit: ProcessExit,
}

impl ExitError {
    /// The error for an exit that was not a success.
    pub fn new(exit: ProcessExit) -> Self {
        ExitError { exit }
    }

    /// How the process ended.
    pub fn exit(&self) -> ProcessExit {
        self.exit
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => "signal",
    }
}
