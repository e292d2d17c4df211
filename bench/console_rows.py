"""The console's results table under N replies, in headless Chromium, without a fleet.

    python bench/console_rows.py 10000

Feeds N synthetic replies, 20 per task, to the console's own ``resultsWriter`` (the page
is ``orch/api/console/index.html`` from disk; its API calls fail, which does not matter
here) and prints the time until every reply is counted and the table's page is shown, and
the longest gap between animation frames (how long the page froze). The DOM cost alone:
``bench/api_figures.py`` measures the same through a real fleet.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
CHUNK = 20
page_html = Path("orch/api/console/index.html").resolve()
JS = """async ([n, chunk]) => {
  const body = document.getElementById("results").tBodies[0];
  document.getElementById("view-run").hidden = false;
  const add = resultsWriter();
  const shown = () => results.replies.length >= n
    && body.rows.length >= Math.min(n, RESULTS_PAGE);
  const t0 = performance.now();
  let worst = 0, last = performance.now();
  const tick = () => {
    const now = performance.now();
    worst = Math.max(worst, now - last);
    last = now;
    if (!shown()) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  for (let i = 0; i < n; i += chunk) {
    for (let j = i; j < Math.min(n, i + chunk); j++) {
      add({sender: "node-" + String(j).padStart(5, "0") + ".example.net", status: "OK",
           statuscode: 0, statusmsg: "OK", data: {pong: 1764547200 + j}});
    }
    await new Promise((r) => setTimeout(r, 0));
  }
  while (!shown()) await new Promise((r) => requestAnimationFrame(r));
  await new Promise((r) => requestAnimationFrame(r));
  return [performance.now() - t0, worst];
}"""
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                args=["--no-sandbox"])
    page = browser.new_page()
    page.goto(page_html.as_uri())
    times = [page.evaluate(JS, [N, CHUNK]) for _ in range(5)]
    print(f"{N} replies counted and the table's page shown: median of 5 "
          f"{statistics.median(t for t, _ in times):.0f} ms; longest gap between frames: "
          f"median {statistics.median(w for _, w in times):.0f} ms")
    browser.close()
