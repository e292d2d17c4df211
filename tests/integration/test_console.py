"""The web console in real headless Chromium (Debian's package), driven by Playwright for
Python, against ``orch api`` and ``orch server`` processes on RabbitMQ.

Screenshots of each step are saved under ``$ORCH_TEST_ARTIFACTS/console`` (default
``build/test-artifacts/console``) for people to look at. ``./run-tests`` installs Chromium
when it is missing; without it these tests fail (they are not skipped: a console nobody
tested in a browser is not tested).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import API_TOKEN, DENIED_TOKEN, ApiProcess, api_fleet, demo_api
from orch_integration import DEFAULT_NODES, NodeSpec

playwright_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("starlette")

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("ORCH_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("ORCH_TEST_ARTIFACTS", "build/test-artifacts")) / "console"
#: How long the page may take to show what a test waits for (a call on the fleet included).
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with api_fleet(tmp_path_factory.mktemp("console")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install chromium (./run-tests does)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, api: ApiProcess, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()


def sign_in(page: Any, api: ApiProcess, token: str = API_TOKEN, view: str = "overview"
            ) -> None:
    page.goto(f"{api.url}/console/#/{view}")
    page.fill("#token", token)
    page.click("#token-form button")


def test_overview_counts_the_nodes(page: Any, api: ApiProcess) -> None:
    sign_in(page, api)
    expect = playwright_api.expect
    expect(page.locator("#node-count")).to_have_text(str(len(DEFAULT_NODES)))
    page.click("#dist-form button")
    expect(page.locator("#dist-table tbody tr")).to_have_count(3)


def test_filter_nodes_then_open_one(page: Any, api: ApiProcess) -> None:
    expect = playwright_api.expect
    sign_in(page, api, view="nodes")
    expect(page.locator("#nodes-table tbody tr")).to_have_count(len(DEFAULT_NODES))
    page.fill("#filter", "role=web")
    page.click("#filter-form button")
    expect(page.locator("#nodes-table tbody tr")).to_have_count(2)
    expect(page.locator("#nodes-summary")).to_have_text("2 matching node(s)")
    page.click("text=web2")
    expect(page.locator("#node-name")).to_have_text("web2")
    expect(page.locator("#node-classes")).to_contain_text("role::web")
    expect(page.locator("#node-facts")).to_contain_text("RedHat")


def test_a_bad_filter_is_shown_inline(page: Any, api: ApiProcess) -> None:
    expect = playwright_api.expect
    sign_in(page, api, view="nodes")
    page.fill("#filter", "role=web and (")
    page.click("#filter-form button")
    expect(page.locator("#filter-error")).to_contain_text("bad filter")


def test_run_ping_fills_the_results_table_live(page: Any, api: ApiProcess) -> None:
    expect = playwright_api.expect
    sign_in(page, api, view="run")
    page.select_option("#run-agent", "rpcutil")
    page.select_option("#run-action", "ping")
    page.fill("#run-filter", "env=prod")
    page.dispatch_event("#run-filter", "change")
    expect(page.locator("#run-target")).to_have_text("3 node(s) match")
    page.click("#run-button")
    expect(page.locator("#results tbody tr")).to_have_count(3)
    expect(page.locator("#run-done")).to_contain_text("3 replied, 3 OK")
    expect(page.locator("#run-progress")).to_have_text("3 of 3 replied")


def test_the_form_checks_required_arguments_before_sending(page: Any,
                                                           api: ApiProcess) -> None:
    expect = playwright_api.expect
    sign_in(page, api, view="run")
    page.select_option("#run-agent", "rpcutil")
    page.select_option("#run-action", "get_fact")
    page.click("#run-button")
    expect(page.locator("#run-error")).to_have_text("fact is required")
    expect(page.locator("#results tbody tr")).to_have_count(0)


def test_a_denied_action_shows_the_denial(page: Any, api: ApiProcess) -> None:
    expect = playwright_api.expect
    sign_in(page, api, token=DENIED_TOKEN, view="run")
    page.select_option("#run-agent", "rpcutil")
    page.select_option("#run-action", "get_fact")
    page.fill("#arg-fact", "role")
    page.fill("#run-filter", "role=db")
    page.click("#run-button")
    expect(page.locator("#results tbody tr")).to_have_count(2)
    expect(page.locator("#results tbody")).to_contain_text("denied")
    expect(page.locator("#run-done")).to_contain_text("0 OK, 2 failed")


def test_nodes_are_paged_for_a_large_fleet(browser: Any, tmp_path: Path) -> None:
    """250 nodes (``orch demo --api``): 100 a page, Next and Previous move through them."""
    expect = playwright_api.expect
    with demo_api(tmp_path, 250) as (url, token, _):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(f"{url}/console/#/nodes")
            page.fill("#token", token)
            page.click("#token-form button")
            expect(page.locator("#page-info")).to_have_text("1 to 100 of 250")
            expect(page.locator("#nodes-table tbody tr")).to_have_count(100)
            expect(page.locator("#prev-page")).to_be_disabled()
            page.click("#next-page")
            expect(page.locator("#page-info")).to_have_text("101 to 200 of 250")
            page.click("#next-page")
            expect(page.locator("#page-info")).to_have_text("201 to 250 of 250")
            expect(page.locator("#nodes-table tbody tr")).to_have_count(50)
            expect(page.locator("#next-page")).to_be_disabled()
            page.click("#prev-page")
            expect(page.locator("#page-info")).to_have_text("101 to 200 of 250")
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_nodes_are_paged.png"), full_page=True)
            context.close()


def test_overview_lists_stale_nodes_and_the_node_page_says_when_seen(
        browser: Any, tmp_path: Path) -> None:
    """With an inventory store (SQLite): the overview counts and lists stale nodes; a stale
    node's page shows its recorded facts and when it was last seen."""
    import time

    import yaml

    from orch.core.config import load_settings
    from orch.core.inventory import NodeRecord
    from orch.core.plugins import default_registry

    expect = playwright_api.expect
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    config = tmp_path / "orch.yaml"
    config.write_text(yaml.safe_dump({"discovery_method": "broadcast",
                                      "plugins": {"inventory": {"store": url}}}))
    with api_fleet(tmp_path, DEFAULT_NODES[:1], config=config) as api:
        store = default_registry().inventory_store(url, load_settings(overrides={}))
        try:
            store.upsert_nodes([NodeRecord("gone1", api.fleet.collective, {"role": "db"},
                                           (), ("rpcutil",), "1.0", 0.0,
                                           time.time() - 3600)])
        finally:
            store.close()
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            sign_in(page, api)
            expect(page.locator("#stale-count")).to_have_text("1")
            expect(page.locator("#stale-table tbody tr")).to_have_count(1)
            page.click("#stale-table a")
            expect(page.locator("#node-seen")).to_contain_text("(stale)", timeout=UI_TIMEOUT_MS)
            expect(page.locator("#node-facts")).to_contain_text("db")
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_stale_nodes.png"), full_page=True)
            context.close()


