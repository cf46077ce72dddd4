//! A child process for the `process` feature's tests: a small program whose behaviour is
//! chosen by flags (a Rust program rather than shell lines, so what it does is exact).
//!
//! ```text
//! fake_child [--fork-grandchild] [--escape setsid|double-fork|daemon] [--ignore-sigterm]
//!            [--exit-after-ms N [--code C]]
//! ```
//! - `--fork-grandchild` starts a copy of itself that sleeps forever (in this process's
//!   group) and prints `grandchild <pid>`;
//! - `--escape MODE` leaves a descendant outside its process group that sleeps forever, and
//!   prints `escaped <pid>`: `setsid` (a child in a session of its own), `double-fork` (a
//!   grandchild in a group of its own whose parent exited at once, so it is orphaned) or
//!   `daemon` (fork, `setsid`, fork, the middle one exits; the daemon enters `/` and closes
//!   its output);
//! - `--ignore-sigterm` ignores SIGTERM (and so does its grandchild);
//! - `--exit-after-ms N` exits with `--code C` (default 1) after N ms; without it the
//!   program sleeps until a signal ends it.
//!
//! `pid <pid>` is always the first line on stdout; every line is flushed at once.

use std::io::Write;
use std::time::Duration;

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn ignore_sigterm() {
    // SAFETY: installing SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
}

fn sleep_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Leaves a descendant outside this process's group as `mode` says; returns its pid.
fn escape(mode: &str) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: pipe fills the two-element array; this program is single-threaded here, so the
    // forked children may do anything before they sleep.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0, "pipe");
        let child = libc::fork();
        assert!(child >= 0, "fork");
        if child == 0 {
            libc::close(fds[0]);
            match mode {
                "setsid" => {
                    libc::setsid();
                }
                "double-fork" => {
                    if libc::fork() != 0 {
                        libc::_exit(0);
                    }
                    libc::setpgid(0, 0);
                }
                "daemon" => {
                    libc::setsid();
                    if libc::fork() != 0 {
                        libc::_exit(0);
                    }
                    libc::chdir(c"/".as_ptr());
                }
                other => {
                    eprintln!("unknown --escape mode {other:?}");
                    libc::_exit(2);
                }
            }
            linger(fds[1]);
        }
        libc::close(fds[1]);
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]),
            &mut text,
        )
        .expect("the escaped pid");
        if mode != "setsid" {
            // The middle process exits at once: reap it, so the escaped one is an orphan.
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
        }
        text.trim().parse().expect("a pid")
    }
}

/// The escaped descendant: reports its pid on `report`, lets go of every inherited output,
/// and sleeps forever.
unsafe fn linger(report: i32) -> ! {
    let line = format!("{}\n", std::process::id());
    libc::write(report, line.as_ptr().cast(), line.len());
    libc::close(report);
    let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
    for fd in 0..3 {
        libc::dup2(null, fd);
    }
    sleep_forever()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| -> Option<String> {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let number = |flag: &str| value(flag).map(|v| v.parse::<u64>().expect("a number"));
    let has = |flag: &str| args.iter().any(|a| a == flag);

    say(&format!("pid {}", std::process::id()));
    if has("--ignore-sigterm") {
        ignore_sigterm();
    }
    if has("--sleep-forever") {
        sleep_forever();
    }
    if has("--fork-grandchild") {
        let mut command = std::process::Command::new(std::env::current_exe().expect("own path"));
        command.arg("--sleep-forever");
        if has("--ignore-sigterm") {
            command.arg("--ignore-sigterm");
        }
        // Never waited for on purpose: it is meant to outlive this process.
        #[allow(clippy::zombie_processes)]
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("grandchild spawns");
        say(&format!("grandchild {}", child.id()));
    }
    if let Some(mode) = value("--escape") {
        say(&format!("escaped {}", escape(&mode)));
    }
    match number("--exit-after-ms") {
        Some(ms) => {
            std::thread::sleep(Duration::from_millis(ms));
            let code = number("--code").unwrap_or(1);
            std::process::exit(i32::try_from(code).unwrap_or(1));
        }
        None => sleep_forever(),
    }
}
