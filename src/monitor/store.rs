//! The `metrics` table (schema v3): one row per session per sample, and one per host sample
//! (`session_id` NULL). Every tick is one transaction through [`Storage::call`].
//!
//! The hook tables (schema v4): `hook_activity`, one row per session per hour of what its
//! hook events counted (totals are sums of its rows, trends group them by hour), and
//! `hook_names`, how often each tool, command word and file was used per session.

use std::sync::Arc;

use rusqlite::params;
use uuid::Uuid;

use crate::storage::{Storage, StorageError};

use super::activity::{Activity, Delta};
use super::sample::HostSample;
use super::trend::Hour;
use super::SessionSample;

/// What one tick stores.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    pub(crate) host: Option<HostSample>,
    pub(crate) sessions: Vec<Arc<SessionSample>>,
}

/// Stores a tick's samples in one transaction.
pub(crate) async fn insert(storage: &Storage, batch: Batch) -> Result<(), StorageError> {
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO metrics (session_id, at, cpu_percent, memory_mb, memory_percent,
                        disk_percent, agents_running, agents_total, restarts, errors, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                if let Some(host) = &batch.host {
                    insert.execute(params![
                        None::<String>,
                        host.at,
                        host.cpu_percent,
                        host.memory_used_mb,
                        host.memory_percent,
                        None::<f64>,
                        0,
                        0,
                        0,
                        0,
                        serde_json::to_string(host)?,
                    ])?;
                }
                for s in &batch.sessions {
                    insert.execute(params![
                        s.session_id.to_string(),
                        s.at,
                        s.cpu_percent,
                        s.memory_mb,
                        s.memory_percent,
                        s.disk_percent,
                        int(s.agents_running),
                        int(s.agents_total),
                        int(s.restarts),
                        int(s.errors),
                        serde_json::to_string(&s.agents)?,
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
}

/// A session's samples taken at or after `since`, oldest first.
pub(crate) async fn session_history(
    storage: &Storage,
    id: Uuid,
    since: f64,
) -> Result<Vec<SessionSample>, StorageError> {
    storage
        .call(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT at, cpu_percent, memory_mb, memory_percent, disk_percent,
                        agents_running, agents_total, restarts, errors, detail
                 FROM metrics WHERE session_id = ?1 AND at >= ?2 ORDER BY at, id",
            )?;
            let rows = select.query_map(params![id.to_string(), since], |row| {
                Ok((
                    SessionSample {
                        session_id: id,
                        at: row.get(0)?,
                        cpu_percent: row.get(1)?,
                        memory_mb: row.get(2)?,
                        memory_percent: row.get(3)?,
                        disk_percent: row.get(4)?,
                        agents_running: count(row.get(5)?),
                        agents_total: count(row.get(6)?),
                        restarts: count(row.get(7)?),
                        errors: count(row.get(8)?),
                        agents: Vec::new(),
                    },
                    row.get::<_, String>(9)?,
                ))
            })?;
            rows.map(|row| {
                let (mut sample, detail) = row?;
                sample.agents = serde_json::from_str(&detail)?;
                Ok(sample)
            })
            .collect()
        })
        .await
}

/// [`super::summarize`] of a session's samples taken at or after `since`, as of `now`,
/// aggregated by SQLite over the `(session_id, at)` index.
pub(crate) async fn session_summary(
    storage: &Storage,
    id: Uuid,
    since: f64,
    now: f64,
) -> Result<super::Summary, StorageError> {
    storage
        .call(move |conn| {
            let hour = now - 3600.0;
            let id = id.to_string();
            let mut figures = conn.prepare_cached(
                "SELECT COUNT(*),
                        COUNT(CASE WHEN at >= ?3 THEN 1 END),
                        AVG(CASE WHEN at >= ?3 THEN cpu_percent END),
                        AVG(CASE WHEN at >= ?3 THEN memory_mb END),
                        MAX(cpu_percent), MAX(memory_mb)
                 FROM metrics WHERE session_id = ?1 AND at >= ?2",
            )?;
            let mut summary = figures.query_row(params![id, since, hour], |row| {
                Ok(super::Summary {
                    total_data_points: count(row.get(0)?) as usize,
                    points_last_hour: count(row.get(1)?) as usize,
                    average_cpu_percent: row.get(2)?,
                    average_memory_mb: row.get(3)?,
                    peak_cpu_percent: row.get(4)?,
                    peak_memory_mb: row.get(5)?,
                    peak_agent_memory_mb: None,
                })
            })?;
            let mut agent_peak = conn.prepare_cached(
                "SELECT MAX(json_extract(agent.value, '$.memory_mb'))
                 FROM metrics, json_each(metrics.detail) AS agent
                 WHERE metrics.session_id = ?1 AND metrics.at >= ?2",
            )?;
            summary.peak_agent_memory_mb =
                agent_peak.query_row(params![id, since], |row| row.get(0))?;
            Ok(summary)
        })
        .await
}

/// A count as SQLite stores it (a signed 64-bit integer).
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Deletes every sample taken before `at`; returns how many.
pub(crate) async fn prune_before(storage: &Storage, at: f64) -> Result<usize, StorageError> {
    storage
        .call(move |conn| Ok(conn.execute("DELETE FROM metrics WHERE at < ?1", [at])?))
        .await
}

/// Thins the samples taken in `[from, until)` (both on minute boundaries) to one per session
/// (or host) per minute: the minute's last sample is kept, with the minute's mean CPU and
/// memory and its peak memory and disk percentages; the others are deleted. Returns how many
/// were deleted. A minute already thinned is left as it is.
pub(crate) async fn downsample(
    storage: &Storage,
    from: f64,
    until: f64,
) -> Result<usize, StorageError> {
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "CREATE TEMP TABLE IF NOT EXISTS minute_means (
                    keep INTEGER PRIMARY KEY, cpu REAL, memory REAL,
                    memory_percent REAL, disk_percent REAL)",
                [],
            )?;
            tx.execute("DELETE FROM temp.minute_means", [])?;
            tx.execute(
                "INSERT INTO temp.minute_means
                 SELECT max(id), avg(cpu_percent), avg(memory_mb), max(memory_percent),
                        max(disk_percent)
                 FROM metrics WHERE at >= ?1 AND at < ?2
                 GROUP BY session_id, CAST(at / 60 AS INTEGER) HAVING count(*) > 1",
                params![from, until],
            )?;
            tx.execute(
                "UPDATE metrics SET
                    cpu_percent = (SELECT cpu FROM temp.minute_means WHERE keep = metrics.id),
                    memory_mb = (SELECT memory FROM temp.minute_means WHERE keep = metrics.id),
                    memory_percent = (SELECT memory_percent FROM temp.minute_means
                                      WHERE keep = metrics.id),
                    disk_percent = (SELECT disk_percent FROM temp.minute_means
                                    WHERE keep = metrics.id)
                 WHERE id IN (SELECT keep FROM temp.minute_means)",
                [],
            )?;
            let deleted = tx.execute(
                "DELETE FROM metrics WHERE at >= ?1 AND at < ?2 AND id NOT IN (
                    SELECT max(id) FROM metrics WHERE at >= ?1 AND at < ?2
                    GROUP BY session_id, CAST(at / 60 AS INTEGER))",
                params![from, until],
            )?;
            tx.execute("DELETE FROM temp.minute_means", [])?;
            tx.commit()?;
            Ok(deleted)
        })
        .await
}

