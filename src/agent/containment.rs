//! How the server contains its agents' descendants: the process layer's containment
//! (`supervision::process`) with the server's names — its cgroup, the variable that marks
//! its agents, the variables that tell agents apart.

use supervision::process::{Cgroups, Containment};

use crate::config::CgroupMode;

pub use supervision::process::{adopt_orphans, release};

/// The variable that marks an agent's processes as this server's, which the watchdog looks
/// for after a crash: the server's pid and a random part, new at every start. Not the URL: a
/// person's shell may export `SESSION_MANAGER_URL` to reach the server (`session-manager
/// hook`, the API client), and the watchdog must never kill what the server did not start.
pub(crate) const INSTANCE_VAR: &str = "SESSION_MANAGER_INSTANCE";

/// The variables that tell which agent an adopted orphan came from: they survive forks,
/// `setsid` and exec.
const OWNER_VARS: [&str; 2] = ["CLAUDE_SESSION_ID", "CLAUDE_AGENT_NAME"];

/// Sets up the containment of agents' descendants, once, before any agent starts: the
/// `session-manager-<pid>` cgroup (per `agents.cgroups`), the watchdog, then (after
/// [`adopt_orphans`]) the child subreaper. Must run inside a tokio runtime.
pub fn contain(mode: CgroupMode) {
    let cgroups = match mode {
        CgroupMode::Off => Cgroups::Off,
        CgroupMode::Auto => Cgroups::Auto,
    };
    supervision::process::contain(
        &Containment::new()
            .cgroups(cgroups)
            .cgroup_prefix("session-manager-")
            .mark_variable(INSTANCE_VAR)
            .owner_variables(OWNER_VARS),
    );
}
