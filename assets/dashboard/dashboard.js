// The session-manager dashboard: plain JavaScript over the server's own API and WebSocket.
// No build step; served from the binary (src/api/dashboard.rs).
"use strict";

const API = "/api/claude";
const TOKEN_KEY = "session-manager.token";
const $ = (selector, root = document) => root.querySelector(selector);

// ---------------------------------------------------------------- token and requests

const auth = {
  get token() { return sessionStorage.getItem(TOKEN_KEY) || ""; },
  set token(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
  },
  waiting: null,
  // Resolves once the user gave a token (the dialog stays until then).
  ask(message) {
    if (this.waiting) return this.waiting;
    const dialog = $("#token-dialog");
    $("#token-error").textContent = message || "";
    this.waiting = new Promise((resolve) => {
      $("#token-form").onsubmit = (event) => {
        event.preventDefault();
        this.token = $("#token-input").value.trim();
        $("#token-input").value = "";
        dialog.close();
        this.waiting = null;
        resolve();
      };
    });
    if (!dialog.open) dialog.showModal();
    return this.waiting;
  },
};

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// A request to the API; asks for the token (once) on a 401 and tries again.
async function api(method, path, body) {
  for (;;) {
    const headers = {};
    if (auth.token) headers.authorization = `Bearer ${auth.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await fetch(API + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => null);
    if (response.status === 401) {
      await auth.ask(auth.token ? "That token was refused." : "");
      live.restart();
      continue;
    }
    live.start();
    if (!response.ok || !data || data.success === false) throw new ApiError(response.status, data);
    return data;
  }
}

// ---------------------------------------------------------------- WebSocket

// The unpadded base64url encoding of a string's UTF-8 bytes.
function base64url(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// A WebSocket to `path` on this server. The token goes as a subprotocol, never in the URL:
// `bearer.base64url, <encoded>`, since a token may hold characters a subprotocol cannot (`/`,
// `=`, `+`, space), on which `new WebSocket` would throw.
function openSocket(path) {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
  return auth.token
    ? new WebSocket(url, ["bearer.base64url", base64url(auth.token)])
    : new WebSocket(url);
}

// One WebSocket with reconnection (backoff 0.5 s doubling to 10 s) and resume by `seq`.
class LiveSocket {
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = 500;
    this.lastSeq = null;
    this.logs = false;
    this.socket = null;
    this.timer = null;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const socket = openSocket("/ws/sessions");
    this.socket = socket;
    this.onState("connecting");
    socket.onopen = () => {
      this.delay = 500;
      this.onState("open");
      const topics = ["sessions", "agents", "alerts", "metrics"];
      if (this.logs) topics.push("logs");
      const subscribe = { type: "subscribe", topics };
      if (this.lastSeq !== null) subscribe.since = this.lastSeq;
      socket.send(JSON.stringify(subscribe));
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      if (typeof message.seq === "number") this.lastSeq = message.seq;
      if (message.type === "connected" && this.lastSeq === null) this.lastSeq = message.last_seq;
      this.onMessage(message, this);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.onState("closed");
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  }

  // Agents' output lines only while a session page shows them (they are the busiest topic).
  setLogs(wanted) {
    if (this.logs === wanted) return;
    this.logs = wanted;
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: wanted ? "subscribe" : "unsubscribe", topics: ["logs"] }));
    }
  }

  // Reconnects now (a new token).
  restart() {
    const old = this.socket;
    this.socket = null;
    if (old) old.close();
    this.delay = 500;
    this.connect();
  }
}

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

const fmt = (value, digits = 1) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

function statusBadge(status) {
  return el("span", { class: "status", "data-s": status, text: status });
}

// A Claude Code state as people read it.
const claudeWords = {
  working: "working", waiting_for_input: "waiting for input", idle: "idle",
  failed: "failed", ended: "ended",
};

function claudeBadge(state) {
  return el("span", { class: "status", "data-s": state, text: claudeWords[state] || state });
}

// One badge per Claude Code session of a session (its agent's name in the title).
function claudeBadges(claudeSessions) {
  if (!claudeSessions.length) return "–";
  const badges = claudeSessions.map((c) => {
    const badge = claudeBadge(c.state);
    badge.title = `${c.agent || c.claude_session_id}: ${claudeWords[c.state] || c.state} since ${new Date(c.since * 1000).toLocaleTimeString()}`;
    return badge;
  });
  return el("span", { class: "claude-badges" }, ...badges);
}

function toast(text, severity, kind) {
  const node = el("div", { class: "toast", role: "status", "data-severity": severity || "", "data-kind": kind || "" , text });
  $("#toasts").append(node);
  setTimeout(() => node.remove(), 8000);
}

function showError(form, error) {
  const target = form.querySelector(".error") || $("#s-error");
  target.textContent = error ? error.message : "";
}

function debounce(fn, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function download(name, data) {
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---------------------------------------------------------------- sessions list

const list = {
  rows: new Map(), // session id -> row

  async load() {
    const params = new URLSearchParams({ sort: "-created_at", limit: "200" });
    for (const [key, value] of new FormData($("#filters"))) if (value) params.set(key, value);
    try {
      const data = await api("GET", `/sessions?${params}`);
      this.render(data.sessions);
    } catch (error) {
      $("#sessions-empty").hidden = false;
      $("#sessions-empty").textContent = error.message;
    }
  },

  render(sessions) {
    const body = $("#sessions tbody");
    body.replaceChildren();
    this.rows.clear();
    for (const s of sessions) {
      const counts = {};
      for (const state of Object.values(s.agent_statuses || {})) counts[state] = (counts[state] || 0) + 1;
      const agents = Object.entries(counts).map(([state, n]) => `${n} ${state}`).join(", ") || "none";
      const row = el("tr", { "data-id": s.id },
        el("td", {}, el("a", { href: `#/session/${s.id}`, text: s.name })),
        el("td", {}, statusBadge(s.status)),
        el("td", { class: "claude" }, claudeBadges(s.claude_sessions || [])),
        el("td", {}, el("code", { text: s.working_directory })),
        el("td", { text: (s.context && s.context.git_branch) || "–" }),
        el("td", { class: "agents", text: agents }),
        el("td", { class: "cpu", text: fmt(s.metrics.cpu_usage_percent) }),
        el("td", { class: "mem", text: fmt(s.metrics.memory_usage_mb) }));
      this.rows.set(s.id, row);
      body.append(row);
    }
    $("#sessions-empty").textContent = "No session matches.";
    $("#sessions-empty").hidden = sessions.length > 0;
  },

  metrics(sessionId, point) {
    const row = this.rows.get(sessionId);
    if (!row) return;
    $(".cpu", row).textContent = fmt(point.cpu_usage_percent);
    $(".mem", row).textContent = fmt(point.memory_usage_mb);
  },
};
const reloadList = debounce(() => list.load(), 250);

