//! Restoring the stored sessions at start: each judged again and started (64 at a time,
//! each on a task of its own), in line (`SessionRegistry::start`) or in the background
//! while the server listens (`start_restoring`), with the lookups of a session not restored
//! yet parked until its restore ends.

use std::sync::Arc;

use futures::StreamExt;
use ractor::ActorRef;

use crate::paths::CheckCode;
use crate::session::actor::SessionDeps;
use crate::session::error::SessionError;
use crate::session::model::{now, SessionRecord, SessionStatus};
use crate::session::store;

use super::super::events::SessionEvent;
use super::{start_session, Entry, RegistryMsg, RegistryState, StartedSession, RESTORE_AT_ONCE};

impl RegistryState {
    /// Starts the live sessions found at start, [`RESTORE_AT_ONCE`] at a time, each on a task
    /// of its own so every core works; one whose directory no longer passes, or that cannot
    /// start, is put in `error`.
    pub(super) async fn restore(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        records: Vec<SessionRecord>,
    ) {
        let records = waiting(records);
        self.place(&records);
        let mut starts = restores(self.deps.clone(), myself.clone(), records);
        while let Some((record, stored, started)) = starts.next().await {
            self.restored(myself, record, stored, started).await;
        }
    }

    /// [`Self::restore`] on a task of its own: every stored session is in the registry at
    /// once (`initializing`, without agents: listed; a lookup of one is parked until its
    /// restore ends), and each joins as its start ends (`RegistryMsg::Restored`). The
    /// server listens meanwhile: 100,000 stored sessions take seconds to start, not to
    /// answer.
    pub(super) fn restore_in_background(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        records: Vec<SessionRecord>,
    ) {
        if records.is_empty() {
            self.log_restored();
            return;
        }
        self.restoring = records.len();
        let records = waiting(records);
        self.place(&records);
        for (record, _) in &records {
            self.unrestored.insert(record.id, Vec::new());
        }
        let mut starts = restores(self.deps.clone(), myself.clone(), records);
        let registry = myself.clone();
        self.restorer = Some(tokio::spawn(async move {
            while let Some((fallback, stored, outcome)) = starts.next().await {
                let message = RegistryMsg::Restored {
                    fallback,
                    stored,
                    outcome,
                };
                if let Err(ractor::MessagingErr::SendErr(RegistryMsg::Restored {
                    outcome: Ok(Restored::Started((live, _))),
                    ..
                })) = registry.cast(message)
                {
                    live.dismiss("the registry is gone");
                }
            }
        }));
    }

    /// Puts the sessions to restore in, `initializing` and without an actor, until their
    /// restore ends (the record shared with the restore: no copy).
    pub(super) fn place(&mut self, records: &[Waiting]) {
        for (record, _) in records {
            let entry = Entry {
                record: record.clone(),
                live: None,
                rebuilds: 0,
            };
            self.sessions.insert(record.id, entry);
        }
    }

    /// A restored session's start ended: adopted, or put in `error`; the lookups that waited
    /// for it are answered.
    pub(super) async fn restored(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        record: Arc<SessionRecord>,
        stored: SessionStatus,
        started: Result<Restored, SessionError>,
    ) {
        let id = record.id;
        self.restore_outcome(record, stored, started).await;
        self.answer_parked(myself, id).await;
    }

    pub(super) async fn restore_outcome(
        &mut self,
        record: Arc<SessionRecord>,
        stored: SessionStatus,
        started: Result<Restored, SessionError>,
    ) {
        // Terminated or purged while it was being restored: the outcome is dropped (a
        // started actor goes without storing anything), so the delete stands.
        let waiting = self
            .sessions
            .get(&record.id)
            .is_some_and(|e| e.live.is_none() && e.record.status == SessionStatus::Initializing);
        if !waiting {
            if let Ok(Restored::Started((live, _))) = started {
                live.dismiss("no longer wanted");
            }
            return;
        }
        match started {
            Ok(Restored::Refused(message)) => {
                let mut record = SessionRecord::clone(&record);
                record.status = SessionStatus::Error;
                record.error_message = Some(message);
                record.updated_at = now();
                self.save_later(&record);
                self.report.errored += 1;
                self.sessions.insert(record.id, Entry::idle(record, 0));
            }
            Ok(Restored::Started((live, _))) if self.stopping => {
                // Started while the server stops: it stops with the rest, as stored.
                live.dismiss("server shutting down");
            }
            Ok(Restored::Started((live, started))) => {
                // Back as it was stored: nothing to announce.
                if started.status != stored {
                    self.deps
                        .bus
                        .publish(SessionEvent::Updated(Box::new(SessionRecord::clone(
                            &started,
                        ))));
                }
                self.adopt(live, started);
                self.report.restored += 1;
            }
            Err(err) => {
                let mut record = SessionRecord::clone(&record);
                record.status = SessionStatus::Error;
                record.error_message = Some(err.to_string());
                self.save_later(&record);
                self.report.errored += 1;
                self.sessions.insert(record.id, Entry::idle(record, 0));
            }
        }
    }

