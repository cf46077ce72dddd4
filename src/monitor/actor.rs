//! The sampling actor. One tick every `monitor.interval_seconds`: lists the live sessions
//! through the registry's handle when anything changed, asks the sessions that can have
//! changed (`watch`: never waiting past a deadline), picks up the file systems' use
//! (`disk`: read once per file system, never waited for), samples the host and the agents'
//! processes off the async workers, feeds each value over its line (and the lines already
//! counting) to its line, and publishes and stores what changed (`series`). Hourly it
//! thins, archives and prunes.
//!
//! What an idle server costs per tick is thus one look at the bus's last seq, the host's
//! figures, one pass over the sessions comparing figures, and one row for the host.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use uuid::Uuid;

use crate::config::Thresholds;
use crate::session::{EventBus, SessionEvent, SessionRegistry};

use super::disk::{Device, Disks};
use super::sample::Sampler;
use super::sink::Notice;
use super::store::{self, Batch};
use super::watch::{Asks, Watched};
use super::{
    archive, logs, now, step, AgentSample, Hysteresis, Line, LineState, Resource, ResourceAlert,
    SessionSample, Shared, Transition,
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
    /// How often each file system's use is read.
    pub(super) disk_interval: Duration,
    /// How long unchanged figures of a session go unstored.
    pub(super) unchanged_every: Duration,
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
    /// The live sessions.
    sessions: HashMap<Uuid, Watched>,
    /// The registry's generation at the last listing: unchanged since, nothing to list.
    listed_seq: Option<u64>,
    /// Listings made (what `Watched::seen` counts in).
    listings: u64,
    /// Sessions to ask: new, or their record changed.
    stale: HashSet<Uuid>,
    /// Sessions with agents that run processes: asked and sampled at every tick.
    processes: HashSet<Uuid>,
    /// When each session's unchanged figures are due to be stored again (milliseconds),
    /// earliest first; entries a later store made stale are skipped.
    due: BinaryHeap<Reverse<(u64, Uuid)>>,
    /// The file systems the sessions work on.
    devices: HashSet<Device>,
    asks: Asks,
    disks: Disks,
    /// The last tick looked at [`BURST_VISITS`] sessions or more.
    burst: bool,
}