// ---------------------------------------------------------------- one session

const page = {
  id: null,
  session: null,
  alerts: new Map(),
  sampled: new Map(), // agent name -> its latest monitor sample
  charts: null,
  logAgent: null,

  async open(id) {
    if (terminalPane.session !== id) terminalPane.close();
    this.id = id;
    this.alerts.clear();
    this.sampled.clear();
    $("#alerts").replaceChildren();
    $("#log").replaceChildren();
    $("#s-error").textContent = "";
    this.destroyCharts();
    try {
      await this.refresh();
      const [status, metrics] = await Promise.all([
        api("GET", `/sessions/${id}/status`),
        api("GET", `/sessions/${id}/metrics?hours=1`),
      ]);
      for (const alert of status.alerts || []) if (alert.id) this.alerts.set(alert.id, alert);
      this.renderAlerts();
      const points = metrics.metrics || [];
      for (const agent of (points.length ? points[points.length - 1].agents : null) || []) this.sampled.set(agent.name, agent);
      this.render();
      this.drawCharts(points);
      await this.loadLog();
    } catch (error) {
      $("#s-error").textContent = error.message;
    }
  },

  async refresh() {
    const id = this.id;
    const [data, usage] = await Promise.all([
      api("GET", `/sessions/${id}`),
      api("GET", `/sessions/${id}/usage`),
    ]);
    if (this.id !== id) return;
    this.session = data.session;
    this.render();
    this.renderUsage(usage);
  },

  // What the session's Claude Code cost: its OpenTelemetry, else its transcripts.
  renderUsage(u) {
    const t = u.tokens;
    $("#u-cost").textContent = fmt(u.cost_usd, 4);
    $("#u-budget").textContent = u.budget_usd == null ? "none"
      : `${fmt(u.budget_usd, 2)} USD (${u.budget_usd > 0 ? Math.round((u.cost_usd / u.budget_usd) * 100) : 100} %)`;
    $("#u-tokens").textContent = `${t.input} / ${t.output} / ${t.cache_read} / ${t.cache_creation}`;
    $("#u-lines").textContent = `+${u.lines_of_code.added} / −${u.lines_of_code.removed}`;
    $("#u-commits").textContent = String(u.commits);
    $("#u-prs").textContent = String(u.pull_requests);
    $("#u-source").textContent = { otel: "OpenTelemetry", transcript: "transcripts (no cost in them)" }[u.source] || "nothing yet";
  },

  render() {
    const s = this.session;
    $("#s-name").textContent = s.name;
    $("#s-status").textContent = s.status;
    $("#s-status").dataset.s = s.status;
    $("#s-dir").textContent = s.working_directory;
    $("#s-branch").textContent = (s.context && s.context.git_branch) || "–";
    this.renderClaude(s.claude_sessions || []);
    const limits = {};
    for (const a of s.configuration.agents || []) limits[a.name] = a.max_memory_mb;
    const body = $("#agents tbody");
    body.replaceChildren();
    for (const agent of s.agents) {
      const limit = limits[agent.name];
      // The session object has an agent's memory only when it watches a limit; the monitor's
      // last sample has it always.
      const sampled = this.sampled.get(agent.name) || {};
      const button = (label, op) => el("button", {
        type: "button", "data-op": op, text: label,
        onclick: () => this.command(agent.name, op),
      });
      body.append(el("tr", { "data-agent": agent.name },
        el("td", { text: agent.name }),
        el("td", { text: agent.agent_type }),
        el("td", { class: "state" }, statusBadge(agent.status)),
        el("td", { class: "restarts", text: String(agent.restart_count) }),
        el("td", { class: "pid", text: agent.pid ?? "–" }),
        el("td", { class: "memory", text: `${fmt(agent.memory_mb ?? sampled.memory_mb)} / ${limit ? limit : "∞"}` }),
        el("td", { class: "cpu", text: fmt(agent.cpu_percent ?? sampled.cpu_percent) }),
        el("td", {}, button("Start", "activate"), " ", button("Stop", "deactivate"), " ", button("Restart", "restart"),
          agent.terminal ? " " : "",
          agent.terminal ? el("button", {
            type: "button", "data-op": "terminal", text: "Terminal",
            onclick: () => terminalPane.open(this.id, agent),
          }) : "")));
    }
    const select = $("#log-agent");
    const names = s.agents.map((a) => a.name);
    if ([...select.options].map((o) => o.value).join() !== names.join()) {
      select.replaceChildren(...names.map((name) => el("option", { value: name, text: name })));
      // By default the first agent that runs a process: a logical one has no output.
      const first = s.agents.find((a) => a.has_process) || s.agents[0];
      if (!names.includes(this.logAgent)) this.logAgent = first ? first.name : null;
      select.value = this.logAgent || "";
    }
    this.drawGraph();
  },

  renderClaude(claudeSessions) {
    $("#claude-card").hidden = claudeSessions.length === 0;
    const body = $("#claude tbody");
    body.replaceChildren(...claudeSessions.map((c) => el("tr", { "data-claude": c.claude_session_id },
      el("td", {}, el("code", { text: c.claude_session_id })),
      el("td", { text: c.agent || "–" }),
      el("td", { class: "state", title: c.error || "" }, claudeBadge(c.state)),
      el("td", { text: new Date(c.since * 1000).toLocaleTimeString() }),
      el("td", { text: c.last_event }),
      el("td", { class: "cost", text: fmt(c.cost_usd, 4) }),
      el("td", { class: "tokens", text: `${c.tokens.input} / ${c.tokens.output}` }))));
  },

  async command(name, op) {
    try {
      await api("POST", `/sessions/${this.id}/agents/${encodeURIComponent(name)}/${op}`);
      await this.refresh();
    } catch (error) {
      $("#s-error").textContent = error.message;
    }
  },

  // Layers: each agent one deeper than its deepest dependency, as the server resolved them
  // (`depends_on` of each agent: configured, else its template's, else its type's defaults).
  drawGraph() {
    const graph = $("#graph");
    graph.replaceChildren();
    const agents = this.session.agents;
    const names = new Set(agents.map((a) => a.name));
    const deps = {};
    for (const a of agents) deps[a.name] = (a.depends_on || []).filter((d) => names.has(d));
    const depth = {};
    const layer = (name, seen = new Set()) => {
      if (depth[name] !== undefined) return depth[name];
      if (seen.has(name)) return 0;
      seen.add(name);
      depth[name] = Math.max(-1, ...deps[name].map((d) => layer(d, seen))) + 1;
      return depth[name];
    };
    agents.forEach((a) => layer(a.name));
    const layers = [];
    for (const a of agents) (layers[depth[a.name]] ||= []).push(a.name);
    const width = graph.clientWidth || 500;
    const position = {};
    layers.forEach((row, d) => row.forEach((name, i) => {
      position[name] = { x: ((i + 1) * width) / (row.length + 1), y: 30 + d * 60 };
    }));
    graph.setAttribute("height", String(Math.max(80, layers.length * 60 + 20)));
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5",
      markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8c959f" }));
    const defs = svg("defs");
    defs.append(marker);
    graph.append(defs);
    const radius = 8;
    // An edge from an agent to what it waits for, the arrow at the dependency.
    for (const [name, list] of Object.entries(deps)) for (const dep of list) {
      const a = position[name], b = position[dep];
      const length = Math.hypot(b.x - a.x, b.y - a.y) || 1;
      const [ux, uy] = [(b.x - a.x) / length, (b.y - a.y) / length];
      graph.append(svg("line", {
        class: "edge", "data-from": name, "data-to": dep,
        x1: a.x + ux * radius, y1: a.y + uy * radius,
        x2: b.x - ux * (radius + 2), y2: b.y - uy * (radius + 2),
        stroke: "#8c959f", "marker-end": "url(#arrow)",
      }));
    }
    const states = Object.fromEntries(agents.map((a) => [a.name, a.status]));
    const colour = { running: "#1a7f37", failed: "#cf222e", backoff: "#9a6700", starting: "#9a6700" };
    for (const [name, p] of Object.entries(position)) {
      const group = svg("g", { "data-agent": name });
      group.append(svg("circle", { cx: p.x, cy: p.y, r: radius, fill: colour[states[name]] || "#8c959f" }));
      const label = svg("text", { x: p.x + 12, y: p.y + 4 });
      label.textContent = `${name} (${states[name] || "?"})`;
      group.append(label);
      graph.append(group);
    }
  },

  destroyCharts() {
    if (this.charts) for (const chart of Object.values(this.charts)) chart.plot.destroy();
    this.charts = null;
  },

  drawCharts(points) {
    this.destroyCharts();
    const make = (target, label, field, stroke) => {
      const data = [points.map((p) => p.timestamp), points.map((p) => p[field] ?? null)];
      const width = $(target).clientWidth || 400;
      const plot = new uPlot({
        width, height: 180,
        series: [{}, { label, stroke, width: 1.5 }],
        axes: [{}, { size: 50 }],
        legend: { show: false },
      }, data, $(target));
      return { plot, data, field };
    };
    this.charts = {
      cpu: make("#cpu-chart", "CPU %", "cpu_usage_percent", "#0969da"),
      mem: make("#mem-chart", "Memory MB", "memory_usage_mb", "#8250df"),
    };
  },

  metrics(point) {
    if (!this.charts) return;
    for (const chart of Object.values(this.charts)) {
      chart.data[0].push(point.timestamp);
      chart.data[1].push(point[chart.field] ?? null);
      if (chart.data[0].length > 3600) { chart.data[0].shift(); chart.data[1].shift(); }
      chart.plot.setData(chart.data);
    }
    // Live per-agent CPU and memory in the table.
    for (const agent of point.agents || []) {
      this.sampled.set(agent.name, agent);
      const row = $(`#agents tr[data-agent="${CSS.escape(agent.name)}"]`);
      if (!row) continue;
      const limit = $(".memory", row).textContent.split(" / ")[1];
      $(".memory", row).textContent = `${fmt(agent.memory_mb)} / ${limit}`;
      $(".cpu", row).textContent = fmt(agent.cpu_percent);
    }
  },

  renderAlerts() {
    const target = $("#alerts");
    target.replaceChildren(...[...this.alerts.values()].map((alert) =>
      el("li", { "data-severity": alert.severity || "", "data-id": alert.id,
        text: `${alert.severity || ""} ${alert.kind || ""}: ${alert.message || ""}` })));
    if (!this.alerts.size) target.append(el("li", { class: "muted", text: "none" }));
  },

  async loadLog() {
    const name = this.logAgent;
    $("#log").replaceChildren();
    if (!name) return;
    const data = await api("GET", `/sessions/${this.id}/agents/${encodeURIComponent(name)}/logs?tail=200`);
    for (const line of data.lines || []) this.appendLog(line.stream, line.line);
  },

  appendLog(stream, text) {
    const log = $("#log");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(el("span", { class: stream, text: `${text}\n` }));
    while (log.childNodes.length > 1000) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  },
};
const refreshPage = debounce(() => page.id && page.refresh().catch(() => {}), 150);

