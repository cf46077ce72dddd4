//! A log file rotated by size, shared by the server's own log and every agent's output log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

/// A file rotated by size: it is written until the next line would
/// take it past `max_bytes`; then `.N` becomes `.N+1` (the oldest beyond `keep` is dropped)
/// and the file becomes `.1`.
///
/// Written here rather than taken from a crate: the one tried kept a list of rotated files
/// and panicked, ending file logging for good, when somebody deleted one by hand to free
/// disk. This keeps no list; a missing file is simply skipped.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: File,
    written: u64,
}

impl RotatingFile {
    pub(crate) fn open(path: PathBuf, max_bytes: u64, keep: usize) -> io::Result<RotatingFile> {
        let file = Self::append_to(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            max_bytes,
            keep,
            file,
            written,
        })
    }

    fn append_to(path: &PathBuf) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let shifts = (1..self.keep)
            .rev()
            .map(|n| (self.numbered(n), self.numbered(n + 1)));
        let last = (self.keep > 0).then(|| (self.path.clone(), self.numbered(1)));
        for (from, to) in shifts.chain(last) {
            skip_missing(fs::rename(from, to))?;
        }
        if self.keep == 0 {
            skip_missing(fs::remove_file(&self.path))?;
        }
        self.file = Self::append_to(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = u64::try_from(buf.len()).unwrap_or(u64::MAX);
        if self.written > 0 && self.written.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written = self
            .written
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A file that is not there needs no renaming or removing.
fn skip_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotates_by_size_and_keeps_at_most_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path().join("x.log"), 10, 2).unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            log.write_all(line.as_bytes()).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log", "x.log.1", "x.log.2"]);
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("x.log"), "dddddd\n");
        assert_eq!(read("x.log.1"), "cccccc\n");
        assert_eq!(read("x.log.2"), "bbbbbb\n");
    }

    #[test]
    fn rotated_files_deleted_by_hand_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path().join("x.log"), 10, 3).unwrap();
        for _ in 0..5 {
            log.write_all(b"0123456789").unwrap();
        }
        for name in ["x.log.1", "x.log.2", "x.log.3"] {
            fs::remove_file(dir.path().join(name)).unwrap();
        }
        log.write_all(b"after\n").unwrap();
        log.write_all(b"again\n").unwrap();
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log", "x.log.1", "x.log.2"]);
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("x.log"), "again\n");
        assert_eq!(read("x.log.1"), "after\n");
        assert_eq!(read("x.log.2"), "0123456789");
    }

    #[test]
    fn keep_zero_truncates_and_a_reopen_continues_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut log = RotatingFile::open(path.clone(), 10, 0).unwrap();
        log.write_all(b"123456").unwrap();
        log.write_all(b"789012").unwrap();
        log.flush().unwrap();
        assert_eq!(names(dir.path()), ["x.log"]);
        assert_eq!(fs::read_to_string(&path).unwrap(), "789012");
        drop(log);
        // The size already written counts after a restart.
        let mut log = RotatingFile::open(path.clone(), 10, 0).unwrap();
        log.write_all(b"34567").unwrap();
        log.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "34567");
    }
}
