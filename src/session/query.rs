//! Listing sessions as `GET /sessions` does: its query parameters parsed into a
//! [`SessionQuery`], and [`select`] applying one to the records.
//!
//! Decisions, so that a client can rely on them:
//!
//! - **Patterns** (`name_pattern`, `working_directory_pattern`) are globs: `*` matches any run
//!   of characters, `?` exactly one; there is no escape (a literal `*` or `?` is matched by `?`).
//!   Matching ignores letter case. A pattern with a wildcard must match the whole value
//!   (`api*` is a prefix test); a pattern without one matches anywhere in it, as the original
//!   service's users expect (`api` finds `my-api-work`). The matcher is iterative and at worst
//!   proportional to pattern length × value length, so no pattern can make it exponential.
//! - **Times** (`created_after`, `created_before`) are Unix seconds; the window is half-open,
//!   `created_after <= created_at < created_before`, so adjacent windows never overlap.
//! - **Sort** is `sort=KEY` for ascending and `sort=-KEY` for descending, KEY one of
//!   `created_at`, `updated_at`, `last_activity`, `name` (letter case ignored), `status`
//!   (life-cycle order). The default is `-created_at`, newest first. Ties are broken by id,
//!   ascending whatever the direction, so pages are stable.
//! - `tag` matches one of a session's tags exactly; `agent_type` any letter case, and a
//!   session matches when one of its configured agents has that type; `has_agents` is
//!   `true`/`false` (or `1`/`0`).
//! - Every parameter is checked: an unknown one, or a value that does not parse, is an error
//!   naming the parameter.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{json, Value};

use super::model::{SessionRecord, SessionStatus, MAX_PATH_BYTES};
use crate::agent::{AgentType, FieldError};

/// Page size when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page size a client may ask for.
pub const MAX_LIMIT: usize = 1000;
/// Longest pattern, in characters: a working directory is at most [`MAX_PATH_BYTES`], so a
/// longer pattern could never match, and the bound keeps matching cheap.
pub const MAX_PATTERN_CHARS: usize = MAX_PATH_BYTES;

/// The parameters `GET /sessions` accepts, in the order an error lists them.
const PARAMETERS: [&str; 11] = [
    "status",
    "name_pattern",
    "working_directory_pattern",
    "created_after",
    "created_before",
    "has_agents",
    "tag",
    "agent_type",
    "sort",
    "limit",
    "offset",
];

/// What a listing orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// When the session was created.
    CreatedAt,
    /// When it last changed.
    UpdatedAt,
    /// When it was last active.
    LastActivity,
    /// Its name, letter case ignored.
    Name,
    /// Its status, in life-cycle order (`created` first, `error` last).
    Status,
}

impl SortKey {
    const ALL: [SortKey; 5] = [
        SortKey::CreatedAt,
        SortKey::UpdatedAt,
        SortKey::LastActivity,
        SortKey::Name,
        SortKey::Status,
    ];

    /// The word used in `sort`.
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
            SortKey::LastActivity => "last_activity",
            SortKey::Name => "name",
            SortKey::Status => "status",
        }
    }

    /// The value `record` is ordered by, read out of it once.
    fn of<'a>(self, record: &'a SessionRecord) -> Primary<'a> {
        match self {
            SortKey::CreatedAt => Primary::Time(record.created_at),
            SortKey::UpdatedAt => Primary::Time(record.updated_at),
            SortKey::LastActivity => Primary::Time(record.last_activity),
            SortKey::Name => Primary::Name(folded(&record.configuration.name)),
            SortKey::Status => Primary::Status(record.status),
        }
    }
}

/// A matched record with what it is sorted by, read out once: comparing inside the sort
/// what each record points to cost a cache miss per record per comparison (most of a
/// 57 ms `GET /sessions?limit=100` at 100,000 sessions), and a folded name compared char
/// by char a case mapping per character per comparison.
struct Keyed<'a> {
    primary: Primary<'a>,
    record: &'a SessionRecord,
}

/// The value of a record's sort key.
enum Primary<'a> {
    /// `created_at`, `updated_at` or `last_activity`.
    Time(f64),
    /// The name with letter case folded.
    Name(Cow<'a, str>),
    /// The status, in life-cycle order.
    Status(SessionStatus),
}

