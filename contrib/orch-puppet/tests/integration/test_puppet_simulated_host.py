"""``orch demo`` and ``orch sim`` with orch-puppet installed never act on this machine.

Each starts as a real process on a real broker with ``puppet``, ``facter`` and ``ruby``
shims first on its PATH (each records any invocation); an operator then drives the
simulated nodes' ``puppet`` agent with the CLI — ``orch rpc puppet runonce``, ``orch puppet
runonce``, ``disable``, ``status``, ``last_run_summary`` — and afterwards no shim was run
and no process below the demo's runs anything of Puppet's (psutil walks the tree).
Issue 8, item 1: the demo used to start a real ``puppet agent --onetime`` as root.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from orch.testing import SimProcess, bare_environment, broker_problem, purge_collective
from orch.testing.servers import orch_argv
from puppet_fleet import BROKER, CliResult

PUPPETISH = ("puppet", "facter", "ruby")
SERVING = re.compile(r"In another shell: (.*) orch ping")


@pytest.fixture
def shims(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose PATH starts with recording shims, and the shims' log."""
    problem = broker_problem(BROKER)
    if problem is not None:
        pytest.fail(f"broker {BROKER} is not reachable ({problem})")
    directory = tmp_path / "shims"
    directory.mkdir()
    log = tmp_path / "shims.log"
    for name in PUPPETISH:
        shim = directory / name
        shim.write_text(f"#!/bin/sh\necho {name} \"$@\" >> '{log}'\nexit 1\n")
        shim.chmod(0o755)
    env = bare_environment()
    env["PATH"] = f"{directory}{os.pathsep}{env.get('PATH', '')}"
    env["ORCH_CACHE_DIR"] = str(tmp_path / "cache")
    return env, log


def orch(env: dict[str, str], *args: str) -> CliResult:
    proc = subprocess.run([*orch_argv(), *args], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env=env)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def puppet_processes(pid: int) -> list[str]:
    """Command lines of processes below ``pid`` that run anything of Puppet's: its
    program, or the script an interpreter runs, is named puppet, facter or ruby."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            argv = child.cmdline() or [child.name()]
        except psutil.NoSuchProcess:
            continue
        if any(Path(word).name in PUPPETISH for word in argv[:2]):
            found.append(" ".join(argv))
    return found


def drive_puppet(env: dict[str, str]) -> None:
    """What an operator tries first; each must work against the simulated nodes."""
    status = orch(env, "puppet", "status", "--json")
    assert status.rc == 0, status.describe()
    replies = {r["sender"]: r["data"] for r in status.json()["replies"]}
    assert replies and all(d["installed"] for d in replies.values())
    nodes = sorted(n for n, d in replies.items() if d["enabled"] and not d["applying"])
    assert len(nodes) >= 2, replies
    first, second = nodes[:2]
    result = orch(env, "rpc", "puppet", "runonce", "force=true", "-I", first, "--json")
    assert result.rc == 0, result.describe()
    after = orch(env, "puppet", "status", "--json", "-I", first).json()["replies"][0]["data"]
    assert after["status"] == "applying"
    result = orch(env, "puppet", "runonce", "-I", second)
    assert result.rc == 0, result.describe()
    result = orch(env, "puppet", "disable", "demo maintenance", "-I", second)
    assert result.rc == 0 and "Disabled the Puppet agent: demo maintenance" in result.stdout, \
        result.describe()
    result = orch(env, "puppet", "last_run_summary", "-I", second)
    assert result.rc == 0, result.describe()
    assert orch(env, "puppet", "enable", "-I", second).rc == 0


def test_orch_sim_runs_simulated_puppet_only(shims: tuple[dict[str, str], Path],
                                             tmp_path: Path) -> None:
    env, log = shims
    collective = f"simpup{uuid.uuid4().hex[:8]}"
    sim = SimProcess.start(orch_argv(), 6, BROKER, tmp_path / "state", "--workers",
                           "1", "--collective", collective, env=env)
    try:
        client = {**env, "ORCH_CONFIG": str(sim.client_config)}
        drive_puppet(client)
        assert puppet_processes(sim.process.pid) == []
    finally:
        problems = sim.stop()
        purge_collective(BROKER, collective)
    assert problems == []
    assert not log.exists(), log.read_text()


def test_orch_demo_runs_simulated_puppet_only(shims: tuple[dict[str, str], Path]) -> None:
    env, log = shims
    collective = f"demopup{uuid.uuid4().hex[:8]}"
    demo = subprocess.Popen(
        [*orch_argv(), "demo", "--nodes", "6", "--broker", BROKER, "--workers", "0",
         "--collective", collective, "--no-tour", "--no-interactive", "--serve"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    try:
        exports: Any = None
        deadline = time.monotonic() + 120
        while exports is None:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, "orch demo exited:\n" + "".join(output)
            output.append(line)
            exports = SERVING.search(line)
        client = dict(env)
        client.update(re.findall(r"(ORCH_\w+)='([^']*)'", exports.group(1)))
        drive_puppet(client)
        assert puppet_processes(demo.pid) == []
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait(10)
        purge_collective(BROKER, collective)
    assert not log.exists(), log.read_text()
