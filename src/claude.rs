//! Claude Code sessions as their hooks tell of them: which one works, which one waits for
//! its person, which one is done — and to which session of ours each belongs.
//!
//! Hooks arrive from `POST /api/claude/hooks` (Claude Code's `http` hooks, or the
//! `session-manager hook` shim without a session of ours) and from
//! `POST /sessions/{id}/events` (the shim with one). [`Claude::hook`] attributes the payload
//! (`tracker`: the conversation of one of our Claude agents, the session the hook named, the
//! longest working directory holding its `cwd`), moves its state (`state`), stores the
//! result and announces it (`claude_activity`), all before it answers: a 200 is never
//! undone by a restart. The hooks of one Claude session go through that one at a time (a
//! gate per Claude session, striped), so its announcements keep its hooks' order; hooks of
//! different Claude sessions never wait for each other, and their writes share the storage
//! writer's batches.
//!
//! A Claude session that waits for its person longer than `[claude] waiting_alert_seconds`
//! raises a `claude_waiting` alert through the monitor's list, resolved when it moves on; a
//! timer task sleeps until the next such deadline (nothing runs while nothing waits). When
//! one of our Claude agents' processes exits without a `SessionEnd`, its conversation is
//! `ended`, and `idle` again when the agent runs again (it resumes the conversation; Claude
//! Code posts no `SessionStart` over `http`); a purged session's Claude sessions are
//! forgotten.
//!
//! What each Claude session costs comes from Claude Code's own OpenTelemetry: `otlp`
//! decodes the OTLP/HTTP exports (`POST /v1/metrics`, `/v1/logs`), `usage` is the pure
//! ledger (delta and cumulative Sums, attribution at read time through [`Claude::attribution`]
//! so usage that came before its first hook counts once it is attributed), `ledger` keeps it
//! in storage; `transcript` reads Claude Code's transcripts when no telemetry came.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::agent::{AgentEvent, Severity};
use crate::config::Settings;
use crate::monitor::Monitor;
use crate::session::{
    ActivityState, ClaudeActivity, Resource, ResourceAlert, SessionError, SessionEvent,
    SessionRecord, SessionRegistry,
};
use crate::storage::{Storage, StorageError};
use crate::supervision::ChildState;

mod budget;
pub mod install;
pub(crate) mod ledger;
pub mod otlp;
mod state;
mod tracker;
pub(crate) mod transcript;
pub(crate) mod usage;

pub use state::{next, HookEvent};
pub use tracker::{Attribution, Candidates, Rank, Tracker, STORE_EVERY_SECONDS};

/// Stripes of the per-Claude-session gate: enough that concurrent Claude sessions rarely
/// share one, few enough to cost nothing.
const GATES: usize = 64;

/// Longest Claude session id taken (Claude Code's are UUIDs); a longer one is not tracked.
pub const MAX_CLAUDE_SESSION_ID_CHARS: usize = 256;

/// How long an unattributed Claude session waits before its next hook looks through the
/// sessions again.
const LOOKUP_EVERY_SECONDS: f64 = 2.0;

/// Who a hook says it is from: the headers of `POST /api/claude/hooks`
/// (`X-Session-Manager-Session`, `X-Session-Manager-Agent`), or the session of
/// `POST /sessions/{id}/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hint {
    /// A session of ours.
    pub session: Option<Uuid>,
    /// An agent of that session.
    pub agent: Option<String>,
}

/// What a hook did.
#[derive(Debug, Clone, PartialEq)]
pub struct HookOutcome {
    /// The session of ours it is attributed to.
    pub session: Option<Uuid>,
    /// The Claude session's state after it; `None` when the payload named no Claude
    /// session (`session_id`), which is then only counted, not tracked.
    pub state: Option<ActivityState>,
}

/// The handle; cloning shares it.
#[derive(Clone)]
pub struct Claude {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Claude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claude").finish_non_exhaustive()
    }
}

