//! The monitor: one actor that samples the host and every live session's agents on an
//! interval, stores the samples, and raises and resolves resource alerts.
//!
//! Each tick reads the sessions through the registry's handle (never its internals), reads
//! the world off the async workers (`sample`), stores the tick in one transaction (`store`),
//! feeds each watched value to its line (`threshold`: a value must stay over the line for
//! consecutive samples to raise one alert, and fall under it by a margin to resolve it), and
//! publishes what changed on the event bus (`alert`, `alert_resolved`, `metrics`). Alerts
//! also go to the [`AlertSink`]s an embedding service registers, on a thread of their own:
//! a sink that panics or blocks never stops sampling.
//!
//! Claude Code's hook events reach the monitor on the bus: a task of its own counts them
//! (`activity`: commands, files, errors, tool response times), stores the counts per hour, and
//! keeps the sliding windows the `error_rate` and `response_time` lines watch. Each tick also
//! adds to the hourly trends (`trend`) that analytics shows and judges anomalies against.
//!
//! Readers (the API) never wait on a tick: the latest samples and the open alerts are kept in
//! a shared snapshot that [`Monitor`] reads; history is read from storage.
//!
//! The actor runs under a [`crate::supervision`] supervisor (permanent, with backoff): if a
//! tick panics or the actor is killed, a fresh one takes over the same shared state — open
//! alerts and the lines' hysteresis included — so nothing is raised twice or left open.

mod activity;
mod archive;
mod logs;
mod sample;
mod store;
mod threshold;
mod trend;

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::config::{Settings, Thresholds};
pub use crate::session::{AgentSample, Resource, ResourceAlert, SessionSample};
use crate::session::{Published, SessionEvent, SessionRegistry};
use crate::storage::{HookNameKind, Storage, StorageError};
use crate::supervision::{
    Backoff, ChildSpec, ChildState, Intensity, Restart, RestartPolicy, SupervisorConfig,
    SupervisorHandle,
};

pub use activity::{Activity, ERROR_WINDOW_SECONDS, RESPONSE_WINDOW_SECONDS};
pub use sample::HostSample;
pub use threshold::{severity, step, Hysteresis, LineState, Transition};
pub use trend::{anomaly, hour_of, Anomaly, Hour, MIN_HISTORY, TREND_HOURS};

use activity::{Delta, Ledger};
use trend::Trends;

use sample::{disk_percent, Sampler};
use store::Batch;

/// How often samples past `monitor.retention_hours` are deleted (and at the first tick).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Samples younger than this keep every tick; older ones are thinned to one per minute.
const FULL_RESOLUTION: Duration = Duration::from_secs(3600);
/// Most points a history answer holds; longer histories are thinned evenly.
pub const MAX_POINTS: usize = 3600;
/// The sampling actor's id under its supervisor.
const CHILD: &str = "monitor";

/// Where an embedding service hears about alerts. Called on the monitor's notification
/// thread, in order; a panic is caught and logged, and a slow sink delays only other sinks.
pub trait AlertSink: Send + Sync + 'static {
    /// An alert was raised.
    fn raised(&self, alert: &ResourceAlert);
    /// An alert was resolved.
    fn resolved(&self, alert: &ResourceAlert) {
        let _ = alert;
    }
}

enum Notice {
    Raised(Arc<ResourceAlert>),
    Resolved(Arc<ResourceAlert>),
}

#[derive(Default)]
struct Latest {
    host: Option<HostSample>,
    sessions: HashMap<Uuid, Arc<SessionSample>>,
    alerts: HashMap<Uuid, ResourceAlert>,
    ticks: u64,
}

