//! session-manager: a supervisor for Claude Code work sessions.
//!
//! The crate is both the `session-manager` server and a library. The part meant for
//! embedding in other Rust services is [`supervision`]: restart policies, backoff,
//! dependency-ordered start and a ractor supervisor actor that knows nothing of sessions,
//! HTTP or JSON. See `ARCHITECTURE.md` for the map of the rest.
#![warn(missing_docs, unreachable_pub)]

pub mod agent;
pub mod api;
pub mod claude;
pub mod cli;
pub mod config;
pub mod hook;
mod logfile;
pub mod monitor;
pub mod names;
pub mod paths;
pub mod rules;
pub mod server;
pub mod session;
pub mod storage;
pub use supervision;
pub mod telemetry;
