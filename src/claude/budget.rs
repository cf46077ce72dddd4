//! `cost_budget` alerts: a session whose Claude Code cost reaches 80 % of its
//! `cost_budget_usd` raises a medium alert, 100 % a high one; each is raised once and
//! resolved when the cost falls back under its line (the budget was raised, or removed).

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use crate::agent::Severity;
use crate::monitor::Monitor;
use crate::session::{Resource, ResourceAlert};

/// The two lines, as fractions of the budget, with their severity.
const LINES: [(f64, Severity); 2] = [(0.8, Severity::Medium), (1.0, Severity::High)];

/// The open `cost_budget` alerts, by session and line.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    open: Mutex<HashMap<(Uuid, usize), ResourceAlert>>,
}

/// Whether `cost` is at or over `fraction` of `budget` (a budget of 0 is crossed by any
/// cost at all, not by none).
pub(crate) fn crossed(cost: f64, budget: f64, fraction: f64) -> bool {
    if budget > 0.0 {
        cost >= budget * fraction
    } else {
        cost > 0.0
    }
}

impl Budgets {
    /// Raises or resolves `session`'s alerts for its `cost` against its `budget` (`None`:
    /// no budget, every alert resolves) at `at` (Unix seconds).
    pub(crate) fn check(
        &self,
        monitor: &Monitor,
        session: Uuid,
        budget: Option<f64>,
        cost: f64,
        at: f64,
    ) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for (line, (fraction, severity)) in LINES.iter().enumerate() {
            let over = budget.is_some_and(|usd| crossed(cost, usd, *fraction));
            let key = (session, line);
            match (over, open.contains_key(&key)) {
                (true, false) => {
                    let usd = budget.unwrap_or_default();
                    let alert = ResourceAlert {
                        id: Uuid::new_v4(),
                        session: Some(session),
                        resource: Resource::CostBudget,
                        severity: *severity,
                        message: format!(
                            "Claude Code of session {session} cost {cost:.2} USD, {:.0} % of its \
                             {usd:.2} USD budget",
                            percent(cost, usd)
                        ),
                        value: cost,
                        threshold: usd * fraction,
                        raised_at: at,
                    };
                    open.insert(key, alert.clone());
                    monitor.raise(alert);
                }
                (false, true) => {
                    if let Some(mut alert) = open.remove(&key) {
                        alert.value = cost;
                        alert.message = match budget {
                            Some(usd) => format!(
                                "Claude Code of session {session} is back under {:.0} % of its \
                                 {usd:.2} USD budget",
                                fraction * 100.0
                            ),
                            None => format!("session {session} no longer has a cost budget"),
                        };
                        monitor.resolve(alert);
                    }
                }
                _ => {}
            }
        }
    }
}

fn percent(cost: f64, budget: f64) -> f64 {
    if budget > 0.0 {
        cost / budget * 100.0
    } else {
        100.0
    }
}

#[cfg(test)]
mod tests {
    use super::crossed;

    #[test]
    fn lines_are_crossed_at_or_over_their_fraction() {
        assert!(!crossed(7.99, 10.0, 0.8));
        assert!(crossed(8.0, 10.0, 0.8));
        assert!(!crossed(9.99, 10.0, 1.0));
        assert!(crossed(10.0, 10.0, 1.0));
        assert!(!crossed(0.0, 0.0, 0.8));
        assert!(crossed(0.01, 0.0, 1.0));
    }
}
