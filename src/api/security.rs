//! The guards between the socket and the routes, and what they add to every response.
//!
//! In order: the per-client rate limit (429), the `Host` and `Origin` checks against DNS
//! rebinding and cross-site requests (403), the CORS preflight (204, no token needed), then
//! the bearer token (401). `api::routes` composes them with the shutdown and body guards
//! around the whole route tree, so a route added there is guarded without doing anything.
//! [`decorate`] wraps the result: CORS headers for an allowed origin, `Vary: Origin`, and
//! the `bearer` subprotocol selected on a WebSocket upgrade that offered it.

mod origin;
mod rate;
mod token;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::ready;
use warp::http::header::{
    HeaderValue, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL, VARY,
};
use warp::http::uri::Authority;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use self::origin::{OriginPolicy, OriginVerdict};
pub(crate) use self::rate::client_key;
use self::rate::RateLimit;
use self::token::ExpectedToken;
use super::errors::ApiError;
use crate::config::ServerSettings;

/// The one API path a client may read without the token: it tells nothing but liveness.
const HEALTH_PATH: &str = "/health";
/// What a preflight allows, and for how many seconds a browser may cache the answer.
const CORS_METHODS: &str = "GET, POST, PUT, DELETE";
const CORS_HEADERS: &str = "authorization, content-type";
const CORS_MAX_AGE_SECONDS: &str = "600";
/// Response headers a cross-origin script may read besides the safelisted ones.
const CORS_EXPOSED: &str = "retry-after, www-authenticate";

/// The security settings of one server, built once and shared by every request.
pub(crate) struct Security {
    token: Option<ExpectedToken>,
    origins: OriginPolicy,
    rate_limit: Option<RateLimit>,
}

impl std::fmt::Debug for Security {
    /// The token's digest stays out of logs too: it would allow an offline guess.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("origins", &self.origins)
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

impl Security {
    /// `bound` is the address the listener got: a valid `Host` for requests.
    pub(crate) fn new(server: &ServerSettings, bound: SocketAddr) -> Security {
        let token = server.token.expose();
        Security {
            token: (!token.is_empty()).then(|| ExpectedToken::new(token)),
            origins: OriginPolicy::new(&server.allowed_origins, bound),
            rate_limit: RateLimit::new(server.rate_limit_per_second, server.rate_limit_burst),
        }
    }

    fn limit(&self, peer: Option<IpAddr>) -> Result<(), ApiError> {
        match &self.rate_limit {
            Some(limit) => limit.check(peer).map_err(|wait| ApiError::RateLimited {
                retry_after_seconds: rate::retry_after_seconds(wait),
            }),
            None => Ok(()),
        }
    }

    /// The request's `Host`, as warp read it, is one this server answers to. Two `Host` lines
    /// (RFC 9112 §3.2) are refused: which one a proxy or a route believes is anyone's guess.
    fn check_host(&self, host: &SeenHost, headers: &HeaderMap) -> Result<(), ApiError> {
        let single = headers.get_all(HOST).iter().nth(1).is_none();
        let allowed = single
            && match host {
                SeenHost::Absent => true,
                SeenHost::Named(authority) => self.origins.allows_host(authority),
                SeenHost::Malformed => false,
            };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::ForbiddenHost)
        }
    }

    /// An allowed origin, or the origin of `host` itself (a page this server served: the
    /// dashboard), or none. Two `Origin` lines are refused, like two `Host`s.
    fn check_origin(&self, headers: &HeaderMap, host: &SeenHost) -> Result<(), ApiError> {
        let mut lines = headers.get_all(ORIGIN).iter();
        let origin = lines.next();
        if lines.next().is_some() {
            return Err(ApiError::ForbiddenOrigin);
        }
        match self.origin_verdict(origin) {
            OriginVerdict::Absent | OriginVerdict::Allowed => Ok(()),
            OriginVerdict::Refused => {
                let same = match (origin.map(HeaderValue::to_str), host) {
                    (Some(Ok(origin)), SeenHost::Named(host)) => {
                        self.origins.is_same_origin(origin, host)
                    }
                    _ => false,
                };
                if same {
                    Ok(())
                } else {
                    Err(ApiError::ForbiddenOrigin)
                }
            }
        }
    }

    fn origin_verdict(&self, origin: Option<&HeaderValue>) -> OriginVerdict {
        match origin.map(HeaderValue::to_str) {
            None => OriginVerdict::Absent,
            Some(Ok(text)) => self.origins.check_origin(Some(text)),
            Some(Err(_)) => OriginVerdict::Refused,
        }
    }

    /// Lets the request through when no token is configured, when it is a `GET`/`HEAD` of
    /// `/health` or of the dashboard's page and assets (static files, no data: a browser
    /// loading a page cannot send the header), or when it carries the token.
    fn authenticate(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let read = method == Method::GET || method == Method::HEAD;
        let public = read && (path == HEALTH_PATH || super::dashboard::is_static(path));
        if public || expected.admits(headers) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// The `Host` of a request (header or absolute URI) as warp reads it.
enum SeenHost {
    /// None at all (HTTP/1.0, some scripts): not a browser, so not a rebinding page.
    Absent,
    Named(Authority),
    /// Unparsable, or the header and the URI disagree.
    Malformed,
}

fn seen_host() -> impl Filter<Extract = (SeenHost,), Error = std::convert::Infallible> + Clone {
    warp::host::optional()
        .map(|authority: Option<Authority>| authority.map_or(SeenHost::Absent, SeenHost::Named))
        .or_else(|_| ready(Ok::<_, std::convert::Infallible>((SeenHost::Malformed,))))
}

/// A CORS preflight, answered by [`preflight_response`] where rejections become responses
/// (`errors::recover`): it takes no route and needs no token.
#[derive(Debug)]
pub(crate) struct Preflight;

impl warp::reject::Reject for Preflight {}

/// Every guard of this module over one read of the request, in order: the rate limit, the
/// `Host`, the `Origin` (these hold for every request, preflights and `/health` included);
/// then a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) is
/// refused with [`Preflight`], to be answered 204 — the origin is already known to be
/// allowed, and browsers never send credentials on a preflight; then the bearer token.
pub(crate) fn admit(
    security: Arc<Security>,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    super::guards::peer()
        .and(seen_host())
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and_then(
            move |peer: Option<SocketAddr>,
                  host: SeenHost,
                  method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap| {
                let verdict = security
                    .limit(peer.map(|addr| addr.ip()))
                    .and_then(|()| security.check_host(&host, &headers))
                    .and_then(|()| security.check_origin(&headers, &host))
                    .map_err(warp::reject::custom)
                    .and_then(|()| {
                        let is_preflight = method == Method::OPTIONS
                            && headers.contains_key(ORIGIN)
                            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD);
                        if is_preflight {
                            Err(warp::reject::custom(Preflight))
                        } else {
                            security
                                .authenticate(&method, path.as_str(), &headers)
                                .map_err(warp::reject::custom)
                        }
                    });
                ready(verdict)
            },
        )
        .untuple_one()
}

