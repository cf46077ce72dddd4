//! What the sampling actor keeps of each live session between ticks, and how it asks a
//! session for its agents without ever waiting on one.
//!
//! A session is asked (`SessionRegistry::get`) only when something about it can have
//! changed: when it is new, when its record changed (an order, a navigate, a status: the
//! registry hands out a new shared record then), and at every tick while it has agents
//! that run processes (their PIDs and states move on their own). A session of logical
//! agents whose record stands still is never asked again: its figures are the ones it had.
//!
//! Every ask runs on a task of its own. A tick waits for the answers up to a deadline and
//! goes on without the late ones: a session that does not answer (its actor busy stopping
//! an agent that ignores SIGTERM, say) is reported as such and asked again once its ask
//! ends, never waited for, and delays no other session's sample.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::agent::AgentStatus;
use crate::session::{SessionError, SessionRecord, SessionRegistry};
use crate::supervision::ChildState;

use super::disk::Device;
use super::series::Series;
use super::{AgentSample, SessionSample};

/// A live session as the sampling actor knows it.
pub(super) struct Watched {
    /// The record as last listed (shared with the registry; a new one means a change).
    pub(super) record: Arc<SessionRecord>,
    /// The file system of its working directory, once mapped.
    pub(super) device: Option<Device>,
    /// Its agents with a live process: (name, PID).
    pub(super) pids: Vec<(String, u32)>,
    /// Whether any of its agents runs a process (asked at every tick then).
    pub(super) processes: bool,
    /// Its agents' states, once it answered.
    pub(super) counts: Option<Counts>,
    /// The listing that last saw it.
    pub(super) seen: u64,
    /// Its stored series.
    pub(super) series: Series,
    /// This tick's figures, for the lines that watch it.
    pub(super) figures: Figures,
}

/// A session's agents by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub(super) running: u64,
    pub(super) total: u64,
    pub(super) restarts: u64,
    pub(super) errors: u64,
}

/// The figures of a session's last sample that alerts watch.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Figures {
    pub(super) cpu_percent: f64,
    pub(super) memory_percent: Option<f64>,
    pub(super) disk_percent: Option<f64>,
}

impl Watched {
    pub(super) fn new(record: Arc<SessionRecord>, seen: u64) -> Watched {
        Watched {
            series: Series::new(record.id),
            record,
            device: None,
            pids: Vec::new(),
            processes: false,
            counts: None,
            seen,
            figures: Figures::default(),
        }
    }

    /// Its working directory.
    pub(super) fn dir(&self) -> PathBuf {
        PathBuf::from(&self.record.configuration.working_directory)
    }

    /// Takes what a session answered: its agents' states.
    pub(super) fn answered(&mut self, agents: &[AgentStatus]) {
        self.pids = agents
            .iter()
            .filter_map(|a| Some((a.name.clone(), a.live.pid?)))
            .collect();
        self.processes = agents.iter().any(|a| a.has_process);
        self.counts = Some(Counts {
            running: agents
                .iter()
                .filter(|a| a.state == ChildState::Running)
                .count() as u64,
            total: agents.len() as u64,
            restarts: agents.iter().map(|a| a.restarts).sum(),
            errors: agents
                .iter()
                .filter(|a| a.state == ChildState::Failed)
                .count() as u64,
        });
    }

    /// This tick's sample of the session (`None` until it first answered): its agents'
    /// processes as sampled, its file system's use as last read.
    pub(super) fn sample(
        &mut self,
        at: f64,
        agents: Vec<AgentSample>,
        disk_percent: Option<f64>,
    ) -> Option<SessionSample> {
        let counts = self.counts?;
        // Folded from 0.0: an empty `sum` of floats is -0.0, which JSON shows as such.
        let memory_mb = agents.iter().fold(0.0, |sum, a| sum + a.memory_mb);
        let max_memory_mb = self.record.configuration.max_memory_mb;
        let sample = SessionSample {
            session_id: self.record.id,
            at,
            cpu_percent: agents.iter().fold(0.0, |sum, a| sum + a.cpu_percent),
            memory_mb,
            memory_percent: (max_memory_mb > 0).then(|| memory_mb / max_memory_mb as f64 * 100.0),
            disk_percent,
            agents_running: counts.running,
            agents_total: counts.total,
            restarts: counts.restarts,
            errors: counts.errors,
            agents,
        };
        self.figures = Figures {
            cpu_percent: sample.cpu_percent,
            memory_percent: sample.memory_percent,
            disk_percent,
        };
        Some(sample)
    }
}

/// The asks under way, one at most per session.
pub(super) struct Asks {
    registry: Arc<SessionRegistry>,
    flying: HashMap<Uuid, Ask>,
}

struct Ask {
    job: JoinHandle<Result<Vec<AgentStatus>, SessionError>>,
    /// Reported as not answering.
    late: bool,
}

impl Asks {
    pub(super) fn new(registry: SessionRegistry) -> Asks {
        Asks {
            registry: Arc::new(registry),
            flying: HashMap::new(),
        }
    }

    /// Asks `session` for its agents, unless an ask of it is under way already.
    pub(super) fn ask(&mut self, session: Uuid) {
        self.flying.entry(session).or_insert_with(|| {
            let registry = Arc::clone(&self.registry);
            Ask {
                job: tokio::spawn(async move { registry.agents(session).await }),
                late: false,
            }
        });
    }

    /// The answers that are in by `deadline`; a session whose ask ended in an error (it
    /// ended meanwhile) answers `None`. The others stay under way, reported once.
    pub(super) async fn answers(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> Vec<(Uuid, Option<Vec<AgentStatus>>)> {
        let mut done = Vec::new();
        let mut waiting = HashMap::new();
        let mut late = Vec::new();
        let mut back = Vec::new();
        for (id, mut ask) in self.flying.drain() {
            // Past the deadline only what has finished is taken: no timer per ask (a
            // restore can leave 100,000 of them waiting).
            let answer = if ask.job.is_finished() || tokio::time::Instant::now() < deadline {
                tokio::time::timeout_at(deadline, &mut ask.job).await.ok()
            } else {
                None
            };
            match answer {
                Some(answer) => {
                    if ask.late {
                        back.push(id);
                    }
                    done.push((id, answer.ok().and_then(Result::ok)));
                }
                None => {
                    if !ask.late {
                        ask.late = true;
                        late.push(id);
                    }
                    waiting.insert(id, ask);
                }
            }
        }
        self.flying = waiting;
        // One line for many (a restore of 100,000 sessions answers them all at once).
        match back.len() {
            0 => {}
            1..=10 => {
                for id in back {
                    tracing::info!(session = %id, "the session answers the monitor again");
                }
            }
            n => tracing::info!(sessions = n, "sessions answer the monitor again"),
        }
        match late.len() {
            0 => {}
            1..=10 => {
                for id in late {
                    tracing::warn!(
                        session = %id,
                        "the session did not answer the monitor in time; it is sampled without waiting for it"
                    );
                }
            }
            n => tracing::warn!(
                sessions = n,
                "sessions did not answer the monitor in time (restoring, or busy); they are sampled without waiting for them"
            ),
        }
        done
    }

    /// Sessions whose ask missed a tick's deadline and is still under way.
    pub(super) fn unanswered(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = self
            .flying
            .iter()
            .filter(|(_, ask)| ask.late)
            .map(|(id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// A session that left: its ask is dropped.
    pub(super) fn forget(&mut self, session: Uuid) {
        if let Some(ask) = self.flying.remove(&session) {
            ask.job.abort();
        }
    }
}
