//! One connection, served by hyper with what warp's own loop lacks:
//! - deadlines: from the first byte of a request head, `server.header_read_timeout_ms` to
//!   finish it; between requests, `server.idle_timeout_ms` without a byte read or written;
//!   none while a request is being handled (routes bound their own work, and body reads are
//!   bounded by `server.body_read_timeout_ms`), and none after a WebSocket upgrade — the
//!   socket then belongs to the WebSocket, which is long-lived by design. A connection past
//!   its deadline is closed without an answer;
//! - what hyper's parsed request hides: the request head as it came off the wire (to refuse
//!   Content-Length beside Transfer-Encoding, and heads over `errors::MAX_HEAD_BYTES`), and
//!   whether an HTTP/1.1 request had a `Host` line — attached as [`api::Wire`] for the
//!   api's guards to judge;
//! - hyper's own refusals (the bare 400, 414 and 431 it writes for requests it cannot parse)
//!   replaced, as they are written, by the same status with our JSON envelope.
//!
//! The socket holds the connection's [`Slot`] under the caps until it is closed.

use std::convert::Infallible;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HOST;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::limits::Slot;
use crate::api::{self, Head, Wire};

/// hyper's limit on header lines (its default; more gets its 431, replaced by ours), and
/// the bytes of a request head kept to check it (a longer head is refused 431): the api
/// names both in its 431.
use crate::api::{MAX_HEADER_LINES, MAX_HEAD_BYTES};
/// `u64` offsets from the connection's start mean "none" with this.
const NONE: u64 = u64::MAX;

/// The deadlines of every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
}

/// The hyper connection builder every connection uses: HTTP/1.1 and HTTP/2 (prior
/// knowledge), as warp served them. hyper's own header timeout is off: it would also run
/// between requests, where `server.idle_timeout_ms` applies; [`watchdog`] keeps both.
pub(crate) fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .header_read_timeout(None)
        .max_headers(MAX_HEADER_LINES);
    builder
}

/// What every connection of one server is served with.
#[derive(Clone)]
pub(crate) struct Shared<S> {
    /// `warp::service(api::routes(..))`.
    pub(crate) routes: S,
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) timeouts: Timeouts,
    /// Turns true when the server begins to shut down.
    pub(crate) stop: watch::Receiver<bool>,
    /// Held by every connection's task: the server's drain waits until all are dropped.
    pub(crate) running: mpsc::Sender<()>,
}

