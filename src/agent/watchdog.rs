//! The orphan guard: a tiny process that outlives the server by a moment and kills every
//! agent process group the server leaves behind, however the server died.
//!
//! The parent-death signal only reaches an agent's first process, and `post_stop` and
//! kill-on-drop run only when the server lives long enough to run them. So at the first agent
//! spawn the server forks (twice, so the guard is nobody's zombie) a watchdog that holds the
//! read end of a pipe. Every agent, between fork and exec, writes `+PGID` into the pipe; the
//! server writes `-PGID` once it has killed and reaped a group. When the server dies — exit,
//! panic, SIGKILL — the kernel closes its end, the watchdog reads end-of-file, sends SIGKILL to
//! every group still registered, and exits.
//!
//! The watchdog is a forked copy of a multi-threaded program, so it may only make
//! async-signal-safe calls: it runs on memory allocated before the fork and raw `libc` calls,
//! never the allocator, locks or the Rust runtime. It leaves the server's session (so a
//! terminal's Ctrl-C does not reach it), ignores SIGINT/SIGTERM/SIGHUP, closes every other
//! descriptor (so it holds no socket or pipe of the server's open), and calls itself
//! `sm-watchdog`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

/// Most process groups the watchdog tracks at once; registrations past it are ignored (their
/// first process still has the parent-death signal).
const CAPACITY: usize = 1 << 16;

/// The server's end of the pipe. Non-blocking: a stuck watchdog must never stall a spawn.
#[derive(Debug)]
pub(crate) struct Watchdog {
    pipe: OwnedFd,
}

static GLOBAL: OnceLock<Option<Watchdog>> = OnceLock::new();

/// The watchdog if it was started; never starts it.
pub(crate) fn started() -> Option<&'static Watchdog> {
    GLOBAL.get().and_then(Option::as_ref)
}

/// The process's watchdog, started on first use. `None` when it could not be started (the
/// error is logged once); agents then rely on the parent-death signal and kill-on-drop alone.
pub(crate) fn global() -> Option<&'static Watchdog> {
    GLOBAL
        .get_or_init(|| match Watchdog::start() {
            Ok(watchdog) => Some(watchdog),
            Err(err) => {
                tracing::error!("cannot start the orphan watchdog, agents' grandchildren may outlive a crash: {err}");
                None
            }
        })
        .as_ref()
}

impl Watchdog {
    fn start() -> io::Result<Watchdog> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Everything the watchdog will use is allocated here, before the fork.
        let mut groups = vec![0 as libc::pid_t; CAPACITY].into_boxed_slice();
        let mut buffer = vec![0u8; 4096].into_boxed_slice();

        // SAFETY: the child branches below call only async-signal-safe functions on memory
        // allocated before the fork, and never return.
        match unsafe { libc::fork() } {
            -1 => return Err(io::Error::last_os_error()),
            0 => unsafe {
                // The intermediate child: fork the watchdog and leave at once, so the
                // watchdog is adopted by init and reaped there.
                if libc::fork() == 0 {
                    watch(
                        read.as_raw_fd(),
                        write.as_raw_fd(),
                        &mut groups,
                        &mut buffer,
                    );
                }
                libc::_exit(0);
            },
            intermediate => {
                let mut status = 0;
                // SAFETY: waiting for our own child, which exits right away.
                while unsafe { libc::waitpid(intermediate, &mut status, 0) } == -1
                    && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
                {
                }
            }
        }
        drop(read);
        set_nonblocking(&write)?;
        Ok(Watchdog { pipe: write })
    }

    /// The descriptor an agent writes its registration to between fork and exec.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.pipe.as_raw_fd()
    }

    /// Tells the watchdog a group is gone (killed and reaped), so it is not killed again
    /// should its id be reused.
    pub(crate) fn forget(&self, pgid: libc::pid_t) {
        forget_raw(self.raw_fd(), pgid);
    }
}

/// Writes `-PGID` to the watchdog's pipe `fd` (see [`Watchdog::forget`]).
pub(crate) fn forget_raw(fd: RawFd, pgid: libc::pid_t) {
    let mut line = [0u8; 24];
    let len = encode(b'-', pgid, &mut line);
    // Best effort: a full pipe or a dead watchdog changes nothing for the caller.
    // SAFETY: writing an initialised buffer to a descriptor the caller owns.
    unsafe { libc::write(fd, line.as_ptr().cast(), len) };
}

/// Registers the calling process's group; called in an agent's child between fork and exec,
/// so it makes only async-signal-safe calls. Errors are ignored: registration is best effort.
pub(crate) fn register_self(fd: RawFd) {
    let mut line = [0u8; 24];
    // SAFETY: getpgrp cannot fail; write takes an initialised buffer (one atomic pipe write).
    unsafe {
        let len = encode(b'+', libc::getpgrp(), &mut line);
        libc::write(fd, line.as_ptr().cast(), len);
    }
}

