//! The session object on the wire: the original's `to_dict` (`configuration`, `context`,
//! `metrics`, `validation`, …) with ours added (`agents`, `tags`, `strategy`, `git`). Built
//! from a [`SessionRecord`] and its agents' live state; nothing here reads the world.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use super::claude::ClaudeSessionObject;
use super::process::LastExit;
use crate::agent::{AgentConfig, AgentStatus};
use crate::monitor::{Activity, SessionSample};
use crate::paths::Validation;
use crate::session::{SessionRecord, SessionView};
use crate::supervision::ChildState;

/// Unix seconds, the API's time format.
pub(crate) fn seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A session as every route returns it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SessionObject<'a> {
    id: String,
    name: &'a str,
    #[schema(value_type = crate::api::schemas::SessionStatusSchema)]
    status: &'static str,
    created_at: f64,
    updated_at: f64,
    configuration: Configuration<'a>,
    context: Context<'a>,
    metrics: Metrics<'a>,
    /// The working directory's validation; `null` where it was not computed (events).
    validation: Option<&'a Validation>,
    error_message: Option<&'a str>,
    // Ours.
    description: &'a str,
    working_directory: &'a str,
    last_activity: f64,
    terminated_at: Option<f64>,
    tags: &'a [String],
    strategy: &'static str,
    /// The git state of the working directory when `git_enabled` and it is a repository.
    #[schema(value_type = Option<crate::paths::GitState>)]
    git: Option<&'a Value>,
    agents: Vec<AgentObject<'a>>,
    agent_statuses: BTreeMap<&'a str, &'static str>,
    /// The Claude Code sessions attributed to it, as their hooks tell (empty in events).
    claude_sessions: Vec<ClaudeSessionObject>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Configuration<'a> {
    session_id: String,
    name: &'a str,
    description: &'a str,
    working_directory: &'a str,
    git_enabled: bool,
    auto_save: bool,
    save_interval_seconds: u64,
    max_memory_mb: u64,
    max_agents: u32,
    agents: &'a [AgentConfig],
    environment_variables: &'a BTreeMap<String, String>,
    custom_settings: &'a Value,
    /// USD the session's Claude Code may cost (`cost_budget` alerts), null for none.
    cost_budget_usd: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Context<'a> {
    session_id: String,
    current_directory: &'a str,
    git_branch: Option<&'a str>,
    git_commit: Option<&'a str>,
    /// Agents whose process (or logical state) is running now.
    active_agents: Vec<&'a str>,
    environment_state: &'a BTreeMap<String, String>,
    user_preferences: &'a Value,
    last_activity: f64,
}

#[derive(Debug, Serialize, ToSchema)]
struct Metrics<'a> {
    session_id: String,
    start_time: f64,
    end_time: Option<f64>,
    duration_seconds: f64,
    /// Counted from Claude Code hook events (`Bash` tool uses).
    commands_executed: u64,
    /// Files a `Write` (of an existing file), `Edit`, `MultiEdit` or `NotebookEdit` changed.
    files_modified: u64,
    /// Tool uses that failed.
    errors_encountered: u64,
    /// Ours: files a `Write` created.
    files_created: u64,
    /// Ours: files an `rm` / `unlink` / `git rm` of a command named.
    files_deleted: u64,
    /// Ours: tool uses finished.
    tool_uses: u64,
    /// Ours: mean and longest tool response time (`PreToolUse` → `PostToolUse`), ms.
    average_response_time_ms: Option<f64>,
    max_response_time_ms: Option<f64>,
    /// Resident memory of every agent's process tree, summed, at the last sample.
    memory_usage_mb: f64,
    /// CPU of every agent's process tree at the monitor's last sample (100 = one core);
    /// `null` before the first sample rather than a made-up 0.
    cpu_usage_percent: Option<f64>,
    agent_activations: &'a BTreeMap<String, u64>,
    /// `{"agent_restarts": {name: count}}`.
    performance_metrics: Value,
}

