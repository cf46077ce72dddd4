//! The registry actor: owns the set of sessions. It keeps every record (terminated ones
//! too, until purged), restores the live ones at start, supervises their actors (one that
//! dies is rebuilt from its record and takes its agents back up), enforces
//! `sessions.max_sessions`, and purges terminated sessions after
//! `sessions.terminated_retention_days`.
//!
//! Callers use [`SessionRegistry`], a cloneable handle with typed methods. Slow work — path
//! validation, creating a directory, stopping agents — happens in the handle, in the
//! session's own actor or on a task, never in the registry's message loop. Reads of a live
//! session (its record, agents, logs, terminals) come from what it shares
//! ([`SessionShared`](super::actor::SessionShared)), never from its actor's mailbox: a
//! session busy with a long order delays no reader, not even of itself.
//!
//! Layout: `requests.rs` (what callers ask for), `events.rs` ([`SessionEvent`], what the
//! server announces), `actor.rs` (the registry actor: the set of sessions, restore, rebuilds,
//! purge), and the handle's operations by concern — `lifecycle.rs` (create, update,
//! navigate, clone, export, import, terminate, hook events) and `context.rs` (the shared
//! context). This file is the handle itself and the calls every operation shares.

mod actor;
mod context;
mod events;
mod lifecycle;
mod requests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use ractor::{Actor, ActorRef, RpcReplyPort};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::agent::{AgentStatus, LogLine, Terminal};
use crate::config::Settings;
use crate::paths::PathPolicy;
use crate::storage::Storage;

use super::actor::{AgentOp, RecordChange, SessionDeps, SessionMsg, SessionView};
use super::bus::{EventBus, Published};
use super::error::SessionError;
use super::model::SessionRecord;

