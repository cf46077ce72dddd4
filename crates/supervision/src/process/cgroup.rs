//! cgroup v2 containment: each child runs in a cgroup of its own, so a stop reaches every
//! process it started, whatever session or group they moved to, as systemd's
//! `KillMode=control-group` does.
//!
//! Where: the cgroup2 mount found in `/proc/self/mountinfo` (hybrid hosts mount it beside the
//! v1 controllers, e.g. at `/sys/fs/cgroup/unified`) joined with the program's own v2 path (the
//! `0::` line of `/proc/self/cgroup`). Under it the program creates `<prefix><pid>` ([`Containment::cgroup_prefix`](super::Containment::cgroup_prefix)),
//! which holds no process itself, and one leaf `agent-<n>` per spawned child. No controller is
//! enabled anywhere, so the no-internal-processes rule never applies. When the program may not
//! create cgroups there (not root, nothing delegated, v1 only), [`Root::create`] fails and the
//! children run without: the subreaper and the watchdog cover them then.
//!
//! The child enters its cgroup between clone and exec by writing `0` to a `cgroup.procs`
//! descriptor the parent opened ([`AgentCgroup::procs_fd`]), so nothing it runs ever starts
//! outside. A stop sends SIGTERM to every member, and after the grace writes `1` to
//! `cgroup.kill` (Linux 5.14+; before, SIGKILL to every member until none is left). An empty
//! cgroup is removed; the program's own is removed at exit, and one left by a server that died
//! without cleaning up is removed by the next start.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a removal waits for killed members to be gone before giving up on a cgroup.
const EMPTY_WAIT: Duration = Duration::from_secs(2);

/// Why the program runs its children without cgroups.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CgroupError {
    /// `/proc/self/mountinfo` or `/proc/self/cgroup` could not be read.
    #[error("cannot read {file}")]
    Proc {
        /// The file.
        file: &'static str,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// No cgroup2 file system is mounted.
    #[error("no cgroup2 file system is mounted")]
    NoMount,
    /// The program is in no v2 cgroup (a v1-only host).
    #[error("the server is in no cgroup v2 hierarchy (no `0::` line in /proc/self/cgroup)")]
    NoV2Path,
    /// The program may not create a cgroup under its own (not delegated).
    #[error("cannot create {path}")]
    Create {
        /// The cgroup directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
}

/// The mount point of the first cgroup2 file system in `mountinfo`, with the root of the
/// hierarchy it shows (not `/` when a subtree is bind-mounted).
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<(PathBuf, String)> {
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        if fs.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = mount.split_whitespace().collect();
        let root = unescape(fields.get(3)?);
        let point = unescape(fields.get(4)?);
        Some((PathBuf::from(point), root))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v2 path of the `0::` line of `/proc/<pid>/cgroup`; `None` on a v1-only host.
pub(crate) fn own_v2_path(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_end_matches(" (deleted)").to_string())
}

/// The directory of the cgroup at `path` (as `/proc/self/cgroup` shows it) in a cgroup2 file
/// system mounted at `mount` showing the hierarchy from `mount_root`.
fn directory(mount: &Path, mount_root: &str, path: &str) -> PathBuf {
    let root = mount_root.trim_end_matches('/');
    let relative = path.strip_prefix(root).unwrap_or(path);
    mount.join(relative.trim_start_matches('/'))
}

/// The program's own cgroup v2 directory and path (as `/proc/<pid>/cgroup` shows it), from the
/// files of this process.
fn own_directory() -> Result<(PathBuf, String), CgroupError> {
    let read = |file: &'static str| {
        fs::read_to_string(file).map_err(|source| CgroupError::Proc { file, source })
    };
    let (mount, mount_root) =
        cgroup2_mount(&read("/proc/self/mountinfo")?).ok_or(CgroupError::NoMount)?;
    let path = own_v2_path(&read("/proc/self/cgroup")?).ok_or(CgroupError::NoV2Path)?;
    Ok((directory(&mount, &mount_root, &path), path))
}

/// The program's cgroup, `<prefix><pid>`: the parent of every child's.
#[derive(Debug)]
pub(crate) struct Root {
    dir: PathBuf,
    /// As `/proc/<pid>/cgroup` shows it.
    path: String,
    next: AtomicU64,
}

