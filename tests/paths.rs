//! The path validator and the git helpers against real directories, symlinks and
//! repositories in a temporary directory (repositories made with git2, no `git` binary).
//!
//! Tests run as root on the build machine, and root passes every read and write permission
//! check of the kernel. The table asserts the truth for whichever user runs it; the
//! permission-denied test re-runs itself as `nobody` when started as root, so the refusals
//! are really exercised.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use git2::{Repository, RepositoryInitOptions, Signature};
use session_manager::paths::{
    worktree, CheckCode, DiskThresholds, PathError, PathPolicy, PolicyOptions, Validation,
};
use tempfile::TempDir;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A repository with `main` checked out and one commit per message.
fn repo_with_commits(path: &Path, messages: &[&str]) -> Repository {
    let mut options = RepositoryInitOptions::new();
    options.initial_head("main");
    let repo = Repository::init_opts(path, &options).expect("init");
    for message in messages {
        commit_file(&repo, message);
    }
    repo
}

/// Writes a file named after `message` and commits it on HEAD.
fn commit_file(repo: &Repository, message: &str) -> git2::Oid {
    let workdir = repo.workdir().expect("work tree").to_path_buf();
    let name = format!("{}.txt", message.replace(' ', "_"));
    fs::write(workdir.join(&name), message).expect("write");
    let mut index = repo.index().expect("index");
    index.add_path(Path::new(&name)).expect("add");
    index.write().expect("index write");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let signature = Signature::now("test", "test@example.com").expect("signature");
    let parents: Vec<_> = repo
        .head()
        .ok()
        .and_then(|head| head.peel_to_commit().ok())
        .into_iter()
        .collect();
    let parents: Vec<_> = parents.iter().collect();
    repo.commit(
        Some("HEAD"),
        &signature,
        &signature,
        message,
        &tree,
        &parents,
    )
    .expect("commit")
}

/// Every kind of directory entry the table needs, under one temporary directory.
struct Fixture {
    _dir: TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = fs::canonicalize(dir.path()).expect("canonical");
        let p = |name: &str| root.join(name);
        for name in [
            "proj",
            "home/work",
            "secret/inner",
            "secretive",
            "日本語/ü",
            "readonly",
            "noperm",
            "allowed/inside",
            "repo/sub",
        ] {
            fs::create_dir_all(p(name)).expect("mkdir");
        }
        fs::write(p("proj/file.txt"), "x").expect("file");
        symlink(p("proj"), p("link_to_proj")).expect("link");
        symlink("/etc", p("link_to_etc")).expect("link");
        symlink("/", p("link_to_root")).expect("link");
        symlink(p("secret/inner"), p("link_to_secret")).expect("link");
        symlink(p("proj/file.txt"), p("link_to_file")).expect("link");
        symlink(p("nowhere"), p("dangling")).expect("link");
        symlink(p("loop_b"), p("loop_a")).expect("link");
        symlink(p("loop_a"), p("loop_b")).expect("link");
        symlink(p("proj"), p("allowed/escape")).expect("link");
        symlink(p("allowed/inside"), p("into_allowed")).expect("link");

        let repo = repo_with_commits(&p("repo"), &["first", "second"]);
        fs::write(p("repo/sub/keep.txt"), "x").expect("file");
        commit_file(&repo, "third");
        let dirty = repo_with_commits(&p("dirty"), &["first", "second"]);
        fs::write(p("dirty/first.txt"), "changed").expect("modify");
        fs::write(p("dirty/new.txt"), "new").expect("untracked");
        drop(dirty);
        let detached = repo_with_commits(&p("detached"), &["first", "second"]);
        let first = detached.revparse_single("HEAD~1").expect("HEAD~1").id();
        detached.set_head_detached(first).expect("detach");
        Repository::init_bare(p("bare.git")).expect("bare");
        let empty = Repository::init_opts(
            p("unborn"),
            RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init");
        drop(empty);
        worktree::create_blocking(&p("repo"), &p("repo_wt"), "feature").expect("worktree");

        fs::set_permissions(p("readonly"), fs::Permissions::from_mode(0o555)).expect("chmod");
        fs::set_permissions(p("noperm"), fs::Permissions::from_mode(0o000)).expect("chmod");
        Fixture { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn text(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The policy of the table: a home inside the fixture, `secret` restricted, no disk
    /// thresholds (the machine's free space must not change the table).
    fn policy(&self) -> PathPolicy {
        PathPolicy::new(PolicyOptions {
            home: Some(self.path("home")),
            restricted: vec![self.path("secret")],
            allowed_roots: Vec::new(),
            disk: DiskThresholds {
                critical_bytes: 0,
                low_bytes: 0,
            },
        })
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Give the directories their permissions back so the temporary directory can go.
        for name in ["readonly", "noperm"] {
            let _ = fs::set_permissions(self.path(name), fs::Permissions::from_mode(0o755));
        }
    }
}

/// One row: the input, and what the validation must say about it.
struct Case {
    input: String,
    valid: bool,
    exists: bool,
    directory: bool,
    codes: &'static [&'static str],
    /// The canonical path, when the row is about where the path leads.
    path: Option<PathBuf>,
}

fn case(
    input: impl Into<String>,
    valid: bool,
    exists: bool,
    directory: bool,
    codes: &'static [&'static str],
) -> Case {
    Case {
        input: input.into(),
        valid,
        exists,
        directory,
        codes,
        path: None,
    }
}

impl Case {
    fn leads_to(mut self, path: PathBuf) -> Case {
        self.path = Some(path);
        self
    }
}

fn code_set(validation: &Validation) -> BTreeSet<&'static str> {
    validation.codes().into_iter().collect()
}

