//! Reading the world: the host (sysinfo), each agent's process tree (the tree from `/proc`,
//! CPU and memory of exactly those PIDs from sysinfo) and a working directory's file system
//! (statvfs). Blocking calls; the monitor runs them off the async workers.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::agent::process_tree;

const MIB: f64 = 1024.0 * 1024.0;

/// The host at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
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

/// One agent's process tree at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSample {
    /// The agent.
    pub name: String,
    /// Its first process.
    pub pid: u32,
    /// Processes in its tree.
    pub processes: usize,
    /// CPU of the whole tree; 100 is one core busy.
    pub cpu_percent: f64,
    /// Resident memory of the whole tree, MiB.
    pub memory_mb: f64,
    /// Threads of the whole tree.
    pub threads: u64,
    /// Open file descriptors of the whole tree, where `/proc` shows them.
    pub open_files: Option<u64>,
}

/// Keeps what CPU percentages need between two samples (the previous CPU times).
pub(crate) struct Sampler {
    system: System,
    /// PIDs refreshed last time: asked again so the dead ones are dropped from `system`.
    last_pids: HashSet<Pid>,
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        let mut system = System::new();
        // The first CPU reading is a baseline; usage is the difference to the next one.
        system.refresh_cpu_usage();
        Sampler {
            system,
            last_pids: HashSet::new(),
        }
    }

    /// The host now.
    pub(crate) fn host(&mut self, at: f64) -> HostSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let total = self.system.total_memory() as f64 / MIB;
        let used = self.system.used_memory() as f64 / MIB;
        let load = System::load_average();
        HostSample {
            at,
            cpu_percent: f64::from(self.system.global_cpu_usage()),
            memory_used_mb: used,
            memory_total_mb: total,
            memory_percent: if total > 0.0 {
                used / total * 100.0
            } else {
                0.0
            },
            load_average: [load.one, load.five, load.fifteen],
        }
    }

    /// Each agent's tree, given `(name, first pid)`, in the same order; `None` where the
    /// process is gone. Only these trees' PIDs are refreshed, never the whole process table.
    pub(crate) fn agents(&mut self, agents: &[(String, u32)]) -> Vec<Option<AgentSample>> {
        let trees: Vec<Option<(&str, u32, Vec<u32>)>> = agents
            .iter()
            .map(|(name, pid)| Some((name.as_str(), *pid, process_tree(*pid)?)))
            .collect();
        let now: HashSet<Pid> = trees
            .iter()
            .flatten()
            .flat_map(|(_, _, pids)| pids.iter().map(|&p| Pid::from_u32(p)))
            .collect();
        let asked: Vec<Pid> = now.union(&self.last_pids).copied().collect();
        self.system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&asked),
            true,
            ProcessRefreshKind::nothing().with_cpu().with_memory(),
        );
        self.last_pids = now;
        trees
            .into_iter()
            .map(|tree| {
                let (name, pid, pids) = tree?;
                let mut sample = AgentSample {
                    name: name.to_owned(),
                    pid,
                    processes: pids.len(),
                    cpu_percent: 0.0,
                    memory_mb: 0.0,
                    threads: 0,
                    open_files: Some(0),
                };
                for member in pids {
                    if let Some(process) = self.system.process(Pid::from_u32(member)) {
                        sample.cpu_percent += f64::from(process.cpu_usage());
                        sample.memory_mb += process.memory() as f64 / MIB;
                    }
                    sample.threads += threads(member).unwrap_or(0);
                    sample.open_files = match (sample.open_files, open_files(member)) {
                        (Some(sum), Some(n)) => Some(sum + n),
                        _ => None,
                    };
                }
                Some(sample)
            })
            .collect()
    }
}

/// Percentage of the file system holding `path` in use, as `df` counts it (blocks reserved
/// for root are neither used nor available).
pub(crate) fn disk_percent(path: &Path) -> Option<f64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let usable = used + stat.f_bavail;
    (usable > 0).then(|| used as f64 / usable as f64 * 100.0)
}

/// Field 20 of `/proc/<pid>/stat`: the number of threads.
fn threads(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_ascii_whitespace().nth(17)?.parse().ok()
}

/// Entries of `/proc/<pid>/fd`; `None` where it cannot be read (another user's process).
fn open_files(pid: u32) -> Option<u64> {
    let entries = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(entries.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_and_this_process_are_sampled() {
        let mut sampler = Sampler::new();
        let host = sampler.host(1.0);
        assert!(host.memory_total_mb > 0.0 && host.memory_used_mb > 0.0);
        assert!((0.0..=100.0).contains(&host.memory_percent));
        let me = std::process::id();
        let agents = sampler.agents(&[("me".into(), me), ("gone".into(), u32::MAX - 1)]);
        assert!(
            agents[1].is_none(),
            "a gone process has no sample: {agents:?}"
        );
        let mine = agents[0].as_ref().expect("this process is sampled");
        assert_eq!(mine.pid, me);
        assert!(mine.memory_mb > 1.0, "{mine:?}");
        assert!(mine.threads >= 1);
        assert!(mine.open_files.is_some_and(|n| n >= 3));
        assert!(disk_percent(Path::new("/")).is_some_and(|p| (0.0..=100.0).contains(&p)));
    }
}
