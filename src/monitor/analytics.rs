//! What `/analytics` and a session's summary show: the hook counts with the hourly trends
//! and their anomalies, and the summary figures of a history (pure, beside the handle's
//! method that gathers them).

use crate::storage::{HookNameKind, StorageError};

use super::trend::Hour;
use super::{anomaly, hour_of, now, store, Activity, Anomaly, Monitor, SessionSample, TREND_HOURS};

impl Monitor {
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

#[cfg(test)]
mod tests {
    use uuid::Uuid;

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
