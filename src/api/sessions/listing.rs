//! The rows `GET /sessions` selects from ([`Row`]), kept while the registry's generation
//! stays: a listing of 100,000 sessions then neither asks the registry for every record
//! nor copies and drops 100,000 shared pointers (a cache miss each), and filters a vector
//! read in a stream. A reader that saw the same generation saw the same sessions
//! ([`SessionRegistry::generation`]), so the rows are exactly what the registry holds;
//! after any change the next listing builds them afresh.

use std::sync::{Arc, Mutex, PoisonError};

use crate::session::{Row, SessionError, SessionRegistry};

/// The last rows built, with the generation they were read at.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    kept: Mutex<Option<(u64, Arc<[Row]>)>>,
}

impl Listing {
    /// The rows of every session the registry holds now.
    pub(crate) async fn rows(
        &self,
        sessions: &SessionRegistry,
    ) -> Result<Arc<[Row]>, SessionError> {
        // Read first: a change during the build tags the rows older, never newer.
        let generation = sessions.generation();
        if let Some((kept, rows)) = &*self.kept.lock().unwrap_or_else(PoisonError::into_inner) {
            if *kept == generation {
                return Ok(Arc::clone(rows));
            }
        }
        let rows: Arc<[Row]> = sessions
            .records()
            .await?
            .into_iter()
            .map(Row::new)
            .collect();
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((generation, Arc::clone(&rows)));
        Ok(rows)
    }
}
