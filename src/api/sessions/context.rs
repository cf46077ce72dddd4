//! A session's shared context: `GET /sessions/{id}/context` and one key's get, put and
//! delete.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::api::dto::requests::ContextPutBody;
use crate::api::errors::ApiError;
use crate::api::ApiContext;

use super::{ok, segment, session_id, Answer, Parsed};

/// `GET /sessions/{id}/context`.
pub(crate) async fn context_all(ctx: ApiContext, id: String) -> Answer {
    let id = session_id(&id)?;
    let entries = ctx.sessions.context(id).await?;
    let context: Map<String, Value> = entries.into_iter().collect();
    ok(&ContextPayload {
        session_id: id.to_string(),
        context,
    })
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ContextPayload {
    session_id: String,
    /// Every key with its value.
    #[schema(value_type = Object)]
    context: Map<String, Value>,
}

/// One context key: `value` (get, put), `previous` (put, delete; null when it was unset).
#[derive(Serialize, ToSchema)]
pub(crate) struct ContextKeyPayload {
    session_id: String,
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<Option<Value>>,
}

/// `GET /sessions/{id}/context/{key}`: 404 `context_key_not_found` when unset.
pub(crate) async fn context_get(ctx: ApiContext, id: String, key: String) -> Answer {
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    match ctx.sessions.context_get(id, &key).await? {
        Some(value) => ok(&ContextKeyPayload {
            session_id: id.to_string(),
            key,
            value: Some(value),
            previous: None,
        }),
        None => Err(ApiError::ContextKeyNotFound(format!(
            "session {id} has no context key `{key}`"
        ))),
    }
}

/// `PUT /sessions/{id}/context/{key}` with `{"value": …}`.
pub(crate) async fn context_put(
    ctx: ApiContext,
    id: String,
    key: String,
    body: Parsed<ContextPutBody>,
) -> Answer {
    let body = body?;
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    let previous = ctx
        .sessions
        .context_put(id, &key, body.value.clone())
        .await?;
    ok(&ContextKeyPayload {
        session_id: id.to_string(),
        key,
        value: Some(body.value),
        previous: Some(previous),
    })
}

/// `DELETE /sessions/{id}/context/{key}`.
pub(crate) async fn context_delete(ctx: ApiContext, id: String, key: String) -> Answer {
    let id = session_id(&id)?;
    let key = segment(&key, "key")?;
    match ctx.sessions.context_delete(id, &key).await? {
        Some(previous) => ok(&ContextKeyPayload {
            session_id: id.to_string(),
            key,
            value: None,
            previous: Some(Some(previous)),
        }),
        None => Err(ApiError::ContextKeyNotFound(format!(
            "session {id} has no context key `{key}`"
        ))),
    }
}
