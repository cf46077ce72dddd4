//! `/ws/sessions`: live events, replay with `since`, and the few requests a client may send.
//!
//! One task ([`Live::start`]) subscribes to the event bus and turns each event into its
//! wire text once, for every client. Each connection then has:
//!
//! - a *pump* (the upgrade's own task) that reads the client's requests and the fanned-out
//!   events, filters them (topics, sessions) and puts what the client gets into a bounded
//!   queue — with `try_send` for live events, so a client that cannot keep up is closed
//!   (1008, "too slow") instead of holding anyone back;
//! - a *writer* task that drains the queue to the socket and sends the close frame.
//!
//! Replay (`subscribe` with `since`) reads the log after the connection's subscription to
//! the live feed exists: every event is either in the log read (seq ≤ the floor) or still
//! in the subscription (seq > the floor); live events at or below the floor are dropped,
//! and a replay skips what this connection already delivered. So no gap and no duplicate.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use uuid::Uuid;
use warp::ws::{Message, WebSocket};

use super::events::{Topic, WireEvent};
use crate::session::{SessionError, SessionRegistry, SessionStatus};

/// Largest message a client may send; requests are a few dozen bytes.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Fanned-out events a connection may fall behind by before it is closed as lagging.
const FEED_CAPACITY: usize = 4096;
/// Stored events read per page of a replay.
const REPLAY_PAGE: usize = 500;
/// How long a replay waits for room in a client's queue before the client counts as slow.
const REPLAY_STALL: Duration = Duration::from_secs(10);
/// How long the close frame may take to go out before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Seqs a connection remembers having delivered, so a replay does not send them again.
const DELIVERED_MEMORY: usize = 10_000;

/// RFC 6455 close codes.
const GOING_AWAY: u16 = 1001;
const POLICY_VIOLATION: u16 = 1008;

/// What the WebSocket route needs; cloned into every connection.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    sessions: SessionRegistry,
    feed: broadcast::Sender<Arc<Item>>,
    clients: Arc<AtomicUsize>,
    queue: usize,
    closing: watch::Receiver<bool>,
}

/// What the fan-out hands each connection.
#[derive(Debug)]
enum Item {
    /// One event, already in its wire text.
    Event(Frame),
    /// The fan-out itself fell behind the bus: every connection missed events.
    Lagged,
}

#[derive(Debug)]
struct Frame {
    topic: Option<Topic>,
    session_id: Option<Uuid>,
    seq: Option<u64>,
    text: Arc<str>,
}

impl Live {
    /// Starts the fan-out from `sessions`' bus (it ends when `closing` turns true). Each
    /// client may have `queue` messages waiting. Needs a tokio runtime.
    pub(crate) fn start(
        sessions: SessionRegistry,
        queue: usize,
        closing: watch::Receiver<bool>,
    ) -> Live {
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        tokio::spawn(fan_out(
            sessions.bus().subscribe(),
            feed.clone(),
            closing.clone(),
        ));
        Live {
            sessions,
            feed,
            clients: Arc::new(AtomicUsize::new(0)),
            queue: queue.max(1),
            closing,
        }
    }

    /// Connections open now.
    pub(crate) fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// Maps each bus event to its wire text once, while anyone listens.
async fn fan_out(
    mut bus: broadcast::Receiver<Arc<crate::session::Published>>,
    feed: broadcast::Sender<Arc<Item>>,
    mut closing: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => return,
            received = bus.recv() => received,
        };
        let item = match received {
            Ok(published) => {
                if feed.receiver_count() == 0 {
                    continue;
                }
                let wire = WireEvent::of(&published);
                Item::Event(Frame {
                    topic: wire.topic(),
                    session_id: wire.session_id,
                    seq: wire.seq,
                    text: Arc::from(wire.message().to_string()),
                })
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "the websocket fan-out fell behind the event bus");
                Item::Lagged
            }
            Err(RecvError::Closed) => return,
        };
        // No connection is fine.
        let _ = feed.send(Arc::new(item));
    }
}

