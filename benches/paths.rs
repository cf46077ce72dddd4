//! Path validation benchmark (criterion; the figure goes in README's Performance section).
//!
//! - `validate_many/1000_mixed`: one batch of 1,000 paths in a temporary directory — 250
//!   existing directories (100 of them inside a small git repository, so the git state is
//!   read), 250 missing paths, 250 restricted paths and 250 symlinks to directories —
//!   through `PathPolicy::validate_many` on a 2-worker tokio runtime.
//! - `validate_blocking/existing_dir`: one existing directory validated in place, the cost
//!   of a single validation without the blocking pool.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use session_manager::paths::{PathPolicy, PolicyOptions};

fn fixture(root: &Path) -> Vec<String> {
    let repo = git2::Repository::init(root.join("repo")).expect("init");
    drop(repo);
    let mut paths = Vec::with_capacity(1000);
    for i in 0..250 {
        let dir = if i < 100 {
            root.join("repo").join(format!("dir{i}"))
        } else {
            root.join(format!("dir{i}"))
        };
        fs::create_dir_all(&dir).expect("mkdir");
        let link = root.join(format!("link{i}"));
        symlink(&dir, &link).expect("symlink");
        paths.push(dir.display().to_string());
        paths.push(
            root.join(format!("missing{i}/deeper"))
                .display()
                .to_string(),
        );
        paths.push(format!("/etc/restricted{i}"));
        paths.push(link.display().to_string());
    }
    paths
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fs::canonicalize(dir.path()).expect("canonical");
    let paths = fixture(&root);
    let policy = PathPolicy::new(PolicyOptions::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let batch = runtime.block_on(policy.validate_many(paths.clone()));
    assert_eq!(batch.summary.total, 1000);
    assert_eq!(
        batch.summary.invalid, 250,
        "only the restricted paths are refused"
    );

    c.bench_function("validate_many/1000_mixed", |b| {
        b.to_async(&runtime)
            .iter(|| policy.validate_many(paths.clone()));
    });
    let existing = root.join("dir200").display().to_string();
    c.bench_function("validate_blocking/existing_dir", |b| {
        b.iter(|| policy.validate_blocking(&existing));
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
