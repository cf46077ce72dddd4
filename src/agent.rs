//! Agents: the supervised workers of a session.
//!
//! - [`AgentType`] and [`TypeInfo`]: the twelve types and their defaults (defined in
//!   [`crate::rules`], below `config`);
//! - [`AgentConfig`] and its validation ([`validate_agents`]), resolved against the server's
//!   `[agents]` settings into a [`ResolvedAgent`];
//! - [`AgentGroup`]: the resolved agents of one session under one supervisor. An agent with a
//!   command owns a real OS process group (spawned in dependency order, restarted with
//!   backoff, limited in memory, stopped with SIGTERM then SIGKILL, never outliving the
//!   server); one without is a logical agent (state only);
//! - Claude Code agents ([`ClaudeConfig`]): the CLI of `[agents.claude] command` in the
//!   agent type's role, on a terminal, with a conversation of its own
//!   ([`assign_session_ids`]) that every start after the first resumes.

mod actor;
mod claude;
mod config;
mod containment;
mod event;
mod group;
mod output;
mod terminal;

pub(crate) use crate::rules::{in_range, validate_environment_at};
pub use actor::AgentLive;
pub(crate) use claude::transcript_path;
pub use claude::{assign_session_ids, ClaudeConfig, PERMISSION_MODES};
pub use config::{
    effective_depends_on, resolve, resolve_agents, validate_agents, AgentConfig, CommandOrigin,
    Limits, ResolveError, ResolvedAgent,
};
// The agent types and the field rules live in `crate::rules`, below `config`, which checks
// templates with them; they are re-exported here, where agents are described.
pub use crate::rules::{
    is_agent_name, AgentType, FieldError, FieldErrorKind, TypeInfo, UnknownAgentType,
    RESERVED_ENVIRONMENT,
};
pub use containment::{adopt_orphans, contain, release};
pub use event::{AgentAlert, AgentEvent, AlertKind, Severity};
pub use group::{
    health, AgentContext, AgentError, AgentGroup, AgentStatus, EventSink, GroupHealth,
};
pub use output::{LogLine, Stream, MAX_LINE_BYTES, RING_LINES};
pub use supervision::process::ProcessExit;
pub use terminal::{
    checked_size, Screen, Terminal, TerminalError, Viewer, DEFAULT_SIZE as DEFAULT_TERMINAL_SIZE,
    MAX_DIMENSION as MAX_TERMINAL_DIMENSION,
};

pub(crate) use supervision::process::tree as process_tree;
