//! The `metrics` table (schema v3): one row per session per sample, and one per host sample
//! (`session_id` NULL), with the columns the summaries, trends and archive read plus a JSON
//! `detail` (the host's figures, or the session's agents). Every batch is one transaction.
//!
//! The rows in and out are this module's own types, so the monitor's persistence is a
//! backend-neutral surface: another database implements these methods over its own schema.
//! The `detail` JSON is the stored format (the summary reads each agent's `memory_mb` out of
//! it in SQL); it is no wire shape.

use rusqlite::{params, Connection, Row};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Storage, StorageError};

/// The host at one instant, as stored (its `detail` keeps every field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    /// Unix seconds.
    pub at: f64,
    /// All CPUs, 0–100.
    pub cpu_percent: f64,
    /// Memory in use, MiB.
    pub memory_used_mb: f64,
    /// Memory installed, MiB.
    pub memory_total_mb: f64,
    /// Memory in use, 0–100.
    pub memory_percent: f64,
    /// Load average over 1, 5 and 15 minutes.
    pub load_average: [f64; 3],
}

/// A session at one instant, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSampleRow {
    /// The session.
    pub session_id: Uuid,
    /// Unix seconds.
    pub at: f64,
    /// CPU of every agent's tree; 100 is one core busy.
    pub cpu_percent: f64,
    /// Resident memory of every agent's tree, MiB.
    pub memory_mb: f64,
    /// `memory_mb` as a percentage of the session's limit.
    pub memory_percent: Option<f64>,
    /// Use of the working directory's file system, percent.
    pub disk_percent: Option<f64>,
    /// Agents running.
    pub agents_running: u64,
    /// Agents configured.
    pub agents_total: u64,
    /// Restarts so far, all agents.
    pub restarts: u64,
    /// Agents failed.
    pub errors: u64,
    /// Each agent with a live process (the row's `detail`).
    pub agents: Vec<AgentRow>,
    /// Samples this row stands for (at least 1): the monitor stores an unchanged session
    /// only now and then, and the row then counts the samples of the same figures before it.
    pub ticks: u64,
}

/// One agent's process tree in a stored session sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRow {
    /// The agent.
    pub name: String,
    /// Its first process.
    pub pid: u32,
    /// Processes in its tree.
    pub processes: usize,
    /// CPU of the whole tree.
    pub cpu_percent: f64,
    /// Resident memory of the whole tree, MiB.
    pub memory_mb: f64,
    /// Threads of the whole tree.
    pub threads: u64,
    /// Open file descriptors of the whole tree, when known.
    pub open_files: Option<u64>,
}

/// What one sampling tick stores, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleBatch {
    /// The host's sample, if one was taken.
    pub host: Option<HostRow>,
    /// Every sampled session.
    pub sessions: Vec<SessionSampleRow>,
}

/// Figures of a session's stored samples, aggregated by the database.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SampleSummary {
    /// Samples in the window.
    pub total: u64,
    /// Samples in the last hour.
    pub last_hour: u64,
    /// Mean CPU over the last hour.
    pub average_cpu_percent: Option<f64>,
    /// Mean memory over the last hour.
    pub average_memory_mb: Option<f64>,
    /// Highest CPU in the window.
    pub peak_cpu_percent: Option<f64>,
    /// Highest memory in the window.
    pub peak_memory_mb: Option<f64>,
    /// Highest memory of one agent's tree in the window.
    pub peak_agent_memory_mb: Option<f64>,
}

/// One session's (or the host's) minute of samples: means and peaks.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleMinute {
    /// The session, `None` for the host.
    pub session_id: Option<String>,
    /// Unix seconds of the minute's start.
    pub minute: i64,
    /// Samples in it.
    pub samples: i64,
    /// Mean CPU.
    pub cpu_avg: f64,
    /// Highest CPU.
    pub cpu_max: f64,
    /// Mean memory, MiB.
    pub memory_avg: f64,
    /// Highest memory, MiB.
    pub memory_max: f64,
    /// Highest memory percentage.
    pub memory_percent_max: Option<f64>,
    /// Highest disk percentage.
    pub disk_percent_max: Option<f64>,
    /// Most agents running.
    pub agents_running_max: i64,
    /// Most restarts.
    pub restarts_max: i64,
    /// Most agents failed.
    pub errors_max: i64,
}

