//! OTLP/HTTP bodies as Claude Code exports them: decoded with the `opentelemetry-proto`
//! crate's generated messages (protobuf through prost, OTLP/JSON through its serde), then
//! reduced to what the usage ledger counts.
//!
//! Only Claude Code's own metrics and its `api_error` events are kept; anything else in an
//! export (another program's metrics, Claude Code's other events) is ignored, not refused,
//! since an OTLP sender cannot split its exports by receiver.

use std::io::Read;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, AggregationTemporality};
use prost::Message;
use uuid::Uuid;

use super::usage::{ApiErrorEvent, Measure, Owner, Point, Temporality, TokenKind};

/// The resource attribute naming our session (set in our agents' `OTEL_RESOURCE_ATTRIBUTES`).
pub const SESSION_ATTRIBUTE: &str = "session_manager.session_id";
/// The resource attribute naming our agent.
pub const AGENT_ATTRIBUTE: &str = "session_manager.agent";

/// How a body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json`.
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names; `None` for one OTLP/HTTP does not define.
    pub fn of(content_type: &str) -> Option<Encoding> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/x-protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `Content-Type` of an answer in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Why a body was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Not protobuf.
    #[error("the body is not a valid OTLP protobuf message")]
    Protobuf(#[source] prost::DecodeError),
    /// Not OTLP/JSON.
    #[error("the body is not a valid OTLP/JSON message: {0}")]
    Json(#[source] serde_json::Error),
    /// Gzip that does not inflate.
    #[error("the body is not valid gzip")]
    Gzip(#[source] std::io::Error),
    /// Gzip that inflates past the body limit.
    #[error("the inflated body is larger than {limit} bytes")]
    TooLarge {
        /// The limit, bytes.
        limit: u64,
    },
}

/// Inflates a gzip body, refusing one that grows past `limit` bytes (a gzip bomb).
pub fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, OtlpError> {
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(limit.saturating_add(1))
        .read_to_end(&mut inflated)
        .map_err(OtlpError::Gzip)?;
    if inflated.len() as u64 > limit {
        return Err(OtlpError::TooLarge { limit });
    }
    Ok(inflated)
}

/// Decodes a metrics export.
pub fn decode_metrics(
    encoding: Encoding,
    body: &[u8],
) -> Result<ExportMetricsServiceRequest, OtlpError> {
    decode(encoding, body)
}

/// Decodes a logs export.
pub fn decode_logs(encoding: Encoding, body: &[u8]) -> Result<ExportLogsServiceRequest, OtlpError> {
    decode(encoding, body)
}

fn decode<T>(encoding: Encoding, body: &[u8]) -> Result<T, OtlpError>
where
    T: Message + Default + serde::de::DeserializeOwned,
{
    match encoding {
        Encoding::Protobuf => T::decode(body).map_err(OtlpError::Protobuf),
        Encoding::Json => serde_json::from_slice(body).map_err(OtlpError::Json),
    }
}

/// The datapoints of Claude Code's metrics in an export, and how many of them were
/// refused (a Sum without temporality, a point without a value, an unknown `type`).
pub(crate) fn points(request: &ExportMetricsServiceRequest) -> (Vec<Point>, u64) {
    let mut points = Vec::new();
    let mut rejected = 0;
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics
            .resource
            .as_ref()
            .map(|resource| resource.attributes.as_slice())
            .unwrap_or_default();
        // Once per resource, not per point: a resource is shared by every point under it,
        // and a large one repeated per point would multiply the body's size in memory.
        let resource_part = digest(resource);
        let resource_owner = owner(resource, &[]);
        for scope in &resource_metrics.scope_metrics {
            for metric in &scope.metrics {
                let Some(kind) = MetricKind::of(&metric.name) else {
                    continue;
                };
                let Some(metric::Data::Sum(sum)) = &metric.data else {
                    rejected += count_points(metric.data.as_ref());
                    continue;
                };
                let temporality =
                    match AggregationTemporality::try_from(sum.aggregation_temporality) {
                        Ok(AggregationTemporality::Delta) => Temporality::Delta,
                        Ok(AggregationTemporality::Cumulative) => Temporality::Cumulative,
                        _ => {
                            rejected += sum.data_points.len() as u64;
                            continue;
                        }
                    };
                for datapoint in &sum.data_points {
                    let value = match datapoint.value {
                        Some(number_data_point::Value::AsDouble(value)) => value,
                        Some(number_data_point::Value::AsInt(value)) => value as f64,
                        None => {
                            rejected += 1;
                            continue;
                        }
                    };
                    let attributes = &datapoint.attributes;
                    let Some(measure) = kind.measure(attributes) else {
                        rejected += 1;
                        continue;
                    };
                    if points.len() >= MAX_POINTS {
                        rejected += 1;
                        continue;
                    }
                    points.push(Point {
                        measure,
                        owner: owner_with(&resource_owner, attributes),
                        series: format!(
                            "{}|{:016x}|{resource_part:016x}",
                            metric.name,
                            digest(attributes)
                        ),
                        start: datapoint.start_time_unix_nano,
                        value,
                        temporality,
                    });
                }
            }
        }
    }
    (points, rejected)
}

/// The `api_error` events of a logs export.
pub(crate) fn api_errors(request: &ExportLogsServiceRequest) -> Vec<ApiErrorEvent> {
    let mut events = Vec::new();
    for resource_logs in &request.resource_logs {
        let resource = resource_logs
            .resource
            .as_ref()
            .map(|resource| resource.attributes.as_slice())
            .unwrap_or_default();
        for scope in &resource_logs.scope_logs {
            for record in &scope.log_records {
                let attributes = &record.attributes;
                let name = text(attributes, "event.name");
                let body = record.body.as_ref().and_then(as_text);
                let is_api_error = record.event_name == "claude_code.api_error"
                    || matches!(name.as_deref(), Some("api_error" | "claude_code.api_error"))
                    || body.as_deref() == Some("claude_code.api_error");
                if !is_api_error {
                    continue;
                }
                let error = text(attributes, "error").unwrap_or_else(|| "unknown error".into());
                // Claude Code sends `undefined` when no response came back.
                let error = match text(attributes, "status_code") {
                    Some(status) if status.parse::<u16>().is_ok() => {
                        format!("{error} (status {status})")
                    }
                    _ => error,
                };
                events.push(ApiErrorEvent {
                    owner: owner(resource, attributes),
                    error,
                });
            }
        }
    }
    events
}

/// Claude Code's metrics the ledger counts.
#[derive(Debug, Clone, Copy)]
enum MetricKind {
    Cost,
    Tokens,
    Lines,
    Commits,
    PullRequests,
    ActiveTime,
}

impl MetricKind {
    fn of(name: &str) -> Option<MetricKind> {
        match name {
            "claude_code.cost.usage" => Some(MetricKind::Cost),
            "claude_code.token.usage" => Some(MetricKind::Tokens),
            "claude_code.lines_of_code.count" => Some(MetricKind::Lines),
            "claude_code.commit.count" => Some(MetricKind::Commits),
            "claude_code.pull_request.count" => Some(MetricKind::PullRequests),
            "claude_code.active_time.total" => Some(MetricKind::ActiveTime),
            _ => None,
        }
    }

    /// What a datapoint counts; the token and line metrics need their `type`.
    fn measure(self, attributes: &[KeyValue]) -> Option<Measure> {
        match self {
            MetricKind::Cost => Some(Measure::Cost),
            MetricKind::Tokens => {
                TokenKind::parse(text(attributes, "type")?.as_str()).map(Measure::Tokens)
            }
            MetricKind::Lines => match text(attributes, "type")?.as_str() {
                "added" => Some(Measure::LinesAdded),
                "removed" => Some(Measure::LinesRemoved),
                _ => None,
            },
            MetricKind::Commits => Some(Measure::Commits),
            MetricKind::PullRequests => Some(Measure::PullRequests),
            MetricKind::ActiveTime => Some(Measure::ActiveTime),
        }
    }
}

fn count_points(data: Option<&metric::Data>) -> u64 {
    let count = match data {
        Some(metric::Data::Gauge(gauge)) => gauge.data_points.len(),
        Some(metric::Data::Histogram(histogram)) => histogram.data_points.len(),
        Some(metric::Data::ExponentialHistogram(histogram)) => histogram.data_points.len(),
        Some(metric::Data::Summary(summary)) => summary.data_points.len(),
        Some(metric::Data::Sum(sum)) => sum.data_points.len(),
        None => 0,
    };
    count as u64
}

/// Who a datapoint or event belongs to: our session and agent from the resource (our
/// agents' exports), Claude's session id and the model from its own attributes (or the
/// resource's, should a sender put them there). Texts are cut at [`MAX_TEXT_CHARS`].
fn owner(resource: &[KeyValue], attributes: &[KeyValue]) -> Owner {
    let either = |key: &str| text(attributes, key).or_else(|| text(resource, key));
    Owner {
        claude_session: either("session.id").map(cut).unwrap_or_default(),
        session: text(resource, SESSION_ATTRIBUTE).and_then(|id| Uuid::parse_str(&id).ok()),
        agent: text(resource, AGENT_ATTRIBUTE)
            .filter(|agent| !agent.is_empty())
            .map(cut),
        model: text(attributes, "model")
            .filter(|model| !model.is_empty())
            .map(cut),
    }
}

/// [`owner`] for a point whose resource's part is already read (`of_resource`): only the
/// point's own attributes are read again.
fn owner_with(of_resource: &Owner, attributes: &[KeyValue]) -> Owner {
    let mut owner = owner(&[], attributes);
    if owner.claude_session.is_empty() {
        owner.claude_session = of_resource.claude_session.clone();
    }
    owner.session = of_resource.session;
    owner.agent = of_resource.agent.clone();
    owner
}

/// Longest attribute text kept (a session id, an agent, a model): ids and names are short,
/// and what is kept is repeated per series.
const MAX_TEXT_CHARS: usize = 256;

/// Most datapoints taken from one export; the rest are refused (`partialSuccess`).
const MAX_POINTS: usize = 10_000;

fn cut(text: String) -> String {
    if text.chars().count() <= MAX_TEXT_CHARS {
        text
    } else {
        text.chars().take(MAX_TEXT_CHARS).collect()
    }
}

/// A stable 64-bit digest (FNV-1a) of an attribute set, sorted (OTLP does not order
/// attributes, and an exporter may reorder them between exports): with the metric's name,
/// a series' identity, of a fixed size whatever the attributes hold, and the same across
/// restarts and builds (it is stored with the series' last cumulative value).
fn digest(attributes: &[KeyValue]) -> u64 {
    let mut pairs: Vec<String> = attributes
        .iter()
        .map(|kv| format!("{}={}", kv.key, shown(kv.value.as_ref())))
        .collect();
    pairs.sort();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for pair in &pairs {
        for byte in pair.bytes().chain(std::iter::once(0)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn shown(value: Option<&AnyValue>) -> String {
    value
        .and_then(as_text)
        .unwrap_or_else(|| format!("{value:?}"))
}

/// The value of attribute `key` as text (strings as they are, numbers and booleans printed).
fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(as_text)
}

fn as_text(value: &AnyValue) -> Option<String> {
    match value.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(number) => Some(number.to_string()),
        any_value::Value::DoubleValue(number) => Some(number.to_string()),
        any_value::Value::BoolValue(flag) => Some(flag.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
