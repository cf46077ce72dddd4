//! The registry actor: the set of sessions (terminated ones until purged), restored at
//! start, each live one's actor supervised and rebuilt when it dies, `max_sessions`
//! enforced, terminated sessions purged past their retention. Its message loop never waits
//! on slow work — storing a new session, starting or rebuilding its actor, stopping a
//! retired one, deleting a purged one: it decides in the loop (reserving the id and the
//! slot under `max_sessions`), runs the work on a task, and the task reports back with a
//! message (`Inserted`, `Rebuilt`, `Retired`, `Purged`) that the loop applies. So one slow
//! disk or one session whose agents ignore SIGTERM delays no other session's lookup.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::Value;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::storage::LoadedSessions;

use crate::session::actor::{
    open, Opened, Opening, SessionActor, SessionArgs, SessionDeps, SessionMsg, SessionShared,
};
use crate::session::error::SessionError;
use crate::session::model::{now, SessionRecord, SessionStatus};
use crate::session::store;

use super::events::SessionEvent;

mod restore;
mod wake;

pub(crate) use restore::Restored;

/// How often terminated sessions past their retention are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Rebuilds of one session's actor after which it is left in `error`.
pub(super) const MAX_REBUILDS: u32 = 3;
/// Sessions a start restores at the same time: enough to keep every core busy, few enough
/// that the records and futures in flight stay small.
const RESTORE_AT_ONCE: usize = 64;

