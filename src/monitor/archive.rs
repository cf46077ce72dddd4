//! Samples past retention are not simply lost: before they are deleted they are downsampled
//! to one line per session (or the host) per minute — the minute's mean and peak — and
//! written as gzip-compressed JSON lines under `<data_dir>/session_metrics/`, one file per
//! prune (`metrics-until-<unix seconds>.jsonl.gz`), written to a temporary name and renamed
//! once complete, so a reader never sees half a file.
//!
//! The lines are the archive file's own format (written here, read by people and tools),
//! neither the database's nor the wire's.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::json;

use crate::storage::{SampleMinute, Storage, StorageError};

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    /// Reading the samples or deleting them failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file could not be written.
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What one prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// The file written, if there was anything to archive.
    pub(crate) file: Option<PathBuf>,
    /// Lines in it.
    pub(crate) lines: usize,
    /// Samples deleted.
    pub(crate) deleted: usize,
}

/// Archives every sample taken before `before` into `dir`, then deletes them. When the
/// archive cannot be written the samples are deleted all the same (retention is a promise
/// about the database's size) and the error is returned for the log.
pub(crate) async fn archive_and_prune(
    storage: &Storage,
    dir: &Path,
    before: f64,
) -> Result<Pruned, ArchiveError> {
    let minutes = storage.sample_minutes_before(before).await?;
    let lines = minutes.len();
    let written = if minutes.is_empty() {
        Ok(None)
    } else {
        let path = dir.join(format!("metrics-until-{}.jsonl.gz", before.floor() as i64));
        let target = path.clone();
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || write(&dir, &target, &minutes))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map(|()| Some(path.clone()))
            .map_err(|source| ArchiveError::Write { path, source })
    };
    let deleted = storage.prune_samples_before(before).await?;
    let file = written?;
    Ok(Pruned {
        file,
        lines,
        deleted,
    })
}

fn write(dir: &Path, path: &Path, minutes: &[SampleMinute]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension("partial");
    let file = File::create(&partial)?;
    let mut gz = GzEncoder::new(BufWriter::new(file), Compression::default());
    for m in minutes {
        let line = json!({
            "session_id": m.session_id,
            "minute": m.minute,
            "samples": m.samples,
            "cpu_percent_avg": m.cpu_avg,
            "cpu_percent_max": m.cpu_max,
            "memory_mb_avg": m.memory_avg,
            "memory_mb_max": m.memory_max,
            "memory_percent_max": m.memory_percent_max,
            "disk_percent_max": m.disk_percent_max,
            "agents_running_max": m.agents_running_max,
            "agent_restarts": m.restarts_max,
            "errors": m.errors_max,
        });
        serde_json::to_writer(&mut gz, &line)?;
        gz.write_all(b"\n")?;
    }
    let file = gz.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;

    use flate2::read::GzDecoder;
    use uuid::Uuid;

    use super::*;
    use crate::monitor::store;
    use crate::monitor::SessionSample;

    fn sample(id: Uuid, at: f64, cpu: f64, memory: f64) -> Arc<SessionSample> {
        Arc::new(SessionSample {
            session_id: id,
            at,
            cpu_percent: cpu,
            memory_mb: memory,
            memory_percent: None,
            disk_percent: Some(40.0),
            agents_running: 2,
            agents_total: 2,
            restarts: 1,
            errors: 0,
            agents: Vec::new(),
        })
    }

    #[tokio::test]
    async fn old_samples_are_archived_per_minute_then_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).await.unwrap();
        let id = Uuid::new_v4();
        // Minute 0: two samples; minute 60: one; 150 and later: kept.
        let points = [
            (0.0, 10.0, 100.0),
            (30.0, 30.0, 300.0),
            (60.0, 5.0, 50.0),
            (150.0, 1.0, 1.0),
        ];
        let batch = store::Batch {
            host: None,
            sessions: points
                .iter()
                .map(|&(at, c, m)| (sample(id, at, c, m), 1))
                .collect(),
        };
        store::insert(&storage, batch).await.unwrap();
        let archive_dir = dir.path().join("session_metrics");

        let pruned = archive_and_prune(&storage, &archive_dir, 120.0)
            .await
            .unwrap();
        assert_eq!((pruned.lines, pruned.deleted), (2, 3));
        let file = pruned.file.unwrap();
        assert_eq!(file, archive_dir.join("metrics-until-120.jsonl.gz"));
        let mut text = String::new();
        GzDecoder::new(File::open(&file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["session_id"], id.to_string());
        assert_eq!(lines[0]["minute"], 0);
        assert_eq!(lines[0]["samples"], 2);
        assert_eq!(lines[0]["cpu_percent_avg"], 20.0);
        assert_eq!(lines[0]["memory_mb_max"], 300.0);
        assert_eq!(lines[1]["minute"], 60);
        let left = store::session_history(&storage, id, 0.0).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].at, 150.0);

        // Nothing old enough: no file.
        let again = archive_and_prune(&storage, &archive_dir, 120.0)
            .await
            .unwrap();
        assert_eq!(again, Pruned::default());
        storage.close().await.unwrap();
    }
}
