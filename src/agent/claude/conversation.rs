//! The conversation of a Claude agent at each spawn: which flag carries its id, and whether
//! it may start at all.
//!
//! The rule, decided anew at every spawn (first start, crash, restart order, server
//! restart): the conversation is resumed (`--resume <id>`) when its transcript exists where
//! Claude Code looks for it — `<claude config dir>/projects/<project>/<id>.jsonl`, the
//! claude config dir being `$CLAUDE_CONFIG_DIR` of the agent's environment, else
//! `$HOME/.claude` (the agent's own variables first, then the ones it inherits from the
//! server), the project being the working directory with every character but ASCII letters
//! and digits replaced by `-` — and started (`--session-id <id>`) otherwise. Claude Code
//! writes the transcript once the conversation has content, so an agent that crashed before
//! its first message starts it again instead of failing every restart on "No conversation
//! found". The CLI keeps conversations per directory (`--resume` from another directory
//! finds nothing, `--session-id` there is accepted), so after a navigate the agent starts
//! the conversation afresh in its new directory, and resumes the old one if it moves back.
//!
//! Two processes never run on one conversation: while any process of this user has the id
//! in its argv (`/proc/<pid>/cmdline`) — a previous incarnation not yet gone, the leftover of
//! a server that was killed, a person's own `claude --resume <id>` — the start is refused
//! with an error naming the pid, which the supervisor retries with backoff like any failed
//! start.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Why a Claude agent's process was not started.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConversationError {
    /// Another process runs on the conversation; starting a second one would corrupt it.
    #[error("Claude session {id} is in use by process {pid} (the id is in its argv); waiting for it to end")]
    InUse {
        /// The conversation.
        id: Uuid,
        /// The process that holds it.
        pid: u32,
    },
    /// `/proc` could not be read, so nothing tells whether the conversation is free.
    #[error("cannot look for processes using Claude session {id} in /proc")]
    Scan {
        /// The conversation.
        id: Uuid,
        /// What reading `/proc` said.
        #[source]
        source: io::Error,
    },
}

/// The flag and id to append to a Claude agent's command line for this spawn, given the
/// variables the agent adds to its environment (`env`, later entries winning); refused while
/// another process runs on the conversation.
pub(crate) fn conversation_flags(
    id: Uuid,
    working_dir: &Path,
    env: &[(String, String)],
) -> Result<[String; 2], ConversationError> {
    let text = id.to_string();
    match process_with(Path::new("/proc"), &text) {
        Ok(Some(pid)) => return Err(ConversationError::InUse { id, pid }),
        Ok(None) => {}
        Err(source) => return Err(ConversationError::Scan { id, source }),
    }
    let inherited = |name: &str| std::env::var(name).ok();
    let resume =
        config_dir(env, &inherited).is_some_and(|dir| transcript_exists(&dir, working_dir, id));
    let flag = if resume { "--resume" } else { "--session-id" };
    Ok([flag.to_owned(), text])
}

/// What the agent inherits besides its own variables: the server's environment.
type Inherited<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The agent's value of `name`: its own variables first, then the inherited ones. Empty
/// counts as unset, as for the CLI.
fn agent_var(env: &[(String, String)], inherited: Inherited<'_>, name: &str) -> Option<String> {
    env.iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.clone())
        .or_else(|| inherited(name))
        .filter(|value| !value.is_empty())
}

