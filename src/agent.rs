//! Agents: the supervised workers of a session.
//!
//! - [`AgentType`] and [`TypeInfo`]: the twelve types and their defaults;
//! - [`AgentConfig`] and its validation ([`validate_agents`]), resolved against the server's
//!   `[agents]` settings into a [`ResolvedAgent`];
//! - [`AgentGroup`]: the resolved agents of one session under one supervisor. An agent with a
//!   command owns a real OS process group (spawned in dependency order, restarted with
//!   backoff, limited in memory, stopped with SIGTERM then SIGKILL, never outliving the
//!   server); one without is a logical agent (state only).

mod actor;
mod catalog;
mod config;
mod containment;
mod event;
mod group;
mod output;

pub use actor::AgentLive;
pub use catalog::{AgentType, TypeInfo, UnknownAgentType};
pub use config::{
    effective_depends_on, is_agent_name, resolve, resolve_agents, validate_agents, AgentConfig,
    CommandOrigin, FieldError, FieldErrorKind, Limits, ResolveError, ResolvedAgent,
    RESERVED_ENVIRONMENT,
};
pub(crate) use config::{
    in_range, validate_backoff, validate_command, validate_environment_at, validate_name,
};
pub use containment::{adopt_orphans, contain, release};
pub use event::{AgentAlert, AgentEvent, AlertKind, Severity};
pub use group::{
    health, AgentContext, AgentError, AgentGroup, AgentStatus, EventSink, GroupHealth,
};
pub use output::{LogLine, Stream, MAX_LINE_BYTES, RING_LINES};
pub use supervision::process::ProcessExit;

pub(crate) use supervision::process::tree as process_tree;
