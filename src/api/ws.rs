//! `/ws/sessions`: live events, replay with `since`, and the few requests a client may send.
//!
//! One task ([`Live::start`]) subscribes to the event bus and turns each event into its
//! wire frame once, for every client: a [`Message`] holds its payload in reference-counted
//! `Bytes`, so every connection's queue holds the same frame, not a copy. Each connection
//! then has:
//!
//! - a *pump* (the upgrade's own task) that reads the client's requests and the fanned-out
//!   events, filters them (topics, sessions) and puts what the client gets into its queue,
//!   bounded in messages (`events.websocket_queue`) and in bytes
//!   (`events.ws_max_queue_bytes`, the message being written included) — with a `try` for
//!   live events, so a client that cannot keep up is closed (1008, with the `since` to resume
//!   from) instead of holding anyone back or holding memory;
//! - a *writer* task that drains the queue to the socket and sends the close frame, with a
//!   deadline: a client that reads nothing never takes it, and is dropped.
//!
//! Replay (`subscribe` with `since`) reads the log after the connection's subscription to
//! the live feed exists: every event is either in the log read (seq ≤ the floor) or still
//! in the subscription (seq > the floor); live events at or below the floor are dropped,
//! and a replay skips what this connection already delivered. So no gap and no duplicate.
//! It reads the log in pages bounded in events and bytes, each page queued before the next
//! is read, and waits for room in the queue (a bounded time); live events that arrive
//! meanwhile are held back, up to as many bytes as the queue may hold.

use std::collections::{BTreeSet, VecDeque};
use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitStream;
use futures::{Sink, SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tungstenite::error::ProtocolError;
use uuid::Uuid;
use warp::ws::{Message, WebSocket};

use super::events::{Topic, WireEvent};
use crate::config::EventSettings;
use crate::session::{SessionError, SessionRegistry, SessionStatus};

/// Largest message a client may send; requests are a few dozen bytes.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Fanned-out events a connection may fall behind by before it is closed as lagging.
const FEED_CAPACITY: usize = 4096;
/// Stored events read per page of a replay, at most.
const REPLAY_PAGE: usize = 500;
/// Payload bytes after which a replay page ends: a page of large events is a few of them,
/// not [`REPLAY_PAGE`].
const REPLAY_PAGE_BYTES: usize = 1024 * 1024;
/// How long a replay waits for room in a client's queue before the client counts as slow.
const REPLAY_STALL: Duration = Duration::from_secs(10);
/// How long the close frame may take to go out before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Seqs a connection remembers having delivered, so a replay does not send them again.
const DELIVERED_MEMORY: usize = 10_000;

/// RFC 6455 close codes.
const GOING_AWAY: u16 = 1001;
const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
const MESSAGE_TOO_BIG: u16 = 1009;

/// How much a connection may have waiting to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBounds {
    /// Messages (`events.websocket_queue`).
    pub(crate) messages: usize,
    /// Bytes of their payloads (`events.ws_max_queue_bytes`).
    pub(crate) bytes: usize,
}

impl From<&EventSettings> for QueueBounds {
    fn from(events: &EventSettings) -> QueueBounds {
        QueueBounds {
            messages: events.websocket_queue,
            bytes: events.ws_max_queue_bytes,
        }
    }
}

impl QueueBounds {
    /// The room `message` takes: its payload, but never more than the whole bound, so an
    /// event larger than the bound still goes out alone to a client that keeps up.
    fn room(&self, message: &Message) -> u32 {
        let bytes = message.as_bytes().len().min(self.bytes);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

/// What the WebSocket route needs; cloned into every connection.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    sessions: SessionRegistry,
    feed: broadcast::Sender<Arc<Item>>,
    clients: Arc<AtomicUsize>,
    bounds: QueueBounds,
    closing: watch::Receiver<bool>,
}

/// What the fan-out hands each connection.
#[derive(Debug)]
enum Item {
    /// One event, already in its wire frame.
    Event(Frame),
    /// The fan-out itself fell behind the bus: every connection missed events.
    Lagged,
}

#[derive(Debug)]
struct Frame {
    topic: Option<Topic>,
    session_id: Option<Uuid>,
    seq: Option<u64>,
    /// Shared by every connection that sends it: cloning it counts a reference.
    message: Message,
}

impl Live {
    /// Starts the fan-out from `sessions`' bus (it ends when `closing` turns true). Each
    /// client may have `bounds` waiting. Needs a tokio runtime.
    pub(crate) fn start(
        sessions: SessionRegistry,
        bounds: QueueBounds,
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
            bounds: QueueBounds {
                messages: bounds.messages.max(1),
                bytes: bounds.bytes.max(1),
            },
            closing,
        }
    }

