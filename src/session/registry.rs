//! The registry actor: owns the set of sessions. It keeps every record (terminated ones
//! too, until purged), restores the live ones at start, supervises their actors (one that
//! dies is rebuilt from its record and takes its agents back up), enforces
//! `sessions.max_sessions`, and purges terminated sessions after
//! `sessions.terminated_retention_days`.
//!
//! Callers use [`SessionRegistry`], a cloneable handle with typed methods. Slow work — path
//! validation, creating a directory, stopping agents — happens in the handle or in the
//! session's own actor, never in the registry's message loop.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use crate::agent::{
    resolve, resolve_agents, AgentConfig, AgentEvent, AgentStatus, CommandOrigin, FieldError,
    LogLine,
};
use crate::config::Settings;
use crate::paths::{CheckCode, PathPolicy, Validation};
use crate::storage::Storage;
use crate::supervision::Strategy;

use super::actor::{
    AgentOp, RecordChange, SessionActor, SessionArgs, SessionDeps, SessionMsg, SessionView,
};
use super::bus::{EventBus, Published};
use super::error::SessionError;
use super::model::{now, validate_tags, SessionConfig, SessionRecord, SessionStatus};
use super::resources::{ResourceAlert, SessionSample};
use super::snapshot::{self, Snapshot};
use super::store;

/// How often terminated sessions past their retention are looked for.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Rebuilds of one session's actor after which it is left in `error`.
const MAX_REBUILDS: u32 = 3;
/// Sessions a start restores at the same time: enough to keep every core busy, few enough
/// that the records and futures in flight stay small.
const RESTORE_AT_ONCE: usize = 64;
/// Longest shared-context key, in characters.
pub const MAX_CONTEXT_KEY_CHARS: usize = 256;
/// Largest shared-context value, serialized, in bytes.
pub const MAX_CONTEXT_VALUE_BYTES: usize = 256 * 1024;

/// What a create asks for: the seed's configuration plus ours.
#[derive(Debug, Clone)]
pub struct CreateSession {
    /// The session configuration.
    pub configuration: SessionConfig,
    /// Tags.
    pub tags: Vec<String>,
    /// How a crash affects the other agents.
    pub strategy: Strategy,
    /// Create the working directory (and its parents) when it is missing and the policy
    /// allows it.
    pub create_if_missing: bool,
}

impl CreateSession {
    /// A create with the defaults: no tags, `one_for_one`, directory created when missing.
    pub fn new(configuration: SessionConfig) -> Self {
        CreateSession {
            configuration,
            tags: Vec::new(),
            strategy: Strategy::OneForOne,
            create_if_missing: true,
        }
    }
}

/// What an import asks for.
#[derive(Debug, Clone)]
pub struct ImportSession {
    /// The snapshot, as exported.
    pub session_data: Value,
    /// Keep the snapshot's session id (refused while a session has it).
    pub keep_id: bool,
    /// Work here instead of the snapshot's directory.
    pub working_directory: Option<String>,
    /// Create the directory when missing and allowed (default true).
    pub create_if_missing: bool,
}

impl ImportSession {
    /// An import with a new id, in the snapshot's own directory.
    pub fn new(session_data: Value) -> Self {
        ImportSession {
            session_data,
            keep_id: false,
            working_directory: None,
            create_if_missing: true,
        }
    }
}

/// What a clone asks for.
#[derive(Debug, Clone)]
pub struct CloneSession {
    /// The clone's name.
    pub new_name: String,
    /// Where the clone works; the source's directory when `None` (and no worktree).
    pub new_working_directory: Option<String>,
    /// Copy the agents (default true).
    pub copy_agents: bool,
    /// Copy the session environment (default true).
    pub copy_environment: bool,
    /// Work in a new git worktree of the source's repository, on this new branch.
    pub git_worktree: Option<String>,
}

impl CloneSession {
    /// A clone named `new_name`, copying agents and environment, in the same directory.
    pub fn new(new_name: impl Into<String>) -> Self {
        CloneSession {
            new_name: new_name.into(),
            new_working_directory: None,
            copy_agents: true,
            copy_environment: true,
            git_worktree: None,
        }
    }
}

/// The fields an update may change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateSession {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New `auto_save`.
    pub auto_save: Option<bool>,
    /// New `save_interval_seconds`.
    pub save_interval_seconds: Option<u64>,
    /// New `max_memory_mb`.
    pub max_memory_mb: Option<u64>,
    /// New `max_agents`.
    pub max_agents: Option<u32>,
    /// New session environment (replaces the old one; restarts the agents).
    pub environment_variables: Option<BTreeMap<String, String>>,
    /// New `custom_settings`.
    pub custom_settings: Option<Value>,
    /// New tags (replace the old ones).
    pub tags: Option<Vec<String>>,
    /// New agent list (replaces the old one; restarts the agents).
    pub agents: Option<Vec<AgentConfig>>,
}

