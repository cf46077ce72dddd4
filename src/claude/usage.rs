//! The usage ledger: what Claude Code's own telemetry says a Claude session cost and did.
//!
//! Pure (no I/O, no clock): [`Ledger::apply`] takes the datapoints one OTLP export carried
//! and returns what changed, which the caller writes through to storage; [`Ledger::report`]
//! sums the buckets of one of our sessions. Claude Code exports its counters as OTLP Sums,
//! delta by default and cumulative when asked (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`);
//! a cumulative series is turned into increments here by remembering its last value (per
//! series: metric, attributes, resource), so the totals mean the same in both.
//!
//! Buckets are kept by who reported them — the Claude session id (`session.id`) and, when
//! the resource names them, our session and agent — never by whom they were attributed to:
//! attribution through the hooks' mapping happens in [`Ledger::report`], at read time, so
//! usage that arrived before its Claude session's first hook is counted once the hook comes.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

/// What a datapoint counts; the metric names are Claude Code's (its monitoring docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Measure {
    /// `claude_code.cost.usage`, USD.
    Cost,
    /// `claude_code.token.usage`, by its `type` attribute.
    Tokens(TokenKind),
    /// `claude_code.lines_of_code.count` with `type` = `added`.
    LinesAdded,
    /// `claude_code.lines_of_code.count` with `type` = `removed`.
    LinesRemoved,
    /// `claude_code.commit.count`.
    Commits,
    /// `claude_code.pull_request.count`.
    PullRequests,
    /// `claude_code.active_time.total`, seconds.
    ActiveTime,
}

/// The `type` of `claude_code.token.usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TokenKind {
    /// `input`.
    Input,
    /// `output`.
    Output,
    /// `cacheRead`.
    CacheRead,
    /// `cacheCreation`.
    CacheCreation,
}

impl TokenKind {
    /// The kind Claude Code's `type` attribute names.
    pub(crate) fn parse(value: &str) -> Option<TokenKind> {
        match value {
            "input" => Some(TokenKind::Input),
            "output" => Some(TokenKind::Output),
            "cacheRead" => Some(TokenKind::CacheRead),
            "cacheCreation" => Some(TokenKind::CacheCreation),
            _ => None,
        }
    }
}

/// How a Sum's values relate to each other (OTLP `AggregationTemporality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Temporality {
    /// Each value is what happened since the previous export.
    Delta,
    /// Each value is the total since the series' start time.
    Cumulative,
}

/// Who reported usage: the bucket it is kept in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Owner {
    /// Claude Code's `session.id`; empty when the datapoint had none.
    pub(crate) claude_session: String,
    /// `session_manager.session_id` of the resource (our agents' exports).
    pub(crate) session: Option<Uuid>,
    /// `session_manager.agent` of the resource.
    pub(crate) agent: Option<String>,
    /// The `model` attribute (cost and tokens carry one).
    pub(crate) model: Option<String>,
}

/// One datapoint of a Claude Code metric, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    /// What it counts.
    pub(crate) measure: Measure,
    /// Whose it is.
    pub(crate) owner: Owner,
    /// The series: metric name, every attribute and the resource's, canonically ordered;
    /// what a cumulative value is compared with.
    pub(crate) series: String,
    /// `start_time_unix_nano`: a new one starts the series afresh.
    pub(crate) start: u64,
    /// The value (a count, USD or seconds).
    pub(crate) value: f64,
    /// How to read `value`.
    pub(crate) temporality: Temporality,
}

/// An `api_error` event of Claude Code's logs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiErrorEvent {
    /// Whose it is.
    pub(crate) owner: Owner,
    /// Its `error` attribute (with the status code when given).
    pub(crate) error: String,
}

/// Token counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Tokens {
    /// Input tokens.
    pub(crate) input: f64,
    /// Output tokens.
    pub(crate) output: f64,
    /// Tokens read from the prompt cache.
    pub(crate) cache_read: f64,
    /// Tokens written to the prompt cache.
    pub(crate) cache_creation: f64,
}

impl Tokens {
    fn add(&mut self, other: &Tokens) {
        self.input += other.input;
        self.output += other.output;
        self.cache_read += other.cache_read;
        self.cache_creation += other.cache_creation;
    }

