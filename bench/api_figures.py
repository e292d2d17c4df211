"""Figures for ``orch api`` and its console, measured once against a running ``orch sim``.

    orch sim -n 1000 --broker amqp://guest:guest@127.0.0.1:5672// --state-dir STATE &
    python bench/api_figures.py STATE/client.yaml

Prints: the bare client library's ``rpcutil ping`` (with discovery) against the same call
through ``POST /api/v1/run/rpcutil/ping?wait=true`` (the API's overhead), the time from
clicking Run in the console (headless Chromium) to the last reply shown (counted in the
progress line, the table's first page of 500 rows filled), and
the console's page weight. A script rather than a pytest-benchmark test because it needs a
simulated fleet of the operator's size, started outside.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROUNDS = 3
DISCOVERY_TIMEOUT = 10.0
TOKEN = "bench-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main(config: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    from orch.core.client import Client
    from orch.core.config import load_settings

    # A loaded machine may need longer than the 2 s default to hear 1,000 nodes.
    settings = load_settings(config, {"discovery_timeout": DISCOVERY_TIMEOUT}, environ={})
    bare = []
    for _ in range(ROUNDS):
        with Client(settings) as client:
            started = time.perf_counter()
            result = client.call("rpcutil", "ping")
            bare.append(time.perf_counter() - started)
    nodes = len(result.replies)

    work = Path(tempfile.mkdtemp(prefix="orch-api-bench-"))
    tokens = work / "tokens.yaml"
    tokens.write_text(yaml.safe_dump({"tokens": [{"name": "bench", "token": TOKEN,
                                                  "tls_cert": settings.tls_cert,
                                                  "tls_key": settings.tls_key}]}))
    port = free_port()
    env = {**os.environ, "ORCH_CONFIG": config,
           "ORCH_DISCOVERY_TIMEOUT": str(DISCOVERY_TIMEOUT)}
    orch = [sys.executable, "-c", "from orch.cli.main import main; main()"]
    log = open(work / "api.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([*orch, "api", "--listen", f"127.0.0.1:{port}",
                             "--tokens", str(tokens)], env=env, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/openapi.json", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        through_api = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            response = httpx.post(f"{url}/api/v1/run/rpcutil/ping?wait=true", json={},
                                  headers=headers, timeout=120)
            through_api.append(time.perf_counter() - started)
            assert len(response.json()["result"]["replies"]) == nodes
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(120_000)
            weight = {"bytes": 0}
            page.on("response", lambda r: weight.__setitem__(
                "bytes", weight["bytes"] + len(r.body()) if "/console/" in r.url else
                weight["bytes"]))
            page.goto(f"{url}/console/#/run")
            page.wait_for_load_state("networkidle")
            page_bytes = weight["bytes"]
            page.fill("#token", TOKEN)
            page.click("#token-form button")
            page.select_option("#run-agent", "rpcutil")
            page.select_option("#run-action", "ping")
            clicks = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                page.click("#run-button")
                # every reply counted, and the table's first page (500 rows) shown
                expect(page.locator("#run-progress")).to_have_text(
                    f"{nodes} of {nodes} replied")
                expect(page.locator("#results tbody tr")).to_have_count(min(nodes, 500))
                clicks.append(time.perf_counter() - started)
                expect(page.locator("#run-done")).to_be_visible()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    bare_s, api_s = statistics.median(bare), statistics.median(through_api)
    print(f"nodes: {nodes}")
    print(f"bare client call (discovery + ping), median of {ROUNDS}: {bare_s:.3f}s")
    print(f"POST /api/v1/run/rpcutil/ping?wait=true, median of {ROUNDS}: {api_s:.3f}s "
          f"(overhead {api_s - bare_s:+.3f}s)")
    print(f"console: click Run to last of {nodes} replies shown, median of {ROUNDS}: "
          f"{statistics.median(clicks):.3f}s ({', '.join(f'{c:.2f}' for c in clicks)})")
    print(f"console page weight (HTML+CSS+JS, uncompressed): {page_bytes} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
