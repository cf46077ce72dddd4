//! An agent's terminal: the agent runs on a pseudo-terminal instead of pipes, and this is
//! what the server keeps of it across incarnations.
//!
//! Every chunk the program writes goes, under one lock, to
//! - the scrollback: the last `agents.terminal.scrollback_bytes` bytes as written (escape
//!   sequences and all), which a viewer gets first when it attaches;
//! - the screen: a terminal emulator (`vt100`) holding what a person would see now, read by
//!   `…/screen`;
//! - the viewers: every attached WebSocket, as the same chunk (one `Bytes`, shared);
//!
//! and, outside the lock, to the agent's log as plain text (escape sequences stripped, one
//! line per newline), so the 1,000-line tail, the log file and the live `agent_log` events
//! work as for an agent on pipes.
//!
//! Input from any viewer or from the API goes to the program as it comes: several people
//! typing at once interleave, as in a shared `tmux` session. The size is the terminal's, one
//! for all viewers: the last resize wins, and the next incarnation starts with it.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::broadcast;

use supervision::process::{Pty, TerminalSize};

use super::output::{LogLine, OutputLog, Stream, MAX_LINE_BYTES};

/// Size of a terminal whose agent names none (`"terminal": true`).
pub const DEFAULT_SIZE: TerminalSize = TerminalSize {
    rows: 40,
    cols: 120,
};

/// Largest number of rows or columns a terminal may have: more is no screen anyone reads,
/// and the emulator's memory grows with the product.
pub const MAX_DIMENSION: u16 = 1000;

/// Chunks of output a viewer may be behind before it is closed (it reconnects and gets the
/// scrollback again). Each slot holds one read of at most [`READ_BYTES`].
const VIEWER_BACKLOG: usize = 256;

/// How long typed input may wait for the program to read it: a program that never reads
/// its terminal fills the kernel's input buffer, and a write would then wait forever.
pub(crate) const INPUT_DEADLINE: Duration = Duration::from_secs(5);

/// Bytes read from the terminal at once.
const READ_BYTES: usize = 16 * 1024;

/// How far past the cut a trimmed scrollback looks for a newline to start at, so a viewer's
/// replay starts on a line rather than inside an escape sequence.
const TRIM_LOOKAHEAD: usize = 4 * 1024;

/// Why an operation on a terminal failed.
#[derive(Debug, thiserror::Error)]
pub enum TerminalError {
    /// No process runs on the terminal now (not started yet, exited, between restarts).
    #[error("the agent is not running: its terminal takes no input now")]
    NotRunning,
    /// The program did not read its input within [`INPUT_DEADLINE`] (part of it may have
    /// been typed).
    #[error("the program has not read its terminal's input for {} s; part of the input may have been typed", INPUT_DEADLINE.as_secs())]
    NotReading,
    /// The size has a zero or exceeds [`MAX_DIMENSION`].
    #[error("{field} must be between 1 and {MAX_DIMENSION}, got {value}")]
    BadSize {
        /// `rows` or `cols`.
        field: &'static str,
        /// What was asked for.
        value: u32,
    },
    /// The terminal refused the input or the size.
    #[error("the terminal failed: {0}")]
    Io(#[source] std::io::Error),
}

/// The screen as the terminal emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// The terminal's size.
    pub size: TerminalSize,
    /// One string per row, trailing spaces trimmed.
    pub lines: Vec<String>,
    /// The cursor, `(row, col)` from the top left, 0-based.
    pub cursor: (u16, u16),
    /// The window title the program set (OSC 0 or 2), empty if none.
    pub title: String,
    /// Whether a process runs on the terminal now.
    pub running: bool,
}

/// What a new viewer gets: the scrollback, then every chunk written after it (no gap, no
/// repeat: both are taken under the lock the writer holds).
#[derive(Debug)]
pub struct Viewer {
    /// The output so far, up to the scrollback's size.
    pub scrollback: Bytes,
    /// The output from now on; `Lagged` when the viewer fell [`VIEWER_BACKLOG`] chunks
    /// behind, `Closed` when the agent is gone.
    pub live: broadcast::Receiver<Bytes>,
}

/// One agent's terminal, shared by its incarnations, its viewers and the API.
#[derive(Debug)]
pub struct Terminal {
    state: Mutex<State>,
    scrollback_limit: usize,
}

