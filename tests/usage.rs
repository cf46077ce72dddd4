//! Claude Code's cost and tokens through the real binary: OTLP/HTTP exports — one made by
//! the real `opentelemetry-otlp` exporter (protobuf, cumulative), Claude Code's JSON shape
//! (delta) and its `api_error` events — counted into `GET …/usage` exactly, attributed by
//! the resource or by a Claude agent's conversation id, kept across a restart; the
//! transcript fallback; and the receiver's refusals (415, 400, 413, 401).
mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig};
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::{runtime, Resource};
use serde_json::{json, Value};

use common::app::App;
use common::{example, PATIENCE};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

async fn create(app: &App, name: &str, extra: Value) -> String {
    let mut body = json!({"name": name, "working_directory": app.dir(name), "git_enabled": false});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, body) = app.post("/api/claude/sessions", &body).await;
    assert_eq!(status, 201, "{body}");
    body["session"]["id"].as_str().unwrap().to_owned()
}

/// POST of an OTLP body → (status, JSON answer): an `Export…ServiceResponse` on success (no
/// envelope: OTLP/HTTP says what a receiver answers), the envelope on failure.
async fn otlp(app: &App, path: &str, content_type: &str, body: impl Into<Vec<u8>>) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body.into())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn usage(app: &App, id: &str) -> Value {
    let (status, body) = app.get(&format!("/api/claude/sessions/{id}/usage")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A meter provider exporting to the server with the real OTLP/HTTP protobuf exporter.
fn provider(app: &App, session: &str) -> SdkMeterProvider {
    let exporter = MetricExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(app.url("/v1/metrics"))
        .build()
        .unwrap();
    let reader = PeriodicReader::builder(exporter, runtime::Tokio)
        .with_interval(Duration::from_secs(3600))
        .build();
    SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(
            Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "claude-code"),
                    KeyValue::new("session_manager.session_id", session.to_owned()),
                    KeyValue::new("session_manager.agent", "writer"),
                ])
                .build(),
        )
        .build()
}