/// One agent's live state.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentObject<'a> {
    name: &'a str,
    #[schema(value_type = crate::agent::AgentType)]
    agent_type: &'static str,
    status: &'static str,
    /// Whether it is wanted up (false once deactivated).
    active: bool,
    has_process: bool,
    pid: Option<u32>,
    restart_count: u64,
    started_at: Option<f64>,
    /// When it entered `status`.
    since: f64,
    last_exit: Option<LastExit>,
    last_error: Option<&'a str>,
    memory_mb: Option<f64>,
    /// CPU of its process tree at the monitor's last sample; `null` without a process.
    cpu_percent: Option<f64>,
    /// The agents it waits for, as the server resolved them: its configured `depends_on`,
    /// else its type template's, else its type's default dependencies among the session's
    /// agents (`configuration.agents[].depends_on` shows only what was configured).
    depends_on: Vec<&'a str>,
    /// A Claude agent's conversation (Claude Code's session id), which every start after
    /// the first resumes; `null` for other agents.
    claude_session_id: Option<Uuid>,
    /// The terminal it runs on (`…/screen`, `/ws/sessions/{id}/agents/{name}/terminal`);
    /// `null` for an agent on pipes or without a process.
    terminal: Option<TerminalObject>,
}

/// A terminal's size.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TerminalObject {
    rows: u16,
    cols: u16,
}

impl<'a> AgentObject<'a> {
    pub(crate) fn new(agent: &'a AgentStatus) -> Self {
        AgentObject {
            name: &agent.name,
            agent_type: agent.agent_type.as_str(),
            status: agent.state.as_str(),
            active: agent.active,
            has_process: agent.has_process,
            pid: agent.live.pid,
            restart_count: agent.restarts,
            started_at: agent.live.started_at.map(seconds),
            since: seconds(agent.since),
            last_exit: agent.live.last_exit.as_ref().map(LastExit::from),
            last_error: agent.live.last_error.as_deref(),
            memory_mb: agent.live.memory_mb,
            cpu_percent: None,
            depends_on: agent.depends_on.iter().map(|name| &**name).collect(),
            claude_session_id: agent.claude_session_id,
            terminal: agent.terminal.map(|size| TerminalObject {
                rows: size.rows,
                cols: size.cols,
            }),
        }
    }
}

impl<'a> SessionObject<'a> {
    /// The object with what the session's hook events counted.
    pub(crate) fn with_activity(mut self, activity: &Activity) -> Self {
        let m = &mut self.metrics;
        m.commands_executed = activity.commands_executed;
        m.files_modified = activity.files_modified;
        m.errors_encountered = activity.errors;
        m.files_created = activity.files_created;
        m.files_deleted = activity.files_deleted;
        m.tool_uses = activity.tool_uses;
        m.average_response_time_ms = activity.average_response_ms();
        m.max_response_time_ms = (activity.responses > 0).then_some(activity.response_ms_max);
        self
    }

    /// The object with the Claude Code sessions attributed to it.
    pub(crate) fn with_claude(mut self, claude_sessions: Vec<ClaudeSessionObject>) -> Self {
        self.claude_sessions = claude_sessions;
        self
    }

    /// The object with the monitor's latest sample of the session: CPU and memory of the
    /// session and CPU of each agent sampled.
    pub(crate) fn with_sample(mut self, sample: Option<&SessionSample>) -> Self {
        let Some(sample) = sample else {
            return self;
        };
        self.metrics.cpu_usage_percent = Some(sample.cpu_percent);
        self.metrics.memory_usage_mb = sample.memory_mb;
        for agent in &mut self.agents {
            if let Some(sampled) = sample.agents.iter().find(|a| a.name == agent.name) {
                agent.cpu_percent = Some(sampled.cpu_percent);
            }
        }
        self
    }

