//! `POST /v1/metrics` and `POST /v1/logs`: an OTLP/HTTP receiver for Claude Code's own
//! telemetry, behind the same guards as every route (token, Host/Origin, body limit, rate
//! limit). It answers as OTLP/HTTP says: 200 with an `Export…ServiceResponse` in the
//! request's encoding, with `partial_success` when datapoints were refused; a failure is
//! our usual envelope (the status is what an OTLP exporter acts on).

use bytes::Buf;
use futures::Stream;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::body::{self, Limits};
use super::errors::ApiError;
use super::ApiContext;
use crate::claude::otlp::{self as decode, Encoding, OtlpError};

/// Which export.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signal {
    /// `/v1/metrics`.
    Metrics,
    /// `/v1/logs`.
    Logs,
}

/// The headers that say how to read the body.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyHeaders {
    pub(crate) content_type: Option<String>,
    pub(crate) content_encoding: Option<String>,
}

/// Handles one export.
pub(crate) async fn export<S, B>(
    ctx: ApiContext,
    signal: Signal,
    headers: BodyHeaders,
    stream: S,
) -> Result<Response, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let encoding = encoding_of(headers.content_type.as_deref())?;
    let gzip = gzipped(headers.content_encoding.as_deref())?;
    let limits = Limits {
        bytes: ctx.max_body_bytes,
        time: ctx.body_read_timeout,
    };
    let mut bytes = body::read_bytes(stream, limits).await?;
    if gzip {
        bytes = decode::gunzip(&bytes, ctx.max_body_bytes).map_err(refusal)?;
    }
    match signal {
        Signal::Metrics => {
            let request = decode::decode_metrics(encoding, &bytes).map_err(refusal)?;
            let (points, unreadable) = decode::points(&request);
            let refused = ctx
                .claude
                .record_usage(&points, &[])
                .await
                .map_err(|error| ApiError::from(&error))?;
            let mut sessions: Vec<_> = points
                .iter()
                .filter_map(|point| {
                    let owner = &point.owner;
                    owner.session.or_else(|| {
                        let (session, _) = ctx.claude.attribution(&owner.claude_session)?;
                        Some(session)
                    })
                })
                .collect();
            sessions.sort_unstable();
            sessions.dedup();
            super::usage::check_budgets(&ctx, sessions).await;
            let rejected = unreadable + refused;
            let response = ExportMetricsServiceResponse {
                partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
                    error_message: REJECTED.to_owned(),
                }),
            };
            answer(encoding, &response)
        }
        Signal::Logs => {
            let request = decode::decode_logs(encoding, &bytes).map_err(refusal)?;
            let errors = decode::api_errors(&request);
            ctx.claude
                .record_usage(&[], &errors)
                .await
                .map_err(|error| ApiError::from(&error))?;
            let response = ExportLogsServiceResponse {
                partial_success: None::<ExportLogsPartialSuccess>,
            };
            answer(encoding, &response)
        }
    }
}

const REJECTED: &str = "datapoints of Claude Code metrics without a usable value, \
                        temporality or type were not counted";

fn encoding_of(content_type: Option<&str>) -> Result<Encoding, ApiError> {
    content_type
        .and_then(Encoding::of)
        .ok_or(ApiError::UnsupportedBody {
            message: "content type must be application/x-protobuf or application/json",
            field: "Content-Type",
        })
}

fn gzipped(content_encoding: Option<&str>) -> Result<bool, ApiError> {
    match content_encoding.map(|value| value.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(value) if value.is_empty() || value == "identity" => Ok(false),
        Some(value) if value == "gzip" => Ok(true),
        Some(_) => Err(ApiError::UnsupportedBody {
            message: "content encoding must be gzip or identity",
            field: "Content-Encoding",
        }),
    }
}

fn refusal(error: OtlpError) -> ApiError {
    match error {
        OtlpError::TooLarge { limit } => ApiError::PayloadTooLarge { limit: Some(limit) },
        other => ApiError::Validation {
            message: other.to_string(),
            field: None,
        },
    }
}

/// The response message in the request's encoding.
fn answer<T: Message + serde::Serialize>(
    encoding: Encoding,
    message: &T,
) -> Result<Response, ApiError> {
    let bytes = match encoding {
        Encoding::Protobuf => message.encode_to_vec(),
        Encoding::Json => {
            // `{}` for a full success, as OTLP/JSON omits unset fields (serde writes null).
            let mut value = serde_json::to_value(message).map_err(|_| ApiError::Internal)?;
            if let Some(fields) = value.as_object_mut() {
                fields.retain(|_, field| !field.is_null());
                // OTLP/JSON writes int64 as a string; the crate's serde writes
                // `rejected_<signal>` as a number.
                if let Some(partial) = fields
                    .get_mut("partialSuccess")
                    .and_then(serde_json::Value::as_object_mut)
                {
                    for field in partial.values_mut() {
                        if let Some(count) = field.as_i64() {
                            *field = serde_json::Value::String(count.to_string());
                        }
                    }
                }
            }
            serde_json::to_vec(&value).map_err(|_| ApiError::Internal)?
        }
    };
    let mut response = Response::new(bytes.into());
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    Ok(response)
}
