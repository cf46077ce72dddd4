//! When a sampled value becomes an alert and when the alert ends: pure functions over one
//! line's state, so hysteresis and severity are tested without a clock or an actor.

use crate::agent::Severity;

/// How a line resists flapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hysteresis {
    /// Consecutive samples above the line before an alert is raised.
    pub raise_after: u32,
    /// An open alert resolves only below `threshold × (1 − margin)`.
    pub margin: f64,
}

impl Default for Hysteresis {
    /// Two samples over the line (one spike is not an alert), resolved 5 % under it.
    fn default() -> Self {
        Hysteresis {
            raise_after: 2,
            margin: 0.05,
        }
    }
}

/// Where one watched value stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineState {
    /// Samples in a row above the line.
    over: u32,
    /// Whether an alert is open.
    open: bool,
}

impl LineState {
    /// Whether an alert is open.
    pub fn is_open(&self) -> bool {
        self.open
    }
}

/// What one sample does to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing to tell.
    None,
    /// A new alert, this bad.
    Raise(Severity),
    /// The open alert is over.
    Resolve,
}

/// Feeds one sample of a value to its line.
pub fn step(state: &mut LineState, value: f64, threshold: f64, rule: Hysteresis) -> Transition {
    if value > threshold {
        state.over = state.over.saturating_add(1);
        if !state.open && state.over >= rule.raise_after.max(1) {
            state.open = true;
            return Transition::Raise(severity(value, threshold));
        }
        return Transition::None;
    }
    state.over = 0;
    if state.open && value < threshold * (1.0 - rule.margin) {
        state.open = false;
        return Transition::Resolve;
    }
    Transition::None
}

/// Critical over 1.5 × the line, high over 1.2 ×, else medium.
pub fn severity(value: f64, threshold: f64) -> Severity {
    if threshold <= 0.0 {
        return Severity::Critical;
    }
    let ratio = value / threshold;
    if ratio > 1.5 {
        Severity::Critical
    } else if ratio > 1.2 {
        Severity::High
    } else {
        Severity::Medium
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[f64], threshold: f64) -> Vec<Transition> {
        let mut state = LineState::default();
        values
            .iter()
            .map(|&v| step(&mut state, v, threshold, Hysteresis::default()))
            .filter(|t| *t != Transition::None)
            .collect()
    }

    #[test]
    fn a_value_hovering_at_the_line_raises_one_alert() {
        let values = [86.0, 86.0, 84.0, 86.0, 84.5, 85.5, 84.0, 86.0, 83.0, 87.0];
        assert_eq!(run(&values, 85.0), [Transition::Raise(Severity::Medium)]);
    }

    #[test]
    fn one_spike_is_not_an_alert() {
        assert_eq!(run(&[99.0, 10.0, 99.0, 10.0], 85.0), []);
    }

    #[test]
    fn an_alert_resolves_only_under_the_margin_and_can_be_raised_again() {
        let values = [90.0, 90.0, 82.0, 80.0, 90.0, 90.0];
        assert_eq!(
            run(&values, 85.0),
            [
                Transition::Raise(Severity::Medium),
                Transition::Resolve,
                Transition::Raise(Severity::Medium),
            ]
        );
    }

    #[test]
    fn severity_bands() {
        assert_eq!(severity(85.1, 85.0), Severity::Medium);
        assert_eq!(severity(102.0, 85.0), Severity::Medium);
        assert_eq!(severity(102.1, 85.0), Severity::High);
        assert_eq!(severity(127.5, 85.0), Severity::High);
        assert_eq!(severity(127.6, 85.0), Severity::Critical);
        assert_eq!(severity(1.0, 0.0), Severity::Critical);
    }

    #[test]
    fn the_severity_is_the_one_of_the_raising_sample() {
        assert_eq!(
            run(&[100.0, 130.0], 80.0),
            [Transition::Raise(Severity::Critical)]
        );
    }
}
