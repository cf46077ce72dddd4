//! A session's samples over time, as stored: pure. A sample is stored when its figures
//! changed, or when the same figures have gone unstored for `every` seconds; the row then
//! stands for the samples it replaces (`ticks`), so means, counts and trend hours read from
//! the stored rows say what one row per tick would have said. When figures change after a
//! stretch of unchanged ones, the last of that stretch is stored too, at its own time: a
//! chart drawn from the rows is flat where the session was flat and steps where it stepped.
//!
//! An idle session of logical agents thus costs one row per `every` seconds instead of one
//! per tick — the difference between 10,000 idle sessions being free and being a third of a
//! core.

use std::sync::Arc;

use uuid::Uuid;

use super::{AgentSample, SessionSample};

/// Smallest CPU change (percent of a core) that counts as a change.
const CPU_STEP: f64 = 0.1;
/// Smallest memory change (MiB, or percent of the session's limit) that counts.
const MEMORY_STEP: f64 = 0.1;
/// Smallest disk change (percent of the file system) that counts: a file system shared by
/// every session moves by tenths all day, and each move would store a row per session.
const DISK_STEP: f64 = 1.0;

/// What one sample fed to a [`Series`] did.
#[derive(Debug, Default)]
pub(super) struct Fed {
    /// Rows to store, each with the samples it stands for, oldest first.
    pub(super) rows: Vec<(Arc<SessionSample>, u64)>,
    /// The sample is the session's latest now (the figures changed, or were stored again):
    /// publish it. `None` when the latest one stands.
    pub(super) latest: Option<Arc<SessionSample>>,
}

/// One session's stored series. It is fed when something about the session may have
/// changed, not necessarily at every tick (a session of logical agents is looked at only
/// when it answered, its file system's use moved, or its repeat is due): the samples a row
/// stands for are counted in sampling intervals, from the times of the rows.
#[derive(Debug)]
pub(super) struct Series {
    /// The figures last published (and stored, possibly with samples after it unstored).
    last: Option<Arc<SessionSample>>,
    /// When the last row was stored.
    stored_at: f64,
    /// When unchanged figures are stored anyway.
    due: f64,
    /// `every`, as a share, for this session's first row: the sessions a start restores
    /// all begin at once, and spreading their first repeat spreads every later one.
    stagger: f64,
}

impl Series {
    /// A new series for `session`; its first unchanged repeat comes after 50–100 % of the
    /// interval, spread by the id.
    pub(super) fn new(session: Uuid) -> Series {
        let spread = (session.as_u128() % 1000) as f64 / 1000.0;
        Series {
            last: None,
            stored_at: 0.0,
            due: 0.0,
            stagger: 0.5 + spread / 2.0,
        }
    }

    /// When unchanged figures are to be stored again (0 before the first sample).
    pub(super) fn due(&self) -> f64 {
        self.due
    }

    /// Feeds a sample; `every` is the longest a session goes unstored, `interval` the time
    /// between two samples.
    pub(super) fn feed(&mut self, sample: SessionSample, every: f64, interval: f64) -> Fed {
        let at = sample.at;
        match &self.last {
            Some(last) if same(last, &sample) => {
                if at < self.due {
                    return Fed::default();
                }
                let ticks = samples_between(self.stored_at, at, interval);
                let sample = Arc::new(sample);
                let rows = vec![(Arc::clone(&sample), ticks)];
                self.stored(sample.clone(), every);
                Fed {
                    rows,
                    latest: Some(sample),
                }
            }
            previous => {
                let mut rows = Vec::with_capacity(2);
                // The unchanged stretch ended one sample before this one.
                let end = at - interval;
                if let Some(last) = previous
                    .as_ref()
                    .filter(|_| end - self.stored_at >= interval / 2.0)
                {
                    let mut row = SessionSample::clone(last);
                    row.at = end;
                    rows.push((
                        Arc::new(row),
                        samples_between(self.stored_at, end, interval),
                    ));
                }
                let first = previous.is_none();
                let sample = Arc::new(sample);
                rows.push((Arc::clone(&sample), 1));
                let wait = if first { every * self.stagger } else { every };
                self.stored(sample.clone(), wait);
                Fed {
                    rows,
                    latest: Some(sample),
                }
            }
        }
    }

    /// The row that stands for the samples not stored yet, as of `now` (at a stop: nothing
    /// sampled is left out of the history).
    pub(super) fn flush(&mut self, now: f64, interval: f64) -> Option<(Arc<SessionSample>, u64)> {
        let last = self.last.as_ref()?;
        if now - self.stored_at < interval / 2.0 {
            return None;
        }
        let mut row = SessionSample::clone(last);
        row.at = now;
        let ticks = samples_between(self.stored_at, now, interval);
        self.stored_at = now;
        Some((Arc::new(row), ticks))
    }

    fn stored(&mut self, sample: Arc<SessionSample>, wait: f64) {
        self.stored_at = sample.at;
        self.due = sample.at + wait;
        self.last = Some(sample);
    }
}

/// Samples taken after `from` up to `to`, one per `interval` (at least one).
fn samples_between(from: f64, to: f64, interval: f64) -> u64 {
    ((to - from) / interval).round().max(1.0) as u64
}

