//! The usage ledger's tables (schema v7): `claude_usage`, one row per bucket of Claude Code
//! telemetry (Claude session id, our session and agent as the resource named them, model)
//! with its totals, and `claude_usage_series`, the last value of every cumulative series, so
//! a restarted server neither loses usage nor counts a cumulative series twice.
//!
//! Absent keys are stored as empty strings: SQLite's primary keys treat NULLs as distinct,
//! and a bucket must be one row.

use rusqlite::{params, Connection, Row};
use uuid::Uuid;

use super::metrics::{count, int};
use super::{Storage, StorageError};

/// Who reported a bucket's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageOwner {
    /// Claude Code's session id; empty when unknown.
    pub claude_session: String,
    /// Our session, when the resource named it.
    pub session: Option<Uuid>,
    /// Our agent, when the resource named it.
    pub agent: Option<String>,
    /// The model.
    pub model: Option<String>,
}

/// A bucket's totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UsageTotals {
    /// USD.
    pub cost_usd: f64,
    /// Input tokens.
    pub input_tokens: f64,
    /// Output tokens.
    pub output_tokens: f64,
    /// Cache read tokens.
    pub cache_read_tokens: f64,
    /// Cache creation tokens.
    pub cache_creation_tokens: f64,
    /// Lines added.
    pub lines_added: f64,
    /// Lines removed.
    pub lines_removed: f64,
    /// Commits.
    pub commits: f64,
    /// Pull requests.
    pub pull_requests: f64,
    /// Active seconds.
    pub active_time_seconds: f64,
    /// API errors.
    pub api_errors: u64,
    /// The last API error.
    pub last_api_error: Option<String>,
}

/// The last value of a cumulative series.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSeries {
    /// The series' key.
    pub key: String,
    /// Its start time, Unix nanoseconds.
    pub start: u64,
    /// Its last value.
    pub value: f64,
}

/// The whole ledger as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredUsage {
    /// Every bucket.
    pub buckets: Vec<(UsageOwner, UsageTotals)>,
    /// Every cumulative series.
    pub series: Vec<UsageSeries>,
}

impl Storage {
    /// Writes what one export changed, in one transaction: each bucket's new totals and
    /// each series' new last value replace the stored ones.
    pub async fn save_usage(&self, changed: StoredUsage) -> Result<(), StorageError> {
        self.grouped(move |conn| save(conn, &changed)).await
    }

    /// The whole ledger.
    pub async fn load_usage(&self) -> Result<StoredUsage, StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(load).await
    }
}

