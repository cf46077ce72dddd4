//! One child's OS process, as a small state machine: spawned → running → terminating
//! (SIGTERM to the group, grace) → exited or killed (SIGKILL to the group).
//!
//! The process leads its own process group, so a stop or a kill reaches everything it forked.
//! Four things make sure nothing outlives the program, however it ends:
//! - the parent-death signal (Linux): the kernel sends SIGKILL to the first process when the
//!   server thread that forked it dies;
//! - the [`Group`] guard: dropping it (normal drop, ractor kill, task abort) sends SIGKILL to
//!   the whole group;
//! - the [`Reaper`]'s kill-on-drop on the first process;
//! - the [`watchdog`](super::watchdog), which kills every group the program leaves behind
//!   when it dies without running any destructor (SIGKILL, abort).
//!
//! What leaves the group (`setsid`, double forks, daemons) is caught by the child's cgroup
//! where the program has cgroups (the child enters it first thing before exec; the [`Group`]
//! signals and kills it with the group), by the program as child subreaper, and by the
//! watchdog: see [`orphans`](super::orphans).
//!
//! On Linux the process is spawned with `clone(CLONE_VM | CLONE_VFORK)` ([`clone`]), not
//! `fork`: a restart then costs no copy of the program's page tables. The child-side setup
//! runs between clone and exec, where only async-signal-safe calls are allowed: everything it
//! needs is computed before. Elsewhere (or where clone is refused) `std`'s fork path runs the
//! same setup. The first process is reaped through a pidfd (Linux 5.3+) or, failing that, a
//! blocking `waitpid` on tokio's blocking pool.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::cgroup::AgentCgroup;
#[cfg(target_os = "linux")]
use super::clone;
use super::exit::ProcessExit;
use super::limits::Limits;
use super::orphans::{self, Tag};
use super::pty::{self, TerminalSize};
use super::reaper::Reaper;
use super::stdio::{Output, Stdio};
use super::watchdog;

/// How often a stop looks whether the rest of a group (grandchildren) is gone yet.
const GROUP_POLL: Duration = Duration::from_millis(5);

/// What to run.
#[derive(Debug, Clone)]
pub(crate) struct Spec<'a> {
    /// Program and arguments; never empty.
    pub(crate) argv: &'a [String],
    /// The working directory, open: the child enters it with `fchdir`, so what was
    /// validated is where it runs (no second lookup of the name).
    pub(crate) cwd: BorrowedFd<'a>,
    /// Variables set on top of this program's environment.
    pub(crate) env: &'a [(String, String)],
    /// Prefixes of this program's variables the child must not inherit (a program's own
    /// settings: a token must never leak to a child).
    pub(crate) hide_prefixes: &'a [String],
    /// Resource limits.
    pub(crate) limits: &'a Limits,
    /// A terminal of this size instead of pipes.
    pub(crate) terminal: Option<TerminalSize>,
}

/// Owns a process group, and the child's cgroup when it has one: dropping it kills both.
#[derive(Debug)]
pub(crate) struct Group {
    pgid: libc::pid_t,
    cgroup: Option<AgentCgroup>,
}

impl Group {
    /// Sends `signal` to every process of the group and of the cgroup; false when none is
    /// left.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        let group = unsafe { libc::kill(-self.pgid, signal) == 0 };
        let cgroup = self.cgroup.as_ref().is_some_and(|c| c.signal(signal));
        group || cgroup
    }

    /// Whether any process is still in the group (zombies included) or in the cgroup.
    fn alive(&self) -> bool {
        // SAFETY: signal 0 only checks whether the group exists.
        let group = unsafe { libc::kill(-self.pgid, 0) == 0 };
        group || self.cgroup.as_ref().is_some_and(AgentCgroup::populated)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The cgroup (dropped after this) is killed through `cgroup.kill` and removed.
        // SAFETY: kill(2) with a negative pid signals that process group.
        unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        if let Some(watchdog) = watchdog::started() {
            watchdog.forget(self.pgid);
        }
    }
}

/// A running process child: the leader of its own process group, watched for its exit.
///
/// Dropping it kills the whole group (and the child's cgroup) with SIGKILL: a `Process`
/// never leaks what it started, whether its owner returns, panics or is aborted.
#[derive(Debug)]
pub struct Process {
    pid: u32,
    group: Group,
    exit: watch::Receiver<Option<ProcessExit>>,
}

/// A freshly spawned process, not yet watched: see [`Spawned::watch`]. Dropping it kills
/// the group and reaps the process.
#[derive(Debug)]
pub struct Spawned {
    pid: u32,
    group: Group,
    reaper: Reaper,
    output: Output,
}

