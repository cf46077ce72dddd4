//! Agents: the twelve types and their defaults ([`AgentType`], [`TypeInfo`]), an agent's
//! configuration and its validation ([`AgentConfig`], [`validate_agents`]), and its resolution
//! against the server's `[agents]` settings into a [`ResolvedAgent`], what the agent actor runs.

mod catalog;
mod config;

pub use catalog::{AgentType, TypeInfo, UnknownAgentType};
pub use config::{
    effective_depends_on, is_agent_name, resolve, resolve_agents, validate_agents, AgentConfig,
    CommandOrigin, FieldError, FieldErrorKind, Limits, ResolveError, ResolvedAgent,
    RESERVED_ENVIRONMENT,
};
pub(crate) use config::{validate_backoff, validate_command, validate_name};
