// The Puppet view: shown only when the API has orch-puppet's summary route.
// It reads GET /api/v1/puppet/summary and runs Puppet everywhere through
// POST /api/v1/puppet/runall (orch-puppet's runall scheduler).
"use strict";

const PUPPET_SUMMARY = "/api/v1/puppet/summary";
const PUPPET_ROWS = [
  ["enabled", "Enabled"], ["disabled", "Disabled"], ["applying", "Applying"],
  ["idle", "Idle"], ["stale", "Stale (no run for an hour, or never)"],
];

// Only the latest request renders: the view is asked for again when a token is entered
// while the first request (made without one) may still be on its way.
let puppetRequest = 0;

async function puppetView() {
  show("puppet");
  const mine = ++puppetRequest;
  $("puppet-error").textContent = "";
  const body = $("puppet-counts").tBodies[0];
  body.replaceChildren();
  try {
    const s = await api(PUPPET_SUMMARY);
    if (mine !== puppetRequest) return;
    const rows = PUPPET_ROWS.map(([key, label]) => [key, label, s.states[key]]);
    rows.push(["failed_last_runs", "Failed last runs", s.failed_last_runs]);
    rows.push(["failed_resources", "Failed resources (last runs)", s.failed_resources_total]);
    for (const [key, label, count] of rows) {
      const row = body.insertRow();
      row.dataset.state = key;
      row.append(el("th", label), el("td", String(count)));
      row.cells[0].scope = "row";
    }
  } catch (e) { if (mine === puppetRequest) $("puppet-error").textContent = e.message; }
}

// orch-puppet's runall scheduler (POST /api/v1/puppet/runall): at most N runs in
// flight, a new one started as one ends; the request answers when every node is done.
async function runAll(event) {
  event.preventDefault();
  const concurrency = parseInt($("runall-concurrency").value, 10);
  if (!(concurrency >= 1)) { $("runall-progress").textContent = "Concurrency must be 1 or more"; return; }
  $("runall-button").disabled = true;
  $("runall-progress").textContent = `Running Puppet on every node, at most ${concurrency} at a time…`;
  try {
    const report = await api("/api/v1/puppet/runall", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ concurrency: concurrency }),
    });
    const parts = Object.entries(report.tally).filter(([, n]) => n).map(([k, n]) => `${k.replace(/_/g, " ")}: ${n}`);
    // runall's own runs never exceed the limit; a node's daemon may start a scheduled run
    // on top of them, which runall cannot prevent: say so rather than blur the two.
    const extra = report.max_in_flight > report.max_started
      ? ` (${report.max_in_flight} applying at once, nodes' own scheduled runs included)` : "";
    $("runall-progress").textContent = `Done in ${report.elapsed_s} s, at most ${report.max_started} at a time${extra} — ` + parts.join(", ");
    puppetView();
  } catch (e) { $("runall-progress").textContent = e.message; }
  finally { $("runall-button").disabled = false; }
}

// Whether the API has the route: /openapi.json lists every route, plugins' included.
async function detectPuppet() {
  try {
    const doc = await (await fetch("/openapi.json")).json();
    $("puppet-link").hidden = !(doc.paths && doc.paths[PUPPET_SUMMARY]);
  } catch (e) { $("puppet-link").hidden = true; }
}

window.orchPuppetView = puppetView;
document.addEventListener("DOMContentLoaded", () => {
  $("runall-form").addEventListener("submit", runAll);
  detectPuppet();
});