/// Spawns the process in its own group (and its own cgroup, where the program has cgroups),
/// with the limits, the parent-death signal and the watchdog registration applied before
/// exec. Synchronous: the exec has happened (or failed) when it returns. Must run inside a
/// tokio runtime (the pipes register with its reactor).
pub(crate) fn spawn(spec: &Spec<'_>) -> io::Result<Spawned> {
    let env = child_environment(spec.env, spec.hide_prefixes);
    let stdio = Stdio::open(spec.terminal)?;
    let mut cgroup = orphans::agent_cgroup();
    let setup = ChildSetup::new(
        spec.limits,
        cgroup.as_ref().and_then(AgentCgroup::procs_fd),
        stdio.is_terminal(),
    );
    // Held from before the fork until the pid is recorded: the orphan sweeper must never
    // take this child for an adopted process and reap it.
    let mut children = orphans::children();
    let tag = Tag::from_env(spec.env, &orphans::identity().owner_variables);
    #[cfg(target_os = "linux")]
    let spawned = match clone::spawn(spec.argv, spec.cwd, &env, stdio.child_fds(), &setup) {
        // A kernel or sandbox without clone: the portable path.
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => {
            fork_spawn(spec, &env, &stdio, setup)
        }
        other => other,
    };
    #[cfg(not(target_os = "linux"))]
    let spawned = fork_spawn(spec, &env, &stdio, setup);
    if let Some(cgroup) = &mut cgroup {
        cgroup.entered();
    }
    let pid = spawned?;
    children.insert(pid, tag);
    drop(children);
    if cgroup.as_ref().is_some_and(|c| !c.holds(pid)) {
        tracing::warn!(pid, "the agent could not enter its cgroup; it runs without");
        cgroup = None;
    }
    // From here on a failure still kills and reaps the process (the reaper's drop).
    let reaper = Reaper::new(pid);
    let group = Group { pgid: pid, cgroup };
    Ok(Spawned {
        pid: u32::try_from(pid).map_err(io::Error::other)?,
        group,
        reaper,
        output: stdio.into_output()?,
    })
}

/// This program's environment without the hidden prefixes (a program's own settings: a
/// token must never leak to a child), then the child's variables on top, then the mark the
/// watchdog knows this program's children by (which always wins).
fn child_environment(ours: &[(String, String)], hidden: &[String]) -> Vec<(OsString, OsString)> {
    let mark = &orphans::identity().mark_variable;
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            !hidden
                .iter()
                .any(|prefix| name.starts_with(prefix.as_str()))
        })
        .filter(|(name, _)| !ours.iter().any(|(k, _)| name == k.as_str()))
        .filter(|(name, _)| name != mark.as_str())
        .collect();
    env.extend(
        ours.iter()
            .filter(|(k, _)| k != mark)
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
    );
    env.push((OsString::from(mark), OsString::from(orphans::instance())));
    env
}

