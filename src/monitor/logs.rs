//! Old log files go (`logs.retention_days`), pruned with the samples: under the log directory,
//! rotated files (`*.log.N`) older than the retention, and in the directory of a session that
//! is no longer live (terminated, purged) every file older than it — then the directory
//! itself once empty. A file still written to (the server's log, a live agent's current
//! `.log`) is never touched, however old. Blocking; the monitor runs it off the async workers.

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PrunedLogs {
    /// Files deleted.
    pub(crate) files: usize,
    /// Session directories deleted.
    pub(crate) dirs: usize,
}

/// Prunes `dir` (the log directory) of files last written before `before`; `live` holds the
/// ids of the live sessions, whose current logs stay.
pub(crate) fn prune_logs(
    dir: &Path,
    before: SystemTime,
    live: &HashSet<String>,
) -> io::Result<PrunedLogs> {
    let mut pruned = PrunedLogs::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(pruned),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_file() {
            pruned.files += usize::from(remove_if_old(&path, before, true));
        } else if kind.is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rotated_only = live.contains(&name);
            let Ok(files) = std::fs::read_dir(&path) else {
                continue;
            };
            for file in files.flatten() {
                if file.file_type().is_ok_and(|t| t.is_file()) {
                    pruned.files += usize::from(remove_if_old(&file.path(), before, rotated_only));
                }
            }
            // Only an empty directory goes (`remove_dir` refuses any other).
            if !rotated_only && std::fs::remove_dir(&path).is_ok() {
                pruned.dirs += 1;
            }
        }
    }
    Ok(pruned)
}

/// Deletes `path` if it was last modified before `before` and, when `rotated_only`, is a
/// rotated file (`….log.N`). Returns whether it was deleted.
fn remove_if_old(path: &Path, before: SystemTime, rotated_only: bool) -> bool {
    if rotated_only && !is_rotated(path) {
        return false;
    }
    let old = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified < before);
    old && std::fs::remove_file(path).is_ok()
}

/// `x.log.3`: a log that rotation moved aside.
fn is_rotated(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.rsplit_once('.').is_some_and(|(stem, n)| {
        stem.ends_with(".log") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File, FileTimes};
    use std::time::Duration;

    use super::*;

    fn file(path: &Path, age_days: u64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = File::create(path).unwrap();
        let then = SystemTime::now() - Duration::from_secs(age_days * 86_400);
        f.set_times(FileTimes::new().set_modified(then)).unwrap();
    }

    #[test]
    fn old_rotated_files_and_old_files_of_gone_sessions_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        file(&d.join("session_manager.log"), 30);
        file(&d.join("session_manager.log.1"), 30);
        file(&d.join("session_manager.log.2"), 1);
        file(&d.join("live/a.log"), 30);
        file(&d.join("live/a.log.1"), 30);
        file(&d.join("live/b.log.1"), 1);
        file(&d.join("gone/a.log"), 30);
        file(&d.join("gone/a.log.1"), 30);
        file(&d.join("recent/a.log"), 1);
        file(&d.join("recent/a.log.7"), 30);
        let live = HashSet::from(["live".to_owned()]);
        let before = SystemTime::now() - Duration::from_secs(14 * 86_400);

        let pruned = prune_logs(d, before, &live).unwrap();
        assert_eq!(pruned, PrunedLogs { files: 5, dirs: 1 });
        let mut left: Vec<String> = walkdir(d);
        left.sort();
        assert_eq!(
            left,
            [
                "live/a.log",
                "live/b.log.1",
                "recent/a.log",
                "session_manager.log",
                "session_manager.log.2"
            ]
        );
        assert_eq!(
            prune_logs(&d.join("missing"), before, &live).unwrap(),
            PrunedLogs::default()
        );
    }

    fn walkdir(root: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in fs::read_dir(root).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                for inner in fs::read_dir(&path).unwrap().flatten() {
                    let rel = inner.path().strip_prefix(root).unwrap().to_owned();
                    found.push(rel.to_string_lossy().into_owned());
                }
            } else {
                found.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        found
    }

    #[test]
    fn rotated_names() {
        assert!(is_rotated(Path::new("/x/a.log.1")));
        assert!(is_rotated(Path::new("a.log.12")));
        assert!(!is_rotated(Path::new("a.log")));
        assert!(!is_rotated(Path::new("a.txt.1")));
        assert!(!is_rotated(Path::new("a.log.x")));
    }
}
