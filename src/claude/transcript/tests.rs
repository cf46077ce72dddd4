use super::*;

fn fixture() -> String {
    let path = format!(
        "{}/tests/fixtures/claude-transcript.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn replies_count_once_with_their_last_chunk_by_model() {
    let usage = parse(fixture().as_bytes()).unwrap();
    assert_eq!(usage.replies, 3);
    let sonnet = usage.by_model["claude-sonnet-4-5-20250929"];
    assert_eq!(sonnet.input, 14.0);
    assert_eq!(sonnet.output, 150.0);
    assert_eq!(sonnet.cache_read, 4500.0);
    assert_eq!(sonnet.cache_creation, 600.0);
    assert_eq!(usage.by_model["claude-haiku-4-5-20251001"].output, 5.0);
    assert_eq!(usage.cost_usd, 0.0);
}

#[test]
fn cost_fields_are_summed_when_present() {
    let text = r#"{"costUSD":0.5,"requestId":"r1","message":{"id":"m1","model":"m","usage":{"output_tokens":3}}}
{"costUSD":0.25,"requestId":"r2","message":{"id":"m2","model":"m","usage":{"output_tokens":1}}}
"#;
    let usage = parse(text.as_bytes()).unwrap();
    assert_eq!(usage.cost_usd, 0.75);
    assert_eq!(usage.by_model["m"].output, 4.0);
}

#[test]
fn overlong_and_broken_lines_are_skipped() {
    let mut text = String::from("not json\n");
    text.push_str(&format!(
        "{{\"message\":{{\"id\":\"big\",\"model\":\"m\",\"usage\":{{\"output_tokens\":99}}}},\"pad\":\"{}\"}}\n",
        "x".repeat(MAX_LINE_BYTES + 10)
    ));
    text.push_str(
        r#"{"requestId":"r","message":{"id":"m1","model":"m","usage":{"output_tokens":2}}}"#,
    );
    let usage = parse(text.as_bytes()).unwrap();
    assert_eq!(usage.replies, 1);
    assert_eq!(usage.by_model["m"].output, 2.0);
}
