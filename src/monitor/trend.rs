//! Trends and anomalies: hourly means of what the monitor samples (kept as each tick comes,
//! seeded from storage at start), and the one anomaly rule — a value beyond the mean ± 3σ of
//! its own history. Pure.

use std::collections::VecDeque;

/// Hours of trend kept (and shown).
pub const TREND_HOURS: usize = 24;
/// Fewest earlier values an anomaly is judged against.
pub const MIN_HISTORY: usize = 3;

/// One hour of samples, as sums (means are sums / ticks).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Hour {
    /// Unix seconds of the hour's start.
    pub hour: i64,
    /// Ticks in it.
    pub ticks: u64,
    /// Host CPU, summed over the ticks.
    pub host_cpu_percent: f64,
    /// Host memory percent, summed over the ticks.
    pub host_memory_percent: f64,
    /// All agents' CPU (each tick's sum over the sessions), summed over the ticks.
    pub agents_cpu_percent: f64,
    /// All agents' memory, MiB, summed likewise.
    pub agents_memory_mb: f64,
}

impl Hour {
    /// Mean of a sum over the hour's ticks.
    pub fn mean(&self, sum: f64) -> f64 {
        if self.ticks == 0 {
            0.0
        } else {
            sum / self.ticks as f64
        }
    }
}

/// The last [`TREND_HOURS`] hours, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Trends {
    hours: VecDeque<Hour>,
}

impl Trends {
    /// Starts from stored hours (any order, any number).
    pub(crate) fn seeded(mut hours: Vec<Hour>) -> Trends {
        hours.sort_by_key(|h| h.hour);
        let skip = hours.len().saturating_sub(TREND_HOURS);
        Trends {
            hours: hours.into_iter().skip(skip).collect(),
        }
    }

    /// Adds one tick taken at `at` (Unix seconds).
    pub(crate) fn add(&mut self, at: f64, host: (f64, f64), agents: (f64, f64)) {
        let hour = hour_of(at);
        if self.hours.back().is_none_or(|h| h.hour < hour) {
            self.hours.push_back(Hour {
                hour,
                ..Hour::default()
            });
            while self.hours.len() > TREND_HOURS {
                self.hours.pop_front();
            }
        }
        let Some(last) = self.hours.back_mut().filter(|h| h.hour == hour) else {
            // A tick from before the newest hour (the clock went back): not worth a bucket.
            return;
        };
        last.ticks += 1;
        last.host_cpu_percent += host.0;
        last.host_memory_percent += host.1;
        last.agents_cpu_percent += agents.0;
        last.agents_memory_mb += agents.1;
    }

    /// The hours, oldest first.
    pub(crate) fn hours(&self) -> impl Iterator<Item = &Hour> {
        self.hours.iter()
    }
}

/// The start of the hour holding `at`.
pub fn hour_of(at: f64) -> i64 {
    (at / 3600.0).floor() as i64 * 3600
}

/// A value beyond the mean ± 3σ of its history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anomaly {
    /// The value.
    pub value: f64,
    /// The history's mean.
    pub mean: f64,
    /// The history's standard deviation (population).
    pub stddev: f64,
    /// Whether it is above the band (else below).
    pub high: bool,
}

/// Judges the last of `series` against the ones before it; `None` when it is within the
/// band or there are fewer than [`MIN_HISTORY`] earlier values.
pub fn anomaly(series: &[f64]) -> Option<Anomaly> {
    let (&value, history) = series.split_last()?;
    if history.len() < MIN_HISTORY {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let stddev = (history.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    let band = 3.0 * stddev;
    // A flat history has no band: only a real move off it (beyond rounding) is anomalous.
    let tolerance = 1e-9 * mean.abs().max(1.0);
    let high = value > mean + band + tolerance;
    let low = value < mean - band - tolerance;
    (high || low).then_some(Anomaly {
        value,
        mean,
        stddev,
        high,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_fill_hourly_buckets_and_old_hours_drop_out() {
        let mut trends = Trends::default();
        trends.add(3600.0, (10.0, 50.0), (100.0, 200.0));
        trends.add(3700.0, (30.0, 70.0), (0.0, 100.0));
        trends.add(7300.0, (5.0, 5.0), (5.0, 5.0));
        let hours: Vec<_> = trends.hours().copied().collect();
        assert_eq!(hours.len(), 2);
        assert_eq!((hours[0].hour, hours[0].ticks), (3600, 2));
        assert_eq!(hours[0].mean(hours[0].host_cpu_percent), 20.0);
        assert_eq!(hours[0].mean(hours[0].agents_memory_mb), 150.0);
        assert_eq!(hours[1].hour, 7200);
        // A tick from an older hour is ignored.
        trends.add(3600.0, (1.0, 1.0), (1.0, 1.0));
        assert_eq!(trends.hours().next().unwrap().ticks, 2);
        for h in 0..40 {
            trends.add(10_000.0 + h as f64 * 3600.0, (1.0, 1.0), (1.0, 1.0));
        }
        assert_eq!(trends.hours().count(), TREND_HOURS);
        let mut reversed: Vec<Hour> = trends.hours().copied().collect();
        reversed.reverse();
        let seeded = Trends::seeded(reversed);
        assert_eq!(
            seeded.hours().map(|h| h.hour).collect::<Vec<_>>(),
            trends.hours().map(|h| h.hour).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_anomaly_is_beyond_three_sigma_of_its_own_history() {
        // mean 10, σ = 1 (values 9 and 11): the band is 7..13.
        let history = [9.0, 11.0, 9.0, 11.0];
        let with = |v: f64| [&history[..], &[v]].concat();
        assert_eq!(anomaly(&with(12.9)), None);
        assert_eq!(anomaly(&with(7.1)), None);
        let high = anomaly(&with(13.5)).unwrap();
        assert!(high.high);
        assert_eq!((high.mean, high.stddev), (10.0, 1.0));
        assert!(!anomaly(&with(6.0)).unwrap().high);
        // Too little history, or a flat one that the value stays on.
        assert_eq!(anomaly(&[1.0, 1.0, 100.0]), None);
        assert_eq!(anomaly(&[0.0, 0.0, 0.0, 0.0]), None);
        assert!(anomaly(&[0.0, 0.0, 0.0, 1.0]).unwrap().high);
        assert_eq!(anomaly(&[]), None);
    }
}