    /// Connections open now.
    pub(crate) fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }
}

/// Maps each bus event to its wire frame once, while anyone listens.
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
                    message: Message::text(wire.message().to_string()),
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

/// Serves one upgraded connection until the client leaves, is too slow, breaks the
/// protocol, or the server shuts down.
pub(crate) async fn serve(socket: WebSocket, live: Live) {
    let _counted = Counted::new(&live.clients);
    // Before anything is read from the log: see the module documentation.
    let feed = live.feed.subscribe();
    let (sink, mut stream) = socket.split();
    let (out, queue) = mpsc::channel(live.bounds.messages);
    let (close, closed) = oneshot::channel();
    let writer = tokio::spawn(write(sink, queue, closed));
    let mut client = Client {
        live: &live,
        out,
        room: Arc::new(Semaphore::new(live.bounds.bytes)),
        feed,
        held: VecDeque::new(),
        held_bytes: 0,
        filter: Filter::default(),
        floor: 0,
        delivered: BTreeSet::new(),
    };
    let ending = client.run(&mut stream).await;
    // The reason goes first: once the queue is closed (`client` dropped), a writer that has
    // written everything closes normally.
    match ending.closing() {
        Some(closing) => {
            tracing::debug!(?closing, "closing a websocket client");
            let _ = close.send(closing);
        }
        // The writer finishes what is queued, then closes normally.
        None => drop(close),
    }
    drop(client);
    if ending != Ending::Gone {
        // The closing handshake: the client answers the close frame; reading on lets its
        // answer (and anything it was still sending) arrive instead of meeting a reset.
        linger(&mut stream).await;
    }
    if let Err(error) = writer.await {
        tracing::error!(%error, "a websocket writer failed");
    }
}

/// Reads and discards what the client still sends, until it closes, the stream fails, or
/// [`CLOSE_GRACE`] has passed.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
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

/// One message waiting for the writer.
#[derive(Debug)]
struct Outbound {
    /// `None` for a mark that only moves [`Outbound::resume`].
    message: Option<Message>,
    /// Where the client resumes (`since`) once this went out, if it moves that point.
    resume: Option<u64>,
    /// Its share of the byte bound, given back once it is written.
    _room: OwnedSemaphorePermit,
}

/// What the pump asks the writer to close with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// This code and reason.
    Plain(u16, &'static str),
    /// 1008 with this reason and the `since` the client resumes from.
    Resume(&'static str),
}

/// Drains the queue to `sink`; on a close request, sends the close frame at once (what is
/// still queued is dropped: the client resumes with `since`), giving it [`CLOSE_GRACE`].
async fn write<S>(
    mut sink: S,
    mut queue: mpsc::Receiver<Outbound>,
    mut close: oneshot::Receiver<Closing>,
) where
    S: Sink<Message> + Unpin,
{
    // The last resume point written: the greeting carries one, so a closed client always
    // gets a `since`.
    let mut resume: Option<u64> = None;
    // `close` resolves with a reason, or with an error once the pump is done without one.
    let reason = loop {
        let outbound = tokio::select! {
            biased;
            reason = &mut close => break reason.ok(),
            outbound = queue.recv() => match outbound {
                Some(outbound) => outbound,
                None => break None,
            },
        };
        if let Some(message) = outbound.message {
            tokio::select! {
                biased;
                reason = &mut close => break reason.ok(),
                sent = sink.send(message) => {
                    if sent.is_err() {
                        return;
                    }
                }
            }
        }
        resume = outbound.resume.or(resume);
    };
    let frame = match reason {
        Some(Closing::Plain(code, reason)) => Message::close_with(code, reason),
        Some(Closing::Resume(reason)) => {
            Message::close_with(POLICY_VIOLATION, resume_hint(reason, resume))
        }
        None => Message::close(),
    };
    // A client that reads nothing never takes the frame; it is dropped after the grace.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        sink.send(frame).await?;
        sink.close().await
    })
    .await;
}

