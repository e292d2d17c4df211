"""The demo's ``orch>`` prompt in a real terminal (pexpect): help, Tab completion, history,
Ctrl-C cancelling the line, Ctrl-D leaving (issue 8, item 8)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from orch.cli.main import cli
from orch.cli.prompt import completions, handle
from orch.testing import bare_environment

pexpect = pytest.importorskip("pexpect")

DEMO = [sys.executable, "-c", "from orch.cli.main import main; main()", "demo",
        "--nodes", "4", "--no-tour", "--interactive", "--insecure"]
PROMPT = "orch>"  # prompt_toolkit draws the trailing space as a cursor move


def environment() -> dict[str, str]:
    return bare_environment({"ORCH_LOG_LEVEL": "error", "TERM": "xterm",
                             "PROMPT_TOOLKIT_NO_CPR": "1",
                             "ORCH_CACHE_DIR": os.environ.get("ORCH_CACHE_DIR", "off")})


def test_the_prompt_in_a_terminal() -> None:
    child = pexpect.spawn(DEMO[0], DEMO[1:], env=environment(), encoding="utf-8",
                          timeout=60, dimensions=(40, 160))
    try:
        child.expect_exact(PROMPT)
        child.send("help\r")
        child.expect("Commands:")
        child.expect("Tab completes")
        child.expect_exact(PROMPT)
        # Tab completes from the click commands: "rpc rpcu" becomes "rpc rpcutil". When the
        # typed letters were drawn before the Tab was handled (a busy machine), the terminal
        # gets only the difference: "rpcu", cursor and mode sequences, then "til".
        child.send("rpc rpcu\t")
        child.expect(r"rpcu(?:\x1b\[[0-9;?]*[A-Za-z])*til")
        child.send(" ping --json\r")
        child.expect('"statuscode": 0')
        child.expect_exact(PROMPT)
        # Ctrl-C cancels the line being typed; the demo stays.
        child.send("find -F role=")
        child.sendintr()
        child.expect_exact(PROMPT)
        # History: Up brings back the last command that ran.
        child.send("\x1b[A")
        child.expect("ping --json")
        child.send("\x15")  # Ctrl-U clears the recalled line
        child.send("find\r")
        child.expect(r"\w+\.\w+")
        child.expect_exact(PROMPT)
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before


def test_the_prompt_without_a_terminal_reads_lines() -> None:
    proc = subprocess.run(DEMO, input="help rpc\nbogus-command\nserver\nexit\n",
                          env=environment(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Run AGENT's ACTION" in proc.stdout
    assert "No such command 'bogus-command'" in proc.stderr
    assert "`server` is not available inside the demo prompt" in proc.stdout


def test_completion_comes_from_the_click_commands() -> None:
    assert ("rpcutil", "") in [(v, "") for v, _ in completions(cli, "rpc rpcu")]
    assert any(value == "get_fact" for value, _ in completions(cli, "orch rpc rpcutil get_"))
    assert any(value == "--timeout" for value, _ in completions(cli, "ping --tim"))


def test_unparsable_and_empty_lines_keep_the_prompt() -> None:
    ran: list[list[str]] = []

    def run(args: list[str]) -> int:
        ran.append(args)
        return 0

    assert handle("find -F 'unclosed", cli, run)
    assert handle("   ", cli, run)
    assert handle("orch find", cli, run)
    assert not handle("exit", cli, run)
    assert ran == [["find"]]
