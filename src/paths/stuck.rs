//! Paths whose reading outlived the deadline and has not come back yet. While a path is
//! here, a validation or git call on it answers `timed_out` at once instead of waiting the
//! deadline again and taking another thread of the blocking pool: a hung mount costs one
//! deadline and one thread, not one per request (a page of `GET /sessions` validates every
//! listed session's directory). The path leaves the set as soon as a reading of it returns.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, Default)]
pub(super) struct Stuck {
    paths: Mutex<HashSet<String>>,
}

impl Stuck {
    fn paths(&self) -> MutexGuard<'_, HashSet<String>> {
        // Plain data: a panic while holding it leaves nothing half-done.
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.paths().contains(key)
    }

    pub(super) fn mark(&self, key: &str) {
        self.paths().insert(key.to_owned());
    }

    pub(super) fn clear(&self, key: &str) {
        self.paths().remove(key);
    }
}