/// One hour of samples, summed over its ticks: the host's figures, and the sum of every
/// session's per tick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleHour {
    /// Unix seconds of the hour's start.
    pub hour: i64,
    /// Host samples in it.
    pub ticks: u64,
    /// Host CPU, summed.
    pub host_cpu_percent: f64,
    /// Host memory percent, summed.
    pub host_memory_percent: f64,
    /// Sessions' CPU, summed.
    pub agents_cpu_percent: f64,
    /// Sessions' memory, MiB, summed.
    pub agents_memory_mb: f64,
}

impl Storage {
    /// Stores a tick's samples in one transaction.
    pub async fn insert_samples(&self, batch: SampleBatch) -> Result<(), StorageError> {
        self.grouped(move |conn| insert(conn, &batch)).await
    }

    /// A session's samples taken at or after `since`, oldest first.
    pub async fn session_samples(
        &self,
        session: Uuid,
        since: f64,
    ) -> Result<Vec<SessionSampleRow>, StorageError> {
        self.call(move |conn| history(conn, session, since)).await
    }

    /// The figures of a session's samples taken at or after `since`, as of `now` (its last
    /// hour), aggregated over the `(session_id, at)` index: no sample is read out.
    pub async fn sample_summary(
        &self,
        session: Uuid,
        since: f64,
        now: f64,
    ) -> Result<SampleSummary, StorageError> {
        self.call(move |conn| summary(conn, session, since, now))
            .await
    }

    /// Deletes every sample taken before `at`; returns how many.
    pub async fn prune_samples_before(&self, at: f64) -> Result<usize, StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(move |conn| Ok(conn.execute("DELETE FROM metrics WHERE at < ?1", [at])?))
            .await
    }

    /// Thins the samples taken in `[from, until)` (both on minute boundaries) to one per
    /// session (or host) per minute: the minute's last sample is kept, with the minute's
    /// mean CPU and memory and its peak memory and disk percentages; the others are deleted.
    /// Returns how many were deleted. A minute already thinned is left as it is.
    pub async fn thin_samples(&self, from: f64, until: f64) -> Result<usize, StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(move |conn| thin(conn, from, until)).await
    }

    /// The samples taken before `before`, one line per session (or host) per minute,
    /// ordered by session and minute.
    pub async fn sample_minutes_before(
        &self,
        before: f64,
    ) -> Result<Vec<SampleMinute>, StorageError> {
        // Alone: a long job would hold up the commit of the jobs grouped before it.
        self.call(move |conn| minutes_before(conn, before)).await
    }

    /// The samples taken from `since`, summed per hour, oldest first.
    pub async fn sample_hours(&self, since: f64) -> Result<Vec<SampleHour>, StorageError> {
        self.call(move |conn| hours(conn, since)).await
    }
}

