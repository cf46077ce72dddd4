//! Helpers shared by the integration tests that run real agent processes.
#![allow(dead_code)] // each test binary uses its own subset

pub mod app;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

/// Generous bound for anything to happen; only a broken supervisor comes near it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A built example program (`cargo test` builds examples before tests).
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the suite with `cargo test`, which builds examples",
        path.display()
    );
    path
}

/// The argv of `examples/fake_agent` with `args`, as an agent's `command`.
pub fn fake(args: &[&str]) -> Value {
    let mut argv = vec![example("fake_agent").to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    json!(argv)
}

/// Whether `pid` is a live process; a zombie (state Z) counts as gone.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}
