// The orch console: plain JavaScript over the orch API, no framework, no CDN.
"use strict";

const PAGE = 100;
const state = { token: sessionStorage.getItem("orch-token") || "", offset: 0, filter: "" };
const $ = (id) => document.getElementById(id);
// A view asked for twice (a click while its last request is out) renders only the answer
// to the latest request: answers can arrive out of order.
const requests = { nodes: 0, jobs: 0, run: 0 };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (cls) node.className = cls;
  return node;
}

// A filter box in CLI syntax: a compound expression, or -W style words
// ("role=web nginx": words with an operator are fact terms, others classes).
function filterTerms(text) {
  text = text.trim();
  if (!text) return {};
  if (/[()]|\b(and|or|not)\b/.test(text)) return { compound: [text] };
  return { with: [text] };
}

function filterQuery(text) {
  const params = new URLSearchParams();
  for (const [kind, values] of Object.entries(filterTerms(text))) {
    for (const v of values) params.append(kind, v);
  }
  return params;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error.message : response.statusText;
    throw new Error(message);
  }
  return body;
}

function show(view) {
  for (const section of document.querySelectorAll("main > section")) {
    section.hidden = section.id !== "view-" + view;
  }
}

// -- overview --------------------------------------------------------------------------
async function overview() {
  show("overview");
  try {
    const page = await api("/api/v1/nodes?limit=1");
    $("node-count").textContent = page.total;
  } catch (e) { $("node-count").textContent = e.message; }
  staleNodes();
}

function when(epoch) { return new Date(epoch * 1000).toLocaleString(); }

// Stale nodes come from the inventory store; without one the section stays hidden.
async function staleNodes() {
  let inv = null;
  try { inv = await api("/api/v1/inventory"); } catch (e) { inv = null; }
  $("stale-section").hidden = !(inv && inv.configured);
  if (!inv || !inv.configured) return;
  $("stale-after").textContent = inv.stale_after;
  $("stale-count").textContent = inv.stale;
  $("registered-count").textContent = inv.nodes;
  const body = $("stale-table").tBodies[0];
  body.replaceChildren();
  for (const n of inv.stale_nodes) {
    const row = body.insertRow();
    const link = el("a", n.identity);
    link.href = "#/node/" + encodeURIComponent(n.identity);
    row.append(el("td"), el("td", when(n.last_seen)));
    row.cells[0].append(link);
  }
}

async function distribution(event) {
  event.preventDefault();
  const body = $("dist-table").tBodies[0];
  body.replaceChildren();
  const fact = $("dist-fact").value;
  try {
    const doc = await api("/api/v1/run/rpcutil/get_fact?wait=true", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ arguments: { fact } }),
    });
    const counts = {};
    for (const r of doc.result.replies) {
      const v = r.data && r.data.value !== undefined ? JSON.stringify(r.data.value) : "(none)";
      counts[v] = (counts[v] || 0) + 1;
    }
    for (const [value, n] of Object.entries(counts).sort((a, b) => b[1] - a[1])) {
      const row = body.insertRow();
      row.append(el("td", value), el("td", String(n)));
    }
  } catch (e) { body.insertRow().append(el("td", e.message, "error")); }
}

// -- nodes -----------------------------------------------------------------------------
async function nodes() {
  show("nodes");
  $("filter").value = state.filter;
  $("filter-error").textContent = "";
  const params = filterQuery(state.filter);
  params.set("offset", state.offset);
  params.set("limit", PAGE);
  const body = $("nodes-table").tBodies[0];
  $("nodes-summary").textContent = "Searching…";
  const mine = ++requests.nodes;
  try {
    const page = await api("/api/v1/nodes?" + params);
    if (mine !== requests.nodes) return;  // a newer page was asked for meanwhile
    body.replaceChildren();
    for (const name of page.nodes) {
      const link = el("a", name);
      link.href = "#/node/" + encodeURIComponent(name);
      body.insertRow().insertCell().append(link);
    }
    const last = Math.min(page.offset + page.nodes.length, page.total);
    $("nodes-summary").textContent = page.total + " matching node(s)";
    $("page-info").textContent = page.total ? `${page.offset + 1} to ${last} of ${page.total}` : "";
    $("prev-page").disabled = page.offset === 0;
    $("next-page").disabled = last >= page.total;
  } catch (e) {
    if (mine !== requests.nodes) return;
    body.replaceChildren();
    $("nodes-summary").textContent = "";
    $("filter-error").textContent = e.message;
  }
}

