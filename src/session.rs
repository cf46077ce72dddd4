//! Sessions: the seed's session configuration as a supervised, persistent thing.
//!
//! - `model.rs`: [`SessionConfig`] (the seed's configuration, key for key), [`SessionStatus`],
//!   [`SessionRecord`] (what the registry keeps and stores);
//! - `store.rs`: the records and each session's shared context in SQLite;
//! - `query.rs`: [`SessionQuery`] (the parameters of `GET /sessions`) and [`select`];
//! - `snapshot.rs`: [`Snapshot`], [`export`] and [`parse_import`].

mod model;
mod query;
mod snapshot;
mod store;

pub use model::{
    SessionConfig, SessionRecord, SessionStatus, UnknownStatus, MAX_CUSTOM_SETTINGS_BYTES,
    MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, MAX_PATH_BYTES, MAX_TAGS, MAX_TAG_CHARS,
};
pub use query::{
    select, Page, SessionQuery, Sort, SortKey, DEFAULT_LIMIT, MAX_LIMIT, MAX_PATTERN_CHARS,
};
pub use snapshot::{
    export, parse_import, Snapshot, SnapshotContext, FORMAT_VERSION, MAX_SHARED_KEYS,
    MAX_SHARED_KEY_CHARS,
};