// ---------------------------------------------------------------- an agent's terminal

// xterm.js over `/ws/sessions/{id}/agents/{name}/terminal`. The server sends the agent's
// scrollback and then its live output as binary frames; keystrokes go back as binary frames,
// and the pane's size (fitted to the card) as a `resize` text frame. Every viewer sees the
// same screen and may type; closing the pane detaches, the agent keeps running. A viewer
// that falls behind is closed by the server (1008): this one reconnects, and the replayed
// scrollback redraws the screen.
const terminalPane = {
  session: null,
  agent: null,
  term: null,
  fit: null,
  socket: null,
  observer: null,
  timer: null,
  delay: 500,

  open(sessionId, agent) {
    this.close();
    this.session = sessionId;
    this.agent = agent.name;
    $("#terminal-card").hidden = false;
    $("#t-agent").textContent = agent.name;
    const size = agent.terminal || {};
    const term = new Terminal({
      rows: size.rows || 40, cols: size.cols || 120, scrollback: 5000,
      fontFamily: "ui-monospace, monospace", fontSize: 13, cursorBlink: true,
    });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open($("#terminal"));
    const encoder = new TextEncoder();
    term.onData((data) => this.send(encoder.encode(data)));
    // Some mouse reports are bytes that are not UTF-8: one char per byte.
    term.onBinary((data) => this.send(Uint8Array.from(data, (c) => c.charCodeAt(0))));
    term.onResize(({ rows, cols }) => this.sendResize(rows, cols));
    this.term = term;
    this.fit = fit;
    this.observer = new ResizeObserver(debounce(() => this.fit && this.fit.fit(), 100));
    this.observer.observe($("#terminal"));
    fit.fit();
    this.delay = 500;
    this.connect();
    term.focus();
  },

  connect() {
    clearTimeout(this.timer);
    const path = `/ws/sessions/${this.session}/agents/${encodeURIComponent(this.agent)}/terminal`;
    const socket = openSocket(path);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    this.state("connecting", "connecting");
    socket.onopen = () => {
      this.delay = 500;
      this.state("open", "attached");
      // What the screen holds comes again with the scrollback.
      this.term.reset();
      this.sendResize(this.term.rows, this.term.cols);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    };
    socket.onclose = async (event) => {
      if (this.socket !== socket) return;
      const why = event.code === 1008 ? "fell behind" : event.reason || `code ${event.code}`;
      // A terminated session's terminals are gone for good; anything else (a server
      // restart, a viewer that fell behind, a network drop) is worth another try.
      if (await this.ended()) {
        if (this.socket === socket) this.state("closed", "the session ended");
        return;
      }
      if (this.socket !== socket) return;
      this.state("closed", `reconnecting (${why})`);
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    };
  },

  // Whether the pane's session is terminating, terminated or gone (a server that does not
  // answer may be restarting: not ended). A terminating session never comes back: its
  // terminals close while it stops its agents, before it is `terminated`.
  async ended() {
    try {
      const { session } = await api("GET", `/sessions/${this.session}`);
      return session.status === "terminated" || session.status === "terminating";
    } catch (error) {
      return error.status === 404;
    }
  },

  state(state, text) {
    const badge = $("#t-state");
    badge.dataset.state = state;
    badge.textContent = text;
  },

  send(bytes) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(bytes);
  },

  sendResize(rows, cols) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify({ type: "resize", rows, cols }));
    }
  },

  // Detaches: closes the socket (the agent keeps running) and drops the terminal.
  close() {
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "pane closed");
    if (this.observer) this.observer.disconnect();
    if (this.term) this.term.dispose();
    this.term = this.fit = this.observer = null;
    this.session = this.agent = null;
    $("#terminal").replaceChildren();
    $("#terminal-card").hidden = true;
  },
};
$("#t-close").addEventListener("click", () => terminalPane.close());

