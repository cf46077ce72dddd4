//! Git worktrees for cloned sessions: one made on a new branch, and one removed only when
//! nothing would be lost.
//!
//! These helpers do not validate the worktree path against the policy: the caller (the clone
//! route) validates it first, like every path a client sends.

use std::fs;
use std::path::{Path, PathBuf};

use git2::{
    Branch, Repository, Worktree, WorktreeAddOptions, WorktreeLockStatus, WorktreePruneOptions,
};

use super::error::PathError;
use super::git::{self, GitState};

/// Creates a worktree at `path` with a new branch `branch` starting at the HEAD commit of the
/// repository containing `repo`, and returns its state. `path` must not exist; its parents
/// are created. On failure the new branch is deleted again.
pub async fn create(repo: &Path, path: &Path, branch: &str) -> Result<GitState, PathError> {
    let (repo, path, branch) = (repo.to_path_buf(), path.to_path_buf(), branch.to_owned());
    tokio::task::spawn_blocking(move || create_blocking(&repo, &path, &branch))
        .await
        .map_err(PathError::Interrupted)?
}

/// Removes the linked worktree at `path` (its directory and git's record of it; the branch
/// stays). Unless `force`, refuses when it is locked, has changed or untracked files
/// ([`PathError::Dirty`]) or commits on no other branch, tag or upstream
/// ([`PathError::Unpushed`]).
pub async fn remove(path: &Path, force: bool) -> Result<(), PathError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || remove_blocking(&path, force))
        .await
        .map_err(PathError::Interrupted)?
}

/// The blocking body of [`create`].
pub fn create_blocking(repo: &Path, path: &Path, branch: &str) -> Result<GitState, PathError> {
    if !Branch::name_is_valid(branch).unwrap_or(false) {
        return Err(PathError::InvalidBranch {
            branch: branch.to_owned(),
        });
    }
    let Some(repository) = git::discover(repo)? else {
        return Err(PathError::NotARepository {
            path: repo.to_path_buf(),
        });
    };
    if fs::symlink_metadata(path).is_ok() {
        return Err(PathError::AlreadyExists {
            path: path.to_path_buf(),
        });
    }
    let git_err = PathError::git(repo);
    let head = match repository.head().and_then(|head| head.peel_to_commit()) {
        Ok(commit) => commit,
        Err(_) => {
            return Err(PathError::NoCommit {
                path: repo.to_path_buf(),
            })
        }
    };
    if repository
        .find_branch(branch, git2::BranchType::Local)
        .is_ok()
    {
        return Err(PathError::BranchExists {
            branch: branch.to_owned(),
        });
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| PathError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    let mut new_branch = repository.branch(branch, &head, false).map_err(git_err)?;
    let name = free_name(&repository, path, branch);
    let added = {
        let mut options = WorktreeAddOptions::new();
        options.reference(Some(new_branch.get()));
        repository.worktree(&name, path, Some(&options))
    };
    if let Err(source) = added {
        // Best effort: the branch was made for this worktree only. If deleting it fails too,
        // the first failure is the one worth reporting.
        let _ = new_branch.delete();
        return Err(PathError::Git {
            path: path.to_path_buf(),
            source,
        });
    }
    git::read_state(path)?.ok_or_else(|| PathError::NotARepository {
        path: path.to_path_buf(),
    })
}

/// The blocking body of [`remove`].
pub fn remove_blocking(path: &Path, force: bool) -> Result<(), PathError> {
    let git_err = PathError::git(path);
    let repository = match Repository::open(path) {
        Ok(repository) => repository,
        Err(_) => {
            return Err(PathError::NotAWorktree {
                path: path.to_path_buf(),
            })
        }
    };
    if !repository.is_worktree() {
        return Err(PathError::NotAWorktree {
            path: path.to_path_buf(),
        });
    }
    let worktree = Worktree::open_from_repository(&repository).map_err(git_err)?;
    if !force {
        refuse_if_unsafe(&repository, &worktree, path)?;
    }
    drop(repository);
    let mut options = WorktreePruneOptions::new();
    options.valid(true).working_tree(true).locked(force);
    worktree
        .prune(Some(&mut options))
        .map_err(PathError::git(path))
}

fn refuse_if_unsafe(repo: &Repository, worktree: &Worktree, path: &Path) -> Result<(), PathError> {
    let git_err = || PathError::git(path);
    if matches!(
        worktree.is_locked().map_err(git_err())?,
        WorktreeLockStatus::Locked(_)
    ) {
        return Err(PathError::Locked {
            path: path.to_path_buf(),
        });
    }
    let (changed, untracked) = git::counts(repo).map_err(git_err())?;
    if changed + untracked > 0 {
        return Err(PathError::Dirty {
            path: path.to_path_buf(),
            changed,
            untracked,
        });
    }
    let commits = unshared_commits(repo).map_err(git_err())?;
    if commits > 0 {
        return Err(PathError::Unpushed {
            path: path.to_path_buf(),
            commits,
        });
    }
    Ok(())
}

/// Commits reachable from HEAD and from no other branch, tag or remote-tracking branch: what
/// only this worktree's branch holds. A ref that cannot be read hides nothing, so the count
/// errs towards refusing.
fn unshared_commits(repo: &Repository) -> Result<usize, git2::Error> {
    let head = match repo.head() {
        Ok(head) => head,
        Err(error) if error.code() == git2::ErrorCode::UnbornBranch => return Ok(0),
        Err(error) => return Err(error),
    };
    let own = head.name().ok().map(str::to_owned);
    let mut walk = repo.revwalk()?;
    walk.push(head.peel_to_commit()?.id())?;
    for reference in repo.references()?.flatten() {
        let name = reference.name().ok();
        let shared = name.is_some_and(|name| {
            ["refs/heads/", "refs/remotes/", "refs/tags/"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        });
        if !shared || name.map(str::to_owned) == own {
            continue;
        }
        if let Ok(commit) = reference.peel_to_commit() {
            walk.hide(commit.id())?;
        }
    }
    let mut count = 0;
    for oid in walk {
        oid?;
        count += 1;
    }
    Ok(count)
}

/// A worktree name git has not used yet: the directory's name, made safe, with a number
/// added when taken.
fn free_name(repo: &Repository, path: &Path, branch: &str) -> String {
    let base: String = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| branch.to_owned())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let taken: Vec<String> = repo
        .worktrees()
        .map(|names| {
            names
                .iter()
                .filter_map(|name| Some(name.ok()??.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let admin = PathBuf::from(repo.commondir()).join("worktrees");
    let free = |name: &String| !taken.contains(name) && !admin.join(name).exists();
    std::iter::once(base.clone())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(free)
        .unwrap_or(base)
}
