//! Filters that run before routing and refuse requests no handler should see.

use warp::{Filter, Rejection};

use super::errors::ApiError;

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
