//! The orphan guard: a tiny process that outlives the program by a moment and kills every
//! child process group, the program's cgroup and every process carrying the program's mark that
//! the program leaves behind, however the program died.
//!
//! The parent-death signal only reaches a child's first process, and `post_stop` and
//! kill-on-drop run only when the program lives long enough to run them. So at the first child
//! spawn the program forks (twice, so the guard is nobody's zombie) a watchdog that holds the
//! read end of a pipe. Every child, between fork and exec, writes `+PGID` into the pipe; the
//! server writes `-PGID` once it has killed and reaped a group. When the program dies — exit,
//! panic, SIGKILL — the kernel closes its end, the watchdog reads end-of-file, sends SIGKILL to
//! every group still registered, and exits.
//!
//! Groups are not enough: a descendant that left its group (`setsid`, a double fork, a
//! daemon) is the program's while it runs (the program is their subreaper, see
//! [`super::orphans`]) but init's once the program is dead. So when the program scoped it
//! ([`start_scoped`]) the watchdog also writes `1` to `cgroup.kill` of the program's cgroup
//! (its whole subtree, then removes the emptied cgroups), and scans `/proc` for every process
//! whose environment holds the program's mark entry (`<variable>=<pid>-<random>`, see
//! [`super::instance`]) and that started before the program died or is the child
//! of one of those: each is stopped (SIGSTOP) as it is found, scan after scan until one finds
//! none, so nothing forks away meanwhile; then all are killed.
//!
//! The watchdog is a forked copy of a multi-threaded program, so it may only make
//! async-signal-safe calls: it runs on memory allocated before the fork and raw `libc` calls,
//! never the allocator, locks or the Rust runtime. It leaves the program's session (so a
//! terminal's Ctrl-C does not reach it), ignores SIGINT/SIGTERM/SIGHUP, closes every other
//! descriptor (so it holds no socket or pipe of the program's open), and calls itself
//! `sm-watchdog`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Most process groups the watchdog tracks at once; registrations past it are ignored (their
/// first process still has the parent-death signal).
const CAPACITY: usize = 1 << 16;

/// The program's end of the pipe. Non-blocking: a stuck watchdog must never stall a spawn.
#[derive(Debug)]
pub(crate) struct Watchdog {
    pipe: OwnedFd,
}

static GLOBAL: OnceLock<Option<Watchdog>> = OnceLock::new();

/// The watchdog if it was started; never starts it.
pub(crate) fn started() -> Option<&'static Watchdog> {
    GLOBAL.get().and_then(Option::as_ref)
}

/// The process's watchdog, started on first use (scoped to the mark of this program's
/// children, see [`super::instance`]). `None` when it could not be started (the error is
/// logged once); children then rely on the parent-death signal and kill-on-drop alone.
pub(crate) fn global() -> Option<&'static Watchdog> {
    GLOBAL
        .get_or_init(|| {
            start_logged(&Scope {
                cgroup: None,
                env_entry: Some(super::orphans::mark_entry()),
            })
        })
        .as_ref()
}

/// What the watchdog kills besides the registered groups.
#[derive(Debug, Default)]
pub(crate) struct Scope {
    /// The program's cgroup: killed (`cgroup.kill`) and removed with its children's cgroups.
    pub(crate) cgroup: Option<PathBuf>,
    /// An environment entry (`NAME=value`) that marks the program's children and all they
    /// start: every process holding it that started before the program died is killed.
    pub(crate) env_entry: Option<String>,
}

/// Starts the watchdog with `scope`, unless it already runs (then the scope is not added: the
/// server calls this before any child spawns).
pub(crate) fn start_scoped(scope: Scope) {
    GLOBAL.get_or_init(|| start_logged(&scope));
}

fn start_logged(scope: &Scope) -> Option<Watchdog> {
    match Watchdog::start(scope) {
        Ok(watchdog) => Some(watchdog),
        Err(err) => {
            tracing::error!("cannot start the orphan watchdog, agents' grandchildren may outlive a crash: {err}");
            None
        }
    }
}

