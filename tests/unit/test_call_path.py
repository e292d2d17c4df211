"""One path per call: agents, DDL and timeout resolved once; filters parsed without a Client."""

from __future__ import annotations

from typing import Any

import pytest

from orch.core.agent import Agent
from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.errors import ArgumentError
from orch.core.filter import FilterEngine
from orch.core.plugins import PluginRegistry, default_registry


def test_each_agent_is_looked_up_once_per_client_and_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client asks the registry for the agent it calls, once, and never lists them all
    (which imports every agent plugin installed)."""
    registry = default_registry()
    named: list[str] = []
    listed: list[Any] = []
    original = PluginRegistry.agent

    def counting(self: PluginRegistry, name: str, settings: Any = None) -> Any:
        named.append(name)
        return original(self, name, settings)

    monkeypatch.setattr(PluginRegistry, "agent", counting)
    monkeypatch.setattr(PluginRegistry, "agents", lambda self, settings=None: listed.append(1))
    settings = load_settings(overrides={"broker": "memory://", "security": "insecure"},
                             environ={})
    client = Client(settings, registry)
    try:
        client.action_ddl("rpcutil", "ping")
        client.call_timeout("rpcutil")
        client.action_ddl("rpcutil", "get_fact")
        assert client.action_ddl("nosuchagent", "act") is None
    finally:
        client.close()
    assert named == ["rpcutil", "nosuchagent"]
    assert listed == []


def test_a_filter_engine_comes_from_the_registry_alone() -> None:
    settings = load_settings(overrides={"filter_max_terms": 3}, environ={})
    engine = FilterEngine.for_registry(default_registry(), settings)
    assert engine.budget.max_terms == 3
    assert "fact" in engine.kinds


def test_argument_error_declares_its_kind() -> None:
    assert ArgumentError("x").kind == "invalid"
    assert ArgumentError("x", "missing").kind == "missing"


def test_agents_declare_their_deadline_grace() -> None:
    assert Agent.deadline_grace == 0.0
