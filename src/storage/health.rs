//! What the writer thread has learnt about the storage's condition: whether writes fail
//! (and why, since when) and whether a job is taking long. The writer records it as jobs
//! run; `/health` reads it through [`Storage::health`](super::Storage::health).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::Fault;

/// The storage's condition at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageHealth {
    /// The fault the last failing job hit, and since when (Unix seconds); cleared by the
    /// next job that writes successfully (a read succeeding proves nothing about writes).
    pub fault: Option<(Fault, f64)>,
    /// How long the job (or group of jobs sharing one transaction) running now has been
    /// running, if one is.
    pub busy_for: Option<Duration>,
    /// Jobs waiting behind it.
    pub queued: usize,
}

/// What group commit has done so far: how many transactions the writer committed for
/// groups of jobs, and how many jobs they held (jobs run alone are not counted). For logs,
/// benchmarks and tests that must know jobs were grouped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commits {
    /// Group transactions committed.
    pub groups: u64,
    /// Jobs those transactions held.
    pub jobs: u64,
}

/// Shared between the handles (which read it) and the writer thread (which updates it).
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker(Arc<Mutex<Condition>>);

#[derive(Debug, Default)]
struct Condition {
    fault: Option<(Fault, f64)>,
    busy_since: Option<Instant>,
    last_probe: Option<Instant>,
    commits: Commits,
}

/// Least time between two probes.
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl Tracker {
    /// A job starts.
    pub(super) fn started(&self) {
        self.lock().busy_since = Some(Instant::now());
    }

    /// A job ended: `fault` is what its failure says about the storage (if it failed for
    /// such a reason), `wrote` whether it changed the database.
    pub(super) fn ended(&self, fault: Option<Fault>, wrote: bool) {
        let mut condition = self.lock();
        condition.busy_since = None;
        match fault {
            // The same fault keeps its first time: "since" is when the trouble began.
            Some(fault) if condition.fault.map(|(kind, _)| kind) != Some(fault) => {
                condition.fault = Some((fault, unix_now()));
            }
            None if wrote => condition.fault = None,
            _ => {}
        }
    }

    /// A group of `jobs` jobs was committed.
    pub(super) fn committed(&self, jobs: usize) {
        let mut condition = self.lock();
        condition.commits.groups += 1;
        condition.commits.jobs += jobs as u64;
    }

    /// The group commits so far.
    pub(super) fn commits(&self) -> Commits {
        self.lock().commits
    }

    /// Whether a probe may be sent now (none in the last [`PROBE_EVERY`]); counts it.
    pub(super) fn may_probe(&self) -> bool {
        let mut condition = self.lock();
        if condition
            .last_probe
            .is_some_and(|at| at.elapsed() < PROBE_EVERY)
        {
            return false;
        }
        condition.last_probe = Some(Instant::now());
        true
    }

    /// The condition now, with `queued` jobs waiting.
    pub(super) fn read(&self, queued: usize) -> StorageHealth {
        let condition = self.lock();
        StorageHealth {
            fault: condition.fault,
            busy_for: condition.busy_since.map(|since| since.elapsed()),
            queued,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Condition> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_keeps_its_start_until_a_write_succeeds_and_a_read_clears_nothing() {
        let tracker = Tracker::default();
        assert_eq!(tracker.read(0).fault, None);
        tracker.started();
        assert!(tracker.read(3).busy_for.is_some());
        tracker.ended(Some(Fault::Full), false);
        let (kind, since) = tracker.read(0).fault.unwrap();
        assert_eq!(kind, Fault::Full);
        assert!(tracker.read(0).busy_for.is_none());
        tracker.ended(Some(Fault::Full), false);
        assert_eq!(tracker.read(0).fault, Some((Fault::Full, since)));
        tracker.ended(None, false);
        assert_eq!(tracker.read(0).fault, Some((Fault::Full, since)), "a read");
        tracker.ended(Some(Fault::Unavailable), false);
        assert_eq!(tracker.read(0).fault.unwrap().0, Fault::Unavailable);
        tracker.ended(None, true);
        assert_eq!(tracker.read(0).fault, None);
    }
}
