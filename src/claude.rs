//! What every Claude Code session is doing, from the hooks it posts and the telemetry it
//! exports.
//!
//! - `install`: the hook settings that make Claude Code report to this server, merged into
//!   and removed from Claude Code's settings files without touching the user's own hooks.

pub mod install;
