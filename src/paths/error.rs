//! The errors of the git helpers. Validation itself never fails: what it finds is reported
//! as checks on the [`super::Validation`].

use std::path::PathBuf;

/// Why a git read or a worktree operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// libgit2 refused or failed; the source says why.
    #[error("git failed on {}", path.display())]
    Git {
        /// The path being worked on.
        path: PathBuf,
        /// libgit2's account.
        #[source]
        source: git2::Error,
    },
    /// A file-system operation around a worktree failed.
    #[error("cannot prepare {}", path.display())]
    Io {
        /// The path being worked on.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// No repository at or above the path.
    #[error("{} is not in a git repository", path.display())]
    NotARepository {
        /// The path given.
        path: PathBuf,
    },
    /// The path is not the top of a linked worktree (the main work tree and bare
    /// repositories are never removed by these helpers).
    #[error("{} is not a linked git worktree", path.display())]
    NotAWorktree {
        /// The path given.
        path: PathBuf,
    },
    /// The branch name is not one git accepts.
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch {
        /// The name given.
        branch: String,
    },
    /// A branch of that name exists already; a new worktree always gets a new branch.
    #[error("branch `{branch}` already exists")]
    BranchExists {
        /// The name given.
        branch: String,
    },
    /// The repository has no commit yet, so there is nothing to branch from.
    #[error("{} has no commit to branch from", path.display())]
    NoCommit {
        /// The repository.
        path: PathBuf,
    },
    /// Something already exists where the worktree would go.
    #[error("{} already exists", path.display())]
    AlreadyExists {
        /// The path given.
        path: PathBuf,
    },
    /// Removal refused: files are modified, staged or untracked.
    #[error("{} has uncommitted work: {changed} changed and {untracked} untracked files", path.display())]
    Dirty {
        /// The worktree.
        path: PathBuf,
        /// Modified, staged, deleted or conflicted files.
        changed: usize,
        /// Untracked files (an untracked directory counts once).
        untracked: usize,
    },
    /// Removal refused: commits reachable from the worktree's HEAD are on no other branch,
    /// tag or remote-tracking branch, so removing the worktree would leave them behind.
    #[error("{} has {commits} commits that are on no other branch or upstream", path.display())]
    Unpushed {
        /// The worktree.
        path: PathBuf,
        /// How many.
        commits: usize,
    },
    /// Removal refused: the worktree is locked (`git worktree lock`).
    #[error("{} is locked", path.display())]
    Locked {
        /// The worktree.
        path: PathBuf,
    },
    /// The operation did not finish within the deadline (`paths.deadline_ms`): the file
    /// system or the repository hangs. It goes on on the blocking pool; nobody waits for it.
    #[error("git did not answer within {} ms on {}", .after.as_millis(), path.display())]
    TimedOut {
        /// The path being worked on.
        path: PathBuf,
        /// The deadline that passed.
        after: std::time::Duration,
    },
    /// The blocking task running the operation did not finish (the runtime is shutting down).
    #[error("the git task did not finish")]
    Interrupted(#[source] tokio::task::JoinError),
}

impl PathError {
    pub(super) fn git(path: &std::path::Path) -> impl FnOnce(git2::Error) -> PathError + '_ {
        move |source| PathError::Git {
            path: path.to_path_buf(),
            source,
        }
    }
}
