"""The operator's habits on the ``orch`` command line (issue 8), on in-memory fleets.

Each test here failed before its fix: options after ACTION, DDL-built options, text and
JSON telling one truth, exit codes, --limit/--batch, --output-file, inventory with filters,
and the hint for unsigned requests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orch.testing import FleetFactory, OrchFleet

NODES = {"web1": {"role": "web"}, "web2": {"role": "web"}, "db1": {"role": "db"},
         "db2": {"role": "db"}}


@pytest.fixture
def fleet(orch_fleet: FleetFactory) -> OrchFleet:
    return orch_fleet(NODES, agents=["rpcutil"])


def document(result: Any) -> Any:
    return json.loads(result.stdout)


# ------------------------------------------------------------- options after ACTION (5)


@pytest.mark.parametrize("options", [
    ["--dt", "1", "-t", "5", "--no-progress"],
    ["--discovery-timeout", "1", "--timeout", "5", "--json"],
    ["-F", "role=web", "-v"],
])
def test_orch_options_after_action_are_orch_options(fleet: OrchFleet,
                                                    options: list[str]) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "fact=role", *options)
    assert result.exit_code == 0, result.output
    assert "unknown argument" not in result.output


def test_inputs_are_typed_options_built_from_the_ddl(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "--fact", "role", "--json")
    assert result.exit_code == 0, result.output
    values = {r["sender"]: r["data"]["value"] for r in document(result)["replies"]}
    assert values == {name: facts["role"] for name, facts in NODES.items()}


def test_an_input_given_twice_is_a_usage_error(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "--fact", "role", "fact=role")
    assert result.exit_code == 2
    assert "given twice" in result.output


def test_action_help_lists_the_input_options(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "--help")
    assert result.exit_code == 0
    assert "--fact STRING" in result.output


def test_an_input_named_like_an_orch_option_stays_name_value() -> None:
    """The clash is resolved explicitly: orch's option wins, the input is name=VALUE."""
    import click

    from orch.cli.rpc import clashing_inputs, input_options, rpc
    from orch.ddl.model import ActionDDL, InputDDL

    action = ActionDDL("x", inputs={"timeout": InputDDL("timeout", "integer"),
                                    "count": InputDDL("count", "integer"),
                                    "force": InputDDL("force", "boolean")})
    options = input_options(action, rpc.params)
    flags = {opt for option in options for opt in [*option.opts, *option.secondary_opts]}
    assert flags == {"--count", "--force", "--no-force"}
    assert clashing_inputs(action, rpc.params) == ["timeout"]
    assert all(isinstance(o, click.Option) for o in options)


def test_a_wrongly_typed_input_option_is_a_usage_error(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "--fact", "role", "--limit", "x")
    assert result.exit_code == 2
    assert "--limit" in result.output


# ------------------------------------------------------------ exit codes (6) and truth (3)


@pytest.fixture
def denying_fleet(orch_fleet: FleetFactory, tmp_path: Path) -> OrchFleet:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "rpcutil.policy").write_text("policy default allow\ndeny\t*\tping\t*\t*\n")
    return orch_fleet({"web1": {"role": "web"}}, agents=["rpcutil"],
                      settings={"policy_dir": str(policies)})


def test_ping_text_and_json_tell_one_truth(denying_fleet: OrchFleet) -> None:
    text = denying_fleet.run_cli("ping", "-I", "web1")
    as_json = denying_fleet.run_cli("ping", "-I", "web1", "--json")
    assert text.exit_code == as_json.exit_code == 1
    assert "time=" not in text.stdout
    assert "aborted" in text.stdout and "not authorized" in text.stdout
    assert document(as_json)["replies"][0]["status"] == "aborted"
    assert document(as_json)["stats"]["failed"] == 1


def test_exit_0_when_every_node_answered_ok(fleet: OrchFleet) -> None:
    assert fleet.run_cli("rpc", "rpcutil", "ping").exit_code == 0
    assert fleet.run_cli("ping").exit_code == 0
    assert fleet.run_cli("find").exit_code == 0


def test_exit_1_when_a_node_did_not_answer(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "-I", "web1", "-I", "ghost", "-t", "0.3")
    assert result.exit_code == 1
    assert "ghost" in result.output


def test_exit_1_when_nothing_matched(fleet: OrchFleet) -> None:
    assert fleet.run_cli("rpc", "rpcutil", "ping", "-F", "role=none").exit_code == 1
    assert fleet.run_cli("find", "-F", "role=none").exit_code == 1


def test_exit_2_for_an_agent_nobody_has(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "nosuchagent", "act")
    assert result.exit_code == 2
    assert "unknown agent 'nosuchagent'" in result.output