/// Adds one hook event's counts to its session's hour, and its names to the most-used lists.
pub(crate) async fn add_activity(
    storage: &Storage,
    session: Uuid,
    hour: i64,
    delta: Delta,
) -> Result<(), StorageError> {
    storage
        .call(move |conn| {
            let tx = conn.transaction()?;
            {
                let a = &delta.activity;
                tx.prepare_cached(
                    "INSERT INTO hook_activity (session_id, hour, tool_uses, commands_executed,
                        files_created, files_modified, files_deleted, errors, responses,
                        response_ms_total, response_ms_max)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (session_id, hour) DO UPDATE SET
                        tool_uses = tool_uses + excluded.tool_uses,
                        commands_executed = commands_executed + excluded.commands_executed,
                        files_created = files_created + excluded.files_created,
                        files_modified = files_modified + excluded.files_modified,
                        files_deleted = files_deleted + excluded.files_deleted,
                        errors = errors + excluded.errors,
                        responses = responses + excluded.responses,
                        response_ms_total = response_ms_total + excluded.response_ms_total,
                        response_ms_max = max(response_ms_max, excluded.response_ms_max)",
                )?
                .execute(params![
                    session.to_string(),
                    hour,
                    int(a.tool_uses),
                    int(a.commands_executed),
                    int(a.files_created),
                    int(a.files_modified),
                    int(a.files_deleted),
                    int(a.errors),
                    int(a.responses),
                    a.response_ms_total,
                    a.response_ms_max,
                ])?;
                let mut name = tx.prepare_cached(
                    "INSERT INTO hook_names (session_id, kind, name, uses) VALUES (?1, ?2, ?3, 1)
                     ON CONFLICT (session_id, kind, name) DO UPDATE SET uses = uses + 1",
                )?;
                let names = delta
                    .tool
                    .iter()
                    .map(|t| ("tool", t))
                    .chain(delta.commands.iter().map(|c| ("command", c)))
                    .chain(delta.files.iter().map(|f| ("file", f)));
                for (kind, value) in names {
                    name.execute(params![session.to_string(), kind, value])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
}

/// Every session's hook totals.
pub(crate) async fn activity_totals(
    storage: &Storage,
) -> Result<Vec<(Uuid, Activity)>, StorageError> {
    storage
        .call(|conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT session_id, {ACTIVITY_SUMS} FROM hook_activity GROUP BY session_id"
            ))?;
            let rows =
                select.query_map([], |row| Ok((row.get::<_, String>(0)?, activity(row, 1)?)))?;
            let mut totals = Vec::new();
            for row in rows {
                let (id, activity) = row?;
                if let Ok(id) = id.parse() {
                    totals.push((id, activity));
                }
            }
            Ok(totals)
        })
        .await
}