// ---------------------------------------------------------------- live events

function onEvent(message) {
  const sid = message.session_id;
  const data = message.data || {};
  switch (message.type) {
    case "connected":
      // (Re)connected: what happened meanwhile is replayed, but reload what is shown.
      reloadList();
      refreshPage();
      claudeWatch.load();
      break;
    case "agent_status":
    case "agent_exited":
    case "agent_activated":
    case "agent_deactivated":
    case "agent_restarted":
      reloadList();
      if (sid === page.id) refreshPage();
      break;
    case "claude_activity":
      claudeWatch.changed(data);
      reloadList();
      if (sid === page.id) refreshPage();
      break;
    case "alert":
      toast(`Alert (${data.severity}): ${data.message}`, data.severity, "alert");
      if (sid === page.id && data.id) { page.alerts.set(data.id, data); page.renderAlerts(); }
      break;
    case "alert_resolved":
      toast(`Resolved: ${data.message || data.kind}`, data.severity, "resolved");
      if (page.alerts.delete(data.id)) page.renderAlerts();
      break;
    case "metrics":
      list.metrics(sid, data);
      if (sid === page.id) page.metrics(data);
      break;
    case "log":
      if (sid === page.id && data.agent === page.logAgent) page.appendLog(data.stream, data.line);
      break;
    default:
      if (message.type && message.type.startsWith("session_")) {
        reloadList();
        if (sid === page.id) refreshPage();
      }
  }
}

