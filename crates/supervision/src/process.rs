//! OS processes as supervised children that never outlive the program (feature `process`,
//! Linux first; other Unixes without the Linux-only guards).
//!
//! A [`Command`] becomes a child of a [`Supervisor`](crate::Supervisor) with
//! [`Command::child`]; [`Command::spawn`] runs one on its own. Each process:
//! - leads its own process group, so a stop (SIGTERM → grace → SIGKILL) reaches all it
//!   forked, and dropping its [`Process`] (or [`Spawned`]) SIGKILLs the group;
//! - is spawned with `clone(CLONE_VM | CLONE_VFORK)` on Linux (no copy of this program's
//!   page tables per restart) with a child setup of async-signal-safe calls only: the
//!   parent-death signal, its own group, [`Limits`], the watchdog registration, its
//!   cgroup, `fchdir`;
//! - is reaped through a pidfd (Linux 5.3+) or a blocking `waitpid`, and killed + reaped if
//!   nobody waits;
//! - carries this program's mark ([`instance`]) in its environment, which its descendants
//!   inherit.
//! - has `/dev/null` as stdin and pipes as stdout and stderr, or runs on a pseudo-terminal of
//!   its own ([`Command::terminal`]: it leads a new session with it as controlling terminal,
//!   and the program reads, writes and resizes it through a [`Pty`]).
//!
//! A watchdog process, forked at the first spawn (or by [`contain`]), kills every registered
//! group, this program's cgroup and every marked process that started before the program
//! died — whatever killed it, SIGKILL included. [`contain`] adds cgroup v2 containment
//! (where this process may create cgroups) and, after [`adopt_orphans`], the child
//! subreaper and its sweeper; [`release`] undoes it at shutdown.
//!
//! [`tree_rss_bytes`] and [`tree`] measure a process tree from `/proc`.

mod cgroup;
#[cfg(target_os = "linux")]
mod clone;
mod command;
mod exit;
mod limits;
mod memory;
mod orphans;
mod pty;
mod reaper;
mod spawn;
mod stdio;
mod watchdog;

pub use command::{Command, SpawnError};
pub use exit::{ExitError, ProcessExit};
pub use limits::Limits;
pub use memory::{tree, tree_rss_bytes};
pub use orphans::{adopt_orphans, contain, instance, release, Cgroups, Containment};
pub use pty::{Pty, TerminalSize};
pub use spawn::{Process, Spawned};
pub use stdio::Output;
