//! What a client may send ([`Request`], read by [`parse`]) and which events a connection
//! gets ([`Filter`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::api::events::Topic;

/// Which events a connection gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Filter {
    pub(super) topics: BTreeSet<Topic>,
    /// `None`: every session's events; otherwise only these sessions' (and server-wide
    /// events, which belong to no session).
    pub(super) sessions: Option<BTreeSet<Uuid>>,
}

impl Default for Filter {
    fn default() -> Filter {
        Filter {
            topics: Topic::DEFAULT.into_iter().collect(),
            sessions: None,
        }
    }
}

impl Filter {
    pub(super) fn wants(&self, topic: Option<Topic>, session: Option<Uuid>) -> bool {
        let topic_ok = topic.is_some_and(|topic| self.topics.contains(&topic));
        let session_ok = match (&self.sessions, session) {
            (None, _) | (_, None) => true,
            (Some(only), Some(id)) => only.contains(&id),
        };
        topic_ok && session_ok
    }

    pub(super) fn describe(&self) -> Value {
        json!({
            "topics": self.topics.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "session_ids": self
                .sessions
                .as_ref()
                .map(|only| only.iter().map(Uuid::to_string).collect::<Vec<_>>()),
        })
    }
}

/// What a client may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Request {
    Ping,
    SubscribeSession(Uuid),
    Subscribe {
        topics: Option<Vec<Topic>>,
        session: Option<Uuid>,
        since: Option<u64>,
    },
    Unsubscribe {
        topics: Option<Vec<Topic>>,
        session: Option<Uuid>,
    },
}

/// Reads one client message; the error is the `message` of the `error` reply.
pub(super) fn parse(text: &str) -> Result<Request, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("a message must be a JSON object with a `type`".into());
    };
    let kind = fields
        .get("type")
        .and_then(Value::as_str)
        .ok_or("a message must be a JSON object with a `type`")?;
    let session = |required: bool| -> Result<Option<Uuid>, String> {
        match fields.get("session_id") {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err("`session_id` is required".into()),
            Some(Value::String(id)) => id
                .parse()
                .map(Some)
                .map_err(|_| format!("`session_id` is not a session id: {id:?}")),
            Some(_) => Err("`session_id` must be a string".into()),
        }
    };
    let topics = || -> Result<Option<Vec<Topic>>, String> {
        let Some(list) = fields.get("topics") else {
            return Ok(None);
        };
        let list = list.as_array().ok_or("`topics` must be a list of topics")?;
        list.iter()
            .map(|word| {
                let word = word.as_str().ok_or("`topics` must be a list of topics")?;
                Topic::parse(word).ok_or_else(|| {
                    let known: Vec<_> = Topic::ALL.iter().map(|t| t.as_str()).collect();
                    format!("unknown topic {word:?}; topics are {}", known.join(", "))
                })
            })
            .collect::<Result<_, String>>()
            .map(Some)
    };
    match kind {
        "ping" => Ok(Request::Ping),
        "subscribe_session" => Ok(Request::SubscribeSession(
            session(true)?.ok_or("`session_id` is required")?,
        )),
        "subscribe" => {
            let since = match fields.get("since") {
                None | Some(Value::Null) => None,
                Some(since) => Some(
                    since
                        .as_u64()
                        .ok_or("`since` must be a non-negative integer (a seq)")?,
                ),
            };
            Ok(Request::Subscribe {
                topics: topics()?,
                session: session(false)?,
                since,
            })
        }
        "unsubscribe" => Ok(Request::Unsubscribe {
            topics: topics()?,
            session: session(false)?,
        }),
        other => Err(format!(
            "unknown message type {other:?}; expected ping, subscribe, unsubscribe or subscribe_session"
        )),
    }
}
