//! The route table in process (warp's test requests): methods, 405s with `Allow`, guards, the envelope and the WebSocket upgrade behind the security chain.

//! The guard chain as `routes` composes it, without a socket: its order, the shutdown
//! guard, and the headers `decorate` adds to a WebSocket upgrade.
use super::*;
use futures::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warp::http::StatusCode;
use warp::test::RequestBuilder;

const TOKEN: &str = "unit-test-token";

/// A context over a real, empty session registry in a temp dir (kept alive by the caller).
async fn context(overrides: Value) -> (ApiContext, tempfile::TempDir) {
    let mut server = json!({
        "bind": "127.0.0.1", "port": 8082, "token": TOKEN, "allowed_origins": [],
        "max_body_bytes": 64, "rate_limit_per_second": 0, "rate_limit_burst": 0,
        "header_read_timeout_ms": 10000, "body_read_timeout_ms": 30000,
        "idle_timeout_ms": 60000, "max_connections": 1024,
        "max_connections_per_address": 256,
    });
    if let (Some(server), Some(overrides)) = (server.as_object_mut(), overrides.as_object()) {
        server.extend(overrides.clone());
    }
    let services = Services::default();
    services.set("api", ServiceState::Running);
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::config::Settings::load(&crate::config::Overrides {
        data_dir: Some(dir.path().join("data")),
        ..crate::config::Overrides::default()
    })
    .unwrap();
    settings.server = serde_json::from_value(server).unwrap();
    let storage = crate::storage::Storage::open(&settings.db_path())
        .await
        .unwrap();
    let sessions = SessionRegistry::start(
        Arc::new(settings.clone()),
        storage.clone(),
        "http://127.0.0.1:9".into(),
        crate::session::EventBus::new(0),
    )
    .await
    .unwrap();
    let monitor = Monitor::start(&settings, storage.clone(), sessions.clone())
        .await
        .unwrap();
    let claude =
        crate::claude::Claude::start(&settings, storage, sessions.clone(), monitor.clone())
            .await
            .unwrap();
    let bound = "127.0.0.1:8082".parse().unwrap();
    (
        ApiContext::new(&settings, bound, services, sessions, monitor, claude),
        dir,
    )
}

/// A stand-in for the WebSocket route, behind the real guards.
fn with_ws(
    ctx: &ApiContext,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
    let ws = warp::path!("ws").and(warp::ws()).map(|ws: warp::ws::Ws| {
        ws.on_upgrade(|mut socket| async move {
            let _ = socket.send(warp::ws::Message::text("hello")).await;
        })
        .into_response()
    });
    guarded(ctx, ws)
}

fn upgrade(path: &str) -> RequestBuilder {
    warp::test::request()
        .path(path)
        .header("host", "127.0.0.1:8082")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

async fn error_code(request: RequestBuilder, ctx: &ApiContext) -> (StatusCode, String) {
    let response = request.reply(&with_ws(ctx)).await;
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    (
        response.status(),
        body["error_code"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_draining_server_answers_503_after_checking_the_token() {
    let (ctx, _dir) = context(json!({})).await;
    ctx.services.set("api", ServiceState::Stopping);
    let request = || {
        warp::test::request()
            .path("/health")
            .header("host", "localhost")
    };
    let response = request().reply(&with_ws(&ctx)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "10");
    let body: Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(body["error_code"], "shutting_down");
    assert_eq!(body["details"]["retry_after_seconds"], 10);

    // Without the token, the client learns nothing, not even that the server is stopping.
    let anonymous = request().path("/api/claude/sessions");
    assert_eq!(
        error_code(anonymous, &ctx).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
}

#[tokio::test]
async fn the_guards_run_in_order() {
    let (ctx, _dir) = context(json!({ "rate_limit_per_second": 1, "rate_limit_burst": 1 })).await;
    let evil_host = || {
        warp::test::request()
            .path("/x")
            .header("host", "evil.example")
    };
    // Host before the token: a foreign host is refused whatever it carries.
    assert_eq!(
        error_code(evil_host(), &ctx).await,
        (StatusCode::FORBIDDEN, "session_permission_error".to_owned())
    );
    // The rate limit before Host: the bucket (1) is empty now.
    assert_eq!(
        error_code(evil_host(), &ctx).await,
        (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
    );

    let (ctx, _dir) = context(json!({})).await;
    // Origin before the token.
    let evil_origin = warp::test::request()
        .path("/x")
        .header("host", "localhost")
        .header("origin", "https://evil.example");
    assert_eq!(
        error_code(evil_origin, &ctx).await,
        (StatusCode::FORBIDDEN, "session_permission_error".to_owned())
    );
    // The token before the body limit and the routes.
    let big = warp::test::request()
        .method("POST")
        .path("/nowhere")
        .header("host", "localhost")
        .header("content-length", "1000");
    assert_eq!(
        error_code(big, &ctx).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
    let big = warp::test::request()
        .method("POST")
        .path("/nowhere")
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-length", "1000");
    assert_eq!(
        error_code(big, &ctx).await,
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large".to_owned()
        )
    );
}

#[tokio::test]
async fn an_upgrade_with_the_token_as_subprotocol_selects_bearer() {
    let (ctx, _dir) = context(json!({})).await;
    let response = upgrade("/ws")
        .header("origin", "http://localhost:3000")
        .header("sec-websocket-protocol", format!("bearer, {TOKEN}"))
        .reply(&with_ws(&ctx))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");

    // The token base64url-encoded (what the dashboard sends): that marker is selected.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(TOKEN);
    let response = upgrade("/ws")
        .header("origin", "http://localhost:3000")
        .header(
            "sec-websocket-protocol",
            format!("bearer.base64url, {encoded}"),
        )
        .reply(&with_ws(&ctx))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "bearer.base64url"
    );

    // With the header instead, nothing was offered and nothing is selected.
    let response = upgrade("/ws")
        .header("authorization", format!("Bearer {TOKEN}"))
        .reply(&with_ws(&ctx))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(!response.headers().contains_key("sec-websocket-protocol"));

    let wrong = upgrade("/ws").header("sec-websocket-protocol", "bearer, not-the-token");
    assert_eq!(
        error_code(wrong, &ctx).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
    let in_url = upgrade(&format!("/ws?token={TOKEN}"));
    assert_eq!(
        error_code(in_url, &ctx).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
}

#[tokio::test]
async fn bearer_is_selected_without_a_token_too() {
    // A client that always offers `bearer` must not be dropped by a server without one.
    let (ctx, _dir) = context(json!({ "token": "" })).await;
    let response = upgrade("/ws")
        .header("sec-websocket-protocol", "bearer, anything")
        .reply(&with_ws(&ctx))
        .await;
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
}

#[tokio::test]
async fn a_browser_handshake_over_a_socket_gets_bearer_and_then_frames() {
    let (ctx, _dir) = context(json!({})).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(warp::serve(with_ws(&ctx)).incoming(listener).run());

    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:3000\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: bearer, {TOKEN}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    // The head, then the first frame: FIN + text, unmasked, 5 bytes.
    let frame = [&[0x81u8, 5][..], b"hello"].concat();
    while !received.ends_with(&frame) {
        let read =
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buffer))
                .await
                .expect("no frame within 10 s")
                .unwrap();
        assert!(
            read > 0,
            "closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&received).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(
        head.contains("\r\nsec-websocket-protocol: bearer\r\n"),
        "{head}"
    );
    // RFC 6455 §1.3's sample key and its answer.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    server.abort();
}
