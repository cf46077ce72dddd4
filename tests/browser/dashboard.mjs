// The dashboard in headless Chromium, against a real server started by tests/dashboard.rs.
//
//   node tests/browser/dashboard.mjs open  <url> <work-dir> <artifacts-dir>
//   node tests/browser/dashboard.mjs token <url> <token> <artifacts-dir>
//   node tests/browser/dashboard.mjs terminal <url> <work-dir> <artifacts-dir>
//   node tests/browser/dashboard.mjs claude <url> <work-dir> <artifacts-dir>
//
// `open`: a server without a token, custom commands allowed, error-rate threshold 0. Load the
// page, create a session with a process agent through the form, see it running, SIGKILL its
// process from here and see the restart appear without a reload, see the alert toast, save a
// screenshot; restart the server and see the page reconnect; export and import; the list
// filters; navigate (a refusal live, then a move); clone; terminate. `token`: a server with a token
// holding `/`, `+` and `=` (no subprotocol characters); the page asks for it once, keeps it in
// sessionStorage only, and then lists sessions and goes live; an agent's terminal attaches with
// it too.
// `terminal`: custom commands allowed; a session with a `cat` agent on a terminal. Open its
// Terminal pane, type a line, see the echo in the xterm screen and in the server's screen;
// a second tab sees the same screen and types into it; the pane's size reaches the agent;
// closing the pane detaches and the agent keeps running; the session ending closes it.
// Prints one line per step; any failure exits 1 with the reason (and a screenshot).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [mode, url, arg, artifacts] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
// Bounds for waiting on the page; generous for a loaded 2-core machine, not asserted times.
const WAIT = { timeout: 20000 };

mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
// While the server restarts, failed connections and its 503s are expected.
let restarting = false;
const RESTART_NOISE = /WebSocket connection to .* failed|ERR_CONNECTION_REFUSED|status of 503/;
page.on("console", (message) => {
  if (restarting && RESTART_NOISE.test(message.text())) return;
  // The first request without the token is answered 401, which Chromium logs.
  if (message.type() === "error" && !(mode === "token" && /status of 401/.test(message.text()))) problems.push(`console error: ${message.text()}`);
});
const step = (text) => console.log(`ok ${text}`);
// Which request a "Failed to load resource" console error was about (the console does not say).
page.on("response", (response) => {
  if (response.status() >= 400) console.log(`answer ${response.status()} ${response.request().method()} ${response.url()}`);
});