#[tokio::test]
async fn the_table() {
    let f = Fixture::new();
    let t = |name: &str| f.text(name);
    let root = is_root();
    // Root may write anywhere the kernel lets it; an ordinary user may not.
    let perm_codes: &'static [&'static str] = if root {
        &[]
    } else {
        &["not_readable", "not_writable", "not_searchable"]
    };
    let ro_codes: &'static [&'static str] = if root { &[] } else { &["not_writable"] };
    let create_in_ro: &'static [&'static str] = if root {
        &["does_not_exist"]
    } else {
        &["does_not_exist", "parent_not_writable"]
    };
    let long_name = format!("{}/{}", t("proj"), "n".repeat(256));
    let long_path = format!("{}{}", t("proj"), "/abcdefgh".repeat(460));
    let deep_ok = format!("{}{}", t("proj"), "/d".repeat(1000));

    let cases = vec![
        // Plain directories, files, missing paths.
        case(t("proj"), true, true, true, &[]).leads_to(f.path("proj")),
        case(format!("{}/", t("proj")), true, true, true, &[]).leads_to(f.path("proj")),
        case(format!("{}/./.", t("proj")), true, true, true, &[]).leads_to(f.path("proj")),
        case(t("proj/file.txt"), false, true, false, &["not_a_directory"]),
        case(
            t("proj/file.txt/sub"),
            false,
            false,
            false,
            &["not_a_directory"],
        ),
        case(
            format!("{}/..", t("proj/file.txt")),
            false,
            false,
            false,
            &["not_a_directory", "traversal"],
        ),
        case(t("proj/missing"), true, false, false, &["does_not_exist"])
            .leads_to(f.path("proj/missing")),
        case(
            t("proj/missing/deeper/still"),
            true,
            false,
            false,
            &["does_not_exist"],
        ),
        case(deep_ok, true, false, false, &["does_not_exist"]),
        // Traversal is resolved before the check, the way the kernel resolves it.
        case(
            format!("{}/../proj", t("proj")),
            true,
            true,
            true,
            &["traversal"],
        )
        .leads_to(f.path("proj")),
        case(
            format!("{}/missing/..", t("proj")),
            true,
            true,
            true,
            &["traversal"],
        )
        .leads_to(f.path("proj")),
        case(
            format!("{}/../../../../../../etc", t("proj")),
            false,
            true,
            true,
            &["restricted_root", "traversal"],
        ),
        case(
            format!("/etc/..{}", t("proj")),
            true,
            true,
            true,
            &["traversal"],
        )
        .leads_to(f.path("proj")),
        case(
            format!("{}/../secret", t("secretive")),
            false,
            true,
            true,
            &["restricted_root", "traversal"],
        ),
        // Symlinks: followed, and judged where they lead.
        case(t("link_to_proj"), true, true, true, &["symlink_resolved"]).leads_to(f.path("proj")),
        case(t("link_to_etc"), false, true, true, &["symlink_escape"])
            .leads_to(PathBuf::from("/etc")),
        case(
            t("link_to_etc/ssh_missing_dir"),
            false,
            false,
            false,
            &["symlink_escape", "does_not_exist"],
        ),
        case(t("link_to_secret"), false, true, true, &["symlink_escape"]),
        case(
            t("link_to_root"),
            false,
            true,
            true,
            &["root_directory", "symlink_resolved"],
        )
        .leads_to(PathBuf::from("/")),
        case(
            format!("{}/..", t("link_to_etc")),
            false,
            true,
            true,
            &["root_directory", "symlink_resolved", "traversal"],
        )
        .leads_to(PathBuf::from("/")),
        case(
            t("link_to_file"),
            false,
            true,
            false,
            &["not_a_directory", "symlink_resolved"],
        ),
        case(t("dangling"), false, false, false, &["broken_symlink"]),
        case(t("dangling/sub"), false, false, false, &["broken_symlink"]),
        case(t("loop_a"), false, false, false, &["symlink_loop"]),
        // Restricted roots, component by component.
        case("/etc", false, true, true, &["restricted_root"]),
        case("/etc/", false, true, true, &["restricted_root"]),
        case(
            "/lib",
            false,
            true,
            true,
            &["restricted_root", "symlink_resolved"],
        ),
        case(
            "/lib64",
            false,
            true,
            true,
            &["restricted_root", "symlink_resolved"],
        ),
        case("/usr/lib64", false, true, true, &["restricted_root"]),
        case(
            "/bin",
            false,
            true,
            true,
            &["restricted_root", "symlink_resolved"],
        ),
        case("/dev/shm", false, true, true, &["restricted_root"]),
        case("/", false, true, true, &["root_directory"]),
        case(t("secret"), false, true, true, &["restricted_root"]),
        case(
            t("secret/inner/x"),
            false,
            false,
            false,
            &["restricted_root", "does_not_exist"],
        ),
        case(t("secretive"), true, true, true, &[]),
        // The text itself.
        case("", false, false, false, &["empty_path"]),
        case("relative/path", false, false, false, &["relative_path"]),
        case("./proj", false, false, false, &["relative_path"]),
        case("~", true, true, true, &[]).leads_to(f.path("home")),
        case("~/work", true, true, true, &[]).leads_to(f.path("home/work")),
        case("~/new", true, false, false, &["does_not_exist"]).leads_to(f.path("home/new")),
        case("~root/x", false, false, false, &["tilde_user"]),
        case(
            format!("{}/a\0b", t("proj")),
            false,
            false,
            false,
            &["nul_byte"],
        ),
        case(
            format!("{}/a\nb", t("proj")),
            false,
            false,
            false,
            &["control_characters", "does_not_exist"],
        ),
        case(
            format!("{}/$(touch pwned)", t("proj")),
            true,
            false,
            false,
            &["shell_metacharacters", "does_not_exist"],
        ),
        case(
            format!("{}/dir ", t("proj")),
            true,
            false,
            false,
            &["trailing_space_or_dot", "does_not_exist"],
        ),
        case(t("日本語/ü"), true, true, true, &[]),
        case(long_name, false, false, false, &["name_too_long"]),
        case(long_path, false, false, false, &["path_too_long"]),
        // Permissions, as the kernel answers for the user running the tests.
        case(t("readonly"), root, true, true, ro_codes),
        case(t("noperm"), root, true, true, perm_codes),
        case(t("readonly/new"), root, false, false, create_in_ro),
        // Git repositories.
        case(t("repo"), true, true, true, &[]),
        case(t("repo/sub"), true, true, true, &[]),
        case(t("dirty"), true, true, true, &[]),
        case(t("detached"), true, true, true, &[]),
        case(t("bare.git"), true, true, true, &[]),
        case(t("unborn"), true, true, true, &[]),
        case(t("repo_wt"), true, true, true, &[]),
    ];
    assert!(cases.len() >= 40, "the table has {} rows", cases.len());

    let policy = f.policy();
    let inputs: Vec<String> = cases.iter().map(|case| case.input.clone()).collect();
    let batch = policy.validate_many(inputs).await;
    assert_eq!(batch.validations.len(), cases.len());
    let mut failures = Vec::new();
    for (case, validation) in cases.iter().zip(&batch.validations) {
        let expected: BTreeSet<&str> = case.codes.iter().copied().collect();
        let got = code_set(validation);
        let path_ok = case
            .path
            .as_ref()
            .is_none_or(|path| &validation.path == path);
        if validation.input != case.input
            || validation.valid != case.valid
            || validation.exists != case.exists
            || validation.is_directory != case.directory
            || got != expected
            || !path_ok
        {
            let shown: String = case.input.chars().take(120).collect();
            failures.push(format!(
                "{shown:?}: expected valid={} exists={} dir={} codes={:?} path={:?}\n   got valid={} exists={} dir={} codes={:?} path={:?}\n   {:?}",
                case.valid, case.exists, case.directory, expected, case.path,
                validation.valid, validation.exists, validation.is_directory, got, validation.path,
                validation.checks
            ));
        }
        // The wire contract: errors and warnings are the messages of those levels.
        assert_eq!(validation.valid, validation.validation_errors.is_empty());
        assert_eq!(validation.readable, validation.permissions.read);
        assert_eq!(validation.writable, validation.permissions.write);
    }
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let valid = cases.iter().filter(|case| case.valid).count();
    assert_eq!(batch.summary.total, cases.len());
    assert_eq!(batch.summary.valid, valid);
    assert_eq!(batch.summary.invalid, cases.len() - valid);

    // Validation never creates anything.
    for name in [
        "proj/missing",
        "proj/pwned",
        "home/new",
        "readonly/new",
        "proj/dir ",
    ] {
        assert!(!f.path(name).exists(), "{name} was created");
    }
    assert!(!Path::new("pwned").exists());
}