pub use actor::RestoreReport;
pub(crate) use actor::{Arrival, RegistryMsg};
use actor::{Found, Live, Registry, RegistryArgs};
pub use context::{MAX_CONTEXT_KEY_CHARS, MAX_CONTEXT_VALUE_BYTES};
pub use events::SessionEvent;
pub use requests::{CloneSession, CreateSession, ImportSession, UpdateSession};

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
        Self::spawn(deps_of(settings, storage, server_url, bus), false).await
    }

    /// [`SessionRegistry::start`], but the stored sessions are restored after it returns:
    /// each is listed at once (`initializing`, without agents), a lookup of one (every read
    /// and order) waits for its own restore, and each joins as its start ends;
    /// [`SessionRegistry::restore_report`] answers once all were tried. What the server
    /// uses, so it listens while 100,000 sessions start.
    pub async fn start_restoring(
        settings: Arc<Settings>,
        storage: Storage,
        server_url: String,
        bus: EventBus,
    ) -> Result<SessionRegistry, SessionError> {
        Self::spawn(deps_of(settings, storage, server_url, bus), true).await
    }

    async fn spawn(deps: SessionDeps, background: bool) -> Result<SessionRegistry, SessionError> {
        let args = RegistryArgs {
            deps: deps.clone(),
            background,
        };
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

    /// The path policy sessions are held to.
    pub fn paths(&self) -> &PathPolicy {
        &self.paths
    }

    /// A session's agents' live state, in name order (none for a terminated session):
    /// [`Self::get`] without a copy of the record, for a caller that looks at every
    /// session's agents (the monitor).
    pub async fn agents(&self, id: Uuid) -> Result<Vec<AgentStatus>, SessionError> {
        let (_, live) = self.lookup(id).await?;
        Ok(match live.and_then(|live| live.shared.group()) {
            Some(group) => group.statuses().await.unwrap_or_default(),
            None => Vec::new(),
        })
    }

    /// A session with its agents' live state.
    pub async fn get(&self, id: Uuid) -> Result<SessionView, SessionError> {
        let (record, live) = self.lookup(id).await?;
        match live {
            Some(live) => Ok(live.shared.view().await),
            None => Ok(SessionView {
                record: SessionRecord::clone(&record),
                agents: Vec::new(),
            }),
        }
    }

    /// Every session, terminated ones included, oldest first. The records are the ones the
    /// registry holds (shared, not copied): listing 100,000 sessions copies no record.
    pub async fn list(&self) -> Result<Vec<Arc<SessionRecord>>, SessionError> {
        let mut records = self.call(RegistryMsg::List).await?;
        records.sort_by(|a, b| a.created_at.total_cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// A counter bumped before every change of the set of sessions or of a record the
    /// registry holds — including those that announce nothing, such as a session restored
    /// as it was stored — and before the change is answered: a reader that saw the same
    /// value, read before [`Self::records`], saw the same sessions.
    pub fn generation(&self) -> u64 {
        self.deps
            .generation
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Every session, terminated ones included, in no particular order: [`Self::list`]
    /// without the sort, for a caller that walks them all (the monitor).
    pub async fn records(&self) -> Result<Vec<Arc<SessionRecord>>, SessionError> {
        self.call(RegistryMsg::List).await
    }

    /// Activates, deactivates or restarts one agent of a live session.
    pub async fn agent(
        &self,
        id: Uuid,
        name: &str,
        op: AgentOp,
    ) -> Result<AgentStatus, SessionError> {
        // An unknown agent is refused without waking a dormant session.
        let (_, live) = self.live(id).await?;
        if live.shared.dormant() {
            live.shared.logs(name, 0)?;
        }
        let (_, actor) = self.awake(id).await?;
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

    /// An agent's terminal, for viewers and scripts.
    pub async fn terminal(&self, id: Uuid, name: &str) -> Result<Arc<Terminal>, SessionError> {
        let (_, live) = self.live(id).await?;
        live.shared.terminal(name)
    }

    /// The last `tail` lines of an agent's output.
    pub async fn logs(
        &self,
        id: Uuid,
        name: &str,
        tail: usize,
    ) -> Result<Vec<LogLine>, SessionError> {
        let (_, live) = self.live(id).await?;
        live.shared.logs(name, tail)
    }

    /// Stops every session's agents (each in reverse dependency order, all sessions at
    /// once) without terminating the sessions, so the next start restores them; then the
    /// registry.
    pub async fn shutdown(&self) {
        if let Ok(()) = ractor::call!(self.actor, RegistryMsg::StopAll) {
            self.actor.stop(Some("server shutting down".into()));
        }
    }

    /// What the start restored (once every stored session was tried).
    pub async fn restore_report(&self) -> Result<RestoreReport, SessionError> {
        self.call(RegistryMsg::Report).await
    }

    async fn lookup(&self, id: Uuid) -> Result<Found, SessionError> {
        self.find(id, false).await
    }

    /// [`Self::lookup`] for an order: a dormant session gets its actor first.
    async fn find(&self, id: Uuid, wake: bool) -> Result<Found, SessionError> {
        self.call(|reply| RegistryMsg::Lookup { id, wake, reply })
            .await?
            .ok_or(SessionError::NotFound(id))
    }

    /// A live session's record and actor, for an order (a dormant session is woken); a
    /// terminated (or errored) one is a conflict.
    async fn awake(
        &self,
        id: Uuid,
    ) -> Result<(Arc<SessionRecord>, ActorRef<SessionMsg>), SessionError> {
        let (record, live) = self.find(id, true).await?;
        let Some(live) = live else {
            return Err(SessionError::Conflict(format!(
                "session {id} is {}",
                record.status
            )));
        };
        Ok((record, woken(id, &live)?))
    }

    /// A live session's record and actor; a terminated (or errored) one is a conflict.
    async fn live(&self, id: Uuid) -> Result<(Arc<SessionRecord>, Live), SessionError> {
        let (record, live) = self.lookup(id).await?;
        match live {
            Some(live) => Ok((record, live)),
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

/// The actor of a live session a lookup for an order found (see `SessionRegistry::awake`).
fn woken(id: Uuid, live: &Live) -> Result<ActorRef<SessionMsg>, SessionError> {
    match live.actor() {
        Some(actor) => Ok(actor),
        // Not woken: the server stops, or its actor could not start.
        None if live.shared.dormant() && live.shared.closing() => Err(SessionError::Unavailable),
        None if live.shared.dormant() => Err(SessionError::AgentsFailed(format!(
            "the actor of session {id} could not start"
        ))),
        // Its actor died; the registry is rebuilding it.
        None => Err(SessionError::Ended(id)),
    }
}

/// What every session of a registry shares.
fn deps_of(
    settings: Arc<Settings>,
    storage: Storage,
    server_url: String,
    bus: EventBus,
) -> SessionDeps {
    SessionDeps {
        paths: PathPolicy::from_settings(&settings.paths),
        settings,
        storage,
        server_url,
        bus,
        generation: Arc::default(),
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
