// The nexus dashboard: reads the REST API, listens to /ws, redraws what an event touches.
// Plain JavaScript, no build step, no external assets.  Text from the workspace is always set
// with textContent (never as HTML).
"use strict";

const COLUMNS = ["pending", "ready", "in_progress", "complete", "failed", "cancelled"];
const COLUMN_OF = { assigned: "in_progress" };
// Dropping a card on a column asks for this move (ready and in_progress are nexus's to set).
const DROP_ACTION = { complete: "complete", failed: "fail", cancelled: "cancel", pending: "retry" };
const ACTIONS = [
  ["complete", "Complete", ["pending", "ready", "assigned", "in_progress"]],
  ["fail", "Fail", ["ready", "assigned", "in_progress"]],
  ["cancel", "Cancel", ["pending", "ready", "assigned", "in_progress", "failed"]],
  ["retry", "Retry", ["failed", "cancelled", "complete"]],
];
const PALETTE = ["#3c4fe0", "#1b9e5a", "#d98a00", "#d64545", "#8e44ad", "#16a2b8", "#7f8c8d"];
const SVG = "http://www.w3.org/2000/svg";

const state = { tasks: [], byId: new Map(), selected: null, roles: [], pad: null, cost: null,
                dragging: false, boardLater: null };

// -- small helpers ----------------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function h(tag, attrs, ...children) {
  const el = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  return append(el, children);
}

function append(el, children) {  // nested lists are flattened; null and undefined are skipped
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function fill(el, ...children) { el.replaceChildren(); return append(el, children); }

async function api(method, path, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error((data.error || response.statusText) + (data.fix ? ` — ${data.fix}` : ""));
  }
  return data;
}

function when(iso) { return iso ? iso.replace("T", " ").replace("Z", " UTC") : "-"; }

function say(id, text, isError) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

const pending = new Map();
function soon(name, fn) {  // coalesce a burst of events into one reload
  clearTimeout(pending.get(name));
  pending.set(name, setTimeout(() => fn().catch((e) => console.error(name, e)), 120));
}

// -- tasks: header, board, graph ----------------------------------------------------------------

async function loadTasks() {
  const data = await api("GET", "/api/tasks");
  state.tasks = data.tasks;
  state.byId = new Map(data.tasks.map((t) => [t.id, t]));
  $("project").textContent = data.name;
  $("goal").textContent = data.goal || "";
  document.title = `nexus · ${data.name}`;
  const percent = Math.round(data.progress * 100);
  $("progress").setAttribute("aria-valuenow", percent);
  $("progress").firstElementChild.style.width = `${percent}%`;
  $("progress-text").textContent = `${data.counts.complete}/${data.tasks.length} complete`;
  renderBoard(data.counts);
  renderGraph();
  renderBudget(data.budget);
}

function renderBudget(budget) {  // a banner while a budget pauses dispatch
  const held = Object.entries(budget.paused_tasks);
  const lines = budget.reason ? [`Paused — ${budget.reason}`] : [];
  if (held.length) lines.push(`${held.length} task(s) paused by their own budget: ${held[0][1]}`);
  $("budget").textContent = lines.join(" · ");
  $("budget").hidden = !lines.length;
}

function renderBoard(counts) {
  // A live update while a card is being dragged would replace the card and the columns under
  // the pointer and lose the drop: it waits until the drag ends.
  if (state.dragging) { state.boardLater = counts; return; }
  const board = $("board");
  board.replaceChildren();
  for (const status of COLUMNS) {
    const tasks = state.tasks.filter((t) => (COLUMN_OF[t.status] || t.status) === status);
    const count = status === "in_progress" ? counts.in_progress + counts.assigned : counts[status];
    const list = h("ul", {}, tasks.slice(0, 200).map(card));
    if (tasks.length > 200) list.append(h("li", { class: "muted" }, `+${tasks.length - 200} more`));
    const column = h("section", { class: `column col-${status}`, "data-status": status, "aria-label": status },
      h("h3", {}, status.replace("_", " "), h("span", { class: "count" }, count)), list);
    column.addEventListener("dragover", (e) => {
      if (DROP_ACTION[status]) { e.preventDefault(); column.classList.add("drop-ok"); }
    });
    column.addEventListener("dragleave", () => column.classList.remove("drop-ok"));
    column.addEventListener("drop", (e) => {
      e.preventDefault();
      column.classList.remove("drop-ok");
      const task = state.byId.get(e.dataTransfer.getData("text/plain"));
      if (task && (COLUMN_OF[task.status] || task.status) !== status) move(task, DROP_ACTION[status]);
    });
    board.append(column);
  }
}

