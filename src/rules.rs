//! What the server knows about agents before it reads any settings: the twelve agent types
//! with their defaults ([`AgentType`], [`TypeInfo`]; `catalog.rs`), and the rules every agent
//! value follows wherever it is written (`fields.rs`), with [`FieldError`] naming a refused
//! value by its path.
//!
//! Both `config` (a `[agents.templates.<TYPE>]` table) and `agent` (an agent's configuration)
//! check values with these rules, so this module sits below both and imports nothing of the
//! server; `agent` re-exports it at its old paths (`agent::AgentType`, `agent::FieldError`).

mod catalog;
mod fields;

pub use catalog::{AgentType, TypeInfo, UnknownAgentType};
pub(crate) use fields::{
    in_range, join_path, validate_arguments, validate_command, validate_environment_at,
    validate_name,
};
pub use fields::{is_agent_name, FieldError, FieldErrorKind, RESERVED_ENVIRONMENT};
#[cfg(test)]
pub(crate) use fields::{MAX_ARG_BYTES, MAX_COMMAND_ARGS};