/// The answer to a CORS preflight: 204 with what cross-origin requests may use.
pub(crate) fn preflight_response() -> Response {
    let mut response = Response::default();
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    headers.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(CORS_METHODS),
    );
    headers.insert(
        ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(CORS_HEADERS),
    );
    headers.insert(
        ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(CORS_MAX_AGE_SECONDS),
    );
    response
}

/// Wraps the finished route tree (errors already envelopes): every response gets
/// `Vary: Origin`; one to an allowed origin gets `Access-Control-Allow-Origin` naming it; a
/// 101 to a client that offered the `bearer` subprotocol selects it, as browsers drop a
/// WebSocket whose offered subprotocols were all ignored.
pub(crate) fn decorate<F>(
    security: Arc<Security>,
    inner: F,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone + Send,
{
    warp::header::headers_cloned().and(inner).map(
        move |request: HeaderMap, mut response: Response| {
            add_cors(&security, &request, &mut response);
            select_bearer_protocol(&request, &mut response);
            response
        },
    )
}

fn add_cors(security: &Security, request: &HeaderMap, response: &mut Response) {
    let origin = request.get(ORIGIN);
    let headers = response.headers_mut();
    headers.append(VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = origin {
        if security.origin_verdict(Some(origin)) == OriginVerdict::Allowed {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(CORS_EXPOSED),
            );
        }
    }
}

/// A browser closes a WebSocket whose 101 selects none of the subprotocols it offered: the
/// bearer marker it offered (`bearer` or `bearer.base64url`) is selected.
fn select_bearer_protocol(request: &HeaderMap, response: &mut Response) {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS
        || response.headers().contains_key(SEC_WEBSOCKET_PROTOCOL)
    {
        return;
    }
    if let Some(marker) = token::offered_bearer_protocol(request) {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(marker));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(bound: &str) -> Security {
        let server: ServerSettings = serde_json::from_value(serde_json::json!({
            "bind": "0.0.0.0", "port": 8082, "token": "t0k", "allowed_origins": [],
            "max_body_bytes": 1024, "rate_limit_per_second": 0, "rate_limit_burst": 0,
            "header_read_timeout_ms": 10000, "body_read_timeout_ms": 30000,
            "idle_timeout_ms": 60000, "max_connections": 1024,
            "max_connections_per_address": 256,
        }))
        .unwrap();
        Security::new(&server, bound.parse().unwrap())
    }

    fn named(host: &str) -> SeenHost {
        SeenHost::Named(host.parse().unwrap())
    }

    #[test]
    fn the_page_of_a_server_bound_elsewhere_may_call_it() {
        let security = security("10.1.2.3:8082");
        let own = origin("http://10.1.2.3:8082");
        assert!(security.check_origin(&own, &named("10.1.2.3:8082")).is_ok());
        // Another origin, or the same one sent to another host, is cross-site.
        let other = origin("http://10.1.2.4:8082");
        assert!(security
            .check_origin(&other, &named("10.1.2.3:8082"))
            .is_err());
        assert!(security.check_origin(&own, &SeenHost::Absent).is_err());
        assert!(security.check_origin(&own, &SeenHost::Malformed).is_err());
        assert!(security
            .check_origin(&HeaderMap::new(), &SeenHost::Absent)
            .is_ok());
    }

    fn origin(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_reads_of_the_page_and_its_assets_skip_the_token() {
        let security = security("127.0.0.1:8082");
        let none = HeaderMap::new();
        for path in ["/", "/assets/dashboard.js", "/health"] {
            assert!(
                security.authenticate(&Method::GET, path, &none).is_ok(),
                "{path}"
            );
            assert!(
                security.authenticate(&Method::HEAD, path, &none).is_ok(),
                "{path}"
            );
            assert!(
                security.authenticate(&Method::POST, path, &none).is_err(),
                "{path}"
            );
        }
        for path in [
            "/api/claude/sessions",
            "/metrics",
            "/ws/sessions",
            "/openapi.json",
            "/assetsx",
        ] {
            assert!(
                security.authenticate(&Method::GET, path, &none).is_err(),
                "{path}"
            );
        }
    }
}
