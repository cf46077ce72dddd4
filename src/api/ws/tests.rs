//! `/ws/sessions` in process: the protocol parser, queue bounds, close codes, replay and the writer.

use futures::Sink;

use super::protocol::*;
use super::writer::*;
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
