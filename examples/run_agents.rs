//! Runs a set of agents from a JSON file under one supervisor, without the HTTP server:
//! the agent layer as a library user sees it.
//!
//! ```text
//! cargo run --example run_agents -- AGENTS.json WORKING_DIR DATA_DIR [--panic-on-signal]
//! ```
//! `AGENTS.json` is a list of agent configurations, as in a session's `agents`. Commands are
//! allowed (the file is the operator's own). Prints `pid <agent> <pid>` for every process
//! start, `state <agent> <from> <to>`, `log <agent> <line>` and `alert <agent> <message>` as
//! they happen, `settled` once the start is over; SIGINT or SIGTERM stops every agent in
//! reverse dependency order and prints `stopped`. With `--panic-on-signal` the signal makes it
//! panic in `main` instead (tests/reliability.rs: no agent outlives a panic).

use std::path::PathBuf;

use session_manager::agent::{
    resolve_agents, AgentConfig, AgentContext, AgentEvent, AgentGroup, CommandOrigin,
};
use session_manager::config::{Overrides, Settings};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (file, working_dir, data_dir, panic_on_signal) = match args.as_slice() {
        [file, working_dir, data_dir] => (file, working_dir, data_dir, false),
        [file, working_dir, data_dir, flag] if flag == "--panic-on-signal" => {
            (file, working_dir, data_dir, true)
        }
        _ => {
            return Err(
                "usage: run_agents AGENTS.json WORKING_DIR DATA_DIR [--panic-on-signal]".into(),
            )
        }
    };
    let settings = Settings::load(&Overrides {
        data_dir: Some(PathBuf::from(data_dir)),
        ..Overrides::default()
    })?;
    let configs: Vec<AgentConfig> = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let agents = resolve_agents(&configs, &settings.agents, CommandOrigin::Trusted)?;
    let context = AgentContext::new("run-agents", PathBuf::from(working_dir), &settings);

    let group = AgentGroup::build(context, agents).await?;
    let mut events = group.subscribe();
    tokio::spawn(async move {
        while let Ok(event) = events.recv().await {
            match event {
                AgentEvent::State {
                    agent, from, to, ..
                } => println!("state {agent} {from} {to}"),
                AgentEvent::Log { agent, line } => println!("log {agent} {}", line.line),
                AgentEvent::Alert(alert) => println!("alert {} {}", alert.agent, alert.message),
                AgentEvent::Exited { agent, exit, .. } => println!("exit {agent} {exit}"),
            }
        }
    });
    group.start_all().await?;
    for agent in group.settled().await? {
        if let Some(pid) = agent.live.pid {
            println!("pid {} {pid}", agent.name);
        }
    }
    println!("settled");

    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    if panic_on_signal {
        panic!("asked to by --panic-on-signal");
    }
    group.shutdown().await?;
    println!("stopped");
    Ok(())
}