/// Serves one upgraded connection until the client leaves, is too slow, or the server
/// shuts down.
pub(crate) async fn serve(socket: WebSocket, live: Live) {
    let _counted = Counted::new(&live.clients);
    // Before anything is read from the log: see the module documentation.
    let mut feed = live.feed.subscribe();
    let (sink, mut stream) = socket.split();
    let (out, queue) = mpsc::channel(live.queue);
    let (close, closed) = oneshot::channel();
    let writer = tokio::spawn(write(sink, queue, closed));
    let mut client = Client {
        live: &live,
        out,
        filter: Filter::default(),
        floor: 0,
        delivered: BTreeSet::new(),
    };
    match client.run(&mut stream, &mut feed).await {
        Ending::Close(code, reason) => {
            tracing::debug!(code, reason, "closing a websocket client");
            let _ = close.send((code, reason));
        }
        // The writer finishes what is queued, then closes normally.
        Ending::Gone => drop(close),
    }
    drop(client);
    if let Err(error) = writer.await {
        tracing::error!(%error, "a websocket writer failed");
    }
}

/// Counts a connection while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(clients: &Arc<AtomicUsize>) -> Counted {
        clients.fetch_add(1, Ordering::Relaxed);
        Counted(clients.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Drains the queue to the socket; on a close request, sends the close frame at once (what
/// is still queued is dropped: the client resumes with `since`).
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<String>,
    mut close: oneshot::Receiver<(u16, &'static str)>,
) {
    // `close` resolves with a reason, or with an error once the pump is done without one.
    let reason = loop {
        let text = tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            text = queue.recv() => match text {
                Some(text) => text,
                None => break None,
            },
        };
        tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            sent = sink.send(Message::text(text)) => {
                if sent.is_err() {
                    return;
                }
            }
        }
    };
    let frame = match reason {
        Some((code, reason)) => Message::close_with(code, reason),
        None => Message::close(),
    };
    // A client that reads nothing never takes the frame; it is dropped after the grace.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        sink.send(frame).await?;
        sink.close().await
    })
    .await;
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed or the socket failed: nothing more to say.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
}

impl Ending {
    const TOO_SLOW: Ending = Ending::Close(
        POLICY_VIOLATION,
        "too slow: outbound queue full; reconnect and subscribe with since",
    );
    const LAGGED: Ending = Ending::Close(
        POLICY_VIOLATION,
        "fell behind the event stream; reconnect and subscribe with since",
    );
    const SHUTTING_DOWN: Ending = Ending::Close(GOING_AWAY, "server shutting down");
}

