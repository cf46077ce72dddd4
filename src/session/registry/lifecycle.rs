//! The operations that create, change and end sessions: create, import and clone (each
//! checked in full before anything is created on disk or stored), update and navigate
//! (through the session's own actor, old state put back on failure), export, terminate,
//! and hook events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::agent::{assign_session_ids, resolve, resolve_agents, CommandOrigin, FieldError};
use crate::paths::{CheckCode, PathError, Validation};

use crate::session::actor::{RecordChange, SessionMsg, SessionView};
use crate::session::error::SessionError;
use crate::session::model::{now, validate_tags, SessionRecord, SessionStatus};
use crate::session::snapshot::{self, Snapshot};
use crate::session::store;

use super::{
    apply, Arrival, CloneSession, CreateSession, ImportSession, RegistryMsg, SessionEvent,
    SessionRegistry, UpdateSession,
};

impl SessionRegistry {
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
        // A new session's Claude agents start new conversations, even as an import or a
        // clone of another: two sessions never share one.
        let claude_sessions = assign_session_ids(&BTreeMap::new(), &configuration.agents);
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
            claude_sessions,
        };
        record.git = self
            .git_state(&record, "configuration.working_directory")
            .await?;
        self.call(|reply| RegistryMsg::Insert {
            record: Box::new(record),
            context,
            arrival,
            reply,
        })
        .await??;
        self.get(id).await
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

    /// Validates a directory with the path policy and creates it when missing and allowed;
    /// returns its canonical form.
    async fn admit_directory(
        &self,
        raw: &str,
        field: &str,
        create_if_missing: bool,
    ) -> Result<(String, Validation), SessionError> {
        let validation = self.paths.validate(raw).await;
        if validation.has(CheckCode::TimedOut) {
            return Err(self.timed_out(
                field,
                format!("reading `{raw}` (its file system or its git repository)"),
            ));
        }
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
        // Found (or refused) first, as ever; woken only once the tags pass.
        self.live(id).await?;
        if let Some(tags) = &update.tags {
            validate_tags(tags)?;
        }
        let (_, actor) = self.awake(id).await?;
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
            if let Some(budget) = update.cost_budget_usd {
                config.cost_budget_usd = budget;
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
            // Claude agents kept keep their conversation; new ones get one, removed ones
            // lose theirs.
            next.claude_sessions =
                assign_session_ids(&next.claude_sessions, &next.configuration.agents);
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
        let (record, _) = self.live(id).await?;
        let (directory, validation) = self
            .admit_directory(path, "path", create_if_missing)
            .await?;
        let mut moved = SessionRecord::clone(&record);
        moved.configuration.working_directory = directory;
        let git = self.git_state(&moved, "path").await?;
        let directory = moved.configuration.working_directory;
        let change: RecordChange = Box::new(move |next: &mut SessionRecord| {
            next.configuration.working_directory = directory;
            next.git = git;
            Ok(true)
        });
        // Woken only now: a path refused wakes no dormant session.
        let (_, actor) = self.awake(id).await?;
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
                self.paths
                    .create_worktree(&repository, &target, branch)
                    .await
                    .map_err(|e| match e {
                        PathError::TimedOut { path, .. } => self.timed_out(
                            "git_worktree",
                            format!("the repository of `{}`", path.display()),
                        ),
                        other => {
                            FieldError::invalid("git_worktree.branch", other.to_string()).into()
                        }
                    })?;
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
        let metrics = snapshot::metrics_of(&view.record);
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

    /// Terminates a session: its agents stop in reverse dependency order and the record is
    /// kept as `terminated` — or, with `purge`, deleted.
    pub async fn terminate(&self, id: Uuid, purge: bool) -> Result<SessionRecord, SessionError> {
        let (record, live) = self.find(id, true).await?;
        let record = match live {
            Some(live) => {
                let actor = super::woken(id, &live)?;
                ractor::call!(actor, SessionMsg::Terminate)
                    .map_err(|_| SessionError::Ended(id))??
            }
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
}

impl SessionRegistry {
    /// The git state of the record's directory, when `git_enabled`. An unreadable
    /// repository is logged, not fatal (it must not stop a session); one that does not
    /// answer within the deadline refuses the request (504 naming `field`): nothing waits
    /// on it longer.
    async fn git_state(
        &self,
        record: &SessionRecord,
        field: &str,
    ) -> Result<Option<Value>, SessionError> {
        if !record.configuration.git_enabled {
            return Ok(None);
        }
        let directory = Path::new(&record.configuration.working_directory);
        match self.paths.git_state(directory).await {
            Ok(Some(state)) => Ok(serde_json::to_value(state).ok()),
            Ok(None) => Ok(None),
            Err(PathError::TimedOut { path, .. }) => {
                Err(self.timed_out(field, format!("the git repository of `{}`", path.display())))
            }
            Err(err) => {
                tracing::warn!(session = %record.id, "cannot read the git state: {err}");
                Ok(None)
            }
        }
    }

    /// The error for `what` (about `field`) not answering within the paths deadline.
    fn timed_out(&self, field: &str, what: String) -> SessionError {
        SessionError::TimedOut {
            field: field.to_string(),
            what,
            timeout_ms: u64::try_from(self.paths.deadline().as_millis()).unwrap_or(u64::MAX),
        }
    }
}
