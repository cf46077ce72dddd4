//! Validations of listed working directories, kept for a short while: `GET /sessions`
//! shows each listed session's validation, and at 100,000 sessions re-reading a page's
//! directories (a `stat` per component, `access`, `statvfs`, a repository discovery walking
//! up to `/` and, in a repository, its status) on every listing was most of its cost.
//!
//! The bound a client can rely on: a validation in a listing was read at most `ttl`
//! (`paths.listing_cache_ms`) before the listing answered. A directory deleted, created or
//! made a repository shows so in every listing that starts `ttl` after the change. Past
//! half its age an entry is still served and read again in the background, so a listed
//! page under steady use never waits for the file system; past `ttl` it is never served.
//!
//! Only complete answers are kept: a `timed_out` or interrupted validation drops the entry,
//! so a hung mount is shown as such (through `stuck`) on the next listing, not hidden by an
//! older answer. A single session's `GET`, a create, a navigate and `POST /validate-paths`
//! never use this: they read afresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::{CheckCode, Validation};

/// Entries past which expired ones are swept on the next insert: the cache holds what
/// listings showed within `ttl`, so this is reached only when many pages are listed fast.
const SWEEP_AT: usize = 4096;

/// Recently read validations by the path as written.
#[derive(Debug)]
pub(super) struct Recent {
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    validation: Arc<Validation>,
    /// When the reading that gave it began: its age is counted from there.
    read_at: Instant,
    /// A background reading of it is under way.
    refreshing: bool,
}

/// What is known of a path at a given instant.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Known {
    /// Read less than `ttl` ago; `refresh` when it is past half of that and nobody reads it
    /// again yet (the caller then does, in the background).
    Fresh {
        validation: Arc<Validation>,
        refresh: bool,
    },
    /// Never read, or read `ttl` ago or more: read it before answering.
    Unknown,
}

impl Recent {
    /// A cache whose answers are at most `ttl` old; `ttl` zero keeps nothing.
    pub(super) fn new(ttl: Duration) -> Recent {
        Recent {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // Plain data, each change a single insert or field write: a panic leaves no half.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What is known of `raw` at `now`. Answering `refresh: true` marks the entry as being
    /// read again, so only one caller starts that reading.
    pub(super) fn get(&self, raw: &str, now: Instant) -> Known {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(raw) else {
            return Known::Unknown;
        };
        let age = now.saturating_duration_since(entry.read_at);
        if age >= self.ttl {
            entries.remove(raw);
            return Known::Unknown;
        }
        let refresh = !entry.refreshing && age >= self.ttl / 2;
        entry.refreshing |= refresh;
        Known::Fresh {
            validation: Arc::clone(&entry.validation),
            refresh,
        }
    }

    /// Keeps `validation` of `raw`, whose reading began at `read_at`, unless a reading that
    /// began later is already kept. An incomplete answer (timed out, interrupted) is not
    /// kept and drops what was: the next listing reads the path again.
    pub(super) fn keep(&self, raw: &str, validation: Arc<Validation>, read_at: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if !complete(&validation) {
            entries.remove(raw);
            return;
        }
        if entries.len() >= SWEEP_AT {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.read_at.elapsed() < ttl);
        }
        match entries.get_mut(raw) {
            Some(entry) if entry.read_at > read_at => entry.refreshing = false,
            _ => {
                entries.insert(
                    raw.to_owned(),
                    Entry {
                        validation,
                        read_at,
                        refreshing: false,
                    },
                );
            }
        }
    }

    /// Paths kept now; for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Whether the validation looked at everything it had to: one that gave up says nothing
/// lasting about the path.
fn complete(validation: &Validation) -> bool {
    !validation.has(CheckCode::TimedOut) && !validation.has(CheckCode::ValidationIncomplete)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Check;

    fn validation(raw: &str, exists: bool) -> Arc<Validation> {
        let mut validation = Validation::refused(raw, Vec::new());
        validation.exists = exists;
        Arc::new(validation)
    }

    fn fresh(known: Known) -> (bool, bool) {
        match known {
            Known::Fresh {
                validation,
                refresh,
            } => (validation.exists, refresh),
            Known::Unknown => panic!("expected a fresh entry"),
        }
    }

    #[test]
    fn an_answer_is_served_until_its_age_reaches_the_bound_and_never_after() {
        let ttl = Duration::from_millis(1000);
        let recent = Recent::new(ttl);
        let t0 = Instant::now();
        assert_eq!(recent.get("/a", t0), Known::Unknown);
        recent.keep("/a", validation("/a", true), t0);
        assert_eq!(fresh(recent.get("/a", t0)), (true, false));
        let before_half = t0 + ttl / 2 - Duration::from_millis(1);
        assert_eq!(fresh(recent.get("/a", before_half)), (true, false));
        // Past half its age: served, and one caller (only) is told to read it again.
        assert_eq!(fresh(recent.get("/a", t0 + ttl / 2)), (true, true));
        let last = t0 + ttl - Duration::from_nanos(1);
        assert_eq!(fresh(recent.get("/a", last)), (true, false));
        // At the bound: read again before answering, and the old answer is gone.
        assert_eq!(recent.get("/a", t0 + ttl), Known::Unknown);
        assert_eq!(recent.len(), 0);
    }

    #[test]
    fn a_later_reading_wins_whatever_order_they_end_in() {
        let ttl = Duration::from_secs(60);
        let recent = Recent::new(ttl);
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        recent.keep("/a", validation("/a", false), t1);
        // A reading that began earlier ends later: it says nothing newer.
        recent.keep("/a", validation("/a", true), t0);
        assert_eq!(fresh(recent.get("/a", t1)), (false, false));
        recent.keep("/a", validation("/a", true), t1 + Duration::from_millis(1));
        assert_eq!(fresh(recent.get("/a", t1)), (true, false));
    }

    #[test]
    fn an_incomplete_answer_is_not_kept_and_drops_the_older_one() {
        let recent = Recent::new(Duration::from_secs(60));
        let t0 = Instant::now();
        recent.keep("/a", validation("/a", true), t0);
        let timed_out = Validation::refused(
            "/a",
            vec![Check::error(CheckCode::TimedOut, "no answer".to_owned())],
        );
        recent.keep("/a", Arc::new(timed_out), t0 + Duration::from_millis(1));
        assert_eq!(recent.get("/a", t0), Known::Unknown);
    }

    #[test]
    fn a_zero_bound_keeps_nothing() {
        let recent = Recent::new(Duration::ZERO);
        let t0 = Instant::now();
        recent.keep("/a", validation("/a", true), t0);
        assert_eq!(recent.get("/a", t0), Known::Unknown);
        assert_eq!(recent.len(), 0);
    }
}
