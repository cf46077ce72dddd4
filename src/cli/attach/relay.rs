//! The attached loop: the socket's frames to stdout, stdin's bytes to the socket, the
//! terminal's size to the socket at start and on every `SIGWINCH`, until `Ctrl-]`, the end
//! of stdin, a signal to stop, or the server closing.
//!
//! The WebSocket is tungstenite's blocking one over a `TcpStream` made non-blocking after the
//! upgrade, driven from tokio: a duplicate of the socket's descriptor registered with tokio
//! says when it is readable or writable, a read that would block waits for readability, a
//! write that would block stays in tungstenite's buffer until the socket is writable. Stdin
//! is read by a plain thread (a blocking read cannot be cancelled, and a tokio blocking task
//! would keep the runtime from shutting down until the next keystroke); the process exits
//! after the loop, which ends it.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use tokio::io::Interest;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
use tungstenite::error::ProtocolError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::raw;
use super::AttachError;

/// The byte `Ctrl-]` sends: detach, as telnet's escape.
pub(super) const DETACH_BYTE: u8 = 0x1d;

/// Frames written before the loop looks at its other inputs again.
const FRAMES_PER_TURN: usize = 64;

/// How long a detach waits for the server to take the close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Why the loop ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// `Ctrl-]` was typed.
    Detached,
    /// Stdin ended (the terminal hung up).
    InputClosed,
    /// SIGTERM or SIGHUP.
    Signalled,
}

/// What the stdin thread hands over.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Typed {
    Bytes(Vec<u8>),
    Detach,
    Closed,
}

/// What the user types, read by one thread for the whole attachment (a relay that ends and
/// is started again on a new connection keeps reading from the same one), and the signals
/// that end it (SIGTERM, SIGHUP: caught, so that the terminal's mode is put back).
pub(super) struct Input {
    typed: mpsc::Receiver<Typed>,
    stops: Option<(Signal, Signal)>,
}

impl Input {
    /// Starts the thread reading stdin and catches SIGTERM and SIGHUP.
    pub(super) fn start() -> std::io::Result<Input> {
        Ok(Input {
            stops: Some((
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            )),
            typed: spawn_stdin_reader(),
        })
    }

    /// Input a test types through the sender; no signal caught (a test process must stay
    /// killable).
    #[cfg(test)]
    pub(super) fn channel() -> (mpsc::Sender<Typed>, Input) {
        let (sender, typed) = mpsc::channel(8);
        (sender, Input { typed, stops: None })
    }
}

/// Resolves at SIGTERM or SIGHUP; never without the signals.
async fn stopped(stops: &mut Option<(Signal, Signal)>) {
    match stops {
        Some((terminate, hangup)) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
        }
        None => std::future::pending().await,
    }
}

/// Relays until one side ends; the socket is left closed.
pub(super) async fn relay(
    mut ws: WebSocket<TcpStream>,
    input: &mut Input,
) -> Result<End, AttachError> {
    ws.get_mut()
        .set_nonblocking(true)
        .map_err(AttachError::Io)?;
    // The same socket (one open file, two descriptors): tokio watches, tungstenite does the
    // reads and writes.
    let socket = ws
        .get_ref()
        .try_clone()
        .and_then(tokio::net::TcpStream::from_std)
        .map_err(AttachError::Io)?;
    let mut winch = signal(SignalKind::window_change()).map_err(AttachError::Io)?;
    // The upgrade may have read the first frames with its answer: they wait in tungstenite's
    // buffer, which no readiness of the socket announces. So do frames left after a turn's
    // budget.
    let mut buffered = true;

    let mut pending = match resize_frame() {
        Some(frame) => queue(&mut ws, frame).map_err(AttachError::Lost)?,
        None => false,
    };
    let end = loop {
        tokio::select! {
            () = std::future::ready(()), if buffered => {
                match receive(&mut ws) {
                    Err(error) if error.kind() == ErrorKind::WouldBlock => buffered = false,
                    Err(error) => return Err(AttachError::Io(error)),
                    Ok(None) => {}
                    Ok(Some(stop)) => return Err(stop),
                }
            }
            ready = socket.readable() => {
                ready.map_err(AttachError::Io)?;
                match socket.try_io(Interest::READABLE, || receive(&mut ws)) {
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                    Err(error) => return Err(AttachError::Io(error)),
                    Ok(None) => buffered = true,
                    Ok(Some(stop)) => return Err(stop),
                }
            }
            ready = socket.writable(), if pending => {
                ready.map_err(AttachError::Io)?;
                match socket.try_io(Interest::WRITABLE, || flush(&mut ws)) {
                    Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                    Err(error) => return Err(AttachError::Io(error)),
                    Ok(flushed) => {
                        flushed.map_err(AttachError::Lost)?;
                        pending = false;
                    }
                }
            }
            next = input.typed.recv() => match next.unwrap_or(Typed::Closed) {
                Typed::Bytes(bytes) => {
                    pending |= queue(&mut ws, Message::binary(bytes)).map_err(AttachError::Lost)?;
                }
                Typed::Detach => break End::Detached,
                Typed::Closed => break End::InputClosed,
            },
            _ = winch.recv() => if let Some(frame) = resize_frame() {
                pending |= queue(&mut ws, frame).map_err(AttachError::Lost)?;
            },
            () = stopped(&mut input.stops) => break End::Signalled,
        }
    };
    close(&mut ws, &socket).await;
    Ok(end)
}

