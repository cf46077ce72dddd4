//! `session-manager attach SESSION AGENT`: the user's terminal attached to an agent's, as
//! `tmux attach` is to a pane. The session is an id, or a name resolved through `GET
//! /sessions` (refused when several sessions have it); the agent's terminal is the WebSocket
//! `/ws/sessions/{id}/agents/{name}/terminal`, with the token as for any request.
//!
//! Attached, the terminal is raw (every key goes to the agent, `Ctrl-C` included) and its
//! size is the agent's (sent at start and on `SIGWINCH`); `Ctrl-]` detaches and the agent
//! keeps running. Refusals (no such session or agent, no terminal, a wrong token) and the
//! server closing the terminal (the session ended) are errors with the server's reason.

mod http;
mod raw;
mod relay;

use std::fmt;
use std::io::IsTerminal;
use std::net::{IpAddr, TcpStream, ToSocketAddrs};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::header::{HeaderValue, AUTHORIZATION};
use tungstenite::WebSocket;
use uuid::Uuid;

use crate::config::Settings;

/// What a path segment keeps unencoded: RFC 3986's unreserved characters, which cover every
/// valid agent name, so a valid name goes as typed.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Sessions asked for per page while resolving a name (the API's largest page).
const PAGE: usize = 1000;

/// Why attaching failed or ended in error.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// Stdin is a pipe or a file: raw mode and keystrokes need a terminal.
    #[error("stdin is not a terminal: attach needs an interactive terminal (for scripts, use POST …/agents/{{name}}/input and GET …/screen)")]
    NotATerminal,
    /// The server address is not `http://host:port`.
    #[error("the server address must look like http://host:port (SESSION_MANAGER_URL), got {0:?}")]
    Url(String),
    /// The server could not be reached.
    #[error("cannot reach the server at {url}")]
    Unreachable {
        /// Where.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// What answered is not an HTTP server.
    #[error("{url} did not answer in HTTP")]
    NotHttp {
        /// Where.
        url: String,
    },
    /// The server refused a request or the WebSocket upgrade.
    #[error("the server refused {what} ({status}): {message}{hint}", hint = hint(*.status))]
    Refused {
        /// What was asked.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The server's reason.
        message: String,
    },
    /// No session has this name.
    #[error("no session is named {0:?} (give its name or its id)")]
    NoSuchSession(String),
    /// Several sessions have this name.
    #[error("{} sessions are named {name:?}, give one of their ids: {}", .ids.len(), .ids.join(", "))]
    Ambiguous {
        /// The name given.
        name: String,
        /// Each candidate as `id (status)`.
        ids: Vec<String>,
    },
    /// The WebSocket handshake failed (not a refusal with a status).
    #[error("the WebSocket upgrade failed")]
    Handshake(#[source] tungstenite::Error),
    /// The server closed the terminal's socket.
    #[error("the server closed the terminal (code {code}){}", reason_suffix(.reason))]
    Closed {
        /// The close code (1006 when the connection ended without one).
        code: u16,
        /// The server's reason, maybe empty.
        reason: String,
    },
    /// The connection failed while attached.
    #[error("the connection to the server failed")]
    Lost(#[source] tungstenite::Error),
    /// The user's terminal or stdout failed.
    #[error("terminal i/o failed")]
    Io(#[source] std::io::Error),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 => " (the token is the server's `server.token`: set SESSION_MANAGER_SERVER__TOKEN)",
        _ => "",
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Where the server is and the token it wants.
#[derive(Debug, Clone)]
pub struct Server {
    /// `http://host:port`, as given.
    url: String,
    /// `host:port`.
    authority: String,
    /// The bearer token, when the server has one.
    token: Option<String>,
}

impl Server {
    /// The server at `url` (`http://host:port`).
    ///
    /// # Errors
    /// [`AttachError::Url`] when `url` is not of that form.
    pub fn new(url: &str, token: Option<String>) -> Result<Server, AttachError> {
        let authority = url
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .ok_or_else(|| AttachError::Url(url.to_owned()))?;
        Ok(Server {
            url: url.to_owned(),
            authority: authority.to_owned(),
            token: token.filter(|t| !t.is_empty()),
        })
    }

    /// `SESSION_MANAGER_URL` when set, else the configured address (as `session-manager
    /// hook` finds it), with the configured token.
    ///
    /// # Errors
    /// [`AttachError::Url`] when `SESSION_MANAGER_URL` is not `http://host:port`.
    pub fn from_settings(settings: &Settings) -> Result<Server, AttachError> {
        let url = std::env::var("SESSION_MANAGER_URL").unwrap_or_else(|_| {
            let port = settings.server.port;
            match settings.server.bind {
                IpAddr::V4(host) => format!("http://{host}:{port}"),
                IpAddr::V6(host) => format!("http://[{host}]:{port}"),
            }
        });
        Server::new(&url, Some(settings.server.token.expose().to_owned()))
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for address in self.authority.to_socket_addrs()? {
            match TcpStream::connect_timeout(&address, http::TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("the host has no address")))
    }
}

/// How an attachment ended well, for the line printed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    agent: String,
    why: &'static str,
}

impl fmt::Display for Detached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "detached from {} (the agent keeps running){}",
            self.agent, self.why
        )
    }
}

