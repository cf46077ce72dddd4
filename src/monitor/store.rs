//! The monitor's side of its persistence: its samples, hook counts and trend hours turned
//! into storage's rows and back. The SQL is storage's (`storage/metrics.rs` for the
//! `metrics` table, `storage/hooks.rs` for the hook tables); nothing here knows the database.

use std::sync::Arc;

use uuid::Uuid;

use crate::storage::{
    AgentRow, HookCounts, HookCountsAdded, HookNameKind, HookNames, HostRow, SampleBatch,
    SessionSampleRow, Storage, StorageError,
};

use super::activity::{Activity, Delta};
use super::sample::HostSample;
use super::trend::Hour;
use super::{AgentSample, SessionSample, Summary};

/// What one tick stores.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    pub(crate) host: Option<HostSample>,
    /// Each session row with the samples it stands for.
    pub(crate) sessions: Vec<(Arc<SessionSample>, u64)>,
}

/// Stores a tick's samples in one transaction.
pub(crate) async fn insert(storage: &Storage, batch: Batch) -> Result<(), StorageError> {
    let rows = SampleBatch {
        host: batch.host.map(host_row),
        sessions: batch
            .sessions
            .iter()
            .map(|(s, ticks)| session_row(s, *ticks))
            .collect(),
    };
    storage.insert_samples(rows).await
}

/// A session's samples taken at or after `since`, oldest first.
pub(crate) async fn session_history(
    storage: &Storage,
    id: Uuid,
    since: f64,
) -> Result<Vec<SessionSample>, StorageError> {
    let rows = storage.session_samples(id, since).await?;
    Ok(rows.into_iter().map(session_sample).collect())
}

/// [`super::summarize`] of a session's samples taken at or after `since`, as of `now`,
/// aggregated by the database.
pub(crate) async fn session_summary(
    storage: &Storage,
    id: Uuid,
    since: f64,
    now: f64,
) -> Result<Summary, StorageError> {
    let figures = storage.sample_summary(id, since, now).await?;
    Ok(Summary {
        total_data_points: usize::try_from(figures.total).unwrap_or(usize::MAX),
        points_last_hour: usize::try_from(figures.last_hour).unwrap_or(usize::MAX),
        average_cpu_percent: figures.average_cpu_percent,
        average_memory_mb: figures.average_memory_mb,
        peak_cpu_percent: figures.peak_cpu_percent,
        peak_memory_mb: figures.peak_memory_mb,
        peak_agent_memory_mb: figures.peak_agent_memory_mb,
    })
}

/// Thins the samples taken in `[from, until)` to one per session (or host) per minute;
/// returns how many were deleted.
pub(crate) async fn downsample(
    storage: &Storage,
    from: f64,
    until: f64,
) -> Result<usize, StorageError> {
    storage.thin_samples(from, until).await
}

/// Adds many hook events' counts (each to its session's hour) and names in one storage
/// call, one transaction: how the hook counter stores a burst.
pub(crate) async fn add_activities(
    storage: &Storage,
    deltas: Vec<(Uuid, i64, Delta)>,
) -> Result<(), StorageError> {
    let added = deltas
        .into_iter()
        .map(|(session, hour, delta)| HookCountsAdded {
            session,
            hour,
            counts: counts(&delta.activity),
            names: HookNames {
                tool: delta.tool,
                commands: delta.commands,
                files: delta.files,
            },
        })
        .collect();
    storage.add_hook_counts_batch(added).await
}

/// Every session's hook totals.
pub(crate) async fn activity_totals(
    storage: &Storage,
) -> Result<Vec<(Uuid, Activity)>, StorageError> {
    let totals = storage.hook_totals().await?;
    Ok(totals
        .into_iter()
        .map(|(id, counts)| (id, activity(counts)))
        .collect())
}

