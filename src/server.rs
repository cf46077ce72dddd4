//! The running server: binds the listener, serves the API on it and shuts down gracefully.
//! Building and running are separate steps so the caller learns the bound address (port 0
//! picks one) before serving starts, and decides what ends the server (signals in `main`,
//! anything in tests).
//!
//! The accept loop is ours, not warp's, so that no client can starve the server: the
//! acceptor survives descriptor exhaustion (`accept`), connections beyond the caps are
//! refused at once (`limits`), and each connection has deadlines and our envelope for
//! hyper's own refusals (`conn`).

mod accept;
mod conn;
mod limits;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use self::accept::Acceptor;
use self::conn::Timeouts;
use self::limits::ConnectionLimits;

use crate::api::{self, ApiContext, ServiceState, Services};
use crate::claude::Claude;
use crate::config::{ServerSettings, Settings};
use crate::monitor::{Monitor, MonitorError};
use crate::session::{EventBus, SessionError, SessionRegistry};
use crate::storage::{Storage, StorageError};

/// How long requests still in flight at shutdown may take to finish before the server stops
/// waiting for them; a stuck client must not hold the process.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address is taken, not local, or not permitted.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from `server.bind` and `server.port`.
        addr: SocketAddr,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The OS did not report which address the listener got.
    #[error("cannot read the listening address")]
    LocalAddr(#[source] std::io::Error),
    /// The database could not be opened or migrated.
    #[error("cannot open the database")]
    Storage(#[source] StorageError),
    /// The event log could not be read.
    #[error("cannot open the event log")]
    Events(#[source] StorageError),
    /// The stored sessions could not be loaded.
    #[error("cannot restore the sessions")]
    Sessions(#[source] SessionError),
    /// The monitor could not start.
    #[error("cannot start the monitor")]
    Monitor(#[source] MonitorError),
    /// The stored Claude Code sessions could not be read.
    #[error("cannot restore the Claude Code sessions")]
    Claude(#[source] StorageError),
}

/// A server that is listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: ApiContext,
    /// The `[server]` settings the connections are served with.
    server: ServerSettings,
    services: Services,
    storage: Storage,
    bus: EventBus,
    sessions: SessionRegistry,
    monitor: Monitor,
    claude: Claude,
}

/// `settings` with the hooks our Claude agents report through (`--settings`), pointing at
/// `server_url`, where the server really listens: computed here because agents may not
/// import the `claude` module that knows the hooks.
fn with_agent_hooks(settings: &Settings, server_url: &str) -> Settings {
    let mut settings = settings.clone();
    settings.agents.claude.hook_settings = Some(crate::claude::install::agent_settings(server_url));
    settings
}

impl App {
    /// Opens everything the server needs and binds the listener, so that every start-up
    /// failure surfaces here, before anything is announced as listening.
    pub async fn build(settings: &Settings) -> Result<App, ServerError> {
        let services = Services::default();

        // Before binding: a database that cannot be opened stops start-up before anything
        // is announced as listening.
        let storage = Storage::open(&settings.db_path())
            .await
            .map_err(ServerError::Storage)?;
        services.set("storage", ServiceState::Running);

        let addr = SocketAddr::new(settings.server.bind, settings.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        // Before the sessions: restoring them publishes events, numbered after the log's.
        let retention = Duration::from_secs(u64::from(settings.events.retention_days) * 86_400);
        let bus = EventBus::open(
            storage.clone(),
            api::encode_event,
            retention,
            settings.events.backlog_max_bytes,
        )
        .await
        .map_err(ServerError::Events)?;
        // Before any agent starts: cgroups, watchdog, subreaper (see agent::orphans).
        crate::agent::contain(settings.agents.cgroups);
        // Restored sessions start their agents now, told where the server really listens;
        // the server listens while they do (each joins as its start ends).
        let sessions = SessionRegistry::start_restoring(
            Arc::new(with_agent_hooks(settings, &format!("http://{local_addr}"))),
            storage.clone(),
            format!("http://{local_addr}"),
            bus.clone(),
        )
        .await
        .map_err(ServerError::Sessions)?;
        services.set("sessions", ServiceState::Running);
        let monitor = Monitor::start(settings, storage.clone(), sessions.clone())
            .await
            .map_err(ServerError::Monitor)?;
        services.set("monitor", ServiceState::Running);
        let claude = Claude::start(settings, storage.clone(), sessions.clone(), monitor.clone())
            .await
            .map_err(ServerError::Claude)?;
        services.set("api", ServiceState::Running);
        let context = ApiContext::new(
            settings,
            local_addr,
            services.clone(),
            sessions.clone(),
            monitor.clone(),
            claude.clone(),
        );
        Ok(App {
            listener,
            local_addr,
            context,
            server: settings.server.clone(),
            services,
            storage,
            bus,
            sessions,
            monitor,
            claude,
        })
    }

    /// The monitor, for callers that register alert sinks or read samples without HTTP.
    pub fn monitor(&self) -> &Monitor {
        &self.monitor
    }

    /// The session registry, for callers that drive sessions without HTTP.
    pub fn sessions(&self) -> &SessionRegistry {
        &self.sessions
    }

    /// What the routes share (e.g. the WebSocket client count), for callers that watch a
    /// running server.
    pub fn context(&self) -> ApiContext {
        self.context.clone()
    }

    /// The address actually bound, with the port the OS chose when `server.port` is 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections, closes the
    /// WebSocket connections, lets requests in flight finish (for at most ten seconds, so a
    /// stuck client cannot hold the process), stops the sessions' agents, stores every
    /// event published so far, and closes the database after its last queued write.
    pub async fn run_until<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        // Each connection holds a clone; `recv` answers `None` once all are gone.
        let (running, mut all_done) = mpsc::channel::<()>(1);
        let serving = Serving {
            limits: ConnectionLimits::new(
                self.server.max_connections,
                self.server.max_connections_per_address,
            ),
            shared: conn::Shared {
                routes: warp::service(api::routes(self.context.clone())),
                builder: Arc::new(conn::builder()),
                timeouts: Timeouts {
                    header_read: Duration::from_millis(self.server.header_read_timeout_ms),
                    idle: Duration::from_millis(self.server.idle_timeout_ms),
                },
                stop: stopped,
                running,
            },
        };
        let mut acceptor = Acceptor::new(self.listener, self.server.max_connections);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                (stream, peer) = acceptor.accept() => serving.spawn(stream, peer),
            }
        }
        self.services.set("api", ServiceState::Stopping);
        // Upgraded connections are not part of the drain; they are told to go.
        self.context.close_websockets();
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        // The listener closes here.
        drop(acceptor);
        stop.send_replace(true);
        drop(serving);
        if tokio::time::timeout(DRAIN_TIMEOUT, all_done.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                timeout_seconds = DRAIN_TIMEOUT.as_secs(),
                "requests still in flight at the end of the drain period were abandoned"
            );
        }
        // Every session's agents stop (reverse dependency order, within their grace); the
        // sessions stay as they are in storage and are restored by the next start.
        // The monitor first: its last tick may still read the sessions and write storage.
        self.services.set("monitor", ServiceState::Stopping);
        self.monitor.stop().await;
        // The agents' exits at shutdown are no end of their conversations: they resume.
        self.claude.stop();
        self.services.set("sessions", ServiceState::Stopping);
        self.sessions.shutdown().await;
        // What the agents left behind (adopted orphans, their cgroups) goes with them.
        crate::agent::release().await;
        // The agents' last transitions included: nothing published is lost.
        self.bus.close().await;
        self.services.set("storage", ServiceState::Stopping);
        if let Err(error) = self.storage.close().await {
            tracing::error!(%error, "closing the database failed");
        }
    }
}

/// The caps, and what every connection admitted is served with.
struct Serving<S> {
    limits: Arc<ConnectionLimits>,
    shared: conn::Shared<S>,
}

impl<S> Serving<S>
where
    S: tower_service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    /// Serves `stream` on its own task, or refuses it at once (503, closed) when a cap is
    /// reached: a refused client learns it now instead of waiting in a queue.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr) {
        match self.limits.admit(peer.ip()) {
            Ok(slot) => {
                tokio::spawn(conn::serve(stream, peer, slot, self.shared.clone()));
            }
            Err(refusal) => {
                tracing::debug!(%peer, ?refusal, "connection refused: limit reached");
                // Best effort, never waiting: the socket's send buffer is empty.
                let _ = stream.try_write(&api::connection_refusal(refusal));
            }
        }
    }
}
