//! `GET /api/claude/sessions/{id}/usage`: what a session's Claude Code sessions cost and
//! did, from their OpenTelemetry (`source: "otel"`), else from their transcripts
//! (`source: "transcript"`), else nothing known (`source: null`, every figure 0).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::sessions::{ok, session_id, Answer};
use super::ApiContext;
use crate::claude::transcript::{self, TranscriptUsage};
use crate::claude::usage::{Report, Tokens, Totals};
use crate::session::SessionView;

/// Token counts.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub(crate) struct TokensObject {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl From<&Tokens> for TokensObject {
    fn from(tokens: &Tokens) -> Self {
        TokensObject {
            input: whole(tokens.input),
            output: whole(tokens.output),
            cache_read: whole(tokens.cache_read),
            cache_creation: whole(tokens.cache_creation),
        }
    }
}

/// Cost and tokens of one model or agent.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(crate) struct CostObject {
    cost_usd: f64,
    tokens: TokensObject,
}

impl From<&Totals> for CostObject {
    fn from(totals: &Totals) -> Self {
        CostObject {
            cost_usd: totals.cost_usd,
            tokens: TokensObject::from(&totals.tokens),
        }
    }
}

/// Lines of code changed.
#[derive(Debug, Clone, Copy, Default, Serialize, ToSchema)]
pub(crate) struct LinesObject {
    added: u64,
    removed: u64,
}

/// Everything Claude Code's telemetry counted, over every session (`/analytics`' `claude`).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(crate) struct ClaudeTotals {
    cost_usd: f64,
    tokens: TokensObject,
    lines_of_code: LinesObject,
    commits: u64,
    pull_requests: u64,
    active_time_seconds: f64,
    api_errors: u64,
}

impl From<&Totals> for ClaudeTotals {
    fn from(total: &Totals) -> Self {
        ClaudeTotals {
            cost_usd: total.cost_usd,
            tokens: TokensObject::from(&total.tokens),
            lines_of_code: LinesObject {
                added: whole(total.lines_added),
                removed: whole(total.lines_removed),
            },
            commits: whole(total.commits),
            pull_requests: whole(total.pull_requests),
            active_time_seconds: total.active_time_seconds,
            api_errors: total.api_errors,
        }
    }
}

/// Everything counted, for /analytics and /metrics.
pub(crate) fn totals(ctx: &ApiContext) -> Totals {
    ctx.claude.usage().grand_total()
}

/// A session's usage.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(crate) struct UsagePayload {
    session_id: String,
    /// USD, as Claude Code estimates it (0 from transcripts that carry no cost).
    cost_usd: f64,
    tokens: TokensObject,
    by_model: BTreeMap<String, CostObject>,
    by_agent: BTreeMap<String, CostObject>,
    lines_of_code: LinesObject,
    commits: u64,
    pull_requests: u64,
    active_time_seconds: f64,
    api_errors: u64,
    last_api_error: Option<String>,
    /// The session's `cost_budget_usd`.
    budget_usd: Option<f64>,
    /// `otel`, `transcript`, or null when neither told anything.
    #[schema(value_type = Option<String>)]
    source: Option<&'static str>,
    /// The Claude session ids the figures come from.
    claude_sessions: Vec<String>,
}

pub(crate) async fn get(ctx: ApiContext, id: String) -> Answer {
    let view = ctx.sessions.get(session_id(&id)?).await?;
    ok(&usage_of(&ctx, &view).await?)
}

/// The usage of a session (also for the dashboard's session page through this route).
pub(crate) async fn usage_of(
    ctx: &ApiContext,
    view: &SessionView,
) -> Result<UsagePayload, super::errors::ApiError> {
    let record = &view.record;
    let ours = |claude: &str| attribution(view, claude).or_else(|| ctx.claude.attribution(claude));
    let report = ctx.claude.usage().report(record.id, ours);
    let mut payload = match report {
        Some(report) => from_report(&report),
        None => from_transcripts(view).await,
    };
    payload.session_id = record.id.to_string();
    payload.budget_usd = record.configuration.cost_budget_usd;
    Ok(payload)
}

/// Raises or resolves the session's `cost_budget` alerts for what its Claude Code cost.
pub(crate) fn check_budget(ctx: &ApiContext, view: &SessionView) {
    let record = &view.record;
    let budget = record.configuration.cost_budget_usd;
    let ours = |claude: &str| attribution(view, claude).or_else(|| ctx.claude.attribution(claude));
    let cost = ctx
        .claude
        .usage()
        .report(record.id, ours)
        .map_or(0.0, |report| report.total.cost_usd);
    ctx.claude.check_budget(record.id, budget, cost);
}

