//! No descendant escapes: what catches the processes an agent starts that leave its process
//! group (`setsid`, a double fork, a daemon), which a signal to the group never reaches.
//!
//! Three mechanisms, set up by [`contain`] when the server starts (the subreaper only in a
//! program that asked for it with [`adopt_orphans`]: the binary does, a library user or an
//! in-process test may own other children the sweeper must not touch):
//! - **cgroups v2** where the server may create them ([`super::cgroup`]): each agent runs in
//!   its own cgroup, stopped as a whole (SIGTERM to every member, then `cgroup.kill`);
//! - **the child subreaper** (`PR_SET_CHILD_SUBREAPER`) everywhere: every orphan of an agent's
//!   tree is re-parented to the server instead of init. The sweeper ([`sweep`]) reaps those
//!   that exit, and kills each that is still running when the agent it came from is gone.
//!   It tells agents apart by the environment the server gave them (`CLAUDE_SESSION_ID`,
//!   `CLAUDE_AGENT_NAME`, read from `/proc/<pid>/environ`), which survives `setsid` and
//!   forks. A process whose environment does not name an agent is left alone while the
//!   server runs (it cannot be attributed, and the server kills nothing it cannot attribute),
//!   and killed at shutdown ([`release`]);
//! - **the watchdog** ([`super::watchdog`]) for a server that dies without running any of
//!   this: it kills the server's cgroup subtree and every process carrying this server's
//!   `SESSION_MANAGER_INSTANCE` (unique per server start) that started before it died.
//!
//! Exit statuses: the agents' first processes are reaped by their own reaper
//! ([`super::process`]), never here. Every direct child the server forks is recorded in
//! [`CHILDREN`] under the same lock as the fork, and the sweeper only peeks at exited
//! children (`waitid(P_ALL, WNOWAIT)`) and reaps those not recorded.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::cgroup::{self, AgentCgroup};
use super::watchdog;
use crate::config::CgroupMode;

/// Which agent a process belongs to: its session and its name, as its environment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag {
    session: String,
    agent: String,
}

impl Tag {
    /// The tag an agent with this environment (the server's additions) carries.
    pub(crate) fn from_env(env: &[(String, String)]) -> Option<Tag> {
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Some(Tag {
            session: get(SESSION_VAR)?,
            agent: get(AGENT_VAR)?,
        })
    }

    /// The tag in `/proc/<pid>/environ`, if the process is readable and carries one.
    fn of_process(pid: libc::pid_t) -> Option<Tag> {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let get = |name: &str| {
            environ.split(|&b| b == 0).find_map(|entry| {
                let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
                Some(String::from_utf8_lossy(value).into_owned())
            })
        };
        Some(Tag {
            session: get(SESSION_VAR)?,
            agent: get(AGENT_VAR)?,
        })
    }
}

const SESSION_VAR: &str = "CLAUDE_SESSION_ID";
const AGENT_VAR: &str = "CLAUDE_AGENT_NAME";
/// The variable that marks an agent's processes as this server's, which the watchdog looks
/// for after a crash: the server's pid and a random part, new at every start. Not the URL: a
/// person's shell may export `SESSION_MANAGER_URL` to reach the server (`session-manager
/// hook`, the API client), and the watchdog must never kill what the server did not start.
pub(crate) const INSTANCE_VAR: &str = "SESSION_MANAGER_INSTANCE";

/// This server's value of [`INSTANCE_VAR`].
pub(crate) fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()))
}

/// The server's own direct children (agents' first processes), with their agent's tag.
static CHILDREN: Mutex<BTreeMap<libc::pid_t, Option<Tag>>> = Mutex::new(BTreeMap::new());

/// Wakes the sweeper: an agent's first process was reaped.
static SWEEP: Notify = Notify::const_new();

/// What [`contain`] set up.
static CONTAINMENT: OnceLock<Containment> = OnceLock::new();

/// Whether [`contain`] makes this process a child subreaper ([`adopt_orphans`]).
static ADOPT: AtomicBool = AtomicBool::new(false);

