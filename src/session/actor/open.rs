//! Opening a session: its agents built from its record and, when they are all logical,
//! started right here, without an actor. Such a session is "dormant": its record and its
//! group in [`SessionShared`] are all there is of it — readers need nothing else, and
//! nothing in it can change until an order, which wakes an actor for it. An idle session
//! of logical agents then costs its record and its group, not a ractor actor, two
//! mailboxes and a checkpoint timer; 100,000 restored sessions start in a fraction of the
//! time and stop at once. A session with a process agent gets its actor before any agent
//! starts, so the actor hears every state change.

use std::sync::{Arc, Weak};

use crate::agent::{
    assign_session_ids, resolve_agents, AgentContext, AgentEvent, AgentGroup, CommandOrigin,
    EventSink, GroupHealth,
};
use crate::session::error::SessionError;
use crate::session::model::{SessionRecord, SessionStatus};
use crate::session::registry::SessionEvent;

use super::{with_status, SessionDeps, SessionShared};

/// What opening a session left.
pub(crate) enum Opened {
    /// Logical agents only, started: the session needs no actor until an order. `shared`
    /// has its record and group; a record that changed at the start (its status) is left
    /// there unsaved for the stop (or the actor, when one wakes) to store.
    Dormant(Arc<SessionRecord>),
    /// Agents with processes: built, not started — the actor starts them once it can hear
    /// them (`Opening::Start`).
    Built {
        record: Arc<SessionRecord>,
        group: Box<AgentGroup>,
        /// The record changed while the group was built (Claude conversations assigned).
        dirty: bool,
    },
}

/// Builds `record`'s agents and starts them when they are all logical (`restored`: as a
/// stored session the server restores, see `SessionArgs::restored`).
pub(crate) async fn open(
    deps: &SessionDeps,
    shared: &Arc<SessionShared>,
    mut record: Arc<SessionRecord>,
    restored: Option<SessionStatus>,
) -> Result<Opened, SessionError> {
    let (group, mut dirty) = build_group(&mut record, deps, shared).await?;
    if group.supervised() {
        return Ok(Opened::Built {
            record,
            group: Box::new(group),
            dirty,
        });
    }
    let started = if restored.is_some() {
        group.resume_all().await
    } else {
        group.start_all().await
    };
    started.map_err(|e| SessionError::AgentsFailed(e.to_string()))?;
    let status = group_status(&group).await;
    shared.set_group(Some(Arc::new(group)));
    if restored == Some(status) {
        // Back as it was stored: the record is the stored one.
        if record.status != status {
            Arc::make_mut(&mut record).status = status;
        }
    } else if record.status != status {
        with_status(Arc::make_mut(&mut record), status);
        dirty = true;
    }
    if dirty {
        shared.leave_unsaved(record.clone());
    }
    shared.set_record(record.clone());
    shared.set_dormant(true);
    Ok(Opened::Dormant(record))
}

/// The session's agents, built from its record (nothing started); whether the record
/// changed: every Claude agent has its conversation by now, and a record stored before it
/// had one (or before Claude agents existed) gets it here, stored with the next write.
/// Every agent event goes straight onto the bus; a state change asks the session's actor,
/// if it has one, to recompute the status ([`SessionShared::agents_changed`]).
pub(super) async fn build_group(
    record: &mut Arc<SessionRecord>,
    deps: &SessionDeps,
    shared: &Arc<SessionShared>,
) -> Result<(AgentGroup, bool), SessionError> {
    // The record was validated when it was accepted; its commands were accepted then.
    let agents = resolve_agents(
        &record.configuration.agents,
        &deps.settings.agents,
        CommandOrigin::Trusted,
    )?;
    let mut context = AgentContext::with_paths(
        record.id.to_string(),
        record.configuration.working_directory.clone().into(),
        &deps.settings,
        deps.paths.clone(),
    );
    context.environment = record.configuration.environment_variables.clone();
    let claude_sessions = assign_session_ids(&record.claude_sessions, &record.configuration.agents);
    let changed = claude_sessions != record.claude_sessions;
    if changed {
        Arc::make_mut(record).claude_sessions = claude_sessions.clone();
    }
    context.claude_sessions = claude_sessions;
    context.server_url = deps.server_url.clone();
    context.git_branch = record
        .git
        .as_ref()
        .and_then(|git| git.get("branch"))
        .and_then(|branch| branch.as_str())
        .map(str::to_owned);
    context.strategy = record.strategy;
    let bus = deps.bus.clone();
    let session = record.id;
    // Weak: the group is in `shared`, which must not keep itself alive through it.
    let shared: Weak<SessionShared> = Arc::downgrade(shared);
    let sink: EventSink = Arc::new(move |event: AgentEvent| {
        let changed = matches!(event, AgentEvent::State { .. });
        bus.publish(SessionEvent::Agent { session, event });
        if changed {
            if let Some(shared) = shared.upgrade() {
                shared.agents_changed();
            }
        }
    });
    let group = AgentGroup::build_with_sink(context, agents, sink)
        .await
        .map_err(|e| SessionError::AgentsFailed(e.to_string()))?;
    Ok((group, changed))
}

/// The session status a group's agents call for.
pub(super) async fn group_status(group: &AgentGroup) -> SessionStatus {
    match group.health().await {
        Ok(GroupHealth::Starting) => SessionStatus::Initializing,
        Ok(GroupHealth::Active) => SessionStatus::Active,
        Ok(GroupHealth::Degraded) => SessionStatus::Degraded,
        Ok(GroupHealth::Error) => SessionStatus::Error,
        Err(_) => SessionStatus::Error,
    }
}
