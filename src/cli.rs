//! The command line. Flags are global so that `session-manager --port 0` and
//! `session-manager serve --port 0` mean the same: `serve` is what runs when no subcommand
//! is given, and scripts written either way keep working.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

pub mod attach;
pub mod hooks;

/// Supervises Claude Code work sessions: sessions and agents as supervised actors behind a
/// REST + WebSocket API.
#[derive(Debug, Parser)]
#[command(name = "session-manager", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// TOML file layered over the built-in defaults.
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// IP address to listen on (server.bind).
    #[arg(long, value_name = "ADDR", global = true)]
    pub bind: Option<String>,

    /// Port to listen on, 0 for any free port (server.port).
    #[arg(long, value_name = "N", global = true)]
    pub port: Option<u16>,

    /// Directory of the database, logs and metrics (storage.data_dir).
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,

    /// Log level or `target=level` list (logs.level).
    #[arg(long, value_name = "LEVEL", global = true)]
    pub log_level: Option<String>,
}

/// The subcommands; an enum so later ones slot in beside `serve`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM (the default).
    Serve,
    /// Forward a Claude Code hook payload read on stdin to the server (for
    /// `.claude/settings.json`); the session is `CLAUDE_SESSION_ID` or the payload's, and
    /// without one the server attributes it as it does Claude Code's own http hooks.
    Hook,
    /// Attach this terminal to an agent's terminal (as `tmux attach` does): what it shows
    /// appears here, what is typed here goes to it. `Ctrl-]` detaches; the agent keeps
    /// running. The server is `SESSION_MANAGER_URL`, else the configured address.
    Attach {
        /// The session: its id, or its name when no other session has that name.
        session: String,
        /// The agent's name in that session.
        agent: String,
    },
    /// Install, remove or show the http hooks that make Claude Code report to this server,
    /// in a project's `.claude/settings.local.json` or the user's `~/.claude/settings.json`.
    /// The server is `SESSION_MANAGER_URL`, else the configured address; the token is read
    /// from `SESSION_MANAGER_TOKEN` by Claude Code, never written.
    Hooks {
        /// What to do.
        #[command(subcommand)]
        action: hooks::HooksAction,
    },
}

impl Cli {
    /// The subcommand to run, with the default applied, so callers never handle `None`.
    pub fn subcommand(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }

    /// The flags that override configuration, in the form [`crate::config`] understands.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config_file: self.config.clone(),
            bind: self.bind.clone(),
            port: self.port,
            data_dir: self.data_dir.clone(),
            log_level: self.log_level.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hook_is_a_subcommand() {
        let cli = Cli::try_parse_from(["session-manager", "hook"]).unwrap();
        assert_eq!(cli.subcommand(), Command::Hook);
    }

    #[test]
    fn attach_takes_a_session_and_an_agent() {
        let cli = Cli::try_parse_from(["session-manager", "attach", "my-work", "worker"]).unwrap();
        assert_eq!(
            cli.subcommand(),
            Command::Attach {
                session: "my-work".into(),
                agent: "worker".into()
            }
        );
        assert!(Cli::try_parse_from(["session-manager", "attach", "my-work"]).is_err());
    }

    #[test]
    fn hooks_take_a_directory_or_user() {
        use hooks::{HooksAction, Location};
        let cli = Cli::try_parse_from(["session-manager", "hooks", "install", "/p"]).unwrap();
        assert_eq!(
            cli.subcommand(),
            Command::Hooks {
                action: HooksAction::Install(Location {
                    dir: Some("/p".into()),
                    user: false
                })
            }
        );
        let cli = Cli::try_parse_from(["session-manager", "hooks", "status", "--user"]).unwrap();
        assert_eq!(
            cli.subcommand(),
            Command::Hooks {
                action: HooksAction::Status(Location {
                    dir: None,
                    user: true
                })
            }
        );
        assert!(
            Cli::try_parse_from(["session-manager", "hooks", "uninstall", "/p", "--user"]).is_err()
        );
        assert!(Cli::try_parse_from(["session-manager", "hooks"]).is_err());
    }

    #[test]
    fn serve_is_the_default() {
        let cli = Cli::try_parse_from(["session-manager"]).unwrap();
        assert_eq!(cli.subcommand(), Command::Serve);
    }

    #[test]
    fn flags_work_before_and_after_serve() {
        for args in [
            &["session-manager", "--port", "0", "--log-level", "debug"][..],
            &[
                "session-manager",
                "serve",
                "--port",
                "0",
                "--log-level",
                "debug",
            ][..],
            &[
                "session-manager",
                "--port",
                "0",
                "serve",
                "--log-level",
                "debug",
            ][..],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.subcommand(), Command::Serve, "{args:?}");
            let overrides = cli.overrides();
            assert_eq!(overrides.port, Some(0), "{args:?}");
            assert_eq!(overrides.log_level.as_deref(), Some("debug"), "{args:?}");
        }
    }

    #[test]
    fn all_overrides_are_passed_on() {
        let cli = Cli::try_parse_from([
            "session-manager",
            "--config",
            "/etc/sm.toml",
            "--bind",
            "::1",
            "--data-dir",
            "/srv/sm",
        ])
        .unwrap();
        let overrides = cli.overrides();
        assert_eq!(overrides.config_file, Some(PathBuf::from("/etc/sm.toml")));
        assert_eq!(overrides.bind.as_deref(), Some("::1"));
        assert_eq!(overrides.data_dir, Some(PathBuf::from("/srv/sm")));
    }

    #[test]
    fn port_out_of_range_is_a_usage_error() {
        assert!(Cli::try_parse_from(["session-manager", "--port", "70000"]).is_err());
    }
}