struct Inner {
    registry: SessionRegistry,
    monitor: Monitor,
    storage: Storage,
    tracker: Mutex<Tracker>,
    /// What Claude Code's telemetry counted.
    usage: ledger::UsageLedger,
    /// Open `cost_budget` alerts.
    budgets: budget::Budgets,
    /// One hook (or agent exit) of a Claude session at a time from attribution to
    /// announcement: [`GATES`] stripes, by the Claude session id's hash.
    gates: Vec<tokio::sync::Mutex<()>>,
    /// `[claude] waiting_alert_seconds`.
    waiting_after: f64,
    /// Open `claude_waiting` alerts by Claude session id, with when the wait began.
    waiting_alerts: Mutex<HashMap<String, (ResourceAlert, f64)>>,
    /// When each weakly attributed Claude session last looked through the sessions.
    looked_up: Mutex<HashMap<String, f64>>,
    /// Wakes the waiting timer: a Claude session started waiting.
    wake: Arc<Notify>,
    /// Bumped after every change a reader may show.
    version: AtomicU64,
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Claude {
    /// Restores the stored Claude sessions and starts the waiting timer and the task that
    /// follows agents' exits and purges on the registry's bus.
    pub async fn start(
        settings: &Settings,
        storage: Storage,
        registry: SessionRegistry,
        monitor: Monitor,
    ) -> Result<Claude, StorageError> {
        // Unbounded: this task waits on the log itself (its announcements are stored, and
        // hook requests that hold a Claude session's gate wait for storage), so it must never
        // hold the log's writer back. It takes only the few events it acts on.
        let events = registry.bus().follow_unbounded(followed);
        let tracker = Tracker::restore(storage.claude_sessions().await?);
        let usage = ledger::UsageLedger::load(storage.clone()).await?;
        let inner = Arc::new(Inner {
            registry,
            monitor,
            storage,
            tracker: Mutex::new(tracker),
            usage,
            budgets: budget::Budgets::default(),
            gates: (0..GATES).map(|_| tokio::sync::Mutex::new(())).collect(),
            waiting_after: settings.claude.waiting_alert_seconds as f64,
            waiting_alerts: Mutex::new(HashMap::new()),
            looked_up: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            version: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let timer = tokio::spawn(watch_waiting(Arc::downgrade(&inner)));
        let follow = tokio::spawn(follow_sessions(Arc::downgrade(&inner), events));
        *lock(&inner.tasks) = vec![timer.abort_handle(), follow.abort_handle()];
        Ok(Claude { inner })
    }

    /// Takes one hook payload named `name` (`hook_event_name`): attributes it, moves its
    /// Claude session's state, stores and announces both. With `publish`, the hook itself
    /// is announced too (`session_hook` for a session of ours, `claude_hook` otherwise);
    /// without, the caller already did. Fails only when storage or the event log refuses
    /// the write.
    pub async fn hook(
        &self,
        name: String,
        payload: Map<String, Value>,
        hint: Hint,
        publish: bool,
    ) -> Result<HookOutcome, SessionError> {
        let inner = &self.inner;
        let key = claude_session_id(&payload).map(str::to_owned);
        // A hook that names no Claude session changes no state: nothing to keep in order.
        let _in_order = match &key {
            Some(key) => Some(inner.gate(key).lock().await),
            None => None,
        };
        let cwd = text(&payload, "cwd").map(str::to_owned);
        let found = match &key {
            Some(key) => inner.attribute(key, &hint, cwd.as_deref()).await,
            None => inner.hinted(&hint).await,
        };
        let at = now();
        let observed = key.as_deref().map(|key| {
            let event = HookEvent::read(&name, &payload);
            inner.tracker().observe(
                key,
                &event,
                cwd.as_deref(),
                text(&payload, "transcript_path"),
                found.clone(),
                at,
            )
        });
        let session = match &observed {
            Some(observed) => observed.activity.session,
            None => found.map(|f| f.session),
        };
        // The row and the events are written side by side (the storage writer takes both);
        // the answer waits for both.
        let row = observed.as_ref().and_then(|o| o.row.clone());
        let store = async {
            match row {
                Some(row) => inner
                    .storage
                    .put_claude_session(row)
                    .await
                    .map_err(SessionError::from),
                None => Ok(()),
            }
        };
        let mut events = Vec::new();
        if publish {
            events.push(match session {
                Some(session) => SessionEvent::Hook {
                    session,
                    name: name.clone(),
                    payload: Value::Object(payload),
                },
                None => SessionEvent::UnattributedHook {
                    name: name.clone(),
                    payload: Value::Object(payload),
                },
            });
        }
        if let Some(observed) = observed.as_ref().filter(|o| o.announced()) {
            events.push(announcement(observed));
        }
        let (stored, announced) = tokio::join!(store, inner.publish_all(events));
        stored?;
        announced?;
        let state = observed.as_ref().map(|o| o.activity.state);
        if let Some(observed) = observed {
            inner.follow_waiting(&observed, at);
        }
        inner.bump();
        Ok(HookOutcome { session, state })
    }

    /// The Claude sessions attributed to `session`, first seen first.
    pub fn of_session(&self, session: Uuid) -> Vec<ClaudeActivity> {
        self.inner.tracker().of_session(session)
    }

    /// Every Claude session, attributed or not, most recent hook first.
    pub fn all(&self) -> Vec<ClaudeActivity> {
        self.inner.tracker().all()
    }

    /// The session of ours (and agent) a Claude session id is attributed to, if any: how
    /// telemetry that names only Claude's `session.id` finds its session.
    pub fn attribution(&self, claude_session_id: &str) -> Option<(Uuid, Option<String>)> {
        let tracker = self.inner.tracker();
        let activity = tracker.get(claude_session_id)?;
        Some((activity.session?, activity.agent.clone()))
    }

    /// Claude sessions by state (every state present, 0 included).
    pub fn count_by_state(&self) -> Vec<(ActivityState, usize)> {
        let counts = self.inner.tracker().count_by_state();
        ActivityState::ALL
            .into_iter()
            .map(|state| (state, counts.get(&state).copied().unwrap_or(0)))
            .collect()
    }

    /// What Claude session `claude_session_id` cost so far, as its telemetry said (zero
    /// while none came; the transcript fallback is per session of ours, `…/usage`).
    pub(crate) fn totals(&self, claude_session_id: &str) -> usage::Totals {
        self.inner
            .usage
            .of_claude_session(claude_session_id)
            .unwrap_or_default()
    }

    /// Raises or resolves the `cost_budget` alerts of `session` for its Claude Code's `cost`
    /// against its `cost_budget_usd` (`budget`).
    pub fn check_budget(&self, session: Uuid, budget: Option<f64>, cost: f64) {
        self.inner
            .budgets
            .check(&self.inner.monitor, session, budget, cost, now());
    }

    /// Counts one OTLP export into the usage ledger (see [`ledger::UsageLedger::record`]);
    /// the kept session answers, whose `claude_sessions` show cost and tokens, are renewed.
    pub(crate) async fn record_usage(
        &self,
        points: &[usage::Point],
        errors: &[usage::ApiErrorEvent],
    ) -> Result<u64, StorageError> {
        let rejected = self.inner.usage.record(points, errors).await?;
        if !points.is_empty() || !errors.is_empty() {
            self.inner.bump();
        }
        Ok(rejected)
    }

    /// The usage ledger the OTLP receiver writes and `…/usage` reads.
    pub(crate) fn usage(&self) -> &ledger::UsageLedger {
        &self.inner.usage
    }

    /// Moves after every change [`Claude::of_session`] or [`Claude::all`] would show: what
    /// a kept answer is tagged with.
    pub fn version(&self) -> u64 {
        self.inner.version.load(Ordering::Acquire)
    }

    /// Stops the timer and the bus task.
    pub fn stop(&self) {
        for task in lock(&self.inner.tasks).drain(..) {
            task.abort();
        }
    }
}

impl Inner {
    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        lock(&self.tracker)
    }

    /// The gate of Claude session `id`.
    fn gate(&self, id: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        &self.gates[(hasher.finish() as usize) % GATES]
    }

    fn bump(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    async fn publish(&self, event: SessionEvent) -> Result<(), SessionError> {
        self.registry
            .bus()
            .publish_stored(event)
            .await
            .map(drop)
            .map_err(|error| SessionError::EventLog(Arc::new(error)))
    }

    /// The attribution the rules find for Claude session `key`, if stronger than the one it
    /// has; the sessions are looked through at most every [`LOOKUP_EVERY_SECONDS`] per
    /// unattributed Claude session (a hand-started Claude Code outside every session would
    /// otherwise list them all on each of its hooks).
    async fn attribute(&self, key: &str, hint: &Hint, cwd: Option<&str>) -> Option<Attribution> {
        let rank = self.tracker().rank(key);
        if rank == Rank::Agent {
            return None;
        }
        // Only an unattributed Claude session looks through the sessions: a conversation
        // of our agents is found on its first hook (its id is assigned before its process
        // starts), and a weaker attribution can then only give way to a header.
        let at = now();
        let due = rank == Rank::None && {
            let mut looked_up = lock(&self.looked_up);
            let due = looked_up
                .get(key)
                .is_none_or(|last| at - last >= LOOKUP_EVERY_SECONDS);
            if due {
                // Entries past their wait are of no use: dropped before the map grows.
                if looked_up.len() >= 1024 {
                    looked_up.retain(|_, last| at - *last < LOOKUP_EVERY_SECONDS);
                }
                looked_up.insert(key.to_owned(), at);
            }
            due
        };
        let header = if rank < Rank::Header {
            self.named(hint).await
        } else {
            None
        };
        let mut candidates = Candidates {
            header,
            ..Candidates::default()
        };
        if due {
            if let Ok(records) = self.registry.list().await {
                candidates.agent = agent_of(&records, key);
                candidates.directories = records
                    .iter()
                    .filter(|r| !r.status.is_terminal())
                    .map(|r| (r.id, r.configuration.working_directory.clone()))
                    .collect();
            }
        }
        let found = candidates.best(cwd).filter(|found| found.rank > rank);
        if found.is_some() {
            lock(&self.looked_up).remove(key);
        }
        found
    }

    /// The attribution of a hook that names no Claude session: only what it names.
    async fn hinted(&self, hint: &Hint) -> Option<Attribution> {
        let (session, agent) = self.named(hint).await?;
        Some(Attribution {
            session,
            agent,
            rank: Rank::Header,
        })
    }

    /// The session a hint names, if it exists, with the agent it names if that session has
    /// one of that name.
    async fn named(&self, hint: &Hint) -> Option<(Uuid, Option<String>)> {
        let view = self.registry.get(hint.session?).await.ok()?;
        let agent = hint.agent.as_ref().filter(|name| {
            view.record
                .configuration
                .agents
                .iter()
                .any(|agent| &agent.name == *name)
        });
        Some((view.record.id, agent.cloned()))
    }

    /// Publishes `events` in order and returns once the last (and so every one before it:
    /// the log is written in order) is stored.
    async fn publish_all(&self, mut events: Vec<SessionEvent>) -> Result<(), SessionError> {
        let Some(last) = events.pop() else {
            return Ok(());
        };
        if !events.is_empty() {
            if let Some((fault, _)) = self.registry.bus().log_status().and_then(|s| s.failing) {
                return Err(SessionError::EventLog(Arc::new(
                    crate::session::LogError::Failing(fault),
                )));
            }
        }
        for event in events {
            self.registry.bus().publish(event);
        }
        self.publish(last).await
    }

    /// Wakes the waiting timer when a Claude session starts waiting; resolves its alert when
    /// it stops.
    fn follow_waiting(&self, observed: &tracker::Observed, at: f64) {
        let waiting = observed.activity.state == ActivityState::WaitingForInput;
        if waiting && observed.previous != Some(ActivityState::WaitingForInput) {
            self.wake.notify_one();
        }
        if !waiting {
            self.resolve_waiting(&observed.activity.claude_session_id, at);
        }
    }

    /// Resolves the waiting alert of a Claude session, if one is open.
    fn resolve_waiting(&self, id: &str, at: f64) {
        let alert = lock(&self.waiting_alerts).remove(id);
        if let Some((mut alert, since)) = alert {
            alert.value = (at - since).max(0.0).round();
            alert.message = format!("{} no longer waits for its person", describe(&alert, id));
            self.monitor.resolve(alert);
        }
    }

    /// Raises the waiting alerts due at `at`; answers when the next one falls due.
    fn raise_due(&self, at: f64) -> Option<f64> {
        let waiting: Vec<ClaudeActivity> = self
            .tracker()
            .all()
            .into_iter()
            .filter(|a| a.state == ActivityState::WaitingForInput)
            .collect();
        let mut alerts = lock(&self.waiting_alerts);
        let mut next_due: Option<f64> = None;
        for activity in waiting {
            if alerts.contains_key(&activity.claude_session_id) {
                continue;
            }
            let due = activity.since + self.waiting_after;
            if due > at {
                next_due = Some(next_due.map_or(due, |d: f64| d.min(due)));
                continue;
            }
            let alert = waiting_alert(&activity, self.waiting_after, at);
            alerts.insert(
                activity.claude_session_id.clone(),
                (alert.clone(), activity.since),
            );
            self.monitor.raise(alert);
        }
        next_due
    }
}

/// The `claude_activity` event of a change.
fn announcement(observed: &tracker::Observed) -> SessionEvent {
    SessionEvent::ClaudeActivity {
        activity: Box::new(observed.activity.clone()),
        previous: observed.previous,
    }
}

/// The `claude_waiting` alert of a Claude session waiting since `activity.since`.
fn waiting_alert(activity: &ClaudeActivity, after: f64, at: f64) -> ResourceAlert {
    let waited = (at - activity.since).max(0.0).round();
    let who = match (&activity.session, &activity.agent) {
        (Some(session), Some(agent)) => format!("agent {agent} of session {session}"),
        (Some(session), None) => format!(
            "Claude Code session {} of session {session}",
            activity.claude_session_id
        ),
        (None, _) => format!(
            "Claude Code session {} in {}",
            activity.claude_session_id,
            activity.cwd.as_deref().unwrap_or("an unknown directory")
        ),
    };
    ResourceAlert {
        id: Uuid::new_v4(),
        session: activity.session,
        resource: Resource::ClaudeWaiting,
        severity: Severity::Medium,
        message: format!(
            "{who} has waited {waited:.0} s for its person (after {}), over {after} s",
            activity.last_event
        ),
        value: waited,
        threshold: after,
        raised_at: at,
    }
}

fn describe(alert: &ResourceAlert, id: &str) -> String {
    match alert.session {
        Some(session) => format!("Claude Code session {id} of session {session}"),
        None => format!("Claude Code session {id}"),
    }
}

/// The agent of ours whose conversation Claude session `key` is.
fn agent_of(records: &[Arc<SessionRecord>], key: &str) -> Option<(Uuid, String)> {
    let id = Uuid::parse_str(key).ok()?;
    records.iter().find_map(|record| {
        record
            .claude_sessions
            .iter()
            .find(|(_, conversation)| **conversation == id)
            .map(|(agent, _)| (record.id, agent.clone()))
    })
}

/// The payload's Claude session id, when it has a usable one.
fn claude_session_id(payload: &Map<String, Value>) -> Option<&str> {
    text(payload, "session_id")
        .filter(|id| !id.is_empty() && id.chars().count() <= MAX_CLAUDE_SESSION_ID_CHARS)
}

fn text<'a>(payload: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    payload.get(key).and_then(Value::as_str)
}

/// Raises `claude_waiting` alerts as they fall due; sleeps until the next deadline or until a
/// Claude session starts waiting.
async fn watch_waiting(inner: Weak<Inner>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let notify = Arc::clone(&strong.wake);
        let wake = notify.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let next = strong.raise_due(now());
        drop(strong);
        match next {
            Some(due) => {
                let wait = Duration::from_secs_f64((due - now()).clamp(0.0, 86_400.0));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = wake => {}
                }
            }
            None => wake.await,
        }
    }
}

