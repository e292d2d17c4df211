"""``orch completion`` and what Tab completes (issue 8 habits)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from orch.cli.main import cli
from orch.testing import bare_environment


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell], prog_name="orch")
    assert result.exit_code == 0, result.output
    assert "_ORCH_COMPLETE" in result.output


def test_unknown_shell_is_a_usage_error() -> None:
    assert CliRunner().invoke(cli, ["completion", "tcsh"]).exit_code == 2


def complete(words: str) -> list[str]:
    """What bash completion offers for ``words`` (the last one being typed)."""
    env = bare_environment({
        "_ORCH_COMPLETE": "bash_complete", "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        "ORCH_CACHE_DIR": os.environ.get("ORCH_CACHE_DIR", "")})
    proc = subprocess.run([sys.executable, "-c", "from orch.cli.main import main; main()"],
                          env=env, capture_output=True, text=True, timeout=60)
    return [line.split(",", 1)[1] for line in proc.stdout.splitlines() if "," in line]


def test_tab_completes_commands_agents_actions_and_inputs() -> None:
    assert "rpc" in complete("orch rp")
    assert "rpcutil" in complete("orch rpc rpcu")
    assert "get_fact" in complete("orch rpc rpcutil get_")
    assert "fact=" in complete("orch rpc rpcutil get_fact fa")
