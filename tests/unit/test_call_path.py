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


def test_agents_are_looked_up_once_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = default_registry()
    calls: list[Any] = []
    original = PluginRegistry.agents

    def counting(self: PluginRegistry, settings: Any = None) -> Any:
        calls.append(settings)
        return original(self, settings)

    monkeypatch.setattr(PluginRegistry, "agents", counting)
    settings = load_settings(overrides={"broker": "memory://", "security": "insecure"},
                             environ={})
    client = Client(settings, registry)
    try:
        client.action_ddl("rpcutil", "ping")
        client.call_timeout("rpcutil")
        client.action_ddl("rpcutil", "get_fact")
    finally:
        client.close()
    assert len(calls) == 1


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
