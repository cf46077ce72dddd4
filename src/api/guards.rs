//! Filters that run before routing and refuse requests no handler should see. The security
//! guards (rate limit, Host/Origin, token) are in `security`; `api::routes` composes both.

use std::convert::Infallible;
use std::net::SocketAddr;

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

/// What the connection layer (`server`) saw of a request on the wire, beyond what hyper's
/// parsed request shows; attached to every request it serves. Requests built without a
/// socket (`warp::test`) carry none, and pass.
#[derive(Debug, Clone, Copy)]
pub struct Wire {
    /// The client's address: the rate limit's key.
    pub peer: SocketAddr,
    /// An HTTP/1.1 request with no `Host` line (RFC 9112 §3.2: answered 400).
    pub http11_without_host: bool,
    /// The request head as read off the wire.
    pub head: Head,
}

/// The verdict on a request head read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Read and parsed: whether it carries both `Content-Length` and `Transfer-Encoding`
    /// (hyper keeps only the latter, so its request no longer shows the conflict).
    Read {
        /// Both framing headers are present.
        length_and_chunked: bool,
    },
    /// Larger than the connection layer reads (`errors::MAX_HEAD_BYTES`).
    TooLarge,
    /// Not seen whole (pipelined behind another request, or HTTP/2): hyper's own checks
    /// stand alone (a request with both headers is then read as chunked and the connection
    /// closed after it).
    Unseen,
}

/// Refuses a request that is malformed at the HTTP level before any other guard runs: a
/// head larger than the server reads (431), `Content-Length` together with
/// `Transfer-Encoding` (400: RFC 9112 §6.1 allows refusing it, and it is the shape of request
/// smuggling), and HTTP/1.1 without `Host` (400, RFC 9112 §3.2).
pub(crate) fn well_framed() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::ext::optional::<Wire>()
        .and_then(|wire: Option<Wire>| ready(wire.map_or(Ok(()), check_wire)))
        .untuple_one()
}

fn check_wire(wire: Wire) -> Result<(), Rejection> {
    let refusal = match wire.head {
        Head::TooLarge => Some(ApiError::HeaderFieldsTooLarge),
        Head::Read {
            length_and_chunked: true,
        } => Some(ApiError::BadRequest {
            message: "Content-Length together with Transfer-Encoding is refused",
            field: Some("Transfer-Encoding"),
        }),
        _ if wire.http11_without_host => Some(ApiError::BadRequest {
            message: "an HTTP/1.1 request must carry a Host header",
            field: Some("Host"),
        }),
        _ => None,
    };
    refusal.map_or(Ok(()), |error| Err(warp::reject::custom(error)))
}

/// The client's address: from the connection layer's [`Wire`], else from warp (tests).
pub(crate) fn peer() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<Wire>()
        .and(warp::addr::remote())
        .map(|wire: Option<Wire>, remote: Option<SocketAddr>| wire.map(|wire| wire.peer).or(remote))
}