/// Every session's hook counts per hour from `since` (Unix seconds), oldest first.
pub(crate) async fn activity_by_hour(
    storage: &Storage,
    since: i64,
) -> Result<Vec<(i64, Activity)>, StorageError> {
    let hours = storage.hook_counts_by_hour(since).await?;
    Ok(hours
        .into_iter()
        .map(|(hour, counts)| (hour, activity(counts)))
        .collect())
}

/// The `limit` most used names of `kind` over every session.
pub(crate) async fn most_used(
    storage: &Storage,
    kind: HookNameKind,
    limit: usize,
) -> Result<Vec<(String, u64)>, StorageError> {
    storage.most_used_hook_names(kind, limit).await
}

/// Deletes a purged session's hook counts.
pub(crate) async fn forget_activity(storage: &Storage, session: Uuid) -> Result<(), StorageError> {
    storage.forget_hook_counts(session).await
}

/// The stored samples from `since` as trend hours: host means and the sum of every
/// session's agents per tick, each summed over the hour's ticks.
pub(crate) async fn trend_hours(storage: &Storage, since: f64) -> Result<Vec<Hour>, StorageError> {
    let hours = storage.sample_hours(since).await?;
    Ok(hours
        .into_iter()
        .map(|h| Hour {
            hour: h.hour,
            ticks: h.ticks,
            host_cpu_percent: h.host_cpu_percent,
            host_memory_percent: h.host_memory_percent,
            agents_cpu_percent: h.agents_cpu_percent,
            agents_memory_mb: h.agents_memory_mb,
        })
        .collect())
}

fn host_row(h: HostSample) -> HostRow {
    HostRow {
        at: h.at,
        cpu_percent: h.cpu_percent,
        memory_used_mb: h.memory_used_mb,
        memory_total_mb: h.memory_total_mb,
        memory_percent: h.memory_percent,
        load_average: h.load_average,
    }
}

fn session_row(s: &SessionSample, ticks: u64) -> SessionSampleRow {
    SessionSampleRow {
        ticks,
        session_id: s.session_id,
        at: s.at,
        cpu_percent: s.cpu_percent,
        memory_mb: s.memory_mb,
        memory_percent: s.memory_percent,
        disk_percent: s.disk_percent,
        agents_running: s.agents_running,
        agents_total: s.agents_total,
        restarts: s.restarts,
        errors: s.errors,
        agents: s
            .agents
            .iter()
            .map(|a| AgentRow {
                name: a.name.clone(),
                pid: a.pid,
                processes: a.processes,
                cpu_percent: a.cpu_percent,
                memory_mb: a.memory_mb,
                threads: a.threads,
                open_files: a.open_files,
            })
            .collect(),
    }
}

fn session_sample(r: SessionSampleRow) -> SessionSample {
    SessionSample {
        session_id: r.session_id,
        at: r.at,
        cpu_percent: r.cpu_percent,
        memory_mb: r.memory_mb,
        memory_percent: r.memory_percent,
        disk_percent: r.disk_percent,
        agents_running: r.agents_running,
        agents_total: r.agents_total,
        restarts: r.restarts,
        errors: r.errors,
        agents: r
            .agents
            .into_iter()
            .map(|a| AgentSample {
                name: a.name,
                pid: a.pid,
                processes: a.processes,
                cpu_percent: a.cpu_percent,
                memory_mb: a.memory_mb,
                threads: a.threads,
                open_files: a.open_files,
            })
            .collect(),
    }
}

fn counts(a: &Activity) -> HookCounts {
    HookCounts {
        tool_uses: a.tool_uses,
        commands_executed: a.commands_executed,
        files_created: a.files_created,
        files_modified: a.files_modified,
        files_deleted: a.files_deleted,
        errors: a.errors,
        responses: a.responses,
        response_ms_total: a.response_ms_total,
        response_ms_max: a.response_ms_max,
    }
}

