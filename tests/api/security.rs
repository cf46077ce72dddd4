//! The security guards of the real `session-manager` binary: bearer token (header and
//! WebSocket subprotocol, never the URL), Host and Origin checks, CORS, the per-client rate
//! limit and the 503 of a draining server. Each test starts its own server on port 0 with a
//! temporary data directory, HOME and config file, and kills it on drop.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nix::sys::signal::Signal;
use serde_json::Value;

use common::app::App;

const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

const TOKEN: &str = "s3cret-integration-token";
/// The same length as [`TOKEN`], one byte different.
const SAME_LENGTH_WRONG: &str = "s3cret-integration-tokem";
const ALLOWED_ORIGIN: &str = "http://app.example:3000";
/// No route answers it, so a request that passes every guard gets a 404.
const UNROUTED: &str = "/api/claude/no-such-route";

/// A server configuration with a token and one allowed origin.
fn secured() -> String {
    format!("token = \"{TOKEN}\"\nallowed_origins = [\"{ALLOWED_ORIGIN}\"]\n")
}

/// A server started on port 0 with `[server]` settings from a temporary config file.
struct TestApp {
    app: App,
    addr: SocketAddr,
}

fn spawn_app(server_settings: &str) -> TestApp {
    let app = App::with_config(&format!("[server]\n{server_settings}"));
    let addr = app.address.parse().unwrap();
    TestApp { app, addr }
}

impl TestApp {
    fn url(&self, path: &str) -> String {
        self.app.url(path)
    }

    async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.app.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send("GET", path, headers).await
    }

    fn signal(&mut self, signal: Signal) {
        self.app.signal(signal);
    }

    fn wait_for_exit(&mut self) -> ExitStatus {
        self.app
            .wait_exit(EXIT_TIMEOUT)
            .expect("the server did not exit in time")
    }

    /// A connection with bounded reads, for requests reqwest would not send as written.
    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    }
}

