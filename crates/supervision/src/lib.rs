//! The embeddable supervision core: restart policies, backoff, restart intensity,
//! dependency-ordered start, and a ractor supervisor actor that applies them.
//!
//! Architecture invariant: this crate knows nothing of the server built on it — no
//! sessions, no HTTP, no JSON, no storage — so another Rust service can supervise its own
//! actors, tasks and processes with it.
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
//! ```
//! use supervision::{ChildSpec, ChildState, SupervisorConfig, SupervisorHandle};
//! # use ractor::{Actor, ActorProcessingErr, ActorRef};
//! # struct Db; struct Web;
//! # impl Actor for Db { type Msg = (); type State = (); type Arguments = ();
//! #   async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) } }
//! # impl Actor for Web { type Msg = (); type State = (); type Arguments = ();
//! #   async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> { Ok(()) } }
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let children = vec![
//!     ChildSpec::actor("db", || (Db, ())),
//!     ChildSpec::actor("web", || (Web, ())).depends_on(["db"]),
//! ];
//! let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::new(), children).await?;
//! supervisor.start_all().await?;
//! let children = supervisor.settled().await?; // db running, then web running
//! assert_eq!(children[1].layer, 1, "web starts in the layer after db's");
//! assert!(children.iter().all(|c| c.state == ChildState::Running));
//! supervisor.stop_all().await?; // web stopped, then db
//! # Ok(()) }
//! ```
//!
//! Where to look next: [`Strategy`] (each strategy, with intensity), [`Intensity`] (giving
//! up), [`ChildSpec::task`] (a task child), [`SupervisorHandle::subscribe`] and
//! [`SupervisorConfig::observer`] (events), [`ChildError`] (why a child went down).
//!
//! Errors are typed: [`SupervisionError`] for what a supervisor refuses, [`StartError`] for a
//! worker that cannot start its child, [`ChildError`] inside an [`Exit`] for why a child went
//! down. Public enums and structs that will grow are `#[non_exhaustive]`, and configuration
//! is built with methods ([`SupervisorConfig::new`], [`ChildSpec`]'s setters), not fields.

#![deny(missing_docs)]
#![warn(unreachable_pub)]

use std::sync::Arc;

mod error;
mod event;
mod graph;
mod policy;
#[cfg(feature = "process")]
pub mod process;
mod spec;
mod supervisor;

pub use error::{
    error_chain, BoxError, ChildError, SharedError, SpawnError, StartError, SupervisionError,
};
pub use event::{ChildInfo, ChildState, ChildTransition, SupervisorEvent};
pub use graph::DependencyGraph;
pub use policy::{
    decide, Backoff, Decision, Exit, Intensity, Restart, RestartHistory, RestartPolicy, Strategy,
    UnknownWord,
};
pub use spec::{
    BoxFuture, ChildSpec, StartContext, Started, StopSignal, TaskContext, TaskResult, Worker,
};
pub use supervisor::{
    Observer, Supervisor, SupervisorConfig, SupervisorHandle, SupervisorMsg, TakenChild, Takeover,
};

// The README's quick start, compiled and run as a doc test.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// A child's id, unique under its supervisor. Shared, because every event carries it.
pub type ChildId = Arc<str>;
