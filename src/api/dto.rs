//! Wire shapes: the only types with wire-format serde attributes.

pub(crate) mod claude;
pub(crate) mod monitor;
mod output;
pub(crate) mod process;
pub(crate) mod requests;
pub(crate) mod session;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::health::ServiceState;

/// The first keys of a successful response. The envelope goes on with `data` (the payload,
/// the original's documented format) and the payload's keys again at the top level (where
/// the original clients read them); `envelope::success` writes those from one serialization
/// of the payload, which must therefore be a JSON object not using these key names.
#[derive(Debug, Serialize)]
pub(crate) struct SuccessHead<'a> {
    pub(crate) success: bool,
    pub(crate) timestamp: f64,
    pub(crate) error: Option<&'a str>,
}

/// A failed response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Failure)]
pub(crate) struct ErrorEnvelope<'a> {
    /// Always false.
    pub(crate) success: bool,
    /// Unix seconds.
    pub(crate) timestamp: f64,
    /// What went wrong, for people.
    pub(crate) error: &'a str,
    /// Stable snake_case code clients branch on (`session_validation_error`, `not_found`, …).
    pub(crate) error_code: &'static str,
    /// e.g. `{"field": "agents[1].agent_type"}`, `{"retry_after_seconds": 1}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) details: Option<Value>,
}

/// `GET /health`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Health {
    /// `healthy`; `degraded` (a part works, but not fully: see `problems`); `unhealthy`
    /// (storage cannot write; answered with 503).
    pub(crate) status: &'static str,
    pub(crate) version: &'static str,
    pub(crate) uptime_seconds: f64,
    /// Each part by name (`api`, `storage`, `event_log`, `sessions`, `monitor`): `running`,
    /// `degraded`, `failing` (cannot do its work) or `stopping`.
    pub(crate) services: BTreeMap<String, &'static str>,
    /// What is wrong, part by part; empty when healthy.
    pub(crate) problems: Vec<HealthProblem>,
}

/// One thing `/health` reports wrong.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub(crate) struct HealthProblem {
    /// The part (`storage`, `event_log`, `monitor`).
    pub(crate) part: &'static str,
    /// What is wrong, in the server's own words.
    pub(crate) reason: String,
    /// Since when (Unix seconds), when known.
    pub(crate) since: Option<f64>,
}

pub(crate) fn service_state(state: ServiceState) -> &'static str {
    match state {
        ServiceState::Running => "running",
        ServiceState::Degraded => "degraded",
        ServiceState::Stopping => "stopping",
    }
}
