//! Path validation and git state that cannot be fooled.
//!
//! Every route that takes a path (create, navigate, clone, import, validate-path) goes
//! through [`PathPolicy`]: the text is read by the platform's rules ([`policy`]), resolved on
//! the file system the way the kernel will resolve it (`~`, `..`, symlinks), compared
//! component by component against the restricted and allowed roots — both as written and as
//! resolved, so a symlink cannot smuggle a path past the check — and the kernel is asked what
//! the server's user may do there. The answer is a [`Validation`]: the original service's
//! keys plus `valid`, `warnings`, `checks` with stable codes ([`CheckCode`]), free disk space
//! and the [`GitState`].
//!
//! Decisions a client can rely on:
//! - Validation never creates, changes or removes anything.
//! - A relative path is refused (`relative_path`): it would depend on the server's current
//!   directory, which no client can see. `~` and `~/…` are the server's home; `~user` is
//!   refused (`tilde_user`).
//! - A missing path is valid, with `exists: false` and a `does_not_exist` warning, when the
//!   path it would have passes the policy and its nearest existing ancestor lets the
//!   server's user create it.
//! - The root directory is never a working directory.
//!
//! - An agent is started in the directory that was judged: [`PathPolicy::open_directory`]
//!   opens it once and judges the descriptor; the child `fchdir`s into it (see `open`).
//!
//! The git helpers ([`git::state`], [`worktree::create`], [`worktree::remove`]) and the
//! validator block, so their async forms run on tokio's blocking pool.
//! - Nobody waits on the file system without a deadline: the server's own calls go through
//!   [`PathPolicy`] ([`validate`](PathPolicy::validate), [`git_state`](PathPolicy::git_state),
//!   [`create_worktree`](PathPolicy::create_worktree),
//!   [`open_directory_within`](PathPolicy::open_directory_within)), which give up after
//!   `paths.deadline_ms` with a `timed_out` answer naming the path. A hung mount (NFS, a
//!   FUSE daemon stopped, a FIFO where git opens a file) then holds one thread of the
//!   blocking pool until it answers, never a runtime worker, a lock or an actor; another
//!   path's validation never waits for it (`in_flight` shares rounds per path only).

pub mod check;
pub mod error;
pub mod git;
mod in_flight;
mod open;
pub mod policy;
mod recent;
mod stuck;
pub mod validate;
pub mod worktree;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::config::PathSettings;

pub use check::{Check, CheckCode, Level};
pub use error::PathError;
pub use git::GitState;
pub use open::{DirectoryRefused, OpenedDirectory};
pub use policy::{Platform, Rules};
pub use validate::{DiskThresholds, Permissions, Validation};

/// How many paths of a batch are validated at once: enough to overlap the waits on the file
/// system, few enough that one large batch cannot take the whole blocking pool.
const BATCH_CONCURRENCY: usize = 16;

/// What a [`PathPolicy`] is built from; [`PathPolicy::from_settings`] fills it from `[paths]`.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// What `~` stands for; `None` makes `~` paths invalid (`home_unknown`).
    pub home: Option<PathBuf>,
    /// Roots refused on top of the platform's system directories (`~` allowed).
    pub restricted: Vec<PathBuf>,
    /// When not empty, the only roots allowed (`~` allowed).
    pub allowed_roots: Vec<PathBuf>,
    /// The free-space limits.
    pub disk: DiskThresholds,
}

/// How long a validation, a git read or a worktree operation may take by default
/// (`paths.deadline_ms`) before the caller gets a `timed_out` answer instead of waiting on
/// a hung file system.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// How old a validation shown in a listing may be by default (`paths.listing_cache_ms`):
/// see [`PathPolicy::validate_listed`].
pub const DEFAULT_LISTING_AGE: Duration = Duration::from_secs(1);

impl Default for PolicyOptions {
    /// The server's home, no extra roots, DESIGN.md's disk limits.
    fn default() -> PolicyOptions {
        PolicyOptions {
            home: dirs::home_dir(),
            restricted: Vec::new(),
            allowed_roots: Vec::new(),
            disk: DiskThresholds::default(),
        }
    }
}