function card(t) {
  const meta = [t.id, t.role, t.size].filter(Boolean).join(" · ");
  const li = h("li", { class: "card" + (t.id === state.selected ? " selected" : ""), draggable: "true", "data-id": t.id },
    h("button", { type: "button", onclick: () => showTask(t.id) }, t.title),
    h("span", { class: "meta" }, meta));
  li.addEventListener("dragstart", (e) => {
    state.dragging = true;
    e.dataTransfer.setData("text/plain", t.id);
  });
  li.addEventListener("dragend", () => {
    state.dragging = false;
    if (state.boardLater) { const counts = state.boardLater; state.boardLater = null; renderBoard(counts); }
  });
  return li;
}

function renderGraph() {
  // Layered by dependency depth: a task sits one column right of its deepest dependency.
  const tasks = state.tasks.slice(0, 400);
  const depth = new Map();
  const depthOf = (t, seen) => {
    if (depth.has(t.id)) return depth.get(t.id);
    seen.add(t.id);
    let d = 0;
    for (const dep of t.deps) {
      const other = state.byId.get(dep);
      if (other && !seen.has(dep)) d = Math.max(d, depthOf(other, seen) + 1);
    }
    depth.set(t.id, d);
    return d;
  };
  tasks.forEach((t) => depthOf(t, new Set()));
  const layers = [];
  for (const t of tasks) (layers[depth.get(t.id)] ||= []).push(t);
  const W = 150, H = 34, GX = 40, GY = 12, place = new Map();
  layers.forEach((layer, x) => layer.forEach((t, y) => place.set(t.id, [10 + x * (W + GX), 10 + y * (H + GY)])));
  const width = 20 + layers.length * (W + GX), height = 20 + Math.max(1, ...layers.map((l) => l.length)) * (H + GY);
  const svg = h("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Dependency graph" });
  for (const t of tasks) {
    for (const dep of t.deps) {
      if (!place.has(dep)) continue;
      const [x1, y1] = place.get(dep), [x2, y2] = place.get(t.id);
      const mid = (x1 + W + x2) / 2;
      svg.append(h("svg:path", { class: "edge", d: `M${x1 + W},${y1 + H / 2} C${mid},${y1 + H / 2} ${mid},${y2 + H / 2} ${x2},${y2 + H / 2}` }));
    }
  }
  for (const t of tasks) {
    const [x, y] = place.get(t.id);
    const label = t.title.length > 22 ? t.title.slice(0, 21) + "…" : t.title;
    const node = h("svg:g", { class: `node n-${t.status}` + (t.id === state.selected ? " selected" : ""), tabindex: "0", role: "button",
      "aria-label": `${t.title} (${t.status})`, "data-id": t.id, transform: `translate(${x},${y})` },
      h("svg:title", {}, `${t.id}: ${t.title} — ${t.status}`),
      h("svg:rect", { width: W, height: H, rx: 5 }),
      h("svg:text", { x: 8, y: 14 }, label),
      h("svg:text", { x: 8, y: 27, class: "muted" }, `${t.id} · ${t.status}`));
    node.addEventListener("click", () => showTask(t.id));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") showTask(t.id); });
    svg.append(node);
  }
  $("graph").replaceChildren(tasks.length ? svg : h("p", { class: "muted" }, "No tasks yet."));
}

// -- task detail and moves ----------------------------------------------------------------------

async function showTask(id) {
  state.selected = id;
  document.querySelectorAll(".card, .node").forEach((el) => el.classList.toggle("selected", el.dataset.id === id));
  await loadDetail();
}

