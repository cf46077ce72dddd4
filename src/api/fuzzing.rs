//! Entry points for the fuzz targets under `fuzz/`, compiled only with the `fuzzing` feature
//! (never in a normal build): the request-body layer is private to the API, and a fuzzer must
//! reach it as a request does.

use serde_json::{Map, Value};

use super::body;
use super::dto::requests::{
    self, CloneBody, ContextPutBody, ExportBody, ImportBody, NavigateBody, UpdateBody,
    ValidatePathBody, ValidatePathsBody,
};
use super::envelope;
use super::errors::ApiError;
use crate::session::{CloneSession, ImportSession, UpdateSession};

/// Reads `bytes` as the body of every route that takes one, through the same parsing and
/// conversion the route applies before it reaches the registry, and renders each refusal as
/// its response. Returns how many routes accepted the body. A refusal is an ordinary answer;
/// only a panic is a finding.
pub fn request_body(bytes: &[u8]) -> usize {
    let outcomes: [Result<(), ApiError>; 10] = [
        body::parse::<Map<String, Value>>(bytes)
            .and_then(requests::create_session)
            .map(drop),
        body::parse::<UpdateBody>(bytes).map(|b| drop(UpdateSession::from(b))),
        body::parse::<NavigateBody>(bytes).map(drop),
        body::parse::<CloneBody>(bytes)
            .and_then(CloneSession::try_from)
            .map(drop),
        body::parse::<ExportBody>(bytes).map(drop),
        body::parse::<ImportBody>(bytes)
            .and_then(ImportSession::try_from)
            .map(drop),
        body::parse::<ValidatePathBody>(bytes).map(drop),
        body::parse::<ValidatePathsBody>(bytes).map(drop),
        body::parse::<ContextPutBody>(bytes).map(drop),
        // The hook route's payload: any object.
        body::parse::<Map<String, Value>>(bytes).map(drop),
    ];
    let mut accepted = 0;
    for outcome in outcomes {
        match outcome {
            Ok(()) => accepted += 1,
            Err(error) => {
                let response = envelope::failure(&error);
                assert!(response.status().is_client_error(), "{error:?}");
            }
        }
    }
    accepted
}