    fn slot(&mut self, kind: TokenKind) -> &mut f64 {
        match kind {
            TokenKind::Input => &mut self.input,
            TokenKind::Output => &mut self.output,
            TokenKind::CacheRead => &mut self.cache_read,
            TokenKind::CacheCreation => &mut self.cache_creation,
        }
    }
}

/// What one bucket (or a sum of them) counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    /// USD.
    pub(crate) cost_usd: f64,
    /// Tokens by kind.
    pub(crate) tokens: Tokens,
    /// Lines added.
    pub(crate) lines_added: f64,
    /// Lines removed.
    pub(crate) lines_removed: f64,
    /// Commits made.
    pub(crate) commits: f64,
    /// Pull requests opened.
    pub(crate) pull_requests: f64,
    /// Active time, seconds.
    pub(crate) active_time_seconds: f64,
    /// `api_error` events.
    pub(crate) api_errors: u64,
    /// The last one's error.
    pub(crate) last_api_error: Option<String>,
}

impl Totals {
    fn count(&mut self, measure: Measure, amount: f64) {
        let slot = match measure {
            Measure::Cost => &mut self.cost_usd,
            Measure::Tokens(kind) => self.tokens.slot(kind),
            Measure::LinesAdded => &mut self.lines_added,
            Measure::LinesRemoved => &mut self.lines_removed,
            Measure::Commits => &mut self.commits,
            Measure::PullRequests => &mut self.pull_requests,
            Measure::ActiveTime => &mut self.active_time_seconds,
        };
        *slot += amount;
    }

    /// Adds `other` (a later bucket's last error wins).
    pub(crate) fn add(&mut self, other: &Totals) {
        self.cost_usd += other.cost_usd;
        self.tokens.add(&other.tokens);
        self.lines_added += other.lines_added;
        self.lines_removed += other.lines_removed;
        self.commits += other.commits;
        self.pull_requests += other.pull_requests;
        self.active_time_seconds += other.active_time_seconds;
        self.api_errors += other.api_errors;
        if other.last_api_error.is_some() {
            self.last_api_error.clone_from(&other.last_api_error);
        }
    }
}

/// The last value of a cumulative series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Last {
    /// Its start time.
    pub(crate) start: u64,
    /// Its value.
    pub(crate) value: f64,
}

/// What one export changed: the new state of each bucket and series it touched.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Change {
    /// Buckets, with their new totals.
    pub(crate) buckets: Vec<(Owner, Totals)>,
    /// Cumulative series, with their new last value.
    pub(crate) series: Vec<(String, Last)>,
    /// Datapoints refused (a negative or non-finite value).
    pub(crate) rejected: u64,
}

/// One of our sessions' usage, as [`Ledger::report`] sums it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Report {
    /// Everything.
    pub(crate) total: Totals,
    /// By model (`unknown` for datapoints without one).
    pub(crate) by_model: BTreeMap<String, Totals>,
    /// By agent (`unknown` when neither the resource nor the hooks name one).
    pub(crate) by_agent: BTreeMap<String, Totals>,
    /// The Claude sessions it came from.
    pub(crate) claude_sessions: Vec<String>,
}

/// Name of the group of usage with no model or agent.
pub(crate) const UNKNOWN: &str = "unknown";

/// The ledger: buckets of totals and the last value of every cumulative series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    buckets: HashMap<Owner, Totals>,
    last: HashMap<String, Last>,
}

impl Ledger {
    /// A ledger as storage kept it.
    pub(crate) fn restore(
        buckets: impl IntoIterator<Item = (Owner, Totals)>,
        series: impl IntoIterator<Item = (String, Last)>,
    ) -> Ledger {
        Ledger {
            buckets: buckets.into_iter().collect(),
            last: series.into_iter().collect(),
        }
    }