/// `reason` and where to resume: RFC 6455 allows 123 bytes of reason, which this stays
/// well under.
fn resume_hint(reason: &str, resume: Option<u64>) -> String {
    match resume {
        Some(seq) => format!("{reason}; reconnect and subscribe with since={seq}"),
        None => format!("{reason}; reconnect and subscribe with since"),
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// The client closed or the socket failed: nothing more to say.
    Gone,
    /// The server closes with this code and reason.
    Close(u16, &'static str),
    /// The server closes with 1008, this reason and the `since` to resume from.
    Resume(&'static str),
}

impl Ending {
    /// What the writer closes with; `None` when there is nothing to say.
    fn closing(self) -> Option<Closing> {
        match self {
            Ending::Gone => None,
            Ending::Close(code, reason) => Some(Closing::Plain(code, reason)),
            Ending::Resume(reason) => Some(Closing::Resume(reason)),
        }
    }

    const TOO_SLOW: Ending = Ending::Resume("too slow: outbound queue full");
    const LAGGED: Ending = Ending::Resume("fell behind the event stream");
    const SHUTTING_DOWN: Ending = Ending::Close(GOING_AWAY, "server shutting down");
    /// Names [`MAX_CLIENT_MESSAGE`] (a unit test keeps the two together).
    const TOO_BIG: Ending = Ending::Close(
        MESSAGE_TOO_BIG,
        "message too big: a client message may have 65536 bytes",
    );

    /// How a failed read of the client's messages ends the connection: with the code that
    /// says what the client did wrong, or quietly when it simply went away.
    fn of_read_error(error: &warp::Error) -> Ending {
        let cause = error
            .source()
            .and_then(|cause| cause.downcast_ref::<tungstenite::Error>());
        match cause {
            Some(tungstenite::Error::Capacity(_)) => Ending::TOO_BIG,
            Some(tungstenite::Error::Utf8(_)) => {
                Ending::Close(INVALID_PAYLOAD, "a text message is not valid UTF-8")
            }
            Some(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
                | ProtocolError::SendAfterClosing
                | ProtocolError::ReceivedAfterClosing,
            )) => Ending::Gone,
            Some(tungstenite::Error::Protocol(_)) => {
                Ending::Close(PROTOCOL_ERROR, "websocket protocol error")
            }
            _ => Ending::Gone,
        }
    }
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
    out: mpsc::Sender<Outbound>,
    /// The byte bound: a message takes its size in permits until the writer has written it.
    room: Arc<Semaphore>,
    feed: broadcast::Receiver<Arc<Item>>,
    /// Live events that arrived while a replay waited for room, in order, and their bytes.
    held: VecDeque<Arc<Item>>,
    held_bytes: usize,
    filter: Filter,
    /// Live events at or below this seq were covered by a replay.
    floor: u64,
    /// The last [`DELIVERED_MEMORY`] seqs sent, so a replay does not send them twice.
    delivered: BTreeSet<u64>,
}

impl Client<'_> {
    async fn run(&mut self, stream: &mut SplitStream<WebSocket>) -> Ending {
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
                item = self.feed.recv() => Next::Item(item),
            };
            let step = match next {
                Next::Closing => Err(Ending::SHUTTING_DOWN),
                Next::Message(Some(Ok(message))) => self.on_message(&message).await,
                Next::Message(Some(Err(error))) => Err(Ending::of_read_error(&error)),
                Next::Message(None) => Err(Ending::Gone),
                Next::Item(item) => received(item).and_then(|item| self.forward(&item)),
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
        let last_seq = self.live.sessions.bus().last_seq();
        let greeting = json!({
            "type": "connected",
            "timestamp": now(),
            "session_count": sessions.len(),
            "active_sessions": active,
            "topics": self.filter.describe()["topics"],
            "last_seq": last_seq,
        });
        // The live stream starts after `last_seq`: where a client closed before any event
        // resumes.
        self.try_queue(text(&greeting), Some(last_seq))
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
                if since.is_none() {
                    return self.push(reply);
                }
                // Everything selected up to the floor went out before this reply.
                self.queue_waiting(Some(text(&reply)), Some(self.floor))
                    .await?;
                self.release_held().await
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
        let bus = self.live.sessions.bus().clone();
        // Everything up to here is in the log once the first read returns.
        let target = bus.last_seq();
        // A client closed before the first replayed event went out resumes where it asked.
        self.queue_waiting(None, Some(since)).await?;
        let mut after = since;
        // The highest seq the pages covered; not `since`, which is the client's word.
        let mut covered = 0;
        let mut sent = 0;
        loop {
            // Every session's: the filter also passes server-wide events, which belong to
            // none, so a read by session would miss them.
            let page = match bus
                .read_within(after, None, REPLAY_PAGE, REPLAY_PAGE_BYTES)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "replaying the event log");
                    self.error("the event log cannot be read now")?;
                    return Ok(sent);
                }
            };
            if page.is_empty() {
                break;
            }
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
                let message = Message::text(wire.message().to_string());
                self.queue_waiting(Some(message), Some(seq)).await?;
                self.remember(seq);
                sent += 1;
            }
            // Past `target`, the subscription to the live feed has the rest.
            if after >= target {
                break;
            }
        }
        self.floor = self.floor.max(covered).max(target);
        Ok(sent)
    }

    fn forward(&mut self, item: &Item) -> Result<(), Ending> {
        let Some(frame) = self.selects(item)? else {
            return Ok(());
        };
        self.try_queue(frame.message.clone(), frame.seq)?;
        if let Some(seq) = frame.seq {
            self.remember(seq);
        }
        Ok(())
    }

    /// The frame of `item` if this connection sends it.
    fn selects<'i>(&self, item: &'i Item) -> Result<Option<&'i Frame>, Ending> {
        let frame = match item {
            Item::Event(frame) => frame,
            Item::Lagged => return Err(Ending::LAGGED),
        };
        let covered = frame.seq.is_some_and(|seq| seq <= self.floor);
        Ok((!covered && self.filter.wants(frame.topic, frame.session_id)).then_some(frame))
    }

    /// Sends the live events held back during a replay, in order, past the new floor.
    async fn release_held(&mut self) -> Result<(), Ending> {
        while let Some(item) = self.held.pop_front() {
            let Some(frame) = self.selects(&item)? else {
                continue;
            };
            let (message, seq) = (frame.message.clone(), frame.seq);
            let room = self.live.bounds.room(&message) as usize;
            self.held_bytes = self.held_bytes.saturating_sub(room);
            self.queue_waiting(Some(message), seq).await?;
            if let Some(seq) = seq {
                self.remember(seq);
            }
        }
        self.held_bytes = 0;
        Ok(())
    }

    /// Keeps a live event that arrived during a replay for after it. Held events have an
    /// allowance of their own, as large as the queue's: a replay keeps the queue full by
    /// design, so sharing it would close every client that sees a live event while it
    /// catches up. A client whose held events pass it is too slow.
    fn hold(&mut self, item: Result<Arc<Item>, RecvError>) -> Result<(), Ending> {
        let item = received(item)?;
        let Some(frame) = self.selects(&item)? else {
            return Ok(());
        };
        self.held_bytes += self.live.bounds.room(&frame.message) as usize;
        if self.held_bytes > self.live.bounds.bytes {
            return Err(Ending::TOO_SLOW);
        }
        self.held.push_back(item);
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

    /// Queues a reply that moves no resume point.
    fn push(&mut self, message: Value) -> Result<(), Ending> {
        self.try_queue(text(&message), None)
    }

    /// Queues without waiting: a queue over either bound means the client is too slow.
    fn try_queue(&mut self, message: Message, resume: Option<u64>) -> Result<(), Ending> {
        let room = self
            .room
            .clone()
            .try_acquire_many_owned(self.live.bounds.room(&message))
            .map_err(|_| Ending::TOO_SLOW)?;
        let outbound = Outbound {
            message: Some(message),
            resume,
            _room: room,
        };
        self.out.try_send(outbound).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => Ending::TOO_SLOW,
            mpsc::error::TrySendError::Closed(_) => Ending::Gone,
        })
    }

    /// Queues a replayed message (or, with `None`, only a resume point), waiting at most
    /// [`REPLAY_STALL`] for room: a replay is as fast as the client reads. Live events that
    /// arrive meanwhile are held back.
    async fn queue_waiting(
        &mut self,
        message: Option<Message>,
        resume: Option<u64>,
    ) -> Result<(), Ending> {
        let wanted = message.as_ref().map_or(0, |m| self.live.bounds.room(m));
        let deadline = Instant::now() + REPLAY_STALL;
        let (room, slot) = loop {
            let item = tokio::select! {
                biased;
                ready = reserve(self.room.clone(), self.out.clone(), wanted) => break ready?,
                item = self.feed.recv() => item,
                _ = tokio::time::sleep_until(deadline) => return Err(Ending::TOO_SLOW),
            };
            self.hold(item)?;
        };
        slot.send(Outbound {
            message,
            resume,
            _room: room,
        });
        Ok(())
    }
}

