//! Accepting connections so that no error stops it for good. Out of file descriptors
//! (EMFILE, ENFILE) a listening socket stays readable with the connection still queued, so
//! retrying at once spins and every client waits: the acceptor keeps one descriptor in
//! reserve (/dev/null, opened at start), and when the process is out it closes the reserve,
//! accepts the waiting connection, answers it 503 and closes it, and reopens the reserve.
//! Queued clients learn at once that the server is full instead of timing out, and the
//! server accepts again as soon as connections close. Errors are logged at most once per
//! [`LOG_INTERVAL`], with the count of those not logged.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::FutureExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::api::{connection_refusal, ConnectionRefusal};

/// Pause after an accept error: the condition (descriptors, memory) needs other
/// connections to close first.
const BACKOFF: Duration = Duration::from_millis(50);
/// At most one log line per interval for accept errors, whatever their rate.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The listener, its reserve descriptor and the accept-error log's state.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    reserve: Option<File>,
    last_logged: Option<Instant>,
    unlogged: u64,
    /// What a connection shed for want of descriptors is told.
    refusal: Vec<u8>,
}

impl Acceptor {
    /// `max_connections` is what a shed connection is told was reached.
    pub(crate) fn new(listener: TcpListener, max_connections: usize) -> Acceptor {
        Acceptor {
            listener,
            reserve: open_reserve(),
            last_logged: None,
            unlogged: 0,
            refusal: connection_refusal(ConnectionRefusal::Total(max_connections)),
        }
    }

    /// The next connection. Never fails: a connection reset while queued is skipped, and
    /// any other error is waited out.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    // No Nagle: a keystroke echoed to a terminal viewer, or any small
                    // WebSocket frame, must not wait for the peer's delayed ACK (~40 ms).
                    // Responses are written whole, so nothing gets split into more packets.
                    let _ = stream.set_nodelay(true);
                    return (stream, peer);
                }
                Err(error) if is_connection_error(&error) => {}
                Err(error) => {
                    if is_out_of_descriptors(&error) {
                        self.shed_one();
                    }
                    self.log(&error);
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }

    /// Frees the reserve descriptor for long enough to accept one queued connection, answer
    /// it and close it.
    fn shed_one(&mut self) {
        self.reserve = None;
        if let Some(Ok((stream, _))) = self.listener.accept().now_or_never() {
            // Best effort, never waiting: the socket's send buffer is empty.
            let _ = stream.try_write(&self.refusal);
        }
        self.reserve = open_reserve();
    }

    fn log(&mut self, error: &io::Error) {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= LOG_INTERVAL);
        if due {
            tracing::warn!(
                %error,
                not_logged_since_last = self.unlogged,
                reserve_descriptor = self.reserve.is_some(),
                "cannot accept connections; retrying"
            );
            self.last_logged = Some(now);
            self.unlogged = 0;
        } else {
            self.unlogged += 1;
        }
    }
}

/// The reserve descriptor; none if even that cannot be opened (then the backoff alone
/// keeps the loop from spinning).
fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Errors of one queued connection (it was reset before it was accepted), not of the
/// listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
