//! `GET /openapi.json`: the API described as OpenAPI 3.1, embedded in the binary.

use warp::http::StatusCode;
use warp::reply::Response;

/// The document, kept beside this file; a test checks that it lists every route.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn document() -> Response {
    let mut response = Response::new(DOCUMENT.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/json"),
    );
    response
}