#[tokio::test]
async fn git_state_of_each_kind_of_repository() {
    let f = Fixture::new();
    let policy = f.policy();
    let git = |name: &str| {
        let validation = policy.validate_blocking(&f.text(name));
        assert!(validation.is_git_repo, "{name}");
        validation.git.expect("git state")
    };

    let repo = git("repo");
    assert_eq!(repo.root, f.path("repo"));
    assert_eq!(repo.branch.as_deref(), Some("main"));
    assert!(!repo.detached && !repo.bare && !repo.is_worktree);
    assert_eq!(repo.head_summary.as_deref(), Some("third"));
    assert_eq!(repo.head_commit.as_ref().map(String::len), Some(40));
    // `sub/` holds only an untracked file: one untracked entry, as `git status` lists it.
    assert_eq!((repo.dirty, repo.untracked), (0, 1));
    assert_eq!((repo.upstream, repo.ahead, repo.behind), (None, None, None));
    assert_eq!(repo.worktrees, vec![f.path("repo_wt")]);
    assert_eq!(git("repo/sub").root, f.path("repo"));

    let dirty = git("dirty");
    assert_eq!((dirty.dirty, dirty.untracked), (1, 1));

    let detached = git("detached");
    assert!(detached.detached);
    assert_eq!(detached.branch, None);
    assert_eq!(detached.head_summary.as_deref(), Some("first"));

    let bare = git("bare.git");
    assert!(bare.bare);
    assert_eq!(bare.root, f.path("bare.git"));
    assert_eq!(bare.head_commit, None);

    let unborn = git("unborn");
    assert_eq!(unborn.branch.as_deref(), Some("main"));
    assert_eq!(unborn.head_commit, None);

    // A linked worktree: its `.git` is a file, and it counts as a repository.
    assert!(f.path("repo_wt/.git").is_file());
    let linked = git("repo_wt");
    assert!(linked.is_worktree);
    assert_eq!(linked.root, f.path("repo_wt"));
    assert_eq!(linked.branch.as_deref(), Some("feature"));
    assert_eq!(linked.head_commit, repo.head_commit);

    assert!(!policy.validate_blocking(&f.text("proj")).is_git_repo);
    assert_eq!(
        session_manager::paths::git::state(&f.path("proj"))
            .await
            .ok(),
        Some(None)
    );
}