/// The path policy of this host: cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct PathPolicy {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    rules: Rules,
    home: Option<String>,
    disk: DiskThresholds,
    deadline: Duration,
    in_flight: in_flight::InFlight,
    stuck: stuck::Stuck,
    /// Listed directories' validations, at most `paths.listing_cache_ms` old.
    recent: recent::Recent,
}

/// The outcome of [`PathPolicy::validate_many`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchValidation {
    /// One validation per path given, in the same order.
    pub validations: Vec<Validation>,
    /// The counts.
    pub summary: BatchSummary,
}

/// How many paths of a batch passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BatchSummary {
    /// Paths given.
    pub total: usize,
    /// Paths with `valid: true`.
    pub valid: usize,
    /// Paths with `valid: false`.
    pub invalid: usize,
}

impl PathPolicy {
    /// The policy of `[paths]` with the server's home directory.
    pub fn from_settings(settings: &PathSettings) -> PathPolicy {
        let options = PolicyOptions {
            restricted: settings.restricted.clone(),
            allowed_roots: settings.allowed_roots.clone(),
            ..PolicyOptions::default()
        };
        let deadline = Duration::from_millis(settings.deadline_ms.max(1));
        let listing_age = Duration::from_millis(settings.listing_cache_ms);
        PathPolicy::with_limits(options, deadline, listing_age)
    }

    /// Builds the rules for this host. Each root is taken as written and, when it exists, as
    /// the file system resolves it (`/lib64` is `/usr/lib64` on merged-/usr systems, `/etc`
    /// is `/private/etc` on macOS), so neither spelling gets past the check. This reads the
    /// file system once, at start-up.
    pub fn new(options: PolicyOptions) -> PathPolicy {
        PathPolicy::with_deadline(options, DEFAULT_DEADLINE)
    }

    /// [`PathPolicy::new`] with calls on the file system given up after `deadline`.
    pub fn with_deadline(options: PolicyOptions, deadline: Duration) -> PathPolicy {
        PathPolicy::with_limits(options, deadline, DEFAULT_LISTING_AGE)
    }