function flatten(value, prefix, out) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
  } else {
    out.push([prefix, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  return out;
}

async function node(name) {
  show("node");
  $("node-name").textContent = name;
  $("node-error").textContent = "";
  $("node-seen").textContent = "";
  for (const id of ["node-agents", "node-classes"]) $(id).replaceChildren();
  const facts = $("node-facts").tBodies[0];
  facts.replaceChildren();
  try {
    const data = await api("/api/v1/nodes/" + encodeURIComponent(name));
    if (data.registered) {
      $("node-seen").textContent = "Last seen " + when(data.last_seen) +
        (data.stale ? " (stale)" : "") + (data.answered ? "" : "; did not answer: recorded facts");
    }
    for (const a of data.agents) $("node-agents").append(el("li", a));
    for (const c of data.classes) $("node-classes").append(el("li", c));
    for (const [k, v] of flatten(data.facts, "", [])) {
      const row = facts.insertRow();
      row.append(el("th", k), el("td", v));
      row.cells[0].scope = "row";
    }
  } catch (e) { $("node-error").textContent = e.message; }
}

// -- run -------------------------------------------------------------------------------
let agents = {};

async function runView() {
  show("run");
  if (Object.keys(agents).length) return;
  try {
    const list = await api("/api/v1/agents");
    const select = $("run-agent");
    select.replaceChildren();
    for (const a of list.agents) {
      agents[a.name] = null;
      select.append(new Option(a.name, a.name));
    }
    await chooseAgent();
  } catch (e) { $("run-error").textContent = e.message; }
}

async function chooseAgent() {
  const name = $("run-agent").value;
  if (!agents[name]) agents[name] = await api("/api/v1/agents/" + encodeURIComponent(name));
  const select = $("run-action");
  select.replaceChildren();
  for (const action of Object.keys(agents[name].actions)) select.append(new Option(action, action));
  chooseAction();
}

function chooseAction() {
  const spec = agents[$("run-agent").value].actions[$("run-action").value];
  $("action-description").textContent = spec.description;
  const fields = $("run-inputs");
  fields.replaceChildren(el("legend", "Arguments"));
  const required = new Set(spec.input.required || []);
  for (const [name, prop] of Object.entries(spec.input.properties || {})) {
    const id = "arg-" + name;
    const label = el("label", name + (required.has(name) ? " (required)" : ""));
    label.htmlFor = id;
    let input;
    if (prop.enum) {
      input = el("select");
      if (!required.has(name)) input.append(new Option("", ""));
      for (const v of prop.enum) input.append(new Option(v, v));
    } else {
      input = el("input");
      const t = prop.type;
      input.type = t === "boolean" ? "checkbox" : (t === "integer" || t === "number") ? "number" : "text";
      if (t === "integer") input.step = "1";
      if (t === "number") input.step = "any";
      if (prop.maxLength) input.maxLength = prop.maxLength;
    }
    input.id = id;
    input.dataset.arg = name;
    input.dataset.type = prop.type || "string";
    input.required = required.has(name);
    const fallback = spec.defaults[name];
    if (fallback !== undefined) {
      if (input.type === "checkbox") input.checked = !!fallback; else input.value = fallback;
    }
    if (prop.description) input.title = prop.description;
    fields.append(label, input);
  }
  fields.hidden = fields.children.length === 1;
}

function argumentsOf() {
  const args = {};
  for (const input of document.querySelectorAll("#run-inputs [data-arg]")) {
    const type = input.dataset.type;
    if (input.type === "checkbox") { args[input.dataset.arg] = input.checked; continue; }
    if (input.value === "") {
      if (input.required) throw new Error(input.dataset.arg + " is required");
      continue;
    }
    if (type === "integer" || type === "number") {
      const n = Number(input.value);
      if (Number.isNaN(n) || (type === "integer" && !Number.isInteger(n))) {
        throw new Error(input.dataset.arg + " must be " + (type === "integer" ? "an integer" : "a number"));
      }
      args[input.dataset.arg] = n;
    } else {
      args[input.dataset.arg] = input.value;
    }
  }
  return args;
}

async function preview() {
  try {
    const page = await api("/api/v1/nodes?limit=1&" + filterQuery($("run-filter").value));
    $("run-target").textContent = page.total + " node(s) match";
  } catch (e) { $("run-target").textContent = e.message; }
}

// The results table shows one page of replies (RESULTS_PAGE rows); every reply is kept
// and counted. Why: a table's layout costs time in proportion to its rows, and it is
// redone for each frame that adds rows, so 10,000 rows appended live took 12-20 s and
// froze the page for half a second at a time (headless Chromium, shared machine); a
// bounded page keeps each frame's work bounded whatever the fleet's size.
const RESULTS_PAGE = 500;
const results = { replies: [], offset: 0 };

function resultRow(r) {
  const row = document.createElement("tr");
  row.append(el("td", r.sender), el("td", r.status, r.statuscode === 0 ? "status-ok" : "status-failed"),
             el("td", r.statusmsg), el("td", JSON.stringify(r.data), "data"));
  return row;
}

// Adds the rows of the page shown that are not in the table yet.
function fillResults() {
  const body = $("results").tBodies[0];
  const end = Math.min(results.offset + RESULTS_PAGE, results.replies.length);
  const fragment = document.createDocumentFragment();
  for (let i = results.offset + body.rows.length; i < end; i++) fragment.append(resultRow(results.replies[i]));
  body.append(fragment);
  const n = results.replies.length;
  $("results-pager").hidden = n <= RESULTS_PAGE;
  $("results-page-info").textContent = n ? `${results.offset + 1} to ${end} of ${n} replies` : "";
  $("results-prev").disabled = results.offset === 0;
  $("results-next").disabled = end >= n;
}

function showResults(offset) {
  results.offset = Math.max(0, offset);
  $("results").tBodies[0].replaceChildren();
  fillResults();
}

// Replies are kept as they come; the table catches up once per animation frame.
function resultsWriter() {
  results.replies = [];
  results.offset = 0;
  $("results").tBodies[0].replaceChildren();
  fillResults();
  let scheduled = false;
  return function add(reply) {
    results.replies.push(reply);
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => { scheduled = false; fillResults(); });
  };
}

// Server-Sent Events over fetch(), so the bearer token goes in a header.
async function stream(path, onEvent) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (!response.ok) throw new Error("event stream: " + response.status);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let kind = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data && onEvent(kind, JSON.parse(data)) === false) { reader.cancel(); return; }
    }
  }
}