impl<'a> Keyed<'a> {
    fn new(record: &'a SessionRecord, key: SortKey) -> Keyed<'a> {
        Keyed {
            primary: key.of(record),
            record,
        }
    }

    /// The primary order: the key's value, and for names then the name as written, so `B`
    /// and `b` still have an order.
    fn compare(&self, other: &Keyed<'_>) -> Ordering {
        match (&self.primary, &other.primary) {
            (Primary::Time(a), Primary::Time(b)) => a.total_cmp(b),
            (Primary::Name(a), Primary::Name(b)) => a.cmp(b).then_with(|| {
                let (x, y) = (&self.record.configuration, &other.record.configuration);
                x.name.cmp(&y.name)
            }),
            (Primary::Status(a), Primary::Status(b)) => a.cmp(b),
            // One listing keys every record alike.
            _ => Ordering::Equal,
        }
    }
}

/// `text` with letter case folded as [`fold_case`] does, as one string. Strings compare
/// byte-wise, and UTF-8's byte order is its code points' order, so two folded strings
/// compare exactly as their folded chars do. Allocates only when something changes.
fn folded(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        }
    } else {
        Cow::Owned(fold_case(text).collect())
    }
}

/// A sort key and its direction, written `KEY` (ascending) or `-KEY` (descending).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// What to order by.
    pub key: SortKey,
    /// Largest first.
    pub descending: bool,
}

impl Default for Sort {
    /// Newest first.
    fn default() -> Self {
        Sort {
            key: SortKey::CreatedAt,
            descending: true,
        }
    }
}

impl fmt::Display for Sort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.descending {
            f.write_str("-")?;
        }
        f.write_str(self.key.as_str())
    }
}

impl FromStr for Sort {
    type Err = FieldError;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        let (descending, name) = match word.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, word),
        };
        SortKey::ALL
            .into_iter()
            .find(|key| key.as_str() == name)
            .map(|key| Sort { key, descending })
            .ok_or_else(|| {
                FieldError::invalid(
                    "sort",
                    format!(
                        "must be one of {}, optionally prefixed with - for descending, got {word:?}",
                        SortKey::ALL.map(SortKey::as_str).join(", ")
                    ),
                )
            })
    }
}

/// A parsed `GET /sessions` query: every filter is optional, and a session is listed when it
/// passes all that are given.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionQuery {
    /// Only sessions in this status.
    pub status: Option<SessionStatus>,
    /// Glob over the name (see the module documentation).
    pub name_pattern: Option<String>,
    /// Glob over the working directory as configured.
    pub working_directory_pattern: Option<String>,
    /// Only sessions created at or after this Unix time.
    pub created_after: Option<f64>,
    /// Only sessions created before this Unix time.
    pub created_before: Option<f64>,
    /// Only sessions with (`true`) or without (`false`) configured agents.
    pub has_agents: Option<bool>,
    /// Only sessions carrying this tag.
    pub tag: Option<String>,
    /// Only sessions with a configured agent of this type.
    pub agent_type: Option<AgentType>,
    /// The order of the listing.
    pub sort: Sort,
    /// Page size, 1–[`MAX_LIMIT`].
    pub limit: usize,
    /// Matches skipped before the page starts.
    pub offset: usize,
}

