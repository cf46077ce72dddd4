//! [`Monitor`], the monitor's handle: starts the sampling actor under its supervisor and the
//! hook counter, reads the shared snapshot (latest samples, open alerts, hook counts) and
//! the stored history, and stops them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use ractor::ActorCell;
use uuid::Uuid;

use crate::config::{Settings, Thresholds};
use crate::session::SessionRegistry;
use crate::storage::{Storage, StorageError};
use crate::supervision::{
    Backoff, ChildSpec, ChildState, Intensity, Restart, RestartPolicy, SupervisorConfig,
    SupervisorHandle,
};

use super::activity::Ledger;
use super::actor::{Args, MonitorActor};
use super::analytics::Summary;
use super::hooks::HookCounter;
use super::sink::{notify, AlertSink};
use super::trend::Trends;
use super::{
    now, store, Activity, HostSample, Latest, ResourceAlert, SessionSample, Shared, SummaryCache,
    TREND_HOURS,
};

/// The sampling actor's id under its supervisor.
const CHILD: &str = "monitor";

/// The monitor's handle; cloning shares it.
#[derive(Clone)]
pub struct Monitor {
    pub(super) supervisor: SupervisorHandle,
    pub(super) shared: Arc<Shared>,
    pub(super) hooks: HookCounter,
    /// Where alerts raised from outside the sampling actor are announced.
    pub(super) bus: crate::session::EventBus,
    pub(super) notices: mpsc::Sender<super::sink::Notice>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// Why the monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The actor or the notification thread could not be spawned.
    #[error("cannot start the monitor: {0}")]
    Spawn(String),
}

impl Monitor {
    /// Starts sampling every `monitor.interval_seconds` the sessions `registry` knows,
    /// storing into `storage` and publishing on the registry's bus.
    pub async fn start(
        settings: &Settings,
        storage: Storage,
        registry: SessionRegistry,
    ) -> Result<Monitor, MonitorError> {
        let shared = Arc::new(Shared {
            storage,
            latest: Mutex::new(Latest::default()),
            lines: Mutex::new(HashMap::new()),
            sinks: Mutex::new(Vec::new()),
            actor: Mutex::new(None),
            starts: Mutex::new(0),
            ledger: Mutex::new(Ledger::default()),
            trends: Mutex::new(Trends::default()),
            thresholds: settings.monitor.thresholds.clone(),
            stored: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            summaries: Mutex::new(SummaryCache::default()),
            unresponsive: Mutex::new(Vec::new()),
        });
        // Following the log before the stored counts are read: nothing counted is missed or
        // doubled (only the counter writes them).
        let hook_events = HookCounter::follow(registry.bus());
        let stored = store::activity_totals(&shared.storage)
            .await
            .map_err(|e| MonitorError::Spawn(format!("reading the hook counts: {e}")))?;
        {
            let mut ledger = shared.ledger();
            for (session, totals) in stored {
                ledger.restore(session, totals);
            }
        }
        let since = now() - (TREND_HOURS as f64) * 3600.0;
        match store::trend_hours(&shared.storage, since).await {
            Ok(hours) => *shared.trends() = Trends::seeded(hours),
            Err(error) => tracing::warn!(%error, "the trends start empty"),
        }
        let hooks = HookCounter::start(registry.bus().clone(), hook_events, Arc::clone(&shared));
        let (notices, queue) = mpsc::channel();
        let for_sinks = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("monitor-alerts".into())
            .spawn(move || notify(&for_sinks, &queue))
            .map_err(|e| MonitorError::Spawn(e.to_string()))?;
        let bus = registry.bus().clone();
        let args = Args {
            interval: Duration::from_secs(settings.monitor.interval_seconds.max(1)),
            disk_interval: Duration::from_secs(settings.monitor.disk_interval_seconds.max(1)),
            unchanged_every: Duration::from_secs(settings.monitor.unchanged_store_seconds.max(1)),
            retention: Duration::from_secs(settings.monitor.retention_hours.saturating_mul(3600)),
            archive_dir: settings.metrics_dir(),
            log_dir: settings.log_dir(),
            log_retention: Duration::from_secs(
                u64::from(settings.logs.retention_days).saturating_mul(86_400),
            ),
            thresholds: settings.monitor.thresholds.clone(),
            registry,
            shared: Arc::clone(&shared),
            notices: notices.clone(),
        };
        // Restarted whatever the exit (a panicking tick, a kill), after 0, 1, 2, … 30 s; ten
        // restarts in a minute mean a broken monitor, left down and logged by the supervisor.
        let policy = RestartPolicy::new()
            .with_restart(Restart::Permanent)
            .with_backoff(
                Backoff::new(Duration::from_secs(1), Duration::from_secs(30))
                    .with_multiplier(2.0)
                    .with_reset_after(Duration::from_secs(60)),
            )
            .with_intensity(Intensity::new(10, Duration::from_secs(60)))
            .with_escalate(false);
        let child = ChildSpec::actor(CHILD, move || (MonitorActor, args.clone())).policy(policy);
        let spawn = |e: crate::supervision::SupervisionError| MonitorError::Spawn(e.to_string());
        let (supervisor, _) = SupervisorHandle::spawn(SupervisorConfig::default(), vec![child])
            .await
            .map_err(spawn)?;
        supervisor.start_all().await.map_err(spawn)?;
        supervisor.settled().await.map_err(spawn)?;
        Ok(Monitor {
            supervisor,
            shared,
            hooks,
            bus,
            notices,
        })
    }