async function loadDetail() {
  if (!state.selected) return;
  let d;
  try {
    d = await api("GET", `/api/tasks/${encodeURIComponent(state.selected)}`);
  } catch (e) {
    $("detail").replaceChildren(h("p", { class: "muted" }, e.message));
    return;
  }
  const t = d.task;
  const fields = [["id", t.id], ["kind", t.kind], ["size", t.size], ["role", t.role], ["priority", t.priority],
    ["deps", t.deps.join(", ")], ["parent", t.parent], ["attempts", t.attempts], ["engine", t.engine],
    ["session", t.session], ["created", when(t.created)], ["started", when(t.started)],
    ["finished", when(t.finished)], ["error", t.error], ["cost", costText(t.cost)], ["file", t.path]];
  const actions = ACTIONS.map(([action, label, from]) =>
    h("button", { type: "button", disabled: !from.includes(t.status), onclick: () => move(t, action) }, label));
  fill($("detail"),
    h("h3", {}, t.title, " ", h("span", { class: `badge s-${t.status}` }, t.status)),
    h("div", { class: "actions" }, actions),
    h("dl", {}, fields.filter(([, v]) => v !== null && v !== "" && v !== "-").map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    d.why.length ? [h("h3", {}, "Why"), h("ul", {}, d.why.map((w) => h("li", {}, w)))] : null,
    t.acceptance.length ? [h("h3", {}, "Acceptance"), h("ul", {}, t.acceptance.map((a) => h("li", {}, a)))] : null,
    d.body.trim() ? [h("h3", {}, "Description"), h("pre", { class: "body" }, d.body.trim())] : null,
    d.result ? [h("h3", {}, "Result"), h("pre", { class: "result" }, d.result)] : null,
    h("h3", {}, "History"),
    h("table", {}, h("tbody", {}, d.history.map((e) => h("tr", {},
      h("td", {}, new Date(e.time * 1000).toISOString().slice(0, 19).replace("T", " ")),
      h("td", {}, e.actor),
      h("td", {}, e.transitions.length ? e.transitions.map((x) => `${x.from} → ${x.to}`).join(", ") : e.subject),
      h("td", {}, h("code", {}, e.commit.slice(0, 8))))))));
}

function costText(cost) {
  if (!cost || !Object.keys(cost).length) return null;
  const parts = [];
  if (cost.usd !== undefined) parts.push(`$${Number(cost.usd).toFixed(4)}`);
  if (cost.input_tokens || cost.output_tokens) parts.push(`${cost.input_tokens || 0} in / ${cost.output_tokens || 0} out tokens`);
  if (cost.runs) parts.push(`${cost.runs} run(s)`);
  return parts.join(", ");
}

function confirmMove(text, extraName) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-extra-label").hidden = !extraName;
  $("confirm-extra-name").textContent = extraName || "";
  $("confirm-extra").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? $("confirm-extra").value : null), { once: true });
  });
}

async function move(task, action) {
  const extra = { complete: "Result (optional)", fail: "Reason" }[action];
  const answer = await confirmMove(`${action} “${task.title}” (${task.id}, now ${task.status})?`, extra);
  if (answer === null) return;
  const body = { action };
  if (action === "complete" && answer.trim()) body.result = answer;
  if (action === "fail" && answer.trim()) body.reason = answer;
  try {
    const moved = await api("POST", `/api/tasks/${encodeURIComponent(task.id)}/move`, body);
    say("board-note", `${moved.id}: ${task.status} → ${moved.status}`);
  } catch (e) {
    say("board-note", e.message, true);
  }
  await loadTasks();
  if (state.selected === task.id) await loadDetail();
}

// -- agents, scratchpads, costs -----------------------------------------------------------------

async function loadAgents() {
  const agents = Object.values(await api("GET", "/api/agents/status"));
  state.roles = agents.map((a) => a.role);
  $("agents").tBodies[0].replaceChildren(...agents.map((a) => h("tr", { "data-role": a.role },
    h("td", {}, h("strong", {}, a.role), " ", h("span", { class: "muted" }, [a.name, a.title].filter(Boolean).join(", "))),
    h("td", {}, [a.engine || "(routed)", a.model].filter(Boolean).join(" / ")),
    h("td", {}, a.session, a.session_id ? [" ", h("code", { title: a.session_id }, a.session_id.slice(0, 10))] : null),
    h("td", {}, a.current_tasks.map((id) => h("button", { type: "button", onclick: () => showTask(id) }, id))),
    h("td", {}, a.queued),
    h("td", {}, h("span", { class: `badge ${a.status === "working" ? "s-in_progress" : "s-pending"}` }, a.status)))));
  fillSelect($("msg-to"), [...state.roles, "all"]);
  fillSelect($("task-role"), ["", ...state.roles]);
}

