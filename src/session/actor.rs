//! The session actor: one per live session. It owns the session's [`AgentGroup`] (whose
//! supervisor starts the agents in dependency order and restarts them), derives the session's
//! status from its agents' real states, and persists every change before it answers.
//! Its record and group are also in a [`SessionShared`] the registry holds: reads (a GET,
//! the agents, logs, terminals) never go through this actor's mailbox, so an order that
//! waits here (an agent's grace, a restart of every agent) delays no reader.

mod open;
mod shared;

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::agent::{AgentGroup, AgentStatus};
use crate::config::Settings;
use crate::paths::PathPolicy;
use crate::storage::Storage;

use super::bus::EventBus;
use super::error::SessionError;
use super::model::{now, SessionRecord, SessionStatus};
use super::registry::RegistryMsg;
use super::store;

pub(crate) use open::{open, Opened};
pub(crate) use shared::SessionShared;

use open::{build_group, group_status};

/// What a session actor needs from the server.
#[derive(Debug, Clone)]
pub(crate) struct SessionDeps {
    pub(crate) settings: Arc<Settings>,
    /// The path policy, one for the server: agents' directories are judged by it at every
    /// start.
    pub(crate) paths: PathPolicy,
    pub(crate) storage: Storage,
    pub(crate) server_url: String,
    pub(crate) bus: EventBus,
    /// Bumped by the registry after every change of its set of sessions or of a record it
    /// holds (see `SessionRegistry::generation`).
    pub(crate) generation: Arc<std::sync::atomic::AtomicU64>,
}

/// An agent operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentOp {
    /// Start it (and let the supervisor restart it again).
    Activate,
    /// Stop it and keep it down.
    Deactivate,
    /// Stop and start it again.
    Restart,
}

/// A change to a session's record, made by the session actor on its current record;
/// returns whether the agents must be restarted from the changed record.
pub(crate) type RecordChange =
    Box<dyn FnOnce(&mut SessionRecord) -> Result<bool, SessionError> + Send>;

/// A session and its agents' live state.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The record.
    pub record: SessionRecord,
    /// Each agent's live state, in name order (empty for a terminated session).
    pub agents: Vec<AgentStatus>,
}

pub(crate) enum SessionMsg {
    Agent {
        op: AgentOp,
        name: String,
        reply: AgentReply,
    },
    /// An agent order's task finished (see `agent_op`).
    AgentDone {
        op: AgentOp,
        name: String,
        group: Arc<AgentGroup>,
        done: Result<(), SessionError>,
        reply: AgentReply,
    },
    Terminate(RpcReplyPort<Result<SessionRecord, SessionError>>),
    /// Changes the record (an update or a navigate): `change` runs on a copy of the record
    /// as it is now — in the actor, so two changes never overwrite each other — and says
    /// whether the agents must be stopped and started again from the result. On failure
    /// the session stays as it was.
    Apply {
        change: RecordChange,
        reply: RpcReplyPort<Result<SessionView, SessionError>>,
    },
    /// An agent changed state: recompute the status.
    AgentsChanged,
    /// `auto_save`: store the runtime state (agent restart counts, last activity).
    Checkpoint,
}

/// Where an agent order's answer goes.
type AgentReply = RpcReplyPort<Result<AgentStatus, SessionError>>;

pub(crate) struct SessionActor;

pub(crate) struct SessionArgs {
    pub(crate) deps: SessionDeps,
    pub(crate) registry: ActorRef<RegistryMsg>,
    /// What readers see of the session (the registry keeps it for them).
    pub(crate) shared: Arc<SessionShared>,
    pub(crate) opening: Opening,
}

/// How a session actor comes to be.
pub(crate) enum Opening {
    /// The session starts: its agents, with processes, built by [`open`] and started by
    /// the actor once it can hear them.
    Start {
        record: Arc<SessionRecord>,
        group: Box<AgentGroup>,
        /// The record changed while the group was built.
        dirty: bool,
        /// A stored session the server restores: the status it was stored with. Its
        /// agents come back as they were, and a session that comes back with the status it
        /// had is not changed (no new times, no write, no event).
        restored: Option<SessionStatus>,
        /// Gets the record as the start left it (its status derived from the agents): the
        /// registry keeps that one, shared, instead of a copy of its own and a message
        /// later.
        started: oneshot::Sender<Arc<SessionRecord>>,
    },
    /// A dormant session's first order (see [`Opened::Dormant`]): its record and running
    /// group are in `shared`, with the record it left unsaved, if any.
    Wake,
}