    /// Counts one export's datapoints and api errors.
    pub(crate) fn apply(&mut self, points: &[Point], errors: &[ApiErrorEvent]) -> Change {
        let mut change = Change::default();
        let mut touched: Vec<Owner> = Vec::new();
        let mut series: Vec<String> = Vec::new();
        for point in points {
            if !point.value.is_finite() || point.value < 0.0 {
                change.rejected += 1;
                continue;
            }
            let amount = match point.temporality {
                Temporality::Delta => point.value,
                Temporality::Cumulative => {
                    let now = Last {
                        start: point.start,
                        value: point.value,
                    };
                    series.push(point.series.clone());
                    increment(self.last.insert(point.series.clone(), now), now)
                }
            };
            self.buckets
                .entry(point.owner.clone())
                .or_default()
                .count(point.measure, amount);
            touched.push(point.owner.clone());
        }
        for event in errors {
            let bucket = self.buckets.entry(event.owner.clone()).or_default();
            bucket.api_errors += 1;
            bucket.last_api_error = Some(event.error.clone());
            touched.push(event.owner.clone());
        }
        touched.sort();
        touched.dedup();
        series.sort();
        series.dedup();
        change.buckets = touched
            .into_iter()
            .filter_map(|owner| {
                let totals = self.buckets.get(&owner)?.clone();
                Some((owner, totals))
            })
            .collect();
        change.series = series
            .into_iter()
            .filter_map(|key| {
                let last = *self.last.get(&key)?;
                Some((key, last))
            })
            .collect();
        change
    }

    /// The usage of our session `session`: the buckets its agents' resources name, and those
    /// of Claude sessions `attribution` (the hooks' mapping) gives to it.
    pub(crate) fn report(
        &self,
        session: Uuid,
        attribution: impl Fn(&str) -> Option<(Uuid, Option<String>)>,
    ) -> Option<Report> {
        let mut report = Report::default();
        let mut found = false;
        // A Claude session whose resource named our session anywhere (its metrics) is that
        // session's everywhere (its events, which carry no resource of ours).
        let named: HashMap<&str, (Uuid, Option<String>)> = self
            .buckets
            .keys()
            .filter(|owner| !owner.claude_session.is_empty())
            .filter_map(|owner| {
                let session = owner.session?;
                Some((
                    owner.claude_session.as_str(),
                    (session, owner.agent.clone()),
                ))
            })
            .collect();
        for (owner, totals) in &self.buckets {
            let mapped = (!owner.claude_session.is_empty())
                .then(|| {
                    attribution(&owner.claude_session)
                        .or_else(|| named.get(owner.claude_session.as_str()).cloned())
                })
                .flatten();
            let (whose, agent) = match (owner.session, mapped) {
                (Some(ours), mapped) => (
                    ours,
                    owner
                        .agent
                        .clone()
                        .or_else(|| mapped.and_then(|(s, a)| (s == ours).then_some(a)).flatten()),
                ),
                (None, Some((ours, agent))) => (ours, owner.agent.clone().or(agent)),
                (None, None) => continue,
            };
            if whose != session {
                continue;
            }
            found = true;
            report.total.add(totals);
            let model = owner.model.as_deref().unwrap_or(UNKNOWN);
            report
                .by_model
                .entry(model.to_owned())
                .or_default()
                .add(totals);
            let agent = agent.as_deref().unwrap_or(UNKNOWN);
            report
                .by_agent
                .entry(agent.to_owned())
                .or_default()
                .add(totals);
            if !owner.claude_session.is_empty() {
                report.claude_sessions.push(owner.claude_session.clone());
            }
        }
        report.claude_sessions.sort();
        report.claude_sessions.dedup();
        found.then_some(report)
    }

    /// The usage of one Claude session (every bucket with its `session.id`).
    pub(crate) fn of_claude_session(&self, claude_session: &str) -> Option<Totals> {
        let mut total = None::<Totals>;
        for (owner, totals) in &self.buckets {
            if owner.claude_session == claude_session {
                total.get_or_insert_with(Totals::default).add(totals);
            }
        }
        total
    }

    /// Everything counted, whoever it belongs to.
    pub(crate) fn grand_total(&self) -> Totals {
        let mut total = Totals::default();
        for totals in self.buckets.values() {
            total.add(totals);
        }
        total
    }
}

/// What a cumulative value adds, given the series' previous one: the difference, or all of
/// it when the series is new or was reset (its start time changed, or its value dropped).
fn increment(previous: Option<Last>, now: Last) -> f64 {
    match previous {
        Some(before) if before.start == now.start && now.value >= before.value => {
            now.value - before.value
        }
        _ => now.value,
    }
}

#[cfg(test)]
mod tests;