struct Shared {
    storage: Storage,
    latest: Mutex<Latest>,
    /// Each watched value's line; kept here, not in the actor, so a respawned actor goes on
    /// with the open alerts and the counts of samples over the line.
    lines: Mutex<HashMap<(Option<Uuid>, Resource), Line>>,
    sinks: Mutex<Vec<Arc<dyn AlertSink>>>,
    /// The sampling actor now running, if one is.
    actor: Mutex<Option<ActorCell>>,
    /// Sampling actors started so far (1 + respawns).
    starts: Mutex<u64>,
    /// What the hook events counted, and their recent errors and response times.
    ledger: Mutex<Ledger>,
    /// Hourly means of the samples.
    trends: Mutex<Trends>,
    /// The lines.
    thresholds: Thresholds,
    /// Bumped each time the stored samples changed (a tick stored, old ones thinned or
    /// pruned): what a cached summary is tagged with.
    stored: AtomicU64,
    /// Bumped after anything a session's answer shows from here changed (its latest sample,
    /// hook counts, restarts noted, alerts, stored samples): see [`Monitor::version`].
    changes: AtomicU64,
    /// Summaries computed since the samples last changed, by session and window.
    summaries: Mutex<SummaryCache>,
}

/// Summaries of the stored samples as of one value of `Shared::stored`: the samples only
/// change when the monitor writes, so until then a summary is what the database would say
/// again (its window's start moves on meanwhile by less than one sampling interval).
#[derive(Default)]
struct SummaryCache {
    stored: u64,
    /// One cell per session and window: the first request after a change computes it,
    /// the others wait for that one (a burst of polls makes one query, not one each).
    entries: HashMap<(Uuid, u64), Arc<tokio::sync::OnceCell<Summary>>>,
}

impl Shared {
    /// The stored samples changed: summaries computed before are out of date.
    fn samples_changed(&self) {
        self.stored.fetch_add(1, Ordering::AcqRel);
        self.changed();
    }

    /// Something [`Monitor::version`] covers changed; called after the change is made.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    fn summaries(&self) -> MutexGuard<'_, SummaryCache> {
        self.summaries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn latest(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lines(&self) -> MutexGuard<'_, HashMap<(Option<Uuid>, Resource), Line>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn trends(&self) -> MutexGuard<'_, Trends> {
        self.trends.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sinks(&self) -> Vec<Arc<dyn AlertSink>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The monitor's handle; cloning shares it.
#[derive(Clone)]
pub struct Monitor {
    supervisor: SupervisorHandle,
    shared: Arc<Shared>,
    hooks: tokio::task::AbortHandle,
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
        });
        // Subscribed before the stored counts are read: nothing counted is missed or doubled
        // (only this task writes them).
        let hook_events = registry.bus().subscribe();
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
        let hooks = tokio::spawn(count_hooks(hook_events, Arc::clone(&shared))).abort_handle();
        let (notices, queue) = mpsc::channel();
        let for_sinks = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("monitor-alerts".into())
            .spawn(move || notify(&for_sinks, &queue))
            .map_err(|e| MonitorError::Spawn(e.to_string()))?;
        let args = Args {
            interval: Duration::from_secs(settings.monitor.interval_seconds.max(1)),
            retention: Duration::from_secs(settings.monitor.retention_hours.saturating_mul(3600)),
            archive_dir: settings.metrics_dir(),
            log_dir: settings.log_dir(),
            log_retention: Duration::from_secs(
                u64::from(settings.logs.retention_days).saturating_mul(86_400),
            ),
            thresholds: settings.monitor.thresholds.clone(),
            registry,
            shared: Arc::clone(&shared),
            notices,
        };
        // Restarted whatever the exit (a panicking tick, a kill), after 0, 1, 2, … 30 s; ten
        // restarts in a minute mean a broken monitor, left down and logged by the supervisor.
        let policy = RestartPolicy {
            restart: Restart::Permanent,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(30),
                multiplier: 2.0,
                reset_after: Duration::from_secs(60),
            },
            intensity: Intensity {
                max_restarts: 10,
                window: Duration::from_secs(60),
            },
            escalate: false,
        };
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
        MonitorStatus { running, restarts }
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

    /// The [`summarize`] figures of a session's stored samples of the last `hours`,
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

