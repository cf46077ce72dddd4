//! Filters that run before routing and refuse requests no handler should see. The security
//! guards (rate limit, Host/Origin, token) are in `security`; `api::routes` composes both.

use futures::future::ready;
use warp::{Filter, Rejection};

use super::errors::ApiError;
use super::health::{ServiceState, Services};

/// `Retry-After` of a request refused while draining: the drain lasts at most ten seconds,
/// then a supervised server is back after its restart.
const SHUTDOWN_RETRY_AFTER_SECONDS: u64 = 10;

/// The `Services` entry whose `Stopping` state means the server is draining.
const API_SERVICE: &str = "api";

/// Refuses a request that is read after the server began draining (one arriving on a
/// connection kept alive from before, or pipelined): it would start work the shutdown is
/// about to cut short.
pub(crate) fn not_draining(
    services: Services,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::any()
        .and_then(move || {
            let draining = services.state(API_SERVICE) == Some(ServiceState::Stopping);
            ready(if draining {
                Err(warp::reject::custom(ApiError::ShuttingDown {
                    retry_after_seconds: SHUTDOWN_RETRY_AFTER_SECONDS,
                }))
            } else {
                Ok(())
            })
        })
        .untuple_one()
}

/// Refuses a body whose announced length exceeds `server.max_body_bytes` before anything
/// reads it. A chunked body announces nothing: routes that read bodies must still cap what
/// they read.
pub(crate) fn body_limit(limit: u64) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<u64>("content-length")
        .and_then(move |length: Option<u64>| async move {
            match length {
                Some(length) if length > limit => {
                    Err(warp::reject::custom(ApiError::PayloadTooLarge {
                        limit: Some(limit),
                    }))
                }
                _ => Ok(()),
            }
        })
        .untuple_one()
}