// How many Claude Code sessions wait for their person (every one the hooks told of, in a
// session of ours or not), and a browser notification when one starts waiting. The
// permission is asked once, from a click (browsers allow no other way); the answer is the
// browser's to keep.
const claudeWatch = {
  async load() {
    try {
      const data = await api("GET", "/activity");
      this.show(data.waiting_for_input);
    } catch (_) { /* the list shows the error */ }
  },
  show(count) {
    const badge = $("#waiting");
    badge.dataset.count = String(count);
    badge.textContent = `${count} waiting for you`;
  },
  changed(data) {
    this.load();
    if (data.state !== "waiting_for_input" || data.previous_state === "waiting_for_input") return;
    const who = data.agent || data.claude_session_id;
    const where = data.cwd ? ` in ${data.cwd}` : "";
    toast(`Claude Code (${who}) waits for you${where}`, "medium", "claude");
    if ("Notification" in window && Notification.permission === "granted") {
      const note = new Notification("Claude Code waits for you", {
        body: `${who}${where} (${data.last_event})`, tag: `claude-${data.claude_session_id}`,
      });
      note.onclick = () => {
        window.focus();
        if (data.session_id) location.hash = `#/session/${data.session_id}`;
      };
    }
  },
  offerNotifications() {
    const button = $("#notify-button");
    button.hidden = !("Notification" in window) || Notification.permission !== "default";
    button.onclick = async () => {
      button.hidden = true;
      await Notification.requestPermission();
    };
  },
};
claudeWatch.offerNotifications();

