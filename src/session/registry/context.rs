//! The shared context of a session: keys checked here, values stored durably before the
//! change is announced.

use serde_json::Value;
use uuid::Uuid;

use crate::storage::ContextPut;

use crate::session::error::SessionError;
use crate::session::store;

use super::{SessionEvent, SessionRegistry};

/// Longest shared-context key, in characters.
pub const MAX_CONTEXT_KEY_CHARS: usize = 256;
/// Largest shared-context value, serialized, in bytes.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 256 * 1024;

impl SessionRegistry {
    /// Every shared-context key and value of a session.
    pub async fn context(&self, id: Uuid) -> Result<Vec<(String, Value)>, SessionError> {
        self.lookup(id).await?;
        Ok(store::context_all(&self.deps.storage, id).await?)
    }

    /// One shared-context value.
    pub async fn context_get(&self, id: Uuid, key: &str) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        Ok(store::context_get(&self.deps.storage, id, key.to_string()).await?)
    }

    /// Sets a shared-context value (durably) and announces it; returns the previous value.
    pub async fn context_put(
        &self,
        id: Uuid,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        let size = serde_json::to_vec(&value)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_CONTEXT_VALUE_BYTES {
            return Err(crate::agent::FieldError::invalid(
                "value",
                format!("must be at most {MAX_CONTEXT_VALUE_BYTES} bytes of JSON, got {size}"),
            )
            .into());
        }
        let previous =
            match store::context_put(&self.deps.storage, id, key.to_string(), value.clone()).await?
            {
                ContextPut::Stored { previous } => previous,
                ContextPut::NoSession => return Err(SessionError::NotFound(id)),
            };
        self.deps.bus.publish(SessionEvent::ContextChanged {
            session: id,
            key: key.to_string(),
            value: Some(value),
        });
        Ok(previous)
    }

    /// Deletes a shared-context value and announces it; returns it.
    pub async fn context_delete(&self, id: Uuid, key: &str) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        let previous = store::context_delete(&self.deps.storage, id, key.to_string()).await?;
        if previous.is_some() {
            self.deps.bus.publish(SessionEvent::ContextChanged {
                session: id,
                key: key.to_string(),
                value: None,
            });
        }
        Ok(previous)
    }
}

fn validate_context_key(key: &str) -> Result<(), SessionError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_CONTEXT_KEY_CHARS {
        return Err(crate::agent::FieldError::invalid(
            "key",
            format!("must be 1-{MAX_CONTEXT_KEY_CHARS} characters, got {chars}"),
        )
        .into());
    }
    match crate::names::forbidden_character(key) {
        Some(c) => Err(crate::agent::FieldError::invalid("key", crate::names::refusal(c)).into()),
        None => Ok(()),
    }
}
