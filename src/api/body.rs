//! Reading requests: JSON bodies and query strings, strictly.
//!
//! A body must be JSON (`Content-Type: application/json` or `…+json`; none at all is taken as
//! JSON, as scripts often omit it), at most `server.max_body_bytes` long however it is sent
//! (chunked bodies announce no length, so the limit is enforced while reading), and must
//! match its request type exactly: a syntax error names the line and column, a wrong or
//! unknown field is named by its path (`agents[1].agent_type`). An empty body is `{}`, so
//! routes whose fields are all optional accept a bare POST.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::{Buf, BufMut};
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use std::convert::Infallible;

use warp::Filter;

use super::errors::ApiError;

/// How much of a body a route reads, and for how long.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// `server.max_body_bytes`.
    pub(crate) bytes: u64,
    /// `server.body_read_timeout_ms`, for the whole body: a per-chunk timeout would let a
    /// client that sends a byte now and then hold the request forever.
    pub(crate) time: Duration,
}

/// Reads a body within `limits` and parses it as `T`.
pub(crate) async fn read_json<T, S, B>(
    content_type: Option<&str>,
    stream: S,
    limits: Limits,
) -> Result<T, ApiError>
where
    T: DeserializeOwned,
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    if !is_json(content_type) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let bytes = tokio::time::timeout(limits.time, read_capped(stream, limits.bytes))
        .await
        .map_err(|_elapsed| ApiError::RequestTimeout {
            timeout_ms: u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX),
        })??;
    parse::<T>(&bytes)
}

/// Reads a body of any type within `limits`, as bytes.
pub(crate) async fn read_bytes<S, B>(stream: S, limits: Limits) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    tokio::time::timeout(limits.time, read_capped(stream, limits.bytes))
        .await
        .map_err(|_elapsed| ApiError::RequestTimeout {
            timeout_ms: u64::try_from(limits.time.as_millis()).unwrap_or(u64::MAX),
        })?
}

/// A filter yielding the query string's parameters; a repeated parameter is refused rather
/// than silently collapsed.
pub(crate) fn query(
) -> impl Filter<Extract = (Result<BTreeMap<String, String>, ApiError>,), Error = Infallible> + Clone
{
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .map(|raw: String| parse_query(&raw))
}

fn parse_query(raw: &str) -> Result<BTreeMap<String, String>, ApiError> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(ApiError::Validation {
                message: format!("query parameter `{name}` is given more than once"),
                field: Some(name.into_owned()),
            });
        }
    }
    Ok(params)
}

fn is_json(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

async fn read_capped<S, B>(stream: S, limit: u64) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = Vec::new();
    futures::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::Validation {
            message: "the request body could not be read".into(),
            field: None,
        })?;
        if (body.len() + chunk.remaining()) as u64 > limit {
            return Err(ApiError::PayloadTooLarge { limit: Some(limit) });
        }
        body.put(chunk);
    }
    Ok(body)
}

/// Parses a body: an empty one is `{}`; errors name the position or the field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(described)?;
    // Valid JSON, but a key given twice would silently mean its last value.
    let mut again = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, Unique>(&mut again).map_err(described)?;
    deserializer.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::Validation {
        message: format!(
            "malformed JSON at line {} column {}: {}",
            error.line(),
            error.column(),
            strip_position(&error.to_string())
        ),
        field: None,
    }
}

/// A parse error as the client should read it: the position of a syntax error, the path
/// of a field error.
fn described(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    if inner.is_syntax() || inner.is_eof() {
        return malformed(&inner);
    }
    let text = inner.to_string();
    let field = match missing_field(&text) {
        Some(name) if path == "." => Some(name.to_string()),
        Some(name) => Some(format!("{path}.{name}")),
        None => (path != ".").then_some(path),
    };
    let message = match &field {
        Some(field) => format!("{field}: {}", strip_position(&text)),
        None => strip_position(&text),
    };
    if text.starts_with("unknown agent type") {
        // Well-formed, but names no type the server has: 422, as a cycle is.
        return ApiError::Unprocessable {
            code: "session_validation_error",
            details: field
                .as_ref()
                .map(|field| serde_json::json!({ "field": field })),
            message,
        };
    }
    ApiError::Validation { message, field }
}

/// Any JSON value, refusing an object that names a key twice (at any depth).
struct Unique;

impl<'de> serde::Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format_args!(
                    "duplicate key `{key}`"
                )));
            }
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
}

/// The field a "missing field `x`" error names.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// serde_json appends " at line L column C" to data errors; the field path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        size: u8,
    }

    fn field_of(body: &str) -> (Option<String>, String) {
        match parse::<Req>(body.as_bytes()) {
            Err(ApiError::Validation { field, message }) => (field, message),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_or_the_position() {
        let (field, message) = field_of(r#"{"name": "a", "items": [{"size": 1}, {"size": 300}]}"#);
        assert_eq!(field.as_deref(), Some("items[1].size"));
        assert!(message.starts_with("items[1].size: "), "{message}");
        let (field, message) = field_of(r#"{"name": "a", "colour": 1}"#);
        assert_eq!(field.as_deref(), Some("colour"));
        assert!(message.contains("unknown field"), "{message}");
        let (field, message) = field_of("{\"name\": \n \"a\",}");
        assert_eq!(field, None);
        assert!(message.contains("line 2 column"), "{message}");
        let (field, message) = field_of(r#"{"name": "a"} trailing"#);
        assert_eq!(field, None);
        assert!(message.contains("malformed JSON"), "{message}");
        let (field, message) = field_of("");
        assert_eq!(
            field.as_deref(),
            Some("name"),
            "an empty body is {{}}: {message}"
        );
        let (field, _) = field_of(r#"{"name": "a", "items": [{}]}"#);
        assert_eq!(field.as_deref(), Some("items[0].size"));
        let (field, message) = field_of(r#"{"name": "a", "name": "b"}"#);
        assert!(message.contains("duplicate"), "{message}");
        assert_eq!(field, None);
        assert!(parse::<serde_json::Value>(br#"{"a": {"b": 1, "b": 2}}"#).is_err());
        assert!(parse::<serde_json::Value>(br#"[{"b": 1}, {"b": 2}]"#).is_ok());
    }

    #[test]
    fn content_types() {
        assert!(is_json(None));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("Application/JSON")));
        assert!(is_json(Some("application/merge-patch+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
    }

    #[test]
    fn repeated_query_parameters_are_refused() {
        assert_eq!(
            parse_query("a=1&b=x%20y").unwrap(),
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "x y".into())])
        );
        assert!(parse_query("a=1&a=2").is_err());
        assert!(parse_query("").unwrap().is_empty());
    }
}
