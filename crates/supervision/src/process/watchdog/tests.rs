//! The watchdog's line protocol, its /proc parsing and its scans against real processes.

use super::*;
use std::time::{Duration, Instant};

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
fn an_environment_entry_is_found_whole_across_pieces() {
    let entry = b"SESSION_MANAGER_URL=http://127.0.0.1:80";
    let environ = b"A=1\0SESSION_MANAGER_URL=http://127.0.0.1:8080\0SESSION_MANAGER_URL=http://127.0.0.1:80\0B=2\0";
    for piece in [1, 3, 7, environ.len()] {
        let mut matcher = EntryMatcher::new(entry);
        let found = environ.chunks(piece).any(|chunk| matcher.feed(chunk));
        assert!(found, "pieces of {piece}");
    }
    // A longer value, a prefix, a suffix: no match.
    for environ in [
        &b"SESSION_MANAGER_URL=http://127.0.0.1:8080\0"[..],
        b"SESSION_MANAGER_URL=http://127.0.0.1:8\0",
        b"XSESSION_MANAGER_URL=http://127.0.0.1:80\0",
    ] {
        let mut matcher = EntryMatcher::new(entry);
        assert!(
            !matcher.feed(environ),
            "{:?}",
            String::from_utf8_lossy(environ)
        );
        assert!(!matcher.finish());
    }
    // The last entry without its terminating NUL counts.
    let mut matcher = EntryMatcher::new(entry);
    assert!(!matcher.feed(b"A=1\0SESSION_MANAGER_URL=http://127.0.0.1:80"));
    assert!(matcher.finish());
}

#[test]
fn proc_files_are_read_without_allocating() {
    let stat = b"1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2\n";
    assert_eq!(parent_and_start(stat), Some((1, 987_654)));
    assert_eq!(parent_and_start(b"1234 (x) S 1"), None);
    let mut path = [0u8; 32];
    let len = pid_path(4_194_304, b"/environ", &mut path);
    assert_eq!(&path[..len], b"4194304/environ\0");
    assert_eq!(parse_pid(b"4711\0"), 4711);
    assert_eq!(parse_pid(b"self\0"), 0);
    assert!(populated(b"populated 1\nfrozen 0\n"));
    assert!(!populated(b"populated 0\nfrozen 0\n"));
}

/// The scan the watchdog runs after the program died: a process carrying the entry and
/// started before is killed, one started after is not.
#[test]
fn the_scan_kills_marked_processes_started_before_the_death_only() {
    let entry = format!("SM_WATCHDOG_TEST={}", std::process::id());
    let (name, value) = entry.split_once('=').unwrap();
    let spawn = || {
        std::process::Command::new("sleep")
            .arg("60")
            .env(name, value)
            .spawn()
            .unwrap()
    };
    let mut before = spawn();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
    // SAFETY: clock_gettime on a local timespec.
    let now = || unsafe { boot_ticks(ticks) };
    // The clock moves on by a tick between the start and the death, and again before the
    // later start: polled, bounded.
    let tick_after = |from: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while now() <= from {
            assert!(Instant::now() < deadline, "the boot clock stands still");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    tick_after(now());
    let died_at = now();
    tick_after(died_at);
    let mut after = spawn();
    let mut scratch = vec![0u8; 16 * 1024];
    let mut frozen = vec![0; 64];
    // SAFETY: the scan only reads /proc and signals what it matched.
    let killed = unsafe { kill_marked(entry.as_bytes(), died_at, &mut scratch, &mut frozen) };
    let before_status = before.wait().unwrap();
    let after_running = after.try_wait().unwrap().is_none();
    after.kill().unwrap();
    after.wait().unwrap();
    assert_eq!(killed, 1);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&before_status),
        Some(libc::SIGKILL)
    );
    assert!(
        after_running,
        "a process started after the death was killed"
    );
}

/// A marked process that forks after the program died (its child starts later than the
/// death) is stopped before it is killed, and its child is found through it.
#[test]
fn a_child_forked_after_the_death_by_a_marked_process_is_killed_too() {
    use std::io::Write;
    let entry = format!("SM_WATCHDOG_FORK_TEST={}", std::process::id());
    let (name, value) = entry.split_once('=').unwrap();
    let mut parent = std::process::Command::new("sh")
        .args(["-c", "read line; sleep 60 & echo started; wait"])
        .env(name, value)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as i64;
    // SAFETY: clock_gettime on a local timespec.
    let now = || unsafe { boot_ticks(ticks) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let start = now();
    while now() <= start {
        assert!(Instant::now() < deadline, "the boot clock stands still");
        std::thread::sleep(Duration::from_millis(1));
    }
    let died_at = now();
    while now() <= died_at {
        assert!(Instant::now() < deadline, "the boot clock stands still");
        std::thread::sleep(Duration::from_millis(1));
    }
    parent.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut started = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(parent.stdout.take().unwrap()),
        &mut started,
    )
    .unwrap();
    assert_eq!(started, "started\n");
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.id())).unwrap();
    let child: libc::pid_t = children.split_whitespace().next().unwrap().parse().unwrap();
    let mut scratch = vec![0u8; 16 * 1024];
    let mut frozen = vec![0; 64];
    // SAFETY: the scan only reads /proc and signals what it matched.
    let killed = unsafe { kill_marked(entry.as_bytes(), died_at, &mut scratch, &mut frozen) };
    let status = parent.wait().unwrap();
    // The child is the parent's: gone once the parent is reaped, unless it still runs
    // (re-parented), which kill(2) with signal 0 tells.
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: signal 0 only checks whether the process exists.
    while unsafe { libc::kill(child, 0) } == 0 {
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        if state.contains(") Z ") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late child survived: {state}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(killed, 2);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
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
