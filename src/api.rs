//! The HTTP front end (warp). The only module that knows wire shapes: it turns requests into
//! calls on the rest of the server and results into the JSON envelope of DESIGN.md ("HTTP
//! contract"). Every failure — a handler's error, a warp rejection, an unknown route — goes
//! through the single mapping in `errors`, so clients always get the envelope with a stable
//! `error_code`, never warp's plain-text rejections.

mod dto;
mod envelope;
mod errors;
mod events;
mod guards;
mod health;
mod ws;

pub(crate) use events::encode as encode_event;
pub use health::{ServiceState, Services};

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use errors::ApiError;

use crate::config::Settings;
use crate::session::SessionRegistry;

/// What the routes need from the server that builds them; cloned into every request.
#[derive(Debug, Clone)]
pub struct ApiContext {
    started_at: Instant,
    services: Services,
    max_body_bytes: u64,
    sessions: SessionRegistry,
    /// WebSocket connections: the fan-out of the event bus, the client count.
    live: ws::Live,
    /// Set at shutdown: every WebSocket connection closes (1001).
    closing: Arc<watch::Sender<bool>>,
}

impl ApiContext {
    /// Captures the start time (for `uptime_seconds`) and the settings the routes enforce,
    /// and starts the WebSocket fan-out from `sessions`' event bus (so it must run inside
    /// the tokio runtime); `services` is shared with whoever reports the state of each
    /// subsystem.
    pub fn new(settings: &Settings, services: Services, sessions: SessionRegistry) -> ApiContext {
        let (closing, closing_rx) = watch::channel(false);
        let live = ws::Live::start(
            sessions.clone(),
            settings.events.websocket_queue,
            closing_rx,
        );
        ApiContext {
            started_at: Instant::now(),
            services,
            max_body_bytes: settings.server.max_body_bytes,
            sessions,
            live,
            closing: Arc::new(closing),
        }
    }

    /// WebSocket clients connected now (`websocket_clients` of `/system-status`).
    pub fn websocket_clients(&self) -> usize {
        self.live.clients()
    }

    /// Closes every WebSocket connection (1001, "server shutting down"), now and for those
    /// still being upgraded: the graceful drain does not wait for upgraded connections.
    pub fn close_websockets(&self) {
        self.closing.send_replace(true);
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

    let websocket = warp::path!("ws" / "sessions")
        .and(warp::ws())
        .and(with_context(ctx.clone()))
        .map(|upgrade: warp::ws::Ws, ctx: ApiContext| {
            upgrade
                .max_message_size(ws::MAX_CLIENT_MESSAGE)
                .max_frame_size(ws::MAX_CLIENT_MESSAGE)
                .on_upgrade(move |socket| ws::serve(socket, ctx.live))
                .into_response()
        })
        .or(warp::path!("ws" / "sessions").and(not_an_upgrade()))
        .unify();

    let events = warp::path!("api" / "claude" / "events")
        .and(get_or_head())
        .and(warp::query::<Vec<(String, String)>>())
        .and(with_context(ctx.clone()))
        .then(|params, ctx: ApiContext| events::list(params, ctx.sessions.bus().clone()))
        .or(warp::path!("api" / "claude" / "events").and(other_methods("GET, HEAD")))
        .unify();

    guards::body_limit(ctx.max_body_bytes)
        .and(health.or(websocket).unify().or(events).unify())
        .recover(errors::recover)
        .unify()
        .with(warp::log::custom(|info| {
            tracing::debug!(
                method = %info.method(),
                path = info.path(),
                status = info.status().as_u16(),
                elapsed_ms = info.elapsed().as_secs_f64() * 1000.0,
                "request"
            );
        }))
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

/// `/ws/sessions` without a valid upgrade: a GET is a bad request, anything else a 405.
fn not_an_upgrade() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::method().and_then(|method: Method| async move {
        let error = if method == Method::GET {
            ApiError::Validation {
                message: "a websocket upgrade is required".to_owned(),
                field: None,
            }
        } else {
            ApiError::MethodNotAllowed { allow: Some("GET") }
        };
        Err::<Response, Rejection>(warp::reject::custom(error))
    })
}

fn with_context(
    ctx: ApiContext,
) -> impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}
