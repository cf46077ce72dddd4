//! What to run as a process child, and how a supervisor runs it.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;

use super::exit::{ExitError, ProcessExit};
use super::limits::Limits;
use super::pty::{Pty, TerminalSize};
use super::spawn::{self, Spawned, Spec};
use super::stdio::Output;
use crate::{ChildId, ChildSpec, StopSignal, TaskContext, TaskResult};

/// How long a stop waits by default between SIGTERM and SIGKILL.
const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// What the supervisor allows a process child beyond its grace before it aborts the task
/// (whose drop then kills the group): the grace is the command's, this only covers reaping.
const ABORT_MARGIN: Duration = Duration::from_secs(2);

/// Why a process could not be spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The working directory could not be opened.
    #[error("cannot open the working directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The process could not be started: no program, a program that cannot be found or
    /// executed, a NUL byte in an argument, a limit the OS refused, a directory it cannot
    /// enter.
    #[error("cannot start `{program}`")]
    Spawn {
        /// The program (empty when the command is).
        program: String,
        /// What went wrong, with the step that failed.
        #[source]
        source: io::Error,
    },
}

/// A command to run as a process child: program, arguments, environment, working directory,
/// limits and the stop grace.
///
/// Spawned ([`spawn`](Command::spawn)), the process leads its own process group and gets the
/// parent-death signal, the limits, and a registration with the watchdog, between clone and
/// exec; its stdin is `/dev/null`, its stdout and stderr are pipes. Run under a supervisor
/// ([`child`](Command::child)), stopping it is SIGTERM to the whole group, the grace, then
/// SIGKILL to whatever is left.
///
/// # Examples
///
/// A child that crashes is restarted; one that exits 0 under `Transient` stays stopped:
///
/// ```
/// use std::time::Duration;
/// use supervision::process::Command;
/// use supervision::{Backoff, ChildState, Restart, SupervisorConfig, SupervisorEvent, SupervisorHandle};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let quick = Backoff::new(Duration::from_millis(10), Backoff::default().max());
/// let children = vec![
///     Command::new("sh").args(["-c", "exit 1"]).child("crashing").backoff(quick),
///     Command::new("true").child("done").restart(Restart::Transient),
/// ];
/// let (supervisor, _join) = SupervisorHandle::spawn(SupervisorConfig::default(), children).await?;
/// let mut events = supervisor.subscribe();
/// supervisor.start_all().await?;
/// let (mut restarted, mut done) = (false, false);
/// while !(restarted && done) {
///     if let SupervisorEvent::Child(t) = events.recv().await? {
///         restarted |= &*t.child == "crashing" && t.to == ChildState::Starting && t.restarts > 0;
///         done |= &*t.child == "done" && t.to == ChildState::Stopped;
///     }
/// }
/// supervisor.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    hide_prefixes: Vec<String>,
    dir: Option<PathBuf>,
    limits: Limits,
    grace: Duration,
    forward_output: bool,
    terminal: Option<TerminalSize>,
}

impl Command {
    /// Runs `program` (looked up in `PATH` when it has no slash), without arguments.
    pub fn new(program: impl Into<String>) -> Self {
        Command::from_argv([program.into()])
    }

