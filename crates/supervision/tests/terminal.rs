//! Process children on a pseudo-terminal ([`Command::terminal`]): the terminal is their
//! stdin, stdout, stderr and controlling terminal, they lead a session of their own, a resize
//! reaches them as SIGWINCH, and a kill ends every holder of the terminal.
#![cfg(feature = "process")]

use std::time::Duration;

use supervision::process::{Command, Output, Process, Pty, TerminalSize};

/// How long anything here may take before the test fails: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(20);

/// `script` run by `sh` on a terminal of `size`.
fn on_terminal(script: &str, size: TerminalSize) -> (Process, Pty) {
    let spawned = Command::new("sh")
        .args(["-c", script])
        .terminal(size)
        .spawn()
        .expect("sh starts");
    match spawned.watch(|_| ()) {
        (process, Output::Terminal(pty)) => (process, pty),
        (_, other) => panic!("a terminal child gives its terminal, not {other:?}"),
    }
}

/// Reads the terminal until its output so far contains `wanted`; everything read.
async fn read_until(pty: &Pty, seen: &mut String, wanted: &str) {
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        while !seen.contains(wanted) {
            let n = pty.read(&mut buffer).await.expect("the terminal reads");
            assert!(
                n > 0,
                "the terminal ended before {wanted:?}; it showed {seen:?}"
            );
            seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {wanted:?} on the terminal; it showed {seen:?}"));
}

/// Reads to the end (every process holding the terminal is gone); what was read.
async fn read_to_end(pty: &Pty) -> String {
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(PATIENCE, async {
        loop {
            match pty.read(&mut buffer).await.expect("the terminal reads") {
                0 => return,
                n => seen.push_str(&String::from_utf8_lossy(&buffer[..n])),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the terminal never ended; it showed {seen:?}"));
    seen
}

/// Field 6 (session id) of `/proc/<pid>/stat`.
fn session_of(pid: u32) -> u32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = text.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_terminal_child_reads_its_input_and_writes_its_output_on_the_terminal() {
    let (mut process, pty) = on_terminal(
        "tty; stty size; read line; echo \"got $line\" >&2",
        TerminalSize::new(40, 120),
    );
    assert_eq!(
        session_of(process.pid()),
        process.pid(),
        "it leads a session"
    );
    let mut seen = String::new();
    read_until(&pty, &mut seen, "40 120").await;
    assert!(
        seen.contains("/dev/pts/"),
        "its stdout is the terminal: {seen:?}"
    );
    pty.write_all(b"hello\n").await.unwrap();
    // Echoed by the terminal's line discipline, then answered on stderr: the terminal too.
    read_until(&pty, &mut seen, "got hello").await;
    assert!(process.exited().await.success());
    assert_eq!(pty.size().unwrap(), TerminalSize::new(40, 120));
}

#[tokio::test]
async fn a_resize_reaches_the_child_as_sigwinch() {
    let (mut process, pty) = on_terminal(
        "trap 'stty size; exit 0' WINCH; echo waiting; while :; do sleep 0.05; done",
        TerminalSize::new(24, 80),
    );
    let mut seen = String::new();
    read_until(&pty, &mut seen, "waiting").await;
    pty.resize(TerminalSize::new(50, 100)).unwrap();
    read_until(&pty, &mut seen, "50 100").await;
    assert!(process.exited().await.success());
}

#[tokio::test]
async fn a_kill_ends_every_holder_of_the_terminal() {
    // A background job holds the terminal too: the terminal ends only when it is gone.
    let (mut process, pty) = on_terminal(
        "sleep 1000 & echo started; sleep 1000",
        TerminalSize::default(),
    );
    let mut seen = String::new();
    read_until(&pty, &mut seen, "started").await;
    let exit = process.kill().await;
    assert!(!exit.success());
    read_to_end(&pty).await;
}

#[tokio::test]
async fn the_last_output_of_an_exited_child_is_still_read() {
    let (mut process, pty) = on_terminal("printf 'last words'", TerminalSize::default());
    assert!(process.exited().await.success());
    assert!(read_to_end(&pty).await.contains("last words"));
}
