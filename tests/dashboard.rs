//! The dashboard: its static routes over HTTP (no token needed for the page, the token still
//! needed for data, the server's own origin admitted), and the page itself in headless
//! Chromium (tests/browser/dashboard.mjs, playwright-core) against the real binary.
//!
//! The browser tests are a suite of their own, not part of plain `cargo test` (a fresh machine
//! has no browser): `cargo test --test dashboard -- --ignored`. They need Debian's `chromium`
//! and `npm ci` in tests/browser (`.ci/run` installs both after the README's test command has
//! run); asked for without them, they fail, saying what to install.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::app::App;

/// As `openssl rand -base64` makes them: `/`, `+` and `=` are not allowed in a WebSocket
/// subprotocol, so the page must send it encoded (`bearer.base64url`).
const TOKEN: &str = "dash/board+test=token==";

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts")
}

/// Fails, naming the installs, when the browser or playwright-core is missing.
fn require_browser() {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!(
            "{} (apt-get install -y chromium, or set CHROMIUM)",
            chromium().display()
        ));
    }
    if !browser_dir().join("node_modules/playwright-core").is_dir() {
        missing.push("playwright-core (cd tests/browser && npm ci)".to_owned());
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (apt-get install -y nodejs npm)".to_owned());
    }
    assert!(
        missing.is_empty(),
        "the browser tests need: {}; .ci/run installs them (see README, Testing)",
        missing.join(", ")
    );
}

/// Runs the browser script in `mode`; panics with its output unless it passed. When the
/// script prints `RESTART`, the server is restarted on the same port and the script told so
/// (a line on its stdin).
fn run_browser(mode: &str, app: &mut App, arg: &str) {
    require_browser();
    let mut child = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .args([mode, &app.url("/"), arg])
        .arg(artifacts())
        .env("CHROMIUM", chromium())
        .env("SM_WORK", app.work.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        println!("{line}");
        if line == "RESTART" {
            app.restart();
            writeln!(stdin, "restarted").unwrap();
        }
        stdout.push_str(&line);
        stdout.push('\n');
    }
    let status = child.wait().unwrap();
    let stderr = errors.join().unwrap();
    assert!(
        status.success() && stdout.lines().any(|line| line == "PASS"),
        "browser test `{mode}` failed ({status}):\n{stdout}\n{stderr}\n(screenshot in {})",
        artifacts().display()
    );
}

#[test]
#[ignore = "browser suite: cargo test --test dashboard -- --ignored (needs chromium and `npm ci` in tests/browser)"]
fn the_dashboard_shows_a_restart_and_an_alert_live_and_reconnects() {
    let mut app = App::start(&[
        ("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true"),
        // Any agent restart after a crash is over the line: the kill below raises an alert.
        (
            "SESSION_MANAGER_MONITOR__THRESHOLDS__ERROR_RATE_PER_HOUR",
            "0",
        ),
    ]);
    let work = app.work.path().to_string_lossy().into_owned();
    run_browser("open", &mut app, &work);
}

#[test]
#[ignore = "browser suite: cargo test --test dashboard -- --ignored (needs chromium and `npm ci` in tests/browser)"]
fn the_dashboard_asks_for_the_token_once_and_keeps_it_for_the_tab() {
    let mut app = App::start(&[
        ("SESSION_MANAGER_SERVER__TOKEN", TOKEN),
        ("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true"),
    ]);
    run_browser("token", &mut app, TOKEN);
}

#[test]
#[ignore = "browser suite: cargo test --test dashboard -- --ignored (needs chromium and `npm ci` in tests/browser)"]
fn the_dashboards_terminal_echoes_typing_is_shared_by_two_tabs_and_detaches() {
    let mut app = App::start(&[("SESSION_MANAGER_AGENTS__ALLOW_CUSTOM_COMMANDS", "true")]);
    let work = app.work.path().to_string_lossy().into_owned();
    run_browser("terminal", &mut app, &work);
}

#[test]
#[ignore = "browser suite: cargo test --test dashboard -- --ignored (needs chromium and `npm ci` in tests/browser)"]
fn the_dashboard_shows_a_claude_agent_waiting_for_input_and_notifies() {
    // The fake claude as the Claude Code CLI: it runs the hooks and exports the telemetry the
    // server configures, as the real one does.
    let fake = common::example("fake_claude");
    let mut app = App::with_config(&format!(
        "[agents.claude]\ncommand = [{:?}]\n",
        fake.display().to_string()
    ));
    let work = app.work.path().to_string_lossy().into_owned();
    run_browser("claude", &mut app, &work);
}

#[tokio::test]
async fn the_page_and_assets_need_no_token_but_data_does() {
    let app = App::start(&[("SESSION_MANAGER_SERVER__TOKEN", TOKEN)]);
    let client = &app.client;

    let page = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // xterm.js needs inline <style> elements; scripts and style attributes stay strict.
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("style-src 'self';"), "{csp}");
    let etag = page.headers()["etag"].clone();
    assert!(page.text().await.unwrap().contains("/assets/dashboard.js"));
    let again = client
        .get(app.url("/"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    for (asset, content_type) in [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("dashboard.css", "text/css; charset=utf-8"),
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
        ("xterm.js", "text/javascript; charset=utf-8"),
        ("xterm.css", "text/css; charset=utf-8"),
        ("addon-fit.js", "text/javascript; charset=utf-8"),
    ] {
        let response = client
            .get(app.url(&format!("/assets/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{asset}");
        assert_eq!(response.headers()["content-type"], content_type, "{asset}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    let head = client.head(app.url("/assets/dashboard.js")).send().await;
    assert_eq!(head.unwrap().status(), 200);

    // An unknown asset is the usual 404 envelope (no token needed to learn that), another
    // method a 405 — which, not being a read, needs the token first.
    let (status, body) =
        common::app::answer(client.get(app.url("/assets/nope.js")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("not_found"))
    );
    let post = client.post(app.url("/")).send().await.unwrap();
    assert_eq!(post.status(), 401);
    let post = client
        .post(app.url("/"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");

    // Data still needs the token, whatever the page's path looks like.
    for path in [
        "/api/claude/sessions",
        "/api/claude/system-status",
        "/metrics",
        "/openapi.json",
        "/assets/../api/claude/sessions",
    ] {
        let response = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
    }
    let response = client
        .get(app.url("/api/claude/sessions"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_servers_own_origin_is_admitted_and_others_are_not() {
    let app = App::start(&[]);
    let own = app.url("");
    let response = app
        .client
        .post(app.url("/api/claude/validate-path"))
        .header("origin", &own)
        .json(&serde_json::json!({ "path": app.dir("x") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{own}");
    let response = app
        .client
        .post(app.url("/api/claude/validate-path"))
        .header("origin", "http://evil.example")
        .json(&serde_json::json!({ "path": app.dir("x") }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}