#[tokio::test]
async fn ahead_and_behind_count_against_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fs::canonicalize(dir.path()).expect("canonical");
    let repo = repo_with_commits(&path, &["one", "two"]);
    let two = repo.head().expect("head").target().expect("oid");
    repo.remote("origin", "/nonexistent/origin.git")
        .expect("remote");
    repo.reference("refs/remotes/origin/main", two, true, "test")
        .expect("ref");
    repo.find_branch("main", git2::BranchType::Local)
        .expect("main")
        .set_upstream(Some("origin/main"))
        .expect("upstream");
    commit_file(&repo, "three");
    commit_file(&repo, "four");
    let state = session_manager::paths::git::state(&path)
        .await
        .expect("read")
        .expect("repo");
    assert_eq!(state.upstream.as_deref(), Some("origin/main"));
    assert_eq!((state.ahead, state.behind), (Some(2), Some(0)));

    // Move the upstream past a commit the branch does not have.
    repo.set_head_detached(two).expect("detach");
    let side = commit_file(&repo, "side");
    repo.set_head("refs/heads/main").expect("back");
    repo.reference("refs/remotes/origin/main", side, true, "test")
        .expect("ref");
    let state = session_manager::paths::git::state(&path)
        .await
        .expect("read")
        .expect("repo");
    assert_eq!((state.ahead, state.behind), (Some(2), Some(1)));
}

#[tokio::test]
async fn disk_space_thresholds() {
    let f = Fixture::new();
    let with = |critical_bytes, low_bytes| {
        PathPolicy::new(PolicyOptions {
            home: None,
            restricted: Vec::new(),
            allowed_roots: Vec::new(),
            disk: DiskThresholds {
                critical_bytes,
                low_bytes,
            },
        })
    };
    let critical = with(u64::MAX, u64::MAX).validate(&f.text("proj")).await;
    assert!(!critical.valid);
    assert_eq!(critical.codes(), ["disk_space_critical"]);
    assert!(critical.disk_free_bytes.is_some_and(|free| free > 0));

    let low = with(0, u64::MAX).validate(&f.text("proj/missing")).await;
    assert!(low.valid);
    assert_eq!(low.codes(), ["does_not_exist", "disk_space_low"]);
    assert_eq!(low.warnings.len(), 2);

    let fine = with(0, 0).validate(&f.text("proj")).await;
    assert!(fine.valid && fine.checks.is_empty() && fine.warnings.is_empty());
    // The defaults are DESIGN.md's.
    let defaults = DiskThresholds::default();
    assert_eq!(
        (defaults.critical_bytes, defaults.low_bytes),
        (100 << 20, 1 << 30)
    );
}

