//! The usage ledger behind a cloneable handle, written through to storage: every export is
//! counted and its changes stored in one transaction before it is acknowledged, so usage
//! survives a restart. Exports are counted one at a time (a write gate); readers never wait
//! for storage. A write that fails reloads the ledger from storage, so the export its
//! sender retries is not counted twice.

use std::sync::{Arc, Mutex, MutexGuard};

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
    ledger: Mutex<Ledger>,
    /// One export at a time from counting to storing.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for UsageLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLedger").finish_non_exhaustive()
    }
}

impl UsageLedger {
    /// The ledger as `storage` kept it.
    pub(crate) async fn load(storage: Storage) -> Result<UsageLedger, StorageError> {
        let ledger = restored(storage.load_usage().await?);
        Ok(UsageLedger {
            inner: Arc::new(Inner {
                storage,
                ledger: Mutex::new(ledger),
                writing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Counts one export and stores what changed; returns how many datapoints were refused.
    pub(crate) async fn record(
        &self,
        points: &[Point],
        errors: &[ApiErrorEvent],
    ) -> Result<u64, StorageError> {
        let _gate = self.inner.writing.lock().await;
        let change = self.ledger().apply(points, errors);
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
            // Back to what storage holds (if it can be read), so a retry counts once.
            if let Ok(kept) = self.inner.storage.load_usage().await {
                *self.ledger() = restored(kept);
            }
            return Err(error);
        }
        Ok(rejected)
    }

    /// Our session's usage, attributing Claude sessions with `attribution`; `None` when no
    /// telemetry of it arrived.
    pub(crate) fn report(
        &self,
        session: Uuid,
        attribution: impl Fn(&str) -> Option<(Uuid, Option<String>)>,
    ) -> Option<Report> {
        self.ledger().report(session, attribution)
    }

    /// One Claude session's usage (its `session.id`), for the tracker's entries.
    pub(crate) fn of_claude_session(&self, claude_session: &str) -> Option<Totals> {
        self.ledger().of_claude_session(claude_session)
    }

    /// Everything counted (for /analytics and /metrics).
    pub(crate) fn grand_total(&self) -> Totals {
        self.ledger().grand_total()
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is whole after any panic (every change is one `apply`).
        self.inner
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn restored(stored: StoredUsage) -> Ledger {
    Ledger::restore(
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
    )
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