/// Servers between [`contain`] and [`release`] in this process: the last release cleans up.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Asks [`contain`] to make this process the child subreaper of its agents' descendants.
/// Only for a program that owns its process, as the `session-manager` binary does: the
/// sweeper then reaps every exited child this process did not fork through the agent layer,
/// and [`release`] kills every such child still running.
pub fn adopt_orphans() {
    ADOPT.store(true, Ordering::Relaxed);
}

#[derive(Debug)]
struct Containment {
    cgroups: Option<cgroup::Root>,
    subreaper: bool,
}

/// The record of the server's direct children, locked: hold it from before a fork until the
/// child's pid is recorded, so the sweeper never mistakes it for an adopted orphan.
pub(crate) fn children() -> MutexGuard<'static, BTreeMap<libc::pid_t, Option<Tag>>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An agent's first process was reaped: it is no longer ours, and its orphans may go.
pub(crate) fn reaped(pid: libc::pid_t) {
    children().remove(&pid);
    SWEEP.notify_one();
}

/// A new cgroup for an agent, when the server runs its agents in cgroups; `None` otherwise
/// (or when this one cannot be created: logged, and the agent runs without).
pub(crate) fn agent_cgroup() -> Option<AgentCgroup> {
    let root = CONTAINMENT.get()?.cgroups.as_ref()?;
    root.agent()
        .map_err(|err| {
            tracing::warn!(cgroup = %root.dir().display(), %err, "cannot create an agent's cgroup, it runs without");
        })
        .ok()
}

/// Sets up the containment of agents' descendants, once, before any agent starts: the
/// server's cgroup (per `mode`), the watchdog (told the cgroup and this server's
/// [`INSTANCE_VAR`] entry), then the
/// child subreaper and its sweeper. Must run inside a tokio runtime. Logs which mechanism
/// holds.
pub fn contain(mode: CgroupMode) {
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    CONTAINMENT.get_or_init(|| {
        let cgroups = match mode {
            CgroupMode::Off => None,
            CgroupMode::Auto => match cgroup::Root::create() {
                Ok(root) => Some(root),
                Err(err) => {
                    tracing::info!(
                        reason = %crate::telemetry::error_chain(&err),
                        "agents run without cgroups; the subreaper and the watchdog catch their descendants"
                    );
                    None
                }
            },
        };
        // Before the subreaper: the watchdog double-forks away, and must be adopted by init,
        // not by the server it watches.
        watchdog::start_scoped(watchdog::Scope {
            cgroup: cgroups.as_ref().map(|root| root.dir().to_path_buf()),
            env_entry: Some(format!("{INSTANCE_VAR}={}", instance())),
        });
        let subreaper = ADOPT.load(Ordering::Relaxed) && become_subreaper();
        if subreaper {
            tokio::spawn(sweeper());
        }
        tracing::info!(
            cgroup = cgroups.as_ref().map(|root| root.dir().display().to_string()),
            subreaper,
            "agent containment"
        );
        Containment { cgroups, subreaper }
    });
}

#[cfg(target_os = "linux")]
fn become_subreaper() -> bool {
    // SAFETY: prctl with an integer argument; no memory involved.
    let done = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == 0;
    if !done {
        tracing::warn!(
            err = %io::Error::last_os_error(),
            "cannot become a child subreaper: an agent's descendant that leaves its group may outlive it"
        );
    }
    done
}

#[cfg(not(target_os = "linux"))]
fn become_subreaper() -> bool {
    false
}

/// At shutdown, once every agent has stopped: kills every process the server adopted (no
/// agent is left to own one) until none is left, bounded, and removes the server's cgroup —
/// at the last server's shutdown, when one process runs several.
pub async fn release() {
    let Some(containment) = CONTAINMENT.get() else {
        return;
    };
    if ACTIVE.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    let subreaper = containment.subreaper;
    let work = move || {
        if subreaper {
            let deadline = Instant::now() + Duration::from_secs(2);
            while sweep(Verdict::All) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(root) = &containment.cgroups {
            root.remove();
        }
    };
    if let Err(err) = tokio::task::spawn_blocking(work).await {
        tracing::error!(%err, "releasing the agents' descendants failed");
    }
}

/// Which adopted processes a sweep kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Those whose agent is gone.
    Abandoned,
    /// All (shutdown).
    All,
}