/// Which events a connection gets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    topics: BTreeSet<Topic>,
    /// `None`: every session's events; otherwise only these sessions' (and server-wide
    /// events, which belong to no session).
    sessions: Option<BTreeSet<Uuid>>,
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
    fn wants(&self, topic: Option<Topic>, session: Option<Uuid>) -> bool {
        let topic_ok = topic.is_some_and(|topic| self.topics.contains(&topic));
        let session_ok = match (&self.sessions, session) {
            (None, _) | (_, None) => true,
            (Some(only), Some(id)) => only.contains(&id),
        };
        topic_ok && session_ok
    }

    fn describe(&self) -> Value {
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
enum Request {
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
fn parse(text: &str) -> Result<Request, String> {
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

/// What woke a connection's pump.
enum Next {
    Closing,
    Message(Option<Result<Message, warp::Error>>),
    Item(Result<Arc<Item>, RecvError>),
}

/// One connection's state, owned by its pump.
struct Client<'a> {
    live: &'a Live,
    out: mpsc::Sender<String>,
    filter: Filter,
    /// Live events at or below this seq were covered by a replay.
    floor: u64,
    /// The last [`DELIVERED_MEMORY`] seqs sent, so a replay does not send them twice.
    delivered: BTreeSet<u64>,
}

impl Client<'_> {
    async fn run(
        &mut self,
        stream: &mut futures::stream::SplitStream<WebSocket>,
        feed: &mut broadcast::Receiver<Arc<Item>>,
    ) -> Ending {
        if let Err(ending) = self.greet().await {
            return ending;
        }
        let mut closing = self.live.closing.clone();
        loop {
            // Handled outside the select, which must not hold the closing flag's guard
            // across the handlers' awaits.
            let next = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => Next::Closing,
                message = stream.next() => Next::Message(message),
                item = feed.recv() => Next::Item(item),
            };
            let step = match next {
                Next::Closing => Err(Ending::SHUTTING_DOWN),
                Next::Message(Some(Ok(message))) => self.on_message(&message).await,
                Next::Message(Some(Err(_)) | None) => Err(Ending::Gone),
                Next::Item(Ok(item)) => self.forward(&item),
                Next::Item(Err(RecvError::Lagged(_))) => Err(Ending::LAGGED),
                Next::Item(Err(RecvError::Closed)) => Err(Ending::SHUTTING_DOWN),
            };
            if let Err(ending) = step {
                return ending;
            }
        }
    }

    async fn greet(&mut self) -> Result<(), Ending> {
        let sessions = self.live.sessions.list().await.unwrap_or_default();
        let active = sessions
            .iter()
            // As `/analytics` counts them: sessions whose agents are up or coming up.
            .filter(|record| {
                matches!(
                    record.status,
                    SessionStatus::Initializing | SessionStatus::Active | SessionStatus::Degraded
                )
            })
            .count();
        self.push(json!({
            "type": "connected",
            "timestamp": now(),
            "session_count": sessions.len(),
            "active_sessions": active,
            "topics": self.filter.describe()["topics"],
            "last_seq": self.live.sessions.bus().last_seq(),
        }))
    }

    async fn on_message(&mut self, message: &Message) -> Result<(), Ending> {
        if message.is_close() {
            return Err(Ending::Gone);
        }
        if message.is_ping() || message.is_pong() {
            // Answered by the protocol layer.
            return Ok(());
        }
        let Ok(text) = message.to_str() else {
            return self.error("binary messages are not understood; send JSON text");
        };
        match parse(text) {
            Ok(request) => self.handle(request).await,
            Err(message) => self.error(&message),
        }
    }

    async fn handle(&mut self, request: Request) -> Result<(), Ending> {
        match request {
            Request::Ping => self.push(json!({"type": "pong", "timestamp": now()})),
            Request::SubscribeSession(id) => {
                let view = match self.live.sessions.get(id).await {
                    Ok(view) => view,
                    Err(SessionError::NotFound(_)) => {
                        return self.error(&format!("unknown session {id}"));
                    }
                    Err(error) => {
                        tracing::warn!(session = %id, %error, "subscribe_session");
                        return self.error("the session cannot be read now");
                    }
                };
                if let Some(only) = &mut self.filter.sessions {
                    only.insert(id);
                }
                self.push(json!({
                    "type": "session_status",
                    "timestamp": now(),
                    "session_id": id.to_string(),
                    "data": serde_json::to_value(super::dto::session::SessionObject::new(
                        &view.record,
                        &view.agents,
                        None,
                    ))
                    .unwrap_or(Value::Null),
                }))
            }
            Request::Subscribe {
                topics,
                session,
                since,
            } => {
                if let Some(topics) = topics {
                    self.filter.topics.extend(topics);
                }
                if let Some(id) = session {
                    self.filter
                        .sessions
                        .get_or_insert_with(BTreeSet::new)
                        .insert(id);
                }
                let replayed = match since {
                    Some(since) => Some(self.replay(since).await?),
                    None => None,
                };
                let mut reply = self.filter.describe();
                reply["type"] = "subscribed".into();
                reply["timestamp"] = now().into();
                reply["replayed"] = replayed.into();
                reply["last_seq"] = self.floor.max(self.live.sessions.bus().last_seq()).into();
                self.push(reply)
            }
            Request::Unsubscribe { topics, session } => {
                for topic in topics.into_iter().flatten() {
                    self.filter.topics.remove(&topic);
                }
                if let (Some(id), Some(only)) = (session, &mut self.filter.sessions) {
                    only.remove(&id);
                }
                let mut reply = self.filter.describe();
                reply["type"] = "unsubscribed".into();
                reply["timestamp"] = now().into();
                self.push(reply)
            }
        }
    }

    /// Sends the stored events after `since` that the filter selects and this connection
    /// has not delivered, oldest first, then raises the floor past them. Returns how many.
    async fn replay(&mut self, since: u64) -> Result<usize, Ending> {
        let bus = self.live.sessions.bus();
        // Everything up to here is in the log once the first read returns.
        let target = bus.last_seq();
        let mut after = since;
        // The highest seq the pages covered; not `since`, which is the client's word.
        let mut covered = 0;
        let mut sent = 0;
        loop {
            // Every session's: the filter also passes server-wide events, which belong to
            // none, so a read by session would miss them.
            let page = match bus.read(after, None, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "replaying the event log");
                    self.error("the event log cannot be read now")?;
                    return Ok(sent);
                }
            };
            let full = page.len() == REPLAY_PAGE;
            for stored in page {
                let wire = WireEvent::from_stored(stored);
                let Some(seq) = wire.seq else { continue };
                after = after.max(seq);
                covered = covered.max(seq);
                if !self.filter.wants(wire.topic(), wire.session_id)
                    || self.delivered.contains(&seq)
                {
                    continue;
                }
                self.push_waiting(wire.message().to_string()).await?;
                self.remember(seq);
                sent += 1;
            }
            if !full {
                break;
            }
        }
        self.floor = self.floor.max(covered).max(target);
        Ok(sent)
    }

    fn forward(&mut self, item: &Item) -> Result<(), Ending> {
        let frame = match item {
            Item::Event(frame) => frame,
            Item::Lagged => return Err(Ending::LAGGED),
        };
        if frame.seq.is_some_and(|seq| seq <= self.floor)
            || !self.filter.wants(frame.topic, frame.session_id)
        {
            return Ok(());
        }
        self.push_text(frame.text.to_string())?;
        if let Some(seq) = frame.seq {
            self.remember(seq);
        }
        Ok(())
    }

    fn remember(&mut self, seq: u64) {
        self.delivered.insert(seq);
        if self.delivered.len() > DELIVERED_MEMORY {
            self.delivered.pop_first();
        }
    }

    fn error(&mut self, message: &str) -> Result<(), Ending> {
        self.push(json!({"type": "error", "timestamp": now(), "message": message}))
    }

    fn push(&mut self, message: Value) -> Result<(), Ending> {
        self.push_text(message.to_string())
    }

    /// Queues without waiting: a full queue means the client is too slow.
    fn push_text(&mut self, text: String) -> Result<(), Ending> {
        self.out.try_send(text).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Ending::TOO_SLOW,
            mpsc::error::TrySendError::Closed(_) => Ending::Gone,
        })
    }

    /// Queues a replayed event, waiting (a bounded time) for room: a replay is as fast as
    /// the client reads, and only its own live events wait meanwhile.
    async fn push_waiting(&mut self, text: String) -> Result<(), Ending> {
        match tokio::time::timeout(REPLAY_STALL, self.out.send(text)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Ending::Gone),
            Err(_) => Err(Ending::TOO_SLOW),
        }
    }
}