    /// The object for `record` with its agents' live state and, when computed, the
    /// validation of its working directory.
    pub(crate) fn new(
        record: &'a SessionRecord,
        agents: &'a [AgentStatus],
        validation: Option<&'a Validation>,
    ) -> Self {
        Self::as_of(record, agents, validation, seconds(SystemTime::now()))
    }

    /// The object as of Unix time `now` (a live session's duration runs to it).
    fn as_of(
        record: &'a SessionRecord,
        agents: &'a [AgentStatus],
        validation: Option<&'a Validation>,
        now: f64,
    ) -> Self {
        let config = &record.configuration;
        let id = record.id.to_string();
        let git_field = |key: &str| {
            record
                .git
                .as_ref()
                .and_then(|git| git.get(key))
                .and_then(Value::as_str)
        };
        let end = record.terminated_at;
        SessionObject {
            id: id.clone(),
            name: &config.name,
            status: record.status.as_str(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            configuration: Configuration {
                session_id: id.clone(),
                name: &config.name,
                description: &config.description,
                working_directory: &config.working_directory,
                git_enabled: config.git_enabled,
                auto_save: config.auto_save,
                save_interval_seconds: config.save_interval_seconds,
                max_memory_mb: config.max_memory_mb,
                max_agents: config.max_agents,
                agents: &config.agents,
                environment_variables: &config.environment_variables,
                custom_settings: &config.custom_settings,
                cost_budget_usd: config.cost_budget_usd,
            },
            context: Context {
                session_id: id.clone(),
                current_directory: &config.working_directory,
                git_branch: git_field("branch"),
                git_commit: git_field("head_commit"),
                active_agents: running(agents).collect(),
                environment_state: &config.environment_variables,
                user_preferences: &config.custom_settings,
                last_activity: record.last_activity,
            },
            metrics: Metrics {
                session_id: id,
                start_time: record.created_at,
                end_time: end,
                duration_seconds: (end.unwrap_or(now) - record.created_at).max(0.0),
                commands_executed: 0,
                files_modified: 0,
                errors_encountered: 0,
                files_created: 0,
                files_deleted: 0,
                tool_uses: 0,
                average_response_time_ms: None,
                max_response_time_ms: None,
                memory_usage_mb: agents
                    .iter()
                    .filter_map(|a| a.live.memory_mb)
                    .fold(0.0, |sum, mb| sum + mb),
                cpu_usage_percent: None,
                agent_activations: &record.agent_activations,
                performance_metrics: json!({ "agent_restarts": record.agent_restarts }),
            },
            validation,
            error_message: record.error_message.as_deref(),
            description: &config.description,
            working_directory: &config.working_directory,
            last_activity: record.last_activity,
            terminated_at: record.terminated_at,
            tags: &record.tags,
            strategy: record.strategy.as_str(),
            git: record.git.as_ref(),
            agents: agents.iter().map(AgentObject::new).collect(),
            agent_statuses: statuses(agents),
            claude_sessions: Vec::new(),
        }
    }

    /// The object of a [`SessionView`].
    pub(crate) fn of(view: &'a SessionView, validation: Option<&'a Validation>) -> Self {
        SessionObject::new(&view.record, &view.agents, validation)
    }
}

/// The names of the agents running now.
pub(crate) fn running(agents: &[AgentStatus]) -> impl Iterator<Item = &str> {
    agents
        .iter()
        .filter(|a| a.state == ChildState::Running)
        .map(|a| a.name.as_str())
}

/// `{name: state}` of every agent.
pub(crate) fn statuses(agents: &[AgentStatus]) -> BTreeMap<&str, &'static str> {
    agents
        .iter()
        .map(|a| (a.name.as_str(), a.state.as_str()))
        .collect()
}

/// The session object as a JSON value as of Unix time `at`, for events (no validation:
/// `null`), so a replayed event equals the live one.
pub(crate) fn session_object_at(record: &SessionRecord, agents: &[AgentStatus], at: f64) -> Value {
    serde_json::to_value(SessionObject::as_of(record, agents, None, at)).unwrap_or(Value::Null)
}