    /// Stops sampling and waits until the actor is gone (its last tick finished); stops
    /// counting hook events.
    pub async fn stop(&self) {
        let _ = self.supervisor.shutdown().await;
        self.hooks.abort();
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

    /// Every session's counts, the hourly trends of the last [`TREND_HOURS`] hours, the most
    /// used tools, commands and files, and the anomalies of the current hour.
    pub async fn analytics(&self) -> Result<Analytics, StorageError> {
        let at = now();
        let current = hour_of(at);
        let first = current - (TREND_HOURS as i64 - 1) * 3600;
        let storage = &self.shared.storage;
        let by_hour = store::activity_by_hour(storage, first).await?;
        let sampled: Vec<Hour> = self.shared.trends().hours().copied().collect();
        let start = by_hour
            .iter()
            .map(|(h, _)| *h)
            .chain(sampled.iter().map(|h| h.hour))
            .filter(|h| *h >= first)
            .min()
            .unwrap_or(current);
        let hours: Vec<TrendHour> = (0..)
            .map(|i| start + i * 3600)
            .take_while(|h| *h <= current)
            .map(|hour| {
                let sample = sampled.iter().find(|h| h.hour == hour && h.ticks > 0);
                let mean = |f: fn(&Hour) -> f64| sample.map(|h| h.mean(f(h)));
                TrendHour {
                    hour,
                    host_cpu_percent: mean(|h| h.host_cpu_percent),
                    host_memory_percent: mean(|h| h.host_memory_percent),
                    agents_cpu_percent: mean(|h| h.agents_cpu_percent),
                    agents_memory_mb: mean(|h| h.agents_memory_mb),
                    activity: by_hour
                        .iter()
                        .find(|(h, _)| *h == hour)
                        .map(|(_, a)| *a)
                        .unwrap_or_default(),
                }
            })
            .collect();
        let most_used_tools = store::most_used(storage, HookNameKind::Tool, 10).await?;
        let most_used_commands = store::most_used(storage, HookNameKind::Command, 10).await?;
        let most_used_files = store::most_used(storage, HookNameKind::File, 10).await?;
        let activity = self.shared.ledger().sum();
        Ok(Analytics {
            activity,
            anomalies: anomalies(&hours),
            hours,
            most_used_tools,
            most_used_commands,
            most_used_files,
        })
    }
}

/// The sampling actor as its supervisor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorStatus {
    /// Whether it is running (false while a restart is pending, or after it gave up).
    pub running: bool,
    /// Restarts after a crash or a kill since the server started.
    pub restarts: u64,
}

/// What `GET /analytics` shows of the monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Analytics {
    /// Every session's hook counts, summed.
    pub activity: Activity,
    /// The last [`TREND_HOURS`] hours that have data, up to the current one, oldest first.
    pub hours: Vec<TrendHour>,
    /// Values of the current hour beyond the mean ± 3σ of the earlier hours.
    pub anomalies: Vec<(&'static str, Anomaly)>,
    /// The ten tools most used, with their uses.
    pub most_used_tools: Vec<(String, u64)>,
    /// The ten command words most run.
    pub most_used_commands: Vec<(String, u64)>,
    /// The ten files most often created, modified or deleted.
    pub most_used_files: Vec<(String, u64)>,
}

/// One hour of the trends: means of the samples (`None` when the monitor took none) and
/// the hook counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendHour {
    /// Unix seconds of its start.
    pub hour: i64,
    /// Host CPU, mean.
    pub host_cpu_percent: Option<f64>,
    /// Host memory, mean.
    pub host_memory_percent: Option<f64>,
    /// Every agent's CPU summed, mean over the ticks.
    pub agents_cpu_percent: Option<f64>,
    /// Every agent's memory summed, MiB, mean over the ticks.
    pub agents_memory_mb: Option<f64>,
    /// Hook counts.
    pub activity: Activity,
}

