"""The daemon's reload and readiness (:mod:`orch.core.daemon`, :mod:`orch.core.sdnotify`).

Reloading is driven by calling :meth:`Server.reload` (what SIGHUP does on the signal
thread); the real SIGHUP under a call loop is in tests/integration/test_daemon_lifecycle.py.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orch.core import sdnotify
from orch.core.config import Settings
from orch.core.daemon import RESTART_ONLY, Server
from orch.core.errors import ConfigError
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry, default_registry


def make_server(tmp_path: Path, settings: list[Settings]) -> Server:
    """A server whose reload reads the next of ``settings`` (or raises when told to)."""
    first = settings.pop(0)

    def reload_settings() -> Settings:
        value = settings.pop(0)
        if isinstance(value, Exception):
            raise value
        return value

    return Server(first, default_registry(), reload_settings)


def base(tmp_path: Path) -> Settings:
    facts = tmp_path / "facts.yaml"
    facts.write_text("role: one\n")
    return Settings(identity="n1", broker=["memory://"], security="insecure",
                    facts=[str(facts)], plugins={"actionpolicy": {"policy_dir": str(tmp_path)}})


def test_reload_takes_new_settings_and_facts(tmp_path: Path) -> None:
    first = base(tmp_path)
    other_facts = tmp_path / "other.yaml"
    other_facts.write_text("role: two\n")
    second = replace(first, plugins={"demo": {"key": 1}}, max_actions=3, max_ttl=10.0,
                     facts=[str(other_facts)], audit_log=str(tmp_path / "audit.log"))
    server = make_server(tmp_path, [first, second])
    try:
        server.reload()
        assert server.node.settings.plugin("demo") == {"key": 1}
        assert server.services.runner.limit == 3 and server.services.max_ttl == 10.0
        assert server.node.view().facts["role"] == "two"
        assert server.services.audit is not None
        assert server.services.audit.path == str(tmp_path / "audit.log")
    finally:
        server.services.close(0.1)


def test_reload_keeps_what_needs_a_restart(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    first = base(tmp_path)
    second = replace(first, identity="n2", workers=3, collective="other", max_actions=5)
    server = make_server(tmp_path, [first, second])
    try:
        with caplog.at_level(logging.WARNING):
            server.reload()
        assert (server.settings.identity, server.settings.workers,
                server.settings.collective) == ("n1", 8, "orch")
        assert server.settings.max_actions == 5
        assert "collective, identity, workers changed: takes effect when the daemon " \
               "restarts" in caplog.text
    finally:
        server.services.close(0.1)


def test_a_broken_config_keeps_the_current_settings(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    first = base(tmp_path)
    server = make_server(tmp_path, [first, ConfigError("server.yaml: bad value")])  # type: ignore[list-item]
    try:
        with caplog.at_level(logging.ERROR):
            server.reload()
        assert server.settings is first
        assert "configuration not reloaded, keeping the current one: server.yaml" in caplog.text
    finally:
        server.services.close(0.1)


class WatchedFacts:
    """A fact source that learns on its own that its facts changed (as facter's timer)."""

    name = "watched"

    def __init__(self) -> None:
        self.value = "before"
        self.changed: Callable[[], None] | None = None

    def load(self) -> Mapping[str, Any]:
        return {"watched": self.value}

    def watch(self, changed: Callable[[], None]) -> None:
        self.changed = changed


def test_a_watching_fact_source_reaches_its_own_node(tmp_path: Path) -> None:
    """The daemon hands each source "re-read your facts" for its own node: no module
    state, so two servers in one process never refresh each other's node."""
    sources = [WatchedFacts(), WatchedFacts()]
    servers = []
    for number, source in enumerate(sources):
        class Plugin:
            @hookimpl
            def orch_fact_sources(self, source: WatchedFacts = source) -> list[WatchedFacts]:
                return [source]

        registry = PluginRegistry.from_entry_points()
        assert registry.register(Plugin(), f"watched-{number}", "tests")
        servers.append(Server(replace(base(tmp_path), identity=f"n{number}"), registry))
    try:
        classes = tmp_path / "classes.txt"
        classes.write_text("webserver\n")
        servers[0].settings = replace(servers[0].settings, classes=str(classes))
        sources[0].value = "after"
        assert sources[0].changed is not None and sources[1].changed is not None
        sources[0].changed()
        assert servers[0].node.view().facts["watched"] == "after"
        assert servers[0].node.view().classes == frozenset({"webserver"})
        assert servers[1].node.view().facts["watched"] == "before"
    finally:
        for server in servers:
            server.services.close(0.1)


def test_every_restart_only_name_is_a_setting() -> None:
    assert set(RESTART_ONLY) <= set(Settings.documented())


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(path)
        listener.settimeout(5)
        assert sdnotify.notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": path})
        assert listener.recv(100) == b"READY=1\nSTATUS=x"


def test_sd_notify_outside_systemd_does_nothing(tmp_path: Path) -> None:
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_reload_moves_the_audit_log_without_losing_the_object(tmp_path: Path) -> None:
    """A request already holding the audit log is recorded in the new file."""
    first = replace(base(tmp_path), audit_log=str(tmp_path / "a.log"))
    second = replace(first, audit_log=str(tmp_path / "b.log"), audit_redact=["secret"])
    third = replace(second, audit_log=str(tmp_path / "absent" / "c.log"))
    server = make_server(tmp_path, [first, second, third])
    try:
        held = server.services.audit
        assert held is not None
        server.reload()
        assert server.services.audit is held and held.path == str(tmp_path / "b.log")
        held.record(node="n1", decision="allowed", reason="r", arguments={"secret": 1})
        assert '"secret":"[redacted]"' in (tmp_path / "b.log").read_text()
        server.reload()  # cannot open: keeps writing where it was
        assert held.path == str(tmp_path / "b.log")
        held.record(node="n1", decision="allowed", reason="again")
        assert "again" in (tmp_path / "b.log").read_text()
    finally:
        server.services.close(0.1)


def test_readiness_is_told_once_consuming_or_after_the_grace() -> None:
    from orch.core.daemon import Readiness

    ready = Readiness(grace_until=10.0)
    assert ready.poll(False, 1.0) is None
    assert ready.poll(True, 2.0) == Readiness.CONSUMING
    assert ready.poll(True, 30.0) is None
    assert ready.poll(False, 31.0) == Readiness.LOST
    assert ready.poll(False, 40.0) is None  # already announced: no second READY
    assert ready.poll(True, 41.0) == Readiness.CONSUMING

    late = Readiness(grace_until=10.0)
    assert late.poll(False, 9.0) is None
    assert late.poll(False, 10.0) == Readiness.UNREACHABLE
    assert late.poll(False, 11.0) is None
    assert late.poll(True, 12.0) == Readiness.CONSUMING
