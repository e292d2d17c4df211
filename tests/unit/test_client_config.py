"""The client's default config file search and ``orch config show`` (issue 8 habits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from orch.cli.main import cli
from orch.core.clientconfig import explain_settings, find_client_config, load_client_settings
from orch.testing import bare_environment


def clean(tmp_path: Path, **extra: str) -> dict[str, str]:
    return bare_environment({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
                             **extra})


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_search_order(tmp_path: Path) -> None:
    env = clean(tmp_path)
    assert find_client_config(None, env)[0] is None
    user = write(tmp_path / "xdg" / "orch" / "client.yaml", "collective: mine\n")
    assert find_client_config(None, env) == (str(user), "default search")
    env["ORCH_CONFIG"] = str(write(tmp_path / "other.yaml", "collective: other\n"))
    assert find_client_config(None, env)[1] == "$ORCH_CONFIG"
    assert find_client_config("x.yaml", env) == ("x.yaml", "--config")
    assert load_client_settings(None, None, env).collective == "other"


def test_origins(tmp_path: Path) -> None:
    write(tmp_path / "xdg" / "orch" / "client.yaml", "collective: mine\ntimeout: 7\n")
    env = clean(tmp_path, ORCH_TIMEOUT="9")
    path, rows = explain_settings(None, {"ttl": 30}, env)
    origins = {row.name: (row.value, row.origin) for row in rows}
    assert origins["collective"] == ("mine", f"file {path}")
    assert origins["timeout"] == (9.0, "environment ORCH_TIMEOUT")
    assert origins["ttl"][1] == "command line"
    assert origins["discovery_timeout"][1] == "default"


def test_config_show_hides_passwords(tmp_path: Path) -> None:
    write(tmp_path / "xdg" / "orch" / "client.yaml",
          "broker: amqp://ops:s3cret@mq.example.com:5672//\n")
    result = CliRunner().invoke(cli, ["config", "show"], env=clean(tmp_path))
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "amqp://ops:**@mq.example.com" in result.output
    assert "(default search)" in result.output
    as_json = CliRunner().invoke(cli, ["config", "show", "--json"], env=clean(tmp_path))
    document = json.loads(as_json.stdout)
    broker = next(r for r in document["settings"] if r["name"] == "broker")
    assert broker["origin"].startswith("file ")


def test_a_client_command_reads_the_searched_file(tmp_path: Path) -> None:
    write(tmp_path / "xdg" / "orch" / "client.yaml",
          "broker: nosuchscheme://x\nsecurity: insecure\n")
    result = CliRunner().invoke(cli, ["ping"], env=clean(tmp_path))
    assert result.exit_code == 2
    assert "nosuchscheme" in result.output


@pytest.mark.parametrize("text", ["timeout: [\n", "bogus_setting: 1\n"])
def test_config_show_with_a_bad_file_is_a_usage_error(tmp_path: Path, text: str) -> None:
    write(tmp_path / "xdg" / "orch" / "client.yaml", text)
    result = CliRunner().invoke(cli, ["config", "show"], env=clean(tmp_path))
    assert result.exit_code == 2
    assert "client.yaml" in result.output