/// The anomalies of the last hour: means in both directions; counts only upwards, since the
/// current hour is not over and can only be low for that reason.
fn anomalies(hours: &[TrendHour]) -> Vec<(&'static str, Anomaly)> {
    type Series = (&'static str, bool, fn(&TrendHour) -> Option<f64>);
    let series: [Series; 8] = [
        ("host_cpu_percent", true, |h| h.host_cpu_percent),
        ("host_memory_percent", true, |h| h.host_memory_percent),
        ("agents_cpu_percent", true, |h| h.agents_cpu_percent),
        ("agents_memory_mb", true, |h| h.agents_memory_mb),
        ("tool_uses", false, |h| Some(h.activity.tool_uses as f64)),
        ("commands_executed", false, |h| {
            Some(h.activity.commands_executed as f64)
        }),
        ("errors", false, |h| Some(h.activity.errors as f64)),
        ("average_response_time_ms", true, |h| {
            h.activity.average_response_ms()
        }),
    ];
    let Some(last) = hours.last() else {
        return Vec::new();
    };
    series
        .iter()
        .filter_map(|&(name, both_ways, value)| {
            value(last)?;
            let values: Vec<f64> = hours.iter().filter_map(value).collect();
            let found = anomaly(&values)?;
            (found.high || both_ways).then_some((name, found))
        })
        .collect()
}

/// Summary figures of a history.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Points in the history.
    pub total_data_points: usize,
    /// Mean CPU over the points of the last hour.
    pub average_cpu_percent: Option<f64>,
    /// Mean memory over the points of the last hour.
    pub average_memory_mb: Option<f64>,
    /// Points in the last hour.
    pub points_last_hour: usize,
    /// Highest CPU.
    pub peak_cpu_percent: Option<f64>,
    /// Highest memory.
    pub peak_memory_mb: Option<f64>,
    /// Highest memory of a single agent process tree.
    pub peak_agent_memory_mb: Option<f64>,
}

/// Sums up `points` as of `now` (Unix seconds).
pub fn summarize(points: &[SessionSample], now: f64) -> Summary {
    let hour: Vec<_> = points.iter().filter(|p| p.at >= now - 3600.0).collect();
    let mean = |f: fn(&SessionSample) -> f64| {
        (!hour.is_empty()).then(|| hour.iter().map(|p| f(p)).sum::<f64>() / hour.len() as f64)
    };
    let peak = |f: fn(&SessionSample) -> f64| points.iter().map(f).reduce(f64::max);
    Summary {
        total_data_points: points.len(),
        average_cpu_percent: mean(|p| p.cpu_percent),
        average_memory_mb: mean(|p| p.memory_mb),
        points_last_hour: hour.len(),
        peak_cpu_percent: peak(|p| p.cpu_percent),
        peak_memory_mb: peak(|p| p.memory_mb),
        peak_agent_memory_mb: points
            .iter()
            .flat_map(|p| p.agents.iter().map(|a| a.memory_mb))
            .reduce(f64::max),
    }
}

/// At most `max` of `points`, evenly spread, the last one always kept.
pub fn thin<T>(points: Vec<T>, max: usize) -> Vec<T> {
    if points.len() <= max || max == 0 {
        return points;
    }
    let len = points.len();
    let step = len.div_ceil(max);
    points
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (len - 1 - i).is_multiple_of(step))
        .map(|(_, p)| p)
        .collect()
}

/// Calls the sinks for each notice, catching panics, until the monitor is gone.
fn notify(shared: &Shared, queue: &mpsc::Receiver<Notice>) {
    while let Ok(notice) = queue.recv() {
        for sink in shared.sinks() {
            let outcome = catch_unwind(AssertUnwindSafe(|| match &notice {
                Notice::Raised(alert) => sink.raised(alert),
                Notice::Resolved(alert) => sink.resolved(alert),
            }));
            if outcome.is_err() {
                tracing::error!("an alert sink panicked; the monitor goes on");
            }
        }
    }
}

