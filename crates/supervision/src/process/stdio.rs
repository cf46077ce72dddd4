//! A process child's descriptors 0, 1 and 2, and what the program keeps of them: stdin from
//! `/dev/null` with stdout and stderr into pipes, or all three on a terminal.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::net::unix::pipe;

use super::pty::{Pair, Pty, TerminalSize};

/// A spawned child's output, as the program reads it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Stdout and stderr, each a pipe (stdin is `/dev/null`).
    Pipes {
        /// The child's stdout.
        stdout: pipe::Receiver,
        /// The child's stderr.
        stderr: pipe::Receiver,
    },
    /// The terminal the child runs on: its output, its input and its size.
    Terminal(Pty),
}

/// Both sides of a child's stdio between their opening and the spawn.
pub(crate) enum Stdio {
    Pipes {
        stdin: OwnedFd,
        stdout: (OwnedFd, OwnedFd),
        stderr: (OwnedFd, OwnedFd),
    },
    Terminal(Pair),
}

impl Stdio {
    /// Opens pipes, or a terminal of `size` when there is one; every descriptor
    /// close-on-exec, so no other child started meanwhile inherits any.
    pub(crate) fn open(terminal: Option<TerminalSize>) -> io::Result<Stdio> {
        Ok(match terminal {
            Some(size) => Stdio::Terminal(Pair::open(size)?),
            None => Stdio::Pipes {
                stdin: open_dev_null()?,
                stdout: pipe()?,
                stderr: pipe()?,
            },
        })
    }

    /// Whether the child runs on a terminal (and so must make it its controlling one).
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self, Stdio::Terminal(_))
    }

    /// The descriptors the child gets as 0, 1 and 2.
    pub(crate) fn child_fds(&self) -> [RawFd; 3] {
        match self {
            Stdio::Pipes {
                stdin,
                stdout,
                stderr,
            } => [
                stdin.as_raw_fd(),
                stdout.1.as_raw_fd(),
                stderr.1.as_raw_fd(),
            ],
            Stdio::Terminal(pair) => [pair.child.as_raw_fd(); 3],
        }
    }

    /// Owned copies of the child's three descriptors, for `std`'s spawn (which takes them).
    pub(crate) fn child_copies(&self) -> io::Result<[OwnedFd; 3]> {
        let copy = |fd: RawFd| {
            // SAFETY: `fd` is open for as long as `self` is; the copy is a new descriptor.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
        };
        let [a, b, c] = self.child_fds();
        Ok([copy(a)?, copy(b)?, copy(c)?])
    }

    /// The program's side, the child's closed (it holds its own copies by now), so the
    /// program sees the end of the output once the child's tree is gone.
    pub(crate) fn into_output(self) -> io::Result<Output> {
        Ok(match self {
            Stdio::Pipes { stdout, stderr, .. } => Output::Pipes {
                stdout: pipe::Receiver::from_owned_fd(stdout.0)?,
                stderr: pipe::Receiver::from_owned_fd(stderr.0)?,
            },
            Stdio::Terminal(pair) => Output::Terminal(pair.into_pty()?),
        })
    }
}

pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just opened and are ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn open_dev_null() -> io::Result<OwnedFd> {
    // SAFETY: open(2) on a constant path.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
