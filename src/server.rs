//! The running server: binds the listener, serves the API on it and shuts down gracefully.
//! Building and running are separate steps so the caller learns the bound address (port 0
//! picks one) before serving starts, and decides what ends the server (signals in `main`,
//! anything in tests).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::api::{self, ApiContext, ServiceState, Services};
use crate::config::Settings;

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
}

/// A server that is listening but not yet serving.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    local_addr: SocketAddr,
    context: ApiContext,
    services: Services,
}

impl App {
    /// Opens everything the server needs and binds the listener, so that every start-up
    /// failure surfaces here, before anything is announced as listening.
    pub async fn build(settings: &Settings) -> Result<App, ServerError> {
        let services = Services::default();

        // Integration point for storage: open the database at `settings.db_path()` here,
        // before binding, so that a storage failure stops start-up, then report it with
        // `services.set("storage", ServiceState::Running)`.

        let addr = SocketAddr::new(settings.server.bind, settings.server.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(ServerError::LocalAddr)?;
        services.set("api", ServiceState::Running);
        let context = ApiContext::new(&settings.server, services.clone());
        Ok(App {
            listener,
            local_addr,
            context,
            services,
        })
    }

    /// The address actually bound, with the port the OS chose when `server.port` is 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` resolves, then stops accepting connections and lets requests
    /// in flight finish, for at most ten seconds so a stuck client cannot hold the process.
    pub async fn run_until<F>(self, shutdown: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (draining, drain_started) = oneshot::channel();
        let services = self.services;
        let signal = async move {
            shutdown.await;
            services.set("api", ServiceState::Stopping);
            tracing::info!("shutting down: no new connections, finishing requests in flight");
            // The receiver is gone only if the server already stopped on its own.
            draining.send(()).ok();
        };
        let server = warp::serve(api::routes(self.context))
            .incoming(self.listener)
            .graceful(signal)
            .run();
        tokio::pin!(server);
        tokio::select! {
            () = &mut server => return,
            _ = drain_started => {}
        }
        if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
            tracing::warn!(
                timeout_seconds = DRAIN_TIMEOUT.as_secs(),
                "requests still in flight at the end of the drain period were abandoned"
            );
        }
    }
}