fn activity(c: HookCounts) -> Activity {
    Activity {
        tool_uses: c.tool_uses,
        commands_executed: c.commands_executed,
        files_created: c.files_created,
        files_modified: c.files_modified,
        files_deleted: c.files_deleted,
        errors: c.errors,
        responses: c.responses,
        response_ms_total: c.response_ms_total,
        response_ms_max: c.response_ms_max,
    }
}

#[cfg(test)]
mod tests {
    /// Rows standing for one sample each.
    fn rows(samples: Vec<Arc<SessionSample>>) -> Vec<(Arc<SessionSample>, u64)> {
        samples.into_iter().map(|s| (s, 1)).collect()
    }

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
    async fn a_row_standing_for_several_samples_weighs_as_many_in_the_summary_and_the_thinning() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let id = Uuid::new_v4();
        let now = 10_000.0;
        let point = |at: f64, cpu: f64| {
            let mut s = (*sample(id, at)).clone();
            s.cpu_percent = cpu;
            Arc::new(s)
        };
        // Nine unchanged samples stored as one row, then one sample that changed: what ten
        // rows of one sample each would say.
        let batch = Batch {
            host: None,
            sessions: vec![(point(now - 20.0, 10.0), 9), (point(now - 10.0, 100.0), 1)],
        };
        insert(&storage, batch).await.unwrap();
        let summary = session_summary(&storage, id, now - 3600.0, now)
            .await
            .unwrap();
        assert_eq!(summary.total_data_points, 10);
        assert_eq!(summary.points_last_hour, 10);
        assert!((summary.average_cpu_percent.unwrap() - 19.0).abs() < 1e-9);
        assert_eq!(summary.peak_cpu_percent, Some(100.0));
        // Thinned into one row a minute, the minute keeps both its mean and its count.
        let minute = (now / 60.0).floor() * 60.0;
        let (from, until) = if now - 20.0 >= minute {
            (minute, minute + 60.0)
        } else {
            (minute - 60.0, minute + 60.0)
        };
        downsample(&storage, from, until).await.unwrap();
        let summary = session_summary(&storage, id, now - 3600.0, now)
            .await
            .unwrap();
        assert_eq!(summary.total_data_points, 10);
        assert!((summary.average_cpu_percent.unwrap() - 19.0).abs() < 1e-9);
        let hours = storage.sample_hours(0.0).await.unwrap();
        assert!((hours[0].agents_cpu_percent - 190.0).abs() < 1e-9);
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
                sessions: rows(vec![sample(a, 100.0), sample(b, 100.0)]),
            },
        )
        .await
        .unwrap();
        for at in [200.0, 300.0] {
            let batch = Batch {
                host: None,
                sessions: rows(vec![sample(a, at)]),
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
        assert_eq!(storage.prune_samples_before(200.0).await.unwrap(), 3);
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
            sessions: rows(vec![
                point(0.0, 10.0, 100.0),
                point(20.0, 20.0, 200.0),
                point(40.0, 60.0, 600.0),
                point(60.0, 5.0, 50.0),
                point(120.0, 1.0, 1.0),
                point(130.0, 3.0, 3.0),
            ]),
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
        add_activities(&storage, vec![(a, 3600, delta(1, 100.0, "x"))])
            .await
            .unwrap();
        // A batch adds up as its events one by one would, the same hour twice included.
        let batch = vec![
            (a, 3600, delta(1, 300.0, "x")),
            (a, 7200, delta(0, 50.0, "y")),
            (b, 7200, delta(1, 10.0, "x")),
        ];
        add_activities(&storage, batch).await.unwrap();
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
            most_used(&storage, HookNameKind::File, 10).await.unwrap(),
            [("x".to_owned(), 3), ("y".to_owned(), 1)]
        );
        assert_eq!(
            most_used(&storage, HookNameKind::Command, 1).await.unwrap(),
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
                sessions: rows(vec![sample(Uuid::new_v4(), at), sample(Uuid::new_v4(), at)]),
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
        let agent = |name: &str, memory_mb: f64| AgentSample {
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
                sessions: rows(vec![Arc::new(s), sample(b, now)]),
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