impl Root {
    /// Creates the program's cgroup beside its own process, after removing those left by
    /// servers that are gone.
    pub(crate) fn create(prefix: &str) -> Result<Root, CgroupError> {
        let (parent, parent_path) = own_directory()?;
        remove_stale(&parent, prefix);
        let name = format!("{prefix}{}", std::process::id());
        let dir = parent.join(&name);
        let path = format!("{}/{name}", parent_path.trim_end_matches('/'));
        match fs::create_dir(&dir) {
            Ok(()) => {}
            // Our pid's, left by a dead server whose pid we got: reuse it.
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
        // A directory we may create but not create cgroups in or open is no use: check now,
        // with a throwaway child, rather than at every spawn.
        let probe = Root {
            dir,
            path,
            next: AtomicU64::new(0),
        };
        match probe.agent() {
            Ok(cgroup) => {
                drop(cgroup);
                Ok(probe)
            }
            Err(source) => {
                let path = probe.dir.clone();
                probe.remove();
                Err(CgroupError::Create { path, source })
            }
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new, empty cgroup for one child, with its `cgroup.procs` open for the child.
    pub(crate) fn agent(&self) -> io::Result<AgentCgroup> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("agent-{n}"));
        if let Err(err) = fs::create_dir(&dir) {
            // Removed by the release of an earlier server in this process: made again.
            if err.kind() != io::ErrorKind::NotFound {
                return Err(err);
            }
            fs::create_dir(&self.dir)?;
            fs::create_dir(&dir)?;
        }
        match fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
        {
            Ok(procs) => Ok(AgentCgroup {
                dir,
                path: format!("{}/agent-{n}", self.path),
                procs: Some(procs.into()),
            }),
            Err(err) => {
                let _ = fs::remove_dir(&dir);
                Err(err)
            }
        }
    }

    /// Kills everything left in the program's cgroup and removes it: at exit.
    pub(crate) fn remove(&self) {
        kill_tree(&self.dir);
        remove_tree(&self.dir);
    }
}

/// Removes the `session-manager-<pid>` cgroups under `parent` whose server is gone, killing
/// whatever still runs in them (a server that was SIGKILLed before its watchdog could).
fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks whether the process exists.
        let gone = pid > 0
            && unsafe { libc::kill(pid, 0) } == -1
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            tracing::info!(cgroup = %entry.path().display(), "removing the cgroup of a server that is gone");
            kill_tree(&entry.path());
            remove_tree(&entry.path());
        }
    }
}

/// One child's cgroup. Dropping it kills every member and removes the cgroup, or leaves that
/// to [`remove_pending`] when members are still exiting.
#[derive(Debug)]
pub(crate) struct AgentCgroup {
    dir: PathBuf,
    /// As `/proc/<pid>/cgroup` shows it.
    path: String,
    /// `cgroup.procs`, open until the child has entered.
    procs: Option<OwnedFd>,
}

impl AgentCgroup {
    /// The descriptor the child writes `0` to between clone and exec to enter the cgroup.
    pub(crate) fn procs_fd(&self) -> Option<RawFd> {
        self.procs.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Closes the `cgroup.procs` descriptor once the child has entered (or failed).
    pub(crate) fn entered(&mut self) {
        self.procs = None;
    }

    /// Whether `pid` is in this cgroup; true when that cannot be read (the process is gone).
    /// A child whose move was refused (a cgroup we could create but whose ancestors do not
    /// let us move processes) runs outside it.
    pub(crate) fn holds(&self, pid: libc::pid_t) -> bool {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|text| own_v2_path(&text))
            .is_none_or(|path| path == self.path)
    }

    /// Sends `signal` to every member; SIGKILL goes through `cgroup.kill`. False when the
    /// cgroup had no member.
    pub(crate) fn signal(&self, signal: libc::c_int) -> bool {
        if signal == libc::SIGKILL {
            let populated = self.populated();
            kill_tree(&self.dir);
            return populated;
        }
        let members = members(&self.dir);
        for &pid in &members {
            // SAFETY: kill(2) of a member of a cgroup only this server's children enter.
            unsafe { libc::kill(pid, signal) };
        }
        !members.is_empty()
    }

    /// Whether any process is still in the cgroup.
    pub(crate) fn populated(&self) -> bool {
        populated(&self.dir)
    }