fn insert(conn: &mut Connection, batch: &SampleBatch) -> Result<(), StorageError> {
    let tx = conn.savepoint()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO metrics (session_id, at, cpu_percent, memory_mb, memory_percent,
                disk_percent, agents_running, agents_total, restarts, errors, detail, ticks)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
                1,
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
                int(s.ticks.max(1)),
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn history(conn: &Connection, id: Uuid, since: f64) -> Result<Vec<SessionSampleRow>, StorageError> {
    let mut select = conn.prepare_cached(
        "SELECT at, cpu_percent, memory_mb, memory_percent, disk_percent,
                agents_running, agents_total, restarts, errors, detail, ticks
         FROM metrics WHERE session_id = ?1 AND at >= ?2 ORDER BY at, id",
    )?;
    let rows = select.query_map(params![id.to_string(), since], |row| {
        Ok((
            SessionSampleRow {
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
                ticks: count(row.get(10)?),
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
}

fn summary(
    conn: &Connection,
    id: Uuid,
    since: f64,
    now: f64,
) -> Result<SampleSummary, StorageError> {
    let hour = now - 3600.0;
    let id = id.to_string();
    let mut figures = conn.prepare_cached(
        "SELECT COALESCE(SUM(ticks), 0),
                COALESCE(SUM(CASE WHEN at >= ?3 THEN ticks END), 0),
                SUM(CASE WHEN at >= ?3 THEN cpu_percent * ticks END)
                    / SUM(CASE WHEN at >= ?3 THEN ticks END),
                SUM(CASE WHEN at >= ?3 THEN memory_mb * ticks END)
                    / SUM(CASE WHEN at >= ?3 THEN ticks END),
                MAX(cpu_percent), MAX(memory_mb)
         FROM metrics WHERE session_id = ?1 AND at >= ?2",
    )?;
    let mut summary = figures.query_row(params![id, since, hour], |row| {
        Ok(SampleSummary {
            total: count(row.get(0)?),
            last_hour: count(row.get(1)?),
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
    summary.peak_agent_memory_mb = agent_peak.query_row(params![id, since], |row| row.get(0))?;
    Ok(summary)
}

fn thin(conn: &mut Connection, from: f64, until: f64) -> Result<usize, StorageError> {
    let tx = conn.savepoint()?;
    tx.execute(
        "CREATE TEMP TABLE IF NOT EXISTS minute_means (
            keep INTEGER PRIMARY KEY, cpu REAL, memory REAL,
            memory_percent REAL, disk_percent REAL, ticks INTEGER)",
        [],
    )?;
    tx.execute("DELETE FROM temp.minute_means", [])?;
    tx.execute(
        "INSERT INTO temp.minute_means
         SELECT max(id), sum(cpu_percent * ticks) / sum(ticks),
                sum(memory_mb * ticks) / sum(ticks), max(memory_percent),
                max(disk_percent), sum(ticks)
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
                            WHERE keep = metrics.id),
            ticks = (SELECT ticks FROM temp.minute_means WHERE keep = metrics.id)
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
}

fn minutes_before(conn: &Connection, before: f64) -> Result<Vec<SampleMinute>, StorageError> {
    let mut select = conn.prepare_cached(
        "SELECT session_id, CAST(at / 60 AS INTEGER) * 60 AS minute, sum(ticks),
                sum(cpu_percent * ticks) / sum(ticks), max(cpu_percent),
                sum(memory_mb * ticks) / sum(ticks), max(memory_mb),
                max(memory_percent), max(disk_percent), max(agents_running),
                max(restarts), max(errors)
         FROM metrics WHERE at < ?1
         GROUP BY session_id, minute ORDER BY session_id, minute",
    )?;
    let rows = select.query_map([before], minute)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

fn minute(row: &Row<'_>) -> rusqlite::Result<SampleMinute> {
    Ok(SampleMinute {
        session_id: row.get(0)?,
        minute: row.get(1)?,
        samples: row.get(2)?,
        cpu_avg: row.get(3)?,
        cpu_max: row.get(4)?,
        memory_avg: row.get(5)?,
        memory_max: row.get(6)?,
        memory_percent_max: row.get(7)?,
        disk_percent_max: row.get(8)?,
        agents_running_max: row.get(9)?,
        restarts_max: row.get(10)?,
        errors_max: row.get(11)?,
    })
}

fn hours(conn: &Connection, since: f64) -> Result<Vec<SampleHour>, StorageError> {
    let mut select = conn.prepare_cached(
        "SELECT CAST(at / 3600 AS INTEGER) * 3600 AS hour,
                sum(CASE WHEN session_id IS NULL THEN ticks ELSE 0 END),
                sum(CASE WHEN session_id IS NULL THEN cpu_percent * ticks ELSE 0 END),
                sum(CASE WHEN session_id IS NULL THEN memory_percent * ticks ELSE 0 END),
                sum(CASE WHEN session_id IS NULL THEN 0 ELSE cpu_percent * ticks END),
                sum(CASE WHEN session_id IS NULL THEN 0 ELSE memory_mb * ticks END)
         FROM metrics WHERE at >= ?1 GROUP BY hour ORDER BY hour",
    )?;
    let rows = select.query_map([since], |row| {
        Ok(SampleHour {
            hour: row.get(0)?,
            ticks: count(row.get(1)?),
            host_cpu_percent: row.get(2)?,
            host_memory_percent: row.get::<_, Option<f64>>(3)?.unwrap_or(0.0),
            agents_cpu_percent: row.get(4)?,
            agents_memory_mb: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A count as SQLite stores it (a signed 64-bit integer).
pub(super) fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count; a negative one (never written) reads as 0.
pub(super) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(at: f64) -> HostRow {
        HostRow {
            at,
            cpu_percent: 12.5,
            memory_used_mb: 512.0,
            memory_total_mb: 2048.0,
            memory_percent: 25.0,
            load_average: [0.5, 0.25, 0.125],
        }
    }

    fn session(id: Uuid, at: f64, agents: Vec<AgentRow>) -> SessionSampleRow {
        SessionSampleRow {
            ticks: 1,
            session_id: id,
            at,
            cpu_percent: 3.0,
            memory_mb: 64.0,
            memory_percent: Some(50.0),
            disk_percent: None,
            agents_running: 2,
            agents_total: 3,
            restarts: 4,
            errors: 1,
            agents,
        }
    }

    fn agent(name: &str, memory_mb: f64) -> AgentRow {
        AgentRow {
            name: name.into(),
            pid: 42,
            processes: 2,
            cpu_percent: 1.5,
            memory_mb,
            threads: 7,
            open_files: Some(9),
        }
    }

    #[tokio::test]
    async fn a_session_row_round_trips_and_the_host_row_keeps_its_figures_in_detail() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let id = Uuid::new_v4();
        let row = session(id, 100.0, vec![agent("a", 10.0), agent("b", 30.0)]);
        let batch = SampleBatch {
            host: Some(host(100.0)),
            sessions: vec![row.clone(), session(Uuid::new_v4(), 100.0, Vec::new())],
        };
        storage.insert_samples(batch).await.unwrap();
        assert_eq!(storage.session_samples(id, 0.0).await.unwrap(), [row]);
        assert!(storage.session_samples(id, 100.5).await.unwrap().is_empty());

        // The host's row: no session, its figures in the columns and every field in detail.
        let (session_id, memory_mb, detail) = storage
            .call(|conn| {
                Ok(conn.query_row(
                    "SELECT session_id, memory_mb, detail FROM metrics WHERE session_id IS NULL",
                    [],
                    |row| {
                        Ok((
                            row.get::<_, Option<String>>(0)?,
                            row.get::<_, f64>(1)?,
                            row.get::<_, String>(2)?,
                        ))
                    },
                )?)
            })
            .await
            .unwrap();
        assert_eq!((session_id, memory_mb), (None, 512.0));
        let detail: HostRow = serde_json::from_str(&detail).unwrap();
        assert_eq!(detail, host(100.0));

        // The summary reads each agent's memory out of the stored detail.
        let summary = storage.sample_summary(id, 0.0, 200.0).await.unwrap();
        assert_eq!((summary.total, summary.last_hour), (1, 1));
        assert_eq!(summary.peak_agent_memory_mb, Some(30.0));
        let hours = storage.sample_hours(0.0).await.unwrap();
        assert_eq!(hours.len(), 1);
        assert_eq!((hours[0].hour, hours[0].ticks), (0, 1));
        assert_eq!(hours[0].host_cpu_percent, 12.5);
        assert_eq!(hours[0].agents_memory_mb, 128.0);
        storage.close().await.unwrap();
    }

    #[tokio::test]
    async fn minutes_before_a_time_group_each_session_and_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let id = Uuid::new_v4();
        for at in [0.0, 30.0, 90.0] {
            let batch = SampleBatch {
                host: Some(host(at)),
                sessions: vec![session(id, at, Vec::new())],
            };
            storage.insert_samples(batch).await.unwrap();
        }
        let minutes = storage.sample_minutes_before(60.0).await.unwrap();
        let got: Vec<_> = minutes
            .iter()
            .map(|m| (m.session_id.clone(), m.minute, m.samples))
            .collect();
        assert_eq!(got, [(None, 0, 2), (Some(id.to_string()), 0, 2)]);
        assert_eq!(minutes[1].restarts_max, 4);
        assert_eq!(storage.prune_samples_before(60.0).await.unwrap(), 4);
        assert!(storage
            .sample_minutes_before(60.0)
            .await
            .unwrap()
            .is_empty());
        storage.close().await.unwrap();
    }
}
