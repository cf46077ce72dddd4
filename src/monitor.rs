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
//! Readers (the API) never wait on a tick: the latest samples and the open alerts are kept in
//! a shared snapshot that [`Monitor`] reads; history is read from storage.

mod archive;
mod sample;
mod store;
mod threshold;

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::agent::Severity;
use crate::config::{Settings, Thresholds};
use crate::session::{SessionEvent, SessionRegistry};
use crate::storage::{Storage, StorageError};
use crate::supervision::ChildState;

pub use sample::{AgentSample, HostSample};
pub use threshold::{severity, step, Hysteresis, LineState, Transition};

use sample::{disk_percent, Sampler};
use store::Batch;

/// How often samples past `monitor.retention_hours` are deleted (and at the first tick).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Most points a history answer holds; longer histories are thinned evenly.
pub const MAX_POINTS: usize = 3600;

/// One session at one instant: the sum of its agents' process trees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSample {
    /// The session.
    pub session_id: Uuid,
    /// Unix seconds.
    pub at: f64,
    /// CPU of every agent's tree; 100 is one core busy.
    pub cpu_percent: f64,
    /// Resident memory of every agent's tree, MiB.
    pub memory_mb: f64,
    /// `memory_mb` as a percentage of the session's `max_memory_mb`.
    pub memory_percent: Option<f64>,
    /// Use of the file system holding the working directory, percent.
    pub disk_percent: Option<f64>,
    /// Agents running.
    pub agents_running: u64,
    /// Agents configured.
    pub agents_total: u64,
    /// Restarts made so far, all agents.
    pub restarts: u64,
    /// Agents failed.
    pub errors: u64,
    /// Each agent with a live process.
    pub agents: Vec<AgentSample>,
}

/// What a resource alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// CPU use (host: all CPUs; session: its agents, 100 = one core).
    Cpu,
    /// Memory use (host: of the installed memory; session: of its `max_memory_mb`).
    Memory,
    /// Use of a working directory's file system.
    Disk,
}

impl Resource {
    /// The snake_case word used on the wire as the alert's `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu_usage",
            Resource::Memory => "memory_usage",
            Resource::Disk => "disk_usage",
        }
    }
}

/// One resource alert, from raise to resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceAlert {
    /// Stable from raise to resolution.
    pub id: Uuid,
    /// The session, or `None` for the host.
    pub session: Option<Uuid>,
    /// What crossed its line.
    pub resource: Resource,
    /// How far over the line it was when raised.
    pub severity: Severity,
    /// For people.
    pub message: String,
    /// The value that raised it (in a resolution: the value that resolved it).
    pub value: f64,
    /// The line.
    pub threshold: f64,
    /// Unix seconds it was raised at.
    pub raised_at: f64,
}

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
    sinks: Mutex<Vec<Arc<dyn AlertSink>>>,
}

impl Shared {
    fn latest(&self) -> MutexGuard<'_, Latest> {
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sinks(&self) -> Vec<Arc<dyn AlertSink>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The monitor's handle; cloning shares it.
#[derive(Clone)]
pub struct Monitor {
    actor: ActorRef<MonitorMsg>,
    shared: Arc<Shared>,
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
            sinks: Mutex::new(Vec::new()),
        });
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
            thresholds: settings.monitor.thresholds.clone(),
            registry,
            shared: Arc::clone(&shared),
            notices,
        };
        let (actor, _) = Actor::spawn(None, MonitorActor, args)
            .await
            .map_err(|e| MonitorError::Spawn(e.to_string()))?;
        Ok(Monitor { actor, shared })
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

    /// A session's stored samples taken at or after `since` (Unix seconds), oldest first.
    pub async fn history(
        &self,
        session: Uuid,
        since: f64,
    ) -> Result<Vec<SessionSample>, StorageError> {
        store::session_history(&self.shared.storage, session, since).await
    }

    /// The [`summarize`] figures of a session's stored samples taken at or after `since`
    /// (Unix seconds) as of `now`, computed by the database: no sample is read out, so a
    /// session with hours of history costs one indexed aggregate, not thousands of rows.
    pub async fn summary(
        &self,
        session: Uuid,
        since: f64,
        now: f64,
    ) -> Result<Summary, StorageError> {
        store::session_summary(&self.shared.storage, session, since, now).await
    }

    /// Stops sampling and waits until the actor is gone (its last tick finished).
    pub async fn stop(&self) {
        let _ = self.actor.stop_and_wait(None, None).await;
    }
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

struct MonitorActor;

/// The monitor's messages.
#[derive(Debug)]
pub enum MonitorMsg {
    /// Sample now; the next tick is scheduled when this one ends.
    Tick,
}

struct Args {
    interval: Duration,
    retention: Duration,
    archive_dir: PathBuf,
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
    lines: HashMap<(Option<Uuid>, Resource), Line>,
    last_prune: Option<Instant>,
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
        Ok(MonitorState {
            args,
            sampler: Arc::new(Mutex::new(sampler)),
            lines: HashMap::new(),
            last_prune: None,
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
        let batch = Batch {
            host: Some(host),
            sessions,
        };
        if let Err(error) = store::insert(&self.args.shared.storage, batch).await {
            tracing::warn!(%error, "monitor samples not stored");
        }
        if self
            .last_prune
            .is_none_or(|last| last.elapsed() >= PRUNE_EVERY)
        {
            self.last_prune = Some(Instant::now());
            let before = at - self.args.retention.as_secs_f64();
            let storage = &self.args.shared.storage;
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
        }
    }

    /// The live sessions and their agents' processes, through the registry's handle.
    async fn targets(&self) -> Vec<Target> {
        let registry = &self.args.registry;
        let records = match registry.list().await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "the monitor cannot list the sessions");
                return Vec::new();
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
        targets
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
        for s in sessions {
            let id = Some(s.session_id);
            values.push((id, Resource::Cpu, s.cpu_percent, t.cpu_percent));
            if let Some(memory) = s.memory_percent {
                values.push((id, Resource::Memory, memory, t.memory_percent));
            }
            if let Some(disk) = s.disk_percent {
                values.push((id, Resource::Disk, disk, t.disk_percent));
            }
        }
        for &(session, resource, value, threshold) in &values {
            let line = self.lines.entry((session, resource)).or_insert(Line {
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
        let gone: Vec<_> = self
            .lines
            .keys()
            .filter(|(s, r)| !values.iter().any(|v| v.0 == *s && v.1 == *r))
            .copied()
            .collect();
        for key in gone {
            if let Some(Line {
                alert: Some(alert), ..
            }) = self.lines.remove(&key)
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
        self.args
            .registry
            .bus()
            .publish(SessionEvent::Alert(Box::new(alert.clone())));
        let _ = self.args.notices.send(Notice::Raised(Arc::new(alert)));
    }

    fn resolve(&self, alert: ResourceAlert) {
        tracing::info!(id = %alert.id, kind = alert.resource.as_str(), "alert resolved");
        self.args.shared.latest().alerts.remove(&alert.id);
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