pub(crate) struct SessionState {
    /// Shared with the registry until the next change, which copies it (`edit`) and hands
    /// the registry the new one (`announce`): one copy per idle session, not two.
    record: Arc<SessionRecord>,
    deps: SessionDeps,
    registry: ActorRef<RegistryMsg>,
    /// Also in `shared`, for readers.
    group: Option<Arc<AgentGroup>>,
    shared: Arc<SessionShared>,
    checkpoints: Option<JoinHandle<()>>,
    /// The record changed since it was last stored.
    dirty: bool,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.abort();
        }
        // Dropping the group (if still here) kills its agents' process groups: readers
        // must not keep it alive past the actor.
        self.shared.set_group(None);
        self.shared.set_actor(None);
    }
}

// `handle` and `post_stop` box their work: ractor keeps the actor's message loop — with
// these futures inline — for the actor's whole life, and an update's or a stop's future is
// kilobytes, paid by every idle session otherwise.
impl Actor for SessionActor {
    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        Box::pin(async {
            // A requested stop (server shutdown, retirement): the agents stop in reverse
            // dependency order, within their grace; the record stays as it is. At the
            // server's stop, logical agents go without a word (they come back as they
            // are) and the record is left to the registry, which stores every session's in
            // one transaction.
            let closing = state.shared.closing();
            state.stop_agents(closing).await;
            state.shared.set_group(None);
            // A terminated (or purged) session was stored when it ended; writing it again
            // here could bring a purged row back.
            if state.dirty && !state.record.status.is_terminal() {
                if closing {
                    state.shared.leave_unsaved(state.record.clone());
                } else {
                    state.persist().await;
                }
            }
        })
        .await;
        Ok(())
    }

    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let SessionArgs {
            deps,
            registry,
            shared,
            opening,
        } = args;
        // First: agents that change state from now on reach this actor.
        shared.set_actor(Some(myself.clone()));
        let mut state = SessionState {
            record: shared.record(),
            deps,
            registry,
            group: None,
            shared,
            checkpoints: None,
            dirty: false,
        };
        state.schedule_checkpoints(&myself);
        match opening {
            Opening::Start {
                record,
                group,
                dirty,
                restored,
                started,
            } => {
                state.record = record;
                state.dirty = dirty;
                state
                    .run_group(*group, restored.is_some())
                    .await
                    .map_err(|e| e.to_string())?;
                // The registry learns this status from `started`, not from an announcement.
                let changed = match state.halt_if_directory_refused().await {
                    Some(changed) => changed,
                    None => {
                        let status = status_of(&state).await;
                        if restored == Some(status) {
                            // Back as it was stored: the record is the stored one.
                            state.edit().status = status;
                            false
                        } else {
                            state.note_status(status)
                        }
                    }
                };
                if changed {
                    state.dirty = true;
                }
                state.shared.set_record(state.record.clone());
                let _ = started.send(state.record.clone());
            }
            Opening::Wake => {
                state.group = state.shared.group();
                // What the dormant session left unsaved is this actor's to store now.
                if let Some(unsaved) = state.shared.take_unsaved() {
                    state.record = unsaved;
                    state.dirty = true;
                }
            }
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        Box::pin(state.handle(myself, msg)).await;
        Ok(())
    }
}

impl SessionState {
    async fn handle(&mut self, myself: ActorRef<SessionMsg>, msg: SessionMsg) {
        let state = self;
        match msg {
            SessionMsg::Agent { op, name, reply } => state.agent_op(&myself, op, name, reply),
            SessionMsg::AgentDone {
                op,
                name,
                group,
                done,
                reply,
            } => {
                let _ = reply.send(state.agent_done(op, &name, &group, done).await);
            }
            SessionMsg::Terminate(reply) => {
                let _ = reply.send(state.terminate().await);
            }
            SessionMsg::Apply { change, reply } => {
                let mut next = SessionRecord::clone(&state.record);
                let applied = match change(&mut next) {
                    Ok(restart_agents) => state.apply(&myself, next, restart_agents).await,
                    Err(err) => Err(err),
                };
                let _ = reply.send(applied);
            }
            SessionMsg::Checkpoint => {
                if let Some(group) = &state.group {
                    if let Ok(statuses) = group.statuses().await {
                        for agent in statuses {
                            let known = state.record.agent_restarts.get(&agent.name);
                            // Absent means none: an agent that never restarted costs nothing.
                            if known.copied().unwrap_or(0) != agent.restarts {
                                state
                                    .edit()
                                    .agent_restarts
                                    .insert(agent.name, agent.restarts);
                                state.dirty = true;
                            }
                        }
                    }
                }
                // Nothing changed, nothing written: an idle session costs no disk write.
                if state.dirty {
                    state.persist().await;
                }
            }
            SessionMsg::AgentsChanged => {
                // Changes from here on ask again; this look covers the ones before.
                state.shared.recomputed();
                if !state.record.status.is_terminal() {
                    match state.halt_if_directory_refused().await {
                        Some(true) => state.persist().await,
                        Some(false) => {}
                        None => {
                            let status = status_of(state).await;
                            state.set_status(status).await;
                        }
                    }
                }
            }
        }
    }
}

