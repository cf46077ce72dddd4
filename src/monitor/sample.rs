//! Reading the world: the host (sysinfo), each agent's process tree (the tree from `/proc`,
//! then one read of `/proc/<pid>/stat` per member for its CPU time, threads and resident
//! pages, and one `stat` of `/proc/<pid>/fd` for its open files) and a working directory's
//! file system (statvfs). Blocking calls; the monitor runs them off the async workers.
//!
//! The members are read directly rather than through sysinfo: sysinfo reads several files
//! and lists the threads of each process it refreshes, which made sampling 200 agents cost
//! about 2.8 % of a core (release build); one `stat` read per process is what CPU, memory
//! and threads need.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use sysinfo::System;

use crate::agent::process_tree;
use crate::session::AgentSample;

const MIB: f64 = 1024.0 * 1024.0;

/// The host at one instant.
#[derive(Debug, Clone, PartialEq)]
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

/// Keeps what CPU percentages need between two samples (the previous CPU times).
pub(crate) struct Sampler {
    /// The host's CPUs and memory.
    system: System,
    /// CPU time of each process sampled last time, by PID: (start time, user + system
    /// ticks). The start time tells a reused PID from the process seen before.
    last: HashMap<u32, (u64, u64)>,
    /// When the processes were sampled last.
    last_at: Option<Instant>,
    /// Clock ticks per second (`_SC_CLK_TCK`).
    ticks_per_second: f64,
    /// Bytes per page.
    page_bytes: f64,
}

impl Sampler {
    pub(crate) fn new() -> Sampler {
        let mut system = System::new();
        // The first CPU reading is a baseline; usage is the difference to the next one.
        system.refresh_cpu_usage();
        Sampler {
            system,
            last: HashMap::new(),
            last_at: None,
            ticks_per_second: sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64,
            page_bytes: sysconf(libc::_SC_PAGESIZE).unwrap_or(4096) as f64,
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
    /// process is gone. Only these trees' PIDs are read, never the whole process table. CPU
    /// is the CPU time used since the previous call (0 for a process not seen then).
    pub(crate) fn agents(&mut self, agents: &[(String, u32)]) -> Vec<Option<AgentSample>> {
        let now = Instant::now();
        let elapsed = self
            .last_at
            .map(|at| now.duration_since(at).as_secs_f64())
            .filter(|&s| s > 0.0);
        self.last_at = Some(now);
        let mut seen = HashMap::with_capacity(self.last.len());
        let samples = agents
            .iter()
            .map(|(name, pid)| {
                let pids = process_tree(*pid)?;
                let mut sample = AgentSample {
                    name: name.clone(),
                    pid: *pid,
                    processes: pids.len(),
                    cpu_percent: 0.0,
                    memory_mb: 0.0,
                    threads: 0,
                    open_files: Some(0),
                };
                for member in pids {
                    let Some(stat) = read_stat(member) else {
                        continue;
                    };
                    if let (Some(elapsed), Some(&(start, ticks))) =
                        (elapsed, self.last.get(&member))
                    {
                        if start == stat.start_time {
                            let used = stat.cpu_ticks.saturating_sub(ticks) as f64;
                            sample.cpu_percent += used / self.ticks_per_second / elapsed * 100.0;
                        }
                    }
                    seen.insert(member, (stat.start_time, stat.cpu_ticks));
                    sample.memory_mb += stat.resident_pages as f64 * self.page_bytes / MIB;
                    sample.threads += stat.threads;
                    sample.open_files = match (sample.open_files, open_files(member)) {
                        (Some(sum), Some(n)) => Some(sum + n),
                        _ => None,
                    };
                }
                Some(sample)
            })
            .collect();
        self.last = seen;
        samples
    }
}

/// What one read of `/proc/<pid>/stat` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    /// utime + stime, clock ticks.
    cpu_ticks: u64,
    /// num_threads.
    threads: u64,
    /// starttime, clock ticks after boot.
    start_time: u64,
    /// rss, pages.
    resident_pages: u64,
}

/// Fields 14, 15 (CPU), 20 (threads), 22 (start) and 24 (resident pages) of
/// `/proc/<pid>/stat`, counted after the parenthesised command (which may hold spaces).
fn read_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<ProcStat> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_ascii_whitespace().take(22).collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        cpu_ticks: field(14)?.saturating_add(field(15)?),
        threads: field(20)?,
        start_time: field(22)?,
        resident_pages: field(24)?,
    })
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf has no preconditions.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
}

/// Percentage of the file system holding `path` in use, as `df` counts it (blocks reserved
/// for root are neither used nor available).
pub(crate) fn disk_percent(path: &Path) -> Option<f64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let usable = used + stat.f_bavail;
    (usable > 0).then(|| used as f64 / usable as f64 * 100.0)
}

/// Open file descriptors of `pid`: the size Linux (6.2 and later) reports for
/// `/proc/<pid>/fd`, one `stat`; else its entries, counted. `None` where neither can be
/// read (another user's process).
fn open_files(pid: u32) -> Option<u64> {
    let dir = format!("/proc/{pid}/fd");
    let size = std::fs::metadata(&dir).ok()?.size();
    if size > 0 {
        return Some(size);
    }
    let entries = std::fs::read_dir(&dir).ok()?;
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

        // Busy until this process has used CPU time since the first sample: the second one
        // shows it.
        let before = read_stat(me).unwrap().cpu_ticks;
        let mut spins = 0u64;
        while read_stat(me).unwrap().cpu_ticks == before {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        let again = sampler.agents(&[("me".into(), me)]);
        let mine = again[0].as_ref().unwrap();
        assert!(mine.cpu_percent > 0.0, "{mine:?}");
    }

    #[test]
    fn stat_fields_are_counted_after_the_command() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0 \
                    12345 1000000 250 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                cpu_ticks: 12,
                threads: 3,
                start_time: 12345,
                resident_pages: 250
            }
        );
        assert_eq!(parse_stat("42 (x) S 1"), None);
    }
}