/// Whether two samples of a session show the same figures (within what a person or an
/// alert could tell apart).
fn same(a: &SessionSample, b: &SessionSample) -> bool {
    a.agents_running == b.agents_running
        && a.agents_total == b.agents_total
        && a.restarts == b.restarts
        && a.errors == b.errors
        && close(a.cpu_percent, b.cpu_percent, CPU_STEP)
        && close(a.memory_mb, b.memory_mb, MEMORY_STEP)
        && close_opt(a.memory_percent, b.memory_percent, MEMORY_STEP)
        && close_opt(a.disk_percent, b.disk_percent, DISK_STEP)
        && a.agents.len() == b.agents.len()
        && a.agents
            .iter()
            .zip(&b.agents)
            .all(|(a, b)| same_agent(a, b))
}

fn same_agent(a: &AgentSample, b: &AgentSample) -> bool {
    a.name == b.name
        && a.pid == b.pid
        && a.processes == b.processes
        && a.threads == b.threads
        && a.open_files == b.open_files
        && close(a.cpu_percent, b.cpu_percent, CPU_STEP)
        && close(a.memory_mb, b.memory_mb, MEMORY_STEP)
}

fn close(a: f64, b: f64, step: f64) -> bool {
    (a - b).abs() < step
}

fn close_opt(a: Option<f64>, b: Option<f64>, step: f64) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b, step),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: f64, cpu: f64) -> SessionSample {
        SessionSample {
            session_id: Uuid::nil(),
            at,
            cpu_percent: cpu,
            memory_mb: 0.0,
            memory_percent: None,
            disk_percent: Some(40.0),
            agents_running: 12,
            agents_total: 12,
            restarts: 0,
            errors: 0,
            agents: Vec::new(),
        }
    }

    fn rows(fed: &Fed) -> Vec<(f64, f64, u64)> {
        fed.rows
            .iter()
            .map(|(s, ticks)| (s.at, s.cpu_percent, *ticks))
            .collect()
    }

    #[test]
    fn an_unchanged_session_is_stored_once_per_interval_with_the_samples_it_stands_for() {
        let mut series = Series::new(Uuid::nil());
        // The nil id spreads its first repeat to half the interval.
        let first = series.feed(sample(0.0, 0.0), 60.0, 1.0);
        assert_eq!(rows(&first), vec![(0.0, 0.0, 1)]);
        assert!(first.latest.is_some());
        assert_eq!(series.due(), 30.0);
        for at in 1..30 {
            let fed = series.feed(sample(f64::from(at), 0.0), 60.0, 1.0);
            assert!(fed.rows.is_empty() && fed.latest.is_none(), "tick {at}");
        }
        let repeat = series.feed(sample(30.0, 0.0), 60.0, 1.0);
        assert_eq!(rows(&repeat), vec![(30.0, 0.0, 30)]);
        // From then on, every full interval, whether it was fed in between or not.
        assert_eq!(
            rows(&series.feed(sample(90.0, 0.0), 60.0, 1.0)),
            vec![(90.0, 0.0, 60)]
        );
    }

    #[test]
    fn a_change_stores_the_end_of_the_flat_stretch_and_the_new_figures() {
        let mut series = Series::new(Uuid::nil());
        series.feed(sample(0.0, 5.0), 600.0, 1.0);
        for at in 1..=9 {
            series.feed(sample(f64::from(at), 5.04), 600.0, 1.0);
        }
        let fed = series.feed(sample(10.0, 50.0), 600.0, 1.0);
        // Samples 1..=9 (within the step of 5.0) are one row at 9 s standing for nine.
        assert_eq!(rows(&fed), vec![(9.0, 5.0, 9), (10.0, 50.0, 1)]);
        assert_eq!(fed.latest.unwrap().cpu_percent, 50.0);
        // Every sample is counted once: 1 + 9 + 1.
        let counted: u64 = 1 + fed.rows.iter().map(|(_, t)| t).sum::<u64>();
        assert_eq!(counted, 11);
        // A change right after a change is one row.
        assert_eq!(
            rows(&series.feed(sample(11.0, 20.0), 600.0, 1.0)),
            vec![(11.0, 20.0, 1)]
        );
        // A session looked at again only when it changed: the stretch is counted in
        // intervals all the same.
        let fed = series.feed(sample(31.0, 0.0), 600.0, 1.0);
        assert_eq!(rows(&fed), vec![(30.0, 20.0, 19), (31.0, 0.0, 1)]);
    }

    #[test]
    fn a_flush_hands_over_what_was_not_stored() {
        let mut series = Series::new(Uuid::nil());
        series.feed(sample(0.0, 1.0), 600.0, 1.0);
        assert!(series.flush(0.0, 1.0).is_none());
        series.feed(sample(1.0, 1.0), 600.0, 1.0);
        let (row, ticks) = series.flush(2.0, 1.0).unwrap();
        assert_eq!((row.at, ticks), (2.0, 2));
        assert!(series.flush(2.0, 1.0).is_none(), "flushed once");
    }

    #[test]
    fn counts_and_agents_are_figures_too() {
        let mut series = Series::new(Uuid::nil());
        series.feed(sample(0.0, 0.0), 600.0, 1.0);
        let mut fewer = sample(1.0, 0.0);
        fewer.agents_running = 11;
        assert_eq!(series.feed(fewer, 600.0, 1.0).rows.len(), 1);
        let mut disk = sample(2.0, 0.0);
        disk.agents_running = 11;
        disk.disk_percent = Some(40.5);
        assert!(
            series.feed(disk, 600.0, 1.0).rows.is_empty(),
            "under the disk step"
        );
        let mut disk = sample(3.0, 0.0);
        disk.agents_running = 11;
        disk.disk_percent = Some(41.5);
        assert_eq!(series.feed(disk, 600.0, 1.0).rows.len(), 2);
    }
}
