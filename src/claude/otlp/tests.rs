use super::*;
use crate::claude::usage::Ledger;

const SESSION: &str = "6f1c2a3b-0000-4000-8000-00000000abcd";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .replace("@SESSION@", SESSION)
        .replace("@CLAUDE@", "claude-1")
}

#[test]
fn claude_codes_json_export_decodes_into_the_points_the_ledger_counts() {
    let request = decode_metrics(Encoding::Json, fixture("metrics-delta.json").as_bytes()).unwrap();
    let (points, rejected) = points(&request);
    assert_eq!(rejected, 0);
    // claude_code.session.count is not counted.
    assert_eq!(points.len(), 10);
    let session = Uuid::parse_str(SESSION).unwrap();
    assert!(points.iter().all(|p| p.owner.session == Some(session)
        && p.owner.agent.as_deref() == Some("writer")
        && p.owner.claude_session == "claude-1"
        && p.temporality == Temporality::Delta));
    let mut ledger = Ledger::default();
    ledger.apply(&points, &[]);
    let report = ledger.report(session, |_| None).unwrap();
    assert_eq!(report.total.cost_usd, 0.125);
    assert_eq!(report.total.tokens.input, 1200.0);
    assert_eq!(report.total.tokens.cache_creation, 700.0);
    assert_eq!(report.total.lines_added, 42.0);
    assert_eq!(report.total.lines_removed, 7.0);
    assert_eq!(report.total.commits, 2.0);
    assert_eq!(report.total.pull_requests, 1.0);
    assert_eq!(report.total.active_time_seconds, 12.5);
    assert_eq!(report.by_model["claude-sonnet-4-5"].cost_usd, 0.125);
}

#[test]
fn protobuf_and_json_carry_the_same_export() {
    let request = decode_metrics(Encoding::Json, fixture("metrics-delta.json").as_bytes()).unwrap();
    let bytes = request.encode_to_vec();
    let again = decode_metrics(Encoding::Protobuf, &bytes).unwrap();
    assert_eq!(again, request);
    assert_eq!(points(&again), points(&request));
}

#[test]
fn series_keys_ignore_attribute_order() {
    let json = fixture("metrics-cumulative.json")
        .replace("@TIME@", "1765130010000000000")
        .replace("@COST@", "1.5")
        .replace("@OUTPUT@", "10");
    let mut request = decode_metrics(Encoding::Json, json.as_bytes()).unwrap();
    let (before, _) = points(&request);
    for metric in &mut request.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(metric::Data::Sum(sum)) = &mut metric.data {
            sum.data_points[0].attributes.reverse();
        }
    }
    let (after, _) = points(&request);
    assert_eq!(before[0].series, after[0].series);
    assert_eq!(before[0].temporality, Temporality::Cumulative);
}

#[test]
fn api_error_events_are_found_and_other_events_ignored() {
    let request = decode_logs(Encoding::Json, fixture("logs-api-error.json").as_bytes()).unwrap();
    let events = api_errors(&request);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].error, "Connection error.");
    assert_eq!(events[0].owner.claude_session, "claude-1");
}

#[test]
fn a_sum_without_temporality_of_ours_is_rejected() {
    let json = fixture("metrics-cumulative.json")
        .replace("@TIME@", "1")
        .replace("@COST@", "1")
        .replace("@OUTPUT@", "1")
        .replace(
            "\"aggregationTemporality\": 2",
            "\"aggregationTemporality\": 0",
        );
    let request = decode_metrics(Encoding::Json, json.as_bytes()).unwrap();
    assert_eq!(points(&request), (vec![], 2));
}

#[test]
fn hostile_bytes_are_errors_never_panics() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for length in 0..2000 {
        let bytes: Vec<u8> = (0..length % 300)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let _ = decode_metrics(Encoding::Protobuf, &bytes);
        let _ = decode_logs(Encoding::Protobuf, &bytes);
    }
    // A length prefix far past the end of the body.
    assert!(matches!(
        decode_metrics(Encoding::Protobuf, &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Err(OtlpError::Protobuf(_))
    ));
    assert!(matches!(
        decode_metrics(Encoding::Json, b"[1,2"),
        Err(OtlpError::Json(_))
    ));
}

#[test]
fn gzip_inflates_within_the_limit_only() {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&[b'a'; 10_000]).unwrap();
    let gz = encoder.finish().unwrap();
    assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
    assert!(matches!(
        gunzip(&gz, 9_999),
        Err(OtlpError::TooLarge { limit: 9_999 })
    ));
    assert!(matches!(gunzip(b"not gzip", 100), Err(OtlpError::Gzip(_))));
}

#[test]
fn content_types() {
    assert_eq!(
        Encoding::of("application/x-protobuf"),
        Some(Encoding::Protobuf)
    );
    assert_eq!(
        Encoding::of("Application/JSON; charset=utf-8"),
        Some(Encoding::Json)
    );
    assert_eq!(Encoding::of("text/plain"), None);
}

#[test]
fn a_large_resource_is_read_once_and_an_export_holds_a_bounded_number_of_points() {
    use opentelemetry_proto::tonic::metrics::v1::{
        Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    let huge = "x".repeat(100_000);
    let attribute = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let point = NumberDataPoint {
        value: Some(number_data_point::Value::AsDouble(0.5)),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![attribute("session.id", &huge), attribute("pad", &huge)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "claude_code.cost.usage".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![point; MAX_POINTS + 5],
                        aggregation_temporality: AggregationTemporality::Delta as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let (points, rejected) = points(&request);
    assert_eq!((points.len(), rejected), (MAX_POINTS, 5));
    assert!(points
        .iter()
        .all(|p| p.owner.claude_session.len() == MAX_TEXT_CHARS && p.series.len() < 80));
}
