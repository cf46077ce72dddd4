//! Linux spawn with `clone(CLONE_VM | CLONE_VFORK)`, the way glibc's `posix_spawn` does it.
//!
//! `std` (and tokio) fall back to `fork` as soon as a `pre_exec` closure is set, and fork
//! copies the program's page tables on every restart: measured at 0.5–0.9 ms per spawn here,
//! a third of a whole restart. The child setup we need (parent-death signal, own group,
//! rlimits, nice, watchdog registration) is a handful of async-signal-safe syscalls, so the
//! child can run it on a small stack of its own while sharing the parent's memory, the parent
//! suspended until the exec.
//!
//! Rules for the code that runs in the child (`child_main`): no allocation, no lock, no
//! panic; it writes only to its `Failure` slot, which the parent reads after the child has
//! exec'd or exited. All signals are blocked around the clone, so no handler of the program
//! runs on the child's stack; the child resets every handled signal to its default and
//! unblocks them before exec (as `posix_spawn` does; SIGPIPE too, as `std` does).

use std::ffi::{c_void, CStr, CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

use super::spawn::ChildSetup;

/// The child's stack: the setup and execve need a few KiB.
const STACK_BYTES: usize = 64 * 1024;

/// Where the child was when it gave up, and why.
#[derive(Default)]
struct Failure {
    stage: libc::c_int,
    errno: libc::c_int,
}

const STAGE_STDIO: libc::c_int = 1;
const STAGE_SETUP: libc::c_int = 2;
const STAGE_CHDIR: libc::c_int = 3;
const STAGE_EXEC: libc::c_int = 4;

/// Everything the child reads, prepared by the parent.
struct ChildArgs<'a> {
    program: &'a CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    /// The working directory, entered with `fchdir`: the descriptor that was validated,
    /// never its name again.
    cwd: RawFd,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    setup: &'a ChildSetup,
    /// Highest descriptor number to close without `close_range`.
    max_fd: libc::c_uint,
    failure: *mut Failure,
}

/// Spawns `argv` in the directory `cwd` is open on (entered with `fchdir`), with exactly
/// `env` and `stdio` as its descriptors 0, 1 and 2; returns its process id.
pub(super) fn spawn(
    argv: &[String],
    cwd: BorrowedFd<'_>,
    env: &[(OsString, OsString)],
    stdio: [RawFd; 3],
    setup: &ChildSetup,
) -> io::Result<libc::pid_t> {
    let invalid = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    };
    let program_name = argv
        .first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let program = resolve_program(program_name, env)?;
    let program = CString::new(program.into_vec()).map_err(|_| invalid("the program"))?;
    let args: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| invalid("an argument")))
        .collect::<io::Result<_>>()?;
    let vars: Vec<CString> = env
        .iter()
        .map(|(k, v)| {
            let mut pair = k.as_bytes().to_vec();
            pair.push(b'=');
            pair.extend_from_slice(v.as_bytes());
            CString::new(pair).map_err(|_| invalid("the environment"))
        })
        .collect::<io::Result<_>>()?;
    let argv_ptrs: Vec<*const libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp_ptrs: Vec<*const libc::c_char> = vars
        .iter()
        .map(|v| v.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();

    let mut failure = Failure::default();
    let mut child_args = ChildArgs {
        program: &program,
        argv: &argv_ptrs,
        envp: &envp_ptrs,
        cwd: cwd.as_raw_fd(),
        stdin: stdio[0],
        stdout: stdio[1],
        stderr: stdio[2],
        setup,
        max_fd: descriptor_limit(),
        failure: &mut failure,
    };
    let mut stack = vec![0u8; STACK_BYTES];
    // SAFETY: the stack top is inside `stack`, aligned down to 16 bytes as the ABIs require.
    let stack_top = unsafe {
        let top = stack.as_mut_ptr().add(STACK_BYTES) as usize;
        (top & !15) as *mut c_void
    };

    let pid = {
        let _blocked = BlockedSignals::all()?;
        // SAFETY: `child_main` keeps to the rules in the module comment; CLONE_VFORK keeps
        // this frame (and so `child_args`, `stack` and the strings) alive and untouched
        // until the child has exec'd or exited.
        unsafe {
            libc::clone(
                child_main,
                stack_top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&mut child_args as *mut ChildArgs<'_>).cast(),
            )
        }
    };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: read after the child exec'd or exited (CLONE_VFORK); nothing else writes it.
    let failure = unsafe { std::ptr::read_volatile(child_args.failure) };
    if failure.stage != 0 {
        reap(pid);
        // Past its setup the child had registered its group with the watchdog: that group
        // is gone now, so its id must not stay registered (it may be reused).
        if let (true, Some(fd)) = (failure.stage > STAGE_SETUP, setup.watchdog) {
            super::watchdog::forget_raw(fd, pid);
        }
        let cause = io::Error::from_raw_os_error(failure.errno);
        let context = match failure.stage {
            STAGE_STDIO => "cannot connect its output",
            STAGE_SETUP => "cannot apply its limits",
            STAGE_CHDIR => "cannot enter its working directory",
            _ => "cannot execute it",
        };
        return Err(io::Error::new(cause.kind(), format!("{context}: {cause}")));
    }
    Ok(pid)
}

