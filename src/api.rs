//! The HTTP front end (warp). The only module that knows wire shapes: it turns requests into
//! calls on the rest of the server and results into the JSON envelope of DESIGN.md ("HTTP
//! contract"). Every failure — a handler's error, a warp rejection, an unknown route — goes
//! through the single mapping in `errors`, so clients always get the envelope with a stable
//! `error_code`, never warp's plain-text rejections.

mod dto;
mod envelope;
mod errors;
mod guards;
mod health;
mod security;

pub use health::{ServiceState, Services};

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use errors::ApiError;
use security::Security;

use crate::config::ServerSettings;

/// What the routes need from the server that builds them; cloned into every request.
#[derive(Debug, Clone)]
pub struct ApiContext {
    started_at: Instant,
    services: Services,
    max_body_bytes: u64,
    security: Arc<Security>,
}

impl ApiContext {
    /// Captures the start time (for `uptime_seconds`) and the server settings the routes
    /// enforce; `bound` is the listener's address (a valid `Host`); `services` is shared with
    /// whoever reports the state of each subsystem (`api` = `Stopping` refuses requests).
    pub fn new(server: &ServerSettings, bound: SocketAddr, services: Services) -> ApiContext {
        ApiContext {
            started_at: Instant::now(),
            services,
            max_body_bytes: server.max_body_bytes,
            security: Arc::new(Security::new(server, bound)),
        }
    }
}

/// Every route, guarded and with errors already turned into envelopes, ready for
/// `warp::serve`; it never rejects.
pub fn routes(
    ctx: ApiContext,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone + Send + Sync + 'static {
    let health = warp::path!("health")
        .and(get_or_head())
        .and(with_context(ctx.clone()))
        .then(health::get)
        .or(warp::path!("health").and(other_methods("GET, HEAD")))
        .unify();

    // Every route goes into this tree (`.or(...).unify()`, each answering a `Response`), and
    // so behind every guard below; none needs to check anything itself.
    let tree = health;

    guarded(&ctx, tree).with(warp::log::custom(|info| {
        tracing::debug!(
            method = %info.method(),
            path = info.path(),
            status = info.status().as_u16(),
            elapsed_ms = info.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
    }))
}

/// The guard chain around the route tree, in this order: rate limit → Host/Origin →
/// (a CORS preflight is answered here) → bearer token → shutdown → body limit → routes.
/// Each guard refuses with an `ApiError`; one `recover` turns any refusal into the envelope,
/// and `security::decorate` adds the CORS and WebSocket headers to whatever comes out.
fn guarded<T>(
    ctx: &ApiContext,
    tree: T,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static
where
    T: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let admitted = security::authenticate(ctx.security.clone())
        .and(guards::not_draining(ctx.services.clone()))
        .and(guards::body_limit(ctx.max_body_bytes))
        .and(tree);
    let answered = security::screen(ctx.security.clone())
        .and(security::preflight().or(admitted).unify())
        .recover(errors::recover)
        .unify();
    security::decorate(ctx.security.clone(), answered)
}

/// GET, and HEAD with it (RFC 9110 §9.1: hyper sends HEAD responses without their body).
fn get_or_head() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::get().or(warp::head()).unify()
}

/// Placed after a path's routes: any other method gets a 405 naming the `allow`ed ones.
fn other_methods(
    allow: &'static str,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::any().and_then(move || async move {
        Err::<Response, Rejection>(warp::reject::custom(ApiError::MethodNotAllowed {
            allow: Some(allow),
        }))
    })
}

fn with_context(
    ctx: ApiContext,
) -> impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}

#[cfg(test)]
mod tests {
    //! The guard chain as `routes` composes it, without a socket: its order, the shutdown
    //! guard, and the headers `decorate` adds to a WebSocket upgrade.
    use super::*;
    use futures::SinkExt;
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use warp::http::StatusCode;
    use warp::test::RequestBuilder;

    const TOKEN: &str = "unit-test-token";

    fn context(overrides: Value) -> ApiContext {
        let mut server = json!({
            "bind": "127.0.0.1", "port": 8082, "token": TOKEN, "allowed_origins": [],
            "max_body_bytes": 64, "rate_limit_per_second": 0, "rate_limit_burst": 0,
        });
        if let (Some(server), Some(overrides)) = (server.as_object_mut(), overrides.as_object()) {
            server.extend(overrides.clone());
        }
        let server: ServerSettings = serde_json::from_value(server).unwrap();
        let services = Services::default();
        services.set("api", ServiceState::Running);
        ApiContext::new(&server, "127.0.0.1:8082".parse().unwrap(), services)
    }

    /// A stand-in for the WebSocket route, behind the real guards.
    fn with_ws(
        ctx: &ApiContext,
    ) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static
    {
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
        let ctx = context(json!({}));
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
        let ctx = context(json!({ "rate_limit_per_second": 1, "rate_limit_burst": 1 }));
        let evil_host = || {
            warp::test::request()
                .path("/x")
                .header("host", "evil.example")
        };
        // Host before the token: a foreign host is refused whatever it carries.
        assert_eq!(
            error_code(evil_host(), &ctx).await,
            (StatusCode::FORBIDDEN, "forbidden_host".to_owned())
        );
        // The rate limit before Host: the bucket (1) is empty now.
        assert_eq!(
            error_code(evil_host(), &ctx).await,
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited".to_owned())
        );

        let ctx = context(json!({}));
        // Origin before the token.
        let evil_origin = warp::test::request()
            .path("/x")
            .header("host", "localhost")
            .header("origin", "https://evil.example");
        assert_eq!(
            error_code(evil_origin, &ctx).await,
            (StatusCode::FORBIDDEN, "forbidden_origin".to_owned())
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
        let ctx = context(json!({}));
        let response = upgrade("/ws")
            .header("origin", "http://localhost:3000")
            .header("sec-websocket-protocol", format!("bearer, {TOKEN}"))
            .reply(&with_ws(&ctx))
            .await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");

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
        let ctx = context(json!({ "token": "" }));
        let response = upgrade("/ws")
            .header("sec-websocket-protocol", "bearer, anything")
            .reply(&with_ws(&ctx))
            .await;
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()["sec-websocket-protocol"], "bearer");
    }

    #[tokio::test]
    async fn a_browser_handshake_over_a_socket_gets_bearer_and_then_frames() {
        let ctx = context(json!({}));
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
}
