"""The inventory commands' answers to bad input: a message and exit 2 (or 1 for a job
that is not there), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orch.cli.main import cli
from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.fleet import Fleet, NodeSpec
from orch.core.plugins import default_registry

ENV = {"ORCH_BROKER": "memory://", "ORCH_SECURITY": "insecure", "ORCH_CONFIG": ""}


@pytest.mark.parametrize("args, code, message", [
    (["nodes"], 2, "no inventory store configured"),
    (["jobs"], 2, "no inventory store configured"),
    (["jobs", "--limit", "0"], 2, "0 is not in the range"),
    (["nodes", "--store", "nosuch://x"], 2, "no plugin provides inventory stores"),
    (["registry", "--broker", "memory://", "--security", "insecure"], 2, "needs a store"),
    (["find", "--discovery-method", "inventory"], 2, "needs a store"),
    (["find", "--discovery-method", "nosuch"], 2, "unknown discovery method 'nosuch'"),
])
def test_bad_input_is_a_clear_error(args: list[str], code: int, message: str) -> None:
    result = CliRunner().invoke(cli, args, env=ENV)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_an_unknown_job_says_how_to_find_one(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/inventory.db"
    result = CliRunner().invoke(cli, ["jobs", "--store", store, "show", "abc"], env=ENV)
    assert result.exit_code == 1, result.output
    assert "no job 'abc'" in result.output and "orch jobs" in result.output
    listed = CliRunner().invoke(cli, ["jobs", "--store", store, "--json"], env=ENV)
    assert listed.exit_code == 0 and '"jobs": []' in listed.output


def test_job_history_redacts_what_the_audit_log_redacts(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/inventory.db"
    settings = load_settings(overrides={
        "broker": "memory://", "security": "insecure", "collective": "redact",
        "audit_redact": ["fact"], "plugins": {"inventory": {"store": store}}}, environ={})
    with Fleet(settings, [NodeSpec("n1", {"role": "web"})],
               default_registry()), Client(settings) as client:
        result = client.call("rpcutil", "get_fact", {"fact": "role"}, nodes=["n1"])
        assert result.ok == ["n1"]
    opened = default_registry().inventory_store(store, settings)
    try:
        job = opened.jobs()[0]
    finally:
        opened.close()
    assert job.data == {"fact": "[redacted]"}
    assert [r.sender for r in job.replies] == ["n1"] and job.finished is not None


def test_verbose_says_which_discovery_method_ran_and_how_long_it_took() -> None:
    result = CliRunner().invoke(cli, ["find", "-v", "--discovery-method", "broadcast",
                                      "--discovery-timeout", "0.3"], env=ENV)
    assert "discovery: method broadcast found 0 node(s) in" in result.output, result.output
