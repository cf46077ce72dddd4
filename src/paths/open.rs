//! A working directory opened once and judged through its descriptor, for starting agents.
//!
//! Validating a path and then using it by name leaves a window: between the check and the
//! use, a component can be swapped for a symlink into a restricted directory (the issue 19
//! probe: `mv race2 race2.old; ln -s /restricted race2`, then restart the agent). So an
//! agent's start opens the directory once (`O_PATH | O_DIRECTORY | O_CLOEXEC` on Linux,
//! `O_RDONLY | O_DIRECTORY | O_CLOEXEC` elsewhere), asks the kernel where that descriptor
//! really is (`/proc/self/fd/N`, `F_GETPATH` on macOS), applies the policy to *that* path, and
//! the child enters the descriptor with `fchdir`: what was judged is what the agent gets,
//! whatever happens to the name afterwards.
//!
//! This runs at every start and restart of an agent, so it stays cheap: one `open`, one
//! `readlink`, one `fstat`, three `access` and one `fstatvfs`, and the text rules. No git.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Access, Mode, OFlags};
use rustix::io::Errno;

use super::check::{Check, CheckCode};
use super::policy::{Evaluation, NormalPath, Rules};
use super::validate::{disk_verdict, may, DiskThresholds};

/// A directory that passed the policy, held open: start processes in it with
/// [`OpenedDirectory::fd`] (`fchdir`), never by its name.
#[derive(Debug)]
pub struct OpenedDirectory {
    fd: OwnedFd,
    path: PathBuf,
}

