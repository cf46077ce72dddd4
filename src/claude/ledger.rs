//! The usage ledger behind a cloneable handle, written through to storage: every export is
//! counted and its changes stored in one transaction before it is acknowledged, so usage
//! survives a restart and an export the server failed to store is retried by its sender
//! without being counted twice (a failed write drops the in-memory ledger, which the next
//! call reloads from storage).

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use uuid::Uuid;

use super::usage::{ApiErrorEvent, Last, Ledger, Owner, Point, Report, Tokens, Totals};
use crate::storage::{Storage, StorageError, StoredUsage, UsageOwner, UsageSeries, UsageTotals};

/// The shared ledger.
#[derive(Clone)]
pub(crate) struct UsageLedger {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    /// `None` until first used (and after a failed write): loaded from storage then.
    ledger: Mutex<Option<Ledger>>,
}

impl std::fmt::Debug for UsageLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLedger").finish_non_exhaustive()
    }
}

impl UsageLedger {
    /// A ledger kept in `storage`; nothing is read until it is first used.
    pub(crate) fn new(storage: Storage) -> UsageLedger {
        UsageLedger {
            inner: Arc::new(Inner {
                storage,
                ledger: Mutex::new(None),
            }),
        }
    }

    /// Counts one export and stores what changed; returns how many datapoints were refused.
    pub(crate) async fn record(
        &self,
        points: &[Point],
        errors: &[ApiErrorEvent],
    ) -> Result<u64, StorageError> {
        let mut guard = self.loaded().await?;
        let Some(ledger) = guard.as_mut() else {
            return Err(StorageError::Closed);
        };
        let change = ledger.apply(points, errors);
        let rejected = change.rejected;
        if change.buckets.is_empty() && change.series.is_empty() {
            return Ok(rejected);
        }
        let stored = StoredUsage {
            buckets: change
                .buckets
                .into_iter()
                .map(|(owner, totals)| (stored_owner(owner), stored_totals(&totals)))
                .collect(),
            series: change
                .series
                .into_iter()
                .map(|(key, last)| UsageSeries {
                    key,
                    start: last.start,
                    value: last.value,
                })
                .collect(),
        };
        if let Err(error) = self.inner.storage.save_usage(stored).await {
            *guard = None;
            return Err(error);
        }
        Ok(rejected)
    }

    /// Our session's usage, attributing Claude sessions with `attribution`; `None` when no
    /// telemetry of it arrived.
    pub(crate) async fn report(
        &self,
        session: Uuid,
        attribution: impl Fn(&str) -> Option<(Uuid, Option<String>)>,
    ) -> Result<Option<Report>, StorageError> {
        let guard = self.loaded().await?;
        Ok(guard
            .as_ref()
            .and_then(|ledger| ledger.report(session, attribution)))
    }

    /// Everything counted (for /analytics and /metrics).
    pub(crate) async fn grand_total(&self) -> Result<Totals, StorageError> {
        let guard = self.loaded().await?;
        Ok(guard.as_ref().map(Ledger::grand_total).unwrap_or_default())
    }

    /// The ledger, loaded from storage if it is not in memory.
    async fn loaded(&self) -> Result<MutexGuard<'_, Option<Ledger>>, StorageError> {
        let mut guard = self.inner.ledger.lock().await;
        if guard.is_none() {
            let stored = self.inner.storage.load_usage().await?;
            *guard = Some(Ledger::restore(
                stored
                    .buckets
                    .into_iter()
                    .map(|(owner, totals)| (ledger_owner(owner), ledger_totals(totals))),
                stored.series.into_iter().map(|series| {
                    (
                        series.key,
                        Last {
                            start: series.start,
                            value: series.value,
                        },
                    )
                }),
            ));
        }
        Ok(guard)
    }
}

fn stored_owner(owner: Owner) -> UsageOwner {
    UsageOwner {
        claude_session: owner.claude_session,
        session: owner.session,
        agent: owner.agent,
        model: owner.model,
    }
}

fn ledger_owner(owner: UsageOwner) -> Owner {
    Owner {
        claude_session: owner.claude_session,
        session: owner.session,
        agent: owner.agent,
        model: owner.model,
    }
}

fn stored_totals(t: &Totals) -> UsageTotals {
    UsageTotals {
        cost_usd: t.cost_usd,
        input_tokens: t.tokens.input,
        output_tokens: t.tokens.output,
        cache_read_tokens: t.tokens.cache_read,
        cache_creation_tokens: t.tokens.cache_creation,
        lines_added: t.lines_added,
        lines_removed: t.lines_removed,
        commits: t.commits,
        pull_requests: t.pull_requests,
        active_time_seconds: t.active_time_seconds,
        api_errors: t.api_errors,
        last_api_error: t.last_api_error.clone(),
    }
}

fn ledger_totals(t: UsageTotals) -> Totals {
    Totals {
        cost_usd: t.cost_usd,
        tokens: Tokens {
            input: t.input_tokens,
            output: t.output_tokens,
            cache_read: t.cache_read_tokens,
            cache_creation: t.cache_creation_tokens,
        },
        lines_added: t.lines_added,
        lines_removed: t.lines_removed,
        commits: t.commits,
        pull_requests: t.pull_requests,
        active_time_seconds: t.active_time_seconds,
        api_errors: t.api_errors,
        last_api_error: t.last_api_error,
    }
}
