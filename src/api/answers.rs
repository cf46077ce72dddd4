//! Answers of `GET /sessions/{id}` kept between the session's changes: dashboards and
//! scripts poll sessions far more often than sessions change, and building the answer (two
//! actor round trips, a path validation, a 3–7 KB serialization) costs several times what
//! serving it does.
//!
//! A kept answer is tagged with the session's version on the event bus
//! ([`EventBus::changes`](crate::session::EventBus::changes)) and the monitor's
//! ([`Monitor::version`](crate::monitor::Monitor::version)), both read *before* the answer
//! was built; it is served only while both are unchanged and for at most [`FRESH_FOR`].
//! Every change of the session — its record, an agent's state, an order, a hook event, a
//! sample, an alert — moves one of them before (or, for the session actor's record, as) it
//! is acknowledged, so a client never reads its own write undone; what no event announces
//! (the working directory on disk, an agent's memory between samples, the clock in
//! `duration_hours`) is at most [`FRESH_FOR`] old. Only the payload is kept: each answer
//! gets its own envelope `timestamp`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

/// Longest a kept answer is served, however quiet its session.
pub(crate) const FRESH_FOR: Duration = Duration::from_secs(1);

/// Most answers kept; past it, those out of date go, and if none is, all of them.
const MOST: usize = 4096;

/// The versions an answer was built at: the session's on the bus, the monitor's.
pub(crate) type Version = (u64, u64);

/// Kept answers by session.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    kept: Mutex<HashMap<Uuid, Kept>>,
}

#[derive(Debug)]
struct Kept {
    version: Version,
    made: Instant,
    data: Bytes,
}

impl Kept {
    fn fresh(&self, version: Version, now: Instant) -> bool {
        self.version == version && now.duration_since(self.made) < FRESH_FOR
    }
}

impl Answers {
    /// The payload kept for `session` if it was built at `version` less than
    /// [`FRESH_FOR`] ago.
    pub(crate) fn fresh(&self, session: Uuid, version: Version) -> Option<Bytes> {
        let kept = self.kept();
        let answer = kept.get(&session)?;
        answer
            .fresh(version, Instant::now())
            .then(|| answer.data.clone())
    }

    /// Keeps `data`, the payload built for `session` after `version` was read.
    pub(crate) fn keep(&self, session: Uuid, version: Version, data: Bytes) {
        let now = Instant::now();
        let mut kept = self.kept();
        if kept.len() >= MOST && !kept.contains_key(&session) {
            kept.retain(|_, answer| now.duration_since(answer.made) < FRESH_FOR);
            if kept.len() >= MOST {
                kept.clear();
            }
        }
        kept.insert(
            session,
            Kept {
                version,
                made: now,
                data,
            },
        );
    }

    fn kept(&self) -> MutexGuard<'_, HashMap<Uuid, Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_served_only_at_its_version() {
        let answers = Answers::default();
        let session = Uuid::new_v4();
        assert_eq!(answers.fresh(session, (1, 1)), None);
        answers.keep(session, (1, 1), Bytes::from_static(b"{}"));
        assert_eq!(
            answers.fresh(session, (1, 1)),
            Some(Bytes::from_static(b"{}"))
        );
        assert_eq!(answers.fresh(session, (2, 1)), None, "the session changed");
        assert_eq!(answers.fresh(session, (1, 2)), None, "the monitor changed");
        assert_eq!(answers.fresh(Uuid::new_v4(), (1, 1)), None);
    }

    #[test]
    fn an_answer_is_not_served_once_it_is_too_old() {
        let made = Instant::now();
        let kept = Kept {
            version: (1, 1),
            made,
            data: Bytes::new(),
        };
        assert!(kept.fresh((1, 1), made + FRESH_FOR / 2));
        assert!(!kept.fresh((1, 1), made + FRESH_FOR));
    }

    #[test]
    fn the_kept_answers_stay_bounded() {
        let answers = Answers::default();
        for _ in 0..MOST + 10 {
            answers.keep(Uuid::new_v4(), (0, 0), Bytes::new());
        }
        assert!(answers.kept().len() <= MOST);
    }
}
