//! The user's terminal in raw mode while attached, and put back as it was on every way out:
//! the guard's `Drop` (a return, an error, a panic that unwinds) and a panic hook (a panic on
//! another thread, or one that does not unwind). A terminal left raw is unusable until the
//! user types `reset` blind, so the mode is restored from wherever we leave.
//!
//! It also undoes what the agent's output may have switched on in the user's terminal
//! (alternate screen, hidden cursor, mouse reports, bracketed paste): the agent keeps running
//! with its modes, the user's shell must not inherit them.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// The mode to restore, while one is to be: shared with the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// What the agent may have left on: show the cursor, stop mouse reports and bracketed paste,
/// reset colours. (None of them moves the cursor.)
const RESET_MODES: &[u8] =
    b"\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[0m";

/// Back to the normal screen and the cursor saved on leaving it; sent only when the agent
/// switched to the alternate screen, since on the normal screen it could move the cursor.
const LEAVE_ALTERNATE: &[u8] = b"\x1b[?1049l";

/// Whether the agent's output last switched the alternate screen on.
static ALTERNATE: AtomicBool = AtomicBool::new(false);

/// Raw mode on stdin's terminal until dropped.
pub(super) struct RawMode(());

impl RawMode {
    /// Saves stdin's terminal mode and switches it to raw (no echo, no line editing, no
    /// signals from `Ctrl-C`: every byte goes to the agent).
    pub(super) fn enter() -> std::io::Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        install_panic_hook();
        *lock() = Some(saved);
        if let Err(error) = tcsetattr(&stdin, OptionalActions::Now, &raw) {
            lock().take();
            return Err(error.into());
        }
        Ok(RawMode(()))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore();
    }
}

/// Follows the agent's output for its switches of the alternate screen (`?1049`, `?1047`,
/// `?47`), the last one in `bytes` winning. A switch split across two frames is missed: at
/// worst the user's screen is not switched back, as without this.
pub(super) fn note_output(bytes: &[u8]) {
    let mut last = None;
    for (at, window) in bytes.windows(4).enumerate() {
        if window != b"\x1b[?4" && window != b"\x1b[?1" {
            continue;
        }
        let rest = &bytes[at + 3..];
        for mode in [&b"1049"[..], b"1047", b"47"] {
            match rest.strip_prefix(mode).and_then(|r| r.first()) {
                Some(b'h') => last = Some(true),
                Some(b'l') => last = Some(false),
                _ => {}
            }
        }
    }
    if let Some(on) = last {
        ALTERNATE.store(on, Ordering::Relaxed);
    }
}

/// The size of stdin's terminal as (rows, cols); `None` when it has none (0 × 0).
pub(super) fn size() -> Option<(u16, u16)> {
    let size = tcgetwinsize(std::io::stdin()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

/// Puts back the saved mode, once, and resets what the agent's output may have switched on.
fn restore() {
    let Some(saved) = lock().take() else {
        return;
    };
    let _ = tcsetattr(std::io::stdin(), OptionalActions::Now, &saved);
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        let mut stdout = stdout.lock();
        if ALTERNATE.swap(false, Ordering::Relaxed) {
            let _ = stdout.write_all(LEAVE_ALTERNATE);
        }
        let _ = stdout.write_all(RESET_MODES).and_then(|()| stdout.flush());
    }
}

fn lock() -> std::sync::MutexGuard<'static, Option<Termios>> {
    SAVED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Restores the terminal before the default hook prints the panic, so the message is
/// readable; once per process.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_alternate_screen_switch_wins() {
        note_output(b"plain text");
        assert!(!ALTERNATE.load(Ordering::Relaxed));
        note_output(b"\x1b[?1049hdrawn");
        assert!(ALTERNATE.load(Ordering::Relaxed));
        note_output(b"\x1b[?25l\x1b[?12h");
        assert!(ALTERNATE.load(Ordering::Relaxed), "other modes leave it");
        note_output(b"\x1b[?47h then \x1b[?1047l");
        assert!(!ALTERNATE.load(Ordering::Relaxed));
        note_output(b"\x1b[?47h");
        assert!(ALTERNATE.swap(false, Ordering::Relaxed));
    }
}