    /// Removes the cgroup if it is empty; false when it still has members (true when removal
    /// failed otherwise, as retrying is pointless then).
    fn try_remove(&self) -> bool {
        match fs::remove_dir(&self.dir) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::NotFound => true,
            Err(err) if err.raw_os_error() == Some(libc::EBUSY) => false,
            Err(err) => {
                tracing::warn!(cgroup = %self.dir.display(), %err, "cannot remove an agent's cgroup");
                true
            }
        }
    }
}

impl Drop for AgentCgroup {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
        if !self.try_remove() {
            pending().push(self.dir.clone());
        }
    }
}

/// Agent cgroups killed but not yet empty when dropped, removed by [`remove_pending`].
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the killed child cgroups that have emptied since they were dropped; called when
/// a child of the program exited (the last member of a killed cgroup is one: the subreaper
/// adopts every orphan of a child).
pub(crate) fn remove_pending() {
    let dirs = std::mem::take(&mut *pending());
    let busy: Vec<PathBuf> = dirs
        .into_iter()
        .filter(|dir| match fs::remove_dir(dir) {
            Err(err) => err.raw_os_error() == Some(libc::EBUSY),
            Ok(()) => false,
        })
        .collect();
    pending().extend(busy);
}

/// `cgroup.kill` of `dir` (kills its whole subtree); where the kernel lacks it, SIGKILL to
/// every member of every cgroup in the subtree until none is left (bounded).
fn kill_tree(dir: &Path) {
    let killed = fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.kill"))
        .and_then(|mut file| file.write_all(b"1"));
    if killed.is_ok() {
        return;
    }
    let deadline = Instant::now() + EMPTY_WAIT;
    while populated(dir) && Instant::now() < deadline {
        for cgroup in subtree(dir) {
            for pid in members(&cgroup) {
                // SAFETY: kill(2) of a member of one of the program's own cgroups.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Removes `dir` and every cgroup under it, deepest first, waiting (bounded) for killed
/// members to be gone.
fn remove_tree(dir: &Path) {
    let deadline = Instant::now() + EMPTY_WAIT;
    while populated(dir) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut all = subtree(dir);
    all.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for cgroup in all {
        if let Err(err) = fs::remove_dir(&cgroup) {
            if err.kind() != io::ErrorKind::NotFound {
                tracing::warn!(cgroup = %cgroup.display(), %err, "cannot remove a cgroup");
            }
        }
    }
}

/// `dir` and every cgroup below it.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if let Ok(entries) = fs::read_dir(&found[i]) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    found.push(entry.path());
                }
            }
        }
        i += 1;
    }
    found
}

/// The pids in `dir/cgroup.procs`.
fn members(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether `dir/cgroup.events` says `populated 1` (a member anywhere in the subtree).
fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|text| text.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/3f22ad8198a988c8c62afa738d42445e
1:cpu:/
0::/
";
    const UNIFIED_MOUNTINFO: &str = "\
22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw
25 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const UNIFIED_CGROUP: &str =
        "0::/user.slice/user-1000.slice/user@1000.service/app.slice/sm.service\n";
    const V1_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";
    const V1_CGROUP: &str = "2:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n";

    fn locate(mountinfo: &str, cgroup: &str) -> Option<PathBuf> {
        let (mount, root) = cgroup2_mount(mountinfo)?;
        Some(directory(&mount, &root, &own_v2_path(cgroup)?))
    }

    #[test]
    fn a_hybrid_host_has_cgroup2_beside_the_v1_controllers() {
        assert_eq!(
            locate(HYBRID_MOUNTINFO, HYBRID_CGROUP),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn a_unified_host_joins_the_mount_and_the_own_path() {
        assert_eq!(
            locate(UNIFIED_MOUNTINFO, UNIFIED_CGROUP),
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/sm.service"
            ))
        );
    }

    #[test]
    fn a_v1_only_host_has_neither_mount_nor_path() {
        assert_eq!(cgroup2_mount(V1_MOUNTINFO), None);
        assert_eq!(own_v2_path(V1_CGROUP), None);
    }

    #[test]
    fn a_bind_mounted_subtree_and_escaped_mount_points_resolve() {
        let mountinfo = "50 40 0:38 /docker/abc /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let (mount, root) = cgroup2_mount(mountinfo).unwrap();
        assert_eq!(mount, PathBuf::from("/sys/fs/my cgroup"));
        assert_eq!(root, "/docker/abc");
        assert_eq!(
            directory(&mount, &root, "/docker/abc/worker"),
            PathBuf::from("/sys/fs/my cgroup/worker")
        );
    }
}