/// Counts every hook event published on the bus into the ledger and storage; forgets a
/// purged session. Ends when the bus closes (or the monitor stops it).
async fn count_hooks(
    mut events: tokio::sync::broadcast::Receiver<Arc<Published>>,
    shared: Arc<Shared>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let published = match events.recv().await {
            Ok(published) => published,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the monitor fell behind the bus; hook events may be uncounted"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match &published.event {
            SessionEvent::Hook {
                session,
                name,
                payload,
            } => {
                let at = published.timestamp;
                let delta: Delta = shared
                    .ledger()
                    .record(*session, name, payload, at, |path| path.exists());
                shared.changed();
                if delta.activity.is_empty() {
                    continue;
                }
                if let Err(error) =
                    store::add_activity(&shared.storage, *session, hour_of(at), delta).await
                {
                    tracing::warn!(%error, "hook counts not stored");
                }
            }
            SessionEvent::Purged(session) => {
                shared.ledger().forget(*session);
                shared.changed();
                if let Err(error) = store::forget_activity(&shared.storage, *session).await {
                    tracing::warn!(%error, "hook counts of a purged session not deleted");
                }
            }
            _ => {}
        }
    }
}

struct MonitorActor;

/// The monitor's messages.
#[derive(Debug)]
pub enum MonitorMsg {
    /// Sample now; the next tick is scheduled when this one ends.
    Tick,
}

#[derive(Clone)]
struct Args {
    interval: Duration,
    retention: Duration,
    archive_dir: PathBuf,
    log_dir: PathBuf,
    log_retention: Duration,
    thresholds: Thresholds,
    registry: SessionRegistry,
    shared: Arc<Shared>,
    notices: mpsc::Sender<Notice>,
}

struct Line {
    state: LineState,
    alert: Option<ResourceAlert>,
}

struct MonitorState {
    args: Args,
    sampler: Arc<Mutex<Sampler>>,
    last_prune: Option<Instant>,
    /// Samples before this (Unix seconds) are already one per minute.
    thinned_until: f64,
}

impl Actor for MonitorActor {
    type Msg = MonitorMsg;
    type State = MonitorState;
    type Arguments = Args;

