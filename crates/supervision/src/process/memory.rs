//! The resident memory of a child's whole process tree, read from `/proc`.
//!
//! Cheap enough to run every second per child: it reads `/proc/<pid>/task/<tid>/children` to
//! walk the tree from the child's first process and `/proc/<pid>/statm` for each member,
//! never the whole process table. Where the kernel has no `children` files, the members of
//! the child's process group are found by a scan of `/proc` instead.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

/// Most processes counted in one tree, so a fork bomb cannot make a sample unbounded.
const MAX_PROCESSES: usize = 4096;

/// Resident bytes of `root` and all its descendants; `None` when `root` is gone or `/proc`
/// is unavailable.
pub fn tree_rss_bytes(root: u32) -> Option<u64> {
    let page = page_size();
    let pids = tree(root)?;
    Some(
        pids.iter()
            .filter_map(|&pid| resident_pages(pid))
            .fold(0u64, |sum, pages| {
                sum.saturating_add(pages.saturating_mul(page))
            }),
    )
}

/// `root` and its descendants (at most 4,096); `None` when `root` is gone. A monitor
/// samples CPU of exactly these (the program's does).
pub fn tree(root: u32) -> Option<Vec<u32>> {
    if !has_children_files() {
        if !Path::new(&format!("/proc/{root}")).exists() {
            return None;
        }
        return Some(group_members(root));
    }
    // A gone root has no task directory.
    let root_tasks = fs::read_dir(format!("/proc/{root}/task")).ok()?;
    let mut seen = HashSet::from([root]);
    let mut pids = vec![root];
    let mut next = 0;
    let mut tasks = Some(root_tasks);
    while next < pids.len() && pids.len() < MAX_PROCESSES {
        let pid = pids[next];
        next += 1;
        let listing = match tasks.take() {
            Some(listing) => listing,
            None => match fs::read_dir(format!("/proc/{pid}/task")) {
                Ok(listing) => listing,
                Err(_) => continue,
            },
        };
        for task in listing.flatten() {
            let Ok(children) = fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            for child in children
                .split_ascii_whitespace()
                .filter_map(|c| c.parse().ok())
            {
                if pids.len() < MAX_PROCESSES && seen.insert(child) {
                    pids.push(child);
                }
            }
        }
    }
    Some(pids)
}

/// Whether this kernel has `/proc/<pid>/task/<tid>/children` (`CONFIG_PROC_CHILDREN`);
/// asked once.
fn has_children_files() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let me = std::process::id();
        Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

/// The processes whose group is `pgid`, by a scan of `/proc`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![pgid];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_group(pid) == Some(pgid))
        .take(MAX_PROCESSES)
        .collect()
}

/// Field 5 of `/proc/<pid>/stat` (after the parenthesised command, which may hold spaces).
fn process_group(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_ascii_whitespace().nth(2)?.parse().ok()
}

/// Field 2 of `/proc/<pid>/statm`: resident pages.
fn resident_pages(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_tree_with_itself_and_resident_memory() {
        let me = std::process::id();
        let pids = tree(me).expect("/proc is mounted");
        assert_eq!(pids[0], me);
        let rss = tree_rss_bytes(me).expect("/proc is mounted");
        assert!(
            rss > 1024 * 1024,
            "a test binary has more than 1 MiB resident: {rss}"
        );
    }

    #[test]
    fn a_child_is_part_of_the_tree_and_a_gone_process_has_none() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        let pids = tree(std::process::id()).unwrap();
        assert!(pids.contains(&pid), "{pid} not in {pids:?}");
        assert_eq!(process_group(pid), process_group(std::process::id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(tree_rss_bytes(pid), None);
    }
}