    /// Stores a record on a task of its own: the loop never waits on a write (100,000
    /// sessions refused at a restore are 100,000 writes).
    pub(super) fn save_later(&self, record: &SessionRecord) {
        let storage = self.deps.storage.clone();
        let record = record.clone();
        tokio::spawn(async move {
            if let Err(err) = store::save(&storage, &record).await {
                tracing::error!(session = %record.id, "cannot store the session: {err}");
            }
        });
    }

    pub(super) fn log_restored(&self) {
        tracing::info!(
            restored = self.report.restored,
            errored = self.report.errored,
            terminated = self.report.terminated,
            "sessions restored"
        );
        // The records read and the starts in flight are freed now.
        crate::session::release_freed_memory();
    }
}

/// A stored session waiting for its restore: its record as the registry shows it meanwhile
/// (status `initializing`; kept to put the session in `error` if its start fails) and the
/// status it was stored with.
pub(super) type Waiting = (Arc<SessionRecord>, SessionStatus);

/// The stored live sessions as they wait for their restore.
fn waiting(records: Vec<SessionRecord>) -> Vec<Waiting> {
    records
        .into_iter()
        .map(|mut record| {
            let stored = record.status;
            record.status = SessionStatus::Initializing;
            // Earlier versions stored a count for every agent, zeros included.
            record.agent_restarts.retain(|_, restarts| *restarts > 0);
            (Arc::new(record), stored)
        })
        .collect()
}

/// The starts of stored sessions, [`RESTORE_AT_ONCE`] at a time, each on a task of its own
/// so every core works: each with its waiting record and the status it was stored with.
fn restores(
    deps: SessionDeps,
    registry: ActorRef<RegistryMsg>,
    records: Vec<Waiting>,
) -> impl futures::Stream<
    Item = (
        Arc<SessionRecord>,
        SessionStatus,
        Result<Restored, SessionError>,
    ),
> {
    futures::stream::iter(records)
        .map(move |(record, stored)| {
            let fallback = record.clone();
            let start = tokio::spawn(restore_one(deps.clone(), registry.clone(), record, stored));
            async move {
                let started = start
                    .await
                    .unwrap_or_else(|err| Err(SessionError::AgentsFailed(err.to_string())));
                (fallback, stored, started)
            }
        })
        .buffer_unordered(RESTORE_AT_ONCE)
}

/// What became of a session restored at start.
pub(crate) enum Restored {
    Started(StartedSession),
    /// Its working directory no longer passes: why, for `error_message`.
    Refused(String),
}

/// Restores one stored session, on a task of its own: its working directory is judged
/// again as an agent's start judges it (`open_directory`: the path policy applied to where
/// the directory really is, no git), and the session is started only if it passes — a
/// directory that vanished, or was swapped for a symlink out of bounds while the server was
/// down, starts nothing.
async fn restore_one(
    deps: SessionDeps,
    registry: ActorRef<RegistryMsg>,
    record: Arc<SessionRecord>,
    stored: SessionStatus,
) -> Result<Restored, SessionError> {
    let directory = &record.configuration.working_directory;
    // On the blocking pool, within the deadline: a hung mount holds one thread, not a
    // worker of the runtime, and the session is put in `error` as timed out.
    if let Err(refused) = deps.paths.open_directory_within(directory).await {
        return Ok(Restored::Refused(if refused.has(CheckCode::DoesNotExist) {
            format!("the working directory {directory} no longer exists")
        } else {
            refused.to_string()
        }));
    }
    start_session(&deps, &registry, record, Some(stored))
        .await
        .map(Restored::Started)
}