/// The scope, in the form the forked watchdog uses: C strings and numbers, prepared before
/// the fork.
struct Prepared {
    cgroup: Option<CString>,
    env_entry: Option<Vec<u8>>,
    /// Clock ticks per second (`/proc/<pid>/stat` start times are in ticks since boot).
    ticks_per_second: i64,
    /// Room to list directories and read `/proc` files without allocating.
    scratch: Box<[u8]>,
    /// The processes a scan stopped, killed when no scan finds more.
    frozen: Box<[libc::pid_t]>,
}

impl Prepared {
    fn new(scope: &Scope) -> io::Result<Prepared> {
        let cgroup = scope
            .cgroup
            .as_ref()
            .map(|dir| CString::new(dir.as_os_str().as_bytes()))
            .transpose()
            .map_err(io::Error::other)?;
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(Prepared {
            cgroup,
            env_entry: scope.env_entry.as_ref().map(|e| e.as_bytes().to_vec()),
            ticks_per_second: if ticks > 0 { ticks as i64 } else { 100 },
            scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
            frozen: vec![0; 4096].into_boxed_slice(),
        })
    }
}

impl Watchdog {
    fn start(scope: &Scope) -> io::Result<Watchdog> {
        let mut prepared = Prepared::new(scope)?;
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
                        &mut prepared,
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

    /// The descriptor a child writes its registration to between fork and exec.
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

/// Registers the calling process's group; called in a child's child between fork and exec,
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
unsafe fn watch(
    read: RawFd,
    write: RawFd,
    groups: &mut [libc::pid_t],
    buffer: &mut [u8],
    scope: &mut Prepared,
) -> ! {
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
    // Everything else the program had open (its listener, its database) is closed here:
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
    let died_at = boot_ticks(scope.ticks_per_second);
    let cgroup = scope.cgroup.as_ref().map(|dir| {
        libc::open(
            dir.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    });
    if let Some(dir) = cgroup.filter(|&fd| fd >= 0) {
        write_file(dir, c"cgroup.kill", b"1");
    }
    for &pgid in &groups[..count] {
        libc::kill(-pgid, libc::SIGKILL);
    }
    if let Some(entry) = &scope.env_entry {
        // Killing a process re-parents its children, which may be forking right now: scan
        // again until a scan finds none (bounded).
        for _ in 0..100 {
            if kill_marked(entry, died_at, &mut scope.scratch, &mut scope.frozen) == 0 {
                break;
            }
        }
    }
    if let (Some(dir), Some(path)) = (cgroup.filter(|&fd| fd >= 0), &scope.cgroup) {
        remove_cgroups(dir, path, &mut scope.scratch);
    }
    libc::_exit(0)
}

/// Now, in clock ticks since boot (the unit of a process's start time in /proc).
unsafe fn boot_ticks(ticks_per_second: i64) -> u64 {
    let mut now: libc::timespec = std::mem::zeroed();
    libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now);
    let ticks = (now.tv_sec as i64) * ticks_per_second
        + (now.tv_nsec as i64) / (1_000_000_000 / ticks_per_second.max(1));
    u64::try_from(ticks).unwrap_or(0)
}

/// Writes `data` to the file `name` in the directory `dir`; false when that failed.
unsafe fn write_file(dir: RawFd, name: &std::ffi::CStr, data: &[u8]) -> bool {
    let fd = libc::openat(dir, name.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let written = libc::write(fd, data.as_ptr().cast(), data.len());
    libc::close(fd);
    written == data.len() as isize
}

/// Reads the file `name` in `dir` into `out`; returns the bytes read (0 on any failure).
unsafe fn read_file(dir: RawFd, name: &[u8], out: &mut [u8]) -> usize {
    let fd = libc::openat(dir, name.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return 0;
    }
    let mut len = 0;
    while len < out.len() {
        let n = libc::read(fd, out[len..].as_mut_ptr().cast(), out.len() - len);
        if n <= 0 {
            break;
        }
        len += n as usize;
    }
    libc::close(fd);
    len
}

/// Calls `each` with the name (NUL-terminated) of every entry of the directory open as `dir`,
/// using `buffer` for the listing (`getdents64`).
unsafe fn for_each_entry(dir: RawFd, buffer: &mut [u8], mut each: impl FnMut(&[u8])) {
    libc::lseek(dir, 0, libc::SEEK_SET);
    loop {
        let n = libc::syscall(libc::SYS_getdents64, dir, buffer.as_mut_ptr(), buffer.len());
        if n <= 0 {
            return;
        }
        let mut at = 0usize;
        while at + 19 < n as usize {
            // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
            let reclen = u16::from_ne_bytes([buffer[at + 16], buffer[at + 17]]) as usize;
            if reclen == 0 {
                return;
            }
            let name = &buffer[at + 19..(at + reclen).min(n as usize)];
            let end = name
                .iter()
                .position(|&b| b == 0)
                .map_or(name.len(), |e| e + 1);
            each(&name[..end]);
            at += reclen;
        }
    }
}

/// Kills every process whose environment holds `entry` and that started at or before
/// `died_at` — or later, as the child of one of those: each is first stopped (SIGSTOP), scan
/// after scan until one stops nobody new, so none can fork away while the rest is found;
/// then all are killed. Returns how many were killed.
unsafe fn kill_marked(
    entry: &[u8],
    died_at: u64,
    scratch: &mut [u8],
    frozen: &mut [libc::pid_t],
) -> usize {
    let proc_dir = libc::open(
        c"/proc".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if proc_dir < 0 {
        return 0;
    }
    let mut count = 0;
    let mut killed = 0;
    for _ in 0..100 {
        let before = count + killed;
        stop_marked(
            proc_dir,
            entry,
            died_at,
            scratch,
            frozen,
            &mut count,
            &mut killed,
        );
        if count + killed == before {
            break;
        }
    }
    for &pid in &frozen[..count] {
        libc::kill(pid, libc::SIGKILL);
    }
    libc::close(proc_dir);
    count + killed
}

/// One scan of /proc for [`kill_marked`]: stops each new match and records it in
/// `frozen[..count]` (kills it at once when the table is full, counted in `killed`).
unsafe fn stop_marked(
    proc_dir: RawFd,
    entry: &[u8],
    died_at: u64,
    scratch: &mut [u8],
    frozen: &mut [libc::pid_t],
    count: &mut usize,
    killed: &mut usize,
) {
    let own = libc::getpid();
    let (listing, file) = scratch.split_at_mut(4096);
    // Pids first (the listing buffer is reused by every getdents call).
    let mut pids = [0 as libc::pid_t; 256];
    let mut resume_after: libc::pid_t = 0;
    loop {
        let mut listed = 0;
        let mut more = false;
        for_each_entry(proc_dir, listing, |name| {
            let pid = parse_pid(name);
            if pid > resume_after && pid != own {
                if listed < pids.len() {
                    pids[listed] = pid;
                    listed += 1;
                } else {
                    more = true;
                }
            }
        });
        // Listing order is not numeric: take the smallest batch above the last one.
        pids[..listed].sort_unstable();
        for &pid in &pids[..listed] {
            if frozen[..*count].contains(&pid) {
                continue;
            }
            let parents = &frozen[..*count];
            if marked(proc_dir, pid, entry, died_at, parents, file) {
                if *count < frozen.len() {
                    libc::kill(pid, libc::SIGSTOP);
                    frozen[*count] = pid;
                    *count += 1;
                } else {
                    libc::kill(pid, libc::SIGKILL);
                    *killed += 1;
                }
            }
        }
        if !more || listed == 0 {
            break;
        }
        resume_after = pids[listed - 1];
    }
}

/// Digits (NUL-terminated) as a pid; 0 when not a number.
fn parse_pid(name: &[u8]) -> libc::pid_t {
    let mut pid: libc::pid_t = 0;
    for &b in name.iter().take_while(|&&b| b != 0) {
        if !b.is_ascii_digit() {
            return 0;
        }
        pid = match pid
            .checked_mul(10)
            .and_then(|p| p.checked_add(libc::pid_t::from(b - b'0')))
        {
            Some(p) => p,
            None => return 0,
        };
    }
    pid
}

/// Whether `pid` started at or before `died_at` (or is a child of one of `parents`) and its
/// environment holds `entry`.
unsafe fn marked(
    proc_dir: RawFd,
    pid: libc::pid_t,
    entry: &[u8],
    died_at: u64,
    parents: &[libc::pid_t],
    buf: &mut [u8],
) -> bool {
    let mut path = [0u8; 32];
    let stat_len = pid_path(pid, b"/stat", &mut path);
    let len = read_file(proc_dir, &path[..stat_len], buf);
    match parent_and_start(&buf[..len]) {
        Some((parent, start)) if start <= died_at || parents.contains(&parent) => {}
        _ => return false,
    }
    let environ_len = pid_path(pid, b"/environ", &mut path);
    let fd = libc::openat(
        proc_dir,
        path[..environ_len].as_ptr().cast(),
        libc::O_RDONLY | libc::O_CLOEXEC,
    );
    if fd < 0 {
        return false;
    }
    let mut matcher = EntryMatcher::new(entry);
    loop {
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        if n <= 0 {
            break;
        }
        if matcher.feed(&buf[..n as usize]) {
            libc::close(fd);
            return true;
        }
    }
    libc::close(fd);
    matcher.finish()
}

/// `<pid><suffix>\0` into `out`; returns its length with the NUL.
fn pid_path(pid: libc::pid_t, suffix: &[u8], out: &mut [u8; 32]) -> usize {
    let mut line = [0u8; 24];
    let len = encode(b'+', pid, &mut line);
    // `encode` wrote `+digits\n`: keep the digits.
    let digits = &line[1..len - 1];
    out[..digits.len()].copy_from_slice(digits);
    out[digits.len()..digits.len() + suffix.len()].copy_from_slice(suffix);
    out[digits.len() + suffix.len()] = 0;
    digits.len() + suffix.len() + 1
}

/// The parent (field 4) and the start time (field 22) of a `/proc/<pid>/stat` line.
fn parent_and_start(stat: &[u8]) -> Option<(libc::pid_t, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let mut fields = stat[close + 1..]
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty());
    let parent = number(fields.nth(1)?)?;
    let start = number(fields.nth(17)?)?;
    Some((libc::pid_t::try_from(parent).ok()?, start))
}

/// Decimal digits as a number; `None` for anything else or an overflow.
fn number(digits: &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

/// Finds one exact `NAME=value` entry in a NUL-separated environment read in pieces.
struct EntryMatcher<'a> {
    entry: &'a [u8],
    /// How much of `entry` the current environment entry matched so far; `None` once it
    /// differs.
    matched: Option<usize>,
}

impl<'a> EntryMatcher<'a> {
    fn new(entry: &'a [u8]) -> EntryMatcher<'a> {
        EntryMatcher {
            entry,
            matched: Some(0),
        }
    }

    /// Feeds the next piece; true once a whole entry equal to `entry` was seen.
    fn feed(&mut self, piece: &[u8]) -> bool {
        for &b in piece {
            if b == 0 {
                if self.finish() {
                    return true;
                }
                self.matched = Some(0);
            } else {
                self.matched = self
                    .matched
                    .filter(|&m| self.entry.get(m) == Some(&b))
                    .map(|m| m + 1);
            }
        }
        false
    }

    /// Whether the last (unterminated) entry matched.
    fn finish(&self) -> bool {
        self.matched == Some(self.entry.len())
    }
}

/// Waits (bounded) until the program's cgroup is empty, then removes the children's cgroups and
/// it.
unsafe fn remove_cgroups(dir: RawFd, path: &std::ffi::CStr, scratch: &mut [u8]) {
    for _ in 0..400 {
        let len = read_file(dir, b"cgroup.events\0", scratch);
        if !populated(&scratch[..len]) {
            break;
        }
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 5_000_000,
        };
        libc::nanosleep(&pause, std::ptr::null_mut());
    }
    let (listing, _) = scratch.split_at_mut(4096);
    let mut names = [[0u8; 32]; 64];
    // Children's cgroups are `agent-<n>`: collected first, as removing while listing is not
    // guaranteed to visit every entry.
    for _ in 0..64 {
        let mut count = 0;
        for_each_entry(dir, listing, |name| {
            if name.starts_with(b"agent-") && name.len() <= 32 && count < names.len() {
                names[count][..name.len()].copy_from_slice(name);
                count += 1;
            }
        });
        for name in &names[..count] {
            libc::unlinkat(dir, name.as_ptr().cast(), libc::AT_REMOVEDIR);
        }
        if count < names.len() {
            break;
        }
    }
    libc::close(dir);
    libc::rmdir(path.as_ptr());
}

/// Whether a `cgroup.events` text says `populated 1`.
fn populated(events: &[u8]) -> bool {
    events
        .split(|&b| b == b'\n')
        .any(|line| line == b"populated 1")
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
mod tests;