/// Attaches stdin/stdout to `agent` of `session` until the user detaches.
///
/// # Errors
/// Stdin not a terminal, the server unreachable or refusing, the name unknown or ambiguous,
/// the server closing the terminal or the connection failing while attached.
pub async fn attach(server: &Server, session: &str, agent: &str) -> Result<Detached, AttachError> {
    if !std::io::stdin().is_terminal() {
        return Err(AttachError::NotATerminal);
    }
    let id = {
        let (server, session) = (server.clone(), session.to_owned());
        blocking(move || resolve(&server, &session)).await?
    };
    let socket = reconnect(server, id, agent).await?;
    eprintln!("attached to {agent} of session {session}; Ctrl-] detaches");
    let end = {
        let _raw = raw::RawMode::enter().map_err(AttachError::Io)?;
        attached(server, id, agent, socket).await
    };
    // The agent's last line may have no end: what follows starts on a line of its own.
    eprintln!();
    let end = end?;
    Ok(Detached {
        agent: agent.to_owned(),
        why: match end {
            relay::End::Detached => "",
            relay::End::InputClosed => "; the terminal closed",
            relay::End::Signalled => "; stopped by a signal",
        },
    })
}

/// Relays until the end, connecting again each time the server closes this viewer for
/// falling behind (1008): it gets the scrollback again, as a new viewer does.
async fn attached(
    server: &Server,
    id: Uuid,
    agent: &str,
    socket: WebSocket<TcpStream>,
) -> Result<relay::End, AttachError> {
    let input = relay::Input::start().map_err(AttachError::Io)?;
    relay_again_when_behind(server, id, agent, socket, input).await
}

async fn relay_again_when_behind(
    server: &Server,
    id: Uuid,
    agent: &str,
    mut socket: WebSocket<TcpStream>,
    mut input: relay::Input,
) -> Result<relay::End, AttachError> {
    loop {
        match relay::relay(socket, &mut input).await {
            Err(AttachError::Closed {
                code: FELL_BEHIND, ..
            }) => {
                eprint!("\r\n[session-manager: this terminal fell behind the agent's output; attaching again]\r\n");
                socket = reconnect(server, id, agent).await?;
            }
            other => return other,
        }
    }
}

/// The close code of a viewer that fell behind.
const FELL_BEHIND: u16 = 1008;

/// [`connect`] off the runtime's threads.
async fn reconnect(
    server: &Server,
    id: Uuid,
    agent: &str,
) -> Result<WebSocket<TcpStream>, AttachError> {
    let (server, agent) = (server.clone(), agent.to_owned());
    blocking(move || connect(&server, id, &agent)).await
}