#[tokio::test]
async fn allowed_roots_bound_where_symlinks_may_lead() {
    let f = Fixture::new();
    let policy = PathPolicy::new(PolicyOptions {
        home: Some(f.path("home")),
        restricted: Vec::new(),
        allowed_roots: vec![f.path("allowed"), PathBuf::from("~/work")],
        disk: DiskThresholds {
            critical_bytes: 0,
            low_bytes: 0,
        },
    });
    let codes = |name: &str| policy.validate_blocking(&f.text(name)).codes();
    assert_eq!(codes("allowed/inside"), Vec::<&str>::new());
    assert_eq!(codes("allowed/new"), ["does_not_exist"]);
    assert_eq!(codes("home/work"), Vec::<&str>::new());
    assert_eq!(codes("proj"), ["outside_allowed_roots"]);
    assert_eq!(
        codes("allowedx"),
        ["outside_allowed_roots", "does_not_exist"]
    );
    assert_eq!(codes("allowed/escape"), ["symlink_escape"]);
    assert_eq!(codes("into_allowed"), ["symlink_resolved"]);
    let escape = policy.validate_blocking(&f.text("allowed/escape"));
    let message = &escape.validation_errors[0];
    assert!(
        message.contains(&f.text("allowed/escape")) && message.contains(&f.text("proj")),
        "{message}"
    );
}

#[tokio::test]
async fn a_batch_keeps_its_order_and_counts() {
    let f = Fixture::new();
    let policy = f.policy();
    let inputs = vec![
        f.text("proj"),
        "/etc".to_owned(),
        f.text("proj"),
        String::new(),
        f.text("repo"),
    ];
    let batch = policy.validate_many(inputs.clone()).await;
    let got: Vec<&str> = batch.validations.iter().map(|v| v.input.as_str()).collect();
    assert_eq!(got, inputs);
    assert_eq!(
        (
            batch.summary.total,
            batch.summary.valid,
            batch.summary.invalid
        ),
        (5, 3, 2)
    );
    let empty = policy.validate_many(Vec::new()).await;
    assert_eq!(
        (
            empty.summary.total,
            empty.summary.valid,
            empty.summary.invalid
        ),
        (0, 0, 0)
    );
}

/// A batch shares the description of a repository between its paths; what each path gets
/// must still be exactly what it gets validated alone: paths in the same repository (its top,
/// a subdirectory, a path missing in it, a symlink into it), in a linked worktree, a bare
/// repository, one that cannot be read, outside any repository, missing and refused — each
/// given more than once.
#[tokio::test]
async fn a_batch_answers_each_path_as_it_is_answered_alone() {
    let f = Fixture::new();
    // HEAD names a commit that does not exist: discovered, but not describable.
    let broken = repo_with_commits(&f.path("broken"), &["first"]);
    fs::create_dir_all(f.path("broken/sub")).expect("mkdir");
    drop(broken);
    fs::write(
        f.path("broken/.git/refs/heads/main"),
        "0123456789012345678901234567890123456789\n",
    )
    .expect("break the branch");
    symlink(f.path("repo/sub"), f.path("link_to_repo_sub")).expect("link");
    let names = [
        "repo",
        "repo/sub",
        "repo/sub/missing",
        "link_to_repo_sub",
        "repo_wt",
        "dirty",
        "detached",
        "bare.git",
        "unborn",
        "broken",
        "broken/sub",
        "proj",
        "proj/missing",
        "link_to_proj",
        "link_to_etc",
        "dangling",
        "secret/inner",
    ];
    let mut inputs: Vec<String> = names.iter().map(|name| f.text(name)).collect();
    inputs.extend(["/etc".to_owned(), String::new(), "relative".to_owned()]);
    let inputs: Vec<String> = inputs.iter().chain(inputs.iter().rev()).cloned().collect();

    let policy = f.policy();
    let alone = policy.validate_blocking(&f.text("broken"));
    assert!(
        alone.has(CheckCode::GitUnreadable),
        "the broken repository is read as broken: {:?}",
        alone.checks
    );
    // The free space is read live and other processes write to the same disk: it is
    // compared as known or unknown (the policy's thresholds are 0, so it raises no check).
    let comparable = |validation: &Validation| Validation {
        disk_free_bytes: validation.disk_free_bytes.map(|_| 0),
        ..validation.clone()
    };
    let batch = policy.validate_many(inputs.clone()).await;
    assert_eq!(batch.validations.len(), inputs.len());
    for (input, in_batch) in inputs.iter().zip(&batch.validations) {
        let in_batch = comparable(in_batch);
        assert_eq!(
            in_batch,
            comparable(&policy.validate(input).await),
            "{input:?}"
        );
        assert_eq!(
            in_batch,
            comparable(&policy.validate_blocking(input)),
            "{input:?}"
        );
    }
}

