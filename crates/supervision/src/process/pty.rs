//! Pseudo-terminals: a process child can run on one instead of pipes ([`Command::terminal`]),
//! for programs that draw a screen and read keystrokes (an interactive CLI, a REPL, an
//! editor).
//!
//! The pair is opened with `posix_openpt` and both ends close-on-exec, so no other child
//! started meanwhile inherits either. The child becomes the leader of a new session
//! (`setsid`, which also makes it the leader of its own process group, as every process child
//! is) with the terminal as its controlling terminal and as its stdin, stdout and stderr. The
//! program keeps the master: [`Pty`] reads the child's output, writes its input and resizes
//! it (the kernel then sends the child's foreground group `SIGWINCH`).
//!
//! [`Command::terminal`]: super::Command::terminal

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalSize {
    /// Lines, at least 1.
    pub rows: u16,
    /// Columns, at least 1.
    pub cols: u16,
}

impl TerminalSize {
    /// A size of `rows` lines by `cols` columns.
    pub fn new(rows: u16, cols: u16) -> Self {
        TerminalSize { rows, cols }
    }

    fn winsize(self) -> libc::winsize {
        libc::winsize {
            ws_row: self.rows,
            ws_col: self.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }
    }
}

impl Default for TerminalSize {
    /// 24 × 80, the size of a VT100.
    fn default() -> Self {
        TerminalSize::new(24, 80)
    }
}

/// The program's end (the master) of a process child's terminal.
///
/// Cheap to clone: every clone is the same terminal, so one task can read the output while
/// others write input or resize. Reads return `Ok(0)` once the child's side is closed for
/// good (every process that had the terminal open has exited).
#[derive(Debug, Clone)]
pub struct Pty {
    master: Arc<AsyncFd<OwnedFd>>,
}

impl Pty {
    /// Reads the child's output into `buf`: the count of bytes read, 0 at the end.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.master.readable().await?;
            // SAFETY: `buf` is valid for `buf.len()` bytes; the descriptor is open.
            let read = ready.try_io(|fd| {
                cvt(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
                    .map(|n| n.unsigned_abs())
            });
            match read {
                Ok(Ok(n)) => return Ok(n),
                // Linux answers EIO once no process holds the child's side any more.
                Ok(Err(err)) if err.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `bytes` as the child's input (keystrokes, pasted text).
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut ready = self.master.writable().await?;
            // SAFETY: `bytes` is valid for `bytes.len()` bytes; the descriptor is open.
            let written = ready.try_io(|fd| {
                cvt(unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) })
                    .map(|n| n.unsigned_abs())
            });
            match written {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(err)) => return Err(err),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal's size; the kernel sends `SIGWINCH` to the child's foreground
    /// process group when it changed.
    pub fn resize(&self, size: TerminalSize) -> io::Result<()> {
        set_size(self.master.as_raw_fd(), size)
    }

    /// The terminal's size as the kernel holds it.
    pub fn size(&self) -> io::Result<TerminalSize> {
        // SAFETY: an all-zero winsize is valid; TIOCGWINSZ writes one.
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: the descriptor is open and `size` is a winsize.
        cvt(unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCGWINSZ, &mut size) })?;
        Ok(TerminalSize::new(size.ws_row, size.ws_col))
    }
}

/// Both ends of a new terminal, before the spawn: the child's end is handed to the child as
/// its stdio and controlling terminal, then closed here so the master sees the end.
pub(crate) struct Pair {
    pub(crate) master: OwnedFd,
    pub(crate) child: OwnedFd,
}

impl Pair {
    /// Opens a terminal pair of `size`, both ends close-on-exec.
    pub(crate) fn open(size: TerminalSize) -> io::Result<Pair> {
        // SAFETY: posix_openpt returns a new descriptor or -1.
        let master =
            cvt(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
        // SAFETY: `master` was just opened and is owned by nothing else.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: grantpt and unlockpt take the master's descriptor.
        cvt(unsafe { libc::grantpt(master.as_raw_fd()) })?;
        cvt(unsafe { libc::unlockpt(master.as_raw_fd()) })?;
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: `name` is valid for its length; ptsname_r NUL-terminates what it writes.
        let failed = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
        if failed != 0 {
            return Err(io::Error::from_raw_os_error(failed));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated path.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) };
        // SAFETY: `path` is NUL-terminated; open returns a new descriptor or -1.
        let child = cvt(unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: `child` was just opened and is owned by nothing else.
        let child = unsafe { OwnedFd::from_raw_fd(child) };
        set_size(master.as_raw_fd(), size)?;
        Ok(Pair { master, child })
    }

    /// The master as a [`Pty`], non-blocking and registered with the tokio reactor; closes
    /// the child's end (the child has its own copies by now).
    pub(crate) fn into_pty(self) -> io::Result<Pty> {
        let Pair { master, child } = self;
        drop(child);
        let fd = master.as_raw_fd();
        // SAFETY: F_GETFL / F_SETFL on an open descriptor.
        let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
        cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        // SAFETY: the `OwnedFd` stays open, on the same file, for as long as the `AsyncFd`
        // owns it.
        let master = unsafe { AsyncFd::register(master) }?;
        Ok(Pty {
            master: Arc::new(master),
        })
    }
}

fn set_size(fd: RawFd, size: TerminalSize) -> io::Result<()> {
    let winsize = size.winsize();
    // SAFETY: the descriptor is open and `winsize` is a winsize.
    cvt(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &winsize) }).map(drop)
}

/// A libc return value as an `io::Result`: -1 is the OS error.
fn cvt<T: PartialEq + From<i8>>(value: T) -> io::Result<T> {
    if value == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// What the child does with its terminal, between fork (or clone) and exec: async-signal-safe
/// calls only. A new session first (the child is not a group leader yet, so `setsid` cannot
/// fail with EPERM), then the terminal, already its stdin, becomes the controlling one.
///
/// # Safety
///
/// Only between fork and exec, with the terminal's child end as descriptor 0.
pub(crate) unsafe fn become_controlling() -> io::Result<()> {
    if libc::setsid() == -1 {
        return Err(io::Error::last_os_error());
    }
    if libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