// Polls `predicate(arg)` in the page until true (page.waitForFunction with an argument
// evaluates a string, which the page's CSP rightly refuses).
async function until(predicate, arg, what) {
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    if (await page.evaluate(predicate, arg)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Resolves at the next line on stdin (tests/dashboard.rs answers RESTART with one).
function waitForLine() {
  return new Promise((resolve, reject) => {
    process.stdin.once("data", () => { process.stdin.pause(); process.stdin.unref(); resolve(); });
    process.stdin.once("end", () => reject(new Error("stdin closed before the restart was done")));
    process.stdin.resume();
  });
}

async function api(path, token, body) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(new URL(`/api/claude${path}`, url), {
    method: body === undefined ? "GET" : "POST", headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

async function openMode(work) {
  await page.goto(url);
  await page.waitForSelector("#live[data-state=open]", WAIT);
  step("page loaded, WebSocket open");
  // A marker that a reload would wipe: everything below must happen live.
  await page.evaluate(() => { window.__noReload = true; });

  const form = page.locator("#create-form");
  await form.locator("[name=name]").fill("browser-session");
  await form.locator("[name=working_directory]").fill(join(work, "project"));
  await page.waitForSelector('#create-form .validation[data-valid="true"]', WAIT);
  step("live path validation answered");
  // The worker configures no `depends_on`: a BACKEND waits for the ORCHESTRATOR by default
  // (a logical agent here), which the graph must show as an edge.
  await form.locator("[name=agents]").fill(JSON.stringify([
    { agent_type: "orchestrator" },
    { agent_type: "backend", name: "worker", command: ["sh", "-c", "echo hello-from-worker; exec sleep 1000"] },
  ]));
  await form.locator("button[type=submit]").click();
  await page.waitForURL(/#\/session\/[0-9a-f-]+$/, WAIT);
  const id = page.url().split("/").pop();
  step(`session ${id} created through the form`);

  const row = page.locator('#agents tr[data-agent="worker"]');
  await row.locator(".state .status[data-s=running]").waitFor(WAIT);
  await until(() => /^\d+$/.test(document.querySelector('#agents tr[data-agent="worker"] .pid').textContent), null, "a pid");
  const shownPid = Number(await row.locator(".pid").textContent());
  const { session } = await api(`/sessions/${id}`);
  const agent = session.agents.find((a) => a.name === "worker");
  if (agent.status !== "running" || agent.pid !== shownPid) {
    throw new Error(`page shows pid ${shownPid}, the API ${agent.pid} (${agent.status})`);
  }
  const restartsBefore = Number(await row.locator(".restarts").textContent());
  step(`agent running with pid ${shownPid}, ${restartsBefore} restarts`);

  // The monitor counts restarts from its first sample of the session on: wait for the
  // agent's first live CPU figure (a `metrics` event) before the kill.
  await until(() => /^\d/.test(document.querySelector('#agents tr[data-agent="worker"] .cpu').textContent)
    && /^\d/.test(document.querySelector('#agents tr[data-agent="worker"] .memory').textContent), null, "a live metrics sample");
  step(`live metrics: cpu ${await row.locator(".cpu").textContent()} %, memory ${await row.locator(".memory").textContent()} MB`);
  process.kill(agent.pid, "SIGKILL");
  step(`killed pid ${agent.pid} from outside`);
  await until((before) => {
    const row = document.querySelector('#agents tr[data-agent="worker"]');
    return Number(row.querySelector(".restarts").textContent) > before;
  }, restartsBefore, "the restart count to rise");
  await until((old) => {
    const row = document.querySelector('#agents tr[data-agent="worker"]');
    const pid = row.querySelector(".pid").textContent;
    return row.querySelector(".status").dataset.s === "running" && /^\d+$/.test(pid) && Number(pid) !== old;
  }, agent.pid, "a new pid, running");
  step(`restart shown live: ${await row.locator(".restarts").textContent()} restarts, new pid ${await row.locator(".pid").textContent()}`);
  // The second incarnation's output arrives in the log tail live.
  await until(() => document.querySelector("#log").textContent.split("hello-from-worker").length > 2, null, "the restarted agent's output in the log tail");
  step("the restarted agent's output appeared in the log tail");

  const toast = page.locator(".toast", { hasText: "errors in the last hour" });
  await toast.first().waitFor(WAIT);
  step(`alert toast: ${await toast.first().textContent()}`);
  await page.locator("#alerts li", { hasText: "error_rate" }).first().waitFor(WAIT);
  step("alert listed among the open alerts");
  await until(() => document.querySelectorAll("#cpu-chart canvas").length > 0, null, "the CPU chart");
  await page.locator("#graph g[data-agent=worker]").waitFor(WAIT);
  // A vertical line has an empty box, which playwright calls hidden: attached is the check.
  await page.locator('#graph line.edge[data-from="worker"][data-to="master-orchestrator"]').waitFor({ ...WAIT, state: "attached" });
  step("charts and dependency graph drawn, with the default edge worker → master-orchestrator");

  if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
  await page.screenshot({ path: join(artifacts, "dashboard-session.png"), fullPage: true });

  // The server restarts (same port and data): the page sees the connection drop, reconnects
  // by itself and shows the restored agent's new process.
  const pidBefore = Number(await row.locator(".pid").textContent());
  await page.evaluate(() => {
    window.__states = [];
    new MutationObserver(() => window.__states.push(document.querySelector("#live").dataset.state))
      .observe(document.querySelector("#live"), { attributes: true });
  });
  restarting = true;
  console.log("RESTART");
  await waitForLine();
  step("server restarted on the same port");
  await until(() => window.__states.includes("closed") && document.querySelector("#live").dataset.state === "open", null, "the WebSocket to reconnect");
  await until((old) => {
    const row = document.querySelector('#agents tr[data-agent="worker"]');
    const pid = row.querySelector(".pid").textContent;
    return row.querySelector(".status").dataset.s === "running" && /^\d+$/.test(pid) && Number(pid) !== old;
  }, pidBefore, "the restored agent's new pid");
  restarting = false;
  if (!(await page.evaluate(() => window.__noReload === true))) throw new Error("the page reloaded");
  step(`reconnected (${await page.evaluate(() => window.__states.join(" → "))}), agent running again with pid ${await row.locator(".pid").textContent()}`);
  // Export downloads the snapshot; importing that file makes a new session with its agent.
  const [download] = await Promise.all([page.waitForEvent("download", WAIT), page.locator("#s-export").click()]);
  const snapshotFile = join(artifacts, "exported-session.json");
  await download.saveAs(snapshotFile);
  step(`exported: ${download.suggestedFilename()}`);
  await page.goto(`${url}#/`);
  await page.locator(`#sessions tr[data-id="${id}"]`).waitFor(WAIT);
  await page.locator("#import-form [name=file]").setInputFiles(snapshotFile);
  await page.locator("#import-form [name=working_directory]").fill(join(work, "imported"));
  await page.locator("#import-form button[type=submit]").click();
  await until((old) => /#\/session\/[0-9a-f-]+$/.test(location.hash) && !location.hash.endsWith(old), id, "the imported session's page");
  await page.locator('#agents tr[data-agent="worker"] .status[data-s=running]').waitFor(WAIT);
  if (!(await page.locator("#s-dir").textContent()).endsWith("imported")) throw new Error("imported into the wrong directory");
  step("imported the exported file: a new session, its agent running");
  const imported = page.url().split("/").pop();
  await page.goto(`${url}#/`);
  await page.locator(`#sessions tr[data-id="${id}"]`).waitFor(WAIT);
  await page.screenshot({ path: join(artifacts, "dashboard-list.png"), fullPage: true });

  await filters(id, imported);
  await navigateForm(id, work);
  await cloneAndTerminate(id);
  step(`screenshots in ${artifacts}`);
}

// The list's filters: a directory glob leaves only the imported session; clearing it brings
// both back; a status filter leaves none.
async function filters(id, imported) {
  const directory = page.locator("#filters [name=working_directory_pattern]");
  await directory.fill("*/imported");
  await until((want) => { const ids = [...document.querySelectorAll("#sessions tbody tr")].map((row) => row.dataset.id); return ids.length === 1 && ids[0] === want; }, imported, "only the imported session listed");
  if (!(await page.locator("#sessions-empty").isHidden())) throw new Error("'no session matches' shown beside a row");
  step("directory filter: only the imported session listed");
  await directory.fill("");
  await until((want) => want.every((w) => [...document.querySelectorAll("#sessions tbody tr")].map((row) => row.dataset.id).includes(w)), [id, imported], "both sessions listed again");
  await page.locator("#filters [name=status]").selectOption("terminated");
  await until(() => [...document.querySelectorAll("#sessions tbody tr")].map((row) => row.dataset.id).length === 0 && !document.querySelector("#sessions-empty").hidden, null, "no terminated session");
  await page.locator("#filters [name=status]").selectOption("");
  await until((want) => want.every((w) => [...document.querySelectorAll("#sessions tbody tr")].map((row) => row.dataset.id).includes(w)), [id, imported], "both sessions listed again");
  step("status filter: none terminated; cleared: both listed");
}

// Navigate: a refused path is refused live, then an existing directory is accepted and the
// session moves there.
async function navigateForm(id, work) {
  await page.goto(`${url}#/session/${id}`);
  await page.locator('#agents tr[data-agent="worker"] .status[data-s=running]').waitFor(WAIT);
  const form = page.locator("#navigate-form");
  await form.locator("[name=path]").fill("/etc");
  await page.locator('#navigate-form .validation[data-valid="false"]').waitFor(WAIT);
  step(`navigate to /etc refused live: ${await form.locator(".validation").textContent()}`);
  const target = join(work, "moved");
  mkdirSync(target, { recursive: true });
  await form.locator("[name=path]").fill(target);
  await page.locator('#navigate-form .validation[data-valid="true"]').waitFor(WAIT);
  await form.locator("button[type=submit]").click();
  await until((want) => document.querySelector("#s-dir").textContent === want, target, "the session's new directory");
  const { session } = await api(`/sessions/${id}`);
  if (session.working_directory !== target) throw new Error(`the API says ${session.working_directory}`);
  await page.locator('#agents tr[data-agent="worker"] .status[data-s=running]').waitFor(WAIT);
  step(`navigated to ${target}; the agent runs there`);
}

// Clone: the copy opens; Terminate (confirmed): it shows terminated, and so does its row.
async function cloneAndTerminate(id) {
  const form = page.locator("#clone-form");
  await form.locator("[name=new_name]").fill("browser-clone");
  await form.locator("button[type=submit]").click();
  await until((old) => /#\/session\/[0-9a-f-]+$/.test(location.hash) && !location.hash.endsWith(old), id, "the clone's page");
  const clone = page.url().split("/").pop();
  await until(() => document.querySelector("#s-name").textContent === "browser-clone", null, "the clone's name");
  await page.locator('#agents tr[data-agent="worker"] .status[data-s=running]').waitFor(WAIT);
  step(`cloned: session ${clone} open, its agent running`);

  page.once("dialog", (dialog) => dialog.accept());
  await page.locator("#s-stop").click();
  await until(() => document.querySelector("#s-status").textContent === "terminated", null, "the clone terminated");
  const { session } = await api(`/sessions/${clone}`);
  if (session.status !== "terminated") throw new Error(`the API says ${session.status}`);
  await page.goto(`${url}#/`);
  await page.locator(`#sessions tr[data-id="${clone}"] .status[data-s=terminated]`).waitFor(WAIT);
  await page.locator(`#sessions tr[data-id="${id}"] .status[data-s=active]`).waitFor(WAIT);
  step("terminated through the page: the clone listed as terminated, the original still active");
}

async function tokenMode(token) {
  await page.goto(url);
  const dialog = page.locator("#token-dialog[open]");
  await dialog.waitFor(WAIT);
  step("the page asked for the token");
  await page.locator("#token-input").fill(token);
  await page.locator("#token-form button[type=submit]").click();
  await page.waitForSelector("#live[data-state=open]", WAIT);
  await page.locator("#sessions-empty:not([hidden])").waitFor(WAIT);
  step("sessions listed and WebSocket open with the token");
  const stored = await page.evaluate(() => sessionStorage.getItem("session-manager.token"));
  if (stored !== token) throw new Error("the token is not in sessionStorage");
  if (page.url().includes(token)) throw new Error("the token is in the URL");
  const local = await page.evaluate(() => JSON.stringify(localStorage));
  if (local.includes(token)) throw new Error("the token is in localStorage");
  // Asked once: a reload of the tab keeps it.
  await page.reload();
  await page.waitForSelector("#live[data-state=open]", WAIT);
  if (await page.locator("#token-dialog[open]").count()) throw new Error("asked again after a reload");
  step("kept for the tab: not asked again after a reload");
  await page.screenshot({ path: join(artifacts, "dashboard-token.png"), fullPage: true });

  // An agent's terminal socket carries the token as the events socket does.
  const { session } = await api("/sessions", token, {
    name: "token-terminal", working_directory: join(process.env.SM_WORK, "token-terminal"), create_if_missing: true,
    agents: [{ agent_type: "documentation", name: "shell", command: ["cat"], terminal: true }],
  });
  await openTerminal(page, session.id, "shell");
  await page.locator("#terminal .xterm").click();
  await page.keyboard.type("typed-with-a-token");
  await page.keyboard.press("Enter");
  await until((word) => {
    const text = [...document.querySelectorAll("#terminal .xterm-rows > div")].map((r) => r.textContent).join("\n");
    return text.split(word).length - 1 >= 2;
  }, "typed-with-a-token", "the echo in the xterm screen");
  step("an agent's terminal attached with the token, typing echoed");
}

// The text of a page's xterm screen, one line per row (xterm draws spaces as no-break ones).
const screenText = () => [...document.querySelectorAll("#terminal .xterm-rows > div")]
  .map((row) => row.textContent.replace(/\u00a0/g, " ")).join("\n");
const occurrences = (text, word) => text.split(word).length - 1;

// Opens the agent's Terminal pane in `tab` and waits for it to be attached.
async function openTerminal(tab, id, agent) {
  await tab.goto(`${url}#/session/${id}`);
  const row = tab.locator(`#agents tr[data-agent="${agent}"]`);
  await row.locator(".state .status[data-s=running]").waitFor(WAIT);
  await row.locator("button[data-op=terminal]").click();
  await tab.locator("#t-state[data-state=open]").waitFor(WAIT);
  await tab.locator("#terminal .xterm-rows").waitFor(WAIT);
}

async function terminalMode(work) {
  const { session } = await api("/sessions", null, {
    name: "terminal-session", working_directory: join(work, "terminal"), create_if_missing: true,
    agents: [
      { agent_type: "documentation", name: "shell", command: ["cat"], terminal: { rows: 20, cols: 70 } },
      { agent_type: "quality", name: "plain", command: ["sh", "-c", "exec sleep 1000"] },
    ],
  });
  const id = session.id;
  step(`session ${id} created with a terminal agent`);
  await openTerminal(page, id, "shell");
  if (await page.locator('#agents tr[data-agent="plain"] button[data-op=terminal]').count()) {
    throw new Error("an agent without a terminal has a Terminal button");
  }
  step("Terminal pane attached (only the agent with a terminal has the button)");

  await page.locator("#terminal .xterm").click();
  await page.keyboard.type("hello-from-browser");
  await page.keyboard.press("Enter");
  // The PTY echoes the line as typed, then cat prints it: twice.
  await until((word) => {
    const text = [...document.querySelectorAll("#terminal .xterm-rows > div")].map((r) => r.textContent).join("\n");
    return text.split(word).length - 1 >= 2;
  }, "hello-from-browser", "the echo in the xterm screen");
  step("typed a line; the echo and cat's copy are on the xterm screen");
  const screen = await api(`/sessions/${id}/agents/shell/screen`);
  if (occurrences((screen.lines || []).join("\n"), "hello-from-browser") < 2) {
    throw new Error(`the server's screen lacks the line: ${JSON.stringify(screen)}`);
  }
  const size = await page.evaluate(() => [terminalPane.term.rows, terminalPane.term.cols]);
  if (screen.rows !== size[0] || screen.cols !== size[1]) {
    throw new Error(`the pane is ${size[0]}x${size[1]}, the agent's terminal ${screen.rows}x${screen.cols}`);
  }
  step(`the server's screen shows it too, at the pane's size ${screen.rows}x${screen.cols}`);

  // A second viewer: the same screen (from the scrollback), and its typing reaches both.
  const second = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  second.on("pageerror", (error) => problems.push(`second tab: page error: ${error.message}`));
  await openTerminal(second, id, "shell");
  const seen = async (tab, word, count) => {
    const deadline = Date.now() + WAIT.timeout;
    while (occurrences(await tab.evaluate(screenText), word) < count) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${word} in a tab`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  await seen(second, "hello-from-browser", 2);
  step("a second tab attached and shows the same screen");
  await second.locator("#terminal .xterm").click();
  await second.keyboard.type("from-the-second-tab");
  await second.keyboard.press("Enter");
  await seen(page, "from-the-second-tab", 2);
  await seen(second, "from-the-second-tab", 2);
  step("what the second tab typed appears in both");
  await second.close();

  // A smaller window: the pane refits and the agent's terminal follows.
  const before = await page.evaluate(() => terminalPane.term.cols);
  await page.setViewportSize({ width: 800, height: 1100 });
  await until((old) => terminalPane.term.cols < old, before, "the pane to refit");
  const cols = await page.evaluate(() => terminalPane.term.cols);
  const deadline = Date.now() + WAIT.timeout;
  for (;;) {
    const now = await api(`/sessions/${id}/agents/shell/screen`);
    if (now.cols === cols) break;
    if (Date.now() > deadline) throw new Error(`the agent's terminal stayed ${now.cols} columns, the pane has ${cols}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  step(`resized the window: the agent's terminal is ${cols} columns, as the pane`);
  await page.screenshot({ path: join(artifacts, "dashboard-terminal.png"), fullPage: true });

  const { session: running } = await api(`/sessions/${id}`);
  const pid = running.agents.find((a) => a.name === "shell").pid;
  await page.locator("#t-close").click();
  await until(() => document.querySelector("#terminal-card").hidden && !terminalPane.socket, null, "the pane to close");
  const { session: after } = await api(`/sessions/${id}`);
  const shell = after.agents.find((a) => a.name === "shell");
  if (shell.status !== "running" || shell.pid !== pid) {
    throw new Error(`after closing the pane the agent is ${shell.status} with pid ${shell.pid} (was ${pid})`);
  }
  step(`closed the pane: detached, the agent still running with pid ${pid}`);

  // The session ends while the pane is open: the server closes the terminal and the pane
  // says so instead of retrying.
  await openTerminal(page, id, "shell");
  await fetch(new URL(`/api/claude/sessions/${id}`, url), { method: "DELETE" });
  await until(() => document.querySelector("#t-state").textContent === "the session ended", null, "the pane to say the session ended");
  step("terminated the session: the pane says it ended");
}

// `claude`: [agents.claude] command is the fake claude, which runs the hooks and exports the
// telemetry the server gave it, as the real CLI does. A session with a Claude agent; the page
// may notify (the permission granted, as a person's click would). Typing `ask` into the
// agent makes it ask a permission: the list shows "waiting for input", the header one
// waiting, and a browser notification is shown; the session page lists the Claude session
// waiting. Answering `y` lets it finish: idle, nobody waiting, and what it cost shown.
async function claudeMode(work) {
  await page.context().grantPermissions(["notifications"], { origin: new URL(url).origin });
  await page.addInitScript(() => {
    window.__notes = [];
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.__notes.push({ title, body: options && options.body });
      }
    };
  });
  const { session } = await api("/sessions", null, {
    name: "claude-session", working_directory: join(work, "claude"), create_if_missing: true,
    agents: [{ agent_type: "backend", name: "coder", claude: true }],
  });
  const id = session.id;
  step(`session ${id} created with a Claude agent`);
  await page.goto(url);
  await page.waitForSelector("#live[data-state=open]", WAIT);
  const row = page.locator(`#sessions tr[data-id="${id}"]`);
  // Claude Code's SessionStart hook: a conversation waiting for its first prompt.
  await row.locator('.claude .status[data-s="idle"]').waitFor(WAIT);
  step("the list shows the Claude agent's conversation idle (its SessionStart hook)");

  const input = async (text) => {
    const answer = await api(`/sessions/${id}/agents/coder/input`, null, { text, submit: true });
    if (answer.success === false) throw new Error(`input refused: ${JSON.stringify(answer)}`);
  };
  await input("ask");
  await row.locator('.claude .status[data-s="waiting_for_input"]').waitFor(WAIT);
  if ((await row.locator(".claude .status").textContent()) !== "waiting for input") {
    throw new Error("the badge does not say \"waiting for input\"");
  }
  await page.locator('#waiting[data-count="1"]').waitFor(WAIT);
  await until(() => window.__notes.some((n) => n.title === "Claude Code waits for you"), null, "the browser notification");
  const note = await page.evaluate(() => window.__notes.find((n) => n.title === "Claude Code waits for you"));
  if (!note.body.includes("coder")) throw new Error(`the notification does not name the agent: ${JSON.stringify(note)}`);
  step(`asked a permission: "waiting for input" in the list, 1 waiting, notified (${note.body})`);
  await page.screenshot({ path: join(artifacts, "dashboard-claude-waiting.png"), fullPage: true });

  await page.goto(`${url}#/session/${id}`);
  const claudeRow = page.locator("#claude tbody tr");
  await claudeRow.locator('.state .status[data-s="waiting_for_input"]').waitFor(WAIT);
  step("the session page lists its Claude session waiting");

  await input("y");
  await claudeRow.locator('.state .status[data-s="idle"]').waitFor(WAIT);
  await page.locator('#waiting[data-count="0"]').waitFor(WAIT);
  step("answered: idle again, nobody waiting");
  await until(() => Number(document.querySelector("#claude tbody tr .cost").textContent) > 0, null, "the cost from its telemetry");
  const cost = await claudeRow.locator(".cost").textContent();
  step(`its telemetry arrived: cost ${cost} USD on the session page`);
}

try {
  if (mode === "open") await openMode(arg);
  else if (mode === "token") await tokenMode(arg);
  else if (mode === "terminal") await terminalMode(arg);
  else if (mode === "claude") await claudeMode(arg);
  else throw new Error(`unknown mode ${mode}`);
  if (problems.length) throw new Error(problems.join("\n"));
  console.log("PASS");
} catch (error) {
  console.log(`FAIL ${error.message}`);
  if (problems.length) console.log(problems.join("\n"));
  await page.screenshot({ path: join(artifacts, `failure-${mode}.png`), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}
