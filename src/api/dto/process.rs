//! The process layer's types in their wire shapes. `supervision::process` has no serde (an
//! embedder's wire is its own business), so what a client sees of a process is decided here.

use serde::Serialize;
use supervision::process::ProcessExit;
use utoipa::ToSchema;

use super::session::seconds;

// No doc comments on the type or its fields: they would become descriptions in
// /openapi.json, which stays as it was.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LastExit {
    code: Option<i32>,
    signal: Option<i32>,
    at: f64,
}

impl From<&ProcessExit> for LastExit {
    fn from(exit: &ProcessExit) -> Self {
        LastExit {
            code: exit.code(),
            signal: exit.signal(),
            at: seconds(exit.at()),
        }
    }
}