// Connected after the first answer of the API, so with the token when one is needed.
const live = {
  socket: null,
  start() {
    if (this.socket) return;
    this.socket = new LiveSocket(onEvent, (state) => {
      const badge = $("#live");
      badge.dataset.state = state;
      badge.textContent = state === "open" ? "live" : state === "closed" ? "reconnecting" : "connecting";
    });
    this.socket.setLogs(this.logs);
  },
  restart() { if (this.socket) this.socket.restart(); },
  logs: false,
  setLogs(wanted) {
    this.logs = wanted;
    if (this.socket) this.socket.setLogs(wanted);
  },
};

// ---------------------------------------------------------------- routing and forms

function route() {
  const match = location.hash.match(/^#\/session\/([0-9a-f-]+)$/i);
  $("#list-view").hidden = Boolean(match);
  $("#session-view").hidden = !match;
  live.setLogs(Boolean(match));
  if (match) page.open(match[1]);
  else { page.id = null; page.destroyCharts(); terminalPane.close(); list.load(); }
}
window.addEventListener("hashchange", route);

$("#filters").addEventListener("input", debounce(() => list.load(), 250));
$("#filters").addEventListener("submit", (event) => event.preventDefault());
$("#token-button").addEventListener("click", () => auth.ask("").then(() => { live.restart(); route(); }));
$("#log-agent").addEventListener("change", (event) => {
  page.logAgent = event.target.value;
  page.loadLog().catch((error) => { $("#s-error").textContent = error.message; });
});

// Live path validation: what the server says of the path as it is typed.
function validatePath(form, field) {
  const input = form.elements[field];
  const target = form.querySelector(`.validation[data-for="${field}"]`);
  input.addEventListener("input", debounce(async () => {
    const path = input.value.trim();
    if (!path) { target.textContent = ""; delete target.dataset.valid; return; }
    try {
      const create = Boolean(form.elements.create_if_missing && form.elements.create_if_missing.checked);
      const { validation } = await api("POST", "/validate-path", { path, create_if_missing: create });
      if (input.value.trim() !== path) return;
      target.dataset.valid = String(validation.valid);
      const notes = [...(validation.validation_errors || []), ...(validation.warnings || [])];
      target.textContent = validation.valid
        ? `✓ ${validation.exists ? "exists" : "will be created"}${validation.is_git_repo ? ", git repository" : ""}${notes.length ? ` (${notes.join("; ")})` : ""}`
        : `✗ ${notes.join("; ") || "refused"}`;
    } catch (error) {
      target.dataset.valid = "false";
      target.textContent = `✗ ${error.message}`;
    }
  }, 200));
}
validatePath($("#create-form"), "working_directory");
validatePath($("#navigate-form"), "path");

function onSubmit(form, handler) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(form, null);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try { await handler(new FormData(form)); } catch (error) { showError(form, error); }
    finally { button.disabled = false; }
  });
}