/// What a start restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Sessions whose agents were started again.
    pub restored: usize,
    /// Sessions put in `error` (their directory vanished).
    pub errored: usize,
    /// Terminated sessions kept (not started).
    pub terminated: usize,
    /// Stored rows that could not be read (left in the database, not started).
    pub unreadable: usize,
    /// Terminated sessions purged for being past their retention.
    pub purged: usize,
}
pub(crate) enum RegistryMsg {
    Insert {
        record: Box<SessionRecord>,
        /// Shared context stored with the record, in the same transaction (an import's).
        context: Vec<(String, Value)>,
        arrival: Arrival,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    /// A new session's task stored and started it (or could not: then nothing of it is
    /// stored).
    Inserted {
        initial: Box<SessionRecord>,
        arrival: Arrival,
        outcome: Result<StartedSession, SessionError>,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    /// A rebuild's task started the session's actor again (or could not).
    Rebuilt {
        id: Uuid,
        before: SessionStatus,
        outcome: Result<StartedSession, SessionError>,
    },
    Lookup {
        id: Uuid,
        /// For an order: a dormant session gets its actor first (see `RegistryState::wake`).
        wake: bool,
        reply: RpcReplyPort<Option<Found>>,
    },
    List(RpcReplyPort<Vec<Arc<SessionRecord>>>),
    Retire {
        record: Box<SessionRecord>,
        purge: bool,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    /// A retirement's task stopped the actor (and deleted the row of a purge).
    Retired {
        record: Box<SessionRecord>,
        purge: bool,
        outcome: Result<(), SessionError>,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    /// The purge's task deleted this expired session.
    Purged(Uuid),
    /// A session actor's record changed: the registry keeps it (shared) and announces it.
    Updated(Arc<SessionRecord>),
    Purge,
    StopAll(RpcReplyPort<()>),
    /// What the start restored; answered once every stored session has been tried.
    Report(RpcReplyPort<RestoreReport>),
    /// A new session was stored and its start begins (see `store_and_start`).
    Stored(Arc<SessionRecord>),
    /// A stored session's restore ended (see `restore_in_background`).
    Restored {
        /// Its record as stored (status `initializing`), to put in `error` on a failure.
        fallback: Arc<SessionRecord>,
        /// The status it was stored with.
        stored: SessionStatus,
        outcome: Result<Restored, SessionError>,
    },
}

/// A live session: what it shares, for reads, and its actor, for orders — none while the
/// session is dormant (see `Opened::Dormant`): a lookup for an order wakes one.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) shared: Arc<SessionShared>,
}

impl Live {
    /// The session's actor, if it has one.
    pub(crate) fn actor(&self) -> Option<ActorRef<SessionMsg>> {
        self.shared.actor()
    }

    /// Stops the session, unwanted (`why`): its actor, if it has one; a dormant session has
    /// nothing running, and its group goes with the last reader.
    pub(crate) fn dismiss(&self, why: &str) {
        self.shared.close();
        if let Some(actor) = self.actor() {
            actor.stop(Some(why.into()));
        }
    }
}

/// A session as the registry has it: its record and, while it is live, its actor.
pub(super) type Found = (Arc<SessionRecord>, Option<Live>);

/// A started session: its actor and the record its start left.
pub(crate) type StartedSession = (Live, Arc<SessionRecord>);

/// How a new session came to be, for the event that announces it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arrival {
    Created,
    Cloned { source: Uuid },
    Imported,
}

struct Entry {
    /// Shared with the session's actor (see `SessionState::record`).
    record: Arc<SessionRecord>,
    live: Option<Live>,
    rebuilds: u32,
}

impl Entry {
    /// A session without an actor (terminated, or in error).
    fn idle(record: SessionRecord, rebuilds: u32) -> Entry {
        Entry {
            record: Arc::new(record),
            live: None,
            rebuilds,
        }
    }
}

pub(super) struct Registry;

/// A lookup waiting for a session's start: its answer, and whether it is for an order.
type Parked = (RpcReplyPort<Option<Found>>, bool);

pub(super) struct RegistryState {
    deps: SessionDeps,
    sessions: BTreeMap<Uuid, Entry>,
    by_actor: HashMap<ActorId, Uuid>,
    /// Ids of new sessions being stored and started on their tasks: taken, and counted
    /// against `max_sessions`, until the task reports.
    reserved: std::collections::HashSet<Uuid>,
    stopping: bool,
    report: RestoreReport,
    /// Stored sessions whose restore has not ended yet.
    restoring: usize,
    /// `restore_report` callers waiting for the restore to end.
    report_waiters: Vec<RpcReplyPort<RestoreReport>>,
    /// The background restore (`restore_in_background`), aborted by a stop.
    restorer: Option<tokio::task::JoinHandle<()>>,
    /// Sessions whose restore (or new session's start) has not ended, with the lookups
    /// waiting for it (and whether each is for an order).
    unrestored: HashMap<Uuid, Vec<Parked>>,
    /// New sessions stored and starting: listed already.
    starting: HashMap<Uuid, Arc<SessionRecord>>,
}

pub(super) struct RegistryArgs {
    pub(super) deps: SessionDeps,
    /// Restore the stored sessions after the start returns (the server listens meanwhile)
    /// instead of before.
    pub(super) background: bool,
}

impl Actor for Registry {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RegistryMsg>,
        args: RegistryArgs,
    ) -> Result<RegistryState, ActorProcessingErr> {
        let mut state = RegistryState {
            deps: args.deps,
            sessions: BTreeMap::new(),
            by_actor: HashMap::new(),
            reserved: std::collections::HashSet::new(),
            stopping: false,
            report: RestoreReport::default(),
            restoring: 0,
            report_waiters: Vec::new(),
            restorer: None,
            unrestored: HashMap::new(),
            starting: HashMap::new(),
        };
        let LoadedSessions {
            records,
            unreadable,
        } = store::load_all(&state.deps.storage).await?;
        for row in &unreadable {
            tracing::error!(session = %row.id, "stored session cannot be read, left as is: {}", row.reason);
        }
        state.report.unreadable = unreadable.len();
        let mut live = Vec::new();
        for record in records {
            if state.expired(&record) {
                if store::delete(&state.deps.storage, record.id)
                    .await
                    .unwrap_or(false)
                {
                    remove_agent_logs(&state.deps, record.id).await;
                    state.report.purged += 1;
                }
                continue;
            }
            if let Some(record) = state.triage(record).await {
                live.push(record);
            }
        }
        myself.send_interval(PURGE_EVERY, || RegistryMsg::Purge);
        if args.background {
            state.restore_in_background(&myself, live);
        } else {
            state.restore(&myself, live).await;
            state.log_restored();
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        let reads = matches!(
            msg,
            RegistryMsg::Lookup { .. } | RegistryMsg::List(_) | RegistryMsg::Report(_)
        );
        // Before the change and its replies: whoever saw the answer of a change sees a new
        // generation, and a listing it then asks for is handled after this message.
        if !reads {
            state
                .deps
                .generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        state.handle(&myself, msg).await
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RegistryMsg>,
        event: SupervisionEvent,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        // A session's actor left: its entry changes (see `SessionRegistry::generation`).
        state
            .deps
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(id) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        let Some(entry) = state.sessions.get_mut(&id) else {
            return Ok(());
        };
        if let Some(live) = entry.live.take() {
            // Its agents die with it now, not when the last reader lets the group go.
            live.shared.set_group(None);
        }
        if entry.record.status.is_terminal() {
            return Ok(());
        }
        // A session actor died on its own: rebuild it from its record, a few times.
        entry.rebuilds += 1;
        let deaths = entry.rebuilds;
        if deaths > MAX_REBUILDS {
            tracing::error!(session = %id, "session actor died ({reason}) again; leaving it in error");
            let message = format!(
                "the session actor died {deaths} times (rebuilt {MAX_REBUILDS} times): {reason}"
            );
            state.fail(id, message);
            return Ok(());
        }
        tracing::error!(session = %id, "session actor died ({reason}); rebuilding it");
        let before = entry.record.status;
        let record = entry.record.clone();
        // Started on a task: its agents' start waits for nobody else's lookup.
        let (deps, registry) = (state.deps.clone(), myself.clone());
        tokio::spawn(async move {
            let outcome = start_session(&deps, &registry, record, None).await;
            if let Err(ractor::MessagingErr::SendErr(RegistryMsg::Rebuilt {
                outcome: Ok((live, _)),
                ..
            })) = registry.cast(RegistryMsg::Rebuilt {
                id,
                before,
                outcome,
            }) {
                live.dismiss("the registry is gone");
            }
        });
        Ok(())
    }
}

impl RegistryState {
    /// One message, as `Registry::handle` hands it over.
    async fn handle(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        msg: RegistryMsg,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Insert {
                record,
                context,
                arrival,
                reply,
            } => self.insert(myself, *record, context, arrival, reply),
            RegistryMsg::Inserted {
                initial,
                arrival,
                outcome,
                reply,
            } => {
                let _ = reply.send(self.inserted(myself, initial, arrival, outcome).await);
            }
            RegistryMsg::Rebuilt {
                id,
                before,
                outcome,
            } => self.rebuilt(id, before, outcome),
            RegistryMsg::Lookup { id, wake, reply } => {
                if let Some(parked) = self.unrestored.get_mut(&id) {
                    // Answered once its restore ended: a read or an order right after the
                    // server listens finds the session as it was stored, agents and all.
                    parked.push((reply, wake));
                } else {
                    let found = self.found(myself, id, wake).await;
                    let _ = reply.send(found);
                }
            }
            RegistryMsg::List(reply) => {
                let records = self.sessions.values().map(|e| Arc::clone(&e.record));
                // Stored and starting: its agents may already speak (a Claude agent's first
                // hook is attributed by finding its conversation in this list).
                let starting = self.starting.values().cloned();
                let _ = reply.send(records.chain(starting).collect());
            }
            RegistryMsg::Stored(record) => {
                if self.reserved.contains(&record.id) {
                    // Lookups of it wait for its start (see `answer_parked`).
                    self.unrestored.entry(record.id).or_default();
                    self.starting.insert(record.id, record);
                }
            }
            RegistryMsg::Retire {
                record,
                purge,
                reply,
            } => self.retire(myself, *record, purge, reply),
            RegistryMsg::Retired {
                record,
                purge,
                outcome,
                reply,
            } => {
                let _ = reply.send(outcome.map(|()| self.retired(*record, purge)));
            }
            RegistryMsg::Purged(id) => {
                if self.sessions.remove(&id).is_some() {
                    self.deps.bus.publish(SessionEvent::Purged(id));
                }
            }
            RegistryMsg::Updated(record) => {
                if let Some(entry) = self.sessions.get_mut(&record.id) {
                    let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
                    entry.record = record;
                    self.deps.bus.publish(event);
                }
            }
            RegistryMsg::Purge => self.purge_expired(myself),
            RegistryMsg::Report(reply) => {
                if self.restoring == 0 {
                    let _ = reply.send(self.report.clone());
                } else {
                    self.report_waiters.push(reply);
                }
            }
            RegistryMsg::Restored {
                fallback,
                stored,
                outcome,
            } => {
                self.restored(myself, fallback, stored, outcome).await;
                self.restoring = self.restoring.saturating_sub(1);
                if self.restoring == 0 {
                    self.log_restored();
                    for reply in self.report_waiters.drain(..) {
                        let _ = reply.send(self.report.clone());
                    }
                }
            }
            RegistryMsg::StopAll(reply) => {
                self.stopping = true;
                // Sessions not restored yet stay as they are stored.
                if let Some(restorer) = self.restorer.take() {
                    restorer.abort();
                }
                let live: Vec<Live> = self
                    .sessions
                    .values()
                    .filter_map(|e| e.live.clone())
                    .collect();
                // Closing first: an order parked until now finds its session closing.
                for live in &live {
                    live.shared.close();
                }
                let unrestored: Vec<Uuid> = self.unrestored.keys().copied().collect();
                for id in unrestored {
                    self.answer_parked(myself, id).await;
                }
                // Every session with an actor stops its agents (reverse dependency order) at
                // the same time; a dormant one has nothing running.
                let stops = live.iter().filter_map(Live::actor).map(|actor| async move {
                    actor
                        .stop_and_wait(Some("server shutting down".into()), None)
                        .await
                });
                futures::future::join_all(stops).await;
                // What the sessions left unstored, in one transaction: a checkpoint of
                // 100,000 sessions is one write, not 100,000 fsyncs.
                let unsaved: Vec<Arc<SessionRecord>> = live
                    .iter()
                    .filter_map(|l| l.shared.take_unsaved())
                    .collect();
                if !unsaved.is_empty() {
                    if let Err(err) = store::save_all(&self.deps.storage, &unsaved).await {
                        tracing::error!(
                            sessions = unsaved.len(),
                            "the sessions' runtime state was not stored at the stop: {err}"
                        );
                    }
                }
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

impl RegistryState {
    /// Puts a session that has no actor any more in `error` with `message`: stored and
    /// announced.
    fn fail(&mut self, id: Uuid, message: String) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let record = Arc::make_mut(&mut entry.record);
        record.status = SessionStatus::Error;
        record.error_message = Some(message);
        record.updated_at = now();
        let record = entry.record.clone();
        // Stored on a task: the loop does not wait for the disk.
        let storage = self.deps.storage.clone();
        let stored = SessionRecord::clone(&record);
        tokio::spawn(async move {
            if let Err(err) = store::save(&storage, &stored).await {
                tracing::error!(session = %stored.id, "cannot store the session: {err}");
            }
        });
        let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
        self.deps.bus.publish(event);
    }

    /// Live sessions, new ones still starting included.
    fn live(&self) -> usize {
        let live = self.sessions.values();
        live.filter(|e| !e.record.status.is_terminal()).count() + self.reserved.len()
    }

    fn expired(&self, record: &SessionRecord) -> bool {
        let retention = f64::from(self.deps.settings.sessions.terminated_retention_days) * 86_400.0;
        record.status == SessionStatus::Terminated
            && record
                .terminated_at
                .is_some_and(|at| now() - at > retention)
    }

    async fn save(&self, record: &SessionRecord) {
        if let Err(err) = store::save(&self.deps.storage, record).await {
            tracing::error!(session = %record.id, "cannot store the session: {err}");
        }
    }

    /// Sorts a stored session out at start: a terminated one is kept as it is (one caught
    /// terminating is finished); a live one is returned, to be judged and started
    /// ([`restore_one`]).
    async fn triage(&mut self, mut record: SessionRecord) -> Option<SessionRecord> {
        let id = record.id;
        if record.status == SessionStatus::Terminated || record.status == SessionStatus::Terminating
        {
            // A crash while terminating: its agents died with the server; finish the job.
            if record.status == SessionStatus::Terminating {
                record.status = SessionStatus::Terminated;
                record.terminated_at.get_or_insert_with(now);
                self.save(&record).await;
            }
            self.report.terminated += 1;
            self.sessions.insert(id, Entry::idle(record, 0));
            return None;
        }
        Some(record)
    }

    /// Records a started session (its actor, if it has one) and the record its start left.
    fn adopt(&mut self, live: Live, started: Arc<SessionRecord>) {
        // What the actor announced since its start (it writes `shared` first), if anything.
        let announced = live.shared.record();
        let record = if announced.updated_at >= started.updated_at {
            announced
        } else {
            started
        };
        let id = record.id;
        if let Some(actor) = live.actor() {
            self.by_actor.insert(actor.get_id(), id);
        }
        let rebuilds = self.sessions.get(&id).map_or(0, |e| e.rebuilds);
        self.sessions.insert(
            id,
            Entry {
                record,
                live: Some(live),
                rebuilds,
            },
        );
    }

    /// Checks a new session against `max_sessions` and the ids taken, reserves its id, and
    /// stores and starts it on a task that reports with `Inserted`: stored (with its
    /// context) before anything starts, so a refused write creates nothing.
    fn insert(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        record: SessionRecord,
        context: Vec<(String, Value)>,
        arrival: Arrival,
        reply: RpcReplyPort<Result<(), SessionError>>,
    ) {
        let max = self.deps.settings.sessions.max_sessions;
        if self.stopping {
            let _ = reply.send(Err(SessionError::Unavailable));
            return;
        }
        if self.live() >= max as usize {
            let _ = reply.send(Err(SessionError::TooManySessions { max }));
            return;
        }
        if self.sessions.contains_key(&record.id) || self.reserved.contains(&record.id) {
            let _ = reply.send(Err(SessionError::Conflict(format!(
                "a session with id {} exists already",
                record.id
            ))));
            return;
        }
        self.reserved.insert(record.id);
        let (deps, registry) = (self.deps.clone(), myself.clone());
        tokio::spawn(async move {
            let initial = Box::new(record.clone());
            let outcome = store_and_start(&deps, &registry, record, context).await;
            let report = RegistryMsg::Inserted {
                initial,
                arrival,
                outcome,
                reply,
            };
            if let Err(ractor::MessagingErr::SendErr(RegistryMsg::Inserted {
                outcome: Ok((live, _)),
                ..
            })) = registry.cast(report)
            {
                live.dismiss("the registry is gone");
            }
        });
    }

    /// A new session's task reported: adopted and announced, or forgotten.
    async fn inserted(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        initial: Box<SessionRecord>,
        arrival: Arrival,
        outcome: Result<StartedSession, SessionError>,
    ) -> Result<(), SessionError> {
        let id = initial.id;
        self.reserved.remove(&id);
        self.starting.remove(&id);
        let answered = self.inserted_outcome(initial, arrival, outcome);
        self.answer_parked(myself, id).await;
        answered
    }

    fn inserted_outcome(
        &mut self,
        initial: Box<SessionRecord>,
        arrival: Arrival,
        outcome: Result<StartedSession, SessionError>,
    ) -> Result<(), SessionError> {
        let (live, started) = outcome?;
        if self.stopping {
            // Started while the server stops: it stops with the rest (its agents' stop
            // keeps the record for the next start, which restores it).
            live.dismiss("server shutting down");
            return Err(SessionError::Unavailable);
        }
        let changed = started.status != initial.status;
        self.deps.bus.publish(match arrival {
            Arrival::Created => SessionEvent::Created(initial),
            Arrival::Cloned { source } => SessionEvent::Cloned {
                source,
                record: initial,
            },
            Arrival::Imported => SessionEvent::Imported(initial),
        });
        if changed {
            self.deps
                .bus
                .publish(SessionEvent::Updated(Box::new(SessionRecord::clone(
                    &started,
                ))));
        }
        self.adopt(live, started);
        Ok(())
    }

    /// A rebuild's task reported.
    fn rebuilt(
        &mut self,
        id: Uuid,
        before: SessionStatus,
        outcome: Result<StartedSession, SessionError>,
    ) {
        let wanted = !self.stopping
            && self
                .sessions
                .get(&id)
                .is_some_and(|e| e.live.is_none() && !e.record.status.is_terminal());
        match outcome {
            Ok((live, _)) if !wanted => {
                // Terminated, purged or shutting down meanwhile: the rebuilt actor goes.
                live.dismiss("no longer wanted");
            }
            Ok((live, record)) => {
                if record.status != before {
                    let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
                    self.deps.bus.publish(event);
                }
                self.adopt(live, record);
            }
            Err(err) if wanted => {
                tracing::error!(session = %id, "cannot rebuild the session: {err}");
                // No actor, so no agents: never left looking active.
                self.fail(id, format!("the session could not be rebuilt: {err}"));
            }
            Err(_) => {}
        }
    }

    /// Takes a terminated session's actor out of the set and retires it on a task (the
    /// actor stopped, the row deleted for a purge) that reports with `Retired`. The actor
    /// goes first (its agents are already stopped), so nothing it does on the way out can
    /// write the record after a purge deleted it.
    fn retire(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        record: SessionRecord,
        purge: bool,
        reply: RpcReplyPort<Result<(), SessionError>>,
    ) {
        let id = record.id;
        let live = self.sessions.get_mut(&id).and_then(|e| e.live.take());
        let actor = live.as_ref().and_then(Live::actor);
        if let Some(actor) = &actor {
            self.by_actor.remove(&actor.get_id());
        }
        let (deps, registry) = (self.deps.clone(), myself.clone());
        tokio::spawn(async move {
            if let Some(actor) = actor {
                let stopped = actor.stop_and_wait(Some("terminated".into()), None);
                if let Err(err) = stopped.await {
                    tracing::warn!(session = %id, "stopping the session actor: {err}");
                }
            }
            if let Some(live) = live {
                live.shared.set_group(None);
            }
            let outcome = if purge {
                match store::delete(&deps.storage, id).await {
                    Ok(_) => {
                        remove_agent_logs(&deps, id).await;
                        Ok(())
                    }
                    Err(err) => Err(SessionError::from(err)),
                }
            } else {
                Ok(())
            };
            let _ = registry.cast(RegistryMsg::Retired {
                record: Box::new(record),
                purge,
                outcome,
                reply,
            });
        });
    }

    /// A retirement's task reported success: the session is kept terminated, or gone.
    fn retired(&mut self, record: SessionRecord, purge: bool) {
        let id = record.id;
        if let Some(entry) = self.sessions.remove(&id) {
            if !purge {
                self.sessions
                    .insert(id, Entry::idle(record.clone(), entry.rebuilds));
            }
        }
        self.deps.bus.publish(if purge {
            SessionEvent::Purged(id)
        } else {
            SessionEvent::Terminated(Box::new(record))
        });
    }

    /// Deletes the terminated sessions past their retention, on a task that reports each
    /// with `Purged`.
    fn purge_expired(&mut self, myself: &ActorRef<RegistryMsg>) {
        let expired: Vec<Uuid> = self
            .sessions
            .values()
            .filter(|e| self.expired(&e.record))
            .map(|e| e.record.id)
            .collect();
        if expired.is_empty() {
            return;
        }
        let (deps, registry) = (self.deps.clone(), myself.clone());
        tokio::spawn(async move {
            for id in expired {
                if let Err(err) = store::delete(&deps.storage, id).await {
                    tracing::warn!(session = %id, "cannot purge the session: {err}");
                    continue;
                }
                remove_agent_logs(&deps, id).await;
                let _ = registry.cast(RegistryMsg::Purged(id));
            }
        });
    }
}

/// Deletes a purged session's agent output logs (`<data_dir>/logs/<id>`): nothing of it is
/// left behind. A failure is logged; the purge stands.
async fn remove_agent_logs(deps: &SessionDeps, id: Uuid) {
    let dir = deps.settings.log_dir().join(id.to_string());
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(session = %id, "cannot delete the agents' logs {}: {err}", dir.display());
        }
    }
}

/// Starts a session: its agents built and, when they are all logical, started without an
/// actor (dormant, see `Opened::Dormant`); otherwise its actor is spawned, linked to the
/// registry, and starts them. Returns the session and the record as its start left it
/// (status derived from the agents).
async fn start_session(
    deps: &SessionDeps,
    registry: &ActorRef<RegistryMsg>,
    record: Arc<SessionRecord>,
    restored: Option<SessionStatus>,
) -> Result<StartedSession, SessionError> {
    let shared = SessionShared::new(record.clone());
    let (record, group, dirty) = match open(deps, &shared, record, restored).await? {
        Opened::Dormant(record) => return Ok((Live { shared }, record)),
        Opened::Built {
            record,
            group,
            dirty,
        } => (record, group, dirty),
    };
    let (started, on_start) = oneshot::channel();
    let opening = Opening::Start {
        record,
        group,
        dirty,
        restored,
        started,
    };
    spawn_actor(deps, registry, &shared, opening).await?;
    let record = on_start.await.map_err(|_| {
        SessionError::AgentsFailed("the session actor did not report its start".into())
    })?;
    Ok((Live { shared }, record))
}

/// Spawns a session's actor, linked to the registry; it puts itself in `shared`.
pub(super) async fn spawn_actor(
    deps: &SessionDeps,
    registry: &ActorRef<RegistryMsg>,
    shared: &Arc<SessionShared>,
    opening: Opening,
) -> Result<ActorRef<SessionMsg>, SessionError> {
    let args = SessionArgs {
        deps: deps.clone(),
        registry: registry.clone(),
        shared: shared.clone(),
        opening,
    };
    let (actor, _) = Actor::spawn_linked(None, SessionActor, args, registry.get_cell())
        .await
        .map_err(|err| match err {
            ractor::SpawnErr::StartupFailed(reason) => {
                SessionError::AgentsFailed(reason.to_string())
            }
            other => SessionError::AgentsFailed(other.to_string()),
        })?;
    Ok(actor)
}

/// Stores a new session (with its context) and starts it; a session that cannot start is
/// deleted again: nothing of a refused session is kept.
async fn store_and_start(
    deps: &SessionDeps,
    registry: &ActorRef<RegistryMsg>,
    record: SessionRecord,
    context: Vec<(String, Value)>,
) -> Result<StartedSession, SessionError> {
    store::save_new(&deps.storage, &record, context).await?;
    let id = record.id;
    // Before its agents start: the registry lists it from now on (FIFO: ahead of anything
    // its agents cause).
    let record = Arc::new(record);
    let _ = registry.cast(RegistryMsg::Stored(record.clone()));
    let started = start_session(deps, registry, record, None).await;
    if started.is_err() {
        if let Err(again) = store::delete(&deps.storage, id).await {
            tracing::error!(session = %id, "a session that could not start stays stored: {again}");
        }
    }
    started
}