#[tokio::test]
async fn the_validation_serialises_with_the_original_keys() {
    let f = Fixture::new();
    let validation = f.policy().validate(&f.text("repo")).await;
    let json = serde_json::to_value(&validation).expect("json");
    for key in [
        "path",
        "exists",
        "readable",
        "writable",
        "is_git_repo",
        "permissions",
        "validation_errors",
        "valid",
        "is_directory",
        "warnings",
        "checks",
        "disk_free_bytes",
        "git",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
    assert_eq!(json["permissions"]["read"], true);
    assert_eq!(json["git"]["branch"], "main");
    let refused = f.policy().validate("~root").await;
    let json = serde_json::to_value(&refused).expect("json");
    assert_eq!(json["checks"][0]["code"], "tilde_user");
    assert_eq!(json["checks"][0]["level"], "error");
    assert_eq!(json["valid"], false);
}

#[tokio::test]
async fn worktrees_are_made_on_a_new_branch_and_removed_only_when_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fs::canonicalize(dir.path()).expect("canonical");
    let repo = repo_with_commits(&base.join("main"), &["one"]);
    let main = base.join("main");

    let state = worktree::create(&main, &base.join("wt/clean"), "clean")
        .await
        .expect("create");
    assert!(state.is_worktree);
    assert_eq!(state.branch.as_deref(), Some("clean"));
    assert!(base.join("wt/clean/one.txt").is_file(), "checked out");
    assert!(matches!(
        worktree::create(&main, &base.join("wt/again"), "clean").await,
        Err(PathError::BranchExists { .. })
    ));
    assert!(matches!(
        worktree::create(&main, &base.join("wt/clean"), "other").await,
        Err(PathError::AlreadyExists { .. })
    ));
    assert!(matches!(
        worktree::create(&main, &base.join("wt/bad"), "bad..name").await,
        Err(PathError::InvalidBranch { .. })
    ));
    assert!(matches!(
        worktree::create(&base.join("wt"), &base.join("x"), "x").await,
        Err(PathError::NotARepository { .. })
    ));
    Repository::init(base.join("empty")).expect("init");
    assert!(matches!(
        worktree::create(&base.join("empty"), &base.join("wt/e"), "e").await,
        Err(PathError::NoCommit { .. })
    ));
    assert!(
        repo.find_branch("other", git2::BranchType::Local).is_err(),
        "no branch left behind"
    );

    // Clean and nothing new: removed, directory and all; the branch stays.
    worktree::remove(&base.join("wt/clean"), false)
        .await
        .expect("remove");
    assert!(!base.join("wt/clean").exists());
    assert!(repo.find_branch("clean", git2::BranchType::Local).is_ok());

    // Uncommitted work is refused, then forced.
    worktree::create(&main, &base.join("wt/dirty"), "dirty")
        .await
        .expect("create");
    fs::write(base.join("wt/dirty/one.txt"), "changed").expect("modify");
    fs::write(base.join("wt/dirty/new.txt"), "new").expect("untracked");
    match worktree::remove(&base.join("wt/dirty"), false).await {
        Err(PathError::Dirty {
            changed: 1,
            untracked: 1,
            ..
        }) => {}
        other => panic!("expected Dirty, got {other:?}"),
    }
    assert!(base.join("wt/dirty").exists());
    worktree::remove(&base.join("wt/dirty"), true)
        .await
        .expect("forced");
    assert!(!base.join("wt/dirty").exists());

    // A commit on no other branch is refused; once another branch has it, removal goes ahead.
    worktree::create(&main, &base.join("wt/ahead"), "ahead")
        .await
        .expect("create");
    let linked = Repository::open(base.join("wt/ahead")).expect("open");
    let tip = commit_file(&linked, "two");
    match worktree::remove(&base.join("wt/ahead"), false).await {
        Err(PathError::Unpushed { commits: 1, .. }) => {}
        other => panic!("expected Unpushed, got {other:?}"),
    }
    repo.reference("refs/remotes/origin/ahead", tip, true, "pushed")
        .expect("ref");
    worktree::remove(&base.join("wt/ahead"), false)
        .await
        .expect("remove once pushed");

    // Only linked worktrees are removed.
    assert!(matches!(
        worktree::remove(&main, true).await,
        Err(PathError::NotAWorktree { .. })
    ));
    assert!(main.join("one.txt").exists());
}