/// Puts `status` in `record`, with the times and the error message that go with it.
fn with_status(record: &mut SessionRecord, status: SessionStatus) {
    let at = now();
    record.status = status;
    record.updated_at = at;
    record.last_activity = at;
    if status == SessionStatus::Error && record.error_message.is_none() {
        record.error_message = Some("the ORCHESTRATOR agent failed".to_string());
    } else if status != SessionStatus::Error {
        record.error_message = None;
    }
}

/// The session status its agents' states call for.
async fn status_of(state: &SessionState) -> SessionStatus {
    match &state.group {
        Some(group) => group_status(group).await,
        None => state.record.status,
    }
}

impl SessionState {
    /// (Re)starts the periodic checkpoint per `auto_save` and `save_interval_seconds`.
    fn schedule_checkpoints(&mut self, myself: &ActorRef<SessionMsg>) {
        if let Some(previous) = self.checkpoints.take() {
            previous.abort();
        }
        let config = &self.record.configuration;
        if config.auto_save {
            let every = std::time::Duration::from_secs(config.save_interval_seconds.max(1));
            self.checkpoints = Some(myself.send_interval(every, || SessionMsg::Checkpoint));
        }
    }

    /// Builds the agents' supervisor from the record and starts every enabled agent in
    /// dependency order.
    async fn launch_agents(&mut self) -> Result<(), SessionError> {
        let (group, changed) = build_group(&mut self.record, &self.deps, &self.shared).await?;
        if changed {
            self.dirty = true;
        }
        self.run_group(group, false).await
    }

    /// Starts `group`'s agents (`resume`: as a restored session's, see
    /// `Opening::Start::restored`) and makes it the session's.
    async fn run_group(&mut self, group: AgentGroup, resume: bool) -> Result<(), SessionError> {
        let started = if resume {
            group.resume_all().await
        } else {
            group.start_all().await
        };
        started.map_err(|e| SessionError::AgentsFailed(e.to_string()))?;
        let group = Arc::new(group);
        self.shared.set_group(Some(group.clone()));
        self.group = Some(group);
        Ok(())
    }

    /// Stops every agent in reverse dependency order, keeping their restart counts
    /// (`closing`: the server stops, see `AgentGroup::close`).
    async fn stop_agents(&mut self, closing: bool) {
        if let Some(group) = self.group.take() {
            // Logical agents that never had their supervisor never restarted either.
            let counted = !closing || group.supervised();
            let statuses = if counted {
                group.statuses().await
            } else {
                Ok(Vec::new())
            };
            if let Ok(statuses) = statuses {
                for agent in statuses {
                    let known = self.record.agent_restarts.get(&agent.name);
                    if known.copied().unwrap_or(0) != agent.restarts {
                        self.edit()
                            .agent_restarts
                            .insert(agent.name.clone(), agent.restarts);
                        self.dirty = true;
                    }
                }
            }
            let stopped = if closing {
                group.close().await
            } else {
                group.shutdown().await
            };
            if let Err(err) = stopped {
                tracing::warn!(session = %self.record.id, "stopping the agents: {err}");
            }
        }
    }

