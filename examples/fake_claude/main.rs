//! A fake Claude Code CLI for tests and benchmarks: it acts like the real `claude` where the
//! server depends on it, with no network and no account.
//!
//! ```text
//! fake_claude [--session-id UUID | --resume UUID] [--append-system-prompt TEXT]
//!             [--model NAME] [--permission-mode MODE] [--settings FILE|JSON] [--verbose]
//! ```
//! - like the real CLI, it fails with exit 1 and a message on an unknown option, on
//!   `--session-id` with `--resume`, on an id that is not a UUID, on `--session-id` of a
//!   conversation that already has a transcript ("Session ID … is already in use"), on
//!   `--resume` of one that has none ("No conversation found with session ID: …") — looking,
//!   as the CLI does, only in the working directory's project —, and when
//!   stdin is not a terminal (its interface needs one);
//! - it draws `Welcome to Fake Claude Code (session <id>, resumed|new)` and a prompt `> `,
//!   then reads lines (a terminal in canonical mode hands over whole lines):
//!   `ask` prints `Proceed? (y/n)` and waits for `y` or `n` (`answer: yes|no`), `crash`
//!   exits with code 3, `fail` answers `API Error: fake failure`, anything else is echoed as
//!   `you said: <line>`; end of input exits 0;
//! - it runs hooks as the CLI does (`hooks.rs`: `--settings`, then the project's and the
//!   user's settings files): `SessionStart` (`source` startup|resume) at start; per line
//!   `UserPromptSubmit` (`prompt`), then for `ask` `PreToolUse` (Bash), `PermissionRequest`
//!   and `Notification` (`permission_prompt`) before the question, `PostToolUse` after `y`
//!   or `PermissionDenied` after `n`; then `Stop` (`stop_hook_active` false), or
//!   `StopFailure` (`error` `server_error`, as the CLI reports an unreachable API) for
//!   `fail`; `crash` exits after `UserPromptSubmit` with no more hooks; end of input sends
//!   `SessionEnd` (`reason` `prompt_input_exit`, as when the user leaves the prompt);
//! - with telemetry on, it exports cost and tokens after each exchange (`telemetry.rs`,
//!   fixed amounts per exchange);
//! - on SIGWINCH it prints `size: <rows>x<cols>` of its terminal;
//! - its transcript is `<config dir>/projects/<working directory with every character but
//!   ASCII letters and digits replaced by '-'>/<id>.jsonl`, the config dir being
//!   `$CLAUDE_CONFIG_DIR`, else `$HOME/.claude`: a new conversation creates it with a first
//!   `{"type":"system",…}` line, each exchange appends a `user` and an `assistant` line, the
//!   latter with `message.model`, `message.id`, `requestId` and `message.usage` (the
//!   telemetry's amounts).

mod hooks;
mod telemetry;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::exit;

use serde_json::json;
use uuid::Uuid;

/// What the command line asked for.
#[derive(Default)]
struct Options {
    session_id: Option<String>,
    resume: Option<String>,
    system_prompt: Option<String>,
    model: Option<String>,
    permission_mode: Option<String>,
    settings: Option<String>,
}

/// Prints `message` on stderr and exits 1, as the real CLI does on bad usage.
fn fail(message: &str) -> ! {
    eprintln!("{message}");
    exit(1)
}

fn parse(args: impl Iterator<Item = String>) -> Options {
    let mut options = Options::default();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let slot = match flag.as_str() {
            "--session-id" => &mut options.session_id,
            "--resume" | "-r" => &mut options.resume,
            "--append-system-prompt" => &mut options.system_prompt,
            "--model" => &mut options.model,
            "--permission-mode" => &mut options.permission_mode,
            "--settings" => &mut options.settings,
            "--verbose" => continue,
            other if other.starts_with('-') => fail(&format!("error: unknown option '{other}'")),
            other => fail(&format!("error: unexpected argument '{other}'")),
        };
        let value = inline
            .or_else(|| args.next())
            .unwrap_or_else(|| fail(&format!("error: option '{flag}' argument missing")));
        *slot = Some(value);
    }
    options
}

