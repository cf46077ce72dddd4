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

pub use health::{ServiceState, Services};

use std::convert::Infallible;
use std::time::Instant;

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use errors::ApiError;

use crate::config::ServerSettings;

/// What the routes need from the server that builds them; cloned into every request.
#[derive(Debug, Clone)]
pub struct ApiContext {
    started_at: Instant,
    services: Services,
    max_body_bytes: u64,
}

impl ApiContext {
    /// Captures the start time (for `uptime_seconds`) and the server settings the routes
    /// enforce; `services` is shared with whoever reports the state of each subsystem.
    pub fn new(server: &ServerSettings, services: Services) -> ApiContext {
        ApiContext {
            started_at: Instant::now(),
            services,
            max_body_bytes: server.max_body_bytes,
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

    guards::body_limit(ctx.max_body_bytes)
        .and(health)
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

fn with_context(
    ctx: ApiContext,
) -> impl Filter<Extract = (ApiContext,), Error = Infallible> + Clone {
    warp::any().map(move || ctx.clone())
}
