//! No descendant escapes: what catches the processes a child starts that leave its process
//! group (`setsid`, a double fork, a daemon), which a signal to the group never reaches.
//!
//! Three mechanisms, set up by [`contain`] when the program starts (the subreaper only in a
//! program that asked for it with [`adopt_orphans`]: the binary does, a library user or an
//! in-process test may own other children the sweeper must not touch):
//! - **cgroups v2** where the program may create them ([`super::cgroup`]): each child runs in
//!   its own cgroup, stopped as a whole (SIGTERM to every member, then `cgroup.kill`);
//! - **the child subreaper** (`PR_SET_CHILD_SUBREAPER`) everywhere: every orphan of a child's
//!   tree is re-parented to the program instead of init. The sweeper ([`sweep`]; every half
//!   second and after every reaped child) reaps those that exit, and kills each that is still running when the child it came from is gone.
//!   It tells children apart by the environment the program gave them (the
//!   [owner variables](Containment::owner_variables), e.g. the program's `CLAUDE_SESSION_ID`
//!   and `CLAUDE_AGENT_NAME`, read from `/proc/<pid>/environ`), which survives `setsid` and
//!   forks. A process whose environment does not name a child is left alone while the
//!   server runs (it cannot be attributed, and the program kills nothing it cannot attribute),
//!   and killed at shutdown ([`release`]);
//! - **the watchdog** ([`super::watchdog`]) for a server that dies without running any of
//!   this: it kills the program's cgroup subtree and every process carrying this program's
//!   [mark](Containment::mark_variable) (unique per start) that started before it died.
//!
//! Exit statuses: the children's first processes are reaped by their own reaper
//! ([`super::spawn`]), never here. Every direct child the program forks is recorded in
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

/// Which child a process belongs to: the values of the [owner
/// variables](Containment::owner_variables) in its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tag(Vec<String>);

impl Tag {
    /// The tag a child with this environment (the program's additions) carries; `None`
    /// when no owner variables are configured or one is missing.
    pub(crate) fn from_env(env: &[(String, String)], vars: &[String]) -> Option<Tag> {
        if vars.is_empty() {
            return None;
        }
        vars.iter()
            .map(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .collect::<Option<Vec<_>>>()
            .map(Tag)
    }

    /// The tag in `/proc/<pid>/environ`, if the process is readable and carries one.
    fn of_process(pid: libc::pid_t, vars: &[String]) -> Option<Tag> {
        if vars.is_empty() {
            return None;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let get = |name: &str| {
            environ.split(|&b| b == 0).find_map(|entry| {
                let value = entry.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
                Some(String::from_utf8_lossy(value).into_owned())
            })
        };
        vars.iter()
            .map(|name| get(name))
            .collect::<Option<Vec<_>>>()
            .map(Tag)
    }
}

/// The mark variable when the program names none ([`Containment::mark_variable`]).
const DEFAULT_MARK_VARIABLE: &str = "SUPERVISION_INSTANCE";

/// How this program's children are recognised, fixed at the first spawn or [`contain`],
/// whichever comes first.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The variable every child gets, set to [`instance`].
    pub(crate) mark_variable: String,
    /// The variables that tell which child an adopted orphan came from.
    pub(crate) owner_variables: Vec<String>,
}

static IDENTITY: OnceLock<Identity> = OnceLock::new();

/// How children are recognised: what [`contain`] set, else the defaults.
pub(crate) fn identity() -> &'static Identity {
    IDENTITY.get_or_init(|| Identity {
        mark_variable: DEFAULT_MARK_VARIABLE.to_owned(),
        owner_variables: Vec::new(),
    })
}

/// This program's mark: the value of the mark variable in every child's environment, its
/// pid and a random part, new at every start. The watchdog kills what carries it after a
/// crash, so it must never match a process of another program or of an earlier run.
pub fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| format!("{}-{:032x}", std::process::id(), random_u128()))
}

/// The `NAME=value` environment entry that marks this program's children.
pub(crate) fn mark_entry() -> String {
    format!("{}={}", identity().mark_variable, instance())
}

/// 128 random bits from the kernel (`getrandom(2)`, else `/dev/urandom`); the time and the
/// address of a local as the last resort, which still differ between two starts.
fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrandom fills at most `bytes.len()` bytes of a buffer we own.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n == bytes.len() as isize {
            return u128::from_ne_bytes(bytes);
        }
    }
    if let Ok(mut urandom) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if urandom.read_exact(&mut bytes).is_ok() {
            return u128::from_ne_bytes(bytes);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    now ^ (&bytes as *const _ as usize as u128)
}