/// A change the server announces on its [`EventBus`].
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// A session was created with this record.
    Created(Box<SessionRecord>),
    /// A session was created as a clone of `source`.
    Cloned {
        /// The session it was cloned from.
        source: Uuid,
        /// The new session.
        record: Box<SessionRecord>,
    },
    /// A session was created from an imported snapshot.
    Imported(Box<SessionRecord>),
    /// A session's record changed (status, activity, an update).
    Updated(Box<SessionRecord>),
    /// A session moved to another working directory (its agents were restarted there).
    Navigated(Box<SessionRecord>),
    /// A client activated, deactivated or restarted an agent.
    AgentCommand {
        /// The session.
        session: Uuid,
        /// What was asked.
        op: AgentOp,
        /// The agent as it is afterwards.
        agent: Box<AgentStatus>,
    },
    /// Claude Code reported a hook event (PreToolUse, PostToolUse, Stop, …) for a session.
    Hook {
        /// The session.
        session: Uuid,
        /// `hook_event_name` of the payload.
        name: String,
        /// The payload as Claude Code sent it.
        payload: Value,
    },
    /// An agent of a session changed state, wrote a line, exited or raised an alert.
    Agent {
        /// The session.
        session: Uuid,
        /// What happened.
        event: AgentEvent,
    },
    /// A session was terminated.
    Terminated(Box<SessionRecord>),
    /// The monitor raised a resource alert (a session's, or the host's).
    Alert(Box<ResourceAlert>),
    /// A resource alert is over; `value` is the one that resolved it.
    AlertResolved(Box<ResourceAlert>),
    /// The monitor sampled a session. Not kept in the log, like output lines.
    Metrics(Arc<SessionSample>),
    /// A terminated session was deleted.
    Purged(Uuid),
    /// The event log gave up these seqs (storage refused them for longer than the backlog
    /// could hold them): a client resuming across them must reload what it shows.
    EventsLost {
        /// The first seq lost.
        first: u64,
        /// The last seq lost.
        last: u64,
    },
    /// A shared-context key was set (`value: Some`) or deleted (`None`).
    ContextChanged {
        /// The session.
        session: Uuid,
        /// The key.
        key: String,
        /// The new value.
        value: Option<Value>,
    },
}

impl SessionEvent {
    /// The session the event is about; `None` for an alert of the host.
    pub fn session(&self) -> Option<Uuid> {
        match self {
            SessionEvent::Created(record)
            | SessionEvent::Imported(record)
            | SessionEvent::Updated(record)
            | SessionEvent::Navigated(record)
            | SessionEvent::Terminated(record)
            | SessionEvent::Cloned { record, .. } => Some(record.id),
            SessionEvent::AgentCommand { session, .. }
            | SessionEvent::Hook { session, .. }
            | SessionEvent::Agent { session, .. }
            | SessionEvent::ContextChanged { session, .. }
            | SessionEvent::Purged(session) => Some(*session),
            SessionEvent::Alert(alert) | SessionEvent::AlertResolved(alert) => alert.session,
            SessionEvent::Metrics(sample) => Some(sample.session_id),
            SessionEvent::EventsLost { .. } => None,
        }
    }
}

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
        reply: RpcReplyPort<Result<ActorRef<SessionMsg>, SessionError>>,
    },
    Lookup {
        id: Uuid,
        reply: RpcReplyPort<Option<Found>>,
    },
    List(RpcReplyPort<Vec<SessionRecord>>),
    Retire {
        record: Box<SessionRecord>,
        purge: bool,
        reply: RpcReplyPort<Result<(), SessionError>>,
    },
    /// A session actor's record changed: the registry keeps it (shared) and announces it.
    Updated(Arc<SessionRecord>),
    Purge,
    StopAll(RpcReplyPort<()>),
    Report(RpcReplyPort<RestoreReport>),
}

/// A session as the registry has it: its record and, while it is live, its actor.
type Found = (Arc<SessionRecord>, Option<ActorRef<SessionMsg>>);

/// A started session: its actor and the record its start left.
type StartedSession = (ActorRef<SessionMsg>, Arc<SessionRecord>);

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
    actor: Option<ActorRef<SessionMsg>>,
    rebuilds: u32,
}

impl Entry {
    /// A session without an actor (terminated, or in error).
    fn idle(record: SessionRecord, rebuilds: u32) -> Entry {
        Entry {
            record: Arc::new(record),
            actor: None,
            rebuilds,
        }
    }
}

struct Registry;

struct RegistryState {
    deps: SessionDeps,
    sessions: BTreeMap<Uuid, Entry>,
    by_actor: HashMap<ActorId, Uuid>,
    stopping: bool,
    report: RestoreReport,
}

struct RegistryArgs {
    deps: SessionDeps,
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
            stopping: false,
            report: RestoreReport::default(),
        };
        let (records, unreadable) = store::load_all(&state.deps.storage).await?;
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
        state.restore(&myself, live).await;
        myself.send_interval(PURGE_EVERY, || RegistryMsg::Purge);
        tracing::info!(
            restored = state.report.restored,
            errored = state.report.errored,
            terminated = state.report.terminated,
            "sessions restored"
        );
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RegistryMsg>,
        msg: RegistryMsg,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RegistryMsg::Insert {
                record,
                context,
                arrival,
                reply,
            } => {
                let _ = reply.send(state.insert(&myself, *record, context, arrival).await);
            }
            RegistryMsg::Lookup { id, reply } => {
                let found = state
                    .sessions
                    .get(&id)
                    .map(|e| (e.record.clone(), e.actor.clone()));
                let _ = reply.send(found);
            }
            RegistryMsg::List(reply) => {
                let records = state.sessions.values();
                let _ = reply.send(records.map(|e| SessionRecord::clone(&e.record)).collect());
            }
            RegistryMsg::Retire {
                record,
                purge,
                reply,
            } => {
                let _ = reply.send(state.retire(*record, purge).await);
            }
            RegistryMsg::Updated(record) => {
                if let Some(entry) = state.sessions.get_mut(&record.id) {
                    let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
                    entry.record = record;
                    state.deps.bus.publish(event);
                }
            }
            RegistryMsg::Purge => {
                state.purge_expired().await;
            }
            RegistryMsg::Report(reply) => {
                let _ = reply.send(state.report.clone());
            }
            RegistryMsg::StopAll(reply) => {
                state.stopping = true;
                let actors: Vec<_> = state
                    .sessions
                    .values()
                    .filter_map(|e| e.actor.clone())
                    .collect();
                // Every session stops its agents (reverse dependency order) at the same time.
                let stops = actors
                    .iter()
                    .map(|actor| actor.stop_and_wait(Some("server shutting down".into()), None));
                futures::future::join_all(stops).await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RegistryMsg>,
        event: SupervisionEvent,
        state: &mut RegistryState,
    ) -> Result<(), ActorProcessingErr> {
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
        entry.actor = None;
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
            state.fail(id, message).await;
            return Ok(());
        }
        tracing::error!(session = %id, "session actor died ({reason}); rebuilding it");
        let before = entry.record.status;
        let record = SessionRecord::clone(&entry.record);
        match start_session(&state.deps, &myself, record).await {
            Ok((actor, record)) => {
                if record.status != before {
                    let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
                    state.deps.bus.publish(event);
                }
                state.adopt(actor, record);
            }
            Err(err) => {
                tracing::error!(session = %id, "cannot rebuild the session: {err}");
                // No actor, so no agents: never left looking active.
                state
                    .fail(id, format!("the session could not be rebuilt: {err}"))
                    .await;
            }
        }
        Ok(())
    }
}

