//! The file-system half of the validator: resolve the path the way the kernel will, then
//! ask the kernel what the server's user may do there.
//!
//! Everything here blocks (system calls, libgit2), so async callers reach it only through
//! [`super::PathPolicy::validate`], which runs it on the blocking pool. Nothing here creates,
//! changes or removes anything: a missing path is reported, never made.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Access, AtFlags, CWD};
use rustix::io::Errno;
use serde::Serialize;

use super::check::{Check, CheckCode};
use super::git::{self, GitState};
use super::policy::{Evaluation, NormalPath, Rules};

/// Free-space limits for a working directory's file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskThresholds {
    /// Less free than this is an error (`disk_space_critical`); DESIGN.md says 100 MB.
    pub critical_bytes: u64,
    /// Less free than this is a warning (`disk_space_low`); DESIGN.md says 1 GB.
    pub low_bytes: u64,
}

impl Default for DiskThresholds {
    fn default() -> DiskThresholds {
        DiskThresholds {
            critical_bytes: 100 * 1024 * 1024,
            low_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// What the server's user may do with the path, asked of the kernel (`access(2)` with
/// `AT_EACCESS`: the effective user and groups, ACLs, read-only mounts — not mode bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Permissions {
    /// May read (list, for a directory).
    pub read: bool,
    /// May write (create files in, for a directory).
    pub write: bool,
    /// May execute (enter, for a directory).
    pub execute: bool,
}

/// The validation object of DESIGN.md: the original service's keys (`path` … `validation_errors`)
/// and ours after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Validation {
    /// The canonical path (`~`, `..` and symlinks resolved; a missing tail appended to its
    /// nearest existing ancestor). The input as given when it names no path at all.
    pub path: PathBuf,
    /// The path exists (a dangling symlink does not).
    pub exists: bool,
    /// Same as `permissions.read`.
    pub readable: bool,
    /// Same as `permissions.write`.
    pub writable: bool,
    /// The path is a directory inside a git work tree, a linked worktree or a bare repository.
    pub is_git_repo: bool,
    /// What the server's user may do with the path; all false when it does not exist.
    pub permissions: Permissions,
    /// The messages of the error-level checks.
    pub validation_errors: Vec<String>,
    /// No error-level check.
    pub valid: bool,
    /// The path is an existing directory.
    pub is_directory: bool,
    /// The messages of the warning-level checks.
    pub warnings: Vec<String>,
    /// Every finding, with its stable code.
    pub checks: Vec<Check>,
    /// Bytes free to the server's user on the path's file system (of the nearest existing
    /// ancestor for a missing path); `None` when unknown.
    pub disk_free_bytes: Option<u64>,
    /// The repository state when `is_git_repo`.
    pub git: Option<GitState>,
    /// The text as the client sent it.
    pub input: String,
    /// For a missing path, the deepest directory that exists: where creation would start.
    pub nearest_existing_ancestor: Option<PathBuf>,
}

impl Validation {
    /// The codes of every check, in the order they were raised.
    pub fn codes(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .map(|check| check.code.as_str())
            .collect()
    }

    /// Whether a check with this code was raised.
    pub fn has(&self, code: CheckCode) -> bool {
        self.checks.iter().any(|check| check.code == code)
    }

    /// A validation that looked at nothing but the text (or not even that).
    pub(super) fn refused(raw: &str, checks: Vec<Check>) -> Validation {
        Validation::new(raw, PathBuf::from(raw)).finish(checks)
    }

    fn new(raw: &str, path: PathBuf) -> Validation {
        Validation {
            path,
            exists: false,
            readable: false,
            writable: false,
            is_git_repo: false,
            permissions: Permissions::default(),
            validation_errors: Vec::new(),
            valid: false,
            is_directory: false,
            warnings: Vec::new(),
            checks: Vec::new(),
            disk_free_bytes: None,
            git: None,
            input: raw.to_owned(),
            nearest_existing_ancestor: None,
        }
    }