def test_puppet_view_counts_the_simulated_fleet_and_runs_all(browser: Any,
                                                             tmp_path: Path) -> None:
    """``orch demo --api`` hosts orch-puppet's simulation (``Agent.simulation()``): the
    Puppet view shows the fleet's counts from orch-puppet's route and runs Puppet on every
    node, a limited number at a time."""
    pytest.importorskip("orch_puppet")
    expect = playwright_api.expect
    with demo_api(tmp_path, 12) as (url, token, _):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        try:
            page.goto(f"{url}/console/#/puppet")
            page.fill("#token", token)
            page.click("#token-form button")
            expect(page.locator("#puppet-link")).to_be_visible()
            counts = page.locator("#puppet-counts tbody")
            expect(counts.locator("tr")).to_have_count(7, timeout=UI_TIMEOUT_MS)
            enabled = int(counts.locator("tr[data-state=enabled] td").inner_text())
            disabled = int(counts.locator("tr[data-state=disabled] td").inner_text())
            assert enabled + disabled == 12
            assert counts.locator("tr[data-state=failed_resources] td").inner_text().isdigit()
            page.fill("#runall-concurrency", "4")
            page.click("#runall-button")
            expect(page.locator("#runall-progress")).to_contain_text(
                "at most 4 at a time", timeout=UI_TIMEOUT_MS)
            # runall waits for every run to end: allow for a loaded machine
            expect(page.locator("#runall-progress")).to_contain_text(
                "Done in", timeout=3 * UI_TIMEOUT_MS)
            expect(page.locator("#runall-button")).to_be_enabled()
            progress = page.locator("#runall-progress").inner_text()
            tally = dict(part.rsplit(": ", 1) for part in progress.split(" — ")[1].split(", "))
            assert sum(map(int, tally.values())) == 12, progress  # every node accounted for
            assert int(tally.get("skipped disabled", 0)) == disabled, progress
            assert set(tally) <= {"finished", "run failed", "skipped disabled"}, progress
            # the runs runall started; a simulated node's own daemon may start a scheduled
            # run on top (by the wall clock), which the page reports apart
            started = int(progress.split("at most ")[1].split(" ")[0])
            assert started <= 4, progress
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_puppet_view.png"), full_page=True)
            context.close()