impl Default for SessionQuery {
    /// Everything, newest first, the first [`DEFAULT_LIMIT`].
    fn default() -> Self {
        SessionQuery {
            status: None,
            name_pattern: None,
            working_directory_pattern: None,
            created_after: None,
            created_before: None,
            has_agents: None,
            tag: None,
            agent_type: None,
            sort: Sort::default(),
            limit: DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<'a> {
    /// The sessions of the page, in order.
    pub items: Vec<&'a SessionRecord>,
    /// How many sessions matched in all, not only on this page.
    pub total: usize,
}

impl SessionQuery {
    /// Parses the query parameters of `GET /sessions`; an error names the parameter.
    pub fn parse(params: &BTreeMap<String, String>) -> Result<SessionQuery, FieldError> {
        let mut query = SessionQuery::default();
        for (name, value) in params {
            let value = value.as_str();
            match name.as_str() {
                "status" => {
                    let status = value
                        .parse()
                        .map_err(|e| FieldError::invalid("status", format!("is invalid: {e}")))?;
                    query.status = Some(status);
                }
                "name_pattern" => query.name_pattern = Some(pattern("name_pattern", value)?),
                "working_directory_pattern" => {
                    query.working_directory_pattern =
                        Some(pattern("working_directory_pattern", value)?);
                }
                "created_after" => query.created_after = Some(unix_time("created_after", value)?),
                "created_before" => {
                    query.created_before = Some(unix_time("created_before", value)?);
                }
                "has_agents" => query.has_agents = Some(boolean("has_agents", value)?),
                "tag" => {
                    if value.is_empty() {
                        return Err(FieldError::invalid("tag", "must not be empty"));
                    }
                    query.tag = Some(value.to_owned());
                }
                "agent_type" => {
                    let agent_type = value.parse().map_err(|e| {
                        FieldError::invalid("agent_type", format!("is invalid: {e}"))
                    })?;
                    query.agent_type = Some(agent_type);
                }
                "sort" => query.sort = value.parse()?,
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            FieldError::invalid(
                                "limit",
                                format!(
                                    "must be an integer between 1 and {MAX_LIMIT}, got {value:?}"
                                ),
                            )
                        })?;
                }
                "offset" => {
                    query.offset = value.parse().map_err(|_| {
                        FieldError::invalid(
                            "offset",
                            format!("must be a non-negative integer, got {value:?}"),
                        )
                    })?;
                }
                _ => {
                    return Err(FieldError::invalid(
                        name.as_str(),
                        format!(
                            "is not a parameter of this listing; expected one of {}",
                            PARAMETERS.join(", ")
                        ),
                    ))
                }
            }
        }
        if let (Some(after), Some(before)) = (query.created_after, query.created_before) {
            if before < after {
                return Err(FieldError::inconsistent(
                    "created_before",
                    format!("must not be earlier than created_after ({after}), got {before}"),
                ));
            }
        }
        Ok(query)
    }

    /// The filter as understood, for the response's `filter` key: every filter with its
    /// parsed value (`null` when not given) and the sort in its `KEY`/`-KEY` form.
    pub fn filter_echo(&self) -> Value {
        json!({
            "status": self.status.map(SessionStatus::as_str),
            "name_pattern": self.name_pattern,
            "working_directory_pattern": self.working_directory_pattern,
            "created_after": self.created_after,
            "created_before": self.created_before,
            "has_agents": self.has_agents,
            "tag": self.tag,
            "agent_type": self.agent_type.map(AgentType::as_str),
            "sort": self.sort.to_string(),
        })
    }

    /// Whether `record` passes every filter.
    pub fn matches(&self, record: &SessionRecord) -> bool {
        Filter::new(self).matches(record)
    }
}

/// A query ready to test records with: its patterns folded once, not once per record.
struct Filter<'q> {
    query: &'q SessionQuery,
    name: Option<Glob>,
    working_directory: Option<Glob>,
}

impl<'q> Filter<'q> {
    fn new(query: &'q SessionQuery) -> Filter<'q> {
        Filter {
            query,
            name: query.name_pattern.as_deref().map(Glob::new),
            working_directory: query.working_directory_pattern.as_deref().map(Glob::new),
        }
    }

    /// Whether `record` passes every filter.
    fn matches(&self, record: &SessionRecord) -> bool {
        let config = &record.configuration;
        let query = self.query;
        query.status.is_none_or(|s| record.status == s)
            && query.created_after.is_none_or(|t| record.created_at >= t)
            && query.created_before.is_none_or(|t| record.created_at < t)
            && query
                .has_agents
                .is_none_or(|has| config.agents.is_empty() != has)
            && query
                .tag
                .as_ref()
                .is_none_or(|tag| record.tags.iter().any(|t| t == tag))
            && query
                .agent_type
                .is_none_or(|ty| config.agents.iter().any(|a| a.agent_type == ty))
            && self
                .name
                .as_ref()
                .is_none_or(|glob| glob.matches(&config.name))
            && self
                .working_directory
                .as_ref()
                .is_none_or(|glob| glob.matches(&config.working_directory))
    }
}

/// The page of `records` that `query` asks for, and how many matched in all.
pub fn select<'a>(
    records: impl Iterator<Item = &'a SessionRecord>,
    query: &SessionQuery,
) -> Page<'a> {
    let filter = Filter::new(query);
    let Sort { key, descending } = query.sort;
    let mut matched: Vec<Keyed<'a>> = records
        .filter(|r| filter.matches(r))
        .map(|r| Keyed::new(r, key))
        .collect();
    let total = matched.len();
    let order = |a: &Keyed<'_>, b: &Keyed<'_>| {
        let primary = a.compare(b);
        let primary = if descending {
            primary.reverse()
        } else {
            primary
        };
        primary.then_with(|| a.record.id.cmp(&b.record.id))
    };
    // Only the page is sorted: the records before its end are picked out first (linear),
    // so a page of 100 out of 100,000 sessions costs one pass, not a sort of them all.
    let end = query.offset.saturating_add(query.limit).min(total);
    if end == 0 {
        return Page {
            items: Vec::new(),
            total,
        };
    }
    if end < total {
        matched.select_nth_unstable_by(end - 1, order);
        matched.truncate(end);
    }
    matched.sort_unstable_by(order);
    let items = matched
        .into_iter()
        .skip(query.offset)
        .map(|keyed| keyed.record)
        .collect();
    Page { items, total }
}

