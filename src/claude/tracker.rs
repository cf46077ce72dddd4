//! The Claude Code sessions the hooks told of, and what each is attributed to. Pure: the
//! caller reads the world (the sessions of ours, as [`Candidates`]) and the clock, and
//! persists and announces what [`Tracker::observe`] answers.
//!
//! Attribution, strongest first (a weaker rule never replaces a stronger one; once made, an
//! attribution is kept):
//! 1. [`Rank::Agent`]: the Claude session id is the conversation of one of our Claude agents;
//! 2. [`Rank::Header`]: the hook named a session of ours (`X-Session-Manager-Session`, which
//!    the installed hooks fill from `CLAUDE_SESSION_ID`, or the session of
//!    `POST /sessions/{id}/events`);
//! 3. [`Rank::Directory`]: the payload's `cwd` is inside a live session's working directory
//!    (the longest such directory wins);
//!
//! Otherwise the Claude session is kept unattributed, listed, and tried again later.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use uuid::Uuid;

use super::state::{next, HookEvent};
use crate::session::{ActivityState, ClaudeActivity};
use crate::storage::ClaudeRow;

/// How an attribution was made; higher is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rank {
    /// Not attributed.
    None = 0,
    /// By working directory.
    Directory = 1,
    /// Named by the hook.
    Header = 2,
    /// One of our Claude agents' conversations.
    Agent = 3,
}

impl Rank {
    fn from_stored(rank: i64) -> Rank {
        match rank {
            3 => Rank::Agent,
            2 => Rank::Header,
            1 => Rank::Directory,
            _ => Rank::None,
        }
    }
}

/// A session of ours a Claude session may belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// Ours.
    pub session: Uuid,
    /// Our agent, when known.
    pub agent: Option<String>,
    /// How.
    pub rank: Rank,
}

/// What the sessions of ours say about one Claude session id: the strongest attribution
/// each rule finds (the caller builds it from the registry and the hook's headers).
#[derive(Debug, Clone, Default)]
pub struct Candidates {
    /// The agent whose conversation it is.
    pub agent: Option<(Uuid, String)>,
    /// The session the hook named, and the agent it named if that session has it.
    pub header: Option<(Uuid, Option<String>)>,
    /// Live sessions' working directories.
    pub directories: Vec<(Uuid, String)>,
}

impl Candidates {
    /// The strongest attribution, for a payload whose working directory is `cwd`.
    pub fn best(&self, cwd: Option<&str>) -> Option<Attribution> {
        if let Some((session, agent)) = &self.agent {
            return Some(Attribution {
                session: *session,
                agent: Some(agent.clone()),
                rank: Rank::Agent,
            });
        }
        if let Some((session, agent)) = &self.header {
            return Some(Attribution {
                session: *session,
                agent: agent.clone(),
                rank: Rank::Header,
            });
        }
        let cwd = Path::new(cwd?);
        self.directories
            .iter()
            .filter(|(_, dir)| cwd.starts_with(Path::new(dir)))
            .max_by_key(|(_, dir)| Path::new(dir).components().count())
            .map(|(session, _)| Attribution {
                session: *session,
                agent: None,
                rank: Rank::Directory,
            })
    }
}

/// How long a Claude session's stored row may lag behind its last hook when nothing else
/// changed (the hooks themselves are in the event log).
pub const STORE_EVERY_SECONDS: f64 = 5.0;

/// One tracked Claude session.
#[derive(Debug, Clone)]
struct Entry {
    activity: ClaudeActivity,
    rank: Rank,
    /// When its row was last given to be stored.
    stored_at: f64,
}

/// What one hook changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The Claude session now.
    pub activity: ClaudeActivity,
    /// Its state before; `None` when first seen.
    pub previous: Option<ActivityState>,
    /// Its session before, when the hook attributed it (newly, or to a stronger rule's).
    pub previous_session: Option<Option<Uuid>>,
    /// The row to store, when it is due: whenever the state, the attribution, the working
    /// directory or the transcript changed, and at least every [`STORE_EVERY_SECONDS`]
    /// otherwise (only `last_event` moved).
    pub row: Option<ClaudeRow>,
}

impl Observed {
    /// Whether the change is announced (`claude_activity`): first seen, a new state, or a
    /// new attribution.
    pub fn announced(&self) -> bool {
        self.previous != Some(self.activity.state) || self.previous_session.is_some()
    }
}