/// The child. Async-signal-safe calls only; see the module comment.
extern "C" fn child_main(arg: *mut c_void) -> libc::c_int {
    // SAFETY: `arg` is the parent's `ChildArgs`, alive while the parent is suspended.
    let args = unsafe { &*(arg as *const ChildArgs<'_>) };
    let errno = || {
        io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
    };
    // SAFETY: plain syscalls on descriptors and memory the parent prepared; the parent reads
    // the failure slot only after this process has exec'd or exited.
    unsafe {
        reset_signals();
        for (from, to) in [(args.stdin, 0), (args.stdout, 1), (args.stderr, 2)] {
            if libc::dup2(from, to) == -1 {
                give_up(args.failure, STAGE_STDIO, errno());
            }
        }
        if let Err(err) = args.setup.apply() {
            give_up(
                args.failure,
                STAGE_SETUP,
                err.raw_os_error().unwrap_or(libc::EIO),
            );
        }
        if libc::fchdir(args.cwd) == -1 {
            give_up(args.failure, STAGE_CHDIR, errno());
        }
        // Nothing but 0, 1 and 2 may reach the child: the program's own descriptors are
        // close-on-exec, but not those it inherited (a socket-activation listener, a
        // launcher's pipe, a jobserver). The watchdog registration above was the last use
        // of any other descriptor.
        close_from(3, args.max_fd);
        libc::execve(
            args.program.as_ptr(),
            args.argv.as_ptr(),
            args.envp.as_ptr(),
        );
        give_up(args.failure, STAGE_EXEC, errno())
    }
}

/// Closes every descriptor from `first` on: `close_range` (Linux 5.9+), else one by one up to
/// `max` (the parent's descriptor limit). Async-signal-safe: plain syscalls.
unsafe fn close_from(first: libc::c_uint, max: libc::c_uint) {
    if libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, 0) == 0 {
        return;
    }
    for fd in first..max {
        libc::close(fd as libc::c_int);
    }
}

/// Records why the child gives up and exits it.
unsafe fn give_up(failure: *mut Failure, stage: libc::c_int, errno: libc::c_int) -> ! {
    std::ptr::write_volatile(failure, Failure { stage, errno });
    libc::_exit(127)
}

/// Every signal the program handles goes back to its default; then all are unblocked.
unsafe fn reset_signals() {
    for signal in 1..libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) != 0 {
            continue;
        }
        let handled =
            current.sa_sigaction != libc::SIG_DFL && current.sa_sigaction != libc::SIG_IGN;
        if handled || signal == libc::SIGPIPE {
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
}

/// Blocks every signal on this thread until dropped.
struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    fn all() -> io::Result<BlockedSignals> {
        // SAFETY: sigset operations on local, initialised sets.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            match libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut previous) {
                0 => Ok(BlockedSignals { previous }),
                err => Err(io::Error::from_raw_os_error(err)),
            }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// The program's path: as given when it holds a `/`, else the first executable match in the
/// child's `PATH` (the program's when the child's environment has none).
fn resolve_program(program: &str, env: &[(OsString, OsString)]) -> io::Result<OsString> {
    if program.contains('/') {
        return Ok(OsString::from(program));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_else(|| OsString::from("/usr/local/bin:/usr/bin:/bin"));
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .map(|found| found.into_os_string())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("`{program}` not found in PATH"),
            )
        })
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access(2) on a valid C string.
    path.is_file() && unsafe { libc::access(c_path.as_ptr(), libc::X_OK) } == 0
}

