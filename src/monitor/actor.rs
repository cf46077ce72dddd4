//! The sampling actor: one tick every `monitor.interval_seconds` lists the live sessions
//! through the registry's handle, samples them off the async workers, feeds each value to
//! its line, publishes and stores; hourly it thins, archives and prunes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::config::Thresholds;
use crate::session::{EventBus, SessionEvent, SessionRegistry};
use crate::supervision::ChildState;

use super::sample::{disk_percent, Sampler};
use super::sink::Notice;
use super::store::{self, Batch};
use super::{
    archive, logs, now, step, AgentSample, HostSample, Hysteresis, Line, LineState, Resource,
    ResourceAlert, SessionSample, Shared, Transition,
};

/// How often samples past `monitor.retention_hours` are deleted (and at the first tick).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Samples younger than this keep every tick; older ones are thinned to one per minute.
const FULL_RESOLUTION: Duration = Duration::from_secs(3600);

pub(super) struct MonitorActor;

/// The monitor's messages.
#[derive(Debug)]
pub enum MonitorMsg {
    /// Sample now; the next tick is scheduled when this one ends.
    Tick,
}

#[derive(Clone)]
pub(super) struct Args {
    pub(super) interval: Duration,
    pub(super) retention: Duration,
    pub(super) archive_dir: PathBuf,
    pub(super) log_dir: PathBuf,
    pub(super) log_retention: Duration,
    pub(super) thresholds: Thresholds,
    pub(super) registry: SessionRegistry,
    pub(super) shared: Arc<Shared>,
    pub(super) notices: mpsc::Sender<Notice>,
}

pub(super) struct MonitorState {
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
        raise(
            &self.args.shared,
            self.args.registry.bus(),
            &self.args.notices,
            alert,
        );
    }

    fn resolve(&self, alert: ResourceAlert) {
        resolve(
            &self.args.shared,
            self.args.registry.bus(),
            &self.args.notices,
            alert,
        );
    }
}

/// Opens `alert`: kept in the open list, announced on the bus, handed to the sinks.
pub(super) fn raise(
    shared: &Shared,
    bus: &EventBus,
    notices: &mpsc::Sender<Notice>,
    alert: ResourceAlert,
) {
    tracing::warn!(id = %alert.id, kind = alert.resource.as_str(), "{}", alert.message);
    shared.latest().alerts.insert(alert.id, alert.clone());
    shared.changed();
    bus.publish(SessionEvent::Alert(Box::new(alert.clone())));
    let _ = notices.send(Notice::Raised(Arc::new(alert)));
}

/// Closes `alert` (its `value` the one that resolved it), as [`raise`] opened it.
pub(super) fn resolve(
    shared: &Shared,
    bus: &EventBus,
    notices: &mpsc::Sender<Notice>,
    alert: ResourceAlert,
) {
    tracing::info!(id = %alert.id, kind = alert.resource.as_str(), "alert resolved");
    shared.latest().alerts.remove(&alert.id);
    shared.changed();
    bus.publish(SessionEvent::AlertResolved(Box::new(alert.clone())));
    let _ = notices.send(Notice::Resolved(Arc::new(alert)));
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
        // Raised by the `claude` module with messages of their own, never by a sample.
        (_, Resource::ClaudeWaiting | Resource::CostBudget) => {
            return format!("{} at {value} is over {threshold}", resource.as_str())
        }
    };
    format!("{what} at {value:.1} % is over {threshold} %")
}

fn count<T>(items: impl Iterator<Item = T>) -> u64 {
    items.count() as u64
}