impl RegistryState {
    /// Puts a session that has no actor any more in `error` with `message`: stored and
    /// announced.
    async fn fail(&mut self, id: Uuid, message: String) {
        let Some(entry) = self.sessions.get_mut(&id) else {
            return;
        };
        let record = Arc::make_mut(&mut entry.record);
        record.status = SessionStatus::Error;
        record.error_message = Some(message);
        record.updated_at = now();
        let record = entry.record.clone();
        self.save(&record).await;
        let event = SessionEvent::Updated(Box::new(SessionRecord::clone(&record)));
        self.deps.bus.publish(event);
    }

    fn live(&self) -> usize {
        self.sessions
            .values()
            .filter(|e| !e.record.status.is_terminal())
            .count()
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

    /// Starts the live sessions found at start, [`RESTORE_AT_ONCE`] at a time, each on a task
    /// of its own so every core works; one whose directory no longer passes, or that cannot
    /// start, is put in `error`.
    async fn restore(&mut self, myself: &ActorRef<RegistryMsg>, records: Vec<SessionRecord>) {
        let deps = self.deps.clone();
        let mut starts = futures::stream::iter(records)
            .map(|mut record| {
                record.status = SessionStatus::Initializing;
                // Earlier versions stored a count for every agent, zeros included.
                record.agent_restarts.retain(|_, restarts| *restarts > 0);
                // Kept to put the session in `error` if its start fails.
                let fallback = record.clone();
                let start = tokio::spawn(restore_one(deps.clone(), myself.clone(), record));
                async move { (fallback, start.await) }
            })
            .buffer_unordered(RESTORE_AT_ONCE);
        while let Some((mut record, started)) = starts.next().await {
            let started =
                started.unwrap_or_else(|err| Err(SessionError::AgentsFailed(err.to_string())));
            match started {
                Ok(Restored::Refused(message)) => {
                    record.status = SessionStatus::Error;
                    record.error_message = Some(message);
                    record.updated_at = now();
                    self.save(&record).await;
                    self.report.errored += 1;
                    self.sessions.insert(record.id, Entry::idle(record, 0));
                }
                Ok(Restored::Started((actor, started))) => {
                    if started.status != record.status {
                        self.deps.bus.publish(SessionEvent::Updated(Box::new(
                            SessionRecord::clone(&started),
                        )));
                    }
                    self.adopt(actor, started);
                    self.report.restored += 1;
                }
                Err(err) => {
                    record.status = SessionStatus::Error;
                    record.error_message = Some(err.to_string());
                    self.save(&record).await;
                    self.report.errored += 1;
                    self.sessions.insert(record.id, Entry::idle(record, 0));
                }
            }
        }
    }

    /// Records a started session actor and the record its start left.
    fn adopt(&mut self, actor: ActorRef<SessionMsg>, record: Arc<SessionRecord>) {
        let id = record.id;
        self.by_actor.insert(actor.get_id(), id);
        let rebuilds = self.sessions.get(&id).map_or(0, |e| e.rebuilds);
        self.sessions.insert(
            id,
            Entry {
                record,
                actor: Some(actor),
                rebuilds,
            },
        );
    }

    async fn insert(
        &mut self,
        myself: &ActorRef<RegistryMsg>,
        record: SessionRecord,
        context: Vec<(String, Value)>,
        arrival: Arrival,
    ) -> Result<ActorRef<SessionMsg>, SessionError> {
        let max = self.deps.settings.sessions.max_sessions;
        if self.live() >= max as usize {
            return Err(SessionError::TooManySessions { max });
        }
        if self.sessions.contains_key(&record.id) {
            return Err(SessionError::Conflict(format!(
                "a session with id {} exists already",
                record.id
            )));
        }
        // Stored (with its context) before anything starts: a refused write creates nothing.
        store::save_new(&self.deps.storage, &record, context).await?;
        let id = record.id;
        let initial = Box::new(record.clone());
        match start_session(&self.deps, myself, record).await {
            Ok((actor, started)) => {
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
                self.adopt(actor.clone(), started);
                Ok(actor)
            }
            Err(err) => {
                // Nothing of a refused session is kept.
                if let Err(again) = store::delete(&self.deps.storage, id).await {
                    tracing::error!(session = %id, "a session that could not start stays stored: {again}");
                }
                Err(err)
            }
        }
    }

    async fn retire(&mut self, record: SessionRecord, purge: bool) -> Result<(), SessionError> {
        let id = record.id;
        // The actor goes first (its agents are already stopped), so nothing it does on the
        // way out can write the record after a purge deleted it.
        if let Some(actor) = self.sessions.get_mut(&id).and_then(|e| e.actor.take()) {
            self.by_actor.remove(&actor.get_id());
            if let Err(err) = actor.stop_and_wait(Some("terminated".into()), None).await {
                tracing::warn!(session = %id, "stopping the session actor: {err}");
            }
        }
        if purge {
            store::delete(&self.deps.storage, id).await?;
            remove_agent_logs(&self.deps, id).await;
        }
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
        Ok(())
    }

    async fn purge_expired(&mut self) {
        let expired: Vec<Uuid> = self
            .sessions
            .values()
            .filter(|e| self.expired(&e.record))
            .map(|e| e.record.id)
            .collect();
        for id in expired {
            if let Err(err) = store::delete(&self.deps.storage, id).await {
                tracing::warn!(session = %id, "cannot purge the session: {err}");
                continue;
            }
            remove_agent_logs(&self.deps, id).await;
            self.sessions.remove(&id);
            self.deps.bus.publish(SessionEvent::Purged(id));
        }
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

/// Spawns a session's actor, linked to the registry, which starts its agents; returns the
/// actor and the record as its start left it (status derived from the agents).
async fn start_session(
    deps: &SessionDeps,
    registry: &ActorRef<RegistryMsg>,
    record: SessionRecord,
) -> Result<StartedSession, SessionError> {
    let (started, on_start) = oneshot::channel();
    let args = SessionArgs {
        record,
        deps: deps.clone(),
        registry: registry.clone(),
        started,
    };
    let (actor, _) = Actor::spawn_linked(None, SessionActor, args, registry.get_cell())
        .await
        .map_err(|err| match err {
            ractor::SpawnErr::StartupFailed(reason) => {
                SessionError::AgentsFailed(reason.to_string())
            }
            other => SessionError::AgentsFailed(other.to_string()),
        })?;
    let record = on_start.await.map_err(|_| {
        SessionError::AgentsFailed("the session actor did not report its start".into())
    })?;
    Ok((actor, record))
}

/// What became of a session restored at start.
enum Restored {
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
    record: SessionRecord,
) -> Result<Restored, SessionError> {
    let directory = &record.configuration.working_directory;
    if let Err(refused) = deps.paths.open_directory(directory) {
        return Ok(Restored::Refused(if refused.has(CheckCode::DoesNotExist) {
            format!("the working directory {directory} no longer exists")
        } else {
            refused.to_string()
        }));
    }
    start_session(&deps, &registry, record)
        .await
        .map(Restored::Started)
}

/// The handle to the session registry: every session operation, typed.
#[derive(Clone)]
pub struct SessionRegistry {
    actor: ActorRef<RegistryMsg>,
    deps: SessionDeps,
    paths: PathPolicy,
}

impl std::fmt::Debug for SessionRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRegistry").finish_non_exhaustive()
    }
}

impl SessionRegistry {
    /// Starts the registry: restores every stored session that is not terminated (starting
    /// its enabled agents), puts those whose directory vanished in `error`, and purges
    /// terminated sessions past their retention. `server_url` is what agents get as
    /// `SESSION_MANAGER_URL`; every event goes to `bus`.
    pub async fn start(
        settings: Arc<Settings>,
        storage: Storage,
        server_url: String,
        bus: EventBus,
    ) -> Result<SessionRegistry, SessionError> {
        let deps = SessionDeps {
            paths: PathPolicy::from_settings(&settings.paths),
            settings: settings.clone(),
            storage,
            server_url,
            bus,
        };
        let args = RegistryArgs { deps: deps.clone() };
        let (actor, _) = Actor::spawn(None, Registry, args)
            .await
            .map_err(|e| SessionError::AgentsFailed(format!("cannot start the registry: {e}")))?;
        let registry = SessionRegistry {
            actor,
            paths: deps.paths.clone(),
            deps,
        };
        Ok(registry)
    }