/// `std`'s spawn with the setup in `pre_exec` (which makes it fork): the portable path.
fn fork_spawn(
    spec: &Spec<'_>,
    env: &[(OsString, OsString)],
    stdio: &Stdio,
    setup: ChildSetup,
) -> io::Result<libc::pid_t> {
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty command"))?;
    let [stdin, stdout, stderr] = stdio.child_copies()?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    // A terminal's child leads a new session, which a group leader cannot start: the setup
    // makes it one (`setsid` also makes it its group's leader).
    if !setup.terminal {
        command.process_group(0);
    }
    let cwd = spec.cwd.as_raw_fd();
    // SAFETY: `ChildSetup::apply` and `fchdir` make only async-signal-safe calls on data
    // computed before the fork (see its comment); `cwd` stays open until `spawn` returns.
    unsafe {
        command.pre_exec(move || {
            setup.apply()?;
            if libc::fchdir(cwd) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // `child` is dropped without a wait: the caller's reaper waits for its pid.
    let child = command.spawn()?;
    libc::pid_t::try_from(child.id()).map_err(io::Error::other)
}

impl Spawned {
    /// The process id (also its group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Starts waiting for the exit: `on_exit` is called with it from the waiting task, right
    /// after the [`Process`]'s own watch has it. Returns the process and its output: pipes,
    /// or the terminal it runs on.
    ///
    /// Must run inside a tokio runtime. Read the output to its end (or drop it): a child
    /// whose pipe or terminal is full blocks on its next write.
    pub fn watch<F>(self, on_exit: F) -> (Process, Output)
    where
        F: FnOnce(ProcessExit) + Send + 'static,
    {
        let Spawned {
            pid,
            group,
            mut reaper,
            output,
        } = self;
        let (report, exit) = watch::channel(None);
        tokio::spawn(async move {
            let status = reaper.wait().await.map(ExitStatus::from_raw);
            let exit = ProcessExit::from_wait(status);
            report.send_replace(Some(exit));
            on_exit(exit);
        });
        (Process { pid, group, exit }, output)
    }
}

impl Process {
    /// The process id (also its group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit, once the process has been reaped.
    pub async fn exited(&mut self) -> ProcessExit {
        match self.exit.wait_for(Option::is_some).await {
            Ok(exit) => exit.unwrap_or_else(|| ProcessExit::from_wait(Err(io::Error::other("")))),
            // The waiting task is gone (runtime shutting down): the group guard kills it.
            Err(_) => ProcessExit::from_wait(Err(io::Error::other("lost"))),
        }
    }

    /// Stops the whole group: SIGTERM, up to `grace` for the first process and then for the
    /// rest of the group, then SIGKILL to whatever is left. Returns how the first process
    /// ended.
    pub async fn terminate(&mut self, grace: Duration) -> ProcessExit {
        let deadline = Instant::now() + grace;
        self.group.signal(libc::SIGTERM);
        let exit = match tokio::time::timeout_at(deadline, self.exited()).await {
            Ok(exit) => exit,
            Err(_) => {
                self.group.signal(libc::SIGKILL);
                self.exited().await
            }
        };
        while self.group.alive() && Instant::now() < deadline {
            tokio::time::sleep(GROUP_POLL).await;
        }
        self.group.signal(libc::SIGKILL);
        exit
    }

    /// Kills the whole group at once and waits for the first process.
    pub async fn kill(&mut self) -> ProcessExit {
        self.group.signal(libc::SIGKILL);
        self.exited().await
    }
}

/// What the child does between fork (or clone) and exec, prepared in the parent.
///
/// Between fork and exec a child of a multi-threaded program may only make
/// async-signal-safe calls: `prctl`, `getppid`, `setpgid`, `getpgrp`, `setrlimit`,
/// `setpriority` and `write` are; nothing here allocates.
pub(crate) struct ChildSetup {
    /// The child's `cgroup.procs`, open for writing: the child enters its cgroup first.
    pub(super) cgroup_procs: Option<std::os::fd::RawFd>,
    pub(super) parent: libc::pid_t,
    pub(super) rlimits: [Option<(RlimitResource, libc::rlim_t)>; 3],
    pub(super) nice: Option<libc::c_int>,
    pub(super) watchdog: Option<std::os::fd::RawFd>,
    /// The child runs on a terminal (its descriptor 0): it leads a new session with that
    /// terminal as its controlling one.
    pub(super) terminal: bool,
}

#[cfg(target_os = "linux")]
type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_os = "linux"))]
type RlimitResource = libc::c_int;

impl ChildSetup {
    fn new(
        limits: &Limits,
        cgroup_procs: Option<std::os::fd::RawFd>,
        terminal: bool,
    ) -> ChildSetup {
        let mib = |mb: u64| mb.saturating_mul(1024 * 1024) as libc::rlim_t;
        ChildSetup {
            cgroup_procs,
            // SAFETY: getpid cannot fail.
            parent: unsafe { libc::getpid() },
            rlimits: [
                limits.address_space_mb.map(|mb| (libc::RLIMIT_AS, mib(mb))),
                limits
                    .open_files
                    .map(|n| (libc::RLIMIT_NOFILE, n as libc::rlim_t)),
                limits
                    .cpu_seconds
                    .map(|s| (libc::RLIMIT_CPU, s as libc::rlim_t)),
            ],
            nice: limits.nice,
            watchdog: watchdog::global().map(|w| w.raw_fd()),
            terminal,
        }
    }

    pub(crate) fn apply(&self) -> io::Result<()> {
        // SAFETY: each call below is async-signal-safe and touches only local data.
        unsafe {
            // First, so that nothing the child does happens outside its cgroup ("0" is the
            // writing process). A refusal is not fatal: the parent sees it (`holds`) and the
            // child runs without, as where cgroups are not delegated.
            if let Some(fd) = self.cgroup_procs {
                libc::write(fd, b"0".as_ptr().cast(), 1);
            }
            #[cfg(target_os = "linux")]
            {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The program died between fork and prctl: the signal would never come.
                if libc::getppid() != self.parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            // Lead a group of our own before registering it (tokio asks for this too; the
            // order of its own setup and this closure is not documented). On a terminal, a
            // session of our own, which is a group of our own too.
            if self.terminal {
                pty::become_controlling()?;
            } else {
                libc::setpgid(0, 0);
            }
            for (resource, value) in self.rlimits.iter().flatten() {
                let limit = libc::rlimit {
                    rlim_cur: *value,
                    rlim_max: *value,
                };
                if libc::setrlimit(*resource, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(nice) = self.nice {
                if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(fd) = self.watchdog {
                watchdog::register_self(fd);
            }
        }
        Ok(())
    }
}
