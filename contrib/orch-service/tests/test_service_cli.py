"""``orch service NAME ACTION`` through orch's real command line (in-process, memory broker,
simulated nodes): summaries, confirmation, --yes, --limit, --batch, --json, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from orch.testing import OrchFleet

Start = Callable[..., OrchFleet]
NODES = {f"web-{i:02d}": {"role": "web"} for i in range(1, 7)}


def test_status_summary_names_the_odd_ones_out(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    fleet.call("service", "stop", service="nginx", nodes=["web-02", "web-05"])
    result = fleet.run_cli("service", "nginx", "status")
    assert result.exit_code == 0, result.output
    assert "nginx: running: 4, stopped: 2 (web-02, web-05)" in result.output
    assert "Finished processing 6 / 6 hosts" in result.output


def test_stop_on_many_nodes_asks_first(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    refused = fleet.run_cli("service", "nginx", "stop", input="n\n")
    assert refused.exit_code == 1
    assert "stop nginx on 6 nodes?" in refused.output
    assert "nothing done: not confirmed" in refused.output
    status = fleet.run_cli("service", "nginx", "status", "--json")
    assert "stopped" not in json.loads(status.stdout)["summary"]["status"]  # nothing sent
    agreed = fleet.run_cli("service", "nginx", "stop", input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert "nginx: stopped: 6" in agreed.output


def test_yes_skips_the_question_and_one_node_is_not_asked(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    one = fleet.run_cli("service", "nginx", "stop", "-I", "web-01")
    assert one.exit_code == 0 and "?" not in one.output
    many = fleet.run_cli("service", "nginx", "stop", "--yes")
    assert many.exit_code == 0 and "?" not in many.output
    assert "changed: 5, unchanged: 1" in many.output


def test_confirm_above_is_configurable(service_fleet: Start, tmp_path: Path) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    config = tmp_path / "client.yaml"
    config.write_text("plugins:\n  service:\n    confirm_above: 10\n")
    result = fleet.run_cli("service", "nginx", "stop", "--config", str(config))
    assert result.exit_code == 0 and "?" not in result.output


def test_confirm_above_from_the_environment(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    result = fleet.run_cli("service", "nginx", "stop",
                           env={"ORCH_SERVICE_CONFIRM_ABOVE": "10"})
    assert result.exit_code == 0 and "?" not in result.output
    bad = fleet.run_cli("service", "nginx", "stop", env={"ORCH_SERVICE_CONFIRM_ABOVE": "many"})
    assert bad.exit_code == 2 and "plugins.service.confirm_above" in bad.output


def test_shared_limit_and_batches(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    # orch's shared --limit/--batch/--batch-sleep: the first 4 by name, 2 at a time
    result = fleet.run_cli("service", "nginx", "restart", "--limit", "4", "--limit-method",
                           "first", "--batch", "2", "--batch-sleep", "0", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert sorted(r["sender"] for r in document["replies"]) == [
        "web-01", "web-02", "web-03", "web-04"]
    assert document["summary"]["left_out_by_limit"] == 2
    text = fleet.run_cli("service", "nginx", "restart", "--limit", "50%", "--batch", "2")
    assert text.exit_code == 0, text.output
    assert "--limit left out 3 matching node(s)" in text.output
    assert "Finished processing 3 / 3 hosts" in text.output


def test_the_question_counts_the_nodes_limit_keeps(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    refused = fleet.run_cli("service", "nginx", "stop", "-1", input="n\n")
    assert refused.exit_code == 0 and "?" not in refused.output  # one node: not asked
    asked = fleet.run_cli("service", "nginx", "stop", "--limit", "3", input="n\n")
    assert asked.exit_code == 1 and "stop nginx on 3 nodes?" in asked.output


def test_the_shared_options_are_checked(service_fleet: Start) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    for args in (["--limit", "0"], ["--limit", "x"], ["--batch", "0"], ["-1", "--limit", "2"]):
        bad = fleet.run_cli("service", "nginx", "status", *args)
        assert bad.exit_code == 2, (args, bad.output)


def test_a_typo_in_the_section_is_a_usage_error(service_fleet: Start, tmp_path: Path) -> None:
    fleet = service_fleet(NODES, ["nginx"])
    config = tmp_path / "client.yaml"
    config.write_text("plugins:\n  service:\n    confirm_abve: 10\n")
    result = fleet.run_cli("service", "nginx", "stop", "--config", str(config))
    assert result.exit_code == 2, result.output
    assert "did you mean 'confirm_above'?" in result.output


def test_json_and_filters(service_fleet: Start) -> None:
    fleet = service_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}},
                          {"web1": ["nginx"], "db1": ["postgresql"]})
    result = fleet.run_cli("service", "cron", "status", "--json", "-F", "role=db")
    document = json.loads(result.stdout)
    assert [r["sender"] for r in document["replies"]] == ["db1"]
    assert sum(len(v) for v in document["summary"]["status"].values()) == 1


def test_refusals_and_unknown_services_exit_1(service_fleet: Start) -> None:
    fleet = service_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}},
                          {"web1": ["nginx"], "db1": ["postgresql"]})
    result = fleet.run_cli("service", "nginx", "status")
    assert result.exit_code == 1
    assert "unknown service 'nginx'" in result.output
    refused = fleet.run_cli("service", "ssh", "restart", "--yes")
    assert refused.exit_code == 1 and "plugins.service.allow" in refused.output


def test_bad_input_is_a_usage_error(service_fleet: Start) -> None:
    fleet = service_fleet({"n1": {}})
    bad_name = fleet.run_cli("service", "../x", "status")
    assert bad_name.exit_code == 2 and "is not a service name" in bad_name.output
    bad_action = fleet.run_cli("service", "cron", "enable")
    assert bad_action.exit_code == 2 and "'enable' is not one of" in bad_action.output
    nobody = fleet.run_cli("service", "cron", "status", "-F", "role=nothing")
    assert nobody.exit_code == 1 and "no node matching the filter" in nobody.output
