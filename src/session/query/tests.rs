//! The query's parsing, filters, globs, sort order and pages.
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::*;
use crate::agent::AgentConfig;
use crate::session::SessionConfig;
use crate::supervision::Strategy;

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn record(n: u128, name: &str, dir: &str, created_at: f64) -> SessionRecord {
    SessionRecord {
        id: Uuid::from_u128(n),
        configuration: SessionConfig::new(name, dir),
        status: SessionStatus::Created,
        tags: Vec::new(),
        strategy: Strategy::OneForOne,
        created_at,
        updated_at: created_at,
        last_activity: created_at,
        terminated_at: None,
        error_message: None,
        agent_restarts: BTreeMap::new(),
        agent_activations: BTreeMap::new(),
        git: None,
        claude_sessions: BTreeMap::new(),
    }
}

fn rows(records: &[SessionRecord]) -> Vec<Row> {
    records
        .iter()
        .cloned()
        .map(Arc::new)
        .map(Row::new)
        .collect()
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches(text)
}

fn names<'a>(page: &Page<'a>) -> Vec<&'a str> {
    page.items
        .iter()
        .map(|r| r.configuration.name.as_str())
        .collect()
}

fn listed(records: &[SessionRecord], pairs: &[(&str, &str)]) -> Vec<String> {
    let query = SessionQuery::parse(&params(pairs)).unwrap();
    names(&select(&rows(records), &query))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_parameters_give_the_defaults() {
    let query = SessionQuery::parse(&BTreeMap::new()).unwrap();
    assert_eq!(query, SessionQuery::default());
    assert_eq!(query.limit, 100);
    assert_eq!(query.sort.to_string(), "-created_at");
}

#[test]
fn every_parameter_parses() {
    let query = SessionQuery::parse(&params(&[
        ("status", "ACTIVE"),
        ("name_pattern", "api*"),
        ("working_directory_pattern", "/srv/?"),
        ("created_after", "10.5"),
        ("created_before", "20"),
        ("has_agents", "true"),
        ("tag", "team-a"),
        ("agent_type", "backend"),
        ("sort", "-name"),
        ("limit", "1000"),
        ("offset", "7"),
    ]))
    .unwrap();
    assert_eq!(query.status, Some(SessionStatus::Active));
    assert_eq!(query.created_after, Some(10.5));
    assert_eq!(query.created_before, Some(20.0));
    assert_eq!(query.has_agents, Some(true));
    assert_eq!(query.agent_type, Some(AgentType::Backend));
    assert_eq!(
        query.sort,
        Sort {
            key: SortKey::Name,
            descending: true
        }
    );
    assert_eq!((query.limit, query.offset), (1000, 7));
    assert_eq!(
        query.filter_echo(),
        json!({
            "status": "active", "name_pattern": "api*",
            "working_directory_pattern": "/srv/?", "created_after": 10.5,
            "created_before": 20.0, "has_agents": true, "tag": "team-a",
            "agent_type": "BACKEND", "sort": "-name",
        })
    );
    assert_eq!(SessionQuery::default().filter_echo()["status"], Value::Null);
}

#[test]
fn bad_parameters_name_their_field() {
    let cases: &[(&str, &str)] = &[
        ("status", "running"),
        ("created_after", "yesterday"),
        ("created_after", "NaN"),
        ("created_before", "inf"),
        ("created_before", ""),
        ("has_agents", "yes"),
        ("tag", ""),
        ("agent_type", "wizard"),
        ("sort", "colour"),
        ("sort", "name:desc"),
        ("sort", "--name"),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "-1"),
        ("limit", "99999999999999999999999"),
        ("offset", "-1"),
        ("offset", "1.5"),
        ("colour", "blue"),
    ];
    for &(name, value) in cases {
        let err = SessionQuery::parse(&params(&[(name, value)])).unwrap_err();
        assert_eq!(err.field, name, "{name}={value}: {err}");
    }
    let err = SessionQuery::parse(&params(&[("colour", "x")])).unwrap_err();
    assert!(err.message.contains("name_pattern"), "{err}");
    let err = SessionQuery::parse(&params(&[
        ("created_after", "20"),
        ("created_before", "10"),
    ]))
    .unwrap_err();
    assert_eq!(err.field, "created_before");
    let long = "x".repeat(MAX_PATTERN_CHARS + 1);
    let err = SessionQuery::parse(&params(&[("name_pattern", &long)])).unwrap_err();
    assert_eq!(err.field, "name_pattern");
}

