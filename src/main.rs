//! `session-manager`: parse the command line, load settings, start logging, serve until
//! SIGINT or SIGTERM. Everything else lives in the library.

use std::error::Error;
use std::future::Future;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tokio::signal::unix::{signal, SignalKind};

use session_manager::cli::{Cli, Command};
use session_manager::config::Settings;
use session_manager::server::App;
use session_manager::telemetry;

/// Exit status for a configuration the server refuses, like a usage error.
const EXIT_CONFIG: u8 = 2;

/// How long the end of the process waits for blocking work still running (a file-system
/// or git call stuck past its deadline on a hung mount): such a thread can never be joined,
/// and a server told to stop must exit all the same.
const BLOCKING_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    // Two malloc arenas instead of glibc's eight per core: the runtime's threads all
    // allocate, and every arena keeps what was freed in it (a restore's peak stayed resident
    // several times over). Before any thread starts.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt has no preconditions; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    let cli = Cli::parse();
    let code = runtime.block_on(async {
        match cli.subcommand() {
            Command::Serve => serve(&cli).await,
            Command::Hook => hook(&cli),
            Command::Attach { session, agent } => attach(&cli, &session, &agent).await,
            Command::Hooks { action } => hooks(&cli, &action),
        }
    });
    runtime.shutdown_timeout(BLOCKING_GRACE);
    code
}

/// `session-manager hooks …`: prints what it did; exit 1 with the reason when it could not.
fn hooks(cli: &Cli, action: &session_manager::cli::hooks::HooksAction) -> ExitCode {
    let settings = match Settings::load(&cli.overrides()) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    match session_manager::cli::hooks::run(action, &settings) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error, ExitCode::FAILURE),
    }
}

/// `session-manager attach`: exit 0 when the user detached, 1 on a refusal or when the
/// server closed the terminal.
async fn attach(cli: &Cli, session: &str, agent: &str) -> ExitCode {
    use session_manager::cli::attach;
    let server = match Settings::load(&cli.overrides())
        .map_err(|error| Box::new(error) as Box<dyn Error>)
        .and_then(|settings| attach::Server::from_settings(&settings).map_err(Into::into))
    {
        Ok(server) => server,
        Err(error) => return fail(error.as_ref(), ExitCode::FAILURE),
    };
    match attach::attach(&server, session, agent).await {
        Ok(detached) => {
            eprintln!("{detached}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error, ExitCode::FAILURE),
    }
}

/// `session-manager hook`: exit 0 when the server took the event, 1 otherwise — never 2,
/// which Claude Code reads as "block this tool call".
fn hook(cli: &Cli) -> ExitCode {
    let settings = match Settings::load(&cli.overrides()) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    let mut payload = Vec::new();
    let limit = session_manager::hook::MAX_PAYLOAD_BYTES as u64 + 1;
    if let Err(error) = std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin().lock(), limit),
        &mut payload,
    ) {
        return fail(&error, ExitCode::FAILURE);
    }
    let session_env = std::env::var("CLAUDE_SESSION_ID").ok();
    let target = session_manager::hook::Target {
        server_url: std::env::var("SESSION_MANAGER_URL").unwrap_or_else(|_| {
            format!("http://{}:{}", settings.server.bind, settings.server.port)
        }),
        // The token Claude Code's http hooks send; a Claude Code started by hand has it in
        // its environment, not in a configuration file the shim would read.
        token: std::env::var("SESSION_MANAGER_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| Some(settings.server.token.expose().to_owned()))
            .filter(|t| !t.is_empty()),
    };
    let agent = std::env::var("CLAUDE_AGENT_NAME").ok();
    let sent =
        session_manager::hook::route(&payload, session_env.as_deref()).and_then(|(route, body)| {
            session_manager::hook::deliver(&target, &route, agent.as_deref(), &body)
        });
    match sent {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => fail(&error, ExitCode::FAILURE),
    }
}

async fn serve(cli: &Cli) -> ExitCode {
    let settings = match Settings::load(&cli.overrides()) {
        Ok(settings) => settings,
        Err(error) => return fail(&error, ExitCode::from(EXIT_CONFIG)),
    };
    let _telemetry = match telemetry::init(&settings) {
        Ok(guard) => guard,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    // Installed before announcing, so a signal sent as soon as the line is read is handled.
    let shutdown = match shutdown_signal() {
        Ok(shutdown) => shutdown,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    // This process is ours alone: its agents' orphans may come back to it (see agent::orphans).
    session_manager::agent::adopt_orphans();
    let app = match App::build(&settings).await {
        Ok(app) => app,
        Err(error) => return fail(&error, ExitCode::FAILURE),
    };
    let addr = app.local_addr();
    tracing::info!(%addr, data_dir = %settings.data_dir().display(), "listening");
    announce(&format!("session-manager listening on http://{addr}"));
    app.run_until(shutdown).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The one line on stdout, which scripts and tests wait for.
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
        tracing::warn!(%error, "cannot write the listening line to stdout");
    }
}

fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    })
}

/// Prints `error: <message>: <cause>: …` to stderr and returns `code`.
fn fail(error: &dyn Error, code: ExitCode) -> ExitCode {
    let message = telemetry::error_chain(error);
    tracing::error!("{message}");
    eprintln!("error: {message}");
    code
}