    /// Makes `record` the session's: stored first — a change storage refuses is an error
    /// and changes nothing, agents included — then, when `restart_agents`, the agents are
    /// stopped and started from it. If they cannot start, the previous record and agents
    /// are put back (and stored again).
    async fn apply(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        mut record: SessionRecord,
        restart_agents: bool,
    ) -> Result<SessionView, SessionError> {
        if self.record.status.is_terminal() {
            return Err(SessionError::Conflict(format!(
                "session {} is {}",
                self.record.id, self.record.status
            )));
        }
        let at = now();
        record.updated_at = at;
        record.last_activity = at;
        store::save(&self.deps.storage, &record).await?;
        let previous = std::mem::replace(&mut self.record, Arc::new(record));
        if restart_agents {
            self.stop_agents(false).await;
            if let Err(err) = self.launch_agents().await {
                // Stay where it was: the old record, its agents started again.
                self.stop_agents(false).await;
                let restarts = std::mem::take(&mut self.edit().agent_restarts);
                self.record = previous;
                self.edit().agent_restarts.extend(restarts);
                if let Err(again) = self.launch_agents().await {
                    tracing::error!(session = %self.record.id, "cannot start the previous agents again: {again}");
                }
                // The refused record was stored first; the previous one goes back. Should
                // that write fail too, the next checkpoint (or the stop) retries it.
                self.dirty = true;
                self.persist().await;
                return Err(err);
            }
        }
        self.dirty = false;
        self.schedule_checkpoints(myself);
        if self.halt_if_directory_refused().await.is_some() {
            self.persist().await;
            return Ok(self.view().await);
        }
        let status = status_of(self).await;
        if status == self.record.status {
            self.announce();
        } else {
            self.set_status(status).await;
        }
        Ok(self.view().await)
    }

    /// When an agent's start found the working directory refused (gone, or no longer
    /// passing the path policy, e.g. swapped for a symlink into a restricted directory):
    /// stops every agent, so no process of the session runs on, and puts the session in
    /// `error` with the reason. `None` when the directory passed; else whether the record
    /// changed (the caller stores it). An agent started again once the directory is put
    /// right clears the refusal, and the status follows the agents again.
    async fn halt_if_directory_refused(&mut self) -> Option<bool> {
        let refused = self.group.as_ref()?.directory_refused()?;
        let message = refused.to_string();
        let record = &self.record;
        if record.status == SessionStatus::Error
            && record.error_message.as_deref() == Some(message.as_str())
        {
            return Some(false);
        }
        tracing::warn!(session = %record.id, "stopping every agent: {message}");
        if let Some(group) = &self.group {
            if let Err(err) = group.stop_all().await {
                tracing::warn!(session = %self.record.id, "stopping the agents: {err}");
            }
        }
        let at = now();
        let record = self.edit();
        record.status = SessionStatus::Error;
        record.error_message = Some(message);
        record.updated_at = at;
        record.last_activity = at;
        Some(true)
    }

    /// Records a status derived from the agents (`initializing`, `active`, `degraded`,
    /// `error`) and tells the registry. It is recomputed from them after any restart, so it
    /// is stored with the next checkpoint (and at stop) instead of costing a synchronous
    /// write per agent transition.
    async fn set_status(&mut self, status: SessionStatus) {
        if self.note_status(status) {
            self.dirty = true;
            self.announce();
        }
    }

    /// Puts a new status (and its error message, or none) in the record; false when it was
    /// the status already.
    fn note_status(&mut self, status: SessionStatus) -> bool {
        if self.record.status == status {
            return false;
        }
        with_status(self.edit(), status);
        true
    }

    /// The record with a lifecycle status (`terminating`, `terminated`), stored first and
    /// only then the session's: a status storage refuses changes nothing.
    async fn commit_status(&mut self, status: SessionStatus) -> Result<(), SessionError> {
        let mut next = SessionRecord::clone(&self.record);
        with_status(&mut next, status);
        if status == SessionStatus::Terminated {
            next.terminated_at = Some(now());
        }
        store::save(&self.deps.storage, &next).await?;
        self.record = Arc::new(next);
        self.dirty = false;
        self.announce();
        Ok(())
    }

    /// The record, to change: a copy of it if the registry still shares it.
    fn edit(&mut self) -> &mut SessionRecord {
        Arc::make_mut(&mut self.record)
    }

    /// Tells the registry (and so listeners) the record as it is now.
    fn announce(&self) {
        // Counted now: whoever reads the session after this actor answers sees it changed,
        // and a listing sees a new generation (its records come from the registry, after
        // the `Updated` cast below).
        self.shared.set_record(self.record.clone());
        self.deps.bus.touch(self.record.id);
        self.deps
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = self
            .registry
            .cast(RegistryMsg::Updated(self.record.clone()));
    }

    /// Stores runtime state (a derived status, restart and activation counts, last
    /// activity) that the session already shows: a failure keeps it `dirty`, so the next
    /// checkpoint or the stop tries again, and `/health` reports the storage meanwhile.
    async fn persist(&mut self) {
        match store::save(&self.deps.storage, &self.record).await {
            Ok(()) => self.dirty = false,
            Err(err) => {
                tracing::warn!(session = %self.record.id, "cannot store the session's runtime state; kept for the next attempt: {err}");
                self.dirty = true;
            }
        }
        self.announce();
    }