    fn finish(mut self, checks: Vec<Check>) -> Validation {
        let messages = |level| {
            checks
                .iter()
                .filter(|check| check.level == level)
                .map(|check| check.message.clone())
                .collect()
        };
        self.validation_errors = messages(super::Level::Error);
        self.warnings = messages(super::Level::Warning);
        self.valid = self.validation_errors.is_empty();
        self.readable = self.permissions.read;
        self.writable = self.permissions.write;
        self.is_git_repo = self.git.is_some();
        self.checks = checks;
        self
    }
}

/// Validates `raw` against `rules` on this host's file system. `git` holds the repositories
/// already described in the same batch (an empty one for a path validated alone).
pub(super) fn validate(
    rules: &Rules,
    home: Option<&str>,
    disk: DiskThresholds,
    git: &git::States,
    raw: &str,
) -> Validation {
    let Evaluation {
        mut checks,
        expanded,
        path: written,
    } = rules.evaluate(raw, home);
    let (Some(expanded), Some(written)) = (expanded, written) else {
        return Validation::refused(raw, checks);
    };
    let too_long =
        |check: &Check| matches!(check.code, CheckCode::NameTooLong | CheckCode::PathTooLong);
    if checks.iter().any(too_long) {
        // The kernel would refuse the lookup itself; asking it adds nothing.
        return Validation::refused(raw, checks);
    }
    let resolved = resolve(Path::new(&expanded));
    let canonical_text = match resolved.canonical.to_str() {
        Some(text) => text.to_owned(),
        None => {
            let lossy = resolved.canonical.to_string_lossy().into_owned();
            checks.push(Check::error(
                CheckCode::NonUtf8Path,
                format!("{lossy} is not valid UTF-8"),
            ));
            lossy
        }
    };
    let canonical = NormalPath::parse(rules.platform(), &canonical_text);
    let location = rules.locate(&written, &canonical);
    let escaped = location
        .iter()
        .any(|check| check.code == CheckCode::SymlinkEscape);
    checks.extend(location);
    if resolved.through_symlink && !escaped {
        checks.push(Check::info(
            CheckCode::SymlinkResolved,
            format!("{written} leads to {canonical}"),
        ));
    }

    let mut validation = Validation::new(raw, PathBuf::from(&canonical_text));
    if let Some(blocked) = resolved.blocked {
        checks.push(blocked.check());
    } else if resolved.missing == 0 {
        examine_existing(&mut validation, disk, git, &mut checks);
    } else {
        let ancestor = PathBuf::from(resolved.existing.to_string_lossy().into_owned());
        examine_missing(&mut validation, &ancestor, disk, &mut checks);
        validation.nearest_existing_ancestor = Some(ancestor);
    }
    validation.finish(checks)
}

fn examine_existing(
    validation: &mut Validation,
    disk: DiskThresholds,
    git: &git::States,
    checks: &mut Vec<Check>,
) {
    let path = validation.path.clone();
    validation.exists = true;
    match fs::metadata(&path) {
        Ok(metadata) => validation.is_directory = metadata.is_dir(),
        Err(error) => {
            checks.push(Check::error(
                CheckCode::IoError,
                format!("cannot read {}: {error}", path.display()),
            ));
            return;
        }
    }
    validation.permissions = Permissions {
        read: may(&path, Access::READ_OK),
        write: may(&path, Access::WRITE_OK),
        execute: may(&path, Access::EXEC_OK),
    };
    let shown = path.display();
    if !validation.is_directory {
        checks.push(Check::error(
            CheckCode::NotADirectory,
            format!("{shown} is not a directory"),
        ));
    } else {
        let permissions = validation.permissions;
        let denied = [
            (permissions.read, CheckCode::NotReadable, "list"),
            (permissions.write, CheckCode::NotWritable, "create files in"),
            (permissions.execute, CheckCode::NotSearchable, "enter"),
        ];
        for (allowed, code, what) in denied {
            if !allowed {
                checks.push(Check::error(
                    code,
                    format!("the server's user may not {what} {shown}"),
                ));
            }
        }
    }
    validation.disk_free_bytes = disk_space(&path, disk, checks);
    if validation.is_directory {
        match git.read(&path) {
            Ok(state) => validation.git = state,
            Err(error) => checks.push(Check::warning(
                CheckCode::GitUnreadable,
                format!("{shown} is in a git repository that cannot be read: {error}"),
            )),
        }
    }
}

fn examine_missing(
    validation: &mut Validation,
    ancestor: &Path,
    disk: DiskThresholds,
    checks: &mut Vec<Check>,
) {
    let (path, shown_ancestor) = (validation.path.display(), ancestor.display());
    checks.push(Check::warning(
        CheckCode::DoesNotExist,
        format!("{path} does not exist yet; the nearest existing directory is {shown_ancestor}"),
    ));
    if !may(ancestor, Access::WRITE_OK | Access::EXEC_OK) {
        checks.push(Check::error(
            CheckCode::ParentNotWritable,
            format!("{path} cannot be created: the server's user may not create directories in {shown_ancestor}"),
        ));
    }
    validation.disk_free_bytes = disk_space(ancestor, disk, checks);
}

pub(super) fn may(path: &Path, access: Access) -> bool {
    rustix::fs::accessat(CWD, path, access, AtFlags::EACCESS).is_ok()
}

fn disk_space(path: &Path, disk: DiskThresholds, checks: &mut Vec<Check>) -> Option<u64> {
    disk_verdict(rustix::fs::statvfs(path), path, disk, checks)
}

/// The free space `stats` reports against the thresholds (`shown` is the path they are of).
pub(super) fn disk_verdict(
    stats: Result<rustix::fs::StatVfs, Errno>,
    shown: &Path,
    disk: DiskThresholds,
    checks: &mut Vec<Check>,
) -> Option<u64> {
    let mib = |bytes: u64| bytes / (1024 * 1024);
    match stats {
        Ok(stats) => {
            let free = stats.f_bavail.saturating_mul(stats.f_frsize);
            let shown = shown.display();
            if free < disk.critical_bytes {
                checks.push(Check::error(
                    CheckCode::DiskSpaceCritical,
                    format!(
                        "only {} MiB free on the file system of {shown}; at least {} MiB are needed",
                        mib(free),
                        mib(disk.critical_bytes)
                    ),
                ));
            } else if free < disk.low_bytes {
                checks.push(Check::warning(
                    CheckCode::DiskSpaceLow,
                    format!(
                        "only {} MiB free on the file system of {shown}; below {} MiB",
                        mib(free),
                        mib(disk.low_bytes)
                    ),
                ));
            }
            Some(free)
        }
        Err(errno) => {
            checks.push(Check::warning(
                CheckCode::DiskSpaceUnknown,
                format!(
                    "cannot read the free space of {}: {}",
                    shown.display(),
                    io::Error::from(errno)
                ),
            ));
            None
        }
    }
}

/// The path as the kernel resolves it, one component at a time.
struct Resolved {
    /// `existing` with the missing components appended.
    canonical: PathBuf,
    /// The canonical form of the longest prefix that exists.
    existing: PathBuf,
    /// How many components after `existing` do not exist.
    missing: usize,
    /// A symlink was followed on the way.
    through_symlink: bool,
    /// Resolution stopped at a component that can never be looked through.
    blocked: Option<Blocked>,
}

enum Blocked {
    BrokenSymlink { link: PathBuf, target: PathBuf },
    Loop { link: PathBuf },
    NotADirectory { at: PathBuf },
    Denied { at: PathBuf },
    Other { at: PathBuf, error: io::Error },
}

impl Blocked {
    fn from_error(at: PathBuf, error: io::Error) -> Blocked {
        if error.kind() == io::ErrorKind::PermissionDenied {
            Blocked::Denied { at }
        } else if error.kind() == io::ErrorKind::NotADirectory {
            Blocked::NotADirectory { at }
        } else if Errno::from_io_error(&error) == Some(Errno::LOOP) {
            Blocked::Loop { link: at }
        } else {
            Blocked::Other { at, error }
        }
    }

