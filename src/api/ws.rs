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

mod protocol;
mod writer;

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::SplitStream;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;
use warp::ws::{Message, WebSocket};

use super::events::{Topic, WireEvent};
use crate::config::EventSettings;
use crate::session::{SessionError, SessionRegistry, SessionStatus};

use protocol::{parse, Filter, Request};
use writer::{write, Counted, Ending, Outbound};

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
    /// Turns true when the server begins to stop: every long-lived connection closes.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.clone()
    }

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
mod tests;
