//! `session-manager hooks install|uninstall|status [DIR] [--user]`: Claude Code's settings
//! files made to report to this server (see [`crate::claude::install`]).
//!
//! The project's file is `DIR/.claude/settings.local.json` (personal, not committed: the
//! server URL is this machine's); `--user` is `~/.claude/settings.json`. The token is never
//! written: the hooks read it from `SESSION_MANAGER_TOKEN` when Claude Code runs them.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::claude::install::{self, InstallError, Status, EVENTS};
use crate::config::Settings;

/// What `hooks` does.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum HooksAction {
    /// Merge an http hook for every Claude Code event into DIR/.claude/settings.local.json
    /// (or ~/.claude/settings.json with --user); running it again changes nothing.
    Install(Location),
    /// Remove exactly the hooks `install` added, and nothing else.
    Uninstall(Location),
    /// Show what of ours is installed in the project's settings files and the user's.
    Status(Location),
}

/// Which settings file.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct Location {
    /// The project directory; the current directory when omitted.
    pub dir: Option<PathBuf>,
    /// The user's settings (~/.claude/settings.json) instead of the project's.
    #[arg(long, conflicts_with = "dir")]
    pub user: bool,
}

/// Why `hooks` failed.
#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// `--user` without a home directory.
    #[error("HOME is not set: cannot find ~/.claude/settings.json")]
    NoHome,
    /// The current directory or this program's path is unknown.
    #[error("cannot find the {what}: {source}")]
    Environment {
        /// `current directory` or `session-manager program`.
        what: &'static str,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A settings file could not be read or written.
    #[error(transparent)]
    Install(#[from] InstallError),
}

/// The server URL hooks post to: `SESSION_MANAGER_URL` when set, else the configured
/// address, loopback when the server listens on every address.
pub fn server_url(settings: &Settings) -> String {
    if let Ok(url) = std::env::var("SESSION_MANAGER_URL") {
        if !url.trim().is_empty() {
            return url.trim().trim_end_matches('/').to_owned();
        }
    }
    let port = settings.server.port;
    match settings.server.bind {
        IpAddr::V4(host) if host.is_unspecified() => format!("http://127.0.0.1:{port}"),
        IpAddr::V6(host) if host.is_unspecified() => format!("http://[::1]:{port}"),
        IpAddr::V4(host) => format!("http://{host}:{port}"),
        IpAddr::V6(host) => format!("http://[{host}]:{port}"),
    }
}

/// This program, which the command hooks run as `"<exe>" hook`.
pub fn shim() -> Result<PathBuf, HooksError> {
    std::env::current_exe().map_err(|source| HooksError::Environment {
        what: "session-manager program",
        source,
    })
}

fn home() -> Result<PathBuf, HooksError> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .ok_or(HooksError::NoHome)
}

fn project_dir(location: &Location) -> Result<PathBuf, HooksError> {
    match &location.dir {
        Some(dir) => Ok(dir.clone()),
        None => std::env::current_dir().map_err(|source| HooksError::Environment {
            what: "current directory",
            source,
        }),
    }
}

/// The file `install` and `uninstall` work on.
fn target_file(location: &Location) -> Result<PathBuf, HooksError> {
    if location.user {
        return Ok(install::user_file(&home()?));
    }
    let [local, _] = install::project_files(&project_dir(location)?);
    Ok(local)
}

/// Runs `action`; returns what to print.
pub fn run(action: &HooksAction, settings: &Settings) -> Result<String, HooksError> {
    let server = server_url(settings);
    let shim = shim()?;
    match action {
        HooksAction::Install(location) => {
            let change = install::install(&target_file(location)?, &server, Some(&shim))?;
            Ok(describe_install(&change, &server))
        }
        HooksAction::Uninstall(location) => {
            let change = install::uninstall(&target_file(location)?)?;
            Ok(describe_uninstall(&change))
        }
        HooksAction::Status(location) => {
            let mut files = Vec::new();
            if !location.user {
                files.extend(install::project_files(&project_dir(location)?));
            }
            if let Ok(home) = home() {
                files.push(install::user_file(&home));
            }
            let mut text = String::new();
            for file in files {
                text.push_str(&describe_status(
                    &install::status(&file, &server, Some(&shim))?,
                    &server,
                ));
            }
            Ok(text)
        }
    }
}

fn describe_install(change: &install::Change, server: &str) -> String {
    let path = change.path.display();
    if !change.written {
        return format!("hooks already installed in {path} (server {server})\n");
    }
    format!(
        "installed hooks for {} event(s) in {path} (server {server})\n\
         Claude Code sends the token from SESSION_MANAGER_TOKEN: export it where you run \
         `claude` when the server has one\n",
        change.events.len()
    )
}

fn describe_uninstall(change: &install::Change) -> String {
    let path = change.path.display();
    if !change.written {
        return format!("no hooks of session-manager in {path}\n");
    }
    format!(
        "removed hooks of session-manager from {} event(s) in {path}\n",
        change.events.len()
    )
}

fn describe_status(status: &Status, server: &str) -> String {
    let path = status.path.display();
    if !status.exists {
        return format!("{path}: absent\n");
    }
    let mut text = format!(
        "{path}: {} ({} of {} events",
        status.summary(),
        status.events.len(),
        EVENTS.len()
    );
    if !status.servers.is_empty() {
        let _ = write!(text, ", server {}", status.servers.join(", "));
    }
    text.push(')');
    if status.summary() == "outdated" {
        let _ = write!(
            text,
            "; differs from an install for {server} in: {}",
            status.outdated.join(", ")
        );
    }
    text.push('\n');
    text
}