    fn check(&self) -> Check {
        match self {
            Blocked::BrokenSymlink { link, target } => Check::error(
                CheckCode::BrokenSymlink,
                format!(
                    "{} is a symlink to {}, which does not exist",
                    link.display(),
                    target.display()
                ),
            ),
            Blocked::Loop { link } => Check::error(
                CheckCode::SymlinkLoop,
                format!("the symlinks at {} lead round in a loop", link.display()),
            ),
            Blocked::NotADirectory { at } => Check::error(
                CheckCode::NotADirectory,
                format!(
                    "{} leads through something that is not a directory",
                    at.display()
                ),
            ),
            Blocked::Denied { at } => Check::error(
                CheckCode::PermissionDenied,
                format!(
                    "{} cannot be looked at: permission denied on the way",
                    at.display()
                ),
            ),
            Blocked::Other { at, error } => Check::error(
                CheckCode::IoError,
                format!("cannot look at {}: {error}", at.display()),
            ),
        }
    }
}

/// Walks `path` component by component: each `..` applies to what the previous components
/// really resolved to (so `link/..` is the link target's parent, as for the kernel), and
/// symlinks are followed where they stand. Once a component is missing the rest is taken as
/// written: missing names cannot be symlinks.
fn resolve(path: &Path) -> Resolved {
    let mut existing = PathBuf::new();
    let mut missing: Vec<&OsStr> = Vec::new();
    let mut through_symlink = false;
    let mut blocked = None;
    let mut last_is_dir = true;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => existing.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                if missing.pop().is_some() || blocked.is_some() {
                    continue;
                }
                if !last_is_dir {
                    blocked = Some(Blocked::NotADirectory {
                        at: existing.clone(),
                    });
                    continue;
                }
                existing.pop();
            }
            Component::Normal(name) => {
                if !missing.is_empty() || blocked.is_some() {
                    missing.push(name);
                    continue;
                }
                let candidate = existing.join(name);
                match fs::symlink_metadata(&candidate) {
                    Ok(metadata) if metadata.file_type().is_symlink() => {
                        match fs::canonicalize(&candidate) {
                            Ok(target) => {
                                through_symlink = true;
                                last_is_dir = target.is_dir();
                                existing = target;
                            }
                            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                                let target = fs::read_link(&candidate).unwrap_or_default();
                                blocked = Some(Blocked::BrokenSymlink {
                                    link: candidate,
                                    target,
                                });
                                missing.push(name);
                            }
                            Err(error) => {
                                blocked = Some(Blocked::from_error(candidate, error));
                                missing.push(name);
                            }
                        }
                    }
                    Ok(metadata) => {
                        last_is_dir = metadata.is_dir();
                        existing = candidate;
                    }
                    Err(error) if error.kind() == io::ErrorKind::NotFound => missing.push(name),
                    Err(error) => {
                        blocked = Some(Blocked::from_error(candidate, error));
                        missing.push(name);
                    }
                }
            }
        }
    }
    let canonical = missing
        .iter()
        .fold(existing.clone(), |path, name| path.join(name));
    Resolved {
        canonical,
        existing,
        missing: missing.len(),
        through_symlink,
        blocked,
    }
}
