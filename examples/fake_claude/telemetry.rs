//! Claude Code's telemetry as its OTLP exporter sends it, in OTLP/JSON: with
//! `CLAUDE_CODE_ENABLE_TELEMETRY=1` and `OTEL_METRICS_EXPORTER` naming `otlp`, after every
//! exchange `claude_code.cost.usage` and `claude_code.token.usage` (by `type`), cumulative
//! since the process started, to `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` or
//! `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/metrics`, with `OTEL_EXPORTER_OTLP_HEADERS` and the
//! resource attributes of `OTEL_RESOURCE_ATTRIBUTES`; every datapoint carries `session.id`
//! and `model`.
//!
//! Each exchange costs a fixed, documented amount so tests can assert totals:
//! [`COST_USD`], and [`TOKENS`] by type.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// Dollars one exchange costs.
pub const COST_USD: f64 = 0.0125;
/// Tokens one exchange uses, by Claude Code's `type` attribute (and the transcript's
/// `message.usage` key).
pub const TOKENS: [(&str, &str, u64); 4] = [
    ("input", "input_tokens", 100),
    ("output", "output_tokens", 50),
    ("cacheRead", "cache_read_input_tokens", 1000),
    ("cacheCreation", "cache_creation_input_tokens", 200),
];

/// Where and how to export, when telemetry is on.
pub struct Exporter {
    url: String,
    headers: Vec<(String, String)>,
    resource: Vec<Value>,
    started_nanos: u128,
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `%XX` escapes decoded, as the OTel environment variables' values are.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k=v,k2=v2` pairs.
fn pairs(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k.trim()), decode(v.trim())))
        .collect()
}

fn attribute(key: &str, value: &str) -> Value {
    json!({"key": key, "value": {"stringValue": value}})
}

impl Exporter {
    /// The exporter the environment asks for, or none.
    pub fn from_env() -> Option<Exporter> {
        if var("CLAUDE_CODE_ENABLE_TELEMETRY").as_deref() != Some("1") {
            return None;
        }
        if !var("OTEL_METRICS_EXPORTER")?
            .split(',')
            .any(|e| e.trim() == "otlp")
        {
            return None;
        }
        let url = var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or_else(|| {
            var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .map(|base| format!("{}/v1/metrics", base.trim_end_matches('/')))
        })?;
        let headers = var("OTEL_EXPORTER_OTLP_METRICS_HEADERS")
            .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|text| pairs(&text))
            .unwrap_or_default();
        let mut resource = vec![
            attribute("service.name", "claude-code"),
            attribute("service.version", "2.1.197"),
        ];
        resource.extend(
            var("OTEL_RESOURCE_ATTRIBUTES")
                .map(|text| pairs(&text))
                .unwrap_or_default()
                .iter()
                .map(|(k, v)| attribute(k, v)),
        );
        Some(Exporter {
            url,
            headers,
            resource,
            started_nanos: nanos(),
        })
    }

    /// Exports the totals after `exchanges` exchanges of `session_id` with `model`.
    pub fn export(&self, session_id: &str, model: &str, exchanges: u64) {
        let body = self.body(session_id, model, exchanges).to_string();
        if let Err(error) =
            session_manager::hook::post_url(&self.url, &self.headers, body.as_bytes())
        {
            eprintln!("telemetry export failed: {error}");
        }
    }

    fn body(&self, session_id: &str, model: &str, exchanges: u64) -> Value {
        let (start, now) = (self.started_nanos.to_string(), nanos().to_string());
        let point = |value: f64, extra: Option<(&str, &str)>| {
            let mut attributes = vec![
                attribute("session.id", session_id),
                attribute("model", model),
            ];
            attributes.extend(extra.map(|(k, v)| attribute(k, v)));
            json!({
                "attributes": attributes,
                "startTimeUnixNano": start,
                "timeUnixNano": now,
                "asDouble": value,
            })
        };
        let sum = |points: Vec<Value>| json!({"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": points});
        let tokens = TOKENS
            .iter()
            .map(|(kind, _, per)| point((per * exchanges) as f64, Some(("type", kind))))
            .collect();
        json!({"resourceMetrics": [{
            "resource": {"attributes": self.resource},
            "scopeMetrics": [{
                "scope": {"name": "com.anthropic.claude_code", "version": "2.1.197"},
                "metrics": [
                    {"name": "claude_code.cost.usage", "unit": "USD",
                     "sum": sum(vec![point(COST_USD * exchanges as f64, None)])},
                    {"name": "claude_code.token.usage", "unit": "tokens", "sum": sum(tokens)},
                ]
            }]
        }]})
    }
}
