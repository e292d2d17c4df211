"""The figures docs/puppet.md reports, measured (never asserted: these are not tests).

    python contrib/orch-puppet/bench/figures.py status [--nodes 1000] [--broker URL]
    python contrib/orch-puppet/bench/figures.py runall [--nodes 1000]
    python contrib/orch-puppet/bench/figures.py facter [--seconds 20]
    python contrib/orch-puppet/bench/figures.py all

* ``status``: ``orch puppet status`` (the CLI, a separate process, as an operator runs it)
  over N simulated nodes served by one ``orch.core.fleet.Fleet`` process on a real broker
  (RabbitMQ by default), each node with its own fake Puppet state directory (summary,
  disable lock, run lock). Wall time of the whole command, discovery included, and with
  ``--nodes FILE`` (no discovery).
* ``runall``: the scheduler's own cost per node (CPU spent deciding, with a fake fleet and
  a fake clock, so no waiting is counted), and end to end on simulated nodes whose "runs"
  are real processes lasting 1 s: wall time against the ideal ``waves x run time``.
* ``facter``: what one refresh costs the daemon (wall and CPU of ``facter --json`` and
  ``puppet facts show``), and request latency of a real ``orch server`` while facter
  refreshes back to back, against the same server with facts off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from orch.testing import bare_environment

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from fakepuppet import (  # noqa: E402
    install_fake_puppet,
    make_node,
    plugin_section,
    puppet_like_process,
    summary_document,
)

AMQP = os.environ.get("ORCH_BENCH_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def orch_cli() -> list[str]:
    script = Path(sys.executable).parent / "orch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "orch.cli.main"]


def clean_env(**extra: str) -> dict[str, str]:
    return bare_environment(extra)  # every figure is a command run by itself


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# -- status over a simulated fleet ---------------------------------------------------------


def simulated_nodes(root: Path, count: int) -> tuple[list[str], subprocess.Popen[bytes]]:
    """``count`` nodes: varied summaries, 5 % disabled, 1 % applying, 10 % never ran."""
    helper = puppet_like_process(root.parent / "bin", "import time; time.sleep(3600)")
    now = int(time.time())
    names = []
    for index in range(count):
        name = f"node{index:04d}.sim"
        names.append(name)
        summary = None if index % 10 == 9 else summary_document(
            now - 60 * (index % 90), total=50 + index % 200, changed=index % 7,
            failed=1 if index % 97 == 0 else 0, total_time=2 + (index % 40) / 4)
        make_node(root, name, summary=summary,
                  disabled="maintenance" if index % 20 == 0 else None,
                  applying_pid=helper.pid if index % 100 == 1 else None)
    return names, helper


def figure_status(count: int, broker: str, rounds: int) -> dict[str, Any]:
    from orch.core.config import load_settings
    from orch.core.fleet import Fleet, NodeSpec
    from orch.core.plugins import default_registry

    with tempfile.TemporaryDirectory(prefix="orch-puppet-bench-") as tmp:
        root = Path(tmp) / "nodes"
        names, helper = simulated_nodes(root, count)
        collective = f"pb{uuid.uuid4().hex[:8]}"
        settings = load_settings(overrides={
            "broker": broker, "collective": collective, "security": "insecure",
            "plugins": {"puppet": plugin_section(root, install_fake_puppet(Path(tmp)))},
            "workers": 8,
        }, environ={})
        node_file = Path(tmp) / "nodes.txt"
        node_file.write_text("\n".join(names) + "\n")
        started = time.monotonic()
        fleet = Fleet(settings, [NodeSpec(n) for n in names], default_registry()).start(timeout=300)
        fleet_start = time.monotonic() - started
        env = clean_env(ORCH_BROKER=broker, ORCH_COLLECTIVE=collective,
                        ORCH_SECURITY="insecure", ORCH_LOG_LEVEL="error")
        results: dict[str, list[float]] = {"discovery": [], "nodes_file": []}
        replies: dict[str, int] = {}
        try:
            for _ in range(rounds):
                for label, extra in (("discovery", []), ("nodes_file",
                                                         ["--nodes", str(node_file)])):
                    t0 = time.monotonic()
                    proc = subprocess.run([*orch_cli(), "puppet", "status", "--json", *extra],
                                          env=env, capture_output=True, text=True,
                                          timeout=300)
                    results[label].append(time.monotonic() - t0)
                    document = json.loads(proc.stdout)
                    replies[label] = len(document["replies"])
            t0 = time.monotonic()
            text = subprocess.run([*orch_cli(), "puppet", "summary", "--nodes", str(node_file)],
                                  env=env, capture_output=True, text=True, timeout=300)
            summary_s = time.monotonic() - t0
        finally:
            fleet.stop()
            helper.kill()
            helper.wait(timeout=10)
    return {
        "nodes": count, "broker": broker.split(":", 1)[0], "fleet_start_s": round(fleet_start, 2),
        "replies": replies,
        "status_wall_s_median": {k: round(statistics.median(v), 3) for k, v in results.items()},
        "status_wall_s_all": {k: [round(x, 3) for x in v] for k, v in results.items()},
        "summary_wall_s": round(summary_s, 3),
        "summary_head": text.stdout.splitlines()[:6],
    }


# -- runall --------------------------------------------------------------------------------


def figure_runall(count: int) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_puppet_runall import FakeClock, FakeFleet, FakeNode

    from orch_puppet.runall import RunAll

    out: dict[str, Any] = {}
    for concurrency in (10, 50):
        clock = FakeClock()
        fleet = FakeFleet(clock, {f"n{i:04d}": FakeNode(duration=20 + i % 13)
                                  for i in range(count)})
        cpu = time.process_time()
        report = RunAll(fleet, sorted(fleet.nodes), concurrency, clock=clock,
                        poll_interval=1.0).run()
        cpu = time.process_time() - cpu
        out[f"fake_fleet_n{concurrency}"] = {
            "nodes": count, "polls": report.polls,
            "scheduling_ms_per_node": round(report.scheduling_seconds * 1000 / count, 4),
            "process_cpu_ms_per_node_incl_fake_fleet": round(cpu * 1000 / count, 4),
            "max_concurrent": fleet.max_concurrent,
        }
    out["simulated_orch_fleet"] = _runall_on_simulated_nodes(200, 20, 1.0)
    return out


def _runall_on_simulated_nodes(count: int, concurrency: int, run_seconds: float) -> \
        dict[str, Any]:
    """runall through orch (memory broker, in-process fleet) on nodes whose runs are real
    processes holding Puppet's run lock for ``run_seconds``."""
    from orch.core.client import Client
    from orch.core.config import load_settings
    from orch.core.fleet import Fleet, NodeSpec
    from orch.core.plugins import default_registry

    from orch_puppet.runall import OrchPuppetFleet, RunAll

    with tempfile.TemporaryDirectory(prefix="orch-puppet-runall-") as tmp:
        root = Path(tmp) / "nodes"
        names = [f"r{i:03d}" for i in range(count)]
        for name in names:
            make_node(root, name, run_seconds=run_seconds)
        settings = load_settings(overrides={
            "broker": "memory://", "collective": f"ra{uuid.uuid4().hex[:6]}",
            "security": "insecure", "timeout": 10,
            "plugins": {"puppet": plugin_section(root, install_fake_puppet(Path(tmp)))},
        }, environ={})
        with Fleet(settings, [NodeSpec(n) for n in names], default_registry()), \
                Client(settings) as client:
            t0 = time.monotonic()
            report = RunAll(OrchPuppetFleet(client), names, concurrency,
                            poll_interval=0.25).run()
            wall = time.monotonic() - t0
    waves = -(-count // concurrency)
    # Each fake run is a Python process: ~run_seconds + its own start-up.
    return {
        "nodes": count, "concurrency": concurrency, "run_seconds": run_seconds,
        "wall_s": round(wall, 2), "ideal_s": waves * run_seconds,
        "overhead_ms_per_node": round((wall - waves * run_seconds) * 1000 / count, 1),
        "polls": report.polls, "finished": report.tally()["finished"],
        "max_in_flight": report.max_in_flight,
        "scheduling_ms_per_node": round(report.scheduling_seconds * 1000 / count, 4),
    }


# -- facter --------------------------------------------------------------------------------


def figure_facter(seconds: float) -> dict[str, Any]:
    from orch_puppet.facts import FacterSource

    out: dict[str, Any] = {}
    for label, argv in (("facter --json", ["facter", "--json"]),
                        ("puppet facts show", ["puppet", "facts", "show", "--render-as",
                                               "json"])):
        source = FacterSource(argv, interval=3600, timeout=120)
        walls, cpus = [], []
        for _ in range(5):
            source.refresh()
            walls.append(source.stats.last_wall)
            cpus.append(source.stats.last_cpu)
        out[label] = {"wall_s_median": round(statistics.median(walls), 3),
                      "cpu_s_median": round(statistics.median(cpus), 3),
                      "failures": source.stats.failures}
    for facts_on in (False, True):
        out["requests_facts_" + ("on" if facts_on else "off")] = _latency_under_refresh(
            facts_on, seconds)
    return out


def _latency_under_refresh(facts_on: bool, seconds: float) -> dict[str, Any]:
    """Latency of `puppet status` on a real `orch server` while facter refreshes every
    0.1 s (i.e. back to back) — or with facts off, as the baseline."""
    import yaml
    from orch.core.client import Client
    from orch.core.config import load_settings

    with tempfile.TemporaryDirectory(prefix="orch-puppet-facter-") as tmp:
        root = Path(tmp)
        collective = f"pf{uuid.uuid4().hex[:8]}"
        make_node(root / "nodes", "f1", summary=summary_document(int(time.time())))
        counter = root / "facter-runs"
        wrapper = root / "facter-counting"
        wrapper.write_text(f"#!{sys.executable}\nimport os, sys\n"
                           f"open({str(counter)!r}, 'a').write('x')\n"
                           "os.execvp('facter', ['facter', *sys.argv[1:]])\n")
        wrapper.chmod(0o755)
        section = plugin_section(root / "nodes", install_fake_puppet(root / "bin"),
                                 facts_enabled=facts_on, facts_refresh_interval=0.1,
                                 facter_bin=str(wrapper))
        config = root / "f1.yaml"
        config.write_text(yaml.safe_dump({
            "identity": "f1", "collective": collective, "broker": AMQP,
            "security": "insecure", "log_level": "warning", "plugins": {"puppet": section}}))
        log = (root / "server.log").open("wb")
        server = subprocess.Popen([*orch_cli(), "server", "--config", str(config)],
                                  env=clean_env(), stdout=log, stderr=subprocess.STDOUT)
        settings = load_settings(overrides={"broker": AMQP, "collective": collective,
                                            "security": "insecure", "timeout": 5},
                                 environ={})
        latencies: list[float] = []
        missing = 0
        try:
            with Client(settings) as client:
                deadline = time.monotonic() + 60
                while not client.ping(nodes=["f1"]).replies:
                    if time.monotonic() > deadline:
                        raise RuntimeError("orch server did not answer")
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    t0 = time.monotonic()
                    result = client.call("puppet", "status", {}, nodes=["f1"])
                    if result.replies:
                        latencies.append((time.monotonic() - t0) * 1000)
                    else:
                        missing += 1
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
        refreshes = len(counter.read_text()) if counter.exists() else 0
    return {"requests": len(latencies), "missing": missing,
            "p50_ms": round(percentile(latencies, 0.5), 2),
            "p99_ms": round(percentile(latencies, 0.99), 2),
            "max_ms": round(max(latencies), 2), "facter_runs_during_test": refreshes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["status", "runall", "facter", "all"])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--broker", default=AMQP)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    import logging

    logging.basicConfig(level=logging.ERROR)
    results: dict[str, Any] = {}
    if args.figure in ("status", "all"):
        results["status"] = figure_status(args.nodes, args.broker, args.rounds)
    if args.figure in ("runall", "all"):
        results["runall"] = figure_runall(args.nodes)
    if args.figure in ("facter", "all"):
        results["facter"] = figure_facter(args.seconds)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    threading.current_thread().name = "figures"
    main()
