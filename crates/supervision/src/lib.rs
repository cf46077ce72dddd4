//! The embeddable supervision core: restart policies, backoff, restart intensity,
//! dependency-ordered start, and a ractor supervisor actor that applies them.
//!
//! Architecture invariant: this module imports nothing from the rest of the crate — no
//! sessions, no HTTP, no JSON, no storage — so another Rust service can supervise its own
//! actors with it.
//!
//! ractor restarts nothing by itself (its default reaction to a child's death is to stop the
//! parent). [`Supervisor`] overrides that: every exit goes through the pure [`decide`]
//! function (policy × restart history → restart after a delay, stop, give up or escalate),
//! restarts are scheduled with timers, never by sleeping in a handler, and children start in
//! dependency layers and stop in reverse.
//!
//! A child is an actor ([`ChildSpec::actor`]: a ractor actor linked to the supervisor, for a
//! child that needs a mailbox) or a task ([`ChildSpec::task`]: a future the supervisor spawns
//! as a tokio task, asks to stop through a [`StopSignal`] and aborts after the grace — a few
//! hundred bytes instead of an actor's kilobytes, for children counted in tens of thousands).
//! Both are supervised the same way.
//!
//! ```no_run
//! use supervision::{ChildSpec, SupervisorConfig, SupervisorHandle};
//! # use ractor::{Actor, ActorProcessingErr, ActorRef};
//! # struct Db; struct Web;
//! # impl Actor for Db { type Msg = (); type State = (); type Arguments = ();
//! #   async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) } }
//! # impl Actor for Web { type Msg = (); type State = (); type Arguments = ();
//! #   async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) } }
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let children = vec![
//!     ChildSpec::actor("db", || (Db, ())),
//!     ChildSpec::actor("web", || (Web, ())).depends_on(["db"]),
//! ];
//! let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::default(), children).await?;
//! supervisor.start_all().await?;
//! let children = supervisor.settled().await?; // db running, then web running
//! supervisor.stop_all().await?;                // web stopped, then db
//! # Ok(()) }
//! ```

use std::sync::Arc;

mod event;
mod graph;
mod policy;
#[cfg(feature = "process")]
pub mod process;
mod spec;
mod supervisor;

pub use event::{ChildInfo, ChildState, ChildTransition, SupervisorEvent};
pub use graph::DependencyGraph;
pub use policy::{
    decide, Backoff, Decision, Exit, Intensity, Restart, RestartHistory, RestartPolicy, Strategy,
    UnknownWord,
};
pub use spec::{
    BoxFuture, ChildSpec, StartContext, StartError, Started, StopSignal, TaskContext, TaskResult,
    Worker,
};
pub use supervisor::{
    Observer, Supervisor, SupervisorConfig, SupervisorHandle, SupervisorMsg, TakenChild, Takeover,
};

/// A child's id, unique under its supervisor. Shared, because every event carries it.
pub type ChildId = Arc<str>;

/// What can go wrong when building or talking to a supervisor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SupervisionError {
    /// The children's dependencies form a cycle; the ids walk it, first and last equal.
    #[error("dependency cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// A child depends on an id no child has.
    #[error("child `{child}` depends on unknown child `{dependency}`")]
    UnknownDependency {
        /// The child that names the dependency.
        child: String,
        /// The missing id.
        dependency: String,
    },
    /// Two children share an id.
    #[error("duplicate child id `{0}`")]
    DuplicateChild(String),
    /// No child has this id.
    #[error("unknown child `{0}`")]
    UnknownChild(String),
    /// The child cannot be removed while others depend on it.
    #[error("child `{child}` is needed by {}", .dependents.join(", "))]
    HasDependents {
        /// The child asked to be removed.
        child: String,
        /// Those that depend on it.
        dependents: Vec<String>,
    },
    /// The child is being stopped to be removed and takes no other orders.
    #[error("child `{0}` is being removed")]
    Removing(String),
    /// The supervisor is stopping all its children and takes no other orders.
    #[error("supervisor is shutting down")]
    ShuttingDown,
    /// The supervisor actor could not be spawned.
    #[error("cannot spawn supervisor: {0}")]
    Spawn(String),
    /// The supervisor actor is gone (stopped or escalated).
    #[error("supervisor is not running")]
    Unavailable,
}