/// Root passes every permission check, so when run as root this test runs itself again as
/// `nobody` (uid 65534): the refusals below are the kernel's, not a simulation.
#[test]
fn permission_denied_is_the_kernels_answer() {
    const AS_NOBODY: &str = "SESSION_MANAGER_TEST_AS_NOBODY";
    if is_root() && std::env::var_os(AS_NOBODY).is_none() {
        let output = run_as_nobody("permission_denied_is_the_kernels_answer", AS_NOBODY);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "as nobody: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    assert!(!is_root(), "runs as an ordinary user");
    let dir = tempfile::tempdir().expect("tempdir");
    let base = fs::canonicalize(dir.path()).expect("canonical");
    for name in ["closed", "readonly", "listonly"] {
        fs::create_dir(base.join(name)).expect("mkdir");
    }
    fs::set_permissions(base.join("closed"), fs::Permissions::from_mode(0o000)).expect("chmod");
    fs::set_permissions(base.join("readonly"), fs::Permissions::from_mode(0o555)).expect("chmod");
    fs::set_permissions(base.join("listonly"), fs::Permissions::from_mode(0o444)).expect("chmod");
    let policy = PathPolicy::new(PolicyOptions {
        home: None,
        restricted: Vec::new(),
        allowed_roots: Vec::new(),
        disk: DiskThresholds {
            critical_bytes: 0,
            low_bytes: 0,
        },
    });
    let check = |name: &str| policy.validate_blocking(&base.join(name).display().to_string());

    let closed = check("closed");
    assert_eq!(
        closed.codes(),
        ["not_readable", "not_writable", "not_searchable"]
    );
    assert!(!closed.readable && !closed.writable && !closed.permissions.execute);
    let readonly = check("readonly");
    assert_eq!(readonly.codes(), ["not_writable"]);
    assert!(readonly.readable && !readonly.writable && readonly.permissions.execute);
    assert_eq!(
        check("readonly/new").codes(),
        ["does_not_exist", "parent_not_writable"]
    );
    assert_eq!(check("closed/inside").codes(), ["permission_denied"]);
    assert_eq!(check("listonly/inside").codes(), ["permission_denied"]);
    assert!(!check("closed/inside").valid);
    assert_eq!(
        policy.validate_blocking("/root/x").codes(),
        ["permission_denied"]
    );
    for name in ["closed", "readonly", "listonly"] {
        fs::set_permissions(base.join(name), fs::Permissions::from_mode(0o755))
            .expect("chmod back");
    }
}

/// Runs the test `name` of this binary again as `nobody`, with `marker` set in its
/// environment. The binary is copied into a directory of its own under `/tmp` first: the
/// checkout may sit where only its owner may enter (`mktemp -d` makes mode 0700, and so is
/// root's home), and then `nobody` could not even exec it. The copy's directory is
/// traversable by everyone, and `nobody` gets a temp directory of its own inside it.
fn run_as_nobody(name: &str, marker: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    const NOBODY: u32 = 65534;
    let stage = tempfile::Builder::new()
        .prefix("sm-as-nobody")
        .tempdir_in("/tmp")
        .expect("a directory under /tmp");
    fs::set_permissions(stage.path(), fs::Permissions::from_mode(0o755)).expect("chmod stage");
    let binary = stage.path().join("paths-test");
    fs::copy(std::env::current_exe().expect("test binary"), &binary).expect("copy test binary");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o755)).expect("chmod binary");
    let tmp = stage.path().join("tmp");
    fs::create_dir(&tmp).expect("mkdir tmp");
    std::os::unix::fs::chown(&tmp, Some(NOBODY), Some(NOBODY)).expect("chown tmp to nobody");
    std::process::Command::new(&binary)
        .args(["--exact", name, "--nocapture"])
        .env(marker, "1")
        .env("TMPDIR", &tmp)
        .current_dir("/")
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .expect("run the copied test binary as nobody")
}

// An agent's working directory is judged where it is used (issue 19): the real binary, a
// session in `race2`, and `race2` swapped for a symlink into a restricted directory — the
// probe that found the agent running and writing inside the restricted directory.

/// The real server with `secret` restricted and custom commands allowed, and a stamp file
/// (outside the working directory) where the fake agent notes each start.
struct Race {
    app: common::app::App,
    secret: TempDir,
    stamps: TempDir,
}

impl Race {
    fn start() -> Race {
        let secret = TempDir::new().unwrap();
        let stamps = TempDir::new().unwrap();
        let app = common::app::App::with_config(&format!(
            "[paths]\nrestricted = [{:?}]\n[agents]\nallow_custom_commands = true\nstop_grace_ms = 1000\n",
            secret.path().to_str().unwrap()
        ));
        Race {
            app,
            secret,
            stamps,
        }
    }

    fn work(&self) -> PathBuf {
        self.app.work.path().join("race2")
    }

    fn stamp(&self) -> PathBuf {
        self.stamps.path().join("stamp")
    }