@pytest.mark.parametrize("args", [
    ["rpc", "rpcutil", "nosuchaction"],
    ["rpc", "rpcutil", "get_fact"],
    ["rpc", "rpcutil", "get_fact", "fact=x", "--bogus-option", "1"],
    ["ping", "--no-such-option"],
    ["find", "-S", "with_class('x')"],
    ["rpc", "rpcutil", "ping", "--limit", "0"],
    ["rpc", "rpcutil", "ping", "--batch", "0"],
    ["rpc", "rpcutil", "ping", "-1", "--limit", "2"],
])
def test_exit_2_for_usage_errors(fleet: OrchFleet, args: list[str]) -> None:
    result = fleet.run_cli(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_exit_codes_table_is_documented() -> None:
    text = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    table = text[text.index("## Exit codes"):]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |"):
        assert code in table


# ------------------------------------------------------------------ limit and batch


def test_limit_picks_that_many_nodes(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    assert len(document(result)["replies"]) == 2


def test_limit_percent_first_is_repeatable(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "--limit", "50%", "--limit-method",
                           "first", "--json")
    assert [r["sender"] for r in document(result)["replies"]] == ["db1", "db2"]


def test_one_calls_a_single_node(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "-1", "--json")
    assert len(document(result)["replies"]) == 1
    assert fleet.run_cli("find", "-1").stdout.count("\n") == 1


def test_batches_call_every_node(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "--batch", "1", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(r["sender"] for r in document(result)["replies"]) == sorted(NODES)


def test_plugin_commands_get_the_batch_options(fleet: OrchFleet) -> None:
    result = fleet.run_cli("facts", "role", "--batch", "2", "--limit", "3")
    assert result.exit_code == 0, result.output
    assert "Finished processing 3 / 3" in result.stdout


# ------------------------------------------------------------------ output file


def test_output_file_gets_json_while_text_goes_to_the_terminal(fleet: OrchFleet,
                                                              tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = fleet.run_cli("rpc", "rpcutil", "get_fact", "fact=role", "--output-file",
                           str(target))
    assert result.exit_code == 0
    assert "Finished processing 4 / 4" in result.stdout
    assert len(json.loads(target.read_text())["replies"]) == 4


# ------------------------------------------------------------------ inventory (4)


def test_inventory_applies_filters_to_named_nodes(fleet: OrchFleet) -> None:
    result = fleet.run_cli("inventory", "web1", "-F", "role=db")
    assert result.exit_code == 1
    assert "Inventory for web1" not in result.stdout


def test_inventory_of_the_nodes_a_filter_selects(fleet: OrchFleet) -> None:
    result = fleet.run_cli("inventory", "-F", "role=db")
    assert result.exit_code == 0, result.output
    assert "Inventory for db1" in result.stdout and "Inventory for db2" in result.stdout
    assert "web1" not in result.stdout


def test_inventory_template_and_json(fleet: OrchFleet) -> None:
    result = fleet.run_cli("inventory", "-F", "role=web", "--template",
                           "{identity} {facts[role]}")
    assert result.stdout.splitlines()[:2] == ["web1 web", "web2 web"]
    as_json = fleet.run_cli("inventory", "-F", "role=web", "--json")
    assert sorted(r["sender"] for r in document(as_json)["replies"]) == ["web1", "web2"]
    bad = fleet.run_cli("inventory", "-I", "web1", "--template", "{nope}")
    assert bad.exit_code == 2


# ------------------------------------------------------------------ unsigned hint (11)


def test_an_unsigned_client_is_told_the_fleet_may_require_signatures(
        fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "-I", "web1", "-t", "0.5",
                           env={"ORCH_SECURITY": "insecure"})
    assert result.exit_code == 1
    assert "may require signed requests" in result.stderr
    for args in (["rpc", "rpcutil", "ping"], ["find"], ["ping"], ["rpc", "rpcutil", "ping",
                                                                   "-F", "role=web"]):
        result = fleet.run_cli(*args, "--dt", "0.5", env={"ORCH_SECURITY": "insecure"})
        assert result.exit_code == 1, (args, result.output)
        assert "may require signed requests" in result.output, args


# ------------------------------------------------------------------ broker refusal (9)


def test_refused_credentials_are_told_apart_from_an_absent_broker() -> None:
    from amqp.exceptions import AccessRefused

    from orch.transports.kombu import connect_error, credentials_refused

    refused = AccessRefused("ACCESS_REFUSED - Login was refused")
    assert credentials_refused(refused)
    assert "refused the credentials" in str(connect_error("amqp://u:**@h//", refused))
    absent = ConnectionRefusedError(111, "Connection refused")
    assert not credentials_refused(absent)
    assert "Check that it is running" in str(connect_error("amqp://u:**@h//", absent))
    # A socket timeout carries no message of its own.
    silent = str(connect_error("amqp://u:**@h//", TimeoutError()))
    assert "amqp://u:**@h//: timed out. Check that it is running" in silent


# ------------------------------------------------------------------ external agents (17)


def test_help_and_doc_see_the_agents_dir_calls_use(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orch.cli.main import cli

    agents_dir = Path(__file__).parent / "external_agents"
    env = {"ORCH_AGENTS_DIR": str(agents_dir), "ORCH_LOG_LEVEL": "error"}
    runner = CliRunner()
    helped = runner.invoke(cli, ["rpc", "shhello", "--help"], env=env)
    assert helped.exit_code == 0, helped.output
    assert "shhello" in helped.output and "Actions:" in helped.output
    documented = runner.invoke(cli, ["plugin", "doc", "shhello"], env=env)
    assert documented.exit_code == 0, documented.output
    config = tmp_path / "client.yaml"
    config.write_text(f"agents_dir: [{agents_dir}]\n")
    via_file = runner.invoke(cli, ["plugin", "doc", "shhello", "--config", str(config)],
                             env={"ORCH_LOG_LEVEL": "error"})
    assert via_file.exit_code == 0, via_file.output


# ------------------------------------------------------------------ get_facts takes a list


@pytest.mark.parametrize("args", [
    ["facts=role,os"],
    ["facts=role os"],
    ["--facts", "role,os"],
])
def test_get_facts_takes_a_list(fleet: OrchFleet, args: list[str]) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_facts", *args, "-I", "web1", "--json")
    assert result.exit_code == 0, result.output
    assert document(result)["replies"][0]["data"]["values"] == {"role": "web", "os": None}


@pytest.mark.parametrize("args", [
    ["facts=role", "facts=os"],
    ["--facts", "role", "--facts", "os"],
])
def test_a_repeated_single_value_input_is_refused_not_truncated(fleet: OrchFleet,
                                                                args: list[str]) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "get_facts", *args, "-I", "web1")
    assert result.exit_code == 2
    assert "more than once" in result.output


def test_an_array_input_collects_repeated_values() -> None:
    from orch.ddl.arguments import parse_arguments
    from orch.ddl.model import ActionDDL, InputDDL

    action = ActionDDL("x", inputs={"names": InputDDL("names", "array")})
    assert parse_arguments(['names=["a","b"]', 'names=["c"]'], action) == {
        "names": ["a", "b", "c"]}


# ------------------------------------------------------------------ small output faults (13)


@pytest.fixture
def half_denying_fleet(orch_fleet: FleetFactory, tmp_path: Path) -> OrchFleet:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "rpcutil.policy").write_text(
        "policy default allow\ndeny\t*\tget_fact\trole=db\t*\n")
    return orch_fleet({"web1": {"role": "web"}, "db1": {"role": "db"}}, agents=["rpcutil"],
                      settings={"policy_dir": str(policies)})


def test_failure_lines_do_not_run_into_the_summary(half_denying_fleet: OrchFleet) -> None:
    result = half_denying_fleet.run_cli("rpc", "rpcutil", "get_fact", "fact=role")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("Finished"))
    assert lines[finished - 1] == ""
    assert "\nFailed on 1 node(s):\n    db1: aborted:" in result.stdout


def test_no_empty_summary_header(half_denying_fleet: OrchFleet) -> None:
    result = half_denying_fleet.run_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", "db1")
    assert result.exit_code == 1
    assert "Summary of" not in result.stdout
    ok = half_denying_fleet.run_cli("rpc", "rpcutil", "get_fact", "fact=role", "-I", "web1")
    assert "Summary of Value:" in ok.stdout


def test_ping_takes_the_limit(fleet: OrchFleet) -> None:
    result = fleet.run_cli("ping", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    assert len(document(result)["replies"]) == 2


# ------------------------------------------------------------------ progress on a timer (7)


class FakeTerminal:
    """A stream that says it is a terminal and signals once the line was drawn often."""

    def __init__(self, draws: int) -> None:
        import threading

        self.text: list[str] = []
        self.enough = threading.Event()
        self._draws = draws

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text.append(text)
        if sum("awaited" in t for t in self.text) >= self._draws:
            self.enough.set()
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_is_redrawn_while_nothing_arrives() -> None:
    from orch.cli.progress import Progress

    stream = FakeTerminal(draws=4)
    progress = Progress(stream=stream, interval=0.01)  # type: ignore[arg-type]
    try:
        progress.expect(["a", "b", "c"])
        progress.start_batch(1, 2, ["a", "b"])
        progress.advance()
        assert stream.enough.wait(30), "the timer never redrew the line"
    finally:
        progress.done()
    last = [t for t in stream.text if "awaited" in t][-1]
    assert "1 / 3, 2 awaited, batch 1 of 2" in last and last.rstrip("\x1b[K").endswith("s")
    assert stream.text[-1] == "\r\x1b[K"  # done() leaves a clean line


def test_no_progress_without_a_terminal_or_with_no_progress(fleet: OrchFleet) -> None:
    result = fleet.run_cli("rpc", "rpcutil", "ping", "--no-progress")
    assert result.exit_code == 0 and "awaited" not in result.output