async fn flush(provider: &SdkMeterProvider) {
    let provider = provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap()
        .expect("the export reached the server and was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_protobuf_export_is_counted_cumulatively_and_survives_a_restart() {
    let mut app = App::start(&[]);
    let id = create(&app, "otel", json!({})).await;
    let provider = provider(&app, &id);
    let meter = provider.meter("com.anthropic.claude_code");
    let cost = meter
        .f64_counter("claude_code.cost.usage")
        .with_unit("USD")
        .build();
    let tokens = meter
        .u64_counter("claude_code.token.usage")
        .with_unit("tokens")
        .build();
    let attrs = |extra: &[KeyValue]| {
        let mut all = vec![
            KeyValue::new("session.id", "c-proto"),
            KeyValue::new("model", "claude-opus-4-1"),
        ];
        all.extend_from_slice(extra);
        all
    };
    cost.add(0.5, &attrs(&[]));
    tokens.add(1000, &attrs(&[KeyValue::new("type", "input")]));
    tokens.add(200, &attrs(&[KeyValue::new("type", "output")]));
    flush(&provider).await;
    // The SDK's default is cumulative: the second export repeats the totals, plus the new.
    cost.add(0.25, &attrs(&[]));
    tokens.add(50, &attrs(&[KeyValue::new("type", "output")]));
    flush(&provider).await;
    let body = usage(&app, &id).await;
    assert_eq!(body["source"], "otel");
    assert_eq!(body["cost_usd"], 0.75);
    assert_eq!(
        body["tokens"],
        json!({"input": 1000, "output": 250, "cache_read": 0, "cache_creation": 0})
    );
    assert_eq!(body["by_model"]["claude-opus-4-1"]["cost_usd"], 0.75);
    assert_eq!(body["by_agent"]["writer"]["tokens"]["output"], 250);
    assert_eq!(body["claude_sessions"], json!(["c-proto"]));

    // Restarted, the server still knows the totals and each series' last value: the same
    // cumulative series exported again adds only what is new.
    app.restart();
    assert_eq!(usage(&app, &id).await["cost_usd"], 0.75);
    let provider_again = provider.clone();
    cost.add(1.0, &attrs(&[]));
    flush(&provider_again).await;
    assert_eq!(usage(&app, &id).await["cost_usd"], 1.75);
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
}

#[tokio::test]
async fn claude_codes_json_delta_export_and_api_errors_are_counted_exactly() {
    let app = App::start(&[]);
    let id = create(&app, "json", json!({})).await;
    let body = fixture("otlp/metrics-delta.json")
        .replace("@SESSION@", &id)
        .replace("@CLAUDE@", "c-json");
    for _ in 0..2 {
        let (status, answer) = otlp(&app, "/v1/metrics", "application/json", body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(answer, json!({}), "a full success in OTLP/JSON");
    }
    // The logs carry no resource attribute of ours: they count for the session the metrics'
    // resource named for the same session.id.
    let logs = fixture("otlp/logs-api-error.json").replace("@CLAUDE@", "c-json");
    let (status, _) = otlp(&app, "/v1/logs", "application/json", logs).await;
    assert_eq!(status, 200);
    let body = usage(&app, &id).await;
    assert_eq!(body["source"], "otel");
    assert_eq!(body["cost_usd"], 0.25);
    assert_eq!(
        body["tokens"],
        json!({"input": 2400, "output": 600, "cache_read": 10000, "cache_creation": 1400})
    );
    assert_eq!(body["lines_of_code"], json!({"added": 84, "removed": 14}));
    assert_eq!(body["commits"], 4);
    assert_eq!(body["pull_requests"], 2);
    assert_eq!(body["active_time_seconds"], 25.0);
    assert_eq!(body["by_agent"]["writer"]["cost_usd"], 0.25);
    assert_eq!(
        body["by_model"]["claude-sonnet-4-5"]["tokens"]["input"],
        2400
    );
    assert_eq!(body["api_errors"], 1);
    assert_eq!(body["last_api_error"], "Connection error.");
    assert_eq!(body["by_agent"]["writer"]["cost_usd"], 0.25);
    assert_eq!(body["budget_usd"], Value::Null);
}

#[tokio::test]
async fn cumulative_json_with_a_reset_and_a_refused_point() {
    let app = App::start(&[]);
    // No resource attribute of ours: attributed later, when an export whose resource names
    // our session carries the same session.id.
    let id = create(&app, "cumulative", json!({})).await;
    let post = |time: &str, cost: &str, output: &str| {
        let body = fixture("otlp/metrics-cumulative.json")
            .replace("@CLAUDE@", "c-cum")
            .replace("@TIME@", time)
            .replace("@COST@", cost)
            .replace("@OUTPUT@", output);
        otlp(&app, "/v1/metrics", "application/json", body)
    };
    assert_eq!(post("1", "1.0", "100").await.0, 200);
    assert_eq!(post("2", "1.5", "160").await.0, 200);
    // A drop is a reset: counted whole.
    assert_eq!(post("3", "0.5", "10").await.0, 200);
    // A negative value is refused, and said so.
    let (status, answer) = post("4", "-2", "10").await;
    assert_eq!(status, 200);
    assert_eq!(
        answer["partialSuccess"]["rejectedDataPoints"], "1",
        "{answer}"
    );
    assert!(usage(&app, &id).await["source"].is_null(), "not ours yet");
    let tie = fixture("otlp/metrics-delta.json")
        .replace("@SESSION@", &id)
        .replace("@CLAUDE@", "c-cum");
    assert_eq!(
        otlp(&app, "/v1/metrics", "application/json", tie).await.0,
        200
    );
    let body = usage(&app, &id).await;
    // 1.0, +0.5, reset to 0.5 counted whole; then the delta export's 0.125.
    assert_eq!(body["by_model"]["claude-haiku-4-5"]["cost_usd"], 2.0);
    assert_eq!(
        body["by_model"]["claude-haiku-4-5"]["tokens"]["output"],
        170
    );
    assert_eq!(body["cost_usd"], 2.125);
    assert_eq!(body["claude_sessions"], json!(["c-cum"]));
}

#[tokio::test]
async fn the_receiver_refuses_what_it_cannot_read() {
    let app = App::start(&[("SESSION_MANAGER_SERVER__MAX_BODY_BYTES", "4096")]);
    let (status, body) = otlp(&app, "/v1/metrics", "text/plain", b"x".to_vec()).await;
    assert_eq!(status, 415, "{body}");
    assert_eq!(body["details"]["field"], "Content-Type");
    let response = app
        .client
        .post(app.url("/v1/metrics"))
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", "br")
        .body(vec![1, 2, 3])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["details"]["field"], "Content-Encoding");
    let (status, body) = otlp(
        &app,
        "/v1/metrics",
        "application/x-protobuf",
        vec![0x0a, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = otlp(
        &app,
        "/v1/logs",
        "application/json",
        b"{\"resourceLogs\": 3}".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = otlp(&app, "/v1/metrics", "application/x-protobuf", vec![0; 5000]).await;
    assert_eq!(status, 413);
    // Gzip is read, and a bomb is refused at the body limit.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&[b' '; 100_000]).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 4096);
    let response = app
        .client
        .post(app.url("/v1/metrics"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(b"{}").unwrap();
    let response = app
        .client
        .post(app.url("/v1/logs"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(encoder.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _) = app
        .get("/api/claude/sessions/6f1c1a52-3f5e-4b7e-9d43-0f0e6a4f2b11/usage")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn without_the_token_an_export_is_unauthorized() {
    let app = App::with_config("[server]\ntoken = \"otlp-secret-token\"\n");
    let (status, _) = otlp(&app, "/v1/metrics", "application/json", b"{}".to_vec()).await;
    assert_eq!(status, 401);
    let response = app
        .client
        .post(app.url("/v1/metrics"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer otlp-secret-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The fake Claude CLI as the agents' Claude Code.
fn claude_config() -> String {
    format!(
        "[agents.claude]\ncommand = [{:?}]\n",
        example("fake_claude").display().to_string()
    )
}

#[tokio::test]
async fn without_telemetry_the_transcript_tells_then_telemetry_of_the_conversation_wins() {
    let app = App::with_config(&claude_config());
    let config_dir = app.work.path().join("claude-config");
    let id = create(
        &app,
        "transcript",
        json!({
            "agents": [{"agent_type": "BACKEND", "name": "coder", "claude": true,
                        "environment": {"CLAUDE_CODE_ENABLE_TELEMETRY": "0"}}],
            "environment_variables": {"CLAUDE_CONFIG_DIR": config_dir.to_string_lossy()},
        }),
    )
    .await;
    let (_, agents) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
    let conversation = agents["agents"][0]["claude_session_id"]
        .as_str()
        .expect("a Claude agent has a conversation")
        .to_owned();
    // Its Claude Code is told to export its telemetry to us, labelled with our session and
    // the agent; the agent's own variables cannot turn that off.
    let deadline = Instant::now() + PATIENCE;
    let pid = loop {
        let (_, agents) = app.get(&format!("/api/claude/sessions/{id}/agents")).await;
        if let Some(pid) = agents["agents"][0]["pid"].as_u64() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the agent never ran: {agents}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let has = |entry: &str| environ.iter().any(|e| e == entry);
    assert!(has("CLAUDE_CODE_ENABLE_TELEMETRY=1"), "{environ:?}");
    assert!(has("OTEL_METRICS_EXPORTER=otlp"));
    assert!(has("OTEL_LOGS_EXPORTER=otlp"));
    assert!(has("OTEL_EXPORTER_OTLP_PROTOCOL=http/json"));
    assert!(has(&format!(
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://{}",
        app.address
    )));
    assert!(has(&format!(
        "OTEL_RESOURCE_ATTRIBUTES=session_manager.session_id={id},session_manager.agent=coder"
    )));
    assert!(!environ
        .iter()
        .any(|e| e.starts_with("SESSION_MANAGER_TOKEN=")));
    let project: String = app
        .dir("transcript")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = config_dir
        .join("projects")
        .join(project)
        .join(format!("{conversation}.jsonl"));
    // The fake creates the transcript when it starts; the fixture's lines are appended.
    let deadline = Instant::now() + PATIENCE;
    while !file.is_file() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lines = fixture("claude-transcript.jsonl").replace("@CLAUDE@", &conversation);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    let body = usage(&app, &id).await;
    assert_eq!(body["source"], "transcript", "{body}");
    assert_eq!(body["cost_usd"], 0.0);
    assert_eq!(
        body["tokens"],
        json!({"input": 64, "output": 155, "cache_read": 4500, "cache_creation": 600})
    );
    assert_eq!(
        body["by_model"]["claude-sonnet-4-5-20250929"]["tokens"]["output"],
        150
    );
    assert_eq!(body["by_agent"]["coder"]["tokens"]["input"], 64);
    assert_eq!(body["claude_sessions"], json!([conversation]));

    // Telemetry with the conversation's session.id and no resource of ours (a Claude Code
    // run by hand in the same conversation) is the agent's, and wins over the transcript.
    let metrics = fixture("otlp/metrics-cumulative.json")
        .replace("@CLAUDE@", &conversation)
        .replace("@TIME@", "1")
        .replace("@COST@", "0.3")
        .replace("@OUTPUT@", "40");
    let (status, _) = otlp(&app, "/v1/metrics", "application/json", metrics).await;
    assert_eq!(status, 200);
    let body = usage(&app, &id).await;
    assert_eq!(body["source"], "otel");
    assert_eq!(body["cost_usd"], 0.3);
    assert_eq!(body["by_agent"]["coder"]["tokens"]["output"], 40);
}

#[tokio::test]
async fn telemetry_naming_only_claudes_session_id_follows_its_hooks() {
    let app = App::start(&[]);
    let id = create(&app, "hooked", json!({})).await;
    // Usage first, from a Claude Code nobody knows yet.
    let metrics = fixture("otlp/metrics-cumulative.json")
        .replace("@CLAUDE@", "c-hook")
        .replace("@TIME@", "1")
        .replace("@COST@", "0.4")
        .replace("@OUTPUT@", "90");
    assert_eq!(
        otlp(&app, "/v1/metrics", "application/json", metrics)
            .await
            .0,
        200
    );
    assert!(usage(&app, &id).await["source"].is_null());
    // Then its first hook, naming our session: the usage is ours from now on.
    let response = app
        .client
        .post(app.url("/api/claude/hooks"))
        .header("x-session-manager-session", &id)
        .json(
            &json!({"hook_event_name": "UserPromptSubmit", "session_id": "c-hook",
                      "cwd": app.dir("hooked"), "prompt": "go"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = usage(&app, &id).await;
    assert_eq!(body["source"], "otel");
    assert_eq!(body["cost_usd"], 0.4);
    assert_eq!(body["tokens"]["output"], 90);
    let (_, session) = app.get(&format!("/api/claude/sessions/{id}")).await;
    let entry = &session["session"]["claude_sessions"][0];
    assert_eq!(entry["claude_session_id"], "c-hook", "{session}");
    assert_eq!(entry["cost_usd"], 0.4);
    assert_eq!(entry["tokens"]["output"], 90);
    // More usage shows in the very next answer of the session object (kept answers renew).
    let metrics = fixture("otlp/metrics-cumulative.json")
        .replace("@CLAUDE@", "c-hook")
        .replace("@TIME@", "2")
        .replace("@COST@", "0.9")
        .replace("@OUTPUT@", "100");
    assert_eq!(
        otlp(&app, "/v1/metrics", "application/json", metrics)
            .await
            .0,
        200
    );
    let (_, session) = app.get(&format!("/api/claude/sessions/{id}")).await;
    assert_eq!(session["session"]["claude_sessions"][0]["cost_usd"], 0.9);
}

/// The events of `kind` (`alert`, `alert_resolved`) about `cost_budget` for `session`.
async fn budget_events(app: &App, session: &str, kind: &str) -> Vec<Value> {
    let (_, events) = app
        .get(&format!(
            "/api/claude/events?session_id={session}&limit=1000"
        ))
        .await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind && e["data"]["kind"] == "cost_budget")
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_cost_budget_raises_alerts_at_80_and_100_percent_and_a_higher_one_resolves_them() {
    let app = App::start(&[]);
    let id = create(&app, "budget", json!({"cost_budget_usd": 1.0})).await;
    let (status, body) = app
        .post(
            "/api/claude/sessions",
            &json!({"name": "bad", "working_directory": app.dir("bad"), "cost_budget_usd": -1}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["details"]["field"], "cost_budget_usd");
    let ours = format!(
        "{{ \"key\": \"service.name\", \"value\": {{ \"stringValue\": \"claude-code\" }} }},
         {{ \"key\": \"session_manager.session_id\", \"value\": {{ \"stringValue\": \"{id}\" }} }}"
    );
    let export = |cost: &str| {
        let body = fixture("otlp/metrics-cumulative.json")
            .replace(
                "{ \"key\": \"service.name\", \"value\": { \"stringValue\": \"claude-code\" } }",
                &ours,
            )
            .replace("@CLAUDE@", "c-budget")
            .replace("@TIME@", "1")
            .replace("@COST@", cost)
            .replace("@OUTPUT@", "1");
        otlp(&app, "/v1/metrics", "application/json", body)
    };
    assert_eq!(export("0.5").await.0, 200);
    assert!(budget_events(&app, &id, "alert").await.is_empty());
    assert_eq!(export("0.85").await.0, 200);
    let raised = budget_events(&app, &id, "alert").await;
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["data"]["severity"], "medium");
    assert_eq!(export("1.1").await.0, 200);
    assert_eq!(export("1.1").await.0, 200);
    let raised = budget_events(&app, &id, "alert").await;
    assert_eq!(raised.len(), 2, "each line raised once: {raised:?}");
    assert_eq!(raised[1]["data"]["severity"], "high");
    let body = usage(&app, &id).await;
    assert_eq!(body["budget_usd"], 1.0);
    assert_eq!(body["cost_usd"], 1.1);

    // The totals are on /analytics and /metrics.
    let (_, analytics) = app.get("/api/claude/analytics").await;
    assert_eq!(
        analytics["analytics"]["claude"]["cost_usd"], 1.1,
        "{analytics}"
    );
    assert_eq!(analytics["analytics"]["claude"]["tokens"]["output"], 1);
    let metrics = app.text("/metrics").await;
    assert!(
        metrics.contains("session_manager_claude_cost_usd_total 1.1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("session_manager_claude_tokens_total{type=\"output\"} 1\n"),
        "{metrics}"
    );

    // A higher budget resolves both; null removes the budget.
    let (status, body) = app
        .put(
            &format!("/api/claude/sessions/{id}"),
            &json!({"cost_budget_usd": 2.0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["session"]["configuration"]["cost_budget_usd"], 2.0);
    assert_eq!(budget_events(&app, &id, "alert_resolved").await.len(), 2);
    let (status, body) = app
        .put(
            &format!("/api/claude/sessions/{id}"),
            &json!({"cost_budget_usd": null}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["session"]["configuration"]["cost_budget_usd"].is_null());
    assert!(usage(&app, &id).await["budget_usd"].is_null());
}

#[tokio::test]
async fn a_claude_agents_own_export_is_counted_for_its_session_and_agent() {
    let app = App::with_config(&claude_config());
    let config_dir = app.work.path().join("claude-config");
    let id = create(
        &app,
        "exported",
        json!({
            "agents": [{"agent_type": "BACKEND", "name": "coder", "claude": true}],
            "environment_variables": {"CLAUDE_CONFIG_DIR": config_dir.to_string_lossy()},
        }),
    )
    .await;
    // One exchange: the fake exports its cumulative totals to the environment's endpoint.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, _) = app
            .post(
                &format!("/api/claude/sessions/{id}/agents/coder/input"),
                &json!({"text": "hello", "submit": true}),
            )
            .await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the agent never took input");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = loop {
        let body = usage(&app, &id).await;
        if body["source"] == "otel" {
            break body;
        }
        assert!(Instant::now() < deadline, "no telemetry arrived: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(body["cost_usd"], 0.0125, "{body}");
    assert_eq!(
        body["tokens"],
        json!({"input": 100, "output": 50, "cache_read": 1000, "cache_creation": 200})
    );
    assert_eq!(body["by_agent"]["coder"]["cost_usd"], 0.0125);
}