fn config_dir() -> PathBuf {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match var("CLAUDE_CONFIG_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&var("HOME").unwrap_or_else(|| fail("HOME is not set"))).join(".claude"),
    }
}

/// The CLI's project directory name for the working directory.
fn project_name(cwd: &Path) -> String {
    cwd.to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

fn valid_id(id: &str) -> String {
    match Uuid::parse_str(id) {
        Ok(uuid) => uuid.to_string(),
        Err(_) => fail("Error: Invalid session ID. Must be a valid UUID."),
    }
}

fn append(transcript: &mut File, value: serde_json::Value) {
    let mut line = value.to_string();
    line.push('\n');
    if let Err(error) = transcript.write_all(line.as_bytes()) {
        fail(&format!("cannot write the transcript: {error}"));
    }
}

/// Opens (new: creates) the conversation's transcript, as `--session-id`/`--resume` decide.
fn open_transcript(options: &Options, cwd: &Path) -> (String, File, bool) {
    let config = config_dir();
    let (id, resumed) = match (&options.session_id, &options.resume) {
        (Some(_), Some(_)) => fail(
            "Error: --session-id can only be used with --continue or --resume if --fork-session is also specified.",
        ),
        (Some(id), None) => (valid_id(id), false),
        (None, Some(id)) => (valid_id(id), true),
        (None, None) => (Uuid::new_v4().to_string(), false),
    };
    // Like the CLI, conversations are kept per working directory: only this directory's
    // project is looked in.
    let dir = config.join("projects").join(project_name(cwd));
    let path = dir.join(format!("{id}.jsonl"));
    match (resumed, path.is_file()) {
        (true, true) => {}
        (true, false) => fail(&format!("No conversation found with session ID: {id}")),
        (false, true) => fail(&format!("Error: Session ID {id} is already in use.")),
        (false, false) => {
            if let Err(error) = fs::create_dir_all(&dir) {
                fail(&format!("cannot create {}: {error}", dir.display()));
            }
        }
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|error| fail(&format!("cannot open {}: {error}", path.display())));
    if !resumed {
        append(
            &mut file,
            json!({
                "type": "system",
                "sessionId": id,
                "cwd": cwd,
                "model": options.model,
                "permissionMode": options.permission_mode,
                "systemPrompt": options.system_prompt,
            }),
        );
    }
    (id, file, resumed)
}

fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `size: RxC` of the terminal on stdout.
fn print_size() {
    // SAFETY: TIOCGWINSZ writes a `winsize` into the struct given; a zeroed one is valid.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: fd 1 is ours to query; the pointer is to a live winsize.
    if unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) } == 0 {
        say(&format!("\nsize: {}x{}\n", size.ws_row, size.ws_col));
    }
}

/// Blocks SIGWINCH in every thread and prints the size from a thread of its own each time
/// one arrives: the main thread sits in a read that a handler could not interrupt usefully.
fn watch_window_size() {
    // SAFETY: sigset operations on a local, zero-initialised set; pthread_sigmask before any
    // other thread exists, so every thread inherits the blocked mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGWINCH);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || loop {
            let mut signal = 0;
            if libc::sigwait(&set, &mut signal) == 0 && signal == libc::SIGWINCH {
                print_size();
            }
        });
    }
}

/// The model the transcript and the telemetry name when `--model` gave none.
const DEFAULT_MODEL: &str = "claude-sonnet-4-5";

/// One conversation: its hooks, transcript and telemetry.
struct Conversation {
    id: String,
    model: String,
    transcript: File,
    hooks: hooks::Hooks,
    exporter: Option<telemetry::Exporter>,
    exchanges: u64,
}

impl Conversation {
    /// Records an exchange: transcript lines, then the telemetry totals.
    fn record(&mut self, line: &str, reply: &str) {
        self.exchanges += 1;
        let usage: serde_json::Map<String, serde_json::Value> = telemetry::TOKENS
            .iter()
            .map(|(_, key, amount)| (key.to_string(), json!(amount)))
            .collect();
        let id = self.id.clone();
        append(
            &mut self.transcript,
            json!({"type": "user", "sessionId": id,
                   "message": {"role": "user", "content": line}}),
        );
        append(
            &mut self.transcript,
            json!({"type": "assistant", "sessionId": id,
                   "requestId": format!("req_fake_{}", self.exchanges),
                   "message": {"id": format!("msg_fake_{}", self.exchanges),
                               "role": "assistant", "model": self.model,
                               "content": [{"type": "text", "text": reply}],
                               "usage": usage}}),
        );
        if let Some(exporter) = &self.exporter {
            exporter.export(&self.id, &self.model, self.exchanges);
        }
    }