/// The Claude sessions by id, with an index by session of ours.
#[derive(Debug, Default)]
pub struct Tracker {
    entries: HashMap<String, Entry>,
    by_session: HashMap<Uuid, BTreeSet<String>>,
}

impl Tracker {
    /// The tracker as stored.
    pub fn restore(rows: Vec<ClaudeRow>) -> Tracker {
        let mut tracker = Tracker::default();
        for row in rows {
            let Some(state) = ActivityState::parse(&row.state) else {
                tracing::warn!(id = %row.claude_session_id, state = %row.state, "a stored Claude session has an unknown state; skipped");
                continue;
            };
            let entry = Entry {
                stored_at: row.last_event_at,
                rank: Rank::from_stored(row.attributed_by),
                activity: ClaudeActivity {
                    claude_session_id: row.claude_session_id,
                    session: row.session_id,
                    agent: row.agent,
                    state,
                    since: row.since,
                    cwd: row.cwd,
                    transcript_path: row.transcript_path,
                    last_event: row.last_event,
                    last_event_at: row.last_event_at,
                    error: row.error,
                },
            };
            tracker.insert(entry);
        }
        tracker
    }

    /// How the Claude session `id` is attributed now ([`Rank::None`] when unknown).
    pub fn rank(&self, id: &str) -> Rank {
        self.entries.get(id).map_or(Rank::None, |e| e.rank)
    }

    /// The Claude session `id`.
    pub fn get(&self, id: &str) -> Option<&ClaudeActivity> {
        self.entries.get(id).map(|e| &e.activity)
    }

    /// The Claude sessions attributed to `session`, oldest hook first.
    pub fn of_session(&self, session: Uuid) -> Vec<ClaudeActivity> {
        let mut found: Vec<_> = self
            .by_session
            .get(&session)
            .into_iter()
            .flatten()
            .filter_map(|id| self.get(id).cloned())
            .collect();
        found.sort_by(|a, b| a.since.total_cmp(&b.since));
        found
    }

    /// Every Claude session, most recent hook first.
    pub fn all(&self) -> Vec<ClaudeActivity> {
        let mut all: Vec<_> = self.entries.values().map(|e| e.activity.clone()).collect();
        all.sort_by(|a, b| b.last_event_at.total_cmp(&a.last_event_at));
        all
    }

    /// Claude sessions by state.
    pub fn count_by_state(&self) -> HashMap<ActivityState, usize> {
        let mut counts = HashMap::new();
        for entry in self.entries.values() {
            *counts.entry(entry.activity.state).or_default() += 1;
        }
        counts
    }

    /// Takes one hook event of Claude session `id`, arrived at `at`, with what attribution
    /// found (kept only if stronger than the present one).
    pub fn observe(
        &mut self,
        id: &str,
        event: &HookEvent<'_>,
        cwd: Option<&str>,
        transcript_path: Option<&str>,
        found: Option<Attribution>,
        at: f64,
    ) -> Observed {
        let old = self.remove(id);
        let previous = old.as_ref().map(|e| e.activity.state);
        let mut entry = old.unwrap_or_else(|| Entry {
            stored_at: f64::NEG_INFINITY,
            rank: Rank::None,
            activity: ClaudeActivity {
                claude_session_id: id.to_owned(),
                session: None,
                agent: None,
                state: ActivityState::Idle,
                since: at,
                cwd: None,
                transcript_path: None,
                last_event: String::new(),
                last_event_at: at,
                error: None,
            },
        });
        let mut previous_session = None;
        if let Some(found) = found.filter(|found| found.rank > entry.rank) {
            let before = entry.activity.session;
            if before != Some(found.session) || previous.is_none() {
                previous_session = Some(before);
            }
            entry.rank = found.rank;
            entry.activity.session = Some(found.session);
            if found.agent.is_some() || before != Some(found.session) {
                entry.activity.agent = found.agent;
            }
        }
        let before = entry.activity.clone();
        let activity = &mut entry.activity;
        let after = next(previous, event).unwrap_or(activity.state);
        if previous != Some(after) {
            activity.since = at;
        }
        activity.state = after;
        activity.error = match after {
            ActivityState::Failed => event.error.clone().or(activity.error.take()),
            _ => None,
        };
        activity.last_event = event.name.to_owned();
        activity.last_event_at = at;
        if let Some(cwd) = cwd {
            activity.cwd = Some(cwd.to_owned());
        }
        if let Some(path) = transcript_path {
            activity.transcript_path = Some(path.to_owned());
        }
        let changed = previous.is_none()
            || before.state != activity.state
            || before.session != activity.session
            || before.agent != activity.agent
            || before.cwd != activity.cwd
            || before.transcript_path != activity.transcript_path
            || before.error != activity.error;
        let due = changed || at - entry.stored_at >= STORE_EVERY_SECONDS;
        if due {
            entry.stored_at = at;
        }
        let observed = Observed {
            activity: entry.activity.clone(),
            previous,
            previous_session,
            row: due.then(|| row_of(&entry)),
        };
        self.insert(entry);
        observed
    }