/// Sweeps on every SIGCHLD and every reaped agent, for the server's life.
async fn sweeper() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = match signal(SignalKind::child()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::error!(%err, "cannot watch SIGCHLD: adopted orphans are swept only when an agent ends");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = sigchld.recv() => {}
            () = SWEEP.notified() => {}
        }
        if tokio::task::spawn_blocking(|| sweep(Verdict::Abandoned))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reaps the adopted processes that exited and kills the running ones `verdict` names;
/// returns how many adopted processes were still running.
fn sweep(verdict: Verdict) -> usize {
    reap_adopted();
    cgroup::remove_pending();
    let ours = children();
    let live: Vec<&Tag> = ours.values().flatten().collect();
    let mut running = 0;
    for pid in children_of(std::process::id()) {
        if ours.contains_key(&pid) {
            continue;
        }
        running += 1;
        let kill = match verdict {
            Verdict::All => true,
            Verdict::Abandoned => Tag::of_process(pid).is_some_and(|tag| !live.contains(&&tag)),
        };
        if kill {
            tracing::debug!(pid, "killing a descendant whose agent is gone");
            // SAFETY: kill(2) of our own child (not reaped yet, so the pid is still its).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    running
}

/// Reaps every exited child that is not one of ours, until the next exited child is ours
/// (its reaper takes it, then wakes the sweeper again) or none is left.
fn reap_adopted() {
    loop {
        // SAFETY: a zeroed siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid siginfo pointer; WNOWAIT leaves the child waitable.
        let peeked = unsafe {
            libc::waitid(
                libc::P_ALL,
                0,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid succeeded, so si_pid is set (0 when no child has exited).
        let pid = if peeked == 0 {
            unsafe { info.si_pid() }
        } else {
            0
        };
        if pid <= 0 {
            return;
        }
        let ours = children();
        if ours.contains_key(&pid) {
            return;
        }
        let mut status = 0;
        // SAFETY: waitpid of a child that is not one of ours (checked under the lock every
        // fork of ours holds), with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } <= 0 {
            return;
        }
    }
}

/// The direct children of `pid` (any thread's), running or not: from
/// `/proc/<pid>/task/*/children`, else by scanning every process's parent.
fn children_of(pid: u32) -> Vec<libc::pid_t> {
    let mut found = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let mut complete = tasks.is_ok();
    for task in tasks.into_iter().flatten().flatten() {
        match std::fs::read_to_string(task.path().join("children")) {
            Ok(text) => found.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            ),
            Err(_) => complete = false,
        }
    }
    if complete {
        return found;
    }
    let Ok(all) = std::fs::read_dir("/proc") else {
        return found;
    };
    all.flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&child| parent_of(child) == Some(pid))
        .collect()
}

/// The parent pid in `/proc/<pid>/stat`.
fn parent_of(pid: libc::pid_t) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_needs_both_the_session_and_the_agent() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        assert_eq!(
            Tag::from_env(&env(&[
                (SESSION_VAR, "s1"),
                ("X", "y"),
                (AGENT_VAR, "backend")
            ])),
            Some(Tag {
                session: "s1".into(),
                agent: "backend".into()
            })
        );
        assert_eq!(Tag::from_env(&env(&[(SESSION_VAR, "s1")])), None);
    }

    #[test]
    fn a_process_is_tagged_by_its_environment_and_found_as_a_child() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .env(SESSION_VAR, "session-x")
            .env(AGENT_VAR, "agent-y")
            .spawn()
            .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        let found = children_of(std::process::id()).contains(&pid);
        // Right after a vfork-style spawn the exec may still be setting up the new image,
        // whose environment reads empty until then: wait for it (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut tag = Tag::of_process(pid);
        while tag.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            tag = Tag::of_process(pid);
        }
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{pid} not among the children");
        assert_eq!(
            tag,
            Some(Tag {
                session: "session-x".into(),
                agent: "agent-y".into()
            })
        );
    }
}