    async fn pre_start(
        &self,
        myself: ActorRef<MonitorMsg>,
        args: Args,
    ) -> Result<MonitorState, ActorProcessingErr> {
        let sampler = tokio::task::spawn_blocking(Sampler::new).await?;
        myself.send_after(args.interval, || MonitorMsg::Tick);
        *args.shared.actor.lock().unwrap_or_else(|p| p.into_inner()) = Some(myself.get_cell());
        let starts = {
            let mut starts = args.shared.starts.lock().unwrap_or_else(|p| p.into_inner());
            *starts += 1;
            *starts
        };
        if starts > 1 {
            tracing::warn!(restarts = starts - 1, "the monitor was restarted");
        }
        Ok(MonitorState {
            args,
            sampler: Arc::new(Mutex::new(sampler)),
            last_prune: None,
            thinned_until: 0.0,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<MonitorMsg>,
        msg: MonitorMsg,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MonitorMsg::Tick => {
                let started = Instant::now();
                state.tick().await;
                let delay = state.args.interval.saturating_sub(started.elapsed());
                myself.send_after(delay, || MonitorMsg::Tick);
            }
        }
        Ok(())
    }
}

/// What a tick samples of one session.
struct Target {
    id: Uuid,
    dir: PathBuf,
    max_memory_mb: u64,
    agents: Vec<(String, u32)>,
    running: u64,
    total: u64,
    restarts: u64,
    errors: u64,
}

impl MonitorState {
    async fn tick(&mut self) {
        let at = now();
        let targets = self.targets().await;
        let live: Option<HashSet<String>> = targets
            .as_ref()
            .map(|t| t.iter().map(|t| t.id.to_string()).collect());
        let targets = targets.unwrap_or_default();
        let sampler = Arc::clone(&self.sampler);
        let sampled = tokio::task::spawn_blocking(move || {
            let mut sampler = sampler.lock().unwrap_or_else(|p| p.into_inner());
            let host = sampler.host(at);
            let all: Vec<(String, u32)> = targets
                .iter()
                .flat_map(|t| t.agents.iter().cloned())
                .collect();
            let mut agents = sampler.agents(&all).into_iter();
            let mut disks: HashMap<PathBuf, Option<f64>> = HashMap::new();
            let sessions: Vec<SessionSample> = targets
                .into_iter()
                .map(|t| {
                    let samples: Vec<AgentSample> =
                        agents.by_ref().take(t.agents.len()).flatten().collect();
                    session_sample(t, at, samples, &mut disks)
                })
                .collect();
            (host, sessions)
        })
        .await;
        let (host, sessions) = match sampled {
            Ok(sampled) => sampled,
            Err(error) => {
                tracing::error!(%error, "a monitor sample failed");
                return;
            }
        };
        {
            let mut ledger = self.args.shared.ledger();
            for s in &sessions {
                ledger.note_restarts(s.session_id, s.restarts, at);
            }
        }
        self.args.shared.changed();
        self.args.shared.trends().add(
            at,
            (host.cpu_percent, host.memory_percent),
            (
                sessions.iter().map(|s| s.cpu_percent).sum(),
                sessions.iter().map(|s| s.memory_mb).sum(),
            ),
        );
        self.check(&host, &sessions, at);
        let sessions: Vec<Arc<SessionSample>> = sessions.into_iter().map(Arc::new).collect();
        let bus = self.args.registry.bus();
        for sample in &sessions {
            bus.publish(SessionEvent::Metrics(Arc::clone(sample)));
        }
        {
            let mut latest = self.args.shared.latest();
            latest.host = Some(host.clone());
            latest.sessions = sessions
                .iter()
                .map(|s| (s.session_id, Arc::clone(s)))
                .collect();
            latest.ticks += 1;
        }
        self.args.shared.changed();
        let batch = Batch {
            host: Some(host),
            sessions,
        };
        if let Err(error) = store::insert(&self.args.shared.storage, batch).await {
            tracing::warn!(%error, "monitor samples not stored");
        }
        self.args.shared.samples_changed();
        if self
            .last_prune
            .is_none_or(|last| last.elapsed() >= PRUNE_EVERY)
        {
            self.last_prune = Some(Instant::now());
            let before = at - self.args.retention.as_secs_f64();
            let storage = &self.args.shared.storage;
            let until = ((at - FULL_RESOLUTION.as_secs_f64()) / 60.0).floor() * 60.0;
            match store::downsample(storage, self.thinned_until, until).await {
                Ok(deleted) => {
                    self.thinned_until = until;
                    if deleted > 0 {
                        tracing::info!(
                            deleted,
                            "monitor samples older than an hour thinned to one a minute"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "thinning old monitor samples failed"),
            }
            match archive::archive_and_prune(storage, &self.args.archive_dir, before).await {
                Ok(pruned) if pruned.deleted == 0 => {}
                Ok(pruned) => tracing::info!(
                    deleted = pruned.deleted,
                    archived_minutes = pruned.lines,
                    file = ?pruned.file,
                    "monitor samples past retention archived and pruned"
                ),
                Err(error) => tracing::warn!(%error, "archiving or pruning monitor samples failed"),
            }
            self.args.shared.samples_changed();
            // Without the list of live sessions, no log can be told to be unused.
            if let Some(live) = live {
                let dir = self.args.log_dir.clone();
                let before = std::time::SystemTime::now()
                    .checked_sub(self.args.log_retention)
                    .unwrap_or(std::time::UNIX_EPOCH);
                let pruned =
                    tokio::task::spawn_blocking(move || logs::prune_logs(&dir, before, &live))
                        .await;
                match pruned {
                    Ok(Ok(pruned)) if pruned == logs::PrunedLogs::default() => {}
                    Ok(Ok(pruned)) => tracing::info!(
                        files = pruned.files,
                        dirs = pruned.dirs,
                        "log files past logs.retention_days deleted"
                    ),
                    Ok(Err(error)) => tracing::warn!(%error, "pruning old log files failed"),
                    Err(error) => tracing::warn!(%error, "pruning old log files failed"),
                }
            }
        }
    }

    /// The live sessions and their agents' processes, through the registry's handle;
    /// `None` when the sessions cannot be listed.
    async fn targets(&self) -> Option<Vec<Target>> {
        let registry = &self.args.registry;
        let records = match registry.list().await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "the monitor cannot list the sessions");
                return None;
            }
        };
        let mut targets = Vec::new();
        for record in records.iter().filter(|r| !r.status.is_terminal()) {
            let Ok(view) = registry.get(record.id).await else {
                continue;
            };
            let agents = &view.agents;
            targets.push(Target {
                id: record.id,
                dir: PathBuf::from(&view.record.configuration.working_directory),
                max_memory_mb: view.record.configuration.max_memory_mb,
                agents: agents
                    .iter()
                    .filter_map(|a| Some((a.name.clone(), a.live.pid?)))
                    .collect(),
                running: count(agents.iter().filter(|a| a.state == ChildState::Running)),
                total: agents.len() as u64,
                restarts: agents.iter().map(|a| a.restarts).sum(),
                errors: count(agents.iter().filter(|a| a.state == ChildState::Failed)),
            });
        }
        Some(targets)
    }

