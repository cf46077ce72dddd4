//! What a Claude agent's environment adds so that its Claude Code reports to us: the token
//! its `http` hooks send (`SESSION_MANAGER_TOKEN`), and Claude Code's OpenTelemetry export
//! (its monitoring documentation's variables) pointed at our OTLP receiver, with resource
//! attributes naming our session, the agent and the git branch — Claude Code's own
//! telemetry carries no repository or worktree label, so every datapoint is attributed by
//! these. OTLP/JSON: the receiver takes both encodings, and JSON is what the fake CLI of the
//! tests speaks.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// How often Claude Code exports: often enough for a cost that moves while one watches
/// (its defaults are 60 s for metrics, 5 s for logs).
const METRIC_EXPORT_INTERVAL_MS: &str = "10000";
const LOGS_EXPORT_INTERVAL_MS: &str = "5000";

/// What `OTEL_RESOURCE_ATTRIBUTES` values must escape (W3C Baggage octets, as the OTel SDK
/// environment specification requires): separators, spaces, quotes, `%`, non-ASCII.
const VALUE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'=')
    .add(b'\\')
    .add(b'%');

/// Who the telemetry is from and where it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Telemetry<'a> {
    /// `SESSION_MANAGER_URL`.
    pub(crate) server_url: &'a str,
    /// The server's bearer token, when it has one.
    pub(crate) token: Option<&'a str>,
    /// Our session.
    pub(crate) session_id: &'a str,
    /// The agent.
    pub(crate) agent: &'a str,
    /// The git branch of the session's working directory, when known.
    pub(crate) branch: Option<&'a str>,
}

/// The variables, in order; the caller sets them over the agent's own.
pub(crate) fn environment(t: Telemetry<'_>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CLAUDE_CODE_ENABLE_TELEMETRY", "1".to_owned()),
        ("OTEL_METRICS_EXPORTER", "otlp".to_owned()),
        ("OTEL_LOGS_EXPORTER", "otlp".to_owned()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", t.server_url.to_owned()),
        (
            "OTEL_METRIC_EXPORT_INTERVAL",
            METRIC_EXPORT_INTERVAL_MS.to_owned(),
        ),
        (
            "OTEL_LOGS_EXPORT_INTERVAL",
            LOGS_EXPORT_INTERVAL_MS.to_owned(),
        ),
    ];
    let mut attributes = vec![
        format!("session_manager.session_id={}", encoded(t.session_id)),
        format!("session_manager.agent={}", encoded(t.agent)),
    ];
    if let Some(branch) = t.branch.filter(|b| !b.is_empty()) {
        attributes.push(format!("vcs.branch={}", encoded(branch)));
    }
    env.push(("OTEL_RESOURCE_ATTRIBUTES", attributes.join(",")));
    if let Some(token) = t.token.filter(|token| !token.is_empty()) {
        env.push(("SESSION_MANAGER_TOKEN", token.to_owned()));
        // The header list is itself `key=value,…` with percent-encoded values.
        env.push((
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("Authorization={}", encoded(&format!("Bearer {token}"))),
        ));
    }
    env
}

fn encoded(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(env: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
        env.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }

    #[test]
    fn the_export_points_at_the_server_and_names_the_session_agent_and_branch() {
        let env = environment(Telemetry {
            server_url: "http://127.0.0.1:8765",
            token: Some("s3cret"),
            session_id: "6f1c1a52-3f5e-4b7e-9d43-0f0e6a4f2b11",
            agent: "coder",
            branch: Some("feature/a,b=c"),
        });
        assert_eq!(value(&env, "CLAUDE_CODE_ENABLE_TELEMETRY"), Some("1"));
        assert_eq!(
            value(&env, "OTEL_EXPORTER_OTLP_ENDPOINT"),
            Some("http://127.0.0.1:8765")
        );
        assert_eq!(
            value(&env, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            Some("http/json")
        );
        assert_eq!(
            value(&env, "OTEL_RESOURCE_ATTRIBUTES"),
            Some(
                "session_manager.session_id=6f1c1a52-3f5e-4b7e-9d43-0f0e6a4f2b11,\
                 session_manager.agent=coder,vcs.branch=feature/a%2Cb%3Dc"
            )
        );
        assert_eq!(value(&env, "SESSION_MANAGER_TOKEN"), Some("s3cret"));
        assert_eq!(
            value(&env, "OTEL_EXPORTER_OTLP_HEADERS"),
            Some("Authorization=Bearer%20s3cret")
        );
    }

    #[test]
    fn without_a_token_or_branch_nothing_of_them_is_set() {
        let env = environment(Telemetry {
            server_url: "http://127.0.0.1:1",
            token: None,
            session_id: "s",
            agent: "a",
            branch: None,
        });
        assert_eq!(value(&env, "SESSION_MANAGER_TOKEN"), None);
        assert_eq!(value(&env, "OTEL_EXPORTER_OTLP_HEADERS"), None);
        assert_eq!(
            value(&env, "OTEL_RESOURCE_ATTRIBUTES"),
            Some("session_manager.session_id=s,session_manager.agent=a")
        );
    }
}