    /// Every event from now on (a shortcut for the bus's own `subscribe`).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.deps.bus.subscribe()
    }

    /// The event bus this registry publishes on.
    pub fn bus(&self) -> &EventBus {
        &self.deps.bus
    }

    /// The storage sessions are kept in (for `/health`'s look at its condition).
    pub fn storage(&self) -> &Storage {
        &self.deps.storage
    }

    /// Creates a session: checks the configuration (fields, agents, the custom-command
    /// rule), validates the working directory with the path policy, creates it when missing
    /// and allowed, stores the record, and starts the agents in dependency order.
    pub async fn create(&self, request: CreateSession) -> Result<SessionView, SessionError> {
        let mut request = request;
        // Every field is checked before anything is created on disk.
        request.configuration.validate()?;
        validate_tags(&request.tags)?;
        resolve_agents(
            &request.configuration.agents,
            &self.deps.settings.agents,
            CommandOrigin::Api,
        )?;
        let (directory, _) = self
            .admit_directory(
                &request.configuration.working_directory,
                "working_directory",
                request.create_if_missing,
            )
            .await?;
        request.configuration.working_directory = directory;
        self.insert_new(request, CommandOrigin::Api, Arrival::Created)
            .await
    }

    /// Checks and stores a new session whose directory was admitted, and starts it.
    async fn insert_new(
        &self,
        request: CreateSession,
        origin: CommandOrigin,
        arrival: Arrival,
    ) -> Result<SessionView, SessionError> {
        self.insert_with_id(Uuid::new_v4(), request, Vec::new(), origin, arrival)
            .await
    }