onSubmit($("#create-form"), async (data) => {
  let agents;
  try { agents = JSON.parse(data.get("agents") || "[]"); } catch (error) {
    throw new Error(`agents: not JSON (${error.message})`);
  }
  const { session } = await api("POST", "/sessions", {
    name: data.get("name"),
    working_directory: data.get("working_directory"),
    create_if_missing: data.get("create_if_missing") === "on",
    agents,
  });
  $("#create-form").reset();
  $("#create-form .validation").textContent = "";
  delete $("#create-form .validation").dataset.valid;
  location.hash = `#/session/${session.id}`;
});

onSubmit($("#import-form"), async (data) => {
  const file = data.get("file");
  let snapshot;
  try { snapshot = JSON.parse(await file.text()); } catch (error) {
    throw new Error(`${file.name}: not JSON (${error.message})`);
  }
  const body = { session_data: snapshot.snapshot || snapshot };
  if (data.get("working_directory")) body.working_directory = data.get("working_directory");
  const { session } = await api("POST", "/sessions/import", body);
  $("#import-form").reset();
  location.hash = `#/session/${session.id}`;
});

onSubmit($("#navigate-form"), async (data) => {
  await api("POST", `/sessions/${page.id}/navigate`, {
    path: data.get("path"), create_if_missing: data.get("create_if_missing") === "on",
  });
  $("#navigate-form").reset();
  $("#navigate-form .validation").textContent = "";
  delete $("#navigate-form .validation").dataset.valid;
  await page.refresh();
});

onSubmit($("#clone-form"), async (data) => {
  const body = { new_name: data.get("new_name"), copy_agents: data.get("copy_agents") === "on" };
  if (data.get("new_working_directory")) body.new_working_directory = data.get("new_working_directory");
  const { session } = await api("POST", `/sessions/${page.id}/clone`, body);
  $("#clone-form").reset();
  location.hash = `#/session/${session.id}`;
});

$("#s-export").addEventListener("click", async () => {
  try {
    const { snapshot } = await api("POST", `/sessions/${page.id}/export`, {});
    download(`session-${page.session.name}-${page.id}.json`, snapshot);
  } catch (error) { $("#s-error").textContent = error.message; }
});

$("#s-stop").addEventListener("click", async () => {
  if (!confirm(`Terminate session "${page.session.name}" and stop its agents?`)) return;
  try { await api("DELETE", `/sessions/${page.id}`); await page.refresh(); }
  catch (error) { $("#s-error").textContent = error.message; }
});

route();