/// Serves one accepted connection until it ends, hits a deadline, or — after `stop` turned
/// true — finishes the request it is in (hyper's graceful shutdown: an idle connection
/// closes at once, one in a request answers it and closes).
pub(crate) async fn serve<S>(stream: TcpStream, peer: SocketAddr, slot: Slot, shared: Shared<S>)
where
    S: tower_service::Service<
            Request<Incoming>,
            Response = warp::reply::Response,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let Shared {
        routes,
        builder,
        timeouts,
        mut stop,
        running: _running,
    } = shared;
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched::new(stream, Arc::clone(&state), slot));
    let service = Tracked {
        routes,
        state: Arc::clone(&state),
        peer,
    };
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let deadline = watchdog(&state, timeouts);
    tokio::pin!(deadline);
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow_and_update() {
            stopping = true;
            connection.as_mut().graceful_shutdown();
        }
        tokio::select! {
            result = connection.as_mut() => {
                // Closed, or upgraded: the socket now belongs to the WebSocket.
                state.detach();
                if let Err(error) = result {
                    // A client's doing (a reset, a malformed request): any client can
                    // multiply these, so they are no warnings.
                    tracing::debug!(%peer, %error, "connection ended with an error");
                }
                return;
            }
            () = &mut deadline => {
                tracing::debug!(%peer, "connection closed at its deadline");
                return;
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Resolves when the connection is past its deadline (see the module's documentation). It
/// re-reads the state at least every quarter of the shorter timeout instead of being woken
/// by every change: waking it twice per request cost more than the request's own routing.
/// A deadline is therefore met at most a quarter of a timeout late, never early.
async fn watchdog(state: &ConnState, timeouts: Timeouts) {
    let tick = timeouts.header_read.min(timeouts.idle) / 4;
    loop {
        let now = Instant::now();
        let wake = match state.deadline(timeouts) {
            Some(deadline) if now >= deadline => return,
            Some(deadline) => deadline.min(now + tick),
            None => now + tick,
        };
        tokio::time::sleep_until(wake).await;
    }
}

/// What the socket wrapper, the service wrapper and the watchdog share. Times are
/// milliseconds since `started`.
#[derive(Debug)]
struct ConnState {
    started: Instant,
    /// The last byte read or written.
    last_activity: AtomicU64,
    /// The first byte of the request head being read, or [`NONE`].
    head_started: AtomicU64,
    /// Requests handed to the routes and not answered yet.
    in_flight: AtomicUsize,
    /// The bytes read since the last request was handed over, up to [`MAX_HEAD_BYTES`].
    head: Mutex<Vec<u8>>,
    /// HTTP is over on this socket (an upgrade handed it to a WebSocket): its bytes are no
    /// request heads.
    detached: AtomicBool,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            started: Instant::now(),
            last_activity: AtomicU64::new(0),
            head_started: AtomicU64::new(NONE),
            in_flight: AtomicUsize::new(0),
            head: Mutex::new(Vec::new()),
            detached: AtomicBool::new(false),
        }
    }

    /// Stops watching the socket's bytes and frees what was kept of them.
    fn detach(&self) {
        self.detached.store(true, Ordering::Release);
        *self.head.lock().unwrap_or_else(PoisonError::into_inner) = Vec::new();
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, offset: u64) -> Instant {
        self.started + Duration::from_millis(offset)
    }

    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_started.load(Ordering::Acquire) {
            NONE => Some(self.at(self.last_activity.load(Ordering::Acquire)) + timeouts.idle),
            started => Some(self.at(started) + timeouts.header_read),
        }
    }

    fn wrote(&self) {
        self.last_activity.store(self.now(), Ordering::Release);
    }

    /// Bytes arrived. Between requests they begin a request head: its deadline starts, and
    /// they are kept to be checked when hyper hands the request over.
    fn read(&self, bytes: &[u8]) {
        if self.detached.load(Ordering::Acquire) {
            return;
        }
        let now = self.now();
        self.last_activity.store(now, Ordering::Release);
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        // Only the first byte of a head starts its deadline.
        let _ = self
            .head_started
            .compare_exchange(NONE, now, Ordering::AcqRel, Ordering::Acquire);
        let mut head = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let room = MAX_HEAD_BYTES.saturating_sub(head.len());
        head.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// hyper hands a request over: the head is complete; what was read of it is judged.
    fn request_started(&self) -> Head {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
        let mut head = self.head.lock().unwrap_or_else(PoisonError::into_inner);
        let verdict = judge_head(&head);
        head.clear();
        verdict
    }

    fn request_finished(&self) {
        self.last_activity.store(self.now(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether a head read off the wire carries both framing headers, or is too large to tell.
fn judge_head(bytes: &[u8]) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADER_LINES];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {
            let has = |name: &str| {
                request
                    .headers
                    .iter()
                    .any(|header| header.name.eq_ignore_ascii_case(name))
            };
            Head::Read {
                length_and_chunked: has("content-length") && has("transfer-encoding"),
            }
        }
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD_BYTES => Head::TooLarge,
        // The bytes were not this request's head alone (it followed another in one read,
        // or the end of a body nobody read), or not HTTP/1.
        _ => Head::Unseen,
    }
}

/// The routes as hyper calls them: each request gets its [`Wire`], and counts as in flight
/// until its answer is ready (or it is dropped).
struct Tracked<S> {
    routes: S,
    state: Arc<ConnState>,
    peer: SocketAddr,
}

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: tower_service::Service<Request<Incoming>, Error = Infallible> + Clone,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = InFlight<S::Future>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let head = self.state.request_started();
        let wire = Wire {
            peer: self.peer,
            http11_without_host: request.version() == Version::HTTP_11
                && !request.headers().contains_key(HOST),
            head,
        };
        request.extensions_mut().insert(wire);
        InFlight {
            answer: self.routes.clone().call(request),
            state: Some(Arc::clone(&self.state)),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer being prepared; the request stops counting as in flight when it
    /// is ready or dropped.
    struct InFlight<F> {
        #[pin]
        answer: F,
        state: Option<Arc<ConnState>>,
    }

    impl<F> PinnedDrop for InFlight<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(state) = this.project().state.take() {
                state.request_finished();
            }
        }
    }
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = ready!(this.answer.poll(cx));
        if let Some(state) = this.state.take() {
            state.request_finished();
        }
        Poll::Ready(answer)
    }
}

/// The socket as hyper sees it: reads and writes update the connection's state, and a
/// refusal hyper writes itself is replaced by ours. Holds the connection's slot.
struct Watched {
    stream: TcpStream,
    state: Arc<ConnState>,
    _slot: Slot,
    /// Our refusal, being written in place of hyper's, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl Watched {
    fn new(stream: TcpStream, state: Arc<ConnState>, slot: Slot) -> Watched {
        Watched {
            stream,
            state,
            _slot: slot,
            replacement: None,
        }
    }