/// `{"type":"resize","rows":R,"cols":C}` for the terminal's size now; none when it has no
/// size.
fn resize_frame() -> Option<Message> {
    let (rows, cols) = raw::size()?;
    Some(Message::text(
        serde_json::json!({ "type": "resize", "rows": rows, "cols": cols }).to_string(),
    ))
}

/// Queues `message` and tries to send it: `Ok(true)` when some of it waits for the socket
/// to be writable.
fn queue(ws: &mut WebSocket<TcpStream>, message: Message) -> Result<bool, tungstenite::Error> {
    match ws.write(message).and_then(|()| ws.flush()) {
        Ok(()) => Ok(false),
        Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => Ok(true),
        Err(error) => Err(error),
    }
}

/// Flushes what waits; `Err(WouldBlock)` (outer) when the socket is still full.
fn flush(ws: &mut WebSocket<TcpStream>) -> std::io::Result<Result<(), tungstenite::Error>> {
    match ws.flush() {
        Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => Err(error),
        other => Ok(other),
    }
}

/// Writes the frames the socket has to stdout: `Err(WouldBlock)` once it has no more,
/// `Ok(None)` after [`FRAMES_PER_TURN`] (an agent that never stops printing must not keep
/// `Ctrl-]` from being read), `Ok(Some(why))` when the server closed or the connection failed.
fn receive(ws: &mut WebSocket<TcpStream>) -> std::io::Result<Option<AttachError>> {
    let mut stdout = std::io::stdout().lock();
    for _ in 0..FRAMES_PER_TURN {
        let message = match ws.read() {
            Ok(message) => message,
            Err(tungstenite::Error::Io(error)) if error.kind() == ErrorKind::WouldBlock => {
                let _ = stdout.flush();
                return Err(error);
            }
            Err(error) => return Ok(Some(lost(error))),
        };
        let written = match message {
            Message::Binary(bytes) => {
                raw::note_output(&bytes);
                stdout.write_all(&bytes)
            }
            Message::Text(text) => {
                raw::note_output(text.as_bytes());
                stdout.write_all(text.as_bytes())
            }
            Message::Close(frame) => {
                let _ = ws.flush();
                return Ok(Some(closed(frame)));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(()),
        };
        if let Err(error) = written {
            return Ok(Some(AttachError::Io(error)));
        }
    }
    Ok(stdout.flush().err().map(AttachError::Io))
}

fn closed(frame: Option<CloseFrame>) -> AttachError {
    match frame {
        Some(frame) => AttachError::Closed {
            code: u16::from(frame.code),
            reason: frame.reason.to_string(),
        },
        None => AttachError::Closed {
            code: u16::from(CloseCode::Status),
            reason: String::new(),
        },
    }
}

/// A failed read: the server went away without a close frame.
fn lost(error: tungstenite::Error) -> AttachError {
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            AttachError::Closed {
                code: u16::from(CloseCode::Abnormal),
                reason: String::new(),
            }
        }
        other => AttachError::Lost(other),
    }
}

/// Sends a close frame and waits (bounded) for the server's answer: detaching is a clean
/// close, which the server logs as a viewer leaving, not as a broken connection.
async fn close(ws: &mut WebSocket<TcpStream>, socket: &tokio::net::TcpStream) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "detached".into(),
    };
    if ws.close(Some(frame)).is_err() {
        return;
    }
    // Until the server's close frame (or its end of the connection): what comes before it
    // is output nobody will see.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        loop {
            let _ = ws.flush();
            if socket.readable().await.is_err() {
                return;
            }
            let read = socket.try_io(Interest::READABLE, || match ws.read() {
                Err(tungstenite::Error::Io(error)) => Err(error),
                other => Ok(other.is_ok()),
            });
            match read {
                Err(error) if error.kind() == ErrorKind::WouldBlock => {}
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    })
    .await;
}

/// A thread reading stdin: its bytes up to `Ctrl-]`, then [`Typed::Detach`];
/// [`Typed::Closed`] at its end.
fn spawn_stdin_reader() -> mpsc::Receiver<Typed> {
    let (sender, receiver) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buffer = [0u8; 4096];
        loop {
            let n = match stdin.read(&mut buffer) {
                Ok(0) => 0,
                Ok(n) => n,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                let _ = sender.blocking_send(Typed::Closed);
                return;
            }
            let (before, detach) = split_at_detach(&buffer[..n]);
            if !before.is_empty() && sender.blocking_send(Typed::Bytes(before.to_vec())).is_err() {
                return;
            }
            if detach {
                let _ = sender.blocking_send(Typed::Detach);
                return;
            }
        }
    });
    receiver
}

/// The bytes of one read that go to the agent, and whether `Ctrl-]` came after them (what
/// follows it is dropped: the user is leaving).
fn split_at_detach(bytes: &[u8]) -> (&[u8], bool) {
    match bytes.iter().position(|&b| b == DETACH_BYTE) {
        Some(at) => (&bytes[..at], true),
        None => (bytes, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_close_bracket_ends_the_input_and_what_follows_is_dropped() {
        assert_eq!(split_at_detach(b"ls\r"), (&b"ls\r"[..], false));
        assert_eq!(split_at_detach(b"ab\x1dcd"), (&b"ab"[..], true));
        assert_eq!(split_at_detach(b"\x1d"), (&b""[..], true));
        assert_eq!(split_at_detach(b""), (&b""[..], false));
    }
}
