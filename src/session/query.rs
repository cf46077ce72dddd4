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
use std::sync::Arc;

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
}

/// A matched row with what it is sorted by, read out once: a folded name compared char by
/// char inside the sort cost a case mapping per character per comparison.
struct Keyed<'a> {
    primary: Primary<'a>,
    row: &'a Row,
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
    fn new(row: &'a Row, key: SortKey) -> Keyed<'a> {
        let primary = match key {
            SortKey::CreatedAt => Primary::Time(row.created_at),
            SortKey::UpdatedAt => Primary::Time(row.updated_at),
            SortKey::LastActivity => Primary::Time(row.last_activity),
            SortKey::Name => Primary::Name(folded(&row.name)),
            SortKey::Status => Primary::Status(row.status),
        };
        Keyed { primary, row }
    }

    /// The primary order: the key's value, and for names then the name as written, so `B`
    /// and `b` still have an order.
    fn compare(&self, other: &Keyed<'_>) -> Ordering {
        match (&self.primary, &other.primary) {
            (Primary::Time(a), Primary::Time(b)) => a.total_cmp(b),
            (Primary::Name(a), Primary::Name(b)) => {
                a.cmp(b).then_with(|| self.row.name.cmp(&other.row.name))
            }
            (Primary::Status(a), Primary::Status(b)) => a.cmp(b),
            // One listing keys every row alike.
            _ => Ordering::Equal,
        }
    }
}

/// What a listing reads of a session, side by side with the others: filtering and
/// ordering 100,000 sessions by reading each record where it lives cost a cache (and TLB)
/// miss per record, most of a listing's time; rows in one vector are read in a stream. The
/// record itself is read only for the filters a row does not hold, and for the page.
#[derive(Debug, Clone)]
pub struct Row {
    id: uuid::Uuid,
    created_at: f64,
    updated_at: f64,
    last_activity: f64,
    status: SessionStatus,
    name: Box<str>,
    record: Arc<SessionRecord>,
}

impl Row {
    /// The row of `record`.
    pub fn new(record: Arc<SessionRecord>) -> Row {
        Row {
            id: record.id,
            created_at: record.created_at,
            updated_at: record.updated_at,
            last_activity: record.last_activity,
            status: record.status,
            name: record.configuration.name.as_str().into(),
            record,
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
        let filter = Filter::new(self);
        let name = &record.configuration.name;
        filter.fields(record.status, record.created_at, name) && filter.rest(record)
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

    /// Whether `row` passes every filter.
    fn matches(&self, row: &Row) -> bool {
        self.fields(row.status, row.created_at, &row.name) && self.rest(&row.record)
    }

    /// The filters a row holds.
    fn fields(&self, status: SessionStatus, created_at: f64, name: &str) -> bool {
        let query = self.query;
        query.status.is_none_or(|s| status == s)
            && query.created_after.is_none_or(|t| created_at >= t)
            && query.created_before.is_none_or(|t| created_at < t)
            && self.name.as_ref().is_none_or(|glob| glob.matches(name))
    }

    /// The filters a row does not hold.
    fn rest(&self, record: &SessionRecord) -> bool {
        let (query, config) = (self.query, &record.configuration);
        query
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
                .working_directory
                .as_ref()
                .is_none_or(|glob| glob.matches(&config.working_directory))
    }
}

/// The page of `rows` that `query` asks for, and how many matched in all.
pub fn select<'a>(rows: &'a [Row], query: &SessionQuery) -> Page<'a> {
    let filter = Filter::new(query);
    let Sort { key, descending } = query.sort;
    let mut matched: Vec<Keyed<'a>> = rows
        .iter()
        .filter(|row| filter.matches(row))
        .map(|row| Keyed::new(row, key))
        .collect();
    let total = matched.len();
    let order = |a: &Keyed<'_>, b: &Keyed<'_>| {
        let primary = a.compare(b);
        let primary = if descending {
            primary.reverse()
        } else {
            primary
        };
        primary.then_with(|| a.row.id.cmp(&b.row.id))
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
        .map(|keyed| &*keyed.row.record)
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
mod tests;