    /// Writes our refusal in place of `buf`, hyper's; reports `buf` written once it is.
    fn poll_replace(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                return Poll::Ready(Ok(buf.len()));
            }
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            *written += n;
            self.state.wrote();
        }
        Poll::Ready(Ok(buf.len()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.stream).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        if !read.is_empty() {
            this.state.read(read);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacement.is_none() {
            if let Some(ours) = replacement_for(buf) {
                this.replacement = Some((ours, 0));
            }
        }
        if this.replacement.is_some() {
            return this.poll_replace(cx, buf);
        }
        let n = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        if n > 0 {
            this.state.wrote();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper writes a refusal as one buffer: its head, and no body.
        let mut non_empty = bufs.iter().filter(|buf| !buf.is_empty());
        if let (Some(only), None) = (non_empty.next(), non_empty.next()) {
            return self.poll_write(cx, only);
        }
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        if n > 0 {
            this.state.wrote();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Our envelope for `buf` when `buf` is a refusal hyper wrote itself: a whole head with
/// status 400, 414 or 431, `content-length: 0` and nothing after it. Our own answers with
/// those statuses always carry the envelope, so they never match.
fn replacement_for(buf: &[u8]) -> Option<Vec<u8>> {
    let status = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?
        .get(..3)?;
    // Every answer passes here: anything but hyper's three refusals is let through before
    // its bytes are scanned.
    if !matches!(status, b"400" | b"414" | b"431") {
        return None;
    }
    let status = std::str::from_utf8(status).ok()?.parse().ok()?;
    let head_end = buf.windows(4).position(|window| window == b"\r\n\r\n")?;
    if head_end + 4 != buf.len() {
        return None;
    }
    let empty = buf
        .split(|&byte| byte == b'\n')
        .any(|line| line.eq_ignore_ascii_case(b"content-length: 0\r"));
    if !empty {
        return None;
    }
    api::parse_refusal(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_bare_refusals_are_replaced() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\ndate: Mon, 07 Dec 2026 10:35:33 GMT\r\n\r\n";
        let ours = replacement_for(bare).expect("replaced");
        assert!(ours.starts_with(b"HTTP/1.1 431 "));
        assert!(String::from_utf8_lossy(&ours).contains("request_header_fields_too_large"));
        // With a body, or another status, or only part of a head: left alone.
        let mut with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n".to_vec();
        assert!(replacement_for(&with_body).is_none());
        with_body.extend_from_slice(b"{}");
        assert!(replacement_for(&with_body).is_none());
        assert!(replacement_for(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
        assert!(
            replacement_for(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1")
                .is_none()
        );
    }

    #[test]
    fn a_head_is_judged_by_its_framing_headers() {
        let both = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
                     Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            judge_head(both),
            Head::Read {
                length_and_chunked: true
            }
        );
        assert_eq!(
            judge_head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Head::Read {
                length_and_chunked: false
            }
        );
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(judge_head(&long), Head::TooLarge);
        assert_eq!(judge_head(b"\x00garbage"), Head::Unseen);
    }

    #[tokio::test]
    async fn the_deadline_follows_the_connection_s_phase() {
        let timeouts = Timeouts {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        let state = ConnState::new();
        let idle = state.deadline(timeouts).unwrap();
        assert_eq!(idle, state.started + timeouts.idle);
        state.read(b"GET / HT");
        let head = state.deadline(timeouts).unwrap();
        let started = state.head_started.load(Ordering::Acquire);
        assert_eq!(head, state.at(started) + timeouts.header_read);
        assert!(head < idle);
        // More bytes of the same head do not move it.
        state.read(b"TP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(state.deadline(timeouts), Some(head));
        assert_eq!(
            state.request_started(),
            Head::Read {
                length_and_chunked: false
            }
        );
        assert_eq!(state.deadline(timeouts), None);
        // Body bytes read while the request is handled start no head.
        state.read(b"body");
        assert_eq!(state.deadline(timeouts), None);
        state.request_finished();
        let last = state.last_activity.load(Ordering::Acquire);
        assert_eq!(
            state.deadline(timeouts),
            Some(state.at(last) + timeouts.idle)
        );
        // After an upgrade, WebSocket frames are kept as nothing.
        state.detach();
        state.read(b"\x81\x05hello");
        assert!(state.head.lock().unwrap().is_empty());
        assert_eq!(state.head_started.load(Ordering::Acquire), NONE);
    }
}
