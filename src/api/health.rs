//! `GET /health`: liveness plus the state of each subsystem, told truthfully: storage that
//! refuses writes makes the server `unhealthy` (503), a part that works but not fully
//! (storage slow, events waiting or lost, the monitor not sampling) makes it `degraded`,
//! each with a problem naming the part and the reason. The route needs no token, so
//! reasons are the server's own words: never a path, an OS message or a count of sessions.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use warp::http::header::RETRY_AFTER;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;

use super::dto::{self, Health, HealthProblem};
use super::{envelope, ApiContext};
use crate::session::LogStatus;
use crate::storage::{Fault, StorageHealth};

/// A storage job running longer than this makes storage `degraded` (slow).
const SLOW_JOB: Duration = Duration::from_secs(2);
/// Jobs waiting for the writer beyond which storage is `degraded` (lagging).
const LONG_QUEUE: usize = 256;
/// Events waiting to be stored beyond which the event log is `degraded`, even while its
/// writes go through (it lags behind what is published).
const LONG_BACKLOG: usize = 10_000;
/// How long a loss of events stays among the problems after the last one.
const LOSS_REPORTED_FOR: f64 = 3600.0;
/// How long `/health` waits for a probe of storage or for the monitor's state.
const LOOK_DEADLINE: Duration = Duration::from_secs(2);
/// `Retry-After` of an unhealthy answer.
const UNHEALTHY_RETRY_AFTER_SECONDS: u32 = 5;

/// The state of one subsystem as `/health` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Working normally.
    Running,
    /// Working, but not fully (e.g. retrying a failed dependency).
    Degraded,
    /// Shutting down; new work is refused.
    Stopping,
}

/// The subsystems `/health` lists, shared between the server, which registers and updates
/// them, and the route, which reports them. Cloning shares the same list.
#[derive(Debug, Clone, Default)]
pub struct Services {
    states: Arc<RwLock<BTreeMap<String, ServiceState>>>,
}

impl Services {
    /// Registers `name` or changes its state.
    pub fn set(&self, name: impl Into<String>, state: ServiceState) {
        self.states
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.into(), state);
    }

    /// The state of `name` right now, if it is registered.
    pub fn state(&self, name: &str) -> Option<ServiceState> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    /// The states right now, by name.
    pub fn snapshot(&self) -> BTreeMap<String, ServiceState> {
        self.states
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

pub(crate) async fn get(ctx: ApiContext) -> Response {
    let mut services: BTreeMap<String, &'static str> = ctx
        .services
        .snapshot()
        .into_iter()
        .map(|(name, state)| (name, dto::service_state(state)))
        .collect();
    let storage = ctx.sessions.storage();
    let mut condition = storage.health();
    if condition.fault.is_some() {
        // The fault is what the last write met; one probe (at most one a second) tells
        // whether it still holds, so a freed disk is seen without waiting for a write.
        let _ = tokio::time::timeout(LOOK_DEADLINE, storage.probe()).await;
        condition = storage.health();
    }
    let log = ctx.sessions.bus().log_status().unwrap_or_default();
    let monitor_running = tokio::time::timeout(LOOK_DEADLINE, ctx.monitor.status())
        .await
        .is_ok_and(|status| status.running);
    let report = Report::of(&condition, &log, monitor_running, now());
    for (part, state) in &report.states {
        // A part that is stopping (shutdown) says so rather than anything else.
        let entry = services.entry((*part).to_owned()).or_insert(state);
        if *entry != "stopping" {
            *entry = state;
        }
    }
    let health = Health {
        status: report.status,
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: ctx.started_at.elapsed().as_secs_f64(),
        services,
        problems: report.problems,
    };
    if report.status == UNHEALTHY {
        let mut response = envelope::success(StatusCode::SERVICE_UNAVAILABLE, &health);
        response.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(UNHEALTHY_RETRY_AFTER_SECONDS),
        );
        return response;
    }
    envelope::success(StatusCode::OK, &health)
}

const HEALTHY: &str = "healthy";
const DEGRADED: &str = "degraded";
const UNHEALTHY: &str = "unhealthy";

/// What `/health` concludes from what the parts report: pure, so each case is tested
/// without making a disk fail.
#[derive(Debug, PartialEq)]
struct Report {
    status: &'static str,
    /// The state of the parts it looked at (`running`, `degraded`, `failing`).
    states: Vec<(&'static str, &'static str)>,
    problems: Vec<HealthProblem>,
}

