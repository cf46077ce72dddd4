//! An agent's terminal over HTTP and WebSocket: scripts type into it (`…/input`), read its
//! screen (`…/screen`) and resize it (`…/resize`); people attach to it
//! (`/ws/sessions/{id}/agents/{name}/terminal`, the dashboard's terminal pane and
//! `session-manager attach`).
//!
//! The WebSocket protocol: the server sends the scrollback, then live output, as binary
//! frames; the client sends keystrokes as binary or text frames, except a text frame that is
//! the JSON `{"type": "resize", "rows": R, "cols": C}`, which resizes. Every viewer sees the
//! same screen and any of them may type (input interleaves as it arrives). Closing the socket
//! detaches; the agent runs on. A viewer more than a backlog of chunks behind is closed with
//! 1008 and a hint to reconnect (it then gets the scrollback again); the end of the session
//! or a server shutdown closes with 1001.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::ws::{Message, WebSocket, Ws};
use warp::Reply;

use super::envelope;
use super::errors::ApiError;
use super::sessions::{reply, segment, session_id, Answer, Parsed};
use super::ApiContext;
use crate::agent::{checked_size, Terminal, TerminalError, Viewer};

/// Largest scrollback frame sent on attach: the scrollback goes in pieces of this size.
const SCROLLBACK_FRAME: usize = 64 * 1024;

/// Largest frame a viewer may send (a paste); larger closes with 1009.
pub(crate) const MAX_VIEWER_MESSAGE: usize = 64 * 1024;

/// Close code for a viewer that fell behind (RFC 6455: policy violation).
const FELL_BEHIND: u16 = 1008;

/// Close code when the agent's session ends or the server stops (going away).
const GOING_AWAY: u16 = 1001;

/// `POST …/input`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct InputBody {
    /// Text typed into the terminal as it is (UTF-8; control characters included).
    text: String,
    /// Press Enter after the text (a carriage return, what a terminal's Enter key sends).
    #[serde(default)]
    submit: bool,
}