    /// `ask`: a Bash tool use that needs permission; the reply after the person answers.
    fn ask(&self, lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
        let tool = json!({"tool_name": "Bash", "tool_input": {"command": "echo fake"},
                          "tool_use_id": format!("toolu_fake_{}", self.exchanges + 1)});
        self.hooks.run("PreToolUse", tool.clone());
        self.hooks.run("PermissionRequest", tool.clone());
        self.hooks.run(
            "Notification",
            json!({"message": "Claude needs your permission to use Bash",
                   "notification_type": "permission_prompt"}),
        );
        say("Proceed? (y/n) ");
        loop {
            match lines.next() {
                Some(Ok(answer)) if answer.trim() == "y" => {
                    let mut done = tool;
                    done["tool_response"] =
                        json!({"stdout": "fake", "stderr": "", "interrupted": false});
                    self.hooks.run("PostToolUse", done);
                    return "answer: yes".to_owned();
                }
                Some(Ok(answer)) if answer.trim() == "n" => {
                    self.hooks.run("PermissionDenied", tool);
                    return "answer: no".to_owned();
                }
                Some(Ok(_)) => say("Proceed? (y/n) "),
                _ => self.leave(),
            }
        }
    }

    /// End of input: `SessionEnd`, exit 0.
    fn leave(&self) -> ! {
        self.hooks
            .run("SessionEnd", json!({"reason": "prompt_input_exit"}));
        exit(0)
    }
}

fn main() {
    let options = parse(std::env::args().skip(1));
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(0) } != 1 {
        fail("Error: Raw mode is not supported on the current process.stdin, which Ink uses as input stream by default.");
    }
    let cwd =
        std::env::current_dir().unwrap_or_else(|e| fail(&format!("no working directory: {e}")));
    let hooks = hooks::Hooks::load(options.settings.as_deref(), &cwd, &config_dir());
    let (id, transcript, resumed) = open_transcript(&options, &cwd);
    let transcript_path = config_dir()
        .join("projects")
        .join(project_name(&cwd))
        .join(format!("{id}.jsonl"));
    let hooks = hooks.with_base(json!({
        "session_id": id,
        "transcript_path": transcript_path,
        "cwd": cwd,
        "permission_mode": options.permission_mode.as_deref().unwrap_or("default"),
    }));
    let mut conversation = Conversation {
        id: id.clone(),
        model: options
            .model
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        transcript,
        hooks,
        exporter: telemetry::Exporter::from_env(),
        exchanges: 0,
    };
    watch_window_size();
    let how = if resumed { "resumed" } else { "new" };
    let source = if resumed { "resume" } else { "startup" };
    conversation
        .hooks
        .run("SessionStart", json!({"source": source}));
    say(&format!(
        "Welcome to Fake Claude Code (session {id}, {how})\n> "
    ));
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    while let Some(Ok(line)) = lines.next() {
        let line = line.trim_end_matches('\r').to_owned();
        conversation
            .hooks
            .run("UserPromptSubmit", json!({"prompt": line}));
        let reply = match line.as_str() {
            "crash" => exit(3),
            "ask" => conversation.ask(&mut lines),
            "fail" => "API Error: fake failure".to_owned(),
            _ => format!("you said: {line}"),
        };
        conversation.record(&line, &reply);
        if line == "fail" {
            conversation.hooks.run(
                "StopFailure",
                json!({"error": "server_error", "last_assistant_message": reply}),
            );
        } else {
            conversation.hooks.run(
                "Stop",
                json!({"stop_hook_active": false, "last_assistant_message": reply}),
            );
        }
        say(&format!("{reply}\n> "));
    }
    conversation.leave()
}