/// The program's own direct children (children's first processes), with their child's tag.
static CHILDREN: Mutex<BTreeMap<libc::pid_t, Option<Tag>>> = Mutex::new(BTreeMap::new());

/// Wakes the sweeper: a child's first process was reaped.
static SWEEP: Notify = Notify::const_new();

/// What [`contain`] set up.
static CONTAINMENT: OnceLock<Contained> = OnceLock::new();

/// Whether [`contain`] makes this process a child subreaper ([`adopt_orphans`]).
static ADOPT: AtomicBool = AtomicBool::new(false);

/// Servers between [`contain`] and [`release`] in this process: the last release cleans up.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Asks [`contain`] to make this process the child subreaper of its children's descendants.
/// Only for a program that owns its process (a binary, not a library): the sweeper then
/// reaps every exited child this process did not spawn through this module, and [`release`]
/// kills every such child still running. Call it before [`contain`].
pub fn adopt_orphans() {
    ADOPT.store(true, Ordering::Relaxed);
}

/// What [`contain`] set up.
#[derive(Debug)]
struct Contained {
    cgroups: Option<cgroup::Root>,
    subreaper: bool,
}

/// Whether children run in cgroups of their own (cgroup v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Cgroups {
    /// Never: the parent-death signal, the watchdog and the subreaper only.
    Off,
    /// Where this process may create cgroups under its own (root, or a delegated subtree);
    /// without, as `Off`, saying why in the log.
    #[default]
    Auto,
}

/// How [`contain`] keeps the descendants of process children from outliving this program.
///
/// # Examples
///
/// ```
/// use supervision::process::{Cgroups, Containment};
///
/// let containment = Containment::new()
///     .cgroups(Cgroups::Off)
///     .mark_variable("MY_SERVICE_INSTANCE")
///     .owner_variables(["MY_SERVICE_CHILD"]);
/// assert_eq!(containment.get_cgroups(), Cgroups::Off);
/// ```
#[derive(Debug, Clone)]
pub struct Containment {
    cgroups: Cgroups,
    cgroup_prefix: String,
    mark_variable: String,
    owner_variables: Vec<String>,
}

impl Default for Containment {
    fn default() -> Self {
        Containment::new()
    }
}

impl Containment {
    /// Cgroups where possible, the `supervision-<pid>` cgroup, `SUPERVISION_INSTANCE` as the
    /// mark, no owner variables.
    pub fn new() -> Self {
        Containment {
            cgroups: Cgroups::Auto,
            cgroup_prefix: "supervision-".to_owned(),
            mark_variable: DEFAULT_MARK_VARIABLE.to_owned(),
            owner_variables: Vec::new(),
        }
    }

    /// Whether children run in cgroups of their own.
    pub fn cgroups(mut self, cgroups: Cgroups) -> Self {
        self.cgroups = cgroups;
        self
    }

    /// The name of this program's cgroup without its pid (`supervision-` by default): the
    /// parent of every child's cgroup, and how the cgroups of a dead earlier run are
    /// recognised and removed.
    pub fn cgroup_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.cgroup_prefix = prefix.into();
        self
    }

    /// The variable every child gets, set to [`instance`]: after a crash the watchdog kills
    /// every process that carries it and started before the crash. Pick a name nobody sets
    /// by hand.
    pub fn mark_variable(mut self, name: impl Into<String>) -> Self {
        self.mark_variable = name.into();
        self
    }

    /// Variables whose values, together, tell which child an adopted orphan came from
    /// (e.g. a session id and a name, which the program puts in each child's environment).
    /// With [`adopt_orphans`], the sweeper kills an adopted orphan once no running child
    /// has its values; without these variables, adopted orphans are killed at [`release`]
    /// only.
    pub fn owner_variables<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.owner_variables = names.into_iter().map(Into::into).collect();
        self
    }

    /// Whether children run in cgroups of their own.
    pub fn get_cgroups(&self) -> Cgroups {
        self.cgroups
    }
}

/// The record of the program's direct children, locked: hold it from before a fork until the
/// child's pid is recorded, so the sweeper never mistakes it for an adopted orphan.
pub(crate) fn children() -> MutexGuard<'static, BTreeMap<libc::pid_t, Option<Tag>>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An child's first process was reaped: it is no longer ours, and its orphans may go.
pub(crate) fn reaped(pid: libc::pid_t) {
    children().remove(&pid);
    SWEEP.notify_one();
}