    /// [`PathPolicy::with_deadline`] with listed validations at most `listing_age` old
    /// ([`validate_listed`](PathPolicy::validate_listed); zero reads every listing afresh).
    pub fn with_limits(
        options: PolicyOptions,
        deadline: Duration,
        listing_age: Duration,
    ) -> PathPolicy {
        let platform = Platform::current();
        let home = options
            .home
            .as_deref()
            .and_then(Path::to_str)
            .map(str::to_owned);
        let expand = |root: &Path| -> Option<String> {
            let text = root.to_str()?;
            match text.strip_prefix('~') {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    Some(format!("{}{rest}", home.as_deref()?))
                }
                _ => Some(text.to_owned()),
            }
        };
        let restricted: Vec<String> = options
            .restricted
            .iter()
            .filter_map(|root| expand(root))
            .collect();
        let allowed: Vec<String> = options
            .allowed_roots
            .iter()
            .filter_map(|root| expand(root))
            .collect();
        let mut rules = Rules::new(platform, &restricted, &allowed);
        let builtin = platform
            .restricted_roots()
            .iter()
            .map(|root| root.to_string());
        for root in builtin.chain(restricted) {
            if let Some(resolved) = resolved(&root) {
                rules.add_restricted(&resolved);
            }
        }
        for root in allowed {
            if let Some(resolved) = resolved(&root) {
                rules.add_allowed(&resolved);
            }
        }
        PathPolicy {
            inner: Arc::new(Inner {
                rules,
                home,
                disk: options.disk,
                deadline,
                in_flight: in_flight::InFlight::default(),
                stuck: stuck::Stuck::default(),
                recent: recent::Recent::new(listing_age),
            }),
        }
    }

    /// The rules in force, for callers that want the verdict on text alone.
    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }

    /// How long a call on the file system may take (`paths.deadline_ms`).
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Validates one path without blocking the runtime. The answer is always read after
    /// this call began; callers asking for the same path at the same time share one reading
    /// (see `in_flight`), so a burst of requests for one session reads its directory and
    /// repository once per round, not once per request. A reading that takes longer than
    /// the deadline answers `timed_out` (refused); it finishes in the background.
    pub async fn validate(&self, raw: &str) -> Validation {
        if self.inner.stuck.contains(raw) {
            return self.timed_out(raw);
        }
        let joined = self.inner.in_flight.join(raw, |sender| {
            let rounds = Rounds {
                policy: self.clone(),
                raw: raw.to_owned(),
                sender,
                over: false,
            };
            // Dropped unstarted (shutdown), the rounds forget the path (`Rounds::drop`).
            drop(tokio::task::spawn_blocking(move || rounds.run()));
        });
        match tokio::time::timeout(self.inner.deadline, joined).await {
            Ok(Some(validation)) => Validation::clone(&validation),
            Ok(None) => incomplete(raw, "it was interrupted"),
            Err(_) => {
                // The round clears it when it returns (`Rounds::run`).
                self.inner.stuck.mark(raw);
                self.timed_out(raw)
            }
        }
    }

    /// Runs `work` on the blocking pool and waits for it at most the deadline; `None` when
    /// it did not answer in time, or `key` is still stuck from an earlier call. A call
    /// that outlives the deadline marks `key` stuck until it returns.
    async fn blocking_within<T: Send + 'static>(
        &self,
        key: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<Result<T, tokio::task::JoinError>> {
        if self.inner.stuck.contains(key) {
            return None;
        }
        let mut running = tokio::task::spawn_blocking(work);
        match tokio::time::timeout(self.inner.deadline, &mut running).await {
            Ok(done) => Some(done),
            Err(_) => {
                self.inner.stuck.mark(key);
                let (policy, key) = (self.clone(), key.to_owned());
                tokio::spawn(async move {
                    let _ = running.await;
                    policy.inner.stuck.clear(&key);
                });
                None
            }
        }
    }

    /// The answer for a path whose file system did not answer within the deadline.
    fn timed_out(&self, raw: &str) -> Validation {
        let ms = self.inner.deadline.as_millis();
        Validation::refused(
            raw,
            vec![Check::error(
                CheckCode::TimedOut,
                format!("the file system did not answer within {ms} ms while validating `{raw}`"),
            )],
        )
    }

    /// The git state of `path` ([`git::state`]) within the deadline.
    ///
    /// # Errors
    ///
    /// [`PathError::TimedOut`] when the repository does not answer in time, else what
    /// [`git::read_state`] returns.
    pub async fn git_state(&self, path: &Path) -> Result<Option<GitState>, PathError> {
        let owned = path.to_path_buf();
        let key = path.to_string_lossy();
        match self
            .blocking_within(&key, move || git::read_state(&owned))
            .await
        {
            Some(done) => done.map_err(PathError::Interrupted)?,
            None => Err(self.git_timed_out(path)),
        }
    }

    fn git_timed_out(&self, path: &Path) -> PathError {
        PathError::TimedOut {
            path: path.to_path_buf(),
            after: self.inner.deadline,
        }
    }

    /// A new worktree ([`worktree::create`]) within the deadline.
    ///
    /// # Errors
    ///
    /// [`PathError::TimedOut`] when the repository does not answer in time, else what
    /// [`worktree::create_blocking`] returns.
    pub async fn create_worktree(
        &self,
        repo: &Path,
        path: &Path,
        branch: &str,
    ) -> Result<GitState, PathError> {
        let key = repo.to_string_lossy().into_owned();
        let (repo, owned, branch) = (repo.to_path_buf(), path.to_path_buf(), branch.to_owned());
        let work = move || worktree::create_blocking(&repo, &owned, &branch);
        match self.blocking_within(&key, work).await {
            Some(done) => done.map_err(PathError::Interrupted)?,
            None => Err(self.git_timed_out(Path::new(&key))),
        }
    }

    /// [`open_directory`](PathPolicy::open_directory) on the blocking pool, within the
    /// deadline (a directory that does not answer in time is refused as `timed_out`).
    pub async fn open_directory_within(
        &self,
        raw: &str,
    ) -> Result<OpenedDirectory, DirectoryRefused> {
        let policy = self.clone();
        let owned = raw.to_owned();
        let opening = move || policy.open_directory(&owned);
        let refused = |check| DirectoryRefused {
            path: raw.to_owned(),
            checks: vec![check],
        };
        match self.blocking_within(raw, opening).await {
            Some(Ok(opened)) => opened,
            Some(Err(error)) => Err(refused(Check::error(
                CheckCode::ValidationIncomplete,
                format!("opening `{raw}` did not finish: {error}"),
            ))),
            None => {
                let ms = self.inner.deadline.as_millis();
                Err(refused(Check::error(
                    CheckCode::TimedOut,
                    format!("the file system did not answer within {ms} ms while opening `{raw}`"),
                )))
            }
        }
    }

    /// [`validate`](PathPolicy::validate) with the repositories already described in the
    /// same batch.
    async fn validate_sharing(&self, raw: &str, git: Arc<git::States>) -> Validation {
        let policy = self.clone();
        let text = raw.to_owned();
        let reading = move || policy.validate_in(&git, &text);
        match self.blocking_within(raw, reading).await {
            Some(Ok(validation)) => validation,
            Some(Err(error)) => incomplete(raw, &error.to_string()),
            None => self.timed_out(raw),
        }
    }

    /// Validates one path in place; for code already off the async runtime (and the
    /// benchmark and fuzz target).
    pub fn validate_blocking(&self, raw: &str) -> Validation {
        self.validate_in(&git::States::default(), raw)
    }

    /// Opens a working directory to start a process in, and judges what was opened: the
    /// text rules, the roots against where the descriptor really is, the server's access
    /// and the free space — the error-level checks of [`validate`](PathPolicy::validate)
    /// minus git, cheap enough for every restart. A missing directory is refused here (it
    /// is created only when a session is created). Blocking, but only a handful of system
    /// calls.
    pub fn open_directory(&self, raw: &str) -> Result<OpenedDirectory, DirectoryRefused> {
        let inner = &self.inner;
        open::open(&inner.rules, inner.home.as_deref(), inner.disk, raw)
    }

    fn validate_in(&self, git: &git::States, raw: &str) -> Validation {
        let inner = &self.inner;
        validate::validate(&inner.rules, inner.home.as_deref(), inner.disk, git, raw)
    }

    /// Validates every path, several at once, and answers in the order given. Each answer
    /// is the one [`validate`](PathPolicy::validate) gives for that path; a repository that
    /// several paths are in is described once for the whole batch.
    pub async fn validate_many(&self, paths: Vec<String>) -> BatchValidation {
        let git = Arc::new(git::States::default());
        let validations: Vec<Validation> = stream::iter(paths)
            .map(|path| {
                let git = Arc::clone(&git);
                async move { self.validate_sharing(&path, git).await }
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await;
        let valid = validations
            .iter()
            .filter(|validation| validation.valid)
            .count();
        BatchValidation {
            summary: BatchSummary {
                total: validations.len(),
                valid,
                invalid: validations.len() - valid,
            },
            validations,
        }
    }
}

impl PathPolicy {
    /// The validations a listing shows, in the order of `paths`: each read at most
    /// `paths.listing_cache_ms` before this answers (see `recent`), a path listed several
    /// times read once, and the paths not known recently enough read together as
    /// [`validate_many`](PathPolicy::validate_many) does. Those past half their age are
    /// served and read again in the background, so the next listing finds them fresh.
    pub async fn validate_listed(&self, paths: &[&str]) -> Vec<Arc<Validation>> {
        let now = Instant::now();
        let mut unique: HashMap<&str, Option<Arc<Validation>>> = HashMap::new();
        let (mut unknown, mut due) = (Vec::new(), Vec::new());
        for &raw in paths {
            if unique.contains_key(raw) {
                continue;
            }
            let known = match self.inner.recent.get(raw, now) {
                recent::Known::Fresh {
                    validation,
                    refresh,
                } => {
                    if refresh {
                        due.push(raw.to_owned());
                    }
                    Some(validation)
                }
                recent::Known::Unknown => {
                    unknown.push(raw.to_owned());
                    None
                }
            };
            unique.insert(raw, known);
        }
        if !due.is_empty() {
            let policy = self.clone();
            tokio::spawn(async move { policy.read_listed(due).await });
        }
        for (raw, validation) in unknown.iter().zip(self.read_listed(unknown.clone()).await) {
            unique.insert(raw.as_str(), Some(validation));
        }
        paths
            .iter()
            .map(|raw| match unique.get(raw) {
                Some(Some(validation)) => Arc::clone(validation),
                // Every path was either known or read just above.
                _ => Arc::new(incomplete(raw, "it was not read")),
            })
            .collect()
    }

    /// Reads `paths` as one batch and keeps each answer as of when the batch began.
    async fn read_listed(&self, paths: Vec<String>) -> Vec<Arc<Validation>> {
        let read_at = Instant::now();
        let git = Arc::new(git::States::default());
        stream::iter(paths)
            .map(|raw| {
                let git = Arc::clone(&git);
                async move {
                    let validation = Arc::new(self.validate_sharing(&raw, git).await);
                    self.inner
                        .recent
                        .keep(&raw, Arc::clone(&validation), read_at);
                    validation
                }
            })
            .buffered(BATCH_CONCURRENCY)
            .collect()
            .await
    }
}

/// The rounds of validation of one path (see `in_flight`), run on the blocking pool.
struct Rounds {
    policy: PathPolicy,
    raw: String,
    sender: tokio::sync::watch::Sender<(u64, Option<Arc<Validation>>)>,
    /// The rounds ended as `in_flight` asked.
    over: bool,
}

impl Rounds {
    fn run(mut self) {
        let in_flight = &self.policy.inner.in_flight;
        let mut round = 1;
        loop {
            let validation = self.policy.validate_blocking(&self.raw);
            // The path answered: it is not stuck (any more).
            self.policy.inner.stuck.clear(&self.raw);
            if !in_flight.finished(&self.raw, round, validation, &self.sender) {
                self.over = true;
                return;
            }
            round += 1;
        }
    }
}

impl Drop for Rounds {
    /// A panic, or a task dropped before it ran: the waiting callers get `None` (the sender
    /// goes after this), and the path is forgotten so the next caller starts afresh.
    fn drop(&mut self) {
        if !self.over {
            self.policy.inner.in_flight.forget(&self.raw);
            self.policy.inner.stuck.clear(&self.raw);
        }
    }
}

/// The answer when a validation could not finish.
fn incomplete(raw: &str, why: &str) -> Validation {
    Validation::refused(
        raw,
        vec![Check::error(
            CheckCode::ValidationIncomplete,
            format!("the validation of `{raw}` did not finish: {why}"),
        )],
    )
}

/// The canonical form of an existing root, when it differs from how it was written.
fn resolved(root: &str) -> Option<String> {
    let canonical = std::fs::canonicalize(root).ok()?;
    let canonical = canonical.to_str()?;
    (canonical != root).then(|| canonical.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PathPolicy {
        PathPolicy::new(PolicyOptions {
            home: None,
            ..PolicyOptions::default()
        })
    }

    #[tokio::test]
    async fn a_validation_is_read_after_it_was_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("later");
        let raw = path.to_str().unwrap();
        let policy = policy();
        assert!(!policy.validate(raw).await.exists);
        std::fs::create_dir(&path).unwrap();
        assert!(policy.validate(raw).await.exists, "no stale answer");
        std::fs::remove_dir(&path).unwrap();
        assert!(!policy.validate(raw).await.exists);
        assert_eq!(policy.inner.in_flight.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_validations_of_a_path_share_rounds_and_are_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().to_str().unwrap().to_owned();
        let policy = policy();
        // Free space may change between readings; what the path is may not.
        let seen = |v: Validation| (v.path, v.valid, v.exists, v.is_directory, v.permissions);
        let alone = seen(policy.validate_blocking(&raw));
        let answers = futures::future::join_all((0..64).map(|_| policy.validate(&raw))).await;
        for answer in answers {
            assert_eq!(seen(answer), alone);
        }
        assert_eq!(policy.inner.in_flight.len(), 0);
    }

    fn listing_policy(age: Duration) -> PathPolicy {
        let options = PolicyOptions {
            home: None,
            ..PolicyOptions::default()
        };
        PathPolicy::with_limits(options, DEFAULT_DEADLINE, age)
    }

    #[tokio::test]
    async fn a_listed_directory_deleted_or_made_a_repository_shows_once_the_bound_passed() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let raw = work.to_str().unwrap();
        let age = Duration::from_millis(300);
        let policy = listing_policy(age);
        let first = policy.validate_listed(&[raw, raw]).await;
        assert!(first[0].exists && !first[0].is_git_repo);
        assert!(
            Arc::ptr_eq(&first[0], &first[1]),
            "one reading per directory"
        );
        git2::Repository::init(&work).unwrap();
        // Past the bound, the next listing reads it again, whatever it had kept.
        tokio::time::sleep(age).await;
        assert!(policy.validate_listed(&[raw]).await[0].is_git_repo);
        std::fs::remove_dir_all(&work).unwrap();
        tokio::time::sleep(age).await;
        let gone = &policy.validate_listed(&[raw]).await[0];
        assert!(!gone.exists);
        assert!(gone.has(CheckCode::DoesNotExist), "{gone:?}");
    }

    #[tokio::test]
    async fn within_the_bound_a_listing_reuses_what_it_read() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().to_str().unwrap();
        let policy = listing_policy(Duration::from_secs(3600));
        let first = policy.validate_listed(&[raw]).await;
        let again = policy.validate_listed(&[raw]).await;
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        // Nothing but a listing uses it: a single validation reads afresh.
        std::fs::remove_dir(dir.path()).unwrap();
        assert!(!policy.validate(raw).await.exists);
        // With no bound at all, every listing reads.
        let fresh = listing_policy(Duration::ZERO);
        assert!(!fresh.validate_listed(&[raw]).await[0].exists);
    }

    #[tokio::test]
    async fn a_listing_answers_hostile_paths_as_a_validation_does() {
        let long = format!("/{}", "x".repeat(5000));
        let hostile = [
            "",
            "relative/dir",
            "/",
            "/tmp/\0nul",
            "~nobody/x",
            "/proc/self",
            &long,
        ];
        let policy = listing_policy(Duration::from_secs(3600));
        let listed = policy.validate_listed(&hostile).await;
        for (raw, listed) in hostile.iter().zip(&listed) {
            let alone = policy.validate_blocking(raw);
            assert_eq!(
                (listed.valid, listed.codes()),
                (alone.valid, alone.codes()),
                "{raw:?}"
            );
            assert_eq!(listed.path, alone.path, "{raw:?}");
        }
        // Cached or not, the same again.
        let again = policy.validate_listed(&hostile).await;
        for (first, again) in listed.iter().zip(&again) {
            assert_eq!(first.codes(), again.codes());
        }
    }

    /// A repository whose `.git/config` is a FIFO: opening it blocks until a writer comes,
    /// as a read on a hung mount does.
    fn hung_repository(dir: &Path) -> PathBuf {
        let repo = git2::Repository::init(dir).unwrap();
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        repo.commit(Some("HEAD"), &signature, &signature, "one", &tree, &[])
            .unwrap();
        let fifo = dir.join(".git/config");
        std::fs::remove_file(&fifo).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from(0o600)).unwrap();
        fifo
    }

    /// Lets the readers blocked on `fifo` go and leaves an empty config in its place.
    fn release(fifo: &Path) {
        let flags = rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK;
        let writer = rustix::fs::open(fifo, flags, rustix::fs::Mode::empty()).ok();
        std::fs::remove_file(fifo).unwrap();
        std::fs::write(fifo, "").unwrap();
        drop(writer);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hung_repository_times_out_every_call_until_it_answers_again() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let fifo = hung_repository(&repo);
        let raw = repo.to_str().unwrap().to_owned();
        let policy = PathPolicy::with_deadline(
            PolicyOptions {
                home: None,
                ..PolicyOptions::default()
            },
            Duration::from_millis(300),
        );
        let timed_out = |e: Result<_, PathError>| matches!(e, Err(PathError::TimedOut { .. }));
        assert!(timed_out(policy.git_state(&repo).await.map(|_| ())));
        // Known stuck now: answered without another thread, the same way.
        assert!(timed_out(policy.git_state(&repo).await.map(|_| ())));
        let worktree = policy
            .create_worktree(&repo, &dir.path().join("wt"), "b")
            .await;
        assert!(timed_out(worktree.map(|_| ())));
        for validation in [
            policy.validate(&raw).await,
            policy.validate_many(vec![raw.clone()]).await.validations[0].clone(),
        ] {
            assert!(!validation.valid);
            assert_eq!(validation.codes(), ["timed_out"], "{validation:?}");
        }
        // The mount answers again: so do the calls, once the stuck readings returned.
        release(&fifo);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while policy.inner.stuck.contains(&raw) {
            assert!(std::time::Instant::now() < deadline, "the path stays stuck");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(policy.git_state(&repo).await.unwrap().is_some());
    }
}
