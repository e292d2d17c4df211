"""Operator mistakes: no broker where one is expected, missing or wrong configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from orch_integration import run_orch
from private_brokers import free_port

pytestmark = pytest.mark.integration


#: Port 1 on 127.0.0.1: nothing listens there, so connections are refused at once.
UNREACHABLE = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:1//",
    "redis": "redis://127.0.0.1:1/0",
}
COMMANDS = {
    "ping": ["ping"],
    "ping-known": ["ping", "-I", "web1"],
    "find": ["find", "-F", "role=web"],
    "rpc": ["rpc", "rpcutil", "ping"],
    "facts": ["facts", "role"],
    "inventory": ["inventory", "web1"],
}


@pytest.mark.parametrize("command", list(COMMANDS.values()), ids=list(COMMANDS))
@pytest.mark.parametrize("broker", list(UNREACHABLE.values()), ids=list(UNREACHABLE))
def test_unreachable_broker(broker: str, command: list[str]) -> None:
    result = run_orch(*command, "--broker", broker, collective="itunreachable", timeout=30)
    assert result.rc == 1, result.describe()
    assert "127.0.0.1:1" in result.stderr, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert result.elapsed < 10, f"took {result.elapsed:.1f}s"


def test_unreachable_broker_from_environment() -> None:
    port = free_port()  # bound a moment ago and released: nothing listens there now
    result = run_orch("ping", broker=f"amqp://guest:guest@127.0.0.1:{port}//", timeout=30)
    assert result.rc == 1, result.describe()
    assert f"127.0.0.1:{port}" in result.stderr
    assert "ORCH_BROKER" in result.stderr or "--broker" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["server"], ["ping"]], ids=["server", "client"])
def test_missing_config_file(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "nonexistent" / "orch.yaml"
    result = run_orch(*command, "--config", str(path), timeout=20)
    assert result.rc == 2, result.describe()
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_server_config_nonexistent() -> None:
    result = run_orch("server", "--config", "/nonexistent", timeout=20)
    assert result.rc == 2, result.describe()
    assert "/nonexistent" in result.stderr


@pytest.mark.parametrize("command", [["server"], ["ping"]], ids=["server", "client"])
def test_config_unknown_key(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "orch.yaml"
    path.write_text("collective: itconfig\nbrokr: amqp://guest:guest@127.0.0.1:5672//\n")
    result = run_orch(*command, "--config", str(path), timeout=20)
    assert result.rc == 2, result.describe()
    assert "'brokr'" in result.stderr
    assert str(path) in result.stderr
    assert "'broker'" in result.stderr  # the suggestion
    assert "Traceback" not in result.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "orch.yaml"
    path.write_text("workers: 0\n")
    result = run_orch("server", env={"ORCH_CONFIG": str(path)}, timeout=20)
    assert result.rc == 2, result.describe()
    assert "'workers'" in result.stderr
    assert str(path) in result.stderr


@pytest.mark.parametrize("text", ["broker: [unclosed\n", "- just\n- a list\n"],
                         ids=["invalid-yaml", "not-a-mapping"])
def test_config_not_a_mapping(text: str, tmp_path: Path) -> None:
    path = tmp_path / "orch.yaml"
    path.write_text(text)
    result = run_orch("server", "--config", str(path), timeout=20)
    assert result.rc == 2, result.describe()
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_in_environment() -> None:
    result = run_orch("ping", env={"ORCH_TIMEOUT": "soon"}, timeout=20)
    assert result.rc == 2, result.describe()
    assert "'timeout'" in result.stderr
    assert "environment" in result.stderr


def test_server_bad_identity() -> None:
    result = run_orch("server", "--identity", "no spaces allowed", timeout=20)
    assert result.rc == 2, result.describe()
    assert "identity" in result.stderr
    assert "Traceback" not in result.stderr
