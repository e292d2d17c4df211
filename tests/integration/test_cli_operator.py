"""The operator's CLI against real ``orch server`` processes: exit codes, replies printed
as they arrive, Ctrl-C (issue 8, items 6, 7 and 10)."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest
from orch_integration import (
    BROKERS,
    CliResult,
    Fleet,
    read_line_until,
    run_orch,
    stop_process,
)

pytestmark = pytest.mark.integration


def test_exit_0_every_node_answered(run_orch: Callable[..., CliResult]) -> None:
    assert run_orch("rpc", "rpcutil", "ping", "--dt", "2").rc == 0


def test_exit_1_a_node_did_not_answer(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "ping", "-I", "web1", "-I", "ghost", "-t", "1")
    assert result.rc == 1, result.describe()
    assert "ghost" in result.stdout


def test_exit_1_nothing_matched(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "ping", "-F", "role=nosuch", "--dt", "1")
    assert result.rc == 1, result.describe()


def test_exit_2_unknown_agent(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "nosuchagent", "act", "--dt", "1")
    assert result.rc == 2, result.describe()
    assert "unknown agent 'nosuchagent'" in result.stderr


def test_exit_2_usage(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "get_fact", "--limit", "0", "fact=role")
    assert result.rc == 2, result.describe()
    assert "Traceback" not in result.stderr


def test_replies_are_printed_as_they_arrive_and_ctrl_c_exits_130(fleet: Fleet) -> None:
    """web1 answers at once, ghost never: web1's reply is on stdout while the call still
    waits (the reply arrived, the command has not ended), and Ctrl-C then shows who is
    still awaited and exits 130."""
    process = fleet.start_orch("rpc", "rpcutil", "get_fact", "fact=role", "-I", "web1",
                               "-I", "ghost", "-t", "60")
    try:
        assert process.stdout is not None and process.stderr is not None
        read_line_until(process.stdout, lambda line: line.strip().startswith("web1"), 30,
                        "web1's reply while the call waits for ghost")
        assert process.poll() is None  # still waiting for ghost: the reply was streamed
        process.send_signal(signal.SIGINT)
        rc = process.wait(30)
        stderr = process.stderr.read()
    finally:
        stop_process(process)
    assert rc == 130, stderr
    assert "Interrupted: 1 of 2 node(s) answered" in stderr
    assert "ghost" in stderr.split("Still awaited", 1)[1]
    assert "Traceback" not in stderr and "Aborted!" not in stderr


def test_a_wrong_broker_password_is_named_as_such() -> None:
    url = BROKERS["rabbitmq"].replace("guest:guest@", "guest:wrong@")
    result = run_orch("ping", broker=url)
    assert result.rc == 1, result.describe()
    assert "refused the credentials" in result.stderr
    assert "Check that it is running" not in result.stderr


def test_an_unsigned_client_hears_the_fleet_may_require_signatures(fleet: Fleet) -> None:
    result = fleet.run_orch("rpc", "rpcutil", "ping", "-I", "web1", "-t", "2",
                            env={"ORCH_SECURITY": "insecure"})
    assert result.rc == 1, result.describe()
    assert "may require signed requests" in result.stderr