fn save(conn: &mut Connection, changed: &StoredUsage) -> Result<(), StorageError> {
    let tx = conn.savepoint()?;
    {
        let mut bucket = tx.prepare_cached(
            "INSERT INTO claude_usage (claude_session, session_id, agent, model, cost_usd,
                input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens,
                lines_added, lines_removed, commits, pull_requests, active_time_seconds,
                api_errors, last_api_error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                unixepoch('subsec'))
             ON CONFLICT (claude_session, session_id, agent, model) DO UPDATE SET
                cost_usd = excluded.cost_usd,
                input_tokens = excluded.input_tokens,
                output_tokens = excluded.output_tokens,
                cache_read_tokens = excluded.cache_read_tokens,
                cache_creation_tokens = excluded.cache_creation_tokens,
                lines_added = excluded.lines_added,
                lines_removed = excluded.lines_removed,
                commits = excluded.commits,
                pull_requests = excluded.pull_requests,
                active_time_seconds = excluded.active_time_seconds,
                api_errors = excluded.api_errors,
                last_api_error = excluded.last_api_error,
                updated_at = excluded.updated_at",
        )?;
        for (owner, t) in &changed.buckets {
            bucket.execute(params![
                owner.claude_session,
                owner.session.map(|id| id.to_string()).unwrap_or_default(),
                owner.agent.clone().unwrap_or_default(),
                owner.model.clone().unwrap_or_default(),
                t.cost_usd,
                t.input_tokens,
                t.output_tokens,
                t.cache_read_tokens,
                t.cache_creation_tokens,
                t.lines_added,
                t.lines_removed,
                t.commits,
                t.pull_requests,
                t.active_time_seconds,
                int(t.api_errors),
                t.last_api_error,
            ])?;
        }
        let mut series = tx.prepare_cached(
            "INSERT INTO claude_usage_series (key, start, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (key) DO UPDATE SET start = excluded.start, value = excluded.value",
        )?;
        for s in &changed.series {
            // Nanoseconds since 1970 fit an i64 until 2262; a sender's nonsense is kept as is.
            series.execute(params![s.key, s.start as i64, s.value])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn load(conn: &mut Connection) -> Result<StoredUsage, StorageError> {
    let mut usage = StoredUsage::default();
    let mut buckets = conn.prepare(
        "SELECT claude_session, session_id, agent, model, cost_usd, input_tokens,
            output_tokens, cache_read_tokens, cache_creation_tokens, lines_added,
            lines_removed, commits, pull_requests, active_time_seconds, api_errors,
            last_api_error
         FROM claude_usage",
    )?;
    let rows = buckets.query_map([], bucket)?;
    for row in rows {
        usage.buckets.push(row?);
    }
    let mut series = conn.prepare("SELECT key, start, value FROM claude_usage_series")?;
    let rows = series.query_map([], |row| {
        Ok(UsageSeries {
            key: row.get(0)?,
            start: row.get::<_, i64>(1)? as u64,
            value: row.get(2)?,
        })
    })?;
    for row in rows {
        usage.series.push(row?);
    }
    Ok(usage)
}

fn bucket(row: &Row<'_>) -> Result<(UsageOwner, UsageTotals), rusqlite::Error> {
    let text = |i: usize| -> Result<Option<String>, rusqlite::Error> {
        let value: String = row.get(i)?;
        Ok((!value.is_empty()).then_some(value))
    };
    let owner = UsageOwner {
        claude_session: row.get(0)?,
        // A row this module wrote holds a UUID or nothing; anything else is no session.
        session: text(1)?.and_then(|id| Uuid::parse_str(&id).ok()),
        agent: text(2)?,
        model: text(3)?,
    };
    let totals = UsageTotals {
        cost_usd: row.get(4)?,
        input_tokens: row.get(5)?,
        output_tokens: row.get(6)?,
        cache_read_tokens: row.get(7)?,
        cache_creation_tokens: row.get(8)?,
        lines_added: row.get(9)?,
        lines_removed: row.get(10)?,
        commits: row.get(11)?,
        pull_requests: row.get(12)?,
        active_time_seconds: row.get(13)?,
        api_errors: count(row.get(14)?),
        last_api_error: row.get(15)?,
    };
    Ok((owner, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn usage_survives_a_reopen_and_a_save_replaces_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let storage = Storage::open(&path).await.unwrap();
        let owner = UsageOwner {
            claude_session: "c1".into(),
            session: Some(Uuid::from_u128(7)),
            agent: None,
            model: Some("m".into()),
        };
        let mut totals = UsageTotals {
            cost_usd: 1.5,
            api_errors: 2,
            last_api_error: Some("overloaded".into()),
            ..UsageTotals::default()
        };
        let series = UsageSeries {
            key: "k".into(),
            start: 1_765_130_000_000_000_000,
            value: 3.0,
        };
        storage
            .save_usage(StoredUsage {
                buckets: vec![(owner.clone(), totals.clone())],
                series: vec![series.clone()],
            })
            .await
            .unwrap();
        totals.cost_usd = 2.0;
        storage
            .save_usage(StoredUsage {
                buckets: vec![(owner.clone(), totals.clone())],
                series: vec![],
            })
            .await
            .unwrap();
        storage.close().await.unwrap();
        let storage = Storage::open(&path).await.unwrap();
        let loaded = storage.load_usage().await.unwrap();
        assert_eq!(loaded.buckets, vec![(owner, totals)]);
        assert_eq!(loaded.series, vec![series]);
    }
}