def test_jobs_are_paged_older_and_newer(browser: Any, tmp_path: Path) -> None:
    """120 jobs in the history (a SQLite store): 50 a page, Older and Newer move through
    them by the API's cursor, and the buttons say where the ends are."""
    import time

    import yaml

    from orch.core.config import load_settings
    from orch.core.inventory import JobRecord
    from orch.core.plugins import default_registry

    expect = playwright_api.expect
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    config = tmp_path / "orch.yaml"
    config.write_text(yaml.safe_dump({"discovery_method": "broadcast",
                                      "plugins": {"inventory": {"store": url}}}))
    with api_fleet(tmp_path, DEFAULT_NODES[:1], config=config) as api:
        store = default_registry().inventory_store(url, load_settings(overrides={}))
        now = time.time()
        try:
            for index in range(120):
                store.record_job(JobRecord(f"job-{index:03d}", "user=alice",
                                           api.fleet.collective, "rpcutil", "ping", {}, {},
                                           ("web1",), now - index))
        finally:
            store.close()
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        rows = page.locator("#jobs-table tbody tr")
        try:
            sign_in(page, api, view="jobs")
            expect(page.locator("#jobs-page-info")).to_have_text("1 to 50")
            expect(rows).to_have_count(50)
            expect(rows.first).to_contain_text("job-000")
            expect(page.locator("#newer-jobs")).to_be_disabled()
            page.click("#older-jobs")
            expect(page.locator("#jobs-page-info")).to_have_text("51 to 100")
            expect(rows.first).to_contain_text("job-050")
            page.click("#older-jobs")
            expect(page.locator("#jobs-page-info")).to_have_text("101 to 120")
            expect(rows).to_have_count(20)
            expect(rows.last).to_contain_text("job-119")
            expect(page.locator("#older-jobs")).to_be_disabled()
            page.click("#newer-jobs")
            expect(page.locator("#jobs-page-info")).to_have_text("51 to 100")
            expect(rows.first).to_contain_text("job-050")
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_jobs_paged.png"), full_page=True)
            context.close()


def test_results_are_paged_and_every_reply_counted(browser: Any, tmp_path: Path) -> None:
    """520 nodes (``orch demo --api``): every reply is counted live, the table shows 500 a
    page (a page's layout cost stays bounded however large the fleet), Next shows the rest."""
    expect = playwright_api.expect
    with demo_api(tmp_path, 520) as (url, token, _):
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)
        rows = page.locator("#results tbody tr")
        try:
            page.goto(f"{url}/console/#/run")
            page.fill("#token", token)
            page.click("#token-form button")
            page.select_option("#run-agent", "rpcutil")
            page.select_option("#run-action", "ping")
            page.click("#run-button")
            expect(page.locator("#run-progress")).to_have_text("520 of 520 replied")
            expect(page.locator("#run-done")).to_contain_text("520 replied, 520 OK")
            expect(rows).to_have_count(500)
            expect(page.locator("#results-page-info")).to_have_text("1 to 500 of 520 replies")
            expect(page.locator("#results-prev")).to_be_disabled()
            page.click("#results-next")
            expect(rows).to_have_count(20)
            expect(page.locator("#results-page-info")).to_have_text(
                "501 to 520 of 520 replies")
            expect(page.locator("#results-next")).to_be_disabled()
            page.click("#results-prev")
            expect(rows).to_have_count(500)
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_results_paged.png"))
            context.close()


def test_a_node_that_answered_before_and_is_gone_is_named(browser: Any, tmp_path: Path) -> None:
    """Two runs of the same filtered ping through the console; a daemon is killed between
    them: the second run's summary names it under "Answered before, not now"."""
    expect = playwright_api.expect
    nodes = [NodeSpec(f"seen{i}", {"role": "web"}) for i in range(3)]
    with api_fleet(tmp_path, nodes) as api:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_TIMEOUT_MS)

        def run_ping(expected: int) -> None:
            page.select_option("#run-agent", "rpcutil")
            page.select_option("#run-action", "ping")
            page.fill("#run-filter", "role=web")
            page.dispatch_event("#run-filter", "change")
            page.click("#run-button")
            expect(page.locator("#run-done")).to_contain_text(
                f"{expected} replied, {expected} OK")

        try:
            sign_in(page, api, view="run")
            run_ping(3)
            expect(page.locator("#absent")).to_have_count(0)
            api.fleet.daemons["seen2"].kill()
            run_ping(2)
            expect(page.locator("#absent li")).to_have_text(["seen2"])
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "test_absent_named.png"), full_page=True)
            context.close()