const ACTIVITY_SUMS: &str = "sum(tool_uses), sum(commands_executed), sum(files_created),
    sum(files_modified), sum(files_deleted), sum(errors), sum(responses),
    sum(response_ms_total), max(response_ms_max)";

fn activity(row: &rusqlite::Row<'_>, from: usize) -> rusqlite::Result<Activity> {
    let n = |i: usize| {
        row.get::<_, Option<i64>>(from + i)
            .map(|n| count(n.unwrap_or(0)))
    };
    Ok(Activity {
        tool_uses: n(0)?,
        commands_executed: n(1)?,
        files_created: n(2)?,
        files_modified: n(3)?,
        files_deleted: n(4)?,
        errors: n(5)?,
        responses: n(6)?,
        response_ms_total: row.get::<_, Option<f64>>(from + 7)?.unwrap_or(0.0),
        response_ms_max: row.get::<_, Option<f64>>(from + 8)?.unwrap_or(0.0),
    })
}

/// Every session's hook counts per hour from `since` (Unix seconds), oldest first.
pub(crate) async fn activity_by_hour(
    storage: &Storage,
    since: i64,
) -> Result<Vec<(i64, Activity)>, StorageError> {
    storage
        .call(move |conn| {
            let mut select = conn.prepare_cached(&format!(
                "SELECT hour, {ACTIVITY_SUMS} FROM hook_activity WHERE hour >= ?1
                 GROUP BY hour ORDER BY hour"
            ))?;
            let rows = select.query_map([since], |row| Ok((row.get(0)?, activity(row, 1)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

/// The `limit` most used names of `kind` (`tool`, `command`, `file`) over every session.
pub(crate) async fn most_used(
    storage: &Storage,
    kind: &'static str,
    limit: usize,
) -> Result<Vec<(String, u64)>, StorageError> {
    storage
        .call(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT name, sum(uses) AS n FROM hook_names WHERE kind = ?1
                 GROUP BY name ORDER BY n DESC, name LIMIT ?2",
            )?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = select.query_map(params![kind, limit], |row| {
                Ok((row.get(0)?, count(row.get(1)?)))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

/// Deletes a purged session's hook counts.
pub(crate) async fn forget_activity(storage: &Storage, session: Uuid) -> Result<(), StorageError> {
    storage
        .call(move |conn| {
            let id = session.to_string();
            conn.execute("DELETE FROM hook_activity WHERE session_id = ?1", [&id])?;
            conn.execute("DELETE FROM hook_names WHERE session_id = ?1", [&id])?;
            Ok(())
        })
        .await
}

/// The stored samples from `since` as trend hours: host means and the sum of every
/// session's agents per tick, each summed over the hour's ticks.
pub(crate) async fn trend_hours(storage: &Storage, since: f64) -> Result<Vec<Hour>, StorageError> {
    storage
        .call(move |conn| {
            let mut select = conn.prepare_cached(
                "SELECT CAST(at / 3600 AS INTEGER) * 3600 AS hour,
                        sum(CASE WHEN session_id IS NULL THEN 1 ELSE 0 END),
                        sum(CASE WHEN session_id IS NULL THEN cpu_percent ELSE 0 END),
                        sum(CASE WHEN session_id IS NULL THEN memory_percent ELSE 0 END),
                        sum(CASE WHEN session_id IS NULL THEN 0 ELSE cpu_percent END),
                        sum(CASE WHEN session_id IS NULL THEN 0 ELSE memory_mb END)
                 FROM metrics WHERE at >= ?1 GROUP BY hour ORDER BY hour",
            )?;
            let rows = select.query_map([since], |row| {
                Ok(Hour {
                    hour: row.get(0)?,
                    ticks: count(row.get(1)?),
                    host_cpu_percent: row.get(2)?,
                    host_memory_percent: row.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
                    agents_cpu_percent: row.get(4)?,
                    agents_memory_mb: row.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: Uuid, at: f64) -> Arc<SessionSample> {
        Arc::new(SessionSample {
            session_id: id,
            at,
            cpu_percent: 1.5,
            memory_mb: 10.0,
            memory_percent: Some(20.0),
            disk_percent: Some(50.0),
            agents_running: 1,
            agents_total: 2,
            restarts: 3,
            errors: 0,
            agents: Vec::new(),
        })
    }

    #[tokio::test]
    async fn samples_round_trip_and_retention_deletes_only_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let host = HostSample {
            at: 100.0,
            cpu_percent: 5.0,
            memory_used_mb: 1.0,
            memory_total_mb: 2.0,
            memory_percent: 50.0,
            load_average: [0.1, 0.2, 0.3],
        };
        insert(
            &storage,
            Batch {
                host: Some(host),
                sessions: vec![sample(a, 100.0), sample(b, 100.0)],
            },
        )
        .await
        .unwrap();
        for at in [200.0, 300.0] {
            let batch = Batch {
                host: None,
                sessions: vec![sample(a, at)],
            };
            insert(&storage, batch).await.unwrap();
        }
        let all = session_history(&storage, a, 0.0).await.unwrap();
        assert_eq!(
            all.iter().map(|s| s.at).collect::<Vec<_>>(),
            [100.0, 200.0, 300.0]
        );
        assert_eq!(all[0], *sample(a, 100.0));
        assert_eq!(session_history(&storage, a, 250.0).await.unwrap().len(), 1);

        // Host row, a's and b's first samples: older than 200.
        assert_eq!(prune_before(&storage, 200.0).await.unwrap(), 3);
        let left = session_history(&storage, a, 0.0).await.unwrap();
        assert_eq!(
            left.iter().map(|s| s.at).collect::<Vec<_>>(),
            [200.0, 300.0]
        );
        assert!(session_history(&storage, b, 0.0).await.unwrap().is_empty());
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn downsampling_keeps_one_mean_sample_per_minute() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let id = Uuid::new_v4();
        let point = |at: f64, cpu: f64, memory: f64| {
            let mut s = (*sample(id, at)).clone();
            s.cpu_percent = cpu;
            s.memory_mb = memory;
            Arc::new(s)
        };
        // Minute 0: three samples; minute 60: one; minute 120 (outside the range): two.
        let batch = Batch {
            host: None,
            sessions: vec![
                point(0.0, 10.0, 100.0),
                point(20.0, 20.0, 200.0),
                point(40.0, 60.0, 600.0),
                point(60.0, 5.0, 50.0),
                point(120.0, 1.0, 1.0),
                point(130.0, 3.0, 3.0),
            ],
        };
        insert(&storage, batch).await.unwrap();
        assert_eq!(downsample(&storage, 0.0, 120.0).await.unwrap(), 2);
        let left = session_history(&storage, id, 0.0).await.unwrap();
        let got: Vec<_> = left
            .iter()
            .map(|s| (s.at, s.cpu_percent, s.memory_mb))
            .collect();
        assert_eq!(
            got,
            [
                (40.0, 30.0, 300.0),
                (60.0, 5.0, 50.0),
                (120.0, 1.0, 1.0),
                (130.0, 3.0, 3.0)
            ]
        );
        // Thinned minutes stay as they are.
        assert_eq!(downsample(&storage, 0.0, 120.0).await.unwrap(), 0);
        assert_eq!(session_history(&storage, id, 0.0).await.unwrap(), left);
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn hook_activity_adds_up_per_session_and_hour() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let delta = |commands: u64, ms: f64, file: &str| Delta {
            activity: Activity {
                tool_uses: 1,
                commands_executed: commands,
                responses: 1,
                response_ms_total: ms,
                response_ms_max: ms,
                ..Activity::default()
            },
            tool: Some("Bash".into()),
            commands: vec!["cargo".into()],
            files: vec![file.into()],
        };
        add_activity(&storage, a, 3600, delta(1, 100.0, "x"))
            .await
            .unwrap();
        add_activity(&storage, a, 3600, delta(1, 300.0, "x"))
            .await
            .unwrap();
        add_activity(&storage, a, 7200, delta(0, 50.0, "y"))
            .await
            .unwrap();
        add_activity(&storage, b, 7200, delta(1, 10.0, "x"))
            .await
            .unwrap();
        let mut totals = activity_totals(&storage).await.unwrap();
        totals.sort_by_key(|(id, _)| *id != a);
        assert_eq!(totals[0].0, a);
        let ta = totals[0].1;
        assert_eq!(
            (ta.tool_uses, ta.commands_executed, ta.responses),
            (3, 2, 3)
        );
        assert_eq!((ta.response_ms_total, ta.response_ms_max), (450.0, 300.0));
        let hours = activity_by_hour(&storage, 7200).await.unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].0, hours[0].1.tool_uses), (7200, 2));
        assert_eq!(
            most_used(&storage, "file", 10).await.unwrap(),
            [("x".to_owned(), 3), ("y".to_owned(), 1)]
        );
        assert_eq!(
            most_used(&storage, "command", 1).await.unwrap(),
            [("cargo".to_owned(), 4)]
        );
        forget_activity(&storage, a).await.unwrap();
        let left = activity_totals(&storage).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].0, b);
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn trend_hours_split_host_and_agents() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        for at in [3600.0, 3700.0] {
            let host = HostSample {
                at,
                cpu_percent: 10.0,
                memory_used_mb: 1.0,
                memory_total_mb: 2.0,
                memory_percent: 50.0,
                load_average: [0.0; 3],
            };
            let batch = Batch {
                host: Some(host),
                sessions: vec![sample(Uuid::new_v4(), at), sample(Uuid::new_v4(), at)],
            };
            insert(&storage, batch).await.unwrap();
        }
        let hours = trend_hours(&storage, 0.0).await.unwrap();
        assert_eq!(hours.len(), 1);
        let h = hours[0];
        assert_eq!((h.hour, h.ticks), (3600, 2));
        assert_eq!(h.mean(h.host_cpu_percent), 10.0);
        assert_eq!(h.mean(h.host_memory_percent), 50.0);
        // Two sessions of 1.5 % and 10 MiB per tick.
        assert_eq!(h.mean(h.agents_cpu_percent), 3.0);
        assert_eq!(h.mean(h.agents_memory_mb), 20.0);
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_database_summary_is_the_summary_of_the_samples() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let agent = |name: &str, memory_mb: f64| super::super::AgentSample {
            name: name.into(),
            pid: 1,
            processes: 1,
            cpu_percent: 0.0,
            memory_mb,
            threads: 1,
            open_files: None,
        };
        // Two hours of samples, most outside the last hour, with varying figures.
        let now = 10_000.0;
        let mut kept = Vec::new();
        for n in 0..40 {
            let mut s = (*sample(a, now - 7200.0 + f64::from(n) * 180.0)).clone();
            s.cpu_percent = f64::from(n % 7) * 3.5;
            s.memory_mb = 100.0 + f64::from(n % 5) * 11.0;
            s.agents = vec![agent("x", f64::from(n)), agent("y", 30.0)];
            kept.push(s.clone());
            let batch = Batch {
                host: None,
                sessions: vec![Arc::new(s), sample(b, now)],
            };
            insert(&storage, batch).await.unwrap();
        }
        for since in [0.0, now - 3600.0, now - 600.0, now + 1.0] {
            let points: Vec<SessionSample> =
                kept.iter().filter(|p| p.at >= since).cloned().collect();
            let wanted = super::super::summarize(&points, now);
            let got = session_summary(&storage, a, since, now).await.unwrap();
            assert_eq!(got.total_data_points, wanted.total_data_points, "{since}");
            assert_eq!(got.points_last_hour, wanted.points_last_hour, "{since}");
            assert_eq!(got.peak_cpu_percent, wanted.peak_cpu_percent, "{since}");
            assert_eq!(got.peak_memory_mb, wanted.peak_memory_mb, "{since}");
            assert_eq!(
                got.peak_agent_memory_mb, wanted.peak_agent_memory_mb,
                "{since}"
            );
            for (g, w) in [
                (got.average_cpu_percent, wanted.average_cpu_percent),
                (got.average_memory_mb, wanted.average_memory_mb),
            ] {
                match (g, w) {
                    (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{since}: {g} vs {w}"),
                    (g, w) => assert_eq!(g, w, "{since}"),
                }
            }
        }
        storage.close().await.unwrap();
    }
}
