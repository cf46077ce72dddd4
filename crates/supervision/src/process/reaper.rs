//! Waiting for (reaping) a child's first process without tokio's `Child`, which only knows
//! processes it spawned itself.
//!
//! Linux 5.3+: a pidfd becomes readable when the process exits; tokio's reactor watches it,
//! then `waitpid(WNOHANG)` collects the status. Elsewhere, a blocking `waitpid` on tokio's
//! blocking pool. Dropping a reaper that has not reaped kills the process (SIGKILL) and
//! reaps it in the background, so no zombie is left.

use std::io;

use tokio::io::unix::AsyncFd;

/// The right to wait for one child process, and the duty to.
#[derive(Debug)]
pub(super) struct Reaper {
    pid: libc::pid_t,
    reaped: bool,
}

impl Reaper {
    pub(super) fn new(pid: libc::pid_t) -> Reaper {
        Reaper { pid, reaped: false }
    }

    /// Waits for the process to exit; returns its raw wait status.
    pub(super) async fn wait(&mut self) -> io::Result<libc::c_int> {
        #[cfg(target_os = "linux")]
        if let Some(pidfd) = pidfd_open(self.pid) {
            // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same until the
            // AsyncFd is dropped.
            let pidfd =
                unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }?;
            loop {
                if let Some(status) = self.try_wait()? {
                    return Ok(status);
                }
                pidfd.readable().await?.clear_ready();
            }
        }
        let pid = self.pid;
        let status = tokio::task::spawn_blocking(move || blocking_wait(pid))
            .await
            .map_err(io::Error::other)??;
        self.reaped = true;
        Ok(status)
    }

    fn try_wait(&mut self) -> io::Result<Option<libc::c_int>> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid on our own child, with a valid status pointer.
            match unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } {
                0 => return Ok(None),
                -1 => {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        self.reaped = true;
                        super::orphans::reaped(self.pid);
                        return Err(err);
                    }
                }
                _ => {
                    self.reaped = true;
                    super::orphans::reaped(self.pid);
                    return Ok(Some(status));
                }
            }
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signalling our own, not yet reaped, child (its pid cannot be reused yet).
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let pid = self.pid;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || blocking_wait(pid));
            }
            Err(_) => {
                std::thread::spawn(move || blocking_wait(pid));
            }
        }
    }
}

fn blocking_wait(pid: libc::pid_t) -> io::Result<libc::c_int> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child, with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != -1 {
            super::orphans::reaped(pid);
            return Ok(status);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: libc::pid_t) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: the pidfd_open syscall takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: just opened (close-on-exec by definition), ours.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}
