use super::*;

const SESSION: Uuid = Uuid::from_u128(0x5e55_1011);

fn owner(claude: &str, model: Option<&str>) -> Owner {
    Owner {
        claude_session: claude.to_owned(),
        session: None,
        agent: None,
        model: model.map(str::to_owned),
    }
}

fn point(measure: Measure, series: &str, start: u64, value: f64, t: Temporality) -> Point {
    Point {
        measure,
        owner: owner("c1", Some("claude-sonnet")),
        series: series.to_owned(),
        start,
        value,
        temporality: t,
    }
}

fn ours(claude: &str) -> Option<(Uuid, Option<String>)> {
    (claude == "c1").then(|| (SESSION, Some("writer".to_owned())))
}

fn total(ledger: &Ledger) -> Totals {
    ledger.report(SESSION, ours).expect("attributed").total
}

#[test]
fn delta_values_add_up() {
    let mut ledger = Ledger::default();
    for value in [0.25, 0.5] {
        ledger.apply(
            &[point(Measure::Cost, "cost", 1, value, Temporality::Delta)],
            &[],
        );
    }
    assert_eq!(total(&ledger).cost_usd, 0.75);
}

#[test]
fn cumulative_values_add_their_difference() {
    let mut ledger = Ledger::default();
    for value in [100.0, 150.0, 150.0, 400.0] {
        let tokens = Measure::Tokens(TokenKind::Input);
        ledger.apply(
            &[point(tokens, "in", 7, value, Temporality::Cumulative)],
            &[],
        );
    }
    assert_eq!(total(&ledger).tokens.input, 400.0);
}

#[test]
fn a_cumulative_drop_or_a_new_start_time_is_a_reset_counted_whole() {
    let mut ledger = Ledger::default();
    let steps = [(1, 10.0), (1, 30.0), (1, 5.0), (1, 6.0), (2, 4.0)];
    for (start, value) in steps {
        ledger.apply(
            &[point(
                Measure::Commits,
                "c",
                start,
                value,
                Temporality::Cumulative,
            )],
            &[],
        );
    }
    // 10 + 20, reset → 5, +1, new start → 4.
    assert_eq!(total(&ledger).commits, 40.0);
}

#[test]
fn several_series_and_temporalities_mix_without_crosstalk() {
    let mut ledger = Ledger::default();
    let out = Measure::Tokens(TokenKind::Output);
    ledger.apply(
        &[
            point(out, "out-a", 1, 10.0, Temporality::Cumulative),
            point(out, "out-b", 1, 100.0, Temporality::Cumulative),
            point(out, "out-d", 1, 3.0, Temporality::Delta),
        ],
        &[],
    );
    let change = ledger.apply(
        &[
            point(out, "out-a", 1, 15.0, Temporality::Cumulative),
            point(out, "out-b", 1, 101.0, Temporality::Cumulative),
            point(out, "out-d", 1, 3.0, Temporality::Delta),
        ],
        &[],
    );
    assert_eq!(
        total(&ledger).tokens.output,
        10.0 + 100.0 + 3.0 + 5.0 + 1.0 + 3.0
    );
    assert_eq!(change.series.len(), 2, "delta series are not remembered");
    assert_eq!(change.buckets.len(), 1);
}

#[test]
fn a_restored_ledger_continues_cumulative_series() {
    let mut ledger = Ledger::default();
    let change = ledger.apply(
        &[point(
            Measure::ActiveTime,
            "t",
            1,
            60.0,
            Temporality::Cumulative,
        )],
        &[],
    );
    let mut again = Ledger::restore(change.buckets, change.series);
    again.apply(
        &[point(
            Measure::ActiveTime,
            "t",
            1,
            90.0,
            Temporality::Cumulative,
        )],
        &[],
    );
    assert_eq!(total(&again).active_time_seconds, 90.0);
}

#[test]
fn negative_and_non_finite_values_are_rejected() {
    let mut ledger = Ledger::default();
    let change = ledger.apply(
        &[
            point(Measure::Cost, "a", 1, -1.0, Temporality::Delta),
            point(Measure::Cost, "b", 1, f64::NAN, Temporality::Delta),
            point(Measure::Cost, "c", 1, 2.0, Temporality::Delta),
        ],
        &[],
    );
    assert_eq!(change.rejected, 2);
    assert_eq!(total(&ledger).cost_usd, 2.0);
}

#[test]
fn usage_is_attributed_at_read_time_by_the_resource_first_then_the_mapping() {
    let mut ledger = Ledger::default();
    let mut by_resource = point(Measure::Cost, "r", 1, 1.0, Temporality::Delta);
    by_resource.owner = Owner {
        claude_session: "c9".into(),
        session: Some(SESSION),
        agent: Some("reviewer".into()),
        model: None,
    };
    ledger.apply(
        &[
            by_resource,
            point(Measure::Cost, "m", 1, 2.0, Temporality::Delta),
        ],
        &[],
    );
    // Before the hooks map c1, only the resource-attributed bucket is ours.
    let early = ledger.report(SESSION, |_| None).unwrap();
    assert_eq!(early.total.cost_usd, 1.0);
    let report = ledger.report(SESSION, ours).unwrap();
    assert_eq!(report.total.cost_usd, 3.0);
    assert_eq!(report.by_agent["reviewer"].cost_usd, 1.0);
    assert_eq!(report.by_agent["writer"].cost_usd, 2.0);
    assert_eq!(report.by_model["claude-sonnet"].cost_usd, 2.0);
    assert_eq!(report.by_model[UNKNOWN].cost_usd, 1.0);
    assert_eq!(report.claude_sessions, ["c1", "c9"]);
    assert!(ledger.report(Uuid::from_u128(1), ours).is_none());
}

#[test]
fn api_errors_are_counted_and_the_last_kept() {
    let mut ledger = Ledger::default();
    let event = |error: &str| ApiErrorEvent {
        owner: owner("c1", None),
        error: error.into(),
    };
    ledger.apply(&[], &[event("overloaded"), event("timeout")]);
    let totals = total(&ledger);
    assert_eq!(totals.api_errors, 2);
    assert_eq!(totals.last_api_error.as_deref(), Some("timeout"));
    assert_eq!(ledger.of_claude_session("c1").unwrap().api_errors, 2);
    assert!(ledger.of_claude_session("c2").is_none());
    assert_eq!(ledger.grand_total().api_errors, 2);
}

#[test]
fn events_without_our_resource_follow_the_claude_session_the_metrics_named() {
    let mut ledger = Ledger::default();
    let mut named = point(Measure::Cost, "r", 1, 1.0, Temporality::Delta);
    named.owner.claude_session = "c5".into();
    named.owner.session = Some(SESSION);
    named.owner.agent = Some("reviewer".into());
    let event = ApiErrorEvent {
        owner: owner("c5", None),
        error: "overloaded".into(),
    };
    ledger.apply(&[named], &[event]);
    let report = ledger.report(SESSION, |_| None).unwrap();
    assert_eq!(report.total.api_errors, 1);
    assert_eq!(report.by_agent["reviewer"].api_errors, 1);
}
