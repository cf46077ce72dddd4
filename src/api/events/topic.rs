//! What a client subscribes to: each event type belongs to one topic.

/// What a client subscribes to; each event type belongs to one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Topic {
    /// `session_*`, `context_changed`, `claude_*` and `events_lost`.
    Sessions,
    /// `agent_*`.
    Agents,
    /// `alert`, `alert_resolved`.
    Alerts,
    /// `metrics`.
    Metrics,
    /// `log`: agents' output lines (live only, never stored).
    Logs,
}

impl Topic {
    /// Every topic.
    pub(crate) const ALL: [Topic; 5] = [
        Topic::Sessions,
        Topic::Agents,
        Topic::Alerts,
        Topic::Metrics,
        Topic::Logs,
    ];

    /// What a new connection gets.
    pub(crate) const DEFAULT: [Topic; 3] = [Topic::Sessions, Topic::Agents, Topic::Alerts];

    /// The word clients use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Topic::Sessions => "sessions",
            Topic::Agents => "agents",
            Topic::Alerts => "alerts",
            Topic::Metrics => "metrics",
            Topic::Logs => "logs",
        }
    }

    /// The topic named `word`, if any.
    pub(crate) fn parse(word: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|topic| topic.as_str() == word)
    }

    /// The topic of an event type; `None` for a type this server does not know (a row
    /// written by a newer version), which no subscription selects.
    pub(crate) fn of_type(kind: &str) -> Option<Topic> {
        match kind {
            // The gap marker goes with `sessions`, in every default subscription: a client
            // must learn that its view may miss changes.
            "context_changed" | "events_lost" | "claude_activity" | "claude_hook" => {
                Some(Topic::Sessions)
            }
            "alert" | "alert_resolved" => Some(Topic::Alerts),
            "metrics" => Some(Topic::Metrics),
            "log" => Some(Topic::Logs),
            _ if kind.starts_with("session_") => Some(Topic::Sessions),
            _ if kind.starts_with("agent_") => Some(Topic::Agents),
            _ => None,
        }
    }
}