function fillSelect(select, values) {
  const keep = select.value;
  select.replaceChildren(...values.map((v) => h("option", { value: v }, v || "(none)")));
  if (values.includes(keep)) select.value = keep;
}

async function loadPads() {
  const pads = await api("GET", "/api/scratchpads");
  $("pad-list").replaceChildren(...pads.map((p) => h("li", {},
    h("button", { type: "button", "aria-current": String(p.name === state.pad), onclick: () => showPad(p.name) },
      p.name, " ", h("span", { class: "muted" }, p.kind === "mailbox" ? `(${p.messages_count})` : "")))));
  if (state.pad) await showPad(state.pad);
}

async function showPad(name) {
  state.pad = name;
  document.querySelectorAll("#pad-list button").forEach((b) => b.setAttribute("aria-current", String(b.firstChild.textContent === name)));
  let pad;
  try {
    pad = await api("GET", `/api/scratchpads/${encodeURIComponent(name)}`);
  } catch (e) {
    $("pad-view").replaceChildren(h("p", { class: "muted" }, e.message));
    return;
  }
  const body = pad.kind === "mailbox"
    ? pad.messages.map((m) => h("div", { class: "message" },
        h("div", { class: "muted" }, `${m.from} → ${m.to} · ${m.type} · ${m.time ? when(m.time) : "written by hand"}`, m.task ? ` · task ${m.task}` : ""),
        h("pre", {}, m.payload)))
    : [h("pre", {}, pad.text)];
  $("pad-view").replaceChildren(h("h3", {}, pad.path), ...body);
}

async function loadCost() {
  state.cost = await api("GET", "/api/cost");
  renderCost();
}