/// Where the agent's Claude Code keeps its state: `$CLAUDE_CONFIG_DIR`, else `$HOME/.claude`.
fn config_dir(env: &[(String, String)], inherited: Inherited<'_>) -> Option<PathBuf> {
    agent_var(env, inherited, "CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| agent_var(env, inherited, "HOME").map(|home| Path::new(&home).join(".claude")))
}

/// Longest project name the CLI uses as is; a longer one is cut there and given a hash
/// suffix (`-<hash>`) whose function is the CLI's own.
const MAX_PROJECT_NAME: usize = 200;

/// Whether Claude Code has a transcript of conversation `id` for `working_dir`: in the
/// directory's project, or — for a name the CLI cuts and suffixes with a hash — in a project
/// with the same first 200 characters (the id, a UUID, tells the conversation apart).
fn transcript_exists(config_dir: &Path, working_dir: &Path, id: Uuid) -> bool {
    find_transcript(config_dir, working_dir, id).is_some()
}

/// The transcript of conversation `id` of an agent working in `working_dir` with the
/// variables `env` (then the server's), where Claude Code wrote it; `None` while it has not.
/// The usage fallback reads it when no telemetry arrived.
pub(crate) fn transcript_path(
    id: Uuid,
    working_dir: &Path,
    env: &[(String, String)],
) -> Option<PathBuf> {
    let inherited = |name: &str| std::env::var(name).ok();
    find_transcript(&config_dir(env, &inherited)?, working_dir, id)
}

/// Where [`transcript_exists`] finds the transcript.
fn find_transcript(config_dir: &Path, working_dir: &Path, id: Uuid) -> Option<PathBuf> {
    let projects = config_dir.join("projects");
    let file = format!("{id}.jsonl");
    let name = project_name(working_dir);
    if name.len() <= MAX_PROJECT_NAME {
        let path = projects.join(name).join(file);
        return path.is_file().then_some(path);
    }
    let prefix = format!("{}-", &name[..MAX_PROJECT_NAME]);
    let entries = fs::read_dir(&projects).ok()?;
    entries
        .flatten()
        .filter(|project| project.file_name().to_string_lossy().starts_with(&prefix))
        .map(|project| project.path().join(&file))
        .find(|path| path.is_file())
}

/// The CLI's name for a working directory's project: the path with every character but
/// ASCII letters and digits replaced by `-` (`/work/my app` → `-work-my-app`); all ASCII.
fn project_name(working_dir: &Path) -> String {
    working_dir
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A process of this user (other than this one) with `needle` in an argument of its argv,
/// looked up in the procfs at `proc`. A system without procfs has none to find (`None`);
/// processes that end during the scan, or whose argv cannot be read, are skipped.
fn process_with(proc: &Path, needle: &str) -> io::Result<Option<u32>> {
    let entries = match fs::read_dir(proc) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let me = std::process::id();
    let uid = fs::metadata(proc.join("self"))?.uid();
    let needle = needle.as_bytes();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !entry.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        // A zombie's cmdline is empty: an incarnation that exited is not in the way.
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|&byte| byte == 0)
            .any(|arg| arg.windows(needle.len()).any(|window| window == needle))
        {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};

    use super::*;

    /// A process whose argv holds `word`, killed and reaped on drop.
    struct Holder(Child);

    impl Holder {
        fn new(word: &str) -> Holder {
            // `word` as the argv[0] of a `sleep`: no shell, so no forked copy of the argv
            // that could outlive the holder (a shell may fork `sleep` and be killed while
            // its child has not exec'd yet).
            Holder(Command::new("sleep").arg0(word).arg("60").spawn().unwrap())
        }
    }

    impl Drop for Holder {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Waits (bounded) until the holder has exec'd the shell, whose argv is the one looked at.
    fn found(id: &str) -> Option<u32> {
        for _ in 0..200 {
            if let Some(pid) = process_with(Path::new("/proc"), id).unwrap() {
                return Some(pid);
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn a_process_with_the_id_in_its_argv_is_found_and_refuses_the_start() {
        let id = Uuid::new_v4();
        assert_eq!(
            process_with(Path::new("/proc"), &id.to_string()).unwrap(),
            None
        );
        let holder = Holder::new(&format!("--resume={id}"));
        assert_eq!(found(&id.to_string()), Some(holder.0.id()));
        let refused = conversation_flags(id, Path::new("/w"), &[]).unwrap_err();
        assert!(
            matches!(refused, ConversationError::InUse { pid, .. } if pid == holder.0.id()),
            "{refused}"
        );
        assert!(refused.to_string().contains(&holder.0.id().to_string()));
        drop(holder);
        // Reaped, it is gone from /proc: the start goes ahead.
        assert!(conversation_flags(id, Path::new("/w"), &[]).is_ok());
    }

    #[test]
    fn no_procfs_means_nobody_to_find() {
        let missing = Path::new("/nonexistent-proc-for-a-test");
        assert_eq!(process_with(missing, "x").unwrap(), None);
    }

    #[test]
    fn the_transcript_decides_between_starting_and_resuming() {
        let home = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        // The agent's own CLAUDE_CONFIG_DIR, so whatever the test runner inherits is moot.
        let env = vec![(
            "CLAUDE_CONFIG_DIR".to_owned(),
            home.path().join(".claude").display().to_string(),
        )];
        let work = Path::new("/work/my app");
        let flags = conversation_flags(id, work, &env).unwrap();
        assert_eq!(flags, ["--session-id".to_owned(), id.to_string()]);
        // Another conversation's transcript resumes nothing.
        let project = home.path().join(".claude/projects/-work-my-app");
        fs::create_dir_all(&project).unwrap();
        fs::write(project.join(format!("{}.jsonl", Uuid::new_v4())), "{}\n").unwrap();
        assert_eq!(
            conversation_flags(id, work, &env).unwrap()[0],
            "--session-id"
        );
        fs::write(project.join(format!("{id}.jsonl")), "{}\n").unwrap();
        assert_eq!(
            conversation_flags(id, work, &env).unwrap(),
            ["--resume".to_owned(), id.to_string()]
        );
        // Claude Code looks in the working directory's project only: from elsewhere (after
        // a navigate) the conversation starts anew, as the CLI would accept it there.
        let elsewhere = Path::new("/work/other");
        assert_eq!(
            conversation_flags(id, elsewhere, &env).unwrap()[0],
            "--session-id"
        );
    }

    /// What Claude Code 2.1.197 wrote for a 246-character working directory: the first 200
    /// characters of the name and a hash.
    #[test]
    fn a_long_directory_is_found_under_the_clis_cut_name() {
        let config = tempfile::tempdir().unwrap();
        let work = format!("/tmp/{}/{}", "a".repeat(120), "b".repeat(120));
        let name = project_name(Path::new(&work));
        assert_eq!(name.len(), 246);
        let id = Uuid::new_v4();
        let cut = config
            .path()
            .join("projects")
            .join(format!("{}-k4vqaw", &name[..200]));
        fs::create_dir_all(&cut).unwrap();
        assert!(!transcript_exists(config.path(), Path::new(&work), id));
        fs::write(cut.join(format!("{id}.jsonl")), "{}\n").unwrap();
        assert!(transcript_exists(config.path(), Path::new(&work), id));
        // Another directory sharing no such prefix does not see it.
        assert!(!transcript_exists(config.path(), Path::new("/tmp/a"), id));
    }

    #[test]
    fn claude_config_dir_wins_over_home_and_empty_counts_as_unset() {
        let home = ("HOME".to_owned(), "/h".to_owned());
        let dir = |value: &str| ("CLAUDE_CONFIG_DIR".to_owned(), value.to_owned());
        let nothing = |_: &str| None;
        let server = |name: &str| match name {
            "HOME" => Some("/server-home".to_owned()),
            "CLAUDE_CONFIG_DIR" => Some("/server-claude".to_owned()),
            _ => None,
        };
        let no_config_dir = |name: &str| (name == "HOME").then(|| "/server-home".to_owned());
        assert_eq!(
            config_dir(std::slice::from_ref(&home), &nothing),
            Some(PathBuf::from("/h/.claude"))
        );
        assert_eq!(
            config_dir(&[home.clone(), dir("/c")], &nothing),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            config_dir(&[dir(""), home.clone()], &nothing),
            Some(PathBuf::from("/h/.claude"))
        );
        // What the agent inherits counts where its own variables say nothing.
        assert_eq!(
            config_dir(&[], &server),
            Some(PathBuf::from("/server-claude"))
        );
        assert_eq!(
            config_dir(&[home], &server),
            Some(PathBuf::from("/server-claude"))
        );
        assert_eq!(
            config_dir(&[], &no_config_dir),
            Some(PathBuf::from("/server-home/.claude"))
        );
        assert_eq!(config_dir(&[], &nothing), None);
    }
}