impl Report {
    fn of(storage: &StorageHealth, log: &LogStatus, monitor_running: bool, now: f64) -> Report {
        let mut problems = Vec::new();
        let mut problem = |part, reason: String, since| {
            problems.push(HealthProblem {
                part,
                reason,
                since,
            });
        };

        let storage_state = if let Some((fault, since)) = storage.fault {
            problem("storage", cannot_write(fault), Some(since));
            "failing"
        } else if let Some(busy) = storage.busy_for.filter(|busy| *busy >= SLOW_JOB) {
            let reason = format!(
                "storage is slow: a job has been running for {} s, {} waiting",
                busy.as_secs(),
                storage.queued
            );
            problem("storage", reason, Some(now - busy.as_secs_f64()));
            "degraded"
        } else if storage.queued >= LONG_QUEUE {
            let reason = format!("storage lags: {} jobs waiting", storage.queued);
            problem("storage", reason, None);
            "degraded"
        } else {
            "running"
        };

        let mut log_state = "running";
        if let Some((fault, since)) = log.failing {
            let reason = format!(
                "events cannot be stored ({}); {} kept in memory until storage recovers",
                fault.describe(),
                log.backlog
            );
            problem("event_log", reason, Some(since));
            log_state = "failing";
        } else if log.backlog >= LONG_BACKLOG {
            let reason = format!("{} events are waiting to be stored", log.backlog);
            problem("event_log", reason, None);
            log_state = "degraded";
        }
        if let Some(lost) = log
            .last_lost
            .filter(|lost| now - lost.at < LOSS_REPORTED_FOR)
        {
            let reason = format!(
                "{} events were given up since the server started (last: seqs {} to {}); \
                 an events_lost event marks the gap",
                log.lost, lost.first, lost.last
            );
            problem("event_log", reason, Some(lost.at));
            if log_state == "running" {
                log_state = "degraded";
            }
        }

        let monitor_state = if monitor_running {
            "running"
        } else {
            let reason =
                "the monitor is not sampling (restarting, or given up after repeated crashes)";
            problem("monitor", reason.to_owned(), None);
            "degraded"
        };

        let status = if storage.fault.is_some() {
            UNHEALTHY
        } else if problems.is_empty() {
            HEALTHY
        } else {
            DEGRADED
        };
        Report {
            status,
            states: vec![
                ("storage", storage_state),
                ("event_log", log_state),
                ("monitor", monitor_state),
            ],
            problems,
        }
    }
}

/// Why storage cannot write, with what an operator does about it.
fn cannot_write(fault: Fault) -> String {
    match fault {
        Fault::Full => format!(
            "{}: free space on the data directory's file system",
            fault.describe()
        ),
        Fault::Unavailable => fault.describe().to_owned(),
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::LostRange;

    fn storage() -> StorageHealth {
        StorageHealth {
            fault: None,
            busy_for: None,
            queued: 0,
        }
    }

    fn parts(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(|p| p.part).collect()
    }

    #[test]
    fn everything_working_is_healthy_with_no_problem() {
        let report = Report::of(&storage(), &LogStatus::default(), true, 100.0);
        assert_eq!(report.status, HEALTHY);
        assert!(report.problems.is_empty());
        assert!(report.states.iter().all(|(_, state)| *state == "running"));
    }

    #[test]
    fn storage_that_cannot_write_is_unhealthy_and_says_why_in_its_own_words() {
        let failing = StorageHealth {
            fault: Some((Fault::Full, 42.0)),
            ..storage()
        };
        let report = Report::of(&failing, &LogStatus::default(), true, 100.0);
        assert_eq!(report.status, UNHEALTHY);
        assert_eq!(parts(&report), ["storage"]);
        assert_eq!(report.problems[0].since, Some(42.0));
        assert!(report.problems[0].reason.contains("full"));
        assert!(!report.problems[0].reason.contains('/'), "no path");
        assert!(report.states.contains(&("storage", "failing")));
    }

    #[test]
    fn slow_or_lagging_storage_is_degraded() {
        let slow = StorageHealth {
            busy_for: Some(Duration::from_secs(3)),
            queued: 5,
            ..storage()
        };
        let report = Report::of(&slow, &LogStatus::default(), true, 100.0);
        assert_eq!(report.status, DEGRADED);
        assert_eq!(parts(&report), ["storage"]);
        assert!(report.problems[0].reason.contains("slow"));
        let busy_briefly = StorageHealth {
            busy_for: Some(Duration::from_millis(10)),
            ..storage()
        };
        assert_eq!(
            Report::of(&busy_briefly, &LogStatus::default(), true, 1.0).status,
            HEALTHY
        );
        let queued = StorageHealth {
            queued: LONG_QUEUE,
            ..storage()
        };
        assert_eq!(
            Report::of(&queued, &LogStatus::default(), true, 1.0).status,
            DEGRADED
        );
    }

    #[test]
    fn an_event_log_with_a_backlog_or_a_recent_loss_is_degraded() {
        let failing = LogStatus {
            failing: Some((Fault::Unavailable, 50.0)),
            backlog: 12,
            ..LogStatus::default()
        };
        let report = Report::of(&storage(), &failing, true, 100.0);
        assert_eq!(report.status, DEGRADED);
        assert_eq!(parts(&report), ["event_log"]);
        assert!(report.problems[0].reason.contains("12 kept"));
        assert!(report.states.contains(&("event_log", "failing")));

        let lagging = LogStatus {
            backlog: LONG_BACKLOG,
            ..LogStatus::default()
        };
        assert_eq!(
            Report::of(&storage(), &lagging, true, 100.0).status,
            DEGRADED
        );

        let lost = LogStatus {
            lost: 7,
            last_lost: Some(LostRange {
                first: 10,
                last: 16,
                at: 90.0,
            }),
            ..LogStatus::default()
        };
        let report = Report::of(&storage(), &lost, true, 100.0);
        assert_eq!(report.status, DEGRADED);
        assert!(report.problems[0].reason.contains("10 to 16"));
        let long_ago = Report::of(&storage(), &lost, true, 90.0 + LOSS_REPORTED_FOR + 1.0);
        assert_eq!(long_ago.status, HEALTHY);
    }

    #[test]
    fn a_monitor_that_is_not_sampling_is_degraded() {
        let report = Report::of(&storage(), &LogStatus::default(), false, 100.0);
        assert_eq!(report.status, DEGRADED);
        assert_eq!(parts(&report), ["monitor"]);
        assert!(report.states.contains(&("monitor", "degraded")));
    }
}
