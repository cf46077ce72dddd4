//! The session actor: one per live session. It owns the session's [`AgentGroup`] (whose
//! supervisor starts the agents in dependency order and restarts them), derives the session's
//! status from its agents' real states, and persists every change before it answers.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;

use crate::agent::{
    resolve_agents, AgentContext, AgentEvent, AgentGroup, AgentStatus, CommandOrigin, GroupHealth,
    LogLine,
};
use crate::config::Settings;
use crate::storage::Storage;

use super::error::SessionError;
use super::model::{now, SessionRecord, SessionStatus};
use super::registry::RegistryMsg;
use super::store;

/// What a session actor needs from the server.
#[derive(Debug, Clone)]
pub(crate) struct SessionDeps {
    pub(crate) settings: Arc<Settings>,
    pub(crate) storage: Storage,
    pub(crate) server_url: String,
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

/// A session and its agents' live state.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The record.
    pub record: SessionRecord,
    /// Each agent's live state, in name order (empty for a terminated session).
    pub agents: Vec<AgentStatus>,
}

pub(crate) enum SessionMsg {
    View(RpcReplyPort<SessionView>),
    Agent {
        op: AgentOp,
        name: String,
        reply: RpcReplyPort<Result<AgentStatus, SessionError>>,
    },
    Logs {
        name: String,
        tail: usize,
        reply: RpcReplyPort<Result<Vec<LogLine>, SessionError>>,
    },
    Terminate(RpcReplyPort<Result<SessionRecord, SessionError>>),
    /// An agent changed state: recompute the status.
    AgentsChanged,
}

pub(crate) struct SessionActor;

pub(crate) struct SessionArgs {
    pub(crate) record: SessionRecord,
    pub(crate) deps: SessionDeps,
    pub(crate) registry: ActorRef<RegistryMsg>,
}

pub(crate) struct SessionState {
    record: SessionRecord,
    deps: SessionDeps,
    registry: ActorRef<RegistryMsg>,
    group: Option<AgentGroup>,
    forwarder: Option<JoinHandle<()>>,
}

impl Drop for SessionState {
    fn drop(&mut self) {
        if let Some(forwarder) = &self.forwarder {
            forwarder.abort();
        }
        // Dropping the group (if still here) kills its agents' process groups.
    }
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let SessionArgs {
            record,
            deps,
            registry,
        } = args;
        let mut state = SessionState {
            record,
            deps,
            registry,
            group: None,
            forwarder: None,
        };
        // The record was validated when it was accepted; its commands were accepted then.
        let agents = resolve_agents(
            &state.record.configuration.agents,
            &state.deps.settings.agents,
            CommandOrigin::Trusted,
        )
        .map_err(|e| format!("cannot resolve the agents: {e}"))?;
        let mut context = AgentContext::new(
            state.record.id.to_string(),
            state.record.configuration.working_directory.clone().into(),
            &state.deps.settings,
        );
        context.environment = state.record.configuration.environment_variables.clone();
        context.server_url = state.deps.server_url.clone();
        context.strategy = state.record.strategy;
        let group = AgentGroup::build(context, agents)
            .await
            .map_err(|e| format!("cannot build the agents' supervisor: {e}"))?;
        let mut events = group.subscribe();
        let me = myself.clone();
        state.forwarder = Some(tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(AgentEvent::State { .. }) => {
                        if me.cast(SessionMsg::AgentsChanged).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = me.cast(SessionMsg::AgentsChanged);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        group
            .supervisor()
            .start_all()
            .await
            .map_err(|e| format!("cannot start the agents: {e}"))?;
        state.group = Some(group);
        state.set_status(status_of(&state).await).await;
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SessionMsg::View(reply) => {
                let _ = reply.send(state.view().await);
            }
            SessionMsg::Agent { op, name, reply } => {
                let _ = reply.send(state.agent_op(op, &name).await);
            }
            SessionMsg::Logs { name, tail, reply } => {
                let logs = match &state.group {
                    Some(group) => group
                        .logs(&name, tail)
                        .map_err(|_| SessionError::AgentNotFound(name)),
                    None => Err(SessionError::AgentNotFound(name)),
                };
                let _ = reply.send(logs);
            }
            SessionMsg::Terminate(reply) => {
                let _ = reply.send(state.terminate().await);
            }
            SessionMsg::AgentsChanged => {
                if !state.record.status.is_terminal() {
                    let status = status_of(state).await;
                    state.set_status(status).await;
                }
            }
        }
        Ok(())
    }
}

