//! The `metrics` table (schema v3): one row per session per sample, and one per host sample
//! (`session_id` NULL). Every tick is one transaction through [`Storage::call`].

use std::sync::Arc;

use rusqlite::params;
use uuid::Uuid;

use crate::storage::{Storage, StorageError};

use super::sample::HostSample;
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
    async fn the_database_summary_is_the_summary_of_the_samples() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let agent = |name: &str, memory_mb: f64| super::super::sample::AgentSample {
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