fn now() -> f64 {
    super::dto::session::seconds(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_bad_ones_are_explained() {
        let id = Uuid::from_u128(5);
        assert_eq!(parse(r#"{"type":"ping"}"#), Ok(Request::Ping));
        assert_eq!(
            parse(&format!(
                r#"{{"type":"subscribe_session","session_id":"{id}"}}"#
            )),
            Ok(Request::SubscribeSession(id))
        );
        assert_eq!(
            parse(&format!(
                r#"{{"type":"subscribe","topics":["logs","agents"],"session_id":"{id}","since":12}}"#
            )),
            Ok(Request::Subscribe {
                topics: Some(vec![Topic::Logs, Topic::Agents]),
                session: Some(id),
                since: Some(12),
            })
        );
        assert_eq!(
            parse(r#"{"type":"unsubscribe","topics":["alerts"]}"#),
            Ok(Request::Unsubscribe {
                topics: Some(vec![Topic::Alerts]),
                session: None,
            })
        );
        for (text, needle) in [
            ("not json", "invalid JSON"),
            ("[1]", "`type`"),
            (r#"{"kind":"ping"}"#, "`type`"),
            (r#"{"type":"dance"}"#, "unknown message type"),
            (
                r#"{"type":"subscribe","topics":["weather"]}"#,
                "unknown topic \"weather\"",
            ),
            (r#"{"type":"subscribe","topics":"logs"}"#, "list of topics"),
            (r#"{"type":"subscribe","since":-1}"#, "`since`"),
            (r#"{"type":"subscribe","since":"3"}"#, "`since`"),
            (
                r#"{"type":"subscribe_session"}"#,
                "`session_id` is required",
            ),
            (
                r#"{"type":"subscribe_session","session_id":"x"}"#,
                "not a session id",
            ),
            (
                r#"{"type":"subscribe_session","session_id":7}"#,
                "must be a string",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn the_filter_selects_by_topic_and_session() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let mut filter = Filter::default();
        assert!(filter.wants(Some(Topic::Sessions), Some(a)));
        assert!(filter.wants(Some(Topic::Alerts), None));
        assert!(!filter.wants(Some(Topic::Logs), Some(a)));
        assert!(!filter.wants(None, Some(a)), "unknown types are never sent");
        filter.sessions = Some([a].into());
        assert!(filter.wants(Some(Topic::Agents), Some(a)));
        assert!(!filter.wants(Some(Topic::Agents), Some(b)));
        assert!(
            filter.wants(Some(Topic::Alerts), None),
            "server-wide events pass"
        );
        assert_eq!(
            filter.describe(),
            json!({"topics": ["sessions", "agents", "alerts"], "session_ids": [a.to_string()]})
        );
    }
}