struct State {
    size: TerminalSize,
    /// The running incarnation's end of the terminal.
    pty: Option<Pty>,
    scrollback: VecDeque<u8>,
    screen: vt100::Parser<Title>,
    /// `None` once the agent is gone ([`Terminal::close`]): viewers are told, none joins.
    viewers: Option<broadcast::Sender<Bytes>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("size", &self.size)
            .field("running", &self.pty.is_some())
            .field("scrollback_bytes", &self.scrollback.len())
            .finish_non_exhaustive()
    }
}

/// The emulator's callbacks: only the window title is kept.
#[derive(Default)]
struct Title(String);

impl vt100::Callbacks for Title {
    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.0 = String::from_utf8_lossy(title).into_owned();
    }
}

impl Terminal {
    /// A terminal of `size` keeping `scrollback_limit` bytes of output.
    pub(crate) fn new(size: TerminalSize, scrollback_limit: usize) -> Terminal {
        let (viewers, _) = broadcast::channel(VIEWER_BACKLOG);
        Terminal {
            state: Mutex::new(State {
                size,
                pty: None,
                scrollback: VecDeque::new(),
                screen: emulator(size),
                viewers: Some(viewers),
            }),
            scrollback_limit,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The terminal's size: the next incarnation starts with it.
    pub fn size(&self) -> TerminalSize {
        self.state().size
    }

    /// Whether a process runs on the terminal now.
    pub fn running(&self) -> bool {
        self.state().pty.is_some()
    }

    /// A new viewer: the scrollback and the output from now on.
    pub fn attach(&self) -> Viewer {
        let state = self.state();
        let (front, back) = state.scrollback.as_slices();
        let mut scrollback = Vec::with_capacity(front.len() + back.len());
        scrollback.extend_from_slice(front);
        scrollback.extend_from_slice(back);
        let live = match &state.viewers {
            Some(viewers) => viewers.subscribe(),
            // A closed terminal: the viewer gets the scrollback and the end at once.
            None => broadcast::channel(1).1,
        };
        Viewer {
            scrollback: Bytes::from(scrollback),
            live,
        }
    }

    /// How many viewers are attached.
    pub fn viewers(&self) -> usize {
        self.state()
            .viewers
            .as_ref()
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Types `bytes` into the program.
    ///
    /// # Errors
    ///
    /// [`TerminalError::NotRunning`] without a process, [`TerminalError::NotReading`] when
    /// the program leaves its input unread past [`INPUT_DEADLINE`], [`TerminalError::Io`]
    /// when the terminal refuses the write.
    pub async fn input(&self, bytes: &[u8]) -> Result<(), TerminalError> {
        let pty = self.state().pty.clone().ok_or(TerminalError::NotRunning)?;
        match tokio::time::timeout(INPUT_DEADLINE, pty.write_all(bytes)).await {
            Ok(written) => written.map_err(TerminalError::Io),
            Err(_) => Err(TerminalError::NotReading),
        }
    }

    /// Resizes the terminal: the running program gets SIGWINCH, the screen reflows, and the
    /// next incarnation starts at this size.
    ///
    /// # Errors
    ///
    /// [`TerminalError::BadSize`] for a zero or more than [`MAX_DIMENSION`],
    /// [`TerminalError::Io`] when the terminal refuses the size.
    pub fn resize(&self, size: TerminalSize) -> Result<(), TerminalError> {
        let size = checked_size(u32::from(size.rows), u32::from(size.cols))?;
        let mut state = self.state();
        if let Some(pty) = &state.pty {
            pty.resize(size).map_err(TerminalError::Io)?;
        }
        state.size = size;
        let (rows, cols) = nonzero(size);
        state.screen.set_size(rows, cols);
        Ok(())
    }

    /// The screen as the emulator holds it now (the last one after an exit).
    pub fn screen(&self) -> Screen {
        let state = self.state();
        let screen = state.screen.screen();
        Screen {
            size: state.size,
            lines: screen
                .rows(0, state.size.cols)
                .map(|row| row.trim_end().to_owned())
                .collect(),
            cursor: screen.cursor_position(),
            title: state.screen.callbacks().0.clone(),
            running: state.pty.is_some(),
        }
    }

    /// A new incarnation runs on `pty`: input and resizes go to it from now on.
    pub(crate) fn connect(&self, pty: Pty) {
        self.state().pty = Some(pty);
    }

    /// The incarnation's process exited: input is refused until the next one.
    pub(crate) fn disconnect(&self) {
        self.state().pty = None;
    }

    /// The agent is gone (its session ended or changed its agents): every viewer is told
    /// (its live output ends) and input is refused.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.viewers = None;
        state.pty = None;
    }

    /// One chunk of output: into the scrollback, the screen and every viewer.
    fn output(&self, chunk: &[u8]) {
        let mut state = self.state();
        state.screen.process(chunk);
        keep(&mut state.scrollback, chunk, self.scrollback_limit);
        if let Some(viewers) = &state.viewers {
            // No viewer is no error: the chunk is in the scrollback.
            let _ = viewers.send(Bytes::copy_from_slice(chunk));
        }
    }
}

/// Appends `chunk` to `scrollback`, first dropping from its front what would take it past
/// `limit` (up to the next newline, when one is near, so a replay starts on a line), and
/// growing its buffer no further than `limit`: a full scrollback costs its size, not the
/// next power of two.
fn keep(scrollback: &mut VecDeque<u8>, chunk: &[u8], limit: usize) {
    let chunk = &chunk[chunk.len().saturating_sub(limit)..];
    let excess = (scrollback.len() + chunk.len())
        .saturating_sub(limit)
        .min(scrollback.len());
    if excess > 0 {
        let cut = scrollback
            .range(excess..)
            .take(TRIM_LOOKAHEAD)
            .position(|&b| b == b'\n')
            .map_or(excess, |newline| excess + newline + 1);
        scrollback.drain(..cut);
    }
    let needed = scrollback.len() + chunk.len();
    if needed > scrollback.capacity() {
        let target = (scrollback.capacity() * 2).clamp(needed, limit.max(needed));
        scrollback.reserve_exact(target - scrollback.len());
    }
    scrollback.extend(chunk);
}

/// A size checked against [`MAX_DIMENSION`]: the API's and the configuration's rule.
///
/// # Errors
///
/// [`TerminalError::BadSize`] naming `rows` or `cols`.
pub fn checked_size(rows: u32, cols: u32) -> Result<TerminalSize, TerminalError> {
    for (field, value) in [("rows", rows), ("cols", cols)] {
        if value == 0 || value > u32::from(MAX_DIMENSION) {
            return Err(TerminalError::BadSize { field, value });
        }
    }
    // In range, so both fit a u16.
    Ok(TerminalSize::new(rows as u16, cols as u16))
}

fn nonzero(size: TerminalSize) -> (NonZeroU16, NonZeroU16) {
    let one = NonZeroU16::MIN;
    (
        NonZeroU16::new(size.rows).unwrap_or(one),
        NonZeroU16::new(size.cols).unwrap_or(one),
    )
}

/// The emulator for a screen of `size`; its own scrollback is off (the byte scrollback is
/// what viewers replay).
fn emulator(size: TerminalSize) -> vt100::Parser<Title> {
    let (rows, cols) = nonzero(size);
    vt100::Parser::new_with_callbacks(rows, cols, 0, Title::default())
}

/// Reads the terminal to its end (every process holding it gone): each chunk to `terminal`,
/// each line of plain text to `log` and then to `each`.
pub(crate) async fn pump<F>(pty: Pty, terminal: &Terminal, log: &OutputLog, mut each: F)
where
    F: FnMut(&LogLine),
{
    let mut buffer = vec![0u8; READ_BYTES];
    let mut text = PlainText::default();
    let mut parser = vte::Parser::new();
    loop {
        let n = match pty.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buffer[..n];
        terminal.output(chunk);
        parser.advance(&mut text, chunk);
        for line in text.lines.drain(..) {
            emit(line, log, &mut each);
        }
    }
    if !text.line.is_empty() {
        emit(std::mem::take(&mut text.line), log, &mut each);
    }
    log.flush();
}

fn emit<F: FnMut(&LogLine)>(line: String, log: &OutputLog, each: &mut F) {
    let line = LogLine {
        stream: Stream::Stdout,
        line,
        timestamp: SystemTime::now(),
    };
    log.record(&line);
    each(&line);
}

/// Terminal output as plain text: printed characters and tabs kept, a backspace takes back
/// the last character, every escape sequence and other control dropped, a line per newline
/// (and per [`MAX_LINE_BYTES`], as for pipes).
#[derive(Default)]
struct PlainText {
    line: String,
    lines: Vec<String>,
}

impl PlainText {
    fn push(&mut self, c: char) {
        if self.line.len() + c.len_utf8() > MAX_LINE_BYTES {
            self.lines.push(std::mem::take(&mut self.line));
        }
        self.line.push(c);
    }
}

impl vte::Perform for PlainText {
    fn print(&mut self, c: char) {
        self.push(c);
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.lines.push(std::mem::take(&mut self.line)),
            b'\t' => self.push('\t'),
            0x08 => {
                self.line.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