    /// Runs `argv[0]` with the rest as arguments. An empty `argv` is accepted here and
    /// refused by the spawn ([`SpawnError::Spawn`]).
    pub fn from_argv<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            hide_prefixes: Vec::new(),
            dir: None,
            limits: Limits::default(),
            grace: DEFAULT_GRACE,
            forward_output: true,
            terminal: None,
        }
    }

    /// Adds an argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable on top of this program's environment (which the child inherits).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.env.retain(|(k, _)| *k != name);
        self.env.push((name, value.into()));
        self
    }

    /// Sets variables on top of this program's environment.
    pub fn envs<I, K, V>(self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        vars.into_iter()
            .fold(self, |command, (k, v)| command.env(k, v))
    }

    /// Keeps this program's variables whose name starts with `prefix` from the child (its
    /// own settings, a token): they are not inherited. Variables set with
    /// [`env`](Command::env) are passed whatever their name.
    pub fn hide_env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.hide_prefixes.push(prefix.into());
        self
    }

    /// The working directory; this program's when not set. Opened at each spawn and entered
    /// through the descriptor ([`spawn_in`](Command::spawn_in) takes one opened already).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// Resource limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a stop waits after SIGTERM before SIGKILL (5 s by default).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs the process on a new pseudo-terminal of `size` instead of pipes: the terminal is
    /// its stdin, stdout, stderr and controlling terminal, and it leads a session of its own
    /// (still one process group, stopped and killed as a whole). [`Spawned::watch`] then
    /// gives the program's end as [`Output::Terminal`].
    ///
    /// [`Output::Terminal`]: super::Output::Terminal
    pub fn terminal(mut self, size: TerminalSize) -> Self {
        self.terminal = Some(size);
        self
    }

    /// Whether a process child's stdout and stderr are copied to this program's (the
    /// default); when false they are read and dropped.
    pub fn forward_output(mut self, forward: bool) -> Self {
        self.forward_output = forward;
        self
    }

    /// The program and its arguments.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// The program; empty for an empty command.
    pub fn program(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The stop grace.
    pub fn get_grace(&self) -> Duration {
        self.grace
    }

    /// Spawns the process in its working directory (see [`current_dir`](Self::current_dir)).
    /// Synchronous: the exec has happened, or failed, when it returns.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Directory`] when the directory cannot be opened, [`SpawnError::Spawn`]
    /// when the process cannot be started.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the output pipes register with its reactor).
    pub fn spawn(&self) -> Result<Spawned, SpawnError> {
        let path = self.dir.as_deref().unwrap_or(Path::new("."));
        let dir = File::open(path).map_err(|source| SpawnError::Directory {
            path: path.to_path_buf(),
            source,
        })?;
        self.spawn_in(dir.as_fd())
    }

    /// Spawns the process in the directory `dir` is open on, whatever
    /// [`current_dir`](Self::current_dir) says: the child enters it with `fchdir`, so a
    /// directory checked through this descriptor is where the child runs, even if its name
    /// now points elsewhere.
    ///
    /// # Errors
    ///
    /// [`SpawnError::Spawn`] when the process cannot be started.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the output pipes register with its reactor).
    pub fn spawn_in(&self, dir: BorrowedFd<'_>) -> Result<Spawned, SpawnError> {
        spawn::spawn(&Spec {
            argv: &self.argv,
            cwd: dir,
            env: &self.env,
            hide_prefixes: &self.hide_prefixes,
            limits: &self.limits,
            terminal: self.terminal,
        })
        .map_err(|source| SpawnError::Spawn {
            program: self.program().to_owned(),
            source,
        })
    }

    /// This command as a supervised child `id`: a task child whose every incarnation spawns
    /// the process and waits for it. Exit code 0 is a normal exit, anything else (a code, a
    /// signal, a spawn error) a crash; a stop is SIGTERM to the group, the grace, SIGKILL.
    /// The spec's shutdown deadline is the grace plus a margin; should the supervisor abort
    /// the task anyway (or die), dropping the process kills its group.
    ///
    /// Set the restart type, backoff, intensity and dependencies on the returned spec.
    pub fn child(self, id: impl Into<ChildId>) -> ChildSpec {
        let deadline = self.grace.saturating_add(ABORT_MARGIN);
        let command = Arc::new(self);
        ChildSpec::task(id, move |ctx: TaskContext| {
            let command = Arc::clone(&command);
            async move { command.run(&ctx.stop).await }
        })
        .shutdown(deadline)
    }

    /// Runs one incarnation until it exits or `stop` is triggered.
    async fn run(&self, stop: &StopSignal) -> TaskResult {
        let spawned = self.spawn()?;
        let (mut process, output) = spawned.watch(|_| ());
        self.drain(output);
        tokio::select! {
            exit = process.exited() => judge(exit),
            // The exit that follows a stop the supervisor asked for is no crash.
            () = stop.stopped() => {
                process.terminate(self.grace).await;
                Ok(())
            }
        }
    }

    /// Copies (or drops) the output until its end, which comes when the last process of the
    /// tree holding the pipes (or the terminal) is gone: not awaited.
    fn drain(&self, output: Output) {
        let forward = self.forward_output;
        let stdout = || forward.then(|| Box::new(io::stdout()) as Box<dyn Write + Send>);
        match output {
            Output::Pipes {
                stdout: out,
                stderr,
            } => {
                tokio::spawn(copy(out, stdout()));
                tokio::spawn(copy(
                    stderr,
                    forward.then(|| Box::new(io::stderr()) as Box<dyn Write + Send>),
                ));
            }
            Output::Terminal(pty) => {
                tokio::spawn(copy_terminal(pty, stdout()));
            }
        }
    }
}

/// Reads a terminal's output to its end, writing it to `to` (when there is one).
async fn copy_terminal(pty: Pty, mut to: Option<Box<dyn Write + Send>>) {
    let mut buffer = vec![0u8; 8 * 1024];
    while let Ok(n @ 1..) = pty.read(&mut buffer).await {
        forward(&mut to, &buffer[..n]);
    }
}

/// Writes `bytes` to `to`; a destination that fails is dropped (the output is still read).
fn forward(to: &mut Option<Box<dyn Write + Send>>, bytes: &[u8]) {
    if let Some(out) = to {
        if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
            *to = None;
        }
    }
}

/// Reads `pipe` to its end, writing what comes to `to` (when there is one). Writes are
/// blocking, as `println!` is: this program's stdout or stderr, which a reader drains.
async fn copy(pipe: pipe::Receiver, mut to: Option<Box<dyn Write + Send>>) {
    let mut buffer = vec![0u8; 8 * 1024];
    loop {
        if pipe.readable().await.is_err() {
            return;
        }
        match pipe.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => forward(&mut to, &buffer[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// A process's exit as a task's result: 0 is normal, anything else a crash.
fn judge(exit: ProcessExit) -> TaskResult {
    if exit.success() {
        Ok(())
    } else {
        Err(ExitError::new(exit).into())
    }
}
