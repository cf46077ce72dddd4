//! `session-manager hook`: forwards one Claude Code hook payload (read on stdin) to the
//! server's `POST /api/claude/sessions/{id}/events` when it knows the session of ours
//! (`CLAUDE_SESSION_ID`, or a payload `session_id` the server knows), else to
//! `POST /api/claude/hooks`, which attributes it as it does Claude Code's own `http` hooks
//! (a Claude Code started by hand, whose `session_id` is its own).
//!
//! Claude Code runs the hook command on every tool use and waits for it, so this is small
//! and bounded: a blocking HTTP/1.1 request over loopback with short timeouts, no runtime.
//! It never exits with status 2 — to Claude Code that means "block the tool call" — so a
//! server that is down or a session it does not know costs a warning, never the user's work.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{Map, Value};
use uuid::Uuid;

/// Largest payload forwarded; the server's default body limit.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// How long connecting, sending and reading the answer may each take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Where and as whom to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` of the server (`SESSION_MANAGER_URL`, else the configured address).
    pub server_url: String,
    /// Bearer token, when the server has one.
    pub token: Option<String>,
}

/// Why a payload was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// stdin was not one JSON object, or too large.
    #[error("the hook payload on stdin is not usable: {0}")]
    Payload(String),
    /// Neither `CLAUDE_SESSION_ID` nor the payload's `session_id` is a session-manager id.
    #[error("no session: set CLAUDE_SESSION_ID (agents started by session-manager have it) or give a session_id in the payload")]
    NoSession,
    /// The server URL is not `http://host:port`.
    #[error("SESSION_MANAGER_URL must look like http://host:port, got {0:?}")]
    Url(String),
    /// The server could not be reached or did not answer in time.
    #[error("cannot reach the server at {url}: {source}")]
    Unreachable {
        /// Where.
        url: String,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The server refused the event.
    #[error("the server answered {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its answer, for people.
        body: String,
    },
}

/// Parses a payload and picks its session: `session_env` (`CLAUDE_SESSION_ID`) when it is a
/// UUID, else the payload's own `session_id` when that is one.
pub fn prepare(payload: &[u8], session_env: Option<&str>) -> Result<(Uuid, Vec<u8>), HookError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(HookError::Payload(format!(
            "{} bytes, more than {MAX_PAYLOAD_BYTES}",
            payload.len()
        )));
    }
    let object: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| HookError::Payload(e.to_string()))?;
    let session = session_env
        .and_then(|id| Uuid::parse_str(id.trim()).ok())
        .or_else(|| {
            object
                .get("session_id")
                .and_then(Value::as_str)
                .and_then(|id| Uuid::parse_str(id).ok())
        })
        .ok_or(HookError::NoSession)?;
    let body = serde_json::to_vec(&object).map_err(|e| HookError::Payload(e.to_string()))?;
    Ok((session, body))
}

/// Where a payload goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `CLAUDE_SESSION_ID` names a session of ours: its events route.
    Session(Uuid),
    /// Only the payload's `session_id` is a UUID: ours if the server knows it, else Claude
    /// Code's own id, and the payload goes to `POST /api/claude/hooks`.
    MaybeSession(Uuid),
    /// No UUID at all: `POST /api/claude/hooks`, attributed by the server.
    Claude,
}

/// Parses a payload and picks its [`Route`] (as [`prepare`], but a payload with no session
/// of ours still has somewhere to go).
pub fn route(payload: &[u8], session_env: Option<&str>) -> Result<(Route, Vec<u8>), HookError> {
    let from_env = session_env.and_then(|id| Uuid::parse_str(id.trim()).ok());
    match prepare(payload, session_env) {
        Ok((session, body)) if Some(session) == from_env => Ok((Route::Session(session), body)),
        Ok((session, body)) => Ok((Route::MaybeSession(session), body)),
        Err(HookError::NoSession) => {
            let object: Map<String, Value> =
                serde_json::from_slice(payload).map_err(|e| HookError::Payload(e.to_string()))?;
            let body =
                serde_json::to_vec(&object).map_err(|e| HookError::Payload(e.to_string()))?;
            Ok((Route::Claude, body))
        }
        Err(error) => Err(error),
    }
}

/// Delivers a routed payload; `agent` (`CLAUDE_AGENT_NAME`) goes along to
/// `POST /api/claude/hooks`. Returns the HTTP status of the request that took it.
pub fn deliver(
    target: &Target,
    route: &Route,
    agent: Option<&str>,
    body: &[u8],
) -> Result<u16, HookError> {
    let mut headers = Vec::new();
    if let Some(agent) = agent
        .map(str::trim)
        .filter(|a| !a.is_empty() && !a.contains(['\r', '\n']))
    {
        headers.push(format!("X-Session-Manager-Agent: {agent}"));
    }
    match route {
        Route::Session(session) => send(target, *session, body),
        Route::MaybeSession(session) => match send(target, *session, body) {
            Err(HookError::Refused { status: 404, .. }) => {
                post(target, "/api/claude/hooks", &headers, body)
            }
            other => other,
        },
        Route::Claude => post(target, "/api/claude/hooks", &headers, body),
    }
}

