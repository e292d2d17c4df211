"""The inventory commands' answers to bad input: a message and exit 2 (or 1 for a job
that is not there), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orch.cli.main import cli
from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.plugins import default_registry
from orch.testing import FleetFactory

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


def test_job_history_redacts_what_the_audit_log_redacts(tmp_path: Path,
                                                        orch_fleet: FleetFactory) -> None:
    store = f"sqlite:///{tmp_path}/inventory.db"
    fleet = orch_fleet({"n1": {"role": "web"}}, settings={
        "audit_redact": ["fact"], "plugins": {"inventory": {"store": store}}})
    with Client(fleet.settings) as client:
        result = client.call("rpcutil", "get_fact", {"fact": "role"}, nodes=["n1"])
        assert result.ok == ["n1"]
    opened = default_registry().inventory_store(store, fleet.settings)
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


def _stored_fleet(tmp_path: Path, collective: str = "fromstore") -> dict[str, str]:
    """A SQLite store holding web1 (fresh), web2 (stale) and db1, and the environment of
    a client reading it (the broker is never reached: nothing is sent)."""
    import time

    import yaml

    from orch.core.inventory import NodeRecord

    store = f"sqlite:///{tmp_path}/inventory.db"
    opened = default_registry().inventory_store(store, load_settings(overrides={}, environ={}))
    now = time.time()
    try:
        opened.upsert_nodes([  # type: ignore[attr-defined]
            NodeRecord("web1", collective, {"role": "web"}, ("nginx",), ("rpcutil",), "1.2",
                       now - 3600, now - 42),
            NodeRecord("web2", collective, {"role": "web"}, (), ("rpcutil",), "1.2",
                       now - 7200, now - 900),
            NodeRecord("db1", collective, {"role": "db"}, (), ("rpcutil",), "1.2",
                       now - 60, now - 5)])
        opened.mark_stale(now - 600)
    finally:
        opened.close()
    config = tmp_path / "client.yaml"
    config.write_text(yaml.safe_dump({"plugins": {"inventory": {"store": store}}}))
    # An unreachable broker: any attempt to ask the nodes would fail the command.
    return {**ENV, "ORCH_CONFIG": str(config), "ORCH_COLLECTIVE": collective,
            "ORCH_BROKER": "amqp://guest:guest@127.0.0.1:1//"}


def test_inventory_from_the_store_says_where_and_how_old(tmp_path: Path) -> None:
    env = _stored_fleet(tmp_path)
    result = CliRunner().invoke(cli, ["inventory", "--from-inventory", "web1", "web2"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "Inventory for web1 (from the inventory store, registered 20" in result.output
    assert "42s ago)" in result.output
    assert "Inventory for web2 (from the inventory store" in result.output
    assert "STALE" in result.output.split("Inventory for web2")[1]
    assert "STALE" not in result.output.split("Inventory for web2")[0]
    assert "nginx" in result.output and "role => web" in result.output

    document = CliRunner().invoke(cli, ["inventory", "--from-inventory", "-F", "role=web",
                                        "--json"], env=env)
    assert document.exit_code == 0, document.output
    parsed = json.loads(document.output)
    assert parsed["source"] == "inventory" and parsed["missing"] == []
    assert [n["identity"] for n in parsed["nodes"]] == ["web1", "web2"]
    first = parsed["nodes"][0]
    assert first["stale"] is False and 40 <= first["age_seconds"] < 3600
    assert first["data"]["facts"] == {"role": "web"} and first["data"]["agents"] == ["rpcutil"]

    line = CliRunner().invoke(cli, ["inventory", "--from-inventory", "-I", "db1",
                                    "--template", "{identity} {facts[role]} {version}"],
                              env=env)
    assert line.exit_code == 0 and line.output == "db1 db 1.2\n", line.output


def test_inventory_from_the_store_names_what_it_does_not_hold(tmp_path: Path) -> None:
    env = _stored_fleet(tmp_path)
    result = CliRunner().invoke(cli, ["inventory", "--from-inventory", "web1", "gone1"],
                                env=env)
    assert result.exit_code == 1, result.output
    assert "Inventory for web1" in result.output
    assert "Not in the inventory: gone1" in result.output
    # With a filter, named nodes it does not select are left out, not missing.
    chosen = CliRunner().invoke(cli, ["inventory", "--from-inventory", "web1", "db1",
                                      "-F", "role=db", "--json"], env=env)
    assert chosen.exit_code == 0, chosen.output
    parsed = json.loads(chosen.output)
    assert [n["identity"] for n in parsed["nodes"]] == ["db1"] and parsed["missing"] == []
    nothing = CliRunner().invoke(cli, ["inventory", "--from-inventory", "-F", "role=none"],
                                 env=env)
    assert nothing.exit_code == 1 and "no node of the inventory matches" in nothing.output


def test_inventory_from_the_store_needs_one() -> None:
    result = CliRunner().invoke(cli, ["inventory", "--from-inventory", "web1"], env=ENV)
    assert result.exit_code == 2 and "--from-inventory needs a store" in result.output, (
        result.output)


def test_json_carries_what_discovery_knew_of_silent_nodes() -> None:
    from orch.cli.output import result_document
    from orch.core.result import CallResult

    result = CallResult("rpcutil", "ping", "r1", ["web1", "web2"])
    result.notes = {"web2": "last seen 2026-11-30 19:50:01"}
    assert result_document(result)["notes"] == {"web2": "last seen 2026-11-30 19:50:01"}
    assert result_document(CallResult("rpcutil", "ping", "r2", []))["notes"] == {}