    async fn view(&self) -> SessionView {
        let agents = match &self.group {
            Some(group) => group.statuses().await.unwrap_or_default(),
            None => Vec::new(),
        };
        SessionView {
            record: SessionRecord::clone(&self.record),
            agents,
        }
    }

    /// Starts an agent order on a task of its own: the wait (a stop within the agent's
    /// grace, a start until it runs) holds neither this actor — its checkpoints, status
    /// and other orders go on — nor anyone else; the supervisor orders each agent's
    /// transitions. The task reports with `AgentDone`.
    fn agent_op(
        &self,
        myself: &ActorRef<SessionMsg>,
        op: AgentOp,
        name: String,
        reply: AgentReply,
    ) {
        if let Err(refused) = self.refuse_if_ended() {
            let _ = reply.send(Err(refused));
            return;
        }
        let Some(group) = self.group.clone() else {
            let _ = reply.send(Err(SessionError::AgentNotFound(name)));
            return;
        };
        let me = myself.clone();
        tokio::spawn(async move {
            let done = match op {
                AgentOp::Activate => group.activate(&name).await,
                AgentOp::Deactivate => group.deactivate(&name).await,
                AgentOp::Restart => group.restart(&name).await,
            };
            let done = done.map_err(|e| match e {
                crate::agent::AgentError::UnknownAgent(name) => SessionError::AgentNotFound(name),
                other => SessionError::Conflict(other.to_string()),
            });
            // A session gone meanwhile drops `reply`: the caller learns it ended.
            let _ = me.cast(SessionMsg::AgentDone {
                op,
                name,
                group,
                done,
                reply,
            });
        });
    }

    /// An agent order finished: counted and stored, and the agent as it is now answered.
    async fn agent_done(
        &mut self,
        op: AgentOp,
        name: &str,
        group: &AgentGroup,
        done: Result<(), SessionError>,
    ) -> Result<AgentStatus, SessionError> {
        done?;
        // Ended while the order ran: its record was stored when it ended, never again.
        self.refuse_if_ended()?;
        // Its agents were replaced meanwhile (an update or a navigate restarted them): the
        // order went to the old ones, and the new ones know nothing of it.
        if !self
            .group
            .as_ref()
            .is_some_and(|current| std::ptr::eq(Arc::as_ptr(current), group))
        {
            return Err(SessionError::Conflict(format!(
                "the agents of session {} were restarted while {name} was being ordered; order it again",
                self.record.id
            )));
        }
        if op != AgentOp::Deactivate {
            *self
                .edit()
                .agent_activations
                .entry(name.to_string())
                .or_default() += 1;
        }
        let agent = group
            .statuses()
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|a| a.name == name))
            .ok_or_else(|| SessionError::AgentNotFound(name.to_string()));
        self.edit().last_activity = now();
        self.persist().await;
        agent
    }

    /// A conflict when the session is terminating or terminated.
    fn refuse_if_ended(&self) -> Result<(), SessionError> {
        if self.record.status.is_terminal() {
            return Err(SessionError::Conflict(format!(
                "session {} is {}",
                self.record.id, self.record.status
            )));
        }
        Ok(())
    }

    /// Stores `terminating` first — the commit point: refused, nothing changes and the
    /// agents keep running; stored, a restart finishes the job even if the server dies
    /// now — then stops the agents and stores `terminated`. Should that last write fail,
    /// the session is terminated all the same (the stored `terminating` becomes
    /// `terminated` at the next start).
    async fn terminate(&mut self) -> Result<SessionRecord, SessionError> {
        if self.record.status == SessionStatus::Terminated {
            return Ok(SessionRecord::clone(&self.record));
        }
        if self.record.status != SessionStatus::Terminating {
            self.commit_status(SessionStatus::Terminating).await?;
        }
        self.stop_agents(false).await;
        self.shared.set_group(None);
        if let Err(err) = self.commit_status(SessionStatus::Terminated).await {
            tracing::warn!(session = %self.record.id, "terminated, but stored as terminating (the next start finishes it): {err}");
            let record = self.edit();
            with_status(record, SessionStatus::Terminated);
            record.terminated_at = Some(now());
            self.announce();
        }
        Ok(SessionRecord::clone(&self.record))
    }
}
