//! The git state of a directory, read with libgit2 (no `git` binary needed).
//!
//! Reading walks the index and the work tree, so it blocks: [`state`] runs it on the blocking
//! pool and only [`read_state`] (for code already off the runtime, like the validator) runs
//! it in place.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use git2::{BranchType, ErrorCode, Repository, RepositoryOpenFlags, Status, StatusOptions};
use serde::Serialize;

use super::error::PathError;

/// A repository as seen from a directory in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitState {
    /// The top of the work tree; the repository itself when bare.
    pub root: PathBuf,
    /// The git directory (`.git`, or `.git/worktrees/NAME` for a linked worktree).
    pub git_dir: PathBuf,
    /// A bare repository: no work tree, so no counts.
    pub bare: bool,
    /// A linked worktree, whose `.git` is a file pointing into the main repository.
    pub is_worktree: bool,
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// HEAD points at a commit, not at a branch.
    pub detached: bool,
    /// The commit HEAD points at (full hex id); `None` before the first commit.
    pub head_commit: Option<String>,
    /// Its summary line.
    pub head_summary: Option<String>,
    /// Tracked files modified, staged, deleted, renamed or conflicted.
    pub dirty: usize,
    /// Untracked files, an untracked directory counting once (as `git status` lists them).
    pub untracked: usize,
    /// The upstream of the branch, e.g. `origin/main`; `None` when it has none.
    pub upstream: Option<String>,
    /// Commits on the branch and not on its upstream; `None` without an upstream.
    pub ahead: Option<usize>,
    /// Commits on the upstream and not on the branch; `None` without an upstream.
    pub behind: Option<usize>,
    /// The linked worktrees of the repository (their paths).
    pub worktrees: Vec<PathBuf>,
}

/// The git state of `path` (the repository is looked for at `path` and above, as `git`
/// does), without blocking the runtime. `Ok(None)`: not in a repository.
pub async fn state(path: &Path) -> Result<Option<GitState>, PathError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_state(&path))
        .await
        .map_err(PathError::Interrupted)?
}

/// The blocking body of [`state`].
pub fn read_state(path: &Path) -> Result<Option<GitState>, PathError> {
    States::default().read(path)
}

/// The described repositories of one batch of validations, so a repository that many paths
/// of the batch are in is described once: describing it walks its whole work tree
/// (`statuses`), which is most of the cost of validating a path inside it, while discovering
/// it is cheap. Discovery still runs for every path, so which repository a path is in (and
/// whether it may be opened at all) is decided exactly as for a path validated alone; only
/// the description of a repository already described is reused. Shared between the tasks
/// of a batch: a repository being described by one task is waited for by the others, not
/// described twice.
#[derive(Default)]
pub(super) struct States {
    /// By git directory and work tree: what [`describe`] reads depends on nothing else.
    described: Mutex<HashMap<RepoKey, Arc<OnceLock<Described>>>>,
}

type RepoKey = (PathBuf, Option<PathBuf>);
type Described = Result<GitState, git2::Error>;

impl States {
    /// [`read_state`], reusing the description of a repository already described.
    pub(super) fn read(&self, path: &Path) -> Result<Option<GitState>, PathError> {
        let Some(repo) = discover(path)? else {
            return Ok(None);
        };
        let key = (
            repo.path().to_path_buf(),
            repo.workdir().map(Path::to_path_buf),
        );
        let slot = Arc::clone(
            self.described
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(key)
                .or_default(),
        );
        match slot.get_or_init(|| describe(&repo)) {
            Ok(state) => Ok(Some(state.clone())),
            // git2::Error is not Clone; its code, class and message are all it holds.
            Err(error) => Err(PathError::git(path)(git2::Error::new(
                error.code(),
                error.class(),
                error.message(),
            ))),
        }
    }
}

/// The repository at or above `path`; `None` when there is none.
pub(super) fn discover(path: &Path) -> Result<Option<Repository>, PathError> {
    match Repository::open_ext(
        path,
        RepositoryOpenFlags::empty(),
        std::iter::empty::<&OsStr>(),
    ) {
        Ok(repo) => Ok(Some(repo)),
        Err(error) if error.code() == ErrorCode::NotFound => Ok(None),
        Err(error) => Err(PathError::git(path)(error)),
    }
}

fn describe(repo: &Repository) -> Result<GitState, git2::Error> {
    let bare = repo.is_bare();
    let git_dir = tidy(repo.path());
    let root = repo.workdir().map(tidy).unwrap_or_else(|| git_dir.clone());
    let detached = repo.head_detached()?;
    let (branch, head_commit, head_summary, head_oid) = match repo.head() {
        Ok(head) => {
            let commit = head.peel_to_commit()?;
            let branch = if detached {
                None
            } else {
                head.shorthand().ok().map(str::to_owned)
            };
            let summary = commit.summary().ok().flatten().map(str::to_owned);
            (
                branch,
                Some(commit.id().to_string()),
                summary,
                Some(commit.id()),
            )
        }
        Err(error) if error.code() == ErrorCode::UnbornBranch => {
            let head = repo.find_reference("HEAD")?;
            let branch = head
                .symbolic_target()?
                .map(|target| target.trim_start_matches("refs/heads/").to_owned());
            (branch, None, None, None)
        }
        Err(error) => return Err(error),
    };
    let (dirty, untracked) = if bare { (0, 0) } else { counts(repo)? };
    let (upstream, ahead, behind) = match (&branch, head_oid) {
        (Some(name), Some(local)) => upstream_of(repo, name, local)?,
        _ => (None, None, None),
    };
    // A worktree whose administrative files are damaged cannot be described; it is left out
    // of the list rather than hiding the state of the repository being asked about.
    let worktrees = repo
        .worktrees()?
        .iter()
        .filter_map(|name| repo.find_worktree(name.ok()??).ok())
        .map(|worktree| tidy(worktree.path()))
        .collect();
    Ok(GitState {
        root,
        git_dir,
        bare,
        is_worktree: repo.is_worktree(),
        branch,
        detached,
        head_commit,
        head_summary,
        dirty,
        untracked,
        upstream,
        ahead,
        behind,
        worktrees,
    })
}

/// `(changed, untracked)` as `git status` shows them (untracked directories not descended).
pub(super) fn counts(repo: &Repository) -> Result<(usize, usize), git2::Error> {
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false)
        .exclude_submodules(true);
    let statuses = repo.statuses(Some(&mut options))?;
    let (mut changed, mut untracked) = (0, 0);
    for entry in statuses.iter() {
        let status = entry.status();
        if status == Status::WT_NEW {
            untracked += 1;
        } else if !status.is_empty() && !status.contains(Status::IGNORED) {
            changed += 1;
        }
    }
    Ok((changed, untracked))
}

type Upstream = (Option<String>, Option<usize>, Option<usize>);

fn upstream_of(repo: &Repository, branch: &str, local: git2::Oid) -> Result<Upstream, git2::Error> {
    let upstream = match repo.find_branch(branch, BranchType::Local)?.upstream() {
        Ok(upstream) => upstream,
        Err(error) if error.code() == ErrorCode::NotFound => return Ok((None, None, None)),
        Err(error) => return Err(error),
    };
    let name = upstream.name()?.map(str::to_owned);
    let Some(target) = upstream.get().target() else {
        return Ok((name, None, None));
    };
    let (ahead, behind) = repo.graph_ahead_behind(local, target)?;
    Ok((name, Some(ahead), Some(behind)))
}

/// libgit2 reports directories with a trailing `/`; paths compare and print better without.
fn tidy(path: &Path) -> PathBuf {
    path.components().collect()
}