    /// The Claude sessions of `session`'s agent `agent` not yet ended.
    pub fn conversations_of(&self, session: Uuid, agent: &str) -> Vec<String> {
        self.agents_conversations(session, agent, |state| state != ActivityState::Ended)
    }

    /// The ended Claude sessions of `session`'s agent `agent`.
    pub fn ended_conversations_of(&self, session: Uuid, agent: &str) -> Vec<String> {
        self.agents_conversations(session, agent, |state| state == ActivityState::Ended)
    }

    fn agents_conversations(
        &self,
        session: Uuid,
        agent: &str,
        wanted: impl Fn(ActivityState) -> bool,
    ) -> Vec<String> {
        self.by_session
            .get(&session)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.entries.get(*id).is_some_and(|e| {
                    e.activity.agent.as_deref() == Some(agent) && wanted(e.activity.state)
                })
            })
            .cloned()
            .collect()
    }

    /// Marks Claude session `id` ended (its agent's process exited without a
    /// `SessionEnd`); `None` when it is unknown or already ended.
    pub fn end(&mut self, id: &str, at: f64) -> Option<Observed> {
        let entry = self.entries.get_mut(id)?;
        if entry.activity.state == ActivityState::Ended {
            return None;
        }
        let previous = Some(entry.activity.state);
        entry.activity.state = ActivityState::Ended;
        entry.activity.since = at;
        entry.activity.error = None;
        entry.stored_at = at;
        Some(Observed {
            activity: entry.activity.clone(),
            previous,
            previous_session: None,
            row: Some(row_of(entry)),
        })
    }

    /// Marks the ended Claude session `id` idle again: its agent's process runs again and
    /// resumes it (a resumed conversation waits for its prompt, as after `SessionStart`,
    /// which Claude Code does not post over `http`); `None` unless it was ended.
    pub fn resume(&mut self, id: &str, at: f64) -> Option<Observed> {
        let entry = self.entries.get_mut(id)?;
        if entry.activity.state != ActivityState::Ended {
            return None;
        }
        entry.activity.state = ActivityState::Idle;
        entry.activity.since = at;
        entry.stored_at = at;
        Some(Observed {
            activity: entry.activity.clone(),
            previous: Some(ActivityState::Ended),
            previous_session: None,
            row: Some(row_of(entry)),
        })
    }

    /// Forgets every Claude session of a purged session.
    pub fn forget_session(&mut self, session: Uuid) {
        for id in self.by_session.remove(&session).unwrap_or_default() {
            self.entries.remove(&id);
        }
    }

    fn insert(&mut self, entry: Entry) {
        let id = entry.activity.claude_session_id.clone();
        if let Some(session) = entry.activity.session {
            self.by_session
                .entry(session)
                .or_default()
                .insert(id.clone());
        }
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: &str) -> Option<Entry> {
        let entry = self.entries.remove(id)?;
        if let Some(session) = entry.activity.session {
            if let Some(ids) = self.by_session.get_mut(&session) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_session.remove(&session);
                }
            }
        }
        Some(entry)
    }
}

fn row_of(entry: &Entry) -> ClaudeRow {
    let a = &entry.activity;
    ClaudeRow {
        claude_session_id: a.claude_session_id.clone(),
        session_id: a.session,
        agent: a.agent.clone(),
        attributed_by: entry.rank as i64,
        state: a.state.as_str().to_owned(),
        since: a.since,
        cwd: a.cwd.clone(),
        transcript_path: a.transcript_path.clone(),
        last_event: a.last_event.clone(),
        last_event_at: a.last_event_at,
        error: a.error.clone(),
    }
}

#[cfg(test)]
mod tests;