/// Asserts the failure envelope with `status` and `code`, and returns its body.
async fn assert_refused(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert!(body["timestamp"].is_f64(), "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty(), "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    body
}

/// Asserts a 401 with `WWW-Authenticate: Bearer` that does not repeat `presented`.
async fn assert_unauthorized(response: reqwest::Response, presented: &str) {
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = assert_refused(response, 401, "unauthorized").await;
    if !presented.is_empty() {
        assert!(
            !body.to_string().contains(presented),
            "token echoed: {body}"
        );
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

/// A response read off a raw connection: status, headers (names lower-case), body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads one response head and, when it announces one, its body.
fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .map_or(0, |(_, value)| value.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Sends `request` as written on a new connection and reads the response.
fn raw(app: &TestApp, request: &str) -> RawResponse {
    let mut stream = app.connect();
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// A WebSocket upgrade request for `path` with `extra` header lines.
fn upgrade_request(path: &str, extra: &[&str]) -> String {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request
}

#[tokio::test]
async fn a_request_without_the_right_token_gets_401() {
    let app = spawn_app(&secured());
    assert_unauthorized(app.get(UNROUTED, &[]).await, "").await;
    for (value, presented) in [
        (format!("Bearer {SAME_LENGTH_WRONG}"), SAME_LENGTH_WRONG),
        ("Bearer short".to_owned(), "short"),
        (format!("Bearer {TOKEN}-longer"), "-longer"),
        (format!("Basic {TOKEN}"), ""),
        (TOKEN.to_owned(), ""),
        ("Bearer ".to_owned(), ""),
    ] {
        let response = app.get(UNROUTED, &[("authorization", &value)]).await;
        assert_unauthorized(response, presented).await;
    }
    // The wrong method on /health is not the exempt request.
    assert_unauthorized(app.send("POST", "/health", &[]).await, "").await;
    assert_unauthorized(app.send("DELETE", UNROUTED, &[]).await, "").await;
}

#[tokio::test]
async fn the_right_token_passes_every_guard() {
    let app = spawn_app(&secured());
    let bearer = format!("Bearer {TOKEN}");
    for value in [bearer.clone(), format!("bearer {TOKEN}")] {
        let response = app.get(UNROUTED, &[("authorization", &value)]).await;
        assert_refused(response, 404, "not_found").await;
    }
    let response = app
        .send("POST", "/health", &[("authorization", &bearer)])
        .await;
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
    assert_refused(response, 405, "method_not_allowed").await;
    let response = app.get("/health", &[("authorization", &bearer)]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn health_needs_no_token() {
    let app = spawn_app(&secured());
    let response = app.get("/health", &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    let response = app.send("HEAD", "/health", &[]).await;
    assert_eq!(response.status(), 200);
    // A wrong token on the exempt request is ignored, not punished.
    let wrong = format!("Bearer {SAME_LENGTH_WRONG}");
    let response = app.get("/health", &[("authorization", &wrong)]).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_token_in_the_url_does_not_authenticate() {
    let app = spawn_app(&secured());
    for query in ["token", "access_token", "bearer"] {
        let path = format!("{UNROUTED}?{query}={TOKEN}");
        assert_unauthorized(app.get(&path, &[]).await, "").await;
    }
    let upgrade = raw(
        &app,
        &upgrade_request(&format!("/ws/sessions?token={TOKEN}"), &[]),
    );
    assert_eq!(upgrade.status, 401);
    assert_eq!(upgrade.json()["error_code"], "unauthorized");
}

#[test]
fn a_websocket_upgrade_takes_the_token_from_the_header_or_the_subprotocol() {
    let app = spawn_app(&secured());
    let header = format!("Authorization: Bearer {TOKEN}");
    let protocol = format!("Sec-WebSocket-Protocol: bearer, {TOKEN}");
    // Past the guards, a path no route answers: only a 404 shows the token was accepted.
    for line in [&header, &protocol] {
        let response = raw(&app, &upgrade_request("/ws/none", &[line]));
        assert_eq!(response.status, 404, "{line}");
        assert_eq!(response.json()["error_code"], "not_found");
    }
    // The real WebSocket route opens with either; offered `bearer` is selected, as browsers
    // require.
    let response = raw(&app, &upgrade_request("/ws/sessions", &[&header]));
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), None);
    let response = raw(&app, &upgrade_request("/ws/sessions", &[&protocol]));
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), Some("bearer"));
    // The token base64url-encoded (any token can be offered so; the dashboard does).
    let encoded = format!(
        "Sec-WebSocket-Protocol: bearer.base64url, {}",
        URL_SAFE_NO_PAD.encode(TOKEN)
    );
    let response = raw(&app, &upgrade_request("/ws/sessions", &[&encoded]));
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-protocol"),
        Some("bearer.base64url")
    );

    for extra in [
        vec![],
        vec![format!(
            "Sec-WebSocket-Protocol: bearer, {SAME_LENGTH_WRONG}"
        )],
        vec![format!("Sec-WebSocket-Protocol: {TOKEN}")],
        vec![format!("Sec-WebSocket-Protocol: {TOKEN}, bearer")],
        vec![format!("Sec-WebSocket-Protocol: bearer.base64url, {TOKEN}")],
        vec![format!(
            "Sec-WebSocket-Protocol: bearer.base64url, {}",
            URL_SAFE_NO_PAD.encode(SAME_LENGTH_WRONG)
        )],
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let response = raw(&app, &upgrade_request("/ws/sessions", &extra));
        assert_eq!(response.status, 401, "{extra:?}");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        assert_eq!(response.json()["error_code"], "unauthorized");
    }

    // A cross-site page cannot open a WebSocket, token or not.
    let response = raw(
        &app,
        &upgrade_request("/ws/sessions", &[&protocol, "Origin: https://evil.example"]),
    );
    assert_eq!(response.status, 403);
    assert_eq!(response.json()["error_code"], "session_permission_error");
    assert_eq!(response.json()["details"]["field"], "Origin");
}

#[test]
fn the_subprotocol_is_no_token_outside_an_upgrade() {
    let app = spawn_app(&secured());
    let response = raw(
        &app,
        &format!(
            "GET {UNROUTED} HTTP/1.1\r\nHost: localhost\r\n\
             Sec-WebSocket-Protocol: bearer, {TOKEN}\r\n\r\n"
        ),
    );
    assert_eq!(response.status, 401);
}

#[tokio::test]
async fn a_foreign_host_gets_403() {
    let app = spawn_app(&secured());
    for host in [
        "evil.example",
        "evil.example:8082",
        "127.0.0.1.evil.example",
    ] {
        // /health too: rebinding must not even learn that the server is alive.
        for path in ["/health", UNROUTED] {
            let response = app.get(path, &[("host", host)]).await;
            assert_eq!(
                assert_refused(response, 403, "session_permission_error").await["details"]["field"],
                "Host"
            );
        }
    }
    for host in ["localhost:1234", "127.0.0.1", "[::1]:8082", "app.example"] {
        let response = app.get("/health", &[("host", host)]).await;
        assert_eq!(response.status(), 200, "{host}");
    }
    // Unparsable, or disagreeing with an absolute request target: refused too.
    for request in [
        "GET /health HTTP/1.1\r\nHost: bad host!\r\n\r\n",
        "GET http://evil.example/health HTTP/1.1\r\nHost: localhost\r\n\r\n",
    ] {
        let response = raw(&app, request);
        assert_eq!(response.status, 403, "{request}");
        assert_eq!(response.json()["error_code"], "session_permission_error");
        assert_eq!(response.json()["details"]["field"], "Host");
    }
    // No Host at all is no browser, so no rebinding page.
    let response = raw(&app, "GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200);
    // Checked before the token: a rebinding page learns nothing from a 401 either.
    let bearer = format!("Bearer {TOKEN}");
    let response = app
        .get(
            UNROUTED,
            &[("host", "evil.example"), ("authorization", &bearer)],
        )
        .await;
    assert_eq!(
        assert_refused(response, 403, "session_permission_error").await["details"]["field"],
        "Host"
    );
}

#[tokio::test]
async fn a_foreign_origin_gets_403_without_cors_headers() {
    let app = spawn_app(&secured());
    for origin in [
        "https://evil.example",
        "http://app.example:3001",
        "https://app.example:3000",
        "null",
    ] {
        let response = app.get("/health", &[("origin", origin)]).await;
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        assert_eq!(
            assert_refused(response, 403, "session_permission_error").await["details"]["field"],
            "Origin"
        );
    }
}

#[tokio::test]
async fn an_allowed_origin_gets_cors_headers() {
    let app = spawn_app(&secured());
    for origin in [ALLOWED_ORIGIN, "http://localhost:5173", "http://127.0.0.1"] {
        let response = app.get("/health", &[("origin", origin)]).await;
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(
            header(&response, "access-control-allow-origin"),
            Some(origin)
        );
        assert_eq!(header(&response, "vary"), Some("origin"));
    }
    // Errors too, or a browser script could not read why it was refused.
    let response = app.get(UNROUTED, &[("origin", ALLOWED_ORIGIN)]).await;
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    let exposed = header(&response, "access-control-expose-headers").unwrap();
    assert!(exposed.contains("retry-after"), "{exposed}");
    assert_unauthorized(response, "").await;
    // No Origin (curl, scripts): no CORS header, but the response still varies by it.
    let response = app.get("/health", &[]).await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(header(&response, "vary"), Some("origin"));
}

/// A browser's preflight for a cross-origin DELETE with a token and a JSON body.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    let headers = [
        ("origin", origin),
        ("access-control-request-method", "DELETE"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ];
    app.send("OPTIONS", "/api/claude/sessions", &headers).await
}

#[tokio::test]
async fn a_preflight_is_answered_without_the_token() {
    let app = spawn_app(&secured());
    let response = preflight(&app, ALLOWED_ORIGIN).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(ALLOWED_ORIGIN)
    );
    assert_eq!(
        header(&response, "access-control-allow-methods"),
        Some("GET, POST, PUT, DELETE")
    );
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert_eq!(header(&response, "vary"), Some("origin"));
    assert!(response.bytes().await.unwrap().is_empty());

    let response = preflight(&app, "https://evil.example").await;
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    assert_eq!(
        assert_refused(response, 403, "session_permission_error").await["details"]["field"],
        "Origin"
    );

    // An OPTIONS that is not a preflight is an ordinary request.
    let response = app.send("OPTIONS", "/health", &[]).await;
    assert_unauthorized(response, "").await;
}

#[tokio::test]
async fn a_client_over_the_rate_limit_gets_429_with_retry_after() {
    let app = spawn_app("rate_limit_per_second = 1\nrate_limit_burst = 2\n");
    // The burst passes; a request within the next second is refused. Counted rather than
    // assumed, since a slow machine may refill a token between two requests.
    let started = Instant::now();
    let mut passed = 0;
    let refused = loop {
        let response = app.get("/health", &[]).await;
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
        passed += 1;
        assert!(passed <= 10, "no 429 after {passed} requests");
    };
    let refill = started.elapsed().as_secs();
    assert!(
        (2..=2 + refill + 1).contains(&passed),
        "{passed} passed in {refill} s"
    );
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    let body = assert_refused(refused, 429, "rate_limited").await;
    assert_eq!(body["details"]["retry_after_seconds"], retry_after);
}

#[tokio::test]
async fn the_limit_is_off_at_zero() {
    let app = spawn_app("rate_limit_per_second = 0\nrate_limit_burst = 0\n");
    for _ in 0..50 {
        assert_eq!(app.get("/health", &[]).await.status(), 200);
    }
}

#[test]
fn a_request_read_while_draining_gets_503() {
    let mut app = spawn_app("");
    // A connection that has started a request before the shutdown: hyper finishes it (a
    // new connection is not idle) but will keep nothing alive after it.
    let mut pending = app.connect();
    pending.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    // One full exchange on a second connection: the server accepts connections in order,
    // so the pending one has been accepted and its first bytes read by now.
    let response = raw(
        &app,
        "GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(response.status, 200);

    app.signal(Signal::SIGTERM);
    // The listener closes once the server is draining.
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while TcpStream::connect(app.addr).is_ok() {
        assert!(Instant::now() < deadline, "the server kept accepting");
        thread::sleep(POLL_INTERVAL);
    }
    pending.write_all(b"Host: localhost\r\n\r\n").unwrap();
    let response = read_response(&mut pending);
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("10"));
    assert_eq!(response.header("connection"), Some("close"));
    let body = response.json();
    assert_eq!(body["error_code"], "shutting_down", "{body}");
    assert_eq!(app.wait_for_exit().code(), Some(0));
}

/// Sends `request` (any bytes) on a new connection and reads the response; a write cut short
/// by the server's answer is not an error.
fn raw_bytes(app: &TestApp, request: &[u8]) -> RawResponse {
    let mut stream = app.connect();
    let _ = stream.write_all(request);
    read_response(&mut stream)
}

/// One hostile request and what it must get: the status, and the `error_code` of the
/// envelope — which every refusal carries, hyper's own (unparsable requests) included.
struct Hostile {
    what: &'static str,
    request: Vec<u8>,
    status: u16,
    code: &'static str,
}

/// A request line, the right Host and token, `extra` header lines, and a JSON `body`.
fn post_json(path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

/// A GET with `headers` (each ending in CRLF) and nothing else.
fn get_with(path: &str, headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\n{headers}\r\n").into_bytes()
}

fn hostile_requests() -> Vec<Hostile> {
    let sessions = "/api/claude/sessions";
    let host = "Host: 127.0.0.1\r\n";
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let ok = format!("{host}{auth}");
    let row = |what, request, status, code| Hostile {
        what,
        request,
        status,
        code,
    };
    let deep = format!("{{\"name\": {}{}}}", "[".repeat(2000), "]".repeat(2000));
    let mut chunked = format!(
        "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let over_limit = vec![b' '; 1024 * 1024 + 100];
    chunked.extend_from_slice(format!("{:x}\r\n", over_limit.len()).as_bytes());
    chunked.extend_from_slice(&over_limit);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let flood: String = (0..200).map(|i| format!("X-Flood-{i}: y\r\n")).collect();
    let big_header = format!("X-Big: {}\r\n", "a".repeat(500_000));
    let half_head = format!("X-Half: {}\r\n", "a".repeat(50_000));
    vec![
        // Bodies.
        row(
            "body over max_body_bytes, by Content-Length",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
                 Content-Length: 10000000000\r\n\r\n{{"
            )
            .into_bytes(),
            413,
            "payload_too_large",
        ),
        row(
            "body over max_body_bytes, chunked",
            chunked,
            413,
            "payload_too_large",
        ),
        row(
            "JSON nested 2,000 deep",
            post_json(sessions, "", deep.as_bytes()),
            400,
            "session_validation_error",
        ),
        row(
            "JSON nested 100,000 deep at the top",
            post_json(
                sessions,
                "",
                format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
            ),
            400,
            "session_validation_error",
        ),
        row(
            "bad UTF-8 in a JSON string",
            post_json(
                sessions,
                "",
                b"{\"name\": \"\xff\xfe\", \"working_directory\": \"/tmp/x\"}",
            ),
            400,
            "session_validation_error",
        ),
        row(
            "NUL in a name",
            post_json(
                sessions,
                "",
                br#"{"name": "x\u0000", "working_directory": "/tmp/x"}"#,
            ),
            400,
            "session_validation_error",
        ),
        row(
            "not JSON",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
            )
            .into_bytes(),
            415,
            "unsupported_media_type",
        ),
        row(
            "two different Content-Lengths",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
                 Content-Length: 2\r\nContent-Length: 5\r\n\r\n{{}}"
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        // Paths.
        row(
            "working directory climbing into /etc",
            post_json(
                sessions,
                "",
                br#"{"name": "x", "working_directory": "/tmp/../etc/x"}"#,
            ),
            422,
            "path_refused",
        ),
        row(
            "dot segments in the URL",
            get_with("/api/claude/sessions/../../../etc/passwd", &ok),
            404,
            "not_found",
        ),
        row(
            "encoded dot segments in the URL",
            get_with("/%2e%2e/%2e%2e/etc/passwd", &ok),
            404,
            "not_found",
        ),
        row(
            "encoded traversal as a session id",
            get_with("/api/claude/sessions/..%2F..%2Fetc%2Fpasswd", &ok),
            404,
            "session_not_found",
        ),
        row(
            "bad UTF-8 in the URL",
            [
                b"GET /api/claude/sessions/\xff\xfe HTTP/1.1\r\n".as_slice(),
                ok.as_bytes(),
                b"\r\n",
            ]
            .concat(),
            400,
            "bad_request",
        ),
        row(
            "not HTTP at all",
            b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        row(
            "unknown method",
            format!("BREW {sessions} HTTP/1.1\r\n{ok}\r\n").into_bytes(),
            405,
            "method_not_allowed",
        ),
        // Host and Origin.
        row(
            "foreign Host",
            get_with(sessions, &format!("Host: evil.example\r\n{auth}")),
            403,
            "session_permission_error",
        ),
        row(
            "rebinding Host with a loopback prefix",
            get_with(sessions, &format!("Host: 127.0.0.1.evil.example\r\n{auth}")),
            403,
            "session_permission_error",
        ),
        row(
            "foreign host in an absolute URI",
            get_with(&format!("http://evil.example{sessions}"), &ok),
            403,
            "session_permission_error",
        ),
        row(
            "two Host lines, the loopback one first",
            get_with(sessions, &format!("{ok}Host: evil.example\r\n")),
            403,
            "session_permission_error",
        ),
        row(
            "foreign Origin",
            get_with(sessions, &format!("{ok}Origin: http://evil.example\r\n")),
            403,
            "session_permission_error",
        ),
        row(
            "Origin null",
            get_with(sessions, &format!("{ok}Origin: null\r\n")),
            403,
            "session_permission_error",
        ),
        row(
            "two Origins, the allowed one first",
            get_with(
                sessions,
                &format!("{ok}Origin: {ALLOWED_ORIGIN}\r\nOrigin: http://evil.example\r\n"),
            ),
            403,
            "session_permission_error",
        ),
        // Token.
        row(
            "no token",
            get_with(sessions, host),
            401,
            "unauthorized",
        ),
        row(
            "wrong token of the same length",
            get_with(
                sessions,
                &format!("{host}Authorization: Bearer {SAME_LENGTH_WRONG}\r\n"),
            ),
            401,
            "unauthorized",
        ),
        row(
            "the token under another scheme",
            get_with(sessions, &format!("{host}Authorization: Basic {TOKEN}\r\n")),
            401,
            "unauthorized",
        ),
        row(
            "bad UTF-8 as the token",
            [
                format!("GET {sessions} HTTP/1.1\r\n{host}").as_bytes(),
                b"Authorization: Bearer \xff\xfe\r\n\r\n",
            ]
            .concat(),
            401,
            "unauthorized",
        ),
        row(
            "two Authorization lines, the right one first",
            get_with(sessions, &format!("{ok}Authorization: Bearer wrong\r\n")),
            401,
            "unauthorized",
        ),
        row(
            "token in the query string",
            get_with(&format!("{sessions}?token={TOKEN}"), host),
            401,
            "unauthorized",
        ),
        // Header floods.
        row(
            "200 header lines",
            get_with(sessions, &format!("{ok}{flood}")),
            431,
            "request_header_fields_too_large",
        ),
        row(
            "one header of 500 kB",
            get_with(sessions, &format!("{ok}{big_header}")),
            431,
            "request_header_fields_too_large",
        ),
        row(
            "a head of 100 kB in two headers (hyper reads it; the server reads 64 KiB)",
            get_with(sessions, &format!("{ok}{half_head}{half_head}")),
            431,
            "request_header_fields_too_large",
        ),
        row(
            "a URL of 70 kB",
            get_with(&format!("{sessions}/{}", "a".repeat(70_000)), &ok),
            414,
            "uri_too_long",
        ),
        // Request line and framing (issue 19, item 7).
        row(
            "a bad request line",
            format!("GET  {sessions} HTTP/1.1\r\n{ok}\r\n").into_bytes(),
            400,
            "bad_request",
        ),
        row(
            "an unknown HTTP version",
            format!("GET {sessions} HTTP/9.9\r\n{ok}\r\n").into_bytes(),
            400,
            "bad_request",
        ),
        row(
            "HTTP/1.1 without Host",
            get_with(sessions, &auth),
            400,
            "bad_request",
        ),
        row(
            "Transfer-Encoding: gzip",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
                 Transfer-Encoding: gzip\r\n\r\n"
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        row(
            "Content-Length, then Transfer-Encoding: chunked",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
                 Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        row(
            "Transfer-Encoding: chunked, then Content-Length",
            format!(
                "POST {sessions} HTTP/1.1\r\n{ok}Content-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\nContent-Length: 7\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
    ]
}

/// Issue 10's table of hostile requests, each sent raw (bad UTF-8, floods and duplicate lines
/// are beyond what reqwest sends) to a server with a token and an allowed origin; every one
/// gets its status and error code, and the server stays healthy throughout.
#[test]
fn each_hostile_request_gets_its_status() {
    let app = spawn_app(&secured());
    let mut wrong = Vec::new();
    for hostile in hostile_requests() {
        let response = raw_bytes(&app, &hostile.request);
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let enveloped = body["success"] == false
            && body["timestamp"].is_f64()
            && body["error"]
                .as_str()
                .is_some_and(|error| !error.is_empty())
            && response.header("content-type") == Some("application/json")
            && !body.to_string().contains("panicked");
        let code = body["error_code"].as_str().unwrap_or_default();
        if response.status != hostile.status || code != hostile.code || !enveloped {
            wrong.push(format!(
                "{}: got {} {body}, want {} {}",
                hostile.what, response.status, hostile.status, hostile.code
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // None of them is worth an ERROR line: any client could multiply those.
    let log = std::fs::read_to_string(app.app.data().join("logs/session_manager.log"))
        .expect("the server's log file");
    let errors: Vec<&str> = log.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // Still serving, with the right credentials.
    let response = raw_bytes(
        &app,
        get_with(
            "/api/claude/sessions",
            &format!("Host: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"),
        )
        .as_slice(),
    );
    assert_eq!(response.status, 200);
}
