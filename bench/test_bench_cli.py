"""Whole-command wall time of the ``orch`` CLI against 50 real ``orch server`` daemons.

Each round runs the console script as a subprocess and times it from fork to exit, like
``/usr/bin/time`` in the MCollective anchor: interpreter start-up, imports, broker
connection, fan-out, collection and output are all included.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from bench_support import Daemons, IdleGate, base_env, start_session, stop_session
from pytest_benchmark.fixture import BenchmarkFixture

ROUNDS = 10
REPLY_LINE = re.compile(r"^(\S+)\s+time=([\d.]+) ms$", re.MULTILINE)
PING_MAX = re.compile(r"^(\d+) replies max: ([\d.]+)", re.MULTILINE)
FINISHED = re.compile(r"^Finished processing (\d+) / (\d+) hosts in ([\d.]+) ms", re.MULTILINE)


def runner(argv: Sequence[str], env: dict[str, str],
           runs: list[subprocess.CompletedProcess[str]]) -> Callable[[], None]:
    """The measured function: run the command once, keep its output for the checks."""

    def run() -> None:
        runs.append(subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=60))

    return run


def check_ping_runs(runs: list[subprocess.CompletedProcess[str]], daemons: Daemons,
                    extra_info: dict[str, object]) -> None:
    """Every round exited 0 and listed all 50 identities; record the last reply's RTT."""
    last_reply_ms: list[float] = []
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        named = {m.group(1) for m in REPLY_LINE.finditer(run.stdout)}
        assert named == set(daemons.identities), run.stdout + run.stderr
        summary = PING_MAX.search(run.stdout)
        assert summary is not None and int(summary.group(1)) == len(daemons.identities)
        last_reply_ms.append(float(summary.group(2)))
    last_reply_ms.sort()
    extra_info["nodes"] = len(daemons.identities)
    extra_info["last_reply_ms_median"] = last_reply_ms[len(last_reply_ms) // 2]
    extra_info["last_reply_ms_min"] = last_reply_ms[0]


@pytest.mark.benchmark(group="cli-50-daemons")
def test_ping_known_nodes(benchmark: BenchmarkFixture, orch_exe: str,
                          daemons50: Daemons) -> None:
    """``orch ping --nodes FILE``: 50 direct requests, returns when the 50th reply arrives."""
    runs: list[subprocess.CompletedProcess[str]] = []
    argv = [orch_exe, "ping", "--nodes", str(daemons50.nodes_file)]
    gate = IdleGate()
    benchmark.pedantic(runner(argv, daemons50.env, runs), setup=gate, rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)
    gate.record(benchmark.extra_info)
    check_ping_runs(runs, daemons50, benchmark.extra_info)


@pytest.mark.benchmark(group="cli-50-daemons")
def test_ping_known_nodes_through_a_session(benchmark: BenchmarkFixture, orch_exe: str,
                                            daemons50: Daemons, tmp_path: Path) -> None:
    """The same, with an ``orch session`` running (docs/cli.md "A resident session")."""
    runs: list[subprocess.CompletedProcess[str]] = []
    argv = [orch_exe, "ping", "--nodes", str(daemons50.nodes_file)]
    env = start_session(orch_exe, daemons50.env, tmp_path / "session")
    gate = IdleGate()
    try:
        benchmark.pedantic(runner(argv, env, runs), setup=gate, rounds=ROUNDS, iterations=1,
                           warmup_rounds=1)
    finally:
        served = stop_session(orch_exe, env)
    assert served == len(runs), f"the session ran {served} of {len(runs)} commands"
    gate.record(benchmark.extra_info)
    check_ping_runs(runs, daemons50, benchmark.extra_info)


@pytest.mark.benchmark(group="cli-50-daemons")
def test_ping_discovery(benchmark: BenchmarkFixture, orch_exe: str,
                        daemons50: Daemons) -> None:
    """``orch ping``: one broadcast, ends ``discovery_window`` (0.2 s) after the last reply."""
    runs: list[subprocess.CompletedProcess[str]] = []
    argv = [orch_exe, "ping"]
    gate = IdleGate()
    benchmark.pedantic(runner(argv, daemons50.env, runs), setup=gate, rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)
    gate.record(benchmark.extra_info)
    check_ping_runs(runs, daemons50, benchmark.extra_info)


@pytest.mark.benchmark(group="cli-50-daemons")
def test_rpc_rpcutil_ping(benchmark: BenchmarkFixture, orch_exe: str,
                          daemons50: Daemons) -> None:
    """``orch rpc rpcutil ping``: broadcast discovery, then 50 direct requests."""
    runs: list[subprocess.CompletedProcess[str]] = []
    argv = [orch_exe, "rpc", "rpcutil", "ping"]
    gate = IdleGate()
    benchmark.pedantic(runner(argv, daemons50.env, runs), setup=gate, rounds=ROUNDS,
                       iterations=1, warmup_rounds=1)
    gate.record(benchmark.extra_info)
    total = len(daemons50.identities)
    call_ms: list[float] = []
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        named = set(re.findall(r"^(node\d+)$", run.stdout, re.MULTILINE))
        assert named == set(daemons50.identities), run.stdout + run.stderr
        finished = FINISHED.search(run.stdout)
        assert finished is not None, run.stdout
        assert int(finished.group(1)) == int(finished.group(2)) == total, run.stdout
        call_ms.append(float(finished.group(3)))
    call_ms.sort()
    benchmark.extra_info["nodes"] = total
    # From publishing the 50 direct requests to the 50th reply (mco's "agent ms").
    benchmark.extra_info["call_ms_median"] = call_ms[len(call_ms) // 2]
    benchmark.extra_info["call_ms_min"] = call_ms[0]


@pytest.mark.benchmark(group="cli-startup")
def test_version_startup(benchmark: BenchmarkFixture, orch_exe: str) -> None:
    """``orch --version``: interpreter start-up plus importing the CLI entry point."""
    runs: list[subprocess.CompletedProcess[str]] = []
    run = runner([orch_exe, "--version"], base_env(), runs)
    gate = IdleGate()
    benchmark.pedantic(run, setup=gate, rounds=20, iterations=1, warmup_rounds=1)
    gate.record(benchmark.extra_info)
    for done in runs:
        assert done.returncode == 0 and done.stdout.startswith("orch "), done.stderr
