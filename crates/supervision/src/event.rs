//! Child states and the typed events a supervisor publishes.

use std::fmt;
use std::time::{Duration, SystemTime};

use ractor::ActorCell;

use super::policy::Exit;
use super::ChildId;

/// Where a child is in its life. The same seven states the agents of a session report.
///
/// Not `#[non_exhaustive]`: the seven states are the life cycle itself (OTP's and ours),
/// and code that maps them (to a wire word, a colour) is meant to be told by the compiler
/// if that ever changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChildState {
    /// Not started yet: never asked to, or waiting for its dependencies to be running.
    Pending,
    /// Being started: spawned or spawning, not yet ready.
    Starting,
    /// Up and ready.
    Running,
    /// Exited and waiting out its backoff delay before the next start.
    Backoff,
    /// Asked to stop, not yet gone.
    Stopping,
    /// Down on purpose: stopped, or exited in a way its restart type leaves alone.
    Stopped,
    /// Down for good after a crash: restart intensity exhausted, or a crash its restart type
    /// does not restart.
    Failed,
}

impl ChildState {
    /// Every state, in life-cycle order.
    pub const ALL: [ChildState; 7] = [
        ChildState::Pending,
        ChildState::Starting,
        ChildState::Running,
        ChildState::Backoff,
        ChildState::Stopping,
        ChildState::Stopped,
        ChildState::Failed,
    ];

    /// The lowercase word used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildState::Pending => "pending",
            ChildState::Starting => "starting",
            ChildState::Running => "running",
            ChildState::Backoff => "backoff",
            ChildState::Stopping => "stopping",
            ChildState::Stopped => "stopped",
            ChildState::Failed => "failed",
        }
    }

    /// Position in [`ChildState::ALL`], for per-state counters.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ChildState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change of one child.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ChildTransition {
    /// When it happened (wall clock, for people and logs).
    pub at: SystemTime,
    /// Which child.
    pub child: ChildId,
    /// The state it left.
    pub from: ChildState,
    /// The state it entered.
    pub to: ChildState,
    /// Why, when there is more to say than the states (exit reason, give-up reason).
    pub reason: Option<String>,
    /// Restarts of this child so far.
    pub restarts: u64,
    /// Entering [`ChildState::Backoff`]: how long until the next start.
    pub delay: Option<Duration>,
}

impl ChildTransition {
    /// A transition with nothing more to say: no reason, no restarts, no delay. For code
    /// that reports transitions of its own in the supervisor's terms (a replay, a group run
    /// without a supervisor).
    pub fn new(at: SystemTime, child: ChildId, from: ChildState, to: ChildState) -> Self {
        ChildTransition {
            at,
            child,
            from,
            to,
            reason: None,
            restarts: 0,
            delay: None,
        }
    }

    /// Why it happened.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// Restarts of the child so far.
    pub fn with_restarts(mut self, restarts: u64) -> Self {
        self.restarts = restarts;
        self
    }

    /// Entering [`ChildState::Backoff`]: how long until the next start.
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// Everything a supervisor tells its subscribers.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SupervisorEvent {
    /// A child changed state.
    Child(ChildTransition),
    /// A child exhausted its restart intensity under an escalating policy: the supervisor
    /// stops every child and then fails itself, handing the problem to its own parent.
    Escalated {
        /// When it happened.
        at: SystemTime,
        /// The child that gave up.
        child: ChildId,
        /// Its last exit reason.
        reason: String,
    },
}

/// A snapshot of one child, as the supervisor sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChildInfo {
    /// Its id.
    pub id: ChildId,
    /// Current state.
    pub state: ChildState,
    /// Since when it has been in that state.
    pub since: SystemTime,
    /// Whether the supervisor wants it up (false after a stop or before `start_all`).
    pub wanted: bool,
    /// Restarts made by the supervisor (manual restarts do not count).
    pub restarts: u64,
    /// How it last exited, and when.
    pub last_exit: Option<(Exit, SystemTime)>,
    /// Its start layer (0 = depends on nothing).
    pub layer: usize,
    /// Its direct dependencies.
    pub depends_on: Vec<ChildId>,
    /// The actor of the current incarnation, while there is one.
    pub actor: Option<ActorCell>,
}