    /// Whether the sampling actor is running now, and how many times it was restarted.
    pub async fn status(&self) -> MonitorStatus {
        let restarts = self.shared.starts.lock().map_or(0, |n| n.saturating_sub(1));
        let running = match self.supervisor.children().await {
            Ok(children) => children
                .iter()
                .any(|c| &*c.id == CHILD && c.state == ChildState::Running),
            Err(_) => false,
        };
        MonitorStatus {
            running,
            restarts,
            unresponsive_sessions: self.shared.unresponsive().clone(),
        }
    }

    /// The sampling actor now running, e.g. to watch it (or, in a test, to kill it and see a
    /// new one take over). A new one has another cell.
    pub fn actor(&self) -> Option<ActorCell> {
        self.shared
            .actor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Registers a sink for every alert raised or resolved from now on.
    pub fn add_sink(&self, sink: Arc<dyn AlertSink>) {
        self.shared
            .sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sink);
    }

    /// The latest sample of a live session, if one was taken.
    pub fn latest(&self, session: Uuid) -> Option<Arc<SessionSample>> {
        self.shared.latest().sessions.get(&session).cloned()
    }

    /// The latest sample of the host, if one was taken.
    pub fn host(&self) -> Option<HostSample> {
        self.shared.latest().host.clone()
    }

    /// Ticks completed since start.
    pub fn ticks(&self) -> u64 {
        self.shared.latest().ticks
    }

    /// Opens an alert that no sample watches (a Claude Code session waiting for its person,
    /// a cost budget reached): listed with the others, announced (`alert`), handed to the
    /// sinks. Its raiser keeps it and resolves it with [`Monitor::resolve`].
    pub fn raise(&self, alert: ResourceAlert) {
        super::actor::raise(&self.shared, &self.bus, &self.notices, alert);
    }

    /// Closes an alert [`Monitor::raise`] opened; `alert.value` is the value that resolved
    /// it. An alert no longer open is left alone.
    pub fn resolve(&self, alert: ResourceAlert) {
        let open = self.shared.latest().alerts.contains_key(&alert.id);
        if open {
            super::actor::resolve(&self.shared, &self.bus, &self.notices, alert);
        }
    }

    /// Open alerts of one session (`Some`) or of the host (`None`), oldest first.
    pub fn open_alerts(&self, session: Option<Uuid>) -> Vec<ResourceAlert> {
        let mut alerts: Vec<_> = self
            .shared
            .latest()
            .alerts
            .values()
            .filter(|a| a.session == session)
            .cloned()
            .collect();
        alerts.sort_by(|a, b| a.raised_at.total_cmp(&b.raised_at));
        alerts
    }

    /// The lines alerts are raised at (`monitor.thresholds`).
    pub fn thresholds(&self) -> &Thresholds {
        &self.shared.thresholds
    }

    /// Open alerts of the host and of every session.
    pub fn open_alert_count(&self) -> usize {
        self.shared.latest().alerts.len()
    }

    /// A session's stored samples taken at or after `since` (Unix seconds), oldest first.
    pub async fn history(
        &self,
        session: Uuid,
        since: f64,
    ) -> Result<Vec<SessionSample>, StorageError> {
        store::session_history(&self.shared.storage, session, since).await
    }

    /// The [`summarize`](super::summarize) figures of a session's stored samples of the last `hours`,
    /// computed by the database (no sample is read out) once per change of the stored
    /// samples: however many clients poll a session, it costs one aggregate per sampling
    /// interval, not one per request.
    pub async fn summary(&self, session: Uuid, hours: f64) -> Result<Summary, StorageError> {
        let key = (session, hours.to_bits());
        let stored = self.shared.stored.load(Ordering::Acquire);
        let cell = {
            let mut cache = self.shared.summaries();
            if cache.stored < stored {
                // Summaries of older samples: none is worth keeping.
                cache.stored = stored;
                cache.entries.clear();
            }
            if cache.stored == stored {
                cache.entries.entry(key).or_default().clone()
            } else {
                // Newer samples were summarized meanwhile: this one is computed alone.
                Arc::default()
            }
        };
        let summary = cell
            .get_or_try_init(|| async {
                let now = now();
                store::session_summary(&self.shared.storage, session, now - hours * 3600.0, now)
                    .await
            })
            .await?;
        Ok(summary.clone())
    }

    /// Stops sampling and waits until the actor is gone (its last tick finished); counts
    /// the hook events published so far, then stops counting.
    pub async fn stop(&self) {
        let _ = self.supervisor.shutdown().await;
        self.hooks.stop().await;
    }

    /// A counter bumped after every change of what the monitor says about sessions: their
    /// latest samples, hook counts and errors, alerts, stored samples. Read it before reading
    /// those: an answer built from them is current as long as the counter has not moved
    /// (figures that depend on the clock, such as a window's start, aside).
    pub fn version(&self) -> u64 {
        self.shared.changes.load(Ordering::Acquire)
    }

    /// What the hook events of a session counted.
    pub fn activity(&self, session: Uuid) -> Activity {
        self.shared.ledger().totals(session)
    }

    /// A session's errors in the last hour: failed tool uses and agent restarts.
    pub fn error_rate(&self, session: Uuid) -> f64 {
        self.shared.ledger().error_rate(session, now())
    }
}

/// The sampling actor as its supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorStatus {
    /// Whether it is running (false while a restart is pending, or after it gave up).
    pub running: bool,
    /// Restarts after a crash or a kill since the server started.
    pub restarts: u64,
    /// Live sessions that did not answer the sampling actor within a tick's deadline and
    /// have not answered since (their figures are left as they were; the others go on).
    pub unresponsive_sessions: Vec<Uuid>,
}
