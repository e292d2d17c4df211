"""The facter fact source: cached, refreshed on its own thread, never on the request path."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.errors import ConfigError
from orch.core.facts import collect_facts, watch_sources
from orch.core.server import Node, NodeServices
from orch.testing import wait_until

from orch_puppet.config import PuppetPluginConfig
from orch_puppet.facts import FacterSource, facts_argv, run_facter
from orch_puppet.plugin import orch_fact_sources


class ScriptedFacter:
    """A fake runner: returns the queued fact sets in turn, can be made to block."""

    def __init__(self, *results: Any) -> None:
        self.results = list(results)
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, argv: list[str], timeout: float) -> dict[str, Any]:
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        result = self.results[min(self.calls - 1, len(self.results) - 1)]
        if isinstance(result, Exception):
            raise result
        return dict(result)


def test_first_load_waits_then_refreshes_in_background() -> None:
    runner = ScriptedFacter({"os": {"family": "Debian"}}, {"os": {"family": "RedHat"}})
    changed = threading.Event()
    source = FacterSource(["facter", "--json"], interval=0.2, timeout=5,
                          on_change=changed.set, runner=runner)
    try:
        assert source.load() == {"os": {"family": "Debian"}}
        assert runner.calls == 1 and source.running
        assert changed.wait(5), "the background refresh never reported a change"
        assert source.load() == {"os": {"family": "RedHat"}}
        assert source.stats.refreshes >= 2 and source.stats.last_error is None
    finally:
        source.stop()
    assert not source.running


def test_a_failed_refresh_keeps_the_previous_facts() -> None:
    runner = ScriptedFacter({"kernel": "Linux"}, RuntimeError("facter exploded"))
    source = FacterSource(["facter"], interval=0.1, timeout=5, runner=runner)
    try:
        assert source.load() == {"kernel": "Linux"}
        wait_until(lambda: source.stats.failures >= 1, 5, "a failed refresh")
        assert source.load() == {"kernel": "Linux"}
        assert "exploded" in (source.stats.last_error or "")
    finally:
        source.stop()


def test_no_facts_at_all_raises_so_orch_logs_and_skips_it() -> None:
    source = FacterSource(["facter"], interval=60, timeout=5,
                          runner=ScriptedFacter(RuntimeError("no facter")))
    try:
        with pytest.raises(RuntimeError, match="no facter"):
            source.load()
        assert collect_facts([source]) == {}  # orch's merge logs and skips a failing source
    finally:
        source.stop()


def test_load_never_waits_for_a_refresh_in_progress() -> None:
    """While facter is (artificially) stuck, load() still answers from the cache at once."""
    runner = ScriptedFacter({"n": 1}, {"n": 2})
    source = FacterSource(["facter"], interval=0.05, timeout=60, runner=runner)
    try:
        assert source.load() == {"n": 1}
        runner.gate.clear()
        runner.entered.clear()
        assert runner.entered.wait(5)  # the background refresh is now blocked inside facter
        loaded: list[dict[str, object]] = []
        loads = threading.Thread(
            target=lambda: loaded.extend(source.load() for _ in range(100)), daemon=True)
        loads.start()
        loads.join(30)  # a load waiting for facter would block for its 60 s timeout
        assert not loads.is_alive() and loaded == [{"n": 1}] * 100
        runner.gate.set()
        wait_until(lambda: source.load() == {"n": 2}, 5, "the refresh to land")
    finally:
        runner.gate.set()
        source.stop()


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "facter"
    path.write_text(f"#!{sys.executable}\nimport sys, json, time\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_run_facter_accepts_json_with_a_nonzero_exit(tmp_path: Path) -> None:
    # facter 4 exits 1 when one resolver fails but still prints every other fact.
    facter = _script(tmp_path, "print(json.dumps({'os': {'name': 'Debian'}}))\n"
                     "print('ERROR Facter::InternalFactManager - Permission denied', "
                     "file=sys.stderr)\nsys.exit(1)")
    assert run_facter([facter, "--json"], 10) == {"os": {"name": "Debian"}}


def test_run_facter_rejects_garbage_and_hangs(tmp_path: Path) -> None:
    garbage = _script(tmp_path, "print('not json'); sys.exit(0)")
    with pytest.raises(RuntimeError, match="without a JSON object"):
        run_facter([garbage], 10)
    slow = _script(tmp_path, "time.sleep(30)")
    import subprocess

    with pytest.raises(subprocess.TimeoutExpired):
        run_facter([slow], 0.5)


def test_hook_is_off_by_default_and_checks_facter(tmp_path: Path) -> None:
    settings = load_settings(overrides={"security": "insecure"}, environ={})
    assert list(orch_fact_sources(settings)) == []
    missing = {"plugins": {"puppet": {"facts_enabled": True,
                                      "facter_bin": str(tmp_path / "none")}}}
    with pytest.raises(ConfigError, match="facter"):
        orch_fact_sources(load_settings(overrides=missing, environ={}))
    config = PuppetPluginConfig.from_section({"facts_command": "puppet",
                                              "puppet_bin": "/bin/true",
                                              "confdir": "/c/{identity}"})
    assert facts_argv(config, "n1") == ["/bin/true", "facts", "show", "--render-as", "json",
                                        "--confdir", "/c/n1"]


def test_nested_facter_facts_select_a_real_node(tmp_path: Path) -> None:
    """A node built the way `orch server` builds one: facter's nested facts in filters,
    and a refresh reaching the node without SIGHUP."""
    state = tmp_path / "facts.json"
    state.write_text(json.dumps({"os": {"family": "Debian", "distro": {"codename": "bookworm"}},
                                 "networking": {"interfaces": {"lo": {"ip": "127.0.0.1"}}}}))
    facter = _script(tmp_path, f"print(open({str(state)!r}).read())")
    settings = load_settings(overrides={
        "broker": "memory://", "collective": "factstest", "security": "insecure",
        "identity": "facter-node",
        "plugins": {"puppet": {"facts_enabled": True, "facter_bin": facter,
                               "facts_refresh_interval": 0.2, "config_print": False}},
    }, environ={})
    from orch.core.plugins import default_registry

    registry = default_registry()
    sources = registry.fact_sources(settings)
    facter_sources = [s for s in sources if isinstance(s, FacterSource)]
    assert len(facter_sources) == 1
    transport = registry.transport_for(settings)
    services = NodeServices.from_settings(settings, registry, transport.send_reply)
    node = Node("facter-node", "factstest", registry.agents_for(settings),
                lambda: collect_facts(sources), frozenset(), services)
    watch_sources(sources, node.refresh)  # what `orch server` does with its node
    stop, ready = threading.Event(), threading.Event()
    serving = threading.Thread(target=transport.serve, args=([node.binding()], stop, ready),
                               daemon=True)
    serving.start()
    try:
        assert ready.wait(10)
        with Client(settings) as client:
            def found(expression: str) -> list[str]:
                fact, value = expression.split("=")
                return client.discover({"fact": [{"fact": fact, "operator": "==",
                                                  "value": value}]})

            assert found("os.distro.codename=bookworm") == ["facter-node"]
            assert found("networking.interfaces.lo.ip=127.0.0.1") == ["facter-node"]
            state.write_text(json.dumps({"os": {"distro": {"codename": "trixie"}}}))
            wait_until(lambda: found("os.distro.codename=trixie") == ["facter-node"], 10,
                       "the refreshed facts to reach the node's filters")
    finally:
        for source in facter_sources:
            source.stop()
        stop.set()
        serving.join(10)
        services.close()
        transport.close()