function renderCost() {
  const c = state.cost;
  if (!c) return;
  const by = $("cost-by").value;
  const useUsd = c.usd > 0;
  const value = (row) => (useUsd ? row.usd : row.input_tokens + row.output_tokens);
  const keys = c[`by_${by}`].map((r) => r.key);
  const color = (k) => PALETTE[keys.indexOf(k) % PALETTE.length];
  const days = c.by_day.slice(-30);
  const max = Math.max(1e-9, ...days.map(value));
  const W = 460, H = 180, left = 56, bottom = 22, bw = Math.min(40, (W - left) / Math.max(days.length, 1) - 6);
  const svg = h("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `${useUsd ? "Cost in USD" : "Tokens"} by day and ${by}` });
  svg.append(h("svg:line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, stroke: "#b4bcc6" }));
  svg.append(h("svg:text", { x: 4, y: 12 }, useUsd ? `$${max.toFixed(2)}` : `${max} tok`));
  svg.append(h("svg:text", { x: 4, y: H - bottom }, "0"));
  days.forEach((day, i) => {
    const x = left + 4 + i * (bw + 6);
    let y = H - bottom;
    for (const k of keys) {
      const part = day[`by_${by}`][k];
      if (!part) continue;
      const hgt = (value(part) / max) * (H - bottom - 16);
      y -= hgt;
      svg.append(h("svg:rect", { x, y, width: bw, height: Math.max(hgt, 0.5), fill: color(k) },
        h("svg:title", {}, `${day.key} ${k}: ${useUsd ? "$" + part.usd.toFixed(4) : value(part) + " tokens"}`)));
    }
    svg.append(h("svg:text", { x, y: H - 6 }, day.key.slice(5)));
  });
  const legend = h("div", { class: "legend" }, keys.map((k) => h("span", {}, h("i", { class: "swatch", "data-key": k }), k)));
  legend.querySelectorAll("i").forEach((i) => { i.style.background = color(i.dataset.key); });
  $("cost-chart").replaceChildren(days.length ? svg : h("p", { class: "muted" }, "No run has recorded a cost yet."), legend);
  $("cost-total").textContent = `total $${c.usd.toFixed(4)} · ${c.runs} run(s) · ${c.input_tokens} in / ${c.output_tokens} out tokens`;
}

// -- forms --------------------------------------------------------------------------------------

function split(text, separator) { return text.split(separator).map((s) => s.trim()).filter(Boolean); }

async function submitTask(e) {
  e.preventDefault();
  const body = {
    title: $("task-title").value, size: $("task-size").value, priority: $("task-priority").value,
    deps: split($("task-deps").value, ","), acceptance: split($("task-acceptance").value, "\n"),
    body: $("task-body").value,
  };
  if ($("task-role").value) body.role = $("task-role").value;
  if ($("task-parent").value.trim()) body.parent = $("task-parent").value.trim();
  try {
    const task = await api("POST", "/api/tasks/create", body);
    say("form-status", `created ${task.id} (${task.status}) in ${task.path}`);
    e.target.reset();
    await loadTasks();
    await showTask(task.id);
  } catch (err) {
    say("form-status", err.message, true);
  }
}

async function submitPipeline(e) {
  e.preventDefault();
  try {
    const tasks = await api("POST", "/api/pipeline", { description: $("pipeline-description").value });
    say("form-status", `pipeline ${tasks[0].id}: ${tasks.slice(1).map((t) => `${t.role} ${t.id}`).join(" → ")}`);
    e.target.reset();
    await loadTasks();
  } catch (err) {
    say("form-status", err.message, true);
  }
}

async function submitMessage(e) {
  e.preventDefault();
  const to = $("msg-to").value;
  try {
    const sent = await api("POST", `/api/agents/${encodeURIComponent(to)}/message`,
      { message: $("msg-text").value, type: $("msg-type").value });
    $("msg-text").value = "";
    state.pad = sent.path.replace(/^scratchpads\//, "").replace(/\.md$/, "");
    await loadPads();
  } catch (err) {
    say("form-status", err.message, true);
  }
}

// -- live ---------------------------------------------------------------------------------------

function describe(ev) {
  if (ev.kind === "transition") return `${ev.task}: ${ev.src} → ${ev.dst} (${ev.actor || ""})`;
  if (ev.kind === "changed" && ev.what === "task") return ev.removed ? `${ev.task} removed` : `${ev.task} changed on disk${ev.from && ev.from !== ev.status ? `: ${ev.from} → ${ev.status}` : ""}`;
  if (ev.kind === "changed") return `${ev.what} ${ev.name || ""} changed`;
  if (ev.kind === "agent_output") return `${ev.task}: ${ev.line}`;
  if (ev.kind === "agent_started") return `${ev.task} started on ${ev.engine}`;
  if (ev.kind === "agent_finished") return `${ev.task} finished: ${ev.status}`;
  if (ev.kind === "message") return `message ${ev.frm} → ${ev.to} (${ev.type})`;
  return ev.kind;
}

function onEvent(ev) {
  if (ev.kind !== "progress" && ev.kind !== "hello") {
    const list = $("events");
    list.prepend(h("li", {}, h("span", { class: "muted" }, new Date(ev.time * 1000).toLocaleTimeString()), " ", describe(ev)));
    while (list.children.length > 50) list.lastElementChild.remove();
  }
  const all = ev.kind === "hello" || ev.kind === "dropped";
  if (all || ev.kind === "transition" || (ev.kind === "changed" && ["task", "broken"].includes(ev.what))) {
    soon("tasks", loadTasks);
    if (all || !ev.task || ev.task === state.selected) soon("detail", loadDetail);
  }
  if (all || ev.kind.startsWith("agent_") || ev.kind === "transition" || (ev.kind === "changed" && ["agents", "daemon"].includes(ev.what))) soon("agents", loadAgents);
  if (all || ev.kind === "message" || (ev.kind === "changed" && ev.what === "scratchpad")) soon("pads", loadPads);
  if (all || ev.kind === "agent_finished" || ev.kind === "transition") soon("cost", loadCost);
}

function connect(delay) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { $("live").textContent = "live"; $("live").className = "live on"; delay = 500; };
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    $("live").textContent = "reconnecting…";
    $("live").className = "live off";
    setTimeout(() => connect(Math.min(delay * 2, 10000)), delay);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  $("task-form").addEventListener("submit", submitTask);
  $("pipeline-form").addEventListener("submit", submitPipeline);
  $("message-form").addEventListener("submit", submitMessage);
  $("cost-by").addEventListener("change", renderCost);
  Promise.all([loadTasks(), loadAgents(), loadPads(), loadCost()]).catch((e) => say("board-note", e.message, true));
  connect(500);
});