/// Sessions looked at in one tick that make it a burst (a restore's first look at each):
/// the next quieter tick hands the memory it used back (`trim_after_burst`).
const BURST_VISITS: usize = 1_000;

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
            asks: Asks::new(args.registry.clone()),
            args,
            sampler: Arc::new(Mutex::new(sampler)),
            last_prune: None,
            thinned_until: 0.0,
            sessions: HashMap::new(),
            listed_seq: None,
            listings: 0,
            stale: HashSet::new(),
            processes: HashSet::new(),
            due: BinaryHeap::new(),
            devices: HashSet::new(),
            disks: Disks::default(),
            burst: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MonitorMsg>,
        state: &mut MonitorState,
    ) -> Result<(), ActorProcessingErr> {
        state.flush().await;
        Ok(())
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

/// A check of one watched value: its line, the value and where the line is.
type Value = (Option<Uuid>, Resource, f64, f64);

impl MonitorState {
    /// After ticks that looked at many sessions, the first quieter one hands the memory
    /// they used and freed (views, samples, rows and events in flight) back to the system:
    /// 100,000 restored sessions otherwise keep ~1 GB of the first look's peak resident.
    fn trim_after_burst(&mut self, visited: usize) {
        if visited >= BURST_VISITS {
            self.burst = true;
        } else if std::mem::take(&mut self.burst) {
            tokio::task::spawn_blocking(crate::session::release_freed_memory);
        }
    }

    async fn tick(&mut self) {
        let at = now();
        let gone = self.refresh().await;
        for id in self.stale.drain().chain(self.processes.iter().copied()) {
            self.asks.ask(id);
        }
        let deadline = tokio::time::Instant::now() + ask_deadline(self.args.interval);
        let answers = self.asks.answers(deadline).await;
        // What is looked at this tick: the sessions that answered, those running processes,
        // those whose repeat is due, and those whose file system's use moved.
        let mut visit: HashSet<Uuid> = HashSet::new();
        {
            let mut ledger = self.args.shared.ledger();
            for (id, agents) in answers {
                let (Some(agents), Some(w)) = (agents, self.sessions.get_mut(&id)) else {
                    continue;
                };
                w.answered(&agents);
                if w.processes {
                    self.processes.insert(id);
                } else {
                    self.processes.remove(&id);
                }
                if let Some(counts) = w.counts {
                    ledger.note_restarts(id, counts.restarts, at);
                }
                visit.insert(id);
            }
        }
        *self.args.shared.unresponsive() = self.asks.unanswered();
        let mut mapped = false;
        for (id, path, device) in self.disks.mapped() {
            if let Some(w) = self.sessions.get_mut(&id) {
                // Unless it moved meanwhile (mapped again, then).
                if w.dir() == path {
                    w.device = device;
                    mapped = true;
                    // Its file system's figure, once read, is the session's at once.
                    visit.insert(id);
                }
            }
        }
        if mapped {
            self.devices = self.sessions.values().filter_map(|w| w.device).collect();
        }
        let devices = &self.devices;
        let moved = self
            .disks
            .read(self.args.disk_interval, |device| devices.contains(&device));
        if !moved.is_empty() {
            visit.extend(
                self.sessions
                    .iter()
                    .filter(|(_, w)| w.device.is_some_and(|d| moved.contains(&d)))
                    .map(|(id, _)| *id),
            );
        }
        visit.extend(self.processes.iter().copied());
        let now_ms = millis(at);
        while let Some(&Reverse((due, id))) = self.due.peek() {
            if due > now_ms {
                break;
            }
            self.due.pop();
            // Entries of a series stored again since (or of a session gone) are stale.
            if self
                .sessions
                .get(&id)
                .is_some_and(|w| due_key(w.series.due()) == due)
            {
                visit.insert(id);
            }
        }
        let visit: Vec<Uuid> = visit.into_iter().collect();
        self.trim_after_burst(visit.len());

        let pids: Vec<(String, u32)> = visit
            .iter()
            .filter_map(|id| self.sessions.get(id))
            .flat_map(|w| w.pids.iter().cloned())
            .collect();
        let sampler = Arc::clone(&self.sampler);
        let sampled = tokio::task::spawn_blocking(move || {
            let mut sampler = sampler.lock().unwrap_or_else(|p| p.into_inner());
            (sampler.host(at), sampler.agents(&pids))
        })
        .await;
        let (host, agents) = match sampled {
            Ok(sampled) => sampled,
            Err(error) => {
                tracing::error!(%error, "a monitor sample failed");
                return;
            }
        };
        let t = self.args.thresholds.clone();
        let every = self.args.unchanged_every.as_secs_f64();
        let interval = self.args.interval.as_secs_f64();
        let mut values: Vec<Value> = vec![
            (None, Resource::Cpu, host.cpu_percent, t.cpu_percent),
            (
                None,
                Resource::Memory,
                host.memory_percent,
                t.memory_percent,
            ),
        ];
        let mut rows = Vec::new();
        let mut updated = Vec::new();
        let (mut cpu, mut memory) = (0.0, 0.0);
        // In the order `pids` was read in.
        let mut agents = agents.into_iter();
        for id in visit {
            let Some(w) = self.sessions.get_mut(&id) else {
                continue;
            };
            let samples: Vec<AgentSample> = agents.by_ref().take(w.pids.len()).flatten().collect();
            let disk = w.device.and_then(|device| self.disks.percent(device));
            let Some(sample) = w.sample(at, samples, disk) else {
                continue;
            };
            cpu += sample.cpu_percent;
            memory += sample.memory_mb;
            let session = Some(id);
            if sample.cpu_percent > t.cpu_percent {
                values.push((session, Resource::Cpu, sample.cpu_percent, t.cpu_percent));
            }
            if let Some(m) = sample.memory_percent.filter(|&m| m > t.memory_percent) {
                values.push((session, Resource::Memory, m, t.memory_percent));
            }
            if let Some(d) = disk.filter(|&d| d > t.disk_percent) {
                values.push((session, Resource::Disk, d, t.disk_percent));
            }
            let due = w.series.due();
            let fed = w.series.feed(sample, every, interval);
            if w.series.due() != due {
                self.due.push(Reverse((due_key(w.series.due()), id)));
            }
            rows.extend(fed.rows);
            updated.extend(fed.latest);
        }
        rows.extend(gone.iter().filter_map(|(_, row)| row.clone()));
        {
            let mut ledger = self.args.shared.ledger();
            for (id, errors, response_ms) in ledger.windows(at) {
                if !self.sessions.contains_key(&id) {
                    continue;
                }
                if errors > t.error_rate_per_hour {
                    let line = (Some(id), Resource::ErrorRate, errors, t.error_rate_per_hour);
                    values.push(line);
                }
                let limit = t.response_time_ms as f64;
                if response_ms > limit {
                    values.push((Some(id), Resource::ResponseTime, response_ms, limit));
                }
            }
        }
        self.args
            .shared
            .trends()
            .add(at, (host.cpu_percent, host.memory_percent), (cpu, memory));
        self.check(values, at);
        let bus = self.args.registry.bus();
        for sample in &updated {
            bus.publish(SessionEvent::Metrics(Arc::clone(sample)));
        }
        {
            let mut latest = self.args.shared.latest();
            latest.host = Some(host.clone());
            for (id, _) in &gone {
                latest.sessions.remove(id);
            }
            for sample in &updated {
                latest
                    .sessions
                    .insert(sample.session_id, Arc::clone(sample));
            }
            latest.ticks += 1;
        }
        if !updated.is_empty() || !gone.is_empty() {
            self.args.shared.changed();
        }
        let stored_sessions = !rows.is_empty();
        let batch = Batch {
            host: Some(host),
            sessions: rows,
        };
        if let Err(error) = store::insert(&self.args.shared.storage, batch).await {
            tracing::warn!(%error, "monitor samples not stored");
        }
        if stored_sessions {
            self.args.shared.samples_changed();
        }
        self.housekeeping(at).await;
    }

    /// Lists the sessions again when the registry's generation moved since the last listing
    /// (a session came, went or changed); an idle server lists nothing.
    /// Returns the sessions that left, each with the row that stands for its samples not
    /// stored yet.
    async fn refresh(&mut self) -> Vec<(Uuid, Option<(Arc<SessionSample>, u64)>)> {
        let seq = self.args.registry.generation();
        if self.listed_seq == Some(seq) {
            return Vec::new();
        }
        let records = match self.args.registry.records().await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(%error, "the monitor cannot list the sessions");
                return Vec::new();
            }
        };
        self.listed_seq = Some(seq);
        self.listings += 1;
        let listing = self.listings;
        let mut moved = Vec::new();
        for record in records.into_iter().filter(|r| !r.status.is_terminal()) {
            let id = record.id;
            match self.sessions.get_mut(&id) {
                Some(w) => {
                    w.seen = listing;
                    if !Arc::ptr_eq(&w.record, &record) {
                        let dir_changed = w.record.configuration.working_directory
                            != record.configuration.working_directory;
                        w.record = record;
                        self.stale.insert(id);
                        if dir_changed {
                            w.device = None;
                            moved.push((id, w.dir()));
                        }
                    }
                }
                None => {
                    let w = Watched::new(record, listing);
                    moved.push((id, w.dir()));
                    self.stale.insert(id);
                    self.sessions.insert(id, w);
                }
            }
        }
        let left: Vec<Uuid> = self
            .sessions
            .iter()
            .filter(|(_, w)| w.seen != listing)
            .map(|(id, _)| *id)
            .collect();
        self.disks.map(moved);
        let at = now();
        let interval = self.args.interval.as_secs_f64();
        let gone: Vec<_> = left
            .into_iter()
            .filter_map(|id| {
                let mut w = self.sessions.remove(&id)?;
                self.asks.forget(id);
                self.processes.remove(&id);
                self.stale.remove(&id);
                Some((id, w.series.flush(at, interval)))
            })
            .collect();
        if !gone.is_empty() {
            self.devices = self.sessions.values().filter_map(|w| w.device).collect();
        }
        gone
    }

    /// Hourly: thins, archives and prunes the stored samples, and deletes old log files.
    async fn housekeeping(&mut self, at: f64) {
        if self
            .last_prune
            .is_some_and(|last| last.elapsed() < PRUNE_EVERY)
        {
            return;
        }
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
        if self.listed_seq.is_none() {
            return;
        }
        let live: HashSet<String> = self.sessions.keys().map(Uuid::to_string).collect();
        let dir = self.args.log_dir.clone();
        let before = std::time::SystemTime::now()
            .checked_sub(self.args.log_retention)
            .unwrap_or(std::time::UNIX_EPOCH);
        let pruned =
            tokio::task::spawn_blocking(move || logs::prune_logs(&dir, before, &live)).await;
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

    /// Stores what the sessions' series hold unstored (at a stop).
    async fn flush(&mut self) {
        let (at, interval) = (now(), self.args.interval.as_secs_f64());
        let rows: Vec<_> = self
            .sessions
            .values_mut()
            .filter_map(|w| w.series.flush(at, interval))
            .collect();
        if rows.is_empty() {
            return;
        }
        let batch = Batch {
            host: None,
            sessions: rows,
        };
        if let Err(error) = store::insert(&self.args.shared.storage, batch).await {
            tracing::warn!(%error, "the monitor's last samples not stored");
        }
        self.args.shared.samples_changed();
    }

    /// Feeds every watched value to its line; publishes and remembers what changed.
    /// `values` holds the host's and the values over their line; every line already
    /// counting or open gets its value too (so it can resolve), and a line whose session
    /// left is resolved. Lines back at rest are dropped: with 10,000 quiet sessions the
    /// tick steps a handful of lines, not 50,000.
    fn check(&mut self, mut values: Vec<Value>, at: f64) {
        let t = self.args.thresholds.clone();
        let shared = Arc::clone(&self.args.shared);
        let mut lines = shared.lines();
        let fed: HashSet<(Option<Uuid>, Resource)> = values
            .iter()
            .map(|&(session, resource, ..)| (session, resource))
            .collect();
        let mut gone = Vec::new();
        {
            let mut ledger = shared.ledger();
            for &(session, resource) in lines.keys() {
                if fed.contains(&(session, resource)) {
                    continue;
                }
                let watched = session.and_then(|id| self.sessions.get(&id));
                let value = match (watched, resource) {
                    (Some(w), Resource::Cpu) => Some((w.figures.cpu_percent, t.cpu_percent)),
                    (Some(w), Resource::Memory) => {
                        w.figures.memory_percent.map(|m| (m, t.memory_percent))
                    }
                    (Some(w), Resource::Disk) => {
                        w.figures.disk_percent.map(|d| (d, t.disk_percent))
                    }
                    (Some(w), Resource::ErrorRate) => {
                        Some((ledger.error_rate(w.record.id, at), t.error_rate_per_hour))
                    }
                    (Some(w), Resource::ResponseTime) => Some((
                        ledger.response_ms(w.record.id, at),
                        t.response_time_ms as f64,
                    )),
                    _ => None,
                };
                match value {
                    Some((value, threshold)) => values.push((session, resource, value, threshold)),
                    None => gone.push((session, resource)),
                }
            }
        }
        // A session that is gone (terminated, purged) has nothing left to alert about.
        for key in gone {
            if let Some(Line {
                alert: Some(alert), ..
            }) = lines.remove(&key)
            {
                self.resolve(alert);
            }
        }
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
        lines.retain(|_, line| line.alert.is_some() || line.state != LineState::default());
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

/// Unix seconds as whole milliseconds, rounded down: a tick's time.
fn millis(at: f64) -> u64 {
    (at * 1000.0) as u64
}

/// A due time as the heap orders it, rounded up: popped only by a tick at or after it, so
/// the series, fed then, is due indeed (rounded down, a tick within the same millisecond
/// but before it would pop the entry and find nothing due, and the repeat would be lost).
fn due_key(due: f64) -> u64 {
    (due * 1000.0).ceil() as u64
}

/// How long a tick waits for the sessions it asked: half the interval, so a late answer
/// never pushes the next tick back.
fn ask_deadline(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(100))
}