    /// The pids of the agent's starts so far.
    fn starts(&self) -> Vec<u32> {
        fs::read_to_string(self.stamp())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("start ")?.split(' ').next()?.parse().ok())
            .collect()
    }

    async fn create(&self) -> String {
        self.create_running(&[]).await
    }

    /// A session whose fake agent gets `args` besides its stamp file.
    async fn create_running(&self, args: &[&str]) -> String {
        fs::create_dir(self.work()).unwrap();
        let stamp = self.stamp();
        let mut argv = vec!["--stamp", stamp.to_str().unwrap()];
        argv.extend_from_slice(args);
        let (status, body) = self
            .app
            .post(
                "/api/claude/sessions",
                &serde_json::json!({
                    "name": "race",
                    "working_directory": self.work(),
                    "agents": [{"agent_type": "BACKEND",
                                "command": common::fake(&argv)}],
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["session"]["id"].as_str().unwrap().to_owned()
    }

    async fn session(&self, id: &str) -> serde_json::Value {
        let (status, body) = self.app.get(&format!("/api/claude/sessions/{id}")).await;
        assert_eq!(status, 200, "{body}");
        body["session"].clone()
    }

    async fn wait_status(&self, id: &str, wanted: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + common::PATIENCE;
        loop {
            let session = self.session(id).await;
            if session["status"] == wanted {
                return session;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {wanted}: {session}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Restarts the server, with a new client: a kept-alive connection to the old server
    /// would fail the first request.
    fn restart(&mut self) {
        self.app.restart();
        self.app.client = reqwest::Client::new();
    }

    /// Waits until the agent has started `n` times (its first act is the stamp).
    async fn wait_starts(&self, n: usize) -> Vec<u32> {
        let deadline = std::time::Instant::now() + common::PATIENCE;
        loop {
            let starts = self.starts();
            if starts.len() >= n {
                return starts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {n} starts: {starts:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// `mv race2 race2.old; ln -s <secret> race2`.
    fn swap(&self) {
        fs::rename(self.work(), self.app.work.path().join("race2.old")).unwrap();
        symlink(self.secret.path(), self.work()).unwrap();
    }

    /// Puts the real directory back under its name.
    fn unswap(&self) {
        fs::remove_file(self.work()).unwrap();
        fs::rename(self.app.work.path().join("race2.old"), self.work()).unwrap();
    }

    /// Processes whose working directory is the restricted one.
    fn inside_secret(&self) -> Vec<u32> {
        let secret = fs::canonicalize(self.secret.path()).unwrap();
        fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == secret))
            .collect()
    }

    /// The session is `error` because of its directory, with nothing of it running there.
    async fn assert_refused(&self, id: &str) -> serde_json::Value {
        let session = self.wait_status(id, "error").await;
        let message = session["error_message"].as_str().unwrap_or_default();
        assert!(
            message.contains("race2") && message.contains("restricted"),
            "the reason names the directory and the rule: {session}"
        );
        assert_eq!(
            self.inside_secret(),
            Vec::<u32>::new(),
            "a process runs in the restricted directory"
        );
        session
    }
}

#[tokio::test]
async fn an_agent_restarted_after_its_directory_was_swapped_for_a_symlink_does_not_start() {
    let race = Race::start();
    let id = race.create().await;
    race.wait_status(&id, "active").await;
    let first = race.wait_starts(1).await;
    let cwd = fs::read_link(format!("/proc/{}/cwd", first[0])).unwrap();
    assert_eq!(cwd, fs::canonicalize(race.work()).unwrap());

    race.swap();
    let restart = format!("/api/claude/sessions/{id}/agents/backend-services/restart");
    race.app.post(&restart, &serde_json::json!({})).await;
    let session = race.assert_refused(&id).await;
    assert_eq!(race.starts().len(), 1, "no second start: {session}");
    assert!(!common::alive(first[0]), "the old incarnation was stopped");
    let (_, agents) = race
        .app
        .get(&format!("/api/claude/sessions/{id}/agents"))
        .await;
    assert!(agents["agents"][0]["pid"].is_null(), "{agents}");

    // Put right, a restart by hand works again and the session follows its agents.
    race.unswap();
    let (status, body) = race.app.post(&restart, &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let starts = race.wait_starts(2).await;
    let session = race.wait_status(&id, "active").await;
    assert!(session["error_message"].is_null(), "{session}");
    assert_eq!(starts.len(), 2);
    let cwd = fs::read_link(format!("/proc/{}/cwd", starts[1])).unwrap();
    assert_eq!(cwd, fs::canonicalize(race.work()).unwrap());
}

#[tokio::test]
async fn a_legitimate_restart_starts_the_agent_again_in_its_directory() {
    let race = Race::start();
    let id = race.create().await;
    race.wait_status(&id, "active").await;
    let restart = format!("/api/claude/sessions/{id}/agents/backend-services/restart");
    let (status, body) = race.app.post(&restart, &serde_json::json!({})).await;
    assert_eq!(status, 200, "{body}");
    let starts = race.wait_starts(2).await;
    let session = race.wait_status(&id, "active").await;
    assert!(session["error_message"].is_null(), "{session}");
    assert_eq!(starts.len(), 2, "{starts:?}");
    let cwd = fs::read_link(format!("/proc/{}/cwd", starts[1])).unwrap();
    assert_eq!(cwd, fs::canonicalize(race.work()).unwrap());
}

#[tokio::test]
async fn a_session_whose_directory_was_swapped_while_the_server_was_down_is_restored_in_error() {
    let mut race = Race::start();
    let id = race.create().await;
    race.wait_status(&id, "active").await;
    race.wait_starts(1).await;
    race.app.stop();
    race.swap();
    race.restart();
    let session = race.assert_refused(&id).await;
    assert_eq!(
        race.starts().len(),
        1,
        "nothing started at restore: {session}"
    );
    // The refusal was stored: it survives another restart unchanged.
    race.restart();
    let again = race.assert_refused(&id).await;
    assert_eq!(again["error_message"], session["error_message"]);
}

#[tokio::test]
async fn the_supervisors_own_restart_after_a_crash_judges_the_directory_too() {
    let race = Race::start();
    // Crashes a while after it starts; the supervisor restarts it at once.
    let id = race.create_running(&["--exit-after-ms", "3000"]).await;
    race.wait_status(&id, "active").await;
    assert_eq!(race.wait_starts(1).await.len(), 1);
    race.swap();
    let session = race.assert_refused(&id).await;
    assert_eq!(
        race.starts().len(),
        1,
        "the restart after the crash started nothing: {session}"
    );
}
