//! Sessions: the seed's session configuration as a supervised, persistent thing.
//!
//! - `model.rs`: [`SessionConfig`] (the seed's configuration, key for key), [`SessionStatus`],
//!   [`SessionRecord`] (what the registry keeps and stores);
//! - `store.rs`: the records and each session's shared context, mapped onto storage's
//!   session rows (the SQL is storage's);
//! - `actor.rs`: the session actor, owner of the session's [`AgentGroup`](crate::agent::AgentGroup),
//!   which turns its agents' states into the session's status;
//! - `registry.rs`: the registry actor that owns, restores and supervises every session, and
//!   [`SessionRegistry`], the typed handle every caller uses;
//! - `claude.rs`: [`ClaudeActivity`], what the `claude` module announces of a Claude Code
//!   session (its [`ActivityState`] and attribution);
//! - `resources.rs`: [`SessionSample`] and [`ResourceAlert`], what the monitor announces on
//!   the bus (defined here, with the events that carry them);
//! - `bus.rs`: [`EventBus`], where every session, agent and context event is published in
//!   one order, numbered for the audit trail and, when opened on storage, kept in the
//!   event log without the publisher waiting;
//! - `query.rs`: [`SessionQuery`] (the parameters of `GET /sessions`) and [`select`];
//! - `snapshot.rs`: [`Snapshot`], [`export`] and [`parse_import`];
//! - `error.rs`: [`SessionError`].

mod actor;
mod bus;
mod claude;
mod error;
mod model;
mod query;
mod registry;
mod resources;
mod snapshot;
mod store;

pub use actor::{AgentOp, SessionView};

/// Hands memory freed after a burst of work (a restore's records and starts, the monitor's
/// first look at every restored session) back to the system: glibc keeps freed memory in
/// its arenas, so without this a server that restored 100,000 sessions would keep the
/// burst's peak as its resident size.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns free pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
pub use bus::{
    stored_row, Encoder, EventBus, Follower, Keep, LogError, LogStatus, LostRange, Published,
};
pub use claude::{ActivityState, ClaudeActivity};
pub use error::SessionError;
pub use model::{
    SessionConfig, SessionRecord, SessionStatus, UnknownStatus, MAX_CUSTOM_SETTINGS_BYTES,
    MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_PATH_BYTES, MAX_TAGS, MAX_TAG_CHARS,
};
pub use query::{
    select, Page, Row, SessionQuery, Sort, SortKey, DEFAULT_LIMIT, MAX_LIMIT, MAX_PATTERN_CHARS,
};
pub use registry::{
    CloneSession, CreateSession, ImportSession, RestoreReport, SessionEvent, SessionRegistry,
    UpdateSession, MAX_CONTEXT_KEY_CHARS, MAX_CONTEXT_VALUE_BYTES,
};
pub use resources::{AgentSample, Resource, ResourceAlert, SessionSample};
pub use snapshot::{
    export, parse_import, Snapshot, SnapshotContext, FORMAT_VERSION, MAX_SHARED_KEYS,
    MAX_SHARED_KEY_CHARS,
};
