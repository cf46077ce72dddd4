//! Sessions and their shared context, persisted through storage's backend-neutral session
//! methods ([`Storage::save_session`] and its siblings). This file is the mapping from the
//! session model to storage's rows — the columns beside the record — and holds no SQL:
//! storage knows no session type, so the session layer says what each column holds.

use serde_json::Value;
use uuid::Uuid;

use crate::storage::{ContextPut, LoadedSessions, SessionRow, Storage, StorageError};

use super::model::SessionRecord;

/// Inserts or replaces a session's row.
pub(crate) async fn save(storage: &Storage, record: &SessionRecord) -> Result<(), StorageError> {
    save_new(storage, record, Vec::new()).await
}

/// Inserts or replaces a session's row and sets the given context keys with it, in one
/// transaction: both are stored, or neither.
pub(crate) async fn save_new(
    storage: &Storage,
    record: &SessionRecord,
    context: Vec<(String, Value)>,
) -> Result<(), StorageError> {
    storage.save_session(row_of(record), record, context).await
}

/// Inserts or replaces the rows of `records`, all in one transaction.
pub(crate) async fn save_all(
    storage: &Storage,
    records: &[std::sync::Arc<SessionRecord>],
) -> Result<(), StorageError> {
    let rows = records
        .iter()
        .map(|record| Ok((row_of(record), serde_json::to_string(&**record)?)))
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    storage.save_sessions(rows).await
}

/// The columns beside the record: what a query or an operator reads without decoding it.
fn row_of(record: &SessionRecord) -> SessionRow {
    SessionRow {
        id: record.id,
        name: record.configuration.name.clone(),
        status: record.status.as_str().to_string(),
        working_directory: record.configuration.working_directory.clone(),
        created_at: record.created_at,
        updated_at: record.updated_at,
        terminated_at: record.terminated_at,
    }
}

/// Deletes a session and its context; false when there was none.
pub(crate) async fn delete(storage: &Storage, id: Uuid) -> Result<bool, StorageError> {
    storage.delete_session(id).await
}

/// Every stored session, oldest first, and the rows that could not be decoded.
pub(crate) async fn load_all(
    storage: &Storage,
) -> Result<LoadedSessions<SessionRecord>, StorageError> {
    storage.load_sessions().await
}

/// One context value.
pub(crate) async fn context_get(
    storage: &Storage,
    session: Uuid,
    key: String,
) -> Result<Option<Value>, StorageError> {
    storage.context_value(session, key).await
}

/// Every context key and value of a session, in key order.
pub(crate) async fn context_all(
    storage: &Storage,
    session: Uuid,
) -> Result<Vec<(String, Value)>, StorageError> {
    storage.session_context(session).await
}

/// Sets a context value, unless the session's row is gone; says what it replaced.
pub(crate) async fn context_put(
    storage: &Storage,
    session: Uuid,
    key: String,
    value: Value,
) -> Result<ContextPut, StorageError> {
    storage.put_context(session, key, value).await
}

/// Deletes a context value; returns it.
pub(crate) async fn context_delete(
    storage: &Storage,
    session: Uuid,
    key: String,
) -> Result<Option<Value>, StorageError> {
    storage.delete_context(session, key).await
}