    /// Feeds every watched value to its line; publishes and remembers what changed.
    fn check(&mut self, host: &HostSample, sessions: &[SessionSample], at: f64) {
        let t = self.args.thresholds.clone();
        let mut values: Vec<(Option<Uuid>, Resource, f64, f64)> = vec![
            (None, Resource::Cpu, host.cpu_percent, t.cpu_percent),
            (
                None,
                Resource::Memory,
                host.memory_percent,
                t.memory_percent,
            ),
        ];
        let mut ledger = self.args.shared.ledger();
        for s in sessions {
            let id = Some(s.session_id);
            values.push((id, Resource::Cpu, s.cpu_percent, t.cpu_percent));
            values.push((
                id,
                Resource::ErrorRate,
                ledger.error_rate(s.session_id, at),
                t.error_rate_per_hour,
            ));
            values.push((
                id,
                Resource::ResponseTime,
                ledger.response_ms(s.session_id, at),
                t.response_time_ms as f64,
            ));
            if let Some(memory) = s.memory_percent {
                values.push((id, Resource::Memory, memory, t.memory_percent));
            }
            if let Some(disk) = s.disk_percent {
                values.push((id, Resource::Disk, disk, t.disk_percent));
            }
        }
        drop(ledger);
        let shared = Arc::clone(&self.args.shared);
        let mut lines = shared.lines();
        for &(session, resource, value, threshold) in &values {
            let line = lines.entry((session, resource)).or_insert(Line {
                state: LineState::default(),
                alert: None,
            });
            match step(&mut line.state, value, threshold, Hysteresis::default()) {
                Transition::None => {}
                Transition::Raise(severity) => {
                    let alert = ResourceAlert {
                        id: Uuid::new_v4(),
                        session,
                        resource,
                        severity,
                        message: message(session, resource, value, threshold),
                        value,
                        threshold,
                        raised_at: at,
                    };
                    line.alert = Some(alert.clone());
                    self.raise(alert);
                }
                Transition::Resolve => {
                    if let Some(mut alert) = line.alert.take() {
                        alert.value = value;
                        self.resolve(alert);
                    }
                }
            }
        }
        // A session that is gone (terminated, purged) has nothing left to alert about.
        // A set, not a scan of `values` per line: with 10,000 sessions that scan was 1.6
        // billion comparisons a tick, 40 % of an idle server's CPU.
        let watched: HashSet<(Option<Uuid>, Resource)> = values
            .iter()
            .map(|&(session, resource, ..)| (session, resource))
            .collect();
        let gone: Vec<_> = lines
            .keys()
            .filter(|key| !watched.contains(key))
            .copied()
            .collect();
        for key in gone {
            if let Some(Line {
                alert: Some(alert), ..
            }) = lines.remove(&key)
            {
                self.resolve(alert);
            }
        }
    }

    fn raise(&self, alert: ResourceAlert) {
        tracing::warn!(id = %alert.id, kind = alert.resource.as_str(), "{}", alert.message);
        self.args
            .shared
            .latest()
            .alerts
            .insert(alert.id, alert.clone());
        self.args.shared.changed();
        self.args
            .registry
            .bus()
            .publish(SessionEvent::Alert(Box::new(alert.clone())));
        let _ = self.args.notices.send(Notice::Raised(Arc::new(alert)));
    }