/// Posts `body` as the session's hook event; returns the HTTP status (202 when taken).
pub fn send(target: &Target, session: Uuid, body: &[u8]) -> Result<u16, HookError> {
    post(
        target,
        &format!("/api/claude/sessions/{session}/events"),
        &[],
        body,
    )
}

/// Posts `body` (JSON) to a full `http://host:port/path` URL with the given headers
/// (values with line breaks are dropped); returns a 2xx status. What Claude Code does for an
/// `http` hook and an OTLP/JSON export, for programs that act like it (the fake `claude`).
pub fn post_url(url: &str, headers: &[(String, String)], body: &[u8]) -> Result<u16, HookError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HookError::Url(url.to_owned()))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    let target = Target {
        server_url: format!("http://{authority}"),
        token: None,
    };
    let lines: Vec<String> = headers
        .iter()
        .filter(|(name, value)| !format!("{name}{value}").contains(['\r', '\n']))
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    post(&target, path, &lines, body)
}

/// Posts `body` (JSON) to `path` with the extra header lines; returns a 2xx status.
fn post(target: &Target, path: &str, extra: &[String], body: &[u8]) -> Result<u16, HookError> {
    let authority = target
        .server_url
        .strip_prefix("http://")
        .map(|rest| rest.trim_end_matches('/'))
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
        .ok_or_else(|| HookError::Url(target.server_url.clone()))?;
    let unreachable = |source| HookError::Unreachable {
        url: target.server_url.clone(),
        source,
    };
    let address = authority
        .to_socket_addrs()
        .map_err(unreachable)?
        .next()
        .ok_or_else(|| HookError::Url(target.server_url.clone()))?;
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for line in extra {
        head.push_str(line);
        head.push_str("\r\n");
    }
    if let Some(token) = &target.token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(unreachable)?;
    stream.write_all(body).map_err(unreachable)?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .map_err(unreachable)?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| HookError::Refused {
            status: 0,
            body: "not an HTTP answer".into(),
        })?;
    if (200..300).contains(&status) {
        return Ok(status);
    }
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    Err(HookError::Refused {
        status,
        body: message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "6f1c9a1e-0000-4000-8000-000000000001";

    #[test]
    fn the_session_comes_from_the_environment_first_then_the_payload() {
        let payload = format!(r#"{{"hook_event_name": "Stop", "session_id": "{ID}"}}"#);
        let (from_payload, body) = prepare(payload.as_bytes(), None).unwrap();
        assert_eq!(from_payload.to_string(), ID);
        assert!(serde_json::from_slice::<Value>(&body).is_ok());
        let other = "6f1c9a1e-0000-4000-8000-000000000002";
        let (from_env, _) = prepare(payload.as_bytes(), Some(other)).unwrap();
        assert_eq!(from_env.to_string(), other);
        // Claude Code's own session ids are not ours: no UUID, no session.
        let theirs = br#"{"hook_event_name": "Stop", "session_id": "abc"}"#;
        assert!(matches!(
            prepare(theirs, Some("not-a-uuid")),
            Err(HookError::NoSession)
        ));
    }

    #[test]
    fn a_payload_with_no_session_of_ours_goes_to_the_claude_route() {
        let theirs = br#"{"hook_event_name": "SessionStart", "session_id": "abc"}"#;
        let (route_taken, body) = route(theirs, None).unwrap();
        assert_eq!(route_taken, Route::Claude);
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["session_id"],
            "abc"
        );
        let payload = format!(r#"{{"hook_event_name": "Stop", "session_id": "{ID}"}}"#);
        let id = Uuid::parse_str(ID).unwrap();
        assert_eq!(
            route(payload.as_bytes(), Some(ID)).unwrap().0,
            Route::Session(id)
        );
        assert_eq!(
            route(payload.as_bytes(), None).unwrap().0,
            Route::MaybeSession(id)
        );
        assert!(matches!(route(b"[1]", None), Err(HookError::Payload(_))));
    }

    #[test]
    fn bad_payloads_are_refused() {
        assert!(matches!(
            prepare(b"[1]", Some(ID)),
            Err(HookError::Payload(_))
        ));
        assert!(matches!(
            prepare(b"{", Some(ID)),
            Err(HookError::Payload(_))
        ));
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(matches!(
            prepare(&big, Some(ID)),
            Err(HookError::Payload(_))
        ));
    }

    #[test]
    fn a_bad_url_or_a_closed_port_is_an_error_not_a_hang() {
        let session = Uuid::parse_str(ID).unwrap();
        for url in ["https://x:1", "localhost:1", "http://", "http://h:1/path"] {
            let target = Target {
                server_url: url.into(),
                token: None,
            };
            assert!(
                matches!(send(&target, session, b"{}"), Err(HookError::Url(_))),
                "{url}"
            );
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let target = Target {
            server_url: format!("http://127.0.0.1:{port}"),
            token: None,
        };
        assert!(matches!(
            send(&target, session, b"{}"),
            Err(HookError::Unreachable { .. })
        ));
    }
}