    async fn insert_with_id(
        &self,
        id: Uuid,
        request: CreateSession,
        context: Vec<(String, Value)>,
        origin: CommandOrigin,
        arrival: Arrival,
    ) -> Result<SessionView, SessionError> {
        let CreateSession {
            configuration,
            tags,
            strategy,
            create_if_missing: _,
        } = request;
        configuration.validate()?;
        validate_tags(&tags)?;
        resolve_agents(&configuration.agents, &self.deps.settings.agents, origin)?;
        let at = now();
        let mut record = SessionRecord {
            id,
            configuration,
            status: SessionStatus::Initializing,
            tags,
            strategy,
            created_at: at,
            updated_at: at,
            last_activity: at,
            terminated_at: None,
            error_message: None,
            agent_restarts: BTreeMap::new(),
            agent_activations: BTreeMap::new(),
            git: None,
        };
        record.git = git_state(&record).await;
        let actor = self
            .call(|reply| RegistryMsg::Insert {
                record: Box::new(record),
                context,
                arrival,
                reply,
            })
            .await??;
        view_of(&actor, id).await
    }

    /// Validates a path with the server's policy, without side effects unless
    /// `create_if_missing`: then a missing directory the policy allows is created (with its
    /// parents) and validated again. A refused path is an answer (`valid: false`), not an
    /// error; only a failed creation is.
    pub async fn validate_path(
        &self,
        raw: &str,
        create_if_missing: bool,
    ) -> Result<Validation, SessionError> {
        let validation = self.paths.validate(raw).await;
        if !create_if_missing || !validation.valid || validation.exists {
            return Ok(validation);
        }
        let (directory, _) = self.admit_directory(raw, "path", true).await?;
        Ok(self.paths.validate(&directory).await)
    }

    /// Takes a Claude Code hook event for a session (any status) and announces it; the
    /// monitor counts commands, files, errors and response times from these.
    pub async fn hook_event(
        &self,
        id: Uuid,
        name: String,
        payload: Value,
    ) -> Result<(), SessionError> {
        self.lookup(id).await?;
        // Accepted only once stored: a 202 for an event that exists only in memory would
        // be lost by a restart. Refused while the event log cannot be written.
        self.deps
            .bus
            .publish_stored(SessionEvent::Hook {
                session: id,
                name,
                payload,
            })
            .await
            .map_err(|error| SessionError::EventLog(Arc::new(error)))?;
        Ok(())
    }

    /// The path policy sessions are held to.
    pub fn paths(&self) -> &PathPolicy {
        &self.paths
    }

    /// Validates a directory with the path policy and creates it when missing and allowed;
    /// returns its canonical form.
    async fn admit_directory(
        &self,
        raw: &str,
        field: &str,
        create_if_missing: bool,
    ) -> Result<(String, Validation), SessionError> {
        let validation = self.paths.validate(raw).await;
        let refused = |validation| SessionError::PathRefused {
            field: field.to_string(),
            validation: Box::new(validation),
        };
        if !validation.valid || (validation.exists && !validation.is_directory) {
            return Err(refused(validation));
        }
        let path = validation.path.clone();
        if !validation.exists {
            if !create_if_missing {
                let mut validation = validation;
                validation
                    .validation_errors
                    .push("the directory does not exist and create_if_missing is false".into());
                return Err(refused(validation));
            }
            let target = path.clone();
            let created = tokio::task::spawn_blocking(move || std::fs::create_dir_all(target))
                .await
                .map_err(|e| e.to_string())
                .and_then(|done| done.map_err(|e| e.to_string()));
            if let Err(message) = created {
                return Err(SessionError::CreateDirectory {
                    field: field.to_string(),
                    path: path.display().to_string(),
                    message,
                });
            }
        }
        let canonical =
            path.to_str()
                .map(str::to_string)
                .ok_or_else(|| SessionError::CreateDirectory {
                    field: field.to_string(),
                    path: path.display().to_string(),
                    message: "the path is not valid UTF-8".into(),
                })?;
        Ok((canonical, validation))
    }

    /// Changes a live session: any of the fields of [`UpdateSession`]. New or changed agents
    /// go through the same checks as at create (a custom command needs
    /// `agents.allow_custom_commands`; agents kept as they were are not asked again). A
    /// change of `agents` or `environment_variables` restarts the agents from the new
    /// configuration (reverse dependency order down, dependency order up); on failure the
    /// session keeps its previous configuration and agents.
    pub async fn update(
        &self,
        id: Uuid,
        update: UpdateSession,
    ) -> Result<SessionView, SessionError> {
        let (_, actor) = self.live(id).await?;
        if let Some(tags) = &update.tags {
            validate_tags(tags)?;
        }
        let settings = self.deps.settings.clone();
        // Applied by the session actor to its record as it is then, so a concurrent update
        // or navigate is never undone by this one.
        let change: RecordChange = Box::new(move |next: &mut SessionRecord| {
            let before = next.configuration.agents.clone();
            let config = &mut next.configuration;
            let mut restart_agents = false;
            if let Some(name) = update.name {
                config.name = name;
            }
            if let Some(description) = update.description {
                config.description = description;
            }
            if let Some(auto_save) = update.auto_save {
                config.auto_save = auto_save;
            }
            if let Some(seconds) = update.save_interval_seconds {
                config.save_interval_seconds = seconds;
            }
            if let Some(mb) = update.max_memory_mb {
                config.max_memory_mb = mb;
            }
            if let Some(max) = update.max_agents {
                config.max_agents = max;
            }
            if let Some(custom) = update.custom_settings {
                config.custom_settings = custom;
            }
            if let Some(environment) = update.environment_variables {
                restart_agents |= environment != config.environment_variables;
                config.environment_variables = environment;
            }
            if let Some(agents) = update.agents {
                restart_agents |= agents != config.agents;
                config.agents = agents;
            }
            if let Some(tags) = update.tags {
                next.tags = tags;
            }
            next.configuration.validate()?;
            let agents = &next.configuration.agents;
            resolve_agents(agents, &settings.agents, CommandOrigin::Trusted)?;
            for (i, agent) in agents.iter().enumerate() {
                if !before.contains(agent) {
                    resolve(agent, agents, &settings.agents, CommandOrigin::Api)
                        .map_err(|e| SessionError::from(e.within(&format!("agents[{i}]"))))?;
                }
            }
            Ok(restart_agents)
        });
        apply(&actor, id, change).await
    }