fn pattern(field: &str, value: &str) -> Result<String, FieldError> {
    let chars = value.chars().count();
    if chars > MAX_PATTERN_CHARS {
        return Err(FieldError::invalid(
            field,
            format!("must be at most {MAX_PATTERN_CHARS} characters, got {chars}"),
        ));
    }
    Ok(value.to_owned())
}

fn unix_time(field: &str, value: &str) -> Result<f64, FieldError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|t| t.is_finite())
        .ok_or_else(|| {
            FieldError::invalid(
                field,
                format!("must be a finite number of Unix seconds, got {value:?}"),
            )
        })
}

fn boolean(field: &str, value: &str) -> Result<bool, FieldError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(FieldError::invalid(
            field,
            format!("must be true or false, got {value:?}"),
        )),
    }
}

fn fold_case(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().flat_map(char::to_lowercase)
}

/// A glob pattern folded once (see the module documentation): letter case ignored,
/// anchored when the pattern has a wildcard, a substring test otherwise.
struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        let mut pattern: Vec<char> = fold_case(pattern).collect();
        if !pattern.iter().any(|&c| c == '*' || c == '?') {
            pattern.insert(0, '*');
            pattern.push('*');
        }
        Glob { pattern }
    }

    /// Whether `text` matches. ASCII text (nearly every name and path) is folded byte by
    /// byte as it is read — the same fold, since an ASCII char's lowercase is its ASCII
    /// lowercase — so testing 100,000 records allocates nothing.
    fn matches(&self, text: &str) -> bool {
        if text.is_ascii() {
            let fits = |p: char, t: u8| p == char::from(t.to_ascii_lowercase());
            glob(&self.pattern, text.as_bytes(), fits)
        } else {
            let text: Vec<char> = fold_case(text).collect();
            glob(&self.pattern, &text, |p, t| p == t)
        }
    }
}

/// The classic greedy glob with one backtrack point: on a mismatch, the last `*` takes one
/// more character and matching resumes after it. Earlier stars never need revisiting (what
/// follows a later star can start anywhere), so the work is at most pattern × text steps.
/// `fits` says whether a pattern char other than a wildcard matches a text item.
fn glob<T: Copy>(pattern: &[char], text: &[T], fits: impl Fn(char, T) -> bool) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || fits(c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
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
        names(&select(records.iter(), &query))
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
            select(records.iter(), &query)
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
        let query = SessionQuery::parse(&params(&[
            ("sort", "name"),
            ("limit", "10"),
            ("offset", "20"),
        ]))
        .unwrap();
        let page = select(records.iter(), &query);
        assert_eq!(page.total, 25);
        assert_eq!(names(&page), ["s20", "s21", "s22", "s23", "s24"]);
        let query = SessionQuery::parse(&params(&[("offset", "1000000")])).unwrap();
        let page = select(records.iter(), &query);
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
                    let _ = select(records.iter(), &query);
                    let _ = query.filter_echo();
                }
            }
        }
    }
}