/// Room in the byte bound, then a place in the queue.
async fn reserve(
    room: Arc<Semaphore>,
    out: mpsc::Sender<Outbound>,
    wanted: u32,
) -> Result<(OwnedSemaphorePermit, mpsc::OwnedPermit<Outbound>), Ending> {
    // The semaphore is never closed.
    let room = room
        .acquire_many_owned(wanted)
        .await
        .map_err(|_| Ending::Gone)?;
    let slot = out.reserve_owned().await.map_err(|_| Ending::Gone)?;
    Ok((room, slot))
}

/// An item of the feed, or how a connection whose feed failed ends.
fn received(item: Result<Arc<Item>, RecvError>) -> Result<Arc<Item>, Ending> {
    match item {
        Ok(item) => Ok(item),
        Err(RecvError::Lagged(_)) => Err(Ending::LAGGED),
        Err(RecvError::Closed) => Err(Ending::SHUTTING_DOWN),
    }
}

/// A reply's frame.
fn text(message: &Value) -> Message {
    Message::text(message.to_string())
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

    /// A queued message taking one byte of `room`.
    fn queued(room: &Arc<Semaphore>, text: &str, resume: Option<u64>) -> Outbound {
        Outbound {
            message: Some(Message::text(text)),
            resume,
            _room: room.clone().try_acquire_many_owned(1).unwrap(),
        }
    }

    #[test]
    fn a_fanned_out_frame_is_shared_not_copied() {
        let frame = Message::text("x".repeat(1000));
        let queued = frame.clone();
        assert_eq!(frame.as_bytes().as_ptr(), queued.as_bytes().as_ptr());
    }

    #[test]
    fn the_1009_reason_names_the_limit() {
        let Ending::Close(code, reason) = Ending::TOO_BIG else {
            panic!("{:?}", Ending::TOO_BIG);
        };
        assert_eq!(code, 1009);
        assert!(reason.contains(&MAX_CLIENT_MESSAGE.to_string()), "{reason}");
    }

    #[test]
    fn a_message_takes_its_size_in_room_but_never_more_than_the_bound() {
        let bounds = QueueBounds {
            messages: 4,
            bytes: 100,
        };
        assert_eq!(bounds.room(&Message::text("x".repeat(40))), 40);
        assert_eq!(bounds.room(&Message::text("x".repeat(400))), 100);
    }

    #[tokio::test]
    async fn a_slow_client_is_closed_with_1008_and_the_since_of_the_last_event_written() {
        let (sink, mut socket) = futures::channel::mpsc::unbounded::<Message>();
        let room = Arc::new(Semaphore::new(10));
        let (out, queue) = mpsc::channel(8);
        let (close, closed) = oneshot::channel();
        let writer = tokio::spawn(write(sink, queue, closed));
        for (text, resume) in [("greeting", Some(4)), ("event", Some(7)), ("pong", None)] {
            out.send(queued(&room, text, resume)).await.unwrap();
        }
        for text in ["greeting", "event", "pong"] {
            assert_eq!(socket.next().await.unwrap().to_str(), Ok(text));
        }
        close.send(Ending::TOO_SLOW.closing().unwrap()).unwrap();
        let frame = socket.next().await.unwrap();
        let (code, reason) = frame.close_frame().expect("a close frame");
        assert_eq!(code, 1008);
        assert!(reason.starts_with("too slow"), "{reason}");
        assert!(reason.ends_with("subscribe with since=7"), "{reason}");
        assert!(reason.len() <= 123, "RFC 6455 allows 123 bytes: {reason}");
        writer.await.unwrap();
        assert_eq!(
            room.available_permits(),
            10,
            "written messages give their room back"
        );
    }

    /// A socket that takes `room` messages, then never another: a client that stopped
    /// reading.
    struct Stuck {
        taken: Arc<std::sync::Mutex<Vec<Message>>>,
        room: usize,
    }

    impl Sink<Message> for Stuck {
        type Error = std::convert::Infallible;

        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            if self.taken.lock().unwrap().len() < self.room {
                std::task::Poll::Ready(Ok(()))
            } else {
                std::task::Poll::Pending
            }
        }

        fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.taken.lock().unwrap().push(item);
            Ok(())
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_client_that_takes_nothing_is_dropped_after_the_close_grace() {
        let taken = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = Stuck {
            taken: taken.clone(),
            room: 1,
        };
        let room = Arc::new(Semaphore::new(10));
        let (out, queue) = mpsc::channel(8);
        let (close, closed) = oneshot::channel();
        let writer = tokio::spawn(write(sink, queue, closed));
        for text in ["first", "second", "third"] {
            out.send(queued(&room, text, Some(1))).await.unwrap();
        }
        // The first is written (its room is back); the writer now waits on the socket.
        while room.available_permits() < 8 {
            tokio::task::yield_now().await;
        }
        close.send(Ending::TOO_SLOW.closing().unwrap()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), writer)
            .await
            .expect("the writer never gave up on a client that reads nothing")
            .unwrap();
        let taken = taken.lock().unwrap();
        let texts: Vec<_> = taken.iter().map(|m| m.to_str()).collect();
        assert_eq!(texts, [Ok("first")], "nothing else got through");
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