    /// Moves a live session: validates `path` with the path policy (creating it when missing
    /// and `create_if_missing`), stops the agents, moves, refreshes the git state and starts
    /// the agents in the new directory. On any failure the session stays where it was.
    /// Returns the session and the path's validation.
    pub async fn navigate(
        &self,
        id: Uuid,
        path: &str,
        create_if_missing: bool,
    ) -> Result<(SessionView, Validation), SessionError> {
        let (record, actor) = self.live(id).await?;
        let (directory, validation) = self
            .admit_directory(path, "path", create_if_missing)
            .await?;
        let mut moved = SessionRecord::clone(&record);
        moved.configuration.working_directory = directory;
        let git = git_state(&moved).await;
        let directory = moved.configuration.working_directory;
        let change: RecordChange = Box::new(move |next: &mut SessionRecord| {
            next.configuration.working_directory = directory;
            next.git = git;
            Ok(true)
        });
        let view = apply(&actor, id, change).await?;
        self.deps
            .bus
            .publish(SessionEvent::Navigated(Box::new(view.record.clone())));
        Ok((view, validation))
    }

    /// Clones a session: a new id and name, its agents and environment copied unless asked
    /// not to, in the same directory, a new one (validated, created when missing), or a new
    /// git worktree on a new branch (at `new_working_directory`, or beside the repository as
    /// `<repository>-<branch>`). The clone starts at once; the original is untouched.
    pub async fn clone_session(
        &self,
        id: Uuid,
        request: CloneSession,
    ) -> Result<SessionView, SessionError> {
        let (source, _) = self.lookup(id).await?;
        let mut configuration = source.configuration.clone();
        configuration.name = request.new_name;
        if !request.copy_agents {
            configuration.agents.clear();
        }
        if !request.copy_environment {
            configuration.environment_variables.clear();
        }
        configuration.validate()?;
        let directory = match (&request.git_worktree, &request.new_working_directory) {
            (Some(branch), target) => {
                if !configuration.git_enabled {
                    return Err(FieldError::invalid(
                        "git_worktree",
                        "needs a session with git_enabled",
                    )
                    .into());
                }
                let repository = PathBuf::from(&source.configuration.working_directory);
                let target = match target {
                    Some(path) => {
                        let (_, validation) = self
                            .admit_directory(path, "new_working_directory", false)
                            .await
                            .or_else(|err| match err {
                                // A missing target is what a worktree needs.
                                SessionError::PathRefused { validation, .. }
                                    if validation.valid && !validation.exists =>
                                {
                                    Ok((String::new(), *validation))
                                }
                                other => Err(other),
                            })?;
                        if validation.exists {
                            return Err(FieldError::invalid(
                                "new_working_directory",
                                "must not exist yet: the worktree is created there",
                            )
                            .into());
                        }
                        validation.path
                    }
                    None => {
                        let name = repository
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "worktree".into());
                        let safe_branch: String = branch
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                                    c
                                } else {
                                    '-'
                                }
                            })
                            .collect();
                        repository
                            .parent()
                            .unwrap_or(&repository)
                            .join(format!("{name}-{safe_branch}"))
                    }
                };
                crate::paths::worktree::create(&repository, &target, branch)
                    .await
                    .map_err(|e| FieldError::invalid("git_worktree.branch", e.to_string()))?;
                let (directory, _) = self
                    .admit_directory(&target.to_string_lossy(), "new_working_directory", false)
                    .await?;
                directory
            }
            (None, Some(path)) => {
                self.admit_directory(path, "new_working_directory", true)
                    .await?
                    .0
            }
            (None, None) => configuration.working_directory.clone(),
        };
        configuration.working_directory = directory;
        let mut create = CreateSession::new(configuration);
        create.tags = source.tags.clone();
        create.strategy = source.strategy;
        // The agents were accepted with the source; the clone does not ask again.
        self.insert_new(
            create,
            CommandOrigin::Trusted,
            Arrival::Cloned { source: id },
        )
        .await
    }

    /// Exports a session as a self-contained, versioned snapshot: configuration, context
    /// (with the shared key/value context), agent states, file-system and git state, and,
    /// with `include_metrics`, its metrics.
    pub async fn export(&self, id: Uuid, include_metrics: bool) -> Result<Snapshot, SessionError> {
        let view = self.get(id).await?;
        let shared = store::context_all(&self.deps.storage, id).await?;
        let states: BTreeMap<String, String> = view
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.state.as_str().to_string()))
            .collect();
        let metrics = serde_json::json!({
            "agent_restarts": view.record.agent_restarts,
            "agent_activations": view.record.agent_activations,
        });
        Ok(snapshot::export(
            &view.record,
            &shared,
            &states,
            view.record.git.clone(),
            include_metrics,
            metrics,
        ))
    }

    /// Imports a snapshot (as `session_data`): checks its version and shape (errors name the
    /// field), then creates and starts the session like a create — a new id unless `keep_id`
    /// (refused while that id exists), in `working_directory` when given, else the
    /// snapshot's — and restores its shared context.
    pub async fn import(&self, request: ImportSession) -> Result<SessionView, SessionError> {
        let snapshot = snapshot::parse_import(&request.session_data)?;
        let mut configuration = snapshot.configuration.clone();
        if let Some(directory) = request.working_directory {
            configuration.working_directory = directory;
        }
        let strategy = snapshot
            .strategy
            .parse()
            .map_err(|_| FieldError::invalid("session_data.strategy", "is not a strategy"))?;
        let create = CreateSession {
            configuration,
            tags: snapshot.tags.clone(),
            strategy,
            create_if_missing: request.create_if_missing,
        };
        create
            .configuration
            .validate()
            .map_err(|e| e.within("session_data.configuration"))?;
        resolve_agents(
            &create.configuration.agents,
            &self.deps.settings.agents,
            CommandOrigin::Api,
        )
        .map_err(|e| SessionError::from(e.within("session_data.configuration")))?;
        let (directory, _) = self
            .admit_directory(
                &create.configuration.working_directory,
                "session_data.configuration.working_directory",
                create.create_if_missing,
            )
            .await?;
        let mut create = create;
        create.configuration.working_directory = directory;
        let id = if request.keep_id {
            snapshot.session_id
        } else {
            Uuid::new_v4()
        };
        // The shared context is stored with the record, in one transaction: an import
        // storage refuses leaves nothing behind, one it takes is whole.
        let context = snapshot
            .context
            .shared
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        self.insert_with_id(id, create, context, CommandOrigin::Api, Arrival::Imported)
            .await
    }

    /// A session with its agents' live state.
    pub async fn get(&self, id: Uuid) -> Result<SessionView, SessionError> {
        let (record, actor) = self.lookup(id).await?;
        match actor {
            Some(actor) => view_of(&actor, id).await,
            None => Ok(SessionView {
                record: SessionRecord::clone(&record),
                agents: Vec::new(),
            }),
        }
    }

    /// Every session, terminated ones included, oldest first.
    pub async fn list(&self) -> Result<Vec<SessionRecord>, SessionError> {
        let mut records = self.call(RegistryMsg::List).await?;
        records.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// Terminates a session: its agents stop in reverse dependency order and the record is
    /// kept as `terminated` — or, with `purge`, deleted.
    pub async fn terminate(&self, id: Uuid, purge: bool) -> Result<SessionRecord, SessionError> {
        let (record, actor) = self.lookup(id).await?;
        let record = match actor {
            Some(actor) => ractor::call!(actor, SessionMsg::Terminate)
                .map_err(|_| SessionError::Ended(id))??,
            None => {
                let mut record = SessionRecord::clone(&record);
                if record.status != SessionStatus::Terminated {
                    record.status = SessionStatus::Terminated;
                    record.terminated_at = Some(now());
                    record.updated_at = now();
                    store::save(&self.deps.storage, &record).await?;
                }
                record
            }
        };
        self.call(|reply| RegistryMsg::Retire {
            record: Box::new(record.clone()),
            purge,
            reply,
        })
        .await??;
        Ok(record)
    }

    /// Activates, deactivates or restarts one agent of a live session.
    pub async fn agent(
        &self,
        id: Uuid,
        name: &str,
        op: AgentOp,
    ) -> Result<AgentStatus, SessionError> {
        let (_, actor) = self.live(id).await?;
        let agent = ractor::call!(actor, |reply| SessionMsg::Agent {
            op,
            name: name.to_string(),
            reply
        })
        .map_err(|_| SessionError::Ended(id))??;
        self.deps.bus.publish(SessionEvent::AgentCommand {
            session: id,
            op,
            agent: Box::new(agent.clone()),
        });
        Ok(agent)
    }

    /// The last `tail` lines of an agent's output.
    pub async fn logs(
        &self,
        id: Uuid,
        name: &str,
        tail: usize,
    ) -> Result<Vec<LogLine>, SessionError> {
        let (_, actor) = self.live(id).await?;
        ractor::call!(actor, |reply| SessionMsg::Logs {
            name: name.to_string(),
            tail,
            reply
        })
        .map_err(|_| SessionError::Ended(id))?
    }

    /// Every shared-context key and value of a session.
    pub async fn context(&self, id: Uuid) -> Result<Vec<(String, Value)>, SessionError> {
        self.lookup(id).await?;
        Ok(store::context_all(&self.deps.storage, id).await?)
    }

    /// One shared-context value.
    pub async fn context_get(&self, id: Uuid, key: &str) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        Ok(store::context_get(&self.deps.storage, id, key.to_string()).await?)
    }

    /// Sets a shared-context value (durably) and announces it; returns the previous value.
    pub async fn context_put(
        &self,
        id: Uuid,
        key: &str,
        value: Value,
    ) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        let size = serde_json::to_vec(&value)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_CONTEXT_VALUE_BYTES {
            return Err(crate::agent::FieldError::invalid(
                "value",
                format!("must be at most {MAX_CONTEXT_VALUE_BYTES} bytes of JSON, got {size}"),
            )
            .into());
        }
        let previous =
            match store::context_put(&self.deps.storage, id, key.to_string(), value.clone()).await?
            {
                store::ContextPut::Stored { previous } => previous,
                store::ContextPut::NoSession => return Err(SessionError::NotFound(id)),
            };
        self.deps.bus.publish(SessionEvent::ContextChanged {
            session: id,
            key: key.to_string(),
            value: Some(value),
        });
        Ok(previous)
    }

    /// Deletes a shared-context value and announces it; returns it.
    pub async fn context_delete(&self, id: Uuid, key: &str) -> Result<Option<Value>, SessionError> {
        self.lookup(id).await?;
        validate_context_key(key)?;
        let previous = store::context_delete(&self.deps.storage, id, key.to_string()).await?;
        if previous.is_some() {
            self.deps.bus.publish(SessionEvent::ContextChanged {
                session: id,
                key: key.to_string(),
                value: None,
            });
        }
        Ok(previous)
    }

    /// Stops every session's agents (each in reverse dependency order, all sessions at
    /// once) without terminating the sessions, so the next start restores them; then the
    /// registry.
    pub async fn shutdown(&self) {
        if let Ok(()) = ractor::call!(self.actor, RegistryMsg::StopAll) {
            self.actor.stop(Some("server shutting down".into()));
        }
    }

    /// What the start restored.
    pub async fn restore_report(&self) -> Result<RestoreReport, SessionError> {
        self.call(RegistryMsg::Report).await
    }

    async fn lookup(&self, id: Uuid) -> Result<Found, SessionError> {
        self.call(|reply| RegistryMsg::Lookup { id, reply })
            .await?
            .ok_or(SessionError::NotFound(id))
    }

    /// A live session's record and actor; a terminated (or errored) one is a conflict.
    async fn live(
        &self,
        id: Uuid,
    ) -> Result<(Arc<SessionRecord>, ActorRef<SessionMsg>), SessionError> {
        let (record, actor) = self.lookup(id).await?;
        match actor {
            Some(actor) => Ok((record, actor)),
            None => Err(SessionError::Conflict(format!(
                "session {id} is {}",
                record.status
            ))),
        }
    }

    async fn call<T, F>(&self, msg: F) -> Result<T, SessionError>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> RegistryMsg,
    {
        ractor::call!(self.actor, msg).map_err(|_| SessionError::Unavailable)
    }
}