/// Runs blocking network code (a lookup, an upgrade) on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, AttachError> + Send + 'static,
) -> Result<T, AttachError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AttachError::Io(std::io::Error::other(error)))?
}

/// The session's id: `session` itself when it is one, else the one session of that name.
fn resolve(server: &Server, session: &str) -> Result<Uuid, AttachError> {
    if let Ok(id) = Uuid::parse_str(session) {
        return Ok(id);
    }
    let candidates = sessions_named(server, session)?;
    match candidates.as_slice() {
        [] => Err(AttachError::NoSuchSession(session.to_owned())),
        [(id, _)] => Ok(*id),
        several => Err(AttachError::Ambiguous {
            name: session.to_owned(),
            ids: several
                .iter()
                .map(|(id, status)| format!("{id} ({status})"))
                .collect(),
        }),
    }
}

/// Every session named exactly `name`, as (id, status). The list's `name_pattern` narrows
/// the pages (a glob, matched anywhere and ignoring case, so a superset); wildcards in the
/// name become `?`, which matches them too.
fn sessions_named(server: &Server, name: &str) -> Result<Vec<(Uuid, String)>, AttachError> {
    let pattern: String = name
        .chars()
        .map(|c| if c == '*' || c == '?' { '?' } else { c })
        .collect();
    let mut found = Vec::new();
    let mut offset = 0;
    loop {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("name_pattern", &pattern)
            .append_pair("limit", &PAGE.to_string())
            .append_pair("offset", &offset.to_string())
            .finish();
        let (status, body) = http::get_json(server, &format!("/api/claude/sessions?{query}"))?;
        if status != 200 {
            return Err(refused("the session list", status, &body));
        }
        let page = body["sessions"].as_array().cloned().unwrap_or_default();
        found.extend(page.iter().filter(|s| s["name"] == name).filter_map(|s| {
            let id = Uuid::parse_str(s["id"].as_str()?).ok()?;
            Some((id, s["status"].as_str().unwrap_or("?").to_owned()))
        }));
        offset += page.len();
        if page.is_empty() || offset as u64 >= body["total"].as_u64().unwrap_or(0) {
            return Ok(found);
        }
    }
}

/// The WebSocket of the agent's terminal, its upgrade done (blocking, bounded).
fn connect(server: &Server, id: Uuid, agent: &str) -> Result<WebSocket<TcpStream>, AttachError> {
    let path = format!(
        "/ws/sessions/{id}/agents/{}/terminal",
        utf8_percent_encode(agent, SEGMENT)
    );
    let mut request = format!("ws://{}{path}", server.authority)
        .into_client_request()
        .map_err(AttachError::Handshake)?;
    if let Some(token) = &server.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|error| {
            AttachError::Handshake(tungstenite::Error::HttpFormat(error.into()))
        })?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let unreachable = |source| AttachError::Unreachable {
        url: server.url.clone(),
        source,
    };
    let stream = server.connect().map_err(unreachable)?;
    // Keystrokes are small writes that must not wait for more.
    stream.set_nodelay(true).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(http::TIMEOUT))
        .map_err(unreachable)?;
    let what = format!("to attach to {agent}");
    let (mut socket, _) = tungstenite::client(request, stream).map_err(|error| match error {
        HandshakeError::Failure(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .and_then(|body| serde_json::from_slice(body).ok())
                .unwrap_or(Value::Null);
            refused(&what, response.status().as_u16(), &body)
        }
        HandshakeError::Failure(error) => AttachError::Handshake(error),
        // A blocking stream is interrupted only by its read timeout.
        HandshakeError::Interrupted(_) => unreachable(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer to the upgrade within {:?}", http::TIMEOUT),
        )),
    })?;
    socket
        .get_mut()
        .set_read_timeout(None)
        .map_err(unreachable)?;
    Ok(socket)
}