/// `POST …/resize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResizeBody {
    /// Lines, 1–1000.
    rows: u32,
    /// Columns, 1–1000.
    cols: u32,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct InputPayload {
    session_id: String,
    agent_name: String,
    /// Bytes written to the terminal (the text's UTF-8 bytes, plus one for `submit`).
    bytes: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ResizePayload {
    session_id: String,
    agent_name: String,
    rows: u16,
    cols: u16,
}

/// The cursor on the screen, 0-based from the top left.
#[derive(Serialize, ToSchema)]
pub(crate) struct CursorObject {
    row: u16,
    col: u16,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ScreenPayload {
    session_id: String,
    agent_name: String,
    rows: u16,
    cols: u16,
    /// One string per row, trailing spaces trimmed.
    lines: Vec<String>,
    cursor: CursorObject,
    /// The window title the program set, empty if none.
    title: String,
    /// Whether a process runs on the terminal now (the screen of an exited one stays).
    running: bool,
}

/// The terminal of agent `name` of session `id`, both as the client wrote them.
async fn find(
    ctx: &ApiContext,
    id: &str,
    name: &str,
) -> Result<(String, String, Arc<Terminal>), ApiError> {
    let id = session_id(id)?;
    let name = segment(name, "name")?;
    let terminal = ctx.sessions.terminal(id, &name).await?;
    Ok((id.to_string(), name, terminal))
}

fn terminal_error(error: TerminalError) -> ApiError {
    match error {
        TerminalError::BadSize { field, .. } => ApiError::invalid(field, error.to_string()),
        TerminalError::NotRunning | TerminalError::Io(_) => ApiError::TerminalConflict {
            code: "agent_not_running",
            message: error.to_string(),
        },
        TerminalError::NotReading => ApiError::TerminalConflict {
            code: "input_not_read",
            message: error.to_string(),
        },
    }
}

/// `POST /api/claude/sessions/{id}/agents/{name}/input`.
pub(crate) async fn input(
    ctx: ApiContext,
    id: String,
    name: String,
    body: Parsed<InputBody>,
) -> Answer {
    let body = body?;
    let (session_id, agent_name, terminal) = find(&ctx, &id, &name).await?;
    let mut bytes = body.text.into_bytes();
    if body.submit {
        bytes.push(b'\r');
    }
    terminal.input(&bytes).await.map_err(terminal_error)?;
    Ok(envelope::success(
        StatusCode::OK,
        &InputPayload {
            session_id,
            agent_name,
            bytes: bytes.len(),
        },
    ))
}

/// `GET /api/claude/sessions/{id}/agents/{name}/screen`.
pub(crate) async fn screen(ctx: ApiContext, id: String, name: String) -> Answer {
    let (session_id, agent_name, terminal) = find(&ctx, &id, &name).await?;
    let screen = terminal.screen();
    Ok(envelope::success(
        StatusCode::OK,
        &ScreenPayload {
            session_id,
            agent_name,
            rows: screen.size.rows,
            cols: screen.size.cols,
            lines: screen.lines,
            cursor: CursorObject {
                row: screen.cursor.0,
                col: screen.cursor.1,
            },
            title: screen.title,
            running: screen.running,
        },
    ))
}

/// `POST /api/claude/sessions/{id}/agents/{name}/resize`: applied now when the agent runs,
/// kept for its next start either way.
pub(crate) async fn resize(
    ctx: ApiContext,
    id: String,
    name: String,
    body: Parsed<ResizeBody>,
) -> Answer {
    let body = body?;
    let size = checked_size(body.rows, body.cols).map_err(terminal_error)?;
    let (session_id, agent_name, terminal) = find(&ctx, &id, &name).await?;
    terminal.resize(size).map_err(terminal_error)?;
    Ok(envelope::success(
        StatusCode::OK,
        &ResizePayload {
            session_id,
            agent_name,
            rows: size.rows,
            cols: size.cols,
        },
    ))
}

/// `GET /ws/sessions/{id}/agents/{name}/terminal`: refused before the upgrade (404, 409)
/// when there is no such terminal.
pub(crate) async fn attach(upgrade: Ws, id: String, name: String, ctx: ApiContext) -> Response {
    let terminal = match find(&ctx, &id, &name).await {
        Ok((_, _, terminal)) => terminal,
        Err(error) => return reply(Err(error)),
    };
    let closing = ctx.live.closing();
    upgrade
        .max_message_size(MAX_VIEWER_MESSAGE)
        .max_frame_size(MAX_VIEWER_MESSAGE)
        .on_upgrade(move |socket| serve(socket, terminal, closing))
        .into_response()
}

/// What a viewer's text frame is: a resize, or keystrokes.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Control {
    Resize { rows: u32, cols: u32 },
}

/// What woke a viewer's loop.
enum Next {
    Closing,
    Output(Result<bytes::Bytes, broadcast::error::RecvError>),
    Viewer(Option<Result<Message, warp::Error>>),
}

/// One viewer, until it leaves, falls behind, or the terminal or the server goes away.
async fn serve(socket: WebSocket, terminal: Arc<Terminal>, mut closing: watch::Receiver<bool>) {
    let (mut sink, mut stream) = socket.split();
    let Viewer {
        scrollback,
        mut live,
    } = terminal.attach();
    for piece in scrollback.chunks(SCROLLBACK_FRAME) {
        if sink
            .send(Message::binary(scrollback.slice_ref(piece)))
            .await
            .is_err()
        {
            return;
        }
    }
    // Sent: the copy is the viewer's alone, and it is not kept while the viewer watches.
    drop(scrollback);
    let close = loop {
        // Handled outside the select, which must not hold the closing flag's guard across
        // the handlers' awaits.
        let next = tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => Next::Closing,
            chunk = live.recv() => Next::Output(chunk),
            message = stream.next() => Next::Viewer(message),
        };
        match next {
            Next::Closing => {
                break Some(Message::close_with(
                    GOING_AWAY,
                    "the server is shutting down",
                ));
            }
            Next::Output(Ok(chunk)) => {
                if sink.send(Message::binary(chunk)).await.is_err() {
                    break None;
                }
            }
            Next::Output(Err(broadcast::error::RecvError::Lagged(_))) => {
                break Some(Message::close_with(
                    FELL_BEHIND,
                    "this viewer fell behind the terminal's output; reconnect to get the scrollback and live output again",
                ));
            }
            Next::Output(Err(broadcast::error::RecvError::Closed)) => {
                break Some(Message::close_with(GOING_AWAY, "the agent's session ended"));
            }
            Next::Viewer(Some(Ok(message))) if !message.is_close() => {
                typed(&terminal, &message).await;
            }
            Next::Viewer(_) => break None,
        }
    };
    if let Some(close) = close {
        let _ = sink.send(close).await;
    }
    let _ = sink.close().await;
}

/// Applies one frame of a viewer: a resize, or keystrokes. Keystrokes while no process runs
/// are dropped, as a terminal drops what is typed into a dead program; a bad resize too
/// (the viewer keeps its size, and the next output shows the terminal's).
async fn typed(terminal: &Terminal, message: &Message) {
    if message.is_text() {
        if let Ok(Control::Resize { rows, cols }) = serde_json::from_slice(message.as_bytes()) {
            if let Ok(size) = checked_size(rows, cols) {
                let _ = terminal.resize(size);
            }
            return;
        }
    }
    if message.is_text() || message.is_binary() {
        let _ = terminal.input(message.as_bytes()).await;
    }
}
