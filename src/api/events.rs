//! Events on the wire: the one mapping from the bus's typed events to what WebSocket
//! clients receive and `GET /api/claude/events` returns, and the topics clients choose from.
//!
//! The event log stores each numbered event's `data` already mapped, through [`encode`], the
//! encoder the server opens the bus with (the row around it — kind, session, time, seq — is
//! the bus's: `session/bus/record.rs`). A replayed event is therefore the same message a
//! live client got, and an old log stays readable after the typed events change.
//!
//! Layout: this file is `GET /api/claude/events` (its query and page); `topic.rs` the
//! topics; `wire.rs` the mapping of an event to its wire form.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;

use super::envelope;
use super::errors::ApiError;
use super::sessions::{Answer, Parsed};
use super::ApiContext;

#[cfg(test)]
mod tests;
mod topic;
mod wire;

pub(crate) use topic::Topic;
pub(crate) use wire::{encode, WireEvent};

/// Events `GET /events` returns when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 100;
/// Most events `GET /events` returns at once.
pub(crate) const MAX_LIMIT: usize = 1000;

/// The parameters of `GET /events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventsQuery {
    /// Events with a seq above this one.
    pub(crate) since: u64,
    /// Only this session's events.
    pub(crate) session: Option<Uuid>,
    /// At most this many.
    pub(crate) limit: usize,
}

impl EventsQuery {
    /// Checks each parameter; an unknown one or a bad value is a 400 naming it.
    pub(crate) fn parse(params: &BTreeMap<String, String>) -> Result<EventsQuery, ApiError> {
        let bad = |field: &str, message: String| ApiError::Validation {
            message,
            field: Some(field.to_owned()),
        };
        let mut query = EventsQuery {
            since: 0,
            session: None,
            limit: DEFAULT_LIMIT,
        };
        for (name, value) in params {
            match name.as_str() {
                "since" => {
                    query.since = value.parse().map_err(|_| {
                        bad(
                            "since",
                            format!("since must be a non-negative integer (a seq), got {value:?}"),
                        )
                    })?;
                }
                "session_id" => {
                    query.session = Some(value.parse().map_err(|_| {
                        bad(
                            "session_id",
                            format!("session_id is not a session id: {value:?}"),
                        )
                    })?);
                }
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| {
                            bad(
                                "limit",
                                format!("limit must be between 1 and {MAX_LIMIT}, got {value:?}"),
                            )
                        })?;
                }
                other => {
                    return Err(bad(
                        other,
                        format!("unknown parameter {other:?}; expected since, session_id or limit"),
                    ))
                }
            }
        }
        Ok(query)
    }
}

/// `GET /api/claude/events`: the stored log after `since`, oldest first. `last_seq` is where
/// to resume: the last event returned when `has_more`, else the newest seq in the log.
pub(crate) async fn list(ctx: ApiContext, params: Parsed<BTreeMap<String, String>>) -> Answer {
    let query = EventsQuery::parse(&params?)?;
    let bus = ctx.sessions.bus();
    // Everything published up to here is read: the log is flushed before the read, within
    // its deadline; while storage refuses the log, a 503 (507) says so at once.
    let head = bus.last_seq();
    let mut events = bus
        .read(query.since, query.session, query.limit + 1)
        .await
        .map_err(|error| ApiError::from(&error))?;
    let has_more = events.len() > query.limit;
    events.truncate(query.limit);
    let last = events
        .last()
        .map(|event| u64::try_from(event.seq).unwrap_or_default());
    let last_seq = if has_more {
        last.unwrap_or(head)
    } else {
        last.unwrap_or(0).max(head)
    };
    let events: Vec<WireEvent> = events.into_iter().map(WireEvent::from_stored).collect();
    Ok(envelope::success(
        StatusCode::OK,
        &EventsPage {
            events: events.iter().map(WireEvent::record).collect(),
            last_seq,
            has_more,
        },
    ))
}

/// An entry of `GET /events`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventRecord<'a> {
    /// Its place in the log.
    seq: Option<u64>,
    /// `session_created`, `agent_status`, `context_changed`, `alert`, …
    #[serde(rename = "type")]
    kind: &'a str,
    /// Unix seconds at which it was published.
    timestamp: f64,
    /// The session it is about; null for a server-wide event.
    session_id: Option<String>,
    /// The event's own fields (by type).
    #[schema(value_type = Object)]
    data: &'a Value,
}

/// `GET /events`: a page of the log.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventsPage<'a> {
    events: Vec<EventRecord<'a>>,
    /// Where to resume (`since`).
    last_seq: u64,
    /// More events follow `last_seq`.
    has_more: bool,
}