async function run(event) {
  event.preventDefault();
  $("run-error").textContent = "";
  let args;
  try { args = argumentsOf(); } catch (e) { $("run-error").textContent = e.message; return; }
  $("run-summary").replaceChildren();
  const add = resultsWriter();
  const mine = ++requests.run;  // a run started later takes the table over
  const agent = $("run-agent").value;
  const action = $("run-action").value;
  let expected = null;
  let got = 0;
  const progress = () => { $("run-progress").textContent = `${got} of ${expected === null ? "?" : expected} replied`; };
  try {
    const job = await api(`/api/v1/run/${encodeURIComponent(agent)}/${encodeURIComponent(action)}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ arguments: args, filter: filterTerms($("run-filter").value) }),
    });
    $("run-progress").textContent = "Job " + job.job + " started";
    if (mine !== requests.run) return;
    await stream(job.links.events, (kind, data) => {
      if (mine !== requests.run) return false;  // stop listening: another run owns the page
      if (kind === "discovered") { expected = data.count; progress(); }
      if (kind === "reply") { got += 1; add(data); progress(); }
      if (kind === "done") return false;
      return true;
    });
    if (mine !== requests.run) return;
    const doc = await api("/api/v1/jobs/" + job.job);
    if (mine === requests.run) summary(doc);
  } catch (e) { if (mine === requests.run) $("run-error").textContent = e.message; }
}

function summary(doc) {
  const box = $("run-summary");
  const result = doc.result;
  if (!result) { box.append(el("p", "Job " + doc.state + ": " + (doc.error || ""), "error")); return; }
  const ok = result.replies.filter((r) => r.statuscode === 0).length;
  const done = el("p", `Done: ${result.replies.length} replied, ${ok} OK, ` +
                       `${result.replies.length - ok} failed, ${result.missing.length} did not answer.`);
  done.id = "run-done";
  box.append(done);
  for (const agg of result.aggregates || []) box.append(el("pre", JSON.stringify(agg, null, 1)));
  if (result.missing.length) {
    box.append(el("h3", "No answer from"));
    const list = el("ul");
    list.id = "missing";
    for (const name of result.missing) list.append(el("li", name));
    box.append(list);
  }
  // Nodes that answered the same discovery before and not this time (orch/core/answered.py).
  const absent = result.absent || [];
  if (absent.length) {
    box.append(el("h3", "Answered before, not now (gone, slow, or no longer selected)"));
    const list = el("ul");
    list.id = "absent";
    for (const name of absent) list.append(el("li", name));
    box.append(list);
  }
}

// -- jobs ------------------------------------------------------------------------------
// Paged by the API's cursor: "Older" follows the page's `next`; the cursors of the pages
// before are kept, so "Newer" goes back exactly.
const JOBS_PAGE = 50;
const jobPages = { cursors: [null], next: null };

async function jobs() {
  show("jobs");
  const body = $("jobs-table").tBodies[0];
  const cursor = jobPages.cursors[jobPages.cursors.length - 1];
  const params = new URLSearchParams({ limit: JOBS_PAGE });
  if (cursor) params.set("before", cursor);
  $("jobs-error").textContent = "";
  jobPages.next = null;  // until this page answers: a second click must not skip a page
  $("older-jobs").disabled = true;
  const mine = ++requests.jobs;
  try {
    const list = await api("/api/v1/jobs?" + params);
    if (mine !== requests.jobs) return;  // a newer page was asked for meanwhile
    body.replaceChildren();
    for (const j of list.jobs) {
      const row = body.insertRow();
      row.append(el("td", j.id), el("td", j.agent + "." + j.action), el("td", j.state), el("td", String(j.replies)));
    }
    jobPages.next = list.next;
    const first = (jobPages.cursors.length - 1) * JOBS_PAGE;
    $("jobs-page-info").textContent = list.jobs.length ? `${first + 1} to ${first + list.jobs.length}` : "No jobs";
    $("newer-jobs").disabled = jobPages.cursors.length === 1;
    $("older-jobs").disabled = !list.next;
  } catch (e) {
    if (mine === requests.jobs) { body.replaceChildren(); $("jobs-error").textContent = e.message; }
  }
}

// -- routing ---------------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/overview";
  const [, view, arg] = hash.match(/^#\/([a-z]+)\/?(.*)$/) || [null, "overview", ""];
  if (!state.token) { $("token-state").textContent = "Enter an API token"; }
  if (view === "nodes") return nodes();
  if (view === "node") return node(decodeURIComponent(arg));
  if (view === "run") return runView();
  if (view === "jobs") { jobPages.cursors = [null]; return jobs(); }
  if (view === "puppet" && window.orchPuppetView) return window.orchPuppetView();
  return overview();
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = state.token;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("token").value;
    sessionStorage.setItem("orch-token", state.token);
    $("token-state").textContent = "Token set";
    agents = {};
    route();
  });
  $("filter-form").addEventListener("submit", (e) => {
    e.preventDefault(); state.filter = $("filter").value; state.offset = 0; nodes();
  });
  $("prev-page").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); nodes(); });
  $("next-page").addEventListener("click", () => { state.offset += PAGE; nodes(); });
  $("older-jobs").addEventListener("click", () => { if (jobPages.next) { jobPages.cursors.push(jobPages.next); jobs(); } });
  $("newer-jobs").addEventListener("click", () => { if (jobPages.cursors.length > 1) { jobPages.cursors.pop(); jobs(); } });
  $("results-prev").addEventListener("click", () => showResults(results.offset - RESULTS_PAGE));
  $("results-next").addEventListener("click", () => showResults(results.offset + RESULTS_PAGE));
  $("dist-form").addEventListener("submit", distribution);
  $("run-agent").addEventListener("change", chooseAgent);
  $("run-action").addEventListener("change", chooseAction);
  $("run-filter").addEventListener("change", preview);
  $("run-form").addEventListener("submit", run);
  window.addEventListener("hashchange", route);
  route();
});