impl OpenedDirectory {
    /// The descriptor that was judged.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Where the descriptor was when it was judged (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a working directory may not be used any more: the error-level findings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the working directory {path} is refused: {}", reasons(.checks))]
pub struct DirectoryRefused {
    /// The directory as configured.
    pub path: String,
    /// The error-level findings; never empty.
    pub checks: Vec<Check>,
}

impl DirectoryRefused {
    /// Whether a finding with this code refused it.
    pub fn has(&self, code: CheckCode) -> bool {
        self.checks.iter().any(|check| check.code == code)
    }
}

fn reasons(checks: &[Check]) -> String {
    let messages: Vec<&str> = checks.iter().map(|check| check.message.as_str()).collect();
    messages.join("; ")
}

/// Opens `raw` and judges what was opened; see the module comment.
pub(super) fn open(
    rules: &Rules,
    home: Option<&str>,
    disk: DiskThresholds,
    raw: &str,
) -> Result<OpenedDirectory, DirectoryRefused> {
    let refuse = |checks: Vec<Check>| DirectoryRefused {
        path: raw.to_owned(),
        checks: checks.into_iter().filter(Check::is_error).collect(),
    };
    let Evaluation {
        mut checks,
        expanded,
        path: written,
    } = rules.evaluate(raw, home);
    let (Some(expanded), Some(written)) = (expanded, written) else {
        return Err(refuse(checks));
    };
    if checks.iter().any(Check::is_error) {
        return Err(refuse(checks));
    }
    let fd = match open_directory(&expanded) {
        Ok(fd) => fd,
        Err(errno) => return Err(refuse(vec![cannot_open(&expanded, errno)])),
    };
    let located = match locate(fd.as_fd(), &expanded) {
        Ok(located) => located,
        Err(check) => return Err(refuse(vec![check])),
    };
    let Some(real) = located.path.to_str() else {
        let lossy = located.path.to_string_lossy();
        return Err(refuse(vec![Check::error(
            CheckCode::NonUtf8Path,
            format!("{lossy} is not valid UTF-8"),
        )]));
    };
    let canonical = NormalPath::parse(rules.platform(), real);
    checks.extend(rules.locate(&written, &canonical));
    let shown = located.path.display();
    for (access, code, what) in [
        (Access::READ_OK, CheckCode::NotReadable, "list"),
        (Access::WRITE_OK, CheckCode::NotWritable, "create files in"),
        (Access::EXEC_OK, CheckCode::NotSearchable, "enter"),
    ] {
        if !may(&located.handle, access) {
            checks.push(Check::error(
                code,
                format!("the server's user may not {what} {shown}"),
            ));
        }
    }
    disk_verdict(rustix::fs::fstatvfs(&fd), &located.path, disk, &mut checks);
    if checks.iter().any(Check::is_error) {
        return Err(refuse(checks));
    }
    Ok(OpenedDirectory {
        fd,
        path: located.path,
    })
}

#[cfg(target_os = "linux")]
fn open_directory(path: &str) -> Result<OwnedFd, Errno> {
    // O_PATH: nothing is read through it, so a directory the server may enter but not list
    // is still judged (and refused as `not_readable`) instead of failing to open.
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

#[cfg(not(target_os = "linux"))]
fn open_directory(path: &str) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn cannot_open(path: &str, errno: Errno) -> Check {
    match errno {
        Errno::NOENT => Check::error(CheckCode::DoesNotExist, format!("{path} no longer exists")),
        Errno::NOTDIR => Check::error(
            CheckCode::NotADirectory,
            format!("{path} is not a directory, or leads through something that is not"),
        ),
        Errno::ACCESS => Check::error(
            CheckCode::PermissionDenied,
            format!("{path} cannot be opened: permission denied on the way"),
        ),
        Errno::LOOP => Check::error(
            CheckCode::SymlinkLoop,
            format!("the symlinks on the way to {path} lead round in a loop"),
        ),
        other => Check::error(
            CheckCode::IoError,
            format!("cannot open {path}: {}", io::Error::from(other)),
        ),
    }
}

/// Where an open directory is.
struct Located {
    /// Its canonical path.
    path: PathBuf,
    /// A name that reaches the same directory for `access(2)`: its `/proc/self/fd` link
    /// where there is one (no lookup of the configured name), else `path`.
    handle: PathBuf,
}

/// Asks the kernel where the descriptor is. Without `/proc` (or `F_GETPATH`) the name's
/// canonical form is taken, but only if it is the very directory that was opened (same
/// device and inode), so a swap in between is refused rather than believed.
fn locate(fd: BorrowedFd<'_>, expanded: &str) -> Result<Located, Check> {
    let opened = rustix::fs::fstat(fd).map_err(|errno| {
        Check::error(
            CheckCode::IoError,
            format!("cannot read {expanded}: {}", io::Error::from(errno)),
        )
    })?;
    if opened.st_nlink == 0 {
        return Err(Check::error(
            CheckCode::DoesNotExist,
            format!("{expanded} was removed"),
        ));
    }
    if let Some(located) = descriptor_path(fd) {
        return Ok(located);
    }
    let canonical = fs::canonicalize(expanded).map_err(|error| {
        Check::error(
            CheckCode::IoError,
            format!("cannot resolve {expanded}: {error}"),
        )
    })?;
    let named = rustix::fs::stat(&canonical).map_err(|errno| {
        Check::error(
            CheckCode::IoError,
            format!(
                "cannot read {}: {}",
                canonical.display(),
                io::Error::from(errno)
            ),
        )
    })?;
    if (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino) {
        return Err(Check::error(
            CheckCode::IoError,
            format!("{expanded} was replaced while it was being checked"),
        ));
    }
    Ok(Located {
        handle: canonical.clone(),
        path: canonical,
    })
}

#[cfg(target_os = "linux")]
fn descriptor_path(fd: BorrowedFd<'_>) -> Option<Located> {
    use std::os::unix::ffi::OsStringExt;
    let handle = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    let target = rustix::fs::readlink(&handle, Vec::new()).ok()?;
    let path = PathBuf::from(std::ffi::OsString::from_vec(target.into_bytes()));
    // Anything but an absolute path (an anonymous object, a path outside our root) is not
    // one to judge.
    path.is_absolute().then_some(Located { path, handle })
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn descriptor_path(fd: BorrowedFd<'_>) -> Option<Located> {
    use std::os::unix::ffi::OsStringExt;
    let path = rustix::fs::getpath(fd).ok()?;
    let path = PathBuf::from(std::ffi::OsString::from_vec(path.into_bytes()));
    path.is_absolute().then(|| Located {
        handle: path.clone(),
        path,
    })
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "ios")))]
fn descriptor_path(_fd: BorrowedFd<'_>) -> Option<Located> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::{PathPolicy, PolicyOptions};

    fn policy(allowed: &Path, restricted: &[&Path]) -> PathPolicy {
        PathPolicy::new(PolicyOptions {
            home: None,
            allowed_roots: vec![allowed.to_path_buf()],
            restricted: restricted.iter().map(|r| r.to_path_buf()).collect(),
            disk: DiskThresholds {
                critical_bytes: 0,
                low_bytes: 0,
            },
        })
    }

    fn text(path: &Path) -> &str {
        path.to_str().unwrap()
    }

    #[test]
    fn an_allowed_directory_opens_at_its_canonical_path() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let work = root_path.join("work");
        fs::create_dir(&work).unwrap();
        let opened = policy(&root_path, &[]).open_directory(text(&work)).unwrap();
        assert_eq!(opened.path(), work);
        let stat = rustix::fs::fstat(opened.fd()).unwrap();
        let named = rustix::fs::stat(&work).unwrap();
        assert_eq!((stat.st_dev, stat.st_ino), (named.st_dev, named.st_ino));
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_into_a_restricted_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let (work, secret) = (root_path.join("race2"), root_path.join("secret"));
        fs::create_dir(&work).unwrap();
        fs::create_dir(&secret).unwrap();
        let policy = policy(&root_path, &[&secret]);
        assert!(policy.open_directory(text(&work)).is_ok());
        fs::rename(&work, root_path.join("race2.old")).unwrap();
        std::os::unix::fs::symlink(&secret, &work).unwrap();
        let refused = policy.open_directory(text(&work)).unwrap_err();
        assert!(refused.has(CheckCode::SymlinkEscape), "{refused}");
        assert!(refused.to_string().contains("secret"), "{refused}");
    }

    #[test]
    fn a_directory_swapped_for_a_symlink_out_of_the_allowed_roots_is_refused() {
        let (root, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let root_path = fs::canonicalize(root.path()).unwrap();
        let work = root_path.join("race2");
        std::os::unix::fs::symlink(outside.path(), &work).unwrap();
        let refused = policy(&root_path, &[])
            .open_directory(text(&work))
            .unwrap_err();
        assert!(refused.has(CheckCode::SymlinkEscape), "{refused}");
    }

    #[test]
    fn missing_removed_and_non_directories_are_refused_with_their_code() {
        let root = tempfile::tempdir().unwrap();
        let root_path = fs::canonicalize(root.path()).unwrap();
        let policy = policy(&root_path, &[]);
        let missing = root_path.join("missing");
        let refused = policy.open_directory(text(&missing)).unwrap_err();
        assert!(refused.has(CheckCode::DoesNotExist), "{refused}");
        let file = root_path.join("file");
        fs::write(&file, b"x").unwrap();
        let refused = policy.open_directory(text(&file)).unwrap_err();
        assert!(refused.has(CheckCode::NotADirectory), "{refused}");
        let relative = policy.open_directory("relative/dir").unwrap_err();
        assert!(relative.has(CheckCode::RelativePath), "{relative}");
        assert!(refused.checks.iter().all(Check::is_error));
    }

    #[test]
    fn a_directory_removed_after_it_was_opened_is_located_as_removed() {
        let root = tempfile::tempdir().unwrap();
        let gone = root.path().join("gone");
        fs::create_dir(&gone).unwrap();
        let fd = open_directory(text(&gone)).unwrap();
        fs::remove_dir(&gone).unwrap();
        let check = match locate(fd.as_fd(), text(&gone)) {
            Err(check) => check,
            Ok(located) => panic!("located at {}", located.path.display()),
        };
        assert_eq!(check.code, CheckCode::DoesNotExist);
    }
}