/// After an export: checks the budgets of the sessions its datapoints belong to.
pub(crate) async fn check_budgets(ctx: &ApiContext, sessions: impl IntoIterator<Item = Uuid>) {
    for session in sessions {
        // A session gone since is nobody's budget.
        if let Ok(view) = ctx.sessions.get(session).await {
            check_budget(ctx, &view);
        }
    }
}

/// Which of our sessions a Claude session id belongs to: one of this session's Claude
/// agents' conversations first (the agent is known even before its first hook), then the
/// hooks' mapping.
fn attribution(view: &SessionView, claude: &str) -> Option<(Uuid, Option<String>)> {
    let record = &view.record;
    record
        .claude_sessions
        .iter()
        .find(|(_, id)| id.to_string() == claude)
        .map(|(agent, _)| (record.id, Some(agent.clone())))
}

fn from_report(report: &Report) -> UsagePayload {
    let total = &report.total;
    UsagePayload {
        cost_usd: total.cost_usd,
        tokens: TokensObject::from(&total.tokens),
        by_model: report
            .by_model
            .iter()
            .map(|(model, totals)| (model.clone(), CostObject::from(totals)))
            .collect(),
        by_agent: report
            .by_agent
            .iter()
            .map(|(agent, totals)| (agent.clone(), CostObject::from(totals)))
            .collect(),
        lines_of_code: LinesObject {
            added: whole(total.lines_added),
            removed: whole(total.lines_removed),
        },
        commits: whole(total.commits),
        pull_requests: whole(total.pull_requests),
        active_time_seconds: total.active_time_seconds,
        api_errors: total.api_errors,
        last_api_error: total.last_api_error.clone(),
        source: Some("otel"),
        claude_sessions: report.claude_sessions.clone(),
        ..UsagePayload::default()
    }
}

/// Usage from the transcripts of the session's Claude agents, read on the blocking pool.
async fn from_transcripts(view: &SessionView) -> UsagePayload {
    let files = transcripts(view);
    if files.is_empty() {
        return UsagePayload::default();
    }
    let read = tokio::task::spawn_blocking(move || {
        let mut by_agent: BTreeMap<String, TranscriptUsage> = BTreeMap::new();
        let mut sessions = Vec::new();
        for (agent, claude, path) in files {
            match transcript::read(&path) {
                Ok(usage) => {
                    by_agent.entry(agent).or_default().add(usage);
                    sessions.push(claude);
                }
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "transcript not read");
                }
            }
        }
        (by_agent, sessions)
    })
    .await;
    let Ok((by_agent, claude_sessions)) = read else {
        return UsagePayload::default();
    };
    if claude_sessions.is_empty() {
        return UsagePayload::default();
    }
    let mut all = TranscriptUsage::default();
    let mut agents = BTreeMap::new();
    for (agent, usage) in by_agent {
        agents.insert(agent, cost_of(&usage));
        all.add(usage);
    }
    let total = cost_of(&all);
    UsagePayload {
        cost_usd: total.cost_usd,
        tokens: total.tokens,
        by_model: all
            .by_model
            .iter()
            .map(|(model, tokens)| {
                (
                    model.clone(),
                    CostObject {
                        cost_usd: 0.0,
                        tokens: TokensObject::from(tokens),
                    },
                )
            })
            .collect(),
        by_agent: agents,
        source: Some("transcript"),
        claude_sessions,
        ..UsagePayload::default()
    }
}

fn cost_of(usage: &TranscriptUsage) -> CostObject {
    let mut tokens = Tokens::default();
    for t in usage.by_model.values() {
        tokens.input += t.input;
        tokens.output += t.output;
        tokens.cache_read += t.cache_read;
        tokens.cache_creation += t.cache_creation;
    }
    CostObject {
        cost_usd: usage.cost_usd,
        tokens: TokensObject::from(&tokens),
    }
}

/// The transcript files of the session's Claude agents: (agent, Claude session id, path).
fn transcripts(view: &SessionView) -> Vec<(String, String, PathBuf)> {
    let record = &view.record;
    let config = &record.configuration;
    let working_dir = Path::new(&config.working_directory);
    record
        .claude_sessions
        .iter()
        .filter_map(|(agent, id)| {
            let mut env: Vec<(String, String)> = config
                .environment_variables
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(own) = config.agents.iter().find(|a| &a.name == agent) {
                env.extend(own.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            let path = crate::agent::transcript_path(*id, working_dir, &env)?;
            Some((agent.clone(), id.to_string(), path))
        })
        .collect()
}

/// A count as a whole number (telemetry sends counts as doubles).
fn whole(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}