/// A refusal with the server's own reason (its envelope's `error`).
fn refused(what: &str, status: u16, body: &Value) -> AttachError {
    let message = body["error"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| "(no reason given)".to_owned());
    AttachError::Refused {
        what: what.to_owned(),
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_host_port_is_a_server_address() {
        let server = Server::new("http://127.0.0.1:8080/", Some(String::new())).unwrap();
        assert_eq!(server.authority, "127.0.0.1:8080");
        assert_eq!(server.token, None);
        for url in ["https://x:1", "localhost:1", "http://", "http://h:1/path"] {
            assert!(
                matches!(Server::new(url, None), Err(AttachError::Url(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn an_id_is_taken_as_it_is_without_asking_the_server() {
        // Nothing listens there: a lookup would fail.
        let server = Server::new("http://127.0.0.1:9", None).unwrap();
        let id = Uuid::new_v4();
        assert_eq!(resolve(&server, &id.to_string()).unwrap(), id);
        assert!(matches!(
            resolve(&server, "by-name"),
            Err(AttachError::Unreachable { .. })
        ));
    }

    #[test]
    fn refusals_carry_the_servers_reason_and_a_hint_for_the_token() {
        let body = serde_json::json!({ "error": "agent worker has no terminal" });
        let text = refused("to attach to worker", 409, &body).to_string();
        assert_eq!(
            text,
            "the server refused to attach to worker (409): agent worker has no terminal"
        );
        let text = refused("the session list", 401, &Value::Null).to_string();
        assert!(text.contains("(no reason given)"), "{text}");
        assert!(text.contains("SESSION_MANAGER_SERVER__TOKEN"), "{text}");
    }

    /// A server that closes the first viewer as fallen behind (1008), then takes the
    /// second: the relay attaches again, and what is typed next reaches the new socket.
    #[tokio::test]
    async fn a_viewer_closed_for_falling_behind_attaches_again() {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame as ServerClose;
        use tokio_tungstenite::tungstenite::Message as ServerMessage;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server =
            Server::new(&format!("http://{}", listener.local_addr().unwrap()), None).unwrap();
        let (second_open, second_opened) = tokio::sync::oneshot::channel();
        let fake = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut first = tokio_tungstenite::accept_async(stream).await.unwrap();
            first
                .send(ServerMessage::binary(b"first".to_vec()))
                .await
                .unwrap();
            let behind = ServerClose {
                code: CloseCode::Policy,
                reason: "fell behind".into(),
            };
            first
                .send(ServerMessage::Close(Some(behind)))
                .await
                .unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut second = tokio_tungstenite::accept_async(stream).await.unwrap();
            second_open.send(()).unwrap();
            let mut typed = Vec::new();
            while let Some(Ok(message)) = second.next().await {
                if let ServerMessage::Binary(bytes) = message {
                    typed.extend_from_slice(&bytes);
                }
            }
            typed
        });

        let id = Uuid::new_v4();
        let socket = reconnect(&server, id, "agent").await.unwrap();
        let (keys, input) = relay::Input::channel();
        let relayed = tokio::spawn(async move {
            relay_again_when_behind(&server, id, "agent", socket, input).await
        });
        second_opened.await.unwrap();
        keys.send(relay::Typed::Bytes(b"after".to_vec()))
            .await
            .unwrap();
        keys.send(relay::Typed::Detach).await.unwrap();
        assert_eq!(relayed.await.unwrap().unwrap(), relay::End::Detached);
        assert_eq!(fake.await.unwrap(), b"after");
    }

    #[test]
    fn an_ambiguous_name_lists_the_ids() {
        let error = AttachError::Ambiguous {
            name: "work".into(),
            ids: vec!["a (active)".into(), "b (terminated)".into()],
        };
        assert_eq!(
            error.to_string(),
            "2 sessions are named \"work\", give one of their ids: a (active), b (terminated)"
        );
    }
}