/// The session status its agents' states call for.
async fn status_of(state: &SessionState) -> SessionStatus {
    let Some(group) = &state.group else {
        return state.record.status;
    };
    match group.health().await {
        Ok(GroupHealth::Starting) => SessionStatus::Initializing,
        Ok(GroupHealth::Active) => SessionStatus::Active,
        Ok(GroupHealth::Degraded) => SessionStatus::Degraded,
        Ok(GroupHealth::Error) => SessionStatus::Error,
        Err(_) => SessionStatus::Error,
    }
}

impl SessionState {
    /// Records a new status (durably) and tells the registry.
    async fn set_status(&mut self, status: SessionStatus) {
        if self.record.status == status {
            return;
        }
        self.record.status = status;
        let at = now();
        self.record.updated_at = at;
        self.record.last_activity = at;
        if status == SessionStatus::Error && self.record.error_message.is_none() {
            self.record.error_message = Some("the ORCHESTRATOR agent failed".to_string());
        } else if status != SessionStatus::Error {
            self.record.error_message = None;
        }
        self.persist().await;
    }

    async fn persist(&self) {
        if let Err(err) = store::save(&self.deps.storage, &self.record).await {
            tracing::error!(session = %self.record.id, "cannot store the session: {err}");
        }
        let _ = self
            .registry
            .cast(RegistryMsg::Updated(Box::new(self.record.clone())));
    }

    async fn view(&self) -> SessionView {
        let agents = match &self.group {
            Some(group) => group.statuses().await.unwrap_or_default(),
            None => Vec::new(),
        };
        SessionView {
            record: self.record.clone(),
            agents,
        }
    }

    async fn agent_op(&mut self, op: AgentOp, name: &str) -> Result<AgentStatus, SessionError> {
        if self.record.status.is_terminal() {
            return Err(SessionError::Conflict(format!(
                "session {} is {}",
                self.record.id, self.record.status
            )));
        }
        let group = self
            .group
            .as_ref()
            .ok_or_else(|| SessionError::AgentNotFound(name.to_string()))?;
        let done = match op {
            AgentOp::Activate => group.activate(name).await,
            AgentOp::Deactivate => group.deactivate(name).await,
            AgentOp::Restart => group.restart(name).await,
        };
        done.map_err(|e| match e {
            crate::agent::AgentError::UnknownAgent(name) => SessionError::AgentNotFound(name),
            other => SessionError::Conflict(other.to_string()),
        })?;
        if op != AgentOp::Deactivate {
            *self
                .record
                .agent_activations
                .entry(name.to_string())
                .or_default() += 1;
        }
        self.record.last_activity = now();
        self.persist().await;
        group
            .statuses()
            .await
            .ok()
            .and_then(|all| all.into_iter().find(|a| a.name == name))
            .ok_or_else(|| SessionError::AgentNotFound(name.to_string()))
    }

    async fn terminate(&mut self) -> Result<SessionRecord, SessionError> {
        if self.record.status == SessionStatus::Terminated {
            return Ok(self.record.clone());
        }
        self.set_status(SessionStatus::Terminating).await;
        if let Some(forwarder) = self.forwarder.take() {
            forwarder.abort();
        }
        if let Some(group) = self.group.take() {
            if let Ok(statuses) = group.statuses().await {
                for agent in statuses {
                    self.record
                        .agent_restarts
                        .insert(agent.name.clone(), agent.restarts);
                }
            }
            if let Err(err) = group.shutdown().await {
                tracing::warn!(session = %self.record.id, "stopping the agents: {err}");
            }
        }
        self.record.terminated_at = Some(now());
        self.set_status(SessionStatus::Terminated).await;
        Ok(self.record.clone())
    }
}
