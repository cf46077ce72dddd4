//! What a live session shares with the registry so that reading it never waits on its
//! actor: the record as last announced and the agent group. A session actor busy with a
//! long order (an agent that ignores SIGTERM, a restart of every agent) still has its GET,
//! its agents, its logs and its terminal answered — by the group's supervisor, which never
//! waits inside its own handler, and by this record.
//!
//! A session whose agents are all logical has no actor while nobody orders it ("dormant"):
//! this is all there is of it then — its record and its group — and the registry spawns
//! its actor at the first order (`RegistryState::wake`), which puts itself here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::ActorRef;

use crate::agent::{AgentError, AgentGroup, LogLine, Terminal};
use crate::session::error::SessionError;
use crate::session::model::SessionRecord;

use super::{SessionMsg, SessionView};

/// One live session's readable state; the actor writes it, anyone reads it.
#[derive(Debug)]
pub(crate) struct SessionShared {
    /// Written by the actor before it answers a change (`announce`), so whoever reads the
    /// session after a change was answered sees it.
    record: Mutex<Arc<SessionRecord>>,
    /// The running group (none before the start and after a stop); an `Arc` so a reader
    /// can ask it outside the lock while the actor replaces it.
    group: Mutex<Option<Arc<AgentGroup>>>,
    /// Set by the registry when the server stops (see `closing`).
    closing: AtomicBool,
    /// The record the actor left unstored at the server's stop, for the registry to store
    /// with every other session's in one transaction.
    unsaved: Mutex<Option<Arc<SessionRecord>>>,
    /// The session's actor while it has one (none while dormant).
    actor: Mutex<Option<ActorRef<SessionMsg>>>,
    /// The session is dormant (`Opened::Dormant`): it has no actor *because* nothing runs,
    /// and an order may wake one. A session whose actor died has no actor either, but is
    /// not dormant: it is being rebuilt, and an order to it finds it ended.
    dormant: AtomicBool,
    /// Set when an agent's state changed and the actor was asked to recompute the status:
    /// one ask for a burst of changes (the actor clears it when it looks).
    recompute: AtomicBool,
}

/// Plain data behind these locks: a panic while holding one leaves nothing half-done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SessionShared {
    pub(crate) fn new(record: Arc<SessionRecord>) -> Arc<SessionShared> {
        Arc::new(SessionShared {
            record: Mutex::new(record),
            group: Mutex::new(None),
            closing: AtomicBool::new(false),
            unsaved: Mutex::new(None),
            actor: Mutex::new(None),
            dormant: AtomicBool::new(false),
            recompute: AtomicBool::new(false),
        })
    }

    /// The session's actor, if it has one.
    pub(crate) fn actor(&self) -> Option<ActorRef<SessionMsg>> {
        lock(&self.actor).clone()
    }

    pub(crate) fn set_actor(&self, actor: Option<ActorRef<SessionMsg>>) {
        *lock(&self.actor) = actor;
    }

    /// Marks the session dormant, or no longer (see `dormant`).
    pub(crate) fn set_dormant(&self, dormant: bool) {
        self.dormant.store(dormant, Ordering::Release);
    }

    /// Whether the session is dormant.
    pub(crate) fn dormant(&self) -> bool {
        self.dormant.load(Ordering::Acquire)
    }

    /// An agent changed state: the actor, if any, is asked to recompute the session's
    /// status (once until it looks, see `recomputed`). A dormant session has nobody to ask
    /// and needs nobody: its logical agents change only by orders, which wake its actor
    /// first, and the actor recomputes the status after each.
    pub(crate) fn agents_changed(&self) {
        if self.recompute.swap(true, Ordering::AcqRel) {
            return;
        }
        let asked = self
            .actor()
            .is_some_and(|actor| actor.cast(SessionMsg::AgentsChanged).is_ok());
        if !asked {
            // Nobody to ask (dormant, or its actor died and a new one starts over): a
            // later actor asks again.
            self.recompute.store(false, Ordering::Release);
        }
    }

    /// The actor looks at the agents now: changes from here on ask again.
    pub(crate) fn recomputed(&self) {
        self.recompute.store(false, Ordering::Release);
    }

    /// The record as last announced.
    pub(crate) fn record(&self) -> Arc<SessionRecord> {
        lock(&self.record).clone()
    }

    pub(crate) fn set_record(&self, record: Arc<SessionRecord>) {
        let previous = std::mem::replace(&mut *lock(&self.record), record);
        drop(previous);
    }

    /// The server is stopping: the actor's stop leaves its record to the registry.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Whether the server is stopping.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Hands the registry a record that still has to be stored.
    pub(crate) fn leave_unsaved(&self, record: Arc<SessionRecord>) {
        *lock(&self.unsaved) = Some(record);
    }

    /// The record left unstored, if any.
    pub(crate) fn take_unsaved(&self) -> Option<Arc<SessionRecord>> {
        lock(&self.unsaved).take()
    }

    /// The group running now, if any.
    pub(crate) fn group(&self) -> Option<Arc<AgentGroup>> {
        lock(&self.group).clone()
    }

    /// Puts `group` in place; the previous one is dropped outside the lock (its drop may
    /// kill its agents' process groups when nobody holds it any more).
    pub(crate) fn set_group(&self, group: Option<Arc<AgentGroup>>) {
        let previous = std::mem::replace(&mut *lock(&self.group), group);
        drop(previous);
    }

    /// The record and the agents' live state, from the group's supervisor.
    pub(crate) async fn view(&self) -> SessionView {
        let record = SessionRecord::clone(&self.record());
        let agents = match self.group() {
            Some(group) => group.statuses().await.unwrap_or_default(),
            None => Vec::new(),
        };
        SessionView { record, agents }
    }

    /// The last `tail` lines of an agent's output.
    pub(crate) fn logs(&self, name: &str, tail: usize) -> Result<Vec<LogLine>, SessionError> {
        match self.group() {
            Some(group) => group
                .logs(name, tail)
                .map_err(|_| SessionError::AgentNotFound(name.to_string())),
            None => Err(SessionError::AgentNotFound(name.to_string())),
        }
    }

    /// An agent's terminal.
    pub(crate) fn terminal(&self, name: &str) -> Result<Arc<Terminal>, SessionError> {
        match self.group() {
            Some(group) => group.terminal(name).map_err(|e| match e {
                AgentError::NoTerminal(name) => SessionError::NoTerminal(name),
                _ => SessionError::AgentNotFound(name.to_string()),
            }),
            None => Err(SessionError::AgentNotFound(name.to_string())),
        }
    }
}