/// A new cgroup for a child, when the program runs its children in cgroups; `None` otherwise
/// (or when this one cannot be created: logged, and the child runs without).
pub(crate) fn agent_cgroup() -> Option<AgentCgroup> {
    let root = CONTAINMENT.get()?.cgroups.as_ref()?;
    root.agent()
        .map_err(|err| {
            tracing::warn!(cgroup = %root.dir().display(), %err, "cannot create an agent's cgroup, it runs without");
        })
        .ok()
}

/// Sets up the containment of process children's descendants, once, before any child
/// starts: this program's cgroup (per [`Containment::cgroups`]), the watchdog (told the
/// cgroup and the mark), then — after [`adopt_orphans`] — the child subreaper and its
/// sweeper. Must run inside a tokio runtime. Logs which mechanism holds.
///
/// Optional: a program that never calls it still gets the watchdog (started at the first
/// spawn, with the default mark), the parent-death signal and group kills. Call [`release`]
/// once per `contain`, at shutdown.
pub fn contain(containment: &Containment) {
    ACTIVE.fetch_add(1, Ordering::AcqRel);
    let wanted = Identity {
        mark_variable: containment.mark_variable.clone(),
        owner_variables: containment.owner_variables.clone(),
    };
    let wanted_mark = wanted.mark_variable.clone();
    if IDENTITY.set(wanted).is_err() && identity().mark_variable != wanted_mark {
        tracing::warn!(
            mark = %identity().mark_variable,
            "a child was spawned before `contain`: its mark variable stays"
        );
    }
    CONTAINMENT.get_or_init(|| {
        let cgroups = match containment.cgroups {
            Cgroups::Off => None,
            Cgroups::Auto => match cgroup::Root::create(&containment.cgroup_prefix) {
                Ok(root) => Some(root),
                Err(err) => {
                    tracing::info!(
                        reason = %crate::error_chain(&err),
                        "agents run without cgroups; the subreaper and the watchdog catch their descendants"
                    );
                    None
                }
            },
        };
        // Before the subreaper: the watchdog double-forks away, and must be adopted by init,
        // not by the program it watches.
        watchdog::start_scoped(watchdog::Scope {
            cgroup: cgroups.as_ref().map(|root| root.dir().to_path_buf()),
            env_entry: Some(mark_entry()),
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
        Contained { cgroups, subreaper }
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

/// At shutdown, once every child has stopped: kills every process the program adopted (no
/// child is left to own one) until none is left, bounded, and removes the program's cgroup —
/// at the last [`contain`]'s release, when one process contains several times (several
/// servers in one test process).
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
    /// Those whose child is gone.
    Abandoned,
    /// All (shutdown).
    All,
}

/// How often the sweeper looks for adopted processes that exited, besides after every
/// reaped child. A timer rather than SIGCHLD: tokio's signal handling would add two crates to
/// every embedder's build, and an adopted zombie waiting this long costs nothing but its pid.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// Sweeps every [`SWEEP_EVERY`] and after every reaped child, for the program's life.
async fn sweeper() {
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP_EVERY) => {}
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
            Verdict::Abandoned => Tag::of_process(pid, &identity().owner_variables)
                .is_some_and(|tag| !live.contains(&&tag)),
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

    const SESSION_VAR: &str = "TEST_SESSION";
    const AGENT_VAR: &str = "TEST_AGENT";

    fn vars() -> Vec<String> {
        vec![SESSION_VAR.to_owned(), AGENT_VAR.to_owned()]
    }

    #[test]
    fn a_tag_needs_every_owner_variable() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        };
        assert_eq!(
            Tag::from_env(
                &env(&[(SESSION_VAR, "s1"), ("X", "y"), (AGENT_VAR, "backend")]),
                &vars()
            ),
            Some(Tag(vec!["s1".into(), "backend".into()]))
        );
        assert_eq!(Tag::from_env(&env(&[(SESSION_VAR, "s1")]), &vars()), None);
        assert_eq!(Tag::from_env(&env(&[(SESSION_VAR, "s1")]), &[]), None);
    }

    #[test]
    fn instances_differ_in_their_random_part() {
        assert!(instance().starts_with(&format!("{}-", std::process::id())));
        assert_ne!(random_u128(), random_u128());
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
        let mut tag = Tag::of_process(pid, &vars());
        while tag.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            tag = Tag::of_process(pid, &vars());
        }
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "{pid} not among the children");
        assert_eq!(tag, Some(Tag(vec!["session-x".into(), "agent-y".into()])));
    }
}
