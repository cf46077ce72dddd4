//! Builds the JSON envelope around payloads and errors.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::dto::{ErrorEnvelope, SuccessEnvelope};
use super::errors::ApiError;

/// A success envelope around `payload`, which must serialize as a JSON object.
pub(crate) fn success<T: Serialize>(status: StatusCode, payload: &T) -> Response {
    let envelope = SuccessEnvelope {
        success: true,
        timestamp: unix_now(),
        error: None,
        data: payload,
        payload,
    };
    match serde_json::to_vec(&envelope) {
        Ok(body) => json(status, body),
        Err(error) => {
            tracing::error!(%error, "cannot serialize a response payload");
            failure(&ApiError::Internal)
        }
    }
}

/// The failure envelope for `error`, with its status.
pub(crate) fn failure(error: &ApiError) -> Response {
    let message = error.to_string();
    let envelope = ErrorEnvelope {
        success: false,
        timestamp: unix_now(),
        error: &message,
        error_code: error.code(),
        details: error.details(),
    };
    match serde_json::to_vec(&envelope) {
        Ok(body) => {
            let mut response = json(error.status(), body);
            response.headers_mut().extend(error.headers());
            response
        }
        Err(serialize_error) => {
            tracing::error!(%serialize_error, "cannot serialize an error envelope");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                br#"{"success":false,"timestamp":0,"error":"internal server error","error_code":"internal_error"}"#
                    .to_vec(),
            )
        }
    }
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Unix seconds as a float, the time format of the whole API.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or_default()
}
