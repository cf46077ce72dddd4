//! Builds the JSON envelope around payloads and errors.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::dto::{ErrorEnvelope, SuccessHead};
use super::errors::ApiError;

/// A success envelope around `payload`, which must serialize as a JSON object:
/// `{"success":true,"timestamp":…,"error":null,"data":PAYLOAD,<PAYLOAD's keys>}`.
pub(crate) fn success<T: Serialize>(status: StatusCode, payload: &T) -> Response {
    match payload_bytes(payload) {
        Ok(data) => success_of(status, &data),
        Err(error) => {
            tracing::error!(%error, "cannot serialize a response payload");
            failure(&ApiError::Internal)
        }
    }
}

/// A success envelope around a payload serialized before by [`payload_bytes`] (kept
/// between requests: only the envelope's `timestamp` is new).
pub(crate) fn success_of(status: StatusCode, data: &[u8]) -> Response {
    match wrap(data, unix_now()) {
        Ok(body) => json(status, body),
        Err(error) => {
            tracing::error!(%error, "cannot serialize a response envelope");
            failure(&ApiError::Internal)
        }
    }
}

/// `payload` as the JSON object an envelope carries; an error if it is not an object.
pub(crate) fn payload_bytes<T: Serialize>(payload: &T) -> Result<Vec<u8>, serde_json::Error> {
    let data = serde_json::to_vec(payload)?;
    if data.starts_with(b"{") && data.ends_with(b"}") {
        Ok(data)
    } else {
        Err(serde::ser::Error::custom(
            "a response payload must be a JSON object",
        ))
    }
}

/// The payload is serialized once and its bytes written twice, as `data` and (without the
/// opening brace) as the rest of the envelope: the largest answers (a session, a list) cost
/// one serialization instead of two. `data` is a JSON object ([`payload_bytes`]).
fn wrap(data: &[u8], timestamp: f64) -> Result<Vec<u8>, serde_json::Error> {
    let members = data.get(1..).unwrap_or_default();
    let mut body = Vec::with_capacity(2 * data.len() + 80);
    serde_json::to_writer(
        &mut body,
        &SuccessHead {
            success: true,
            timestamp,
            error: None,
        },
    )?;
    // The head's closing brace: the envelope goes on.
    body.pop();
    body.extend_from_slice(br#","data":"#);
    body.extend_from_slice(data);
    if members != b"}" {
        body.push(b',');
    }
    body.extend_from_slice(members);
    Ok(body)
}

#[cfg(test)]
fn success_body<T: Serialize>(payload: &T, timestamp: f64) -> Result<Vec<u8>, serde_json::Error> {
    wrap(&payload_bytes(payload)?, timestamp)
}

/// The failure envelope for `error`, with its status.
pub(crate) fn failure(error: &ApiError) -> Response {
    match failure_body(error) {
        Ok(body) => {
            let mut response = json(error.status(), body);
            response.headers_mut().extend(error.headers());
            response
        }
        Err(serialize_error) => {
            tracing::error!(%serialize_error, "cannot serialize an error envelope");
            json(
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL_ERROR_BODY.to_vec(),
            )
        }
    }
}

/// The last resort when an envelope cannot be serialized.
pub(crate) const INTERNAL_ERROR_BODY: &[u8] =
    br#"{"success":false,"timestamp":0,"error":"internal server error","error_code":"internal_error"}"#;

/// The failure envelope's JSON bytes for `error`.
pub(crate) fn failure_body(error: &ApiError) -> Result<Vec<u8>, serde_json::Error> {
    let message = error.to_string();
    let envelope = ErrorEnvelope {
        success: false,
        timestamp: unix_now(),
        error: &message,
        error_code: error.code(),
        details: error.details(),
    };
    serde_json::to_vec(&envelope)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// What the envelope was written with before: serde's `flatten`.
    #[derive(Serialize)]
    struct Flattened<'a, T> {
        success: bool,
        timestamp: f64,
        error: Option<&'a str>,
        data: &'a T,
        #[serde(flatten)]
        payload: &'a T,
    }

    fn flattened<T: Serialize>(payload: &T, timestamp: f64) -> Vec<u8> {
        serde_json::to_vec(&Flattened {
            success: true,
            timestamp,
            error: None,
            data: payload,
            payload,
        })
        .unwrap()
    }

    #[derive(Serialize)]
    struct Payload {
        session: Value,
        total: usize,
        note: Option<&'static str>,
    }

    #[test]
    fn the_body_is_byte_for_byte_the_flattened_envelope() {
        let timestamp = 1_795_666_673.435_345_6;
        let typed = Payload {
            session: json!({"id": "x", "name": "quote \" and é", "agents": [1, {"a": null}]}),
            total: 3,
            note: None,
        };
        assert_eq!(
            success_body(&typed, timestamp).unwrap(),
            flattened(&typed, timestamp)
        );
        let untyped = json!({"validation": {"valid": true}, "suggestions": []});
        assert_eq!(
            success_body(&untyped, timestamp).unwrap(),
            flattened(&untyped, timestamp)
        );
        let empty = json!({});
        assert_eq!(
            success_body(&empty, timestamp).unwrap(),
            flattened(&empty, timestamp)
        );
        let body: Value =
            serde_json::from_slice(&success_body(&untyped, timestamp).unwrap()).unwrap();
        assert_eq!(body["data"], untyped);
        assert_eq!(body["validation"], untyped["validation"]);
    }

    #[test]
    fn a_payload_that_is_not_an_object_is_refused() {
        assert!(success_body(&json!([1, 2]), 0.0).is_err());
        assert!(success_body(&json!("text"), 0.0).is_err());
        let response = success(StatusCode::OK, &json!(null));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
