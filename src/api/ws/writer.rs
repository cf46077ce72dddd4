//! The writer side of a connection: the queue's messages ([`Outbound`]), the task that
//! drains them to the socket and closes with a deadline ([`write`]), and how a connection
//! ends ([`Ending`]: the close code and reason, or 1008 with the `since` to resume from).

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{Sink, SinkExt};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tungstenite::error::ProtocolError;
use warp::ws::Message;

use super::{
    CLOSE_GRACE, GOING_AWAY, INVALID_PAYLOAD, MESSAGE_TOO_BIG, POLICY_VIOLATION, PROTOCOL_ERROR,
};

/// Counts a connection while it lives.
pub(super) struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub(super) fn new(clients: &Arc<AtomicUsize>) -> Counted {
        clients.fetch_add(1, Ordering::Relaxed);
        Counted(clients.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One message waiting for the writer.
#[derive(Debug)]
pub(super) struct Outbound {
    /// `None` for a mark that only moves [`Outbound::resume`].
    pub(super) message: Option<Message>,
    /// Where the client resumes (`since`) once this went out, if it moves that point.
    pub(super) resume: Option<u64>,
    /// Its share of the byte bound, given back once it is written.
    pub(super) _room: OwnedSemaphorePermit,
}

/// What the pump asks the writer to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// This code and reason.
    Plain(u16, &'static str),
    /// 1008 with this reason and the `since` the client resumes from.
    Resume(&'static str),
}

/// Drains the queue to `sink`; on a close request, sends the close frame at once (what is
/// still queued is dropped: the client resumes with `since`), giving it [`CLOSE_GRACE`].
pub(super) async fn write<S>(
    mut sink: S,
    mut queue: mpsc::Receiver<Outbound>,
    mut close: oneshot::Receiver<Closing>,
) where
    S: Sink<Message> + Unpin,
{
    // The last resume point written: the greeting carries one, so a closed client always
    // gets a `since`.
    let mut resume: Option<u64> = None;
    // `close` resolves with a reason, or with an error once the pump is done without one.
    let reason = loop {
        let outbound = tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            outbound = queue.recv() => match outbound {
                Some(outbound) => outbound,
                None => break None,
            },
        };
        if let Some(message) = outbound.message {
            tokio::select! {
                biased;
                reason = &mut close => break reason.ok(),
                sent = sink.send(message) => {
                    if sent.is_err() {
                        return;
                    }
                }
            }
        }
        resume = outbound.resume.or(resume);
    };
    let frame = match reason {
        Some(Closing::Plain(code, reason)) => Message::close_with(code, reason),
        Some(Closing::Resume(reason)) => {
            Message::close_with(POLICY_VIOLATION, resume_hint(reason, resume))
        }
        None => Message::close(),
    };
    // A client that reads nothing never takes the frame; it is dropped after the grace.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        sink.send(frame).await?;
        sink.close().await
    })
    .await;
}

/// `reason` and where to resume: RFC 6455 allows 123 bytes of reason, which this stays
/// well under.
pub(super) fn resume_hint(reason: &str, resume: Option<u64>) -> String {
    match resume {
        Some(seq) => format!("{reason}; reconnect and subscribe with since={seq}"),
        None => format!("{reason}; reconnect and subscribe with since"),
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    /// The client closed or the socket failed: nothing more to say.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
    /// The server closes with 1008, this reason and the `since` to resume from.
    Resume(&'static str),
}

impl Ending {
    /// What the writer closes with; `None` when there is nothing to say.
    pub(super) fn closing(self) -> Option<Closing> {
        match self {
            Ending::Gone => None,
            Ending::Close(code, reason) => Some(Closing::Plain(code, reason)),
            Ending::Resume(reason) => Some(Closing::Resume(reason)),
        }
    }

    pub(super) const TOO_SLOW: Ending = Ending::Resume("too slow: outbound queue full");
    pub(super) const LAGGED: Ending = Ending::Resume("fell behind the event stream");
    pub(super) const SHUTTING_DOWN: Ending = Ending::Close(GOING_AWAY, "server shutting down");
    /// Names [`MAX_CLIENT_MESSAGE`](super::MAX_CLIENT_MESSAGE) (a unit test keeps the two together).
    pub(super) const TOO_BIG: Ending = Ending::Close(
        MESSAGE_TOO_BIG,
        "message too big: a client message may have 65536 bytes",
    );

    /// How a failed read of the client's messages ends the connection: with the code that
    /// says what the client did wrong, or quietly when it simply went away.
    pub(super) fn of_read_error(error: &warp::Error) -> Ending {
        let cause = error
            .source()
            .and_then(|cause| cause.downcast_ref::<tungstenite::Error>());
        match cause {
            Some(tungstenite::Error::Capacity(_)) => Ending::TOO_BIG,
            Some(tungstenite::Error::Utf8(_)) => {
                Ending::Close(INVALID_PAYLOAD, "a text message is not valid UTF-8")
            }
            Some(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
                | ProtocolError::SendAfterClosing
                | ProtocolError::ReceivedAfterClosing,
            )) => Ending::Gone,
            Some(tungstenite::Error::Protocol(_)) => {
                Ending::Close(PROTOCOL_ERROR, "websocket protocol error")
            }
            _ => Ending::Gone,
        }
    }
}