/// The events [`follow_sessions`] acts on: agents' exits and starts, purges.
fn followed(event: &SessionEvent) -> bool {
    matches!(
        event,
        SessionEvent::Agent {
            event: AgentEvent::Exited { .. }
                | AgentEvent::State {
                    to: ChildState::Running,
                    ..
                },
            ..
        } | SessionEvent::Purged(_)
    )
}

/// Ends the conversations of our Claude agents whose process exited, resumes them when the
/// agent runs again, forgets those of a purged session. It follows the stored log, so no
/// exit, start or purge is missed, in the order they happened.
async fn follow_sessions(inner: Weak<Inner>, mut events: crate::session::Follower) {
    while let Some(published) = events.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match &published.event {
            SessionEvent::Agent {
                session,
                event: AgentEvent::Exited { agent, .. },
            } => {
                if let Err(error) = inner.agent_exited(*session, agent).await {
                    tracing::warn!(%error, "the end of a Claude agent's conversation was not recorded");
                }
            }
            SessionEvent::Agent {
                session,
                event:
                    AgentEvent::State {
                        agent,
                        to: ChildState::Running,
                        ..
                    },
            } => {
                if let Err(error) = inner.agent_running(*session, agent).await {
                    tracing::warn!(%error, "the resumption of a Claude agent's conversation was not recorded");
                }
            }
            SessionEvent::Purged(session) => {
                let ids: Vec<String> = inner
                    .tracker()
                    .of_session(*session)
                    .into_iter()
                    .map(|a| a.claude_session_id)
                    .collect();
                inner.tracker().forget_session(*session);
                for id in ids {
                    inner.resolve_waiting(&id, now());
                }
                // A purged session has no budget left to watch: its alerts close.
                inner
                    .budgets
                    .check(&inner.monitor, *session, None, 0.0, now());
                inner.bump();
                if let Err(error) = inner.storage.forget_claude_sessions_of(*session).await {
                    tracing::warn!(%error, "the Claude sessions of a purged session were not deleted");
                }
            }
            _ => {}
        }
    }
}