/// Hands a session actor its new record (see `SessionMsg::Apply`).
async fn apply(
    actor: &ActorRef<SessionMsg>,
    id: Uuid,
    change: RecordChange,
) -> Result<SessionView, SessionError> {
    ractor::call!(actor, |reply| SessionMsg::Apply { change, reply })
        .map_err(|_| SessionError::Ended(id))?
}

/// A live session's view; a session actor gone meanwhile means the session ended.
async fn view_of(actor: &ActorRef<SessionMsg>, id: Uuid) -> Result<SessionView, SessionError> {
    ractor::call!(actor, SessionMsg::View).map_err(|_| SessionError::Ended(id))
}

/// The git state of the record's directory, when `git_enabled` (errors are logged, not
/// fatal: an unreadable repository must not stop a session).
async fn git_state(record: &SessionRecord) -> Option<Value> {
    if !record.configuration.git_enabled {
        return None;
    }
    match crate::paths::git::state(Path::new(&record.configuration.working_directory)).await {
        Ok(Some(state)) => serde_json::to_value(state).ok(),
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(session = %record.id, "cannot read the git state: {err}");
            None
        }
    }
}

fn validate_context_key(key: &str) -> Result<(), SessionError> {
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_CONTEXT_KEY_CHARS {
        return Err(crate::agent::FieldError::invalid(
            "key",
            format!("must be 1-{MAX_CONTEXT_KEY_CHARS} characters, got {chars}"),
        )
        .into());
    }
    match crate::names::forbidden_character(key) {
        Some(c) => Err(crate::agent::FieldError::invalid("key", crate::names::refusal(c)).into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;
    use crate::config::Overrides;

    const PATIENCE: Duration = Duration::from_secs(20);

    async fn until<F, Fut>(what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + PATIENCE;
        while !check().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The session's actor, once it is another than `not`.
    async fn actor_other_than(
        registry: &SessionRegistry,
        id: Uuid,
        not: Option<ActorId>,
    ) -> ActorRef<SessionMsg> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok((_, Some(actor))) = registry.lookup(id).await {
                if Some(actor.get_id()) != not {
                    return actor;
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a new actor"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_session_actor_that_dies_is_rebuilt_then_left_in_error_after_too_many_deaths() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings::load(&Overrides {
            data_dir: Some(dir.path().join("data")),
            ..Overrides::default()
        })
        .unwrap();
        let storage = Storage::open(&settings.db_path()).await.unwrap();
        let registry = SessionRegistry::start(
            Arc::new(settings),
            storage.clone(),
            "http://127.0.0.1:9".into(),
            EventBus::new(0),
        )
        .await
        .unwrap();
        let config: SessionConfig = serde_json::from_value(json!({
            "name": "fragile",
            "working_directory": dir.path().join("work").to_string_lossy(),
            "git_enabled": false,
            "agents": [{"agent_type": "ORCHESTRATOR"}, {"agent_type": "BACKEND"}],
        }))
        .unwrap();
        let created = registry.create(CreateSession::new(config)).await.unwrap();
        let id = created.record.id;

        let mut actor = actor_other_than(&registry, id, None).await;
        for _ in 0..MAX_REBUILDS {
            // Killed: no post_stop, as after a panic.
            actor.kill();
            actor = actor_other_than(&registry, id, Some(actor.get_id())).await;
            until(
                "the rebuilt session active with its agents running",
                || async {
                    let view = registry.get(id).await.unwrap();
                    view.record.status == SessionStatus::Active
                        && view.agents.len() == 2
                        && view
                            .agents
                            .iter()
                            .all(|a| a.state == crate::supervision::ChildState::Running)
                },
            )
            .await;
            let view = registry.get(id).await.unwrap();
            assert_eq!(view.record.configuration, created.record.configuration);
            assert_eq!(view.record.created_at, created.record.created_at);
            assert_eq!(view.record.error_message, None);
        }

        // One death more than it is rebuilt for.
        actor.kill();
        until("the session in error", || async {
            registry.get(id).await.unwrap().record.status == SessionStatus::Error
        })
        .await;
        let (record, actor) = registry.lookup(id).await.unwrap();
        assert!(actor.is_none(), "no actor is left running it");
        let message = record.error_message.clone().unwrap_or_default();
        assert!(
            message.contains(&format!("died {} times", MAX_REBUILDS + 1))
                && message.contains("killed"),
            "{message}"
        );
        // Stored so: a restart does not bring it back as if nothing happened.
        let (stored, _) = store::load_all(&storage).await.unwrap();
        let stored = stored.iter().find(|r| r.id == id).unwrap();
        assert_eq!(stored.status, SessionStatus::Error);
        assert_eq!(stored.error_message.as_deref(), Some(message.as_str()));
        registry.shutdown().await;
    }
}