/// The soft limit on descriptors (bounded, as a loop runs up to it where `close_range` is
/// missing).
fn descriptor_limit() -> libc::c_uint {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    libc::c_uint::try_from(limit.rlim_cur.min(1 << 20)).unwrap_or(1 << 20)
}

/// Waits for a child that never got to exec.
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child, which has exited.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::stdio::{open_dev_null, pipe, Stdio};
    use std::os::fd::AsFd;

    /// Stdin from /dev/null, output into pipes nobody reads (the children here write little).
    fn quiet() -> Stdio {
        Stdio::open(None).unwrap()
    }

    /// What the child wrote into a stand-in for the watchdog's pipe, and how the spawn failed.
    fn registrations_of_a_failed_spawn(argv: &[&str], cwd: BorrowedFd<'_>) -> (io::Error, String) {
        let (read, write) = pipe().unwrap();
        let setup = ChildSetup {
            cgroup_procs: None,
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            rlimits: [None, None, None],
            nice: None,
            watchdog: Some(write.as_raw_fd()),
            terminal: false,
        };
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let err = match spawn(&argv, cwd, &[], quiet().child_fds(), &setup) {
            Err(err) => err,
            Ok(_) => panic!("{argv:?} spawned"),
        };
        drop(write);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut text).unwrap();
        (err, text)
    }

    /// A child that registered its group with the watchdog and then failed to exec (or to
    /// enter its directory) is gone: its group must be forgotten too, or the watchdog keeps a
    /// stale id and SIGKILLs whatever group reuses it when the program dies.
    #[test]
    fn a_failed_exec_forgets_the_group_it_registered() {
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        // A descriptor that is no directory: `fchdir` refuses it.
        let not_a_directory = open_dev_null().unwrap();
        for (argv, cwd, kind) in [
            (
                &["/nonexistent/program"][..],
                dir.as_fd(),
                io::ErrorKind::NotFound,
            ),
            (
                &["/bin/true"][..],
                not_a_directory.as_fd(),
                io::ErrorKind::NotADirectory,
            ),
        ] {
            let (err, text) = registrations_of_a_failed_spawn(argv, cwd);
            assert_eq!(err.kind(), kind, "{argv:?}: {err}");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{argv:?}: {text:?}");
            let registered = lines[0].strip_prefix('+').expect("registered first");
            assert_eq!(lines[1], format!("-{registered}"), "{argv:?}: {text:?}");
        }
    }

    /// The child enters the directory through the descriptor: renaming the directory and
    /// putting another one under its name before the spawn changes nothing.
    #[test]
    fn the_child_enters_the_opened_directory_not_its_name() {
        let root = tempfile::tempdir().unwrap();
        let (work, other) = (root.path().join("work"), root.path().join("other"));
        std::fs::create_dir(&work).unwrap();
        std::fs::create_dir(&other).unwrap();
        let dir = std::fs::File::open(&work).unwrap();
        std::fs::rename(&work, root.path().join("work.old")).unwrap();
        std::os::unix::fs::symlink(&other, &work).unwrap();
        let setup = ChildSetup {
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            rlimits: [None, None, None],
            nice: None,
            watchdog: None,
            cgroup_procs: None,
            terminal: false,
        };
        let argv = ["/bin/sh", "-c", "touch here"].map(String::from);
        let child = spawn(&argv, dir.as_fd(), &[], quiet().child_fds(), &setup).unwrap();
        reap(child);
        assert!(root.path().join("work.old/here").exists());
        assert!(!other.join("here").exists());
    }
}