impl Inner {
    /// One of our Claude agents runs (again): its ended conversation resumes, idle.
    async fn agent_running(&self, session: Uuid, agent: &str) -> Result<(), SessionError> {
        let ids = self.tracker().ended_conversations_of(session, agent);
        for id in ids {
            let _in_order = self.gate(&id).lock().await;
            let at = now();
            let Some(observed) = self.tracker().resume(&id, at) else {
                continue;
            };
            self.settle(observed, at).await?;
        }
        self.bump();
        Ok(())
    }

    /// Stores and announces a change made outside a hook (an agent's exit or start).
    async fn settle(&self, observed: tracker::Observed, at: f64) -> Result<(), SessionError> {
        if let Some(row) = observed.row.clone() {
            self.storage
                .put_claude_session(row)
                .await
                .map_err(SessionError::from)?;
        }
        self.publish(announcement(&observed)).await?;
        self.follow_waiting(&observed, at);
        Ok(())
    }

    async fn agent_exited(&self, session: Uuid, agent: &str) -> Result<(), SessionError> {
        let ids = self.tracker().conversations_of(session, agent);
        for id in ids {
            let _in_order = self.gate(&id).lock().await;
            let at = now();
            let Some(observed) = self.tracker().end(&id, at) else {
                continue;
            };
            self.settle(observed, at).await?;
        }
        self.bump();
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
