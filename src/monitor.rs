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
//!
//! Layout: this file holds the state the handle and the sampling actor share (`Shared`:
//! latest samples, open alerts, lines, ledger, trends, summaries); `handle.rs` is
//! [`Monitor`] (start, reads, stop); `actor.rs` the sampling actor and its tick;
//! `analytics.rs` `/analytics` and the summaries; `sink.rs` the [`AlertSink`]s and their
//! thread; `hooks.rs` the task that counts hook events; `store.rs` the conversion to
//! storage's rows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ractor::ActorCell;
use uuid::Uuid;

use crate::config::Thresholds;
use crate::storage::Storage;

mod activity;
mod actor;
mod analytics;
mod archive;
mod disk;
mod handle;
mod hooks;
mod logs;
mod sample;
mod series;
mod sink;
mod store;
mod threshold;
mod trend;
mod watch;

pub use crate::session::{AgentSample, Resource, ResourceAlert, SessionSample};
pub use activity::{Activity, ERROR_WINDOW_SECONDS, RESPONSE_WINDOW_SECONDS};
pub use actor::MonitorMsg;
pub use analytics::{summarize, thin, Analytics, Summary, TrendHour};
pub use handle::{Monitor, MonitorError, MonitorStatus};
pub use sample::HostSample;
pub use sink::AlertSink;
pub use threshold::{severity, step, Hysteresis, LineState, Transition};
pub use trend::{anomaly, hour_of, Anomaly, Hour, MIN_HISTORY, TREND_HOURS};

use activity::Ledger;
use trend::Trends;

/// Most points a history answer holds; longer histories are thinned evenly.
pub const MAX_POINTS: usize = 3600;

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
    /// Sessions that did not answer the sampling actor in time, and have not since.
    unresponsive: Mutex<Vec<Uuid>>,
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

    fn unresponsive(&self) -> MutexGuard<'_, Vec<Uuid>> {
        self.unresponsive.lock().unwrap_or_else(|p| p.into_inner())
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

/// One watched value's line: its hysteresis state and the alert it holds open.
struct Line {
    state: LineState,
    alert: Option<ResourceAlert>,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