#[test]
fn globs_are_anchored_and_plain_words_are_substrings() {
    assert!(pattern_matches("api", "My-API-work"));
    assert!(!pattern_matches("api", "ap-i"));
    assert!(pattern_matches("api*", "API server"));
    assert!(!pattern_matches("api*", "my api"));
    assert!(pattern_matches("*work", "my api work"));
    assert!(pattern_matches("a?c", "ABC"));
    assert!(!pattern_matches("a?c", "abbc"));
    assert!(pattern_matches("a*b*c", "a-b-x-c"));
    assert!(!pattern_matches("a*b*c", "a-c-b"));
    assert!(pattern_matches("*", ""));
    assert!(pattern_matches("", "anything"));
    assert!(!pattern_matches("?", ""));
    assert!(pattern_matches("ÉTÉ", "un été"));
    assert!(pattern_matches("**a**", "xax"));
}

#[test]
fn a_hostile_pattern_takes_no_exponential_time() {
    // `a*a*a*…b` against `aaaa…`: a backtracking matcher explores every split.
    let pattern = format!("{}b", "a*".repeat(2000));
    let text = "a".repeat(4096);
    let started = Instant::now();
    assert!(!pattern_matches(&pattern, &text));
    assert!(pattern_matches(&format!("{}a", "a*".repeat(2000)), &text));
    // Generous bound: quadratic here is ~10^7 steps; exponential would never finish.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn filters_select_matching_sessions() {
    let mut records = vec![
        record(1, "api-server", "/srv/api", 100.0),
        record(2, "Web front", "/srv/web", 200.0),
        record(3, "batch", "/home/me/batch", 300.0),
    ];
    records[0].status = SessionStatus::Active;
    records[0].tags = vec!["team-a".into()];
    records[1].configuration.agents = vec![AgentConfig::new(AgentType::Frontend)];
    records[2].configuration.agents = vec![AgentConfig::new(AgentType::Backend)];

    assert_eq!(listed(&records, &[("status", "active")]), ["api-server"]);
    assert_eq!(listed(&records, &[("name_pattern", "WEB")]), ["Web front"]);
    assert_eq!(
        listed(&records, &[("working_directory_pattern", "/srv/*")]),
        ["Web front", "api-server"]
    );
    assert_eq!(
        listed(
            &records,
            &[("created_after", "100"), ("created_before", "300")]
        ),
        ["Web front", "api-server"]
    );
    assert_eq!(listed(&records, &[("has_agents", "false")]), ["api-server"]);
    assert_eq!(
        listed(&records, &[("has_agents", "1")]),
        ["batch", "Web front"]
    );
    assert_eq!(listed(&records, &[("tag", "team-a")]), ["api-server"]);
    assert!(listed(&records, &[("tag", "TEAM-A")]).is_empty());
    assert_eq!(listed(&records, &[("agent_type", "BACKEND")]), ["batch"]);
    assert!(listed(&records, &[("agent_type", "database")]).is_empty());
}

#[test]
fn sorting_is_stable_by_id_in_both_directions() {
    let mut records = [
        record(3, "b", "/x", 10.0),
        record(1, "B", "/x", 10.0),
        record(2, "a", "/x", 20.0),
    ];
    records[0].status = SessionStatus::Error;
    records[2].status = SessionStatus::Active;
    records[1].last_activity = 99.0;
    let ids = |pairs: &[(&str, &str)]| -> Vec<u128> {
        let query = SessionQuery::parse(&params(pairs)).unwrap();
        select(&rows(&records), &query)
            .items
            .iter()
            .map(|r| r.id.as_u128())
            .collect()
    };
    assert_eq!(ids(&[]), [2, 1, 3]);
    assert_eq!(ids(&[("sort", "created_at")]), [1, 3, 2]);
    assert_eq!(ids(&[("sort", "-updated_at")]), [2, 1, 3]);
    assert_eq!(ids(&[("sort", "-last_activity")]), [1, 2, 3]);
    // Letter case ignored first; "B" < "b" only breaks the tie.
    assert_eq!(ids(&[("sort", "name")]), [2, 1, 3]);
    assert_eq!(ids(&[("sort", "-name")]), [3, 1, 2]);
    assert_eq!(ids(&[("sort", "status")]), [1, 2, 3]);
    assert_eq!(ids(&[("sort", "-status")]), [3, 2, 1]);
}

