//! Validations of one path asked for at the same time, done once, and still fresh for every
//! caller: a caller never gets a validation that started before it asked.
//!
//! Per path, one task runs *rounds* of validation. A caller arriving while no round runs
//! starts round 1 (and the task); one arriving while round *r* runs waits for round *r + 1*,
//! which starts as soon as *r* ends and is shared by everyone who arrived during *r*. So under
//! a burst of requests for the same session the file system and the repository are read once
//! per round instead of once per request, and each answer was still read after its request
//! came in. The task ends, and the path is forgotten, after a round nobody asked again during.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use super::Validation;

/// The last round finished and its validation (none before the first).
type Done = (u64, Option<Arc<Validation>>);

/// The paths being validated now.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    paths: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    /// The round running now.
    running: u64,
    /// Someone asked during it: another round follows.
    again: bool,
    done: watch::Receiver<Done>,
}

impl InFlight {
    fn paths(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.paths.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Joins the first round of `raw` that starts after this call, starting the rounds with
    /// `start` when none runs: it is given the sender to publish each round on, and must
    /// call [`InFlight::finished`] after each, or [`InFlight::forget`] if the rounds stop
    /// otherwise. `None` when they stopped without reaching this call's round.
    pub(super) async fn join(
        &self,
        raw: &str,
        start: impl FnOnce(watch::Sender<Done>),
    ) -> Option<Arc<Validation>> {
        let (mut done, wanted) = {
            let mut paths = self.paths();
            match paths.get_mut(raw) {
                Some(entry) => {
                    entry.again = true;
                    (entry.done.clone(), entry.running + 1)
                }
                None => {
                    let (sender, done) = watch::channel((0, None));
                    paths.insert(
                        raw.to_owned(),
                        Entry {
                            running: 1,
                            again: false,
                            done: done.clone(),
                        },
                    );
                    start(sender);
                    (done, 1)
                }
            }
        };
        let reached = done.wait_for(|(round, _)| *round >= wanted).await.ok()?;
        reached.1.clone()
    }

    /// Publishes round `round` of `raw`; true when another round must run (someone asked
    /// during this one), false when the path is forgotten and the rounds end.
    pub(super) fn finished(
        &self,
        raw: &str,
        round: u64,
        validation: Validation,
        sender: &watch::Sender<Done>,
    ) -> bool {
        let mut paths = self.paths();
        // Under the lock: a caller either joined this round's successor before, or finds
        // no entry after and starts afresh.
        sender.send_replace((round, Some(Arc::new(validation))));
        match paths.get_mut(raw) {
            Some(entry) if entry.again => {
                entry.again = false;
                entry.running = round + 1;
                true
            }
            _ => {
                paths.remove(raw);
                false
            }
        }
    }

    /// The rounds of `raw` stopped before [`finished`](InFlight::finished) said so (a panic,
    /// or a task dropped at shutdown): the next caller starts afresh.
    pub(super) fn forget(&self, raw: &str) {
        self.paths().remove(raw);
    }

    /// Paths with rounds running; for tests.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.paths().len()
    }
}
