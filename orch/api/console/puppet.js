// The Puppet view: shown only when the API has orch-puppet's summary route.
// It reads GET /api/v1/puppet/summary and runs `puppet runonce` on every Puppet node
// through the ordinary run endpoint, `batch` nodes at a time (one job).
"use strict";

const PUPPET_SUMMARY = "/api/v1/puppet/summary";
const PUPPET_ROWS = [
  ["enabled", "Enabled"], ["disabled", "Disabled"], ["applying", "Applying"],
  ["idle", "Idle"], ["stale", "Stale (no run for an hour, or never)"],
];

async function puppetView() {
  show("puppet");
  $("puppet-error").textContent = "";
  const body = $("puppet-counts").tBodies[0];
  body.replaceChildren();
  try {
    const s = await api(PUPPET_SUMMARY);
    const rows = PUPPET_ROWS.map(([key, label]) => [key, label, s.states[key]]);
    rows.push(["failed_last_runs", "Failed last runs", s.failed_last_runs]);
    rows.push(["failed_resources", "Failed resources (last runs)", s.failed_resources]);
    for (const [key, label, count] of rows) {
      const row = body.insertRow();
      row.dataset.state = key;
      row.append(el("th", label), el("td", String(count)));
      row.cells[0].scope = "row";
    }
  } catch (e) { $("puppet-error").textContent = e.message; }
}

async function runAll(event) {
  event.preventDefault();
  const batch = parseInt($("runall-concurrency").value, 10);
  if (!(batch >= 1)) { $("runall-progress").textContent = "Concurrency must be 1 or more"; return; }
  $("runall-button").disabled = true;
  let replies = 0, failed = 0, expected = "?";
  const progress = () => { $("runall-progress").textContent =
    `Started ${replies} of ${expected}` + (failed ? `, ${failed} failed` : ""); };
  try {
    const job = await api("/api/v1/run/puppet/runonce", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ filter: { agent: ["puppet"] }, batch: batch }),
    });
    progress();
    await stream(job.links.events, (kind, data) => {
      if (kind === "discovered") expected = data.count;
      else if (kind === "reply") { replies += 1; if (data.statuscode !== 0) failed += 1; }
      else if (kind === "done") {
        progress();
        $("runall-progress").textContent += data.error ? " — " + data.error : " — done";
        return false;
      }
      progress();
      return true;
    });
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
