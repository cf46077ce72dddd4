//! Disk use per file system, read without ever waiting: each session's working directory is
//! mapped once to its file system (one `stat`), and every `disk_interval_seconds` each file
//! system is read once (one `statvfs`), however many sessions work on it. Both run on the
//! blocking pool, and a tick only picks up the answers that are in: a directory on a hung
//! file system keeps one blocking thread and its own sessions' disk figure unknown, and
//! delays nobody — not the tick, not another file system.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::sample::disk_percent;

/// Directories mapped to their file system by one blocking job.
const MAP_AT_ONCE: usize = 256;

/// A file system's device number.
pub(super) type Device = u64;

/// A session's directory and its file system (`None`: the directory cannot be read).
pub(super) type Mapped = (Uuid, PathBuf, Option<Device>);

/// What the disk reader knows and is waiting for.
#[derive(Default)]
pub(super) struct Disks {
    /// Each file system: a directory on it, its last reading, the reading under way.
    systems: HashMap<Device, System>,
    /// Mappings under way: the sessions each job maps.
    mapping: Vec<JoinHandle<Vec<Mapped>>>,
    last_read: Option<Instant>,
}

struct System {
    /// A directory on it (the last one mapped there).
    path: PathBuf,
    percent: Option<f64>,
    reading: Option<Reading>,
    /// Never read yet: read at once, not at the next interval.
    fresh: bool,
}

struct Reading {
    job: JoinHandle<Option<f64>>,
    since: Instant,
    /// Told in the log that it has not answered.
    reported: bool,
}

impl Disks {
    /// Maps the working directories of `sessions` (new, or moved elsewhere) to their file
    /// systems, on the blocking pool; [`Disks::mapped`] picks up the answers.
    pub(super) fn map(&mut self, sessions: Vec<(Uuid, PathBuf)>) {
        let mut sessions = sessions.into_iter().peekable();
        while sessions.peek().is_some() {
            let chunk: Vec<(Uuid, PathBuf)> = sessions.by_ref().take(MAP_AT_ONCE).collect();
            self.mapping.push(tokio::task::spawn_blocking(move || {
                chunk
                    .into_iter()
                    .map(|(id, path)| {
                        let device = device_of(&path);
                        (id, path, device)
                    })
                    .collect()
            }));
        }
    }

    /// The mappings that are done. A file system seen for the first time is read at the
    /// next [`Disks::read`].
    pub(super) fn mapped(&mut self) -> Vec<Mapped> {
        let mut done = Vec::new();
        let mut waiting = Vec::new();
        for mut job in std::mem::take(&mut self.mapping) {
            match (&mut job).now_or_never() {
                Some(Ok(found)) => done.extend(found),
                Some(Err(error)) => {
                    tracing::warn!(%error, "mapping directories to file systems failed")
                }
                None => waiting.push(job),
            }
        }
        self.mapping = waiting;
        for (_, path, device) in &done {
            let Some(device) = device else {
                continue;
            };
            let system = self.systems.entry(*device).or_insert_with(|| System {
                path: path.clone(),
                percent: None,
                reading: None,
                fresh: true,
            });
            if system.percent.is_none() {
                // A directory that answers: read through it from now on.
                system.path = path.clone();
            }
        }
        done
    }

    /// Starts a reading of every file system without one under way, once per `every`; picks
    /// up the readings that are done, and returns the file systems whose use moved. File
    /// systems no session uses any more are dropped.
    pub(super) fn read(&mut self, every: Duration, used: impl Fn(Device) -> bool) -> Vec<Device> {
        let mut moved = Vec::new();
        for (device, system) in &mut self.systems {
            let Some(reading) = &mut system.reading else {
                continue;
            };
            match (&mut reading.job).now_or_never() {
                Some(result) => {
                    if reading.reported {
                        tracing::info!(device, path = %system.path.display(), "the file system answers again");
                    }
                    let percent = result.unwrap_or(None);
                    if percent != system.percent {
                        moved.push(*device);
                    }
                    system.percent = percent;
                    system.reading = None;
                }
                None if !reading.reported
                    && reading.since.elapsed() > every.max(Duration::from_secs(10)) =>
                {
                    reading.reported = true;
                    tracing::warn!(
                        device,
                        path = %system.path.display(),
                        "reading the file system's use has not answered for {:?}; its sessions' disk figure is left as it was",
                        reading.since.elapsed()
                    );
                }
                None => {}
            }
        }
        let due = self.last_read.is_none_or(|last| last.elapsed() >= every);
        if due {
            self.last_read = Some(Instant::now());
            self.systems
                .retain(|device, system| used(*device) || system.reading.is_some());
        }
        for system in self.systems.values_mut() {
            if system.reading.is_none() && (due || system.fresh) {
                system.fresh = false;
                let path = system.path.clone();
                system.reading = Some(Reading {
                    job: tokio::task::spawn_blocking(move || disk_percent(&path)),
                    since: Instant::now(),
                    reported: false,
                });
            }
        }
        moved
    }

    /// The last reading of a file system's use, percent.
    pub(super) fn percent(&self, device: Device) -> Option<f64> {
        self.systems.get(&device)?.percent
    }
}

fn device_of(path: &Path) -> Option<Device> {
    std::fs::metadata(path).ok().map(|m| m.dev())
}