#[test]
fn ascii_text_is_matched_as_its_folded_chars_are() {
    // The Kelvin sign folds to an ASCII `k`: it matches ASCII text as folded chars do.
    assert!(pattern_matches("\u{212A}elvin*", "KELVIN scale"));
    assert!(pattern_matches("straße", "STRASSE straße"));
    assert!(!pattern_matches("straße", "STRASSE"));
    // `İ` folds to two chars, `i` and a combining dot: `?` matches only one of them.
    assert!(pattern_matches("?\u{307}x", "İx"));
    assert!(!pattern_matches("?x", "İx"));
    for text in ["Api-Server", "api-server", "x", "", "ÀPI-server", "İ"] {
        for pattern in ["api*", "*SERVER", "?pi*", "pi-s", "àpi*", "i\u{307}"] {
            let chars: Vec<char> = fold_case(text).collect();
            let reference = glob(&Glob::new(pattern).pattern, &chars, |p, t| p == t);
            assert_eq!(
                pattern_matches(pattern, text),
                reference,
                "{pattern} {text}"
            );
        }
    }
}

#[test]
fn names_sort_by_their_folded_key_as_they_did_by_folded_chars() {
    let names = [
        "émile",
        "Émile",
        "Zoë",
        "zoe",
        "ZOË",
        "straße",
        "STRASSE",
        "İstanbul",
        "istanbul",
        "\u{212A}elvin",
        "kelvin",
        "Kelvin",
        "ǅemal",
        "ǆemal",
        "a",
        "A",
        "",
        "Ωmega",
        "ωmega",
    ];
    let records: Vec<SessionRecord> = names
        .iter()
        .enumerate()
        .map(|(i, name)| record(i as u128, name, "/x", 1.0))
        .collect();
    // The order as it was defined: folded chars compared one by one, then the name as
    // written, then the id.
    let reference = |a: &&SessionRecord, b: &&SessionRecord| {
        fold_case(&a.configuration.name)
            .cmp(fold_case(&b.configuration.name))
            .then_with(|| a.configuration.name.cmp(&b.configuration.name))
            .then_with(|| a.id.cmp(&b.id))
    };
    let mut expected: Vec<&SessionRecord> = records.iter().collect();
    expected.sort_by(reference);
    let expected: Vec<&str> = expected
        .iter()
        .map(|r| r.configuration.name.as_str())
        .collect();
    assert_eq!(listed(&records, &[("sort", "name")]), expected);
    let mut descending = expected.clone();
    descending.reverse();
    assert_eq!(listed(&records, &[("sort", "-name")]), descending);
    // A page cut out of the middle is the same slice.
    let page = listed(
        &records,
        &[("sort", "name"), ("offset", "5"), ("limit", "4")],
    );
    assert_eq!(page, expected[5..9]);
}

#[test]
fn pages_cut_the_sorted_matches_and_total_counts_them_all() {
    let records: Vec<SessionRecord> = (0..25)
        .map(|i| record(i, &format!("s{i:02}"), "/x", i as f64))
        .collect();
    let listed_rows = rows(&records);
    let query = SessionQuery::parse(&params(&[
        ("sort", "name"),
        ("limit", "10"),
        ("offset", "20"),
    ]))
    .unwrap();
    let page = select(&listed_rows, &query);
    assert_eq!(page.total, 25);
    assert_eq!(names(&page), ["s20", "s21", "s22", "s23", "s24"]);
    let query = SessionQuery::parse(&params(&[("offset", "1000000")])).unwrap();
    let page = select(&listed_rows, &query);
    assert_eq!((page.items.len(), page.total), (0, 25));
}

#[test]
fn hostile_parameters_never_panic() {
    let huge = "9".repeat(1 << 20);
    let values = [
        "",
        "-0",
        "+1",
        "0x10",
        "1e309",
        "-1e309",
        "NaN",
        "-inf",
        "1_000",
        " 1",
        "\0",
        "\u{202e}",
        "é",
        "*?*?*",
        "-",
        "--",
        huge.as_str(),
    ];
    let records = [record(1, "a", "/a", 1.0)];
    for name in PARAMETERS.iter().chain(&["", "\0", "LIMIT"]) {
        for value in values {
            if let Ok(query) = SessionQuery::parse(&params(&[(name, value)])) {
                let _ = select(&rows(&records), &query);
                let _ = query.filter_echo();
            }
        }
    }
}