/// Writes `<sign><pgid>\n` into `out` without allocating; returns its length.
fn encode(sign: u8, pgid: libc::pid_t, out: &mut [u8; 24]) -> usize {
    let mut digits = [0u8; 20];
    let mut n = pgid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out[0] = sign;
    for i in 0..len {
        out[1 + i] = digits[len - 1 - i];
    }
    out[1 + len] = b'\n';
    len + 2
}

/// Applies one line (`+N` or `-N`) to the table of registered groups.
fn apply(line: &[u8], groups: &mut [libc::pid_t], count: &mut usize) {
    let (sign, digits) = match line.split_first() {
        Some((&sign, digits)) if !digits.is_empty() => (sign, digits),
        _ => return,
    };
    let mut pgid: libc::pid_t = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return;
        }
        pgid = match pgid
            .checked_mul(10)
            .and_then(|p| p.checked_add(libc::pid_t::from(d - b'0')))
        {
            Some(p) => p,
            None => return,
        };
    }
    if pgid <= 1 {
        return;
    }
    match sign {
        b'+' if *count < groups.len() => {
            groups[*count] = pgid;
            *count += 1;
        }
        b'-' => {
            if let Some(i) = groups[..*count].iter().position(|&g| g == pgid) {
                *count -= 1;
                groups[i] = groups[*count];
            }
        }
        _ => {}
    }
}

/// The watchdog's whole life. Runs in a forked child: async-signal-safe calls only.
unsafe fn watch(read: RawFd, write: RawFd, groups: &mut [libc::pid_t], buffer: &mut [u8]) -> ! {
    libc::close(write);
    libc::setsid();
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
        libc::signal(signal, libc::SIG_IGN);
    }
    #[cfg(target_os = "linux")]
    libc::prctl(libc::PR_SET_NAME, c"sm-watchdog".as_ptr());
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    if null >= 0 {
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
    }
    const PIPE: RawFd = 3;
    if read != PIPE {
        libc::dup2(read, PIPE);
    }
    // Everything else the server had open (its listener, its database) is closed here:
    // close_range (Linux 5.9+) in one call, else one close per possible descriptor.
    #[cfg(target_os = "linux")]
    let closed = libc::syscall(libc::SYS_close_range, PIPE + 1, libc::c_uint::MAX, 0) == 0;
    #[cfg(not(target_os = "linux"))]
    let closed = false;
    if !closed {
        let max = libc::sysconf(libc::_SC_OPEN_MAX);
        let max = if max > 0 { max as RawFd } else { 1024 };
        for fd in (PIPE + 1)..max.min(1 << 20) {
            libc::close(fd);
        }
    }

    let mut count = 0usize;
    let mut line = [0u8; 24];
    let mut line_len = 0usize;
    loop {
        let n = libc::read(PIPE, buffer.as_mut_ptr().cast(), buffer.len());
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        for &byte in &buffer[..n as usize] {
            if byte == b'\n' {
                apply(&line[..line_len], groups, &mut count);
                line_len = 0;
            } else if line_len < line.len() {
                line[line_len] = byte;
                line_len += 1;
            }
        }
    }
    for &pgid in &groups[..count] {
        libc::kill(-pgid, libc::SIGKILL);
    }
    libc::_exit(0)
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags == -1 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) == -1
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sign: u8, pgid: libc::pid_t) -> Vec<u8> {
        let mut out = [0u8; 24];
        let len = encode(sign, pgid, &mut out);
        out[..len].to_vec()
    }

    #[test]
    fn lines_encode_sign_digits_and_newline() {
        assert_eq!(line(b'+', 0), b"+0\n");
        assert_eq!(line(b'+', 7), b"+7\n");
        assert_eq!(line(b'-', 4_194_304), b"-4194304\n");
        assert_eq!(
            line(b'+', libc::pid_t::MAX),
            format!("+{}\n", libc::pid_t::MAX).into_bytes()
        );
    }

    #[test]
    fn the_table_registers_forgets_and_ignores_garbage() {
        let mut groups = [0; 3];
        let mut count = 0;
        for entry in [
            "+100",
            "+200",
            "+x1",
            "+",
            "*5",
            "+1",
            "+99999999999",
            "-100",
            "+300",
        ] {
            apply(entry.as_bytes(), &mut groups, &mut count);
        }
        assert_eq!(&groups[..count], &[200, 300]);
        // A full table ignores further registrations; forgetting an unknown group is a no-op.
        for entry in ["+400", "+500", "-12345"] {
            apply(entry.as_bytes(), &mut groups, &mut count);
        }
        assert_eq!(&groups[..count], &[200, 300, 400]);
    }
}