    fn resolve(&self, alert: ResourceAlert) {
        tracing::info!(id = %alert.id, kind = alert.resource.as_str(), "alert resolved");
        self.args.shared.latest().alerts.remove(&alert.id);
        self.args.shared.changed();
        self.args
            .registry
            .bus()
            .publish(SessionEvent::AlertResolved(Box::new(alert.clone())));
        let _ = self.args.notices.send(Notice::Resolved(Arc::new(alert)));
    }
}

fn session_sample(
    t: Target,
    at: f64,
    agents: Vec<AgentSample>,
    disks: &mut HashMap<PathBuf, Option<f64>>,
) -> SessionSample {
    let memory_mb: f64 = agents.iter().map(|a| a.memory_mb).sum();
    let disk = *disks
        .entry(t.dir.clone())
        .or_insert_with(|| disk_percent(&t.dir));
    SessionSample {
        session_id: t.id,
        at,
        cpu_percent: agents.iter().map(|a| a.cpu_percent).sum(),
        memory_mb,
        memory_percent: (t.max_memory_mb > 0).then(|| memory_mb / t.max_memory_mb as f64 * 100.0),
        disk_percent: disk,
        agents_running: t.running,
        agents_total: t.total,
        restarts: t.restarts,
        errors: t.errors,
        agents,
    }
}

fn message(session: Option<Uuid>, resource: Resource, value: f64, threshold: f64) -> String {
    let what = match (session, resource) {
        (None, Resource::Cpu) => "host CPU".to_owned(),
        (None, Resource::Memory) => "host memory".to_owned(),
        (None, Resource::Disk) => "host disk".to_owned(),
        (Some(id), Resource::Cpu) => format!("session {id} CPU"),
        (Some(id), Resource::Memory) => format!("session {id} memory (of max_memory_mb)"),
        (Some(id), Resource::Disk) => format!("session {id} working directory disk"),
        (None, Resource::ErrorRate | Resource::ResponseTime) => "the host".to_owned(),
        (Some(id), Resource::ErrorRate) => {
            return format!(
                "session {id} had {value:.0} errors in the last hour, over {threshold} per hour"
            )
        }
        (Some(id), Resource::ResponseTime) => {
            return format!(
                "session {id} tool response time at {value:.0} ms (5-minute mean) is over {threshold} ms"
            )
        }
    };
    format!("{what} at {value:.1} % is over {threshold} %")
}

fn count<T>(items: impl Iterator<Item = T>) -> u64 {
    items.count() as u64
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: f64, cpu: f64, memory: f64) -> SessionSample {
        SessionSample {
            session_id: Uuid::nil(),
            at,
            cpu_percent: cpu,
            memory_mb: memory,
            memory_percent: None,
            disk_percent: None,
            agents_running: 0,
            agents_total: 0,
            restarts: 0,
            errors: 0,
            agents: Vec::new(),
        }
    }

    #[test]
    fn a_summary_averages_the_last_hour_and_peaks_over_all() {
        let points = [
            point(0.0, 90.0, 500.0),
            point(7000.0, 10.0, 100.0),
            point(7100.0, 30.0, 300.0),
        ];
        let summary = summarize(&points, 7200.0);
        assert_eq!(summary.total_data_points, 3);
        assert_eq!(summary.points_last_hour, 2);
        assert_eq!(summary.average_cpu_percent, Some(20.0));
        assert_eq!(summary.average_memory_mb, Some(200.0));
        assert_eq!(summary.peak_cpu_percent, Some(90.0));
        assert_eq!(summary.peak_memory_mb, Some(500.0));
        let empty = summarize(&[], 0.0);
        assert_eq!((empty.total_data_points, empty.peak_cpu_percent), (0, None));
    }

    #[test]
    fn thinning_keeps_at_most_max_and_the_last_point() {
        let thinned = thin((0..10_000).collect::<Vec<_>>(), 3600);
        assert!(thinned.len() <= 3600, "{}", thinned.len());
        assert!(thinned.len() > 3000, "{}", thinned.len());
        assert_eq!(thinned.last(), Some(&9_999));
        assert_eq!(thin(vec![1, 2, 3], 10), [1, 2, 3]);
    }
}
