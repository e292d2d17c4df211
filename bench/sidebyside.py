"""orch, the real MCollective 2.12 and Salt side by side on this machine, 50 nodes each.

    python bench/sidebyside.py [--rounds 9] [--nodes 50] [--json FILE]

It starts ActiveMQ and N ``mcollectived`` daemons through the MCollective anchor's own
script (``shared/anchors/mcollective/run.sh`` with ``KEEP_RUNNING=1``, which installs the
Debian packages when they are missing), and N ``orch server`` processes on RabbitMQ with the
same identities (``node001``…) and facts (``role`` web for odd, db for even; ``os: debian``;
``index``). Then, round after round, it runs each pair of whole commands back to back (which
side goes first alternates by round), checks every reply count (N, or N/2 for ``-F
role=web``), and prints medians, minimums and the ratio ``mco / orch``. At the end it stops
every process it started, by PID, whatever happened.

The two known-list pairs run twice on orch's side: by themselves (``ORCH_SESSION=off``, as
every other pair), and "by default", in the session an earlier command started (docs/cli.md
"A resident session"; here ``orch --version``, run with ``ORCH_SESSION`` unset as users
run commands). The run fails unless the session served exactly those commands. For those
pairs the CPU column is the thin ``orch`` process alone: the child that ran the command
belongs to the session.

orch signs and verifies every message with x509 certificates from a throw-away CA (its
default security; ``ORCH_BENCH_SECURITY=insecure`` measures it unsigned); MCollective uses
its ``psk`` provider as the anchor configures it. Each side uses its own production broker.

Salt goes beside them: a salt-master and N salt-minions (``node001``…, grain ``role`` as above)
started by the Salt anchor's ``run.sh`` (``KEEP=1``; it installs salt into its own venv when
missing), asked the nearest question each pair has (``salt '*' test.ping``, ``-G role:web``,
``-L`` the list, ``grains.item role``; ``find`` has none) and timed in the same rounds.

Environment (besides bench_support's ``ORCH_BENCH_*``): ``ORCH_BENCH_MCO_ANCHOR`` the anchor
directory (default: found next to the repository as ``shared/anchors/mcollective``),
``ORCH_BENCH_SALT_ANCHOR`` (default: ``salt`` beside it), ``ORCH_BENCH_SALT=0`` leaves Salt
out, ``ORCH_BENCH_SALT_NODES`` its minion count (default N; about 115 MB each),
``ORCH_BENCH_SALT_VENV`` its venv (default ``/tmp/saltenv``),
``ORCH_BENCH_SIDEBYSIDE_IDLE_WAIT`` the longest wait in seconds, before each command, for the
machine to be quiet (default 5; 0 turns the gate off).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import bench_support
from bench_support import (
    Daemons,
    IdleGate,
    delete_exchanges,
    new_collective,
    orch_executable,
    start_daemons,
    start_session,
    stop_daemons,
    stop_session,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PING_LINE = re.compile(r"^(\S+)\s+time=[\d.]+ ms$", re.MULTILINE)
FINISHED = re.compile(r"^Finished processing (\d+) / (\d+) hosts", re.MULTILINE)
NODE_LINE = re.compile(r"^node\d+$", re.MULTILINE)
FACT_COUNT = re.compile(r"^\s*(\S+)\s+found (\d+) times$", re.MULTILINE)
SALT_LINE = re.compile(r"^node\d+: .*$", re.MULTILINE)
SALT_READY = re.compile(r"all \d+ minions answer test\.ping, (\d+) ms after first launch")
SALT_VERSION = re.compile(r"=== SaltStack anchor: salt (\S+)")
READY = re.compile(r"(\d+)/(\d+) nodes answer ping, ([\d.]+)s after first spawn")
COMMAND_TIMEOUT = 60.0
ANCHOR_TIMEOUT = 900.0
STOP_TIMEOUT = 20.0


def find_anchor() -> Path:
    """The MCollective anchor directory: ``$ORCH_BENCH_MCO_ANCHOR``, else the first
    ``shared/anchors/mcollective`` beside the repository or one of its parents."""
    configured = os.environ.get("ORCH_BENCH_MCO_ANCHOR")
    if configured:
        return Path(configured)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "anchors" / "mcollective"
        if (candidate / "run.sh").is_file():
            return candidate
    raise FileNotFoundError("MCollective anchor not found; set ORCH_BENCH_MCO_ANCHOR")


# ----------------------------------------------------------------------------- counting


def ping_count(out: str) -> int:
    return len(set(PING_LINE.findall(out)))


def finished_count(out: str) -> int:
    """Replies of an rpc: ``Finished processing R / D hosts`` must say R == D."""
    match = FINISHED.search(out)
    if match is None or match.group(1) != match.group(2):
        return -1
    return int(match.group(1))


def find_count(out: str) -> int:
    return len(set(NODE_LINE.findall(out)))


def facts_count(out: str) -> int:
    """Nodes counted by ``facts role``: must be ``web`` and ``db`` only."""
    counts = {value: int(n) for value, n in FACT_COUNT.findall(out)}
    return sum(counts.values()) if set(counts) == {"web", "db"} else -1


def exit_ok(out: str) -> int:
    return 0


def silent(expected: int) -> Callable[[str], int]:
    """A counter for a command that prints nothing when it works (``bench/floor.py``): the
    expected count when silent, -1 with any output (a traceback)."""
    return lambda out: -1 if out.strip() else expected


def salt_count(out: str) -> int:
    """Minions that returned (``--out=txt`` lines ``nodeNNN: …``), not the timed-out ones."""
    return len({line.split(":", 1)[0] for line in SALT_LINE.findall(out)
                if "did not return" not in line})


@dataclass
class Pair:
    """One comparison: the same question asked of every fleet (Salt only where it has one)."""

    name: str
    orch: list[str]
    mco: list[str]
    expected: int
    orch_count: Callable[[str], int]
    mco_count: Callable[[str], int]
    #: The ratio mco/orch this project aims for, if any.
    target: float | None = None
    #: Salt's nearest command (``salt`` arguments after ``-c DIR``) and its counter, if any.
    salt: list[str] | None = None
    salt_count: Callable[[str], int] | None = None
    #: A whole command line run on orch's side instead of ``orch`` + :attr:`orch`.
    orch_argv: list[str] | None = None
    #: orch's side runs by default, in the session an earlier command started (docs/cli.md).
    session: bool = False
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def record(self, side: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(side, []).append(wall)
        self.cpu.setdefault(side, []).append(cpu)

    def summary(self) -> dict[str, object]:
        figures: dict[str, object] = {
            "pair": self.name, "orch": " ".join(self.orch_argv or ["orch", *self.orch]),
            "orch_session": self.session,
            "mco": " ".join(self.mco),
            "salt": None if self.salt is None else "salt " + " ".join(self.salt),
            "replies": self.expected, "rounds": len(self.wall["orch"]),
        }
        for side, walls in self.wall.items():
            figures[f"{side}_median_s"] = round(statistics.median(walls), 3)
            figures[f"{side}_min_s"] = round(min(walls), 3)
            figures[f"{side}_cpu_median_s"] = round(statistics.median(self.cpu[side]), 3)
        orch = statistics.median(self.wall["orch"])
        for side in ("mco", "salt"):
            if side in self.wall:
                figures[f"ratio_{side}_over_orch"] = round(
                    statistics.median(self.wall[side]) / orch, 2)
        figures["target_ratio"] = self.target
        figures["target_met"] = (None if self.target is None
                                 else statistics.median(self.wall["mco"]) / orch >= self.target)
        return figures


def pairs(n: int, orch_nodes: Path, mco_nodes: Path, salt_ids: Sequence[str]) -> list[Pair]:
    half = n // 2
    rpc = ["rpc", "rpcutil", "ping"]
    every = ["--out=txt", "*", "test.ping"]
    listed = ["--out=txt", "-L", ",".join(salt_ids), "test.ping"]
    return [
        Pair("ping", ["ping"], ["ping"], n, ping_count, ping_count, 10.0, every, salt_count),
        Pair("rpc rpcutil ping", rpc, [*rpc, "--np"], n, finished_count, finished_count,
             None, every, salt_count),
        Pair("rpc -F role=web", [*rpc, "-F", "role=web"], [*rpc, "--np", "-F", "role=web"],
             n - half, finished_count, finished_count, 6.0,
             ["--out=txt", "-G", "role:web", "test.ping"], salt_count),
        Pair("rpc --nodes FILE, ORCH_SESSION=off", [*rpc, "--nodes", str(orch_nodes)],
             [*rpc, "--np", "--nodes", str(mco_nodes)], n, finished_count, finished_count,
             2.0, listed, salt_count),
        Pair("ping --nodes FILE, ORCH_SESSION=off (mco: rpc --nodes)",
             ["ping", "--nodes", str(orch_nodes)],
             [*rpc, "--np", "--nodes", str(mco_nodes)], n, ping_count, finished_count, 2.0,
             listed, salt_count),
        Pair("rpc --nodes FILE, by default (a session runs)",
             [*rpc, "--nodes", str(orch_nodes)],
             [*rpc, "--np", "--nodes", str(mco_nodes)], n, finished_count, finished_count,
             2.0, session=True),
        Pair("ping --nodes FILE, by default (a session runs; mco: rpc --nodes)",
             ["ping", "--nodes", str(orch_nodes)], [*rpc, "--np", "--nodes", str(mco_nodes)],
             n, ping_count, finished_count, 2.0, session=True),
        Pair("floor: orch's libraries alone (bench/floor.py) / mco rpc --nodes", [],
             [*rpc, "--np", "--nodes", str(mco_nodes)], n, silent(n), finished_count,
             orch_argv=[sys.executable, str(Path(__file__).with_name("floor.py"))]),
        Pair("find", ["find"], ["find"], n, find_count, find_count),
        Pair("facts role", ["facts", "role"], ["facts", "role"], n, facts_count, facts_count,
             None, ["--out=txt", "*", "grains.item", "role"], salt_count),
        Pair("start-up (orch --version, mco help, salt --version)", ["--version"], ["help"], 0,
             exit_ok, exit_ok, None, ["--version"], exit_ok),
    ]


# ----------------------------------------------------------------------------- running


def timed(argv: Sequence[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a whole command: wall seconds, CPU seconds (user + system), stdout + stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(list(argv), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=COMMAND_TIMEOUT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = ANSI.sub("", done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{out[-2000:]}")
    return wall, cpu, out


@dataclass
class McoFleet:
    """ActiveMQ and ``mcollectived`` daemons started by the anchor's ``run.sh``."""

    workdir: Path
    anchor: Path
    ready_s: float = 0.0
    answering: int = 0
    pids: list[tuple[str, int]] = field(default_factory=list)

    @property
    def client_cfg(self) -> Path:
        return self.workdir / "client.cfg"

    @property
    def nodes_file(self) -> Path:
        return self.workdir / "nodes.txt"

    def start(self, n: int) -> None:
        env = {**os.environ, "KEEP_RUNNING": "1", "REPEATS": "0", "WORK": str(self.workdir)}
        if shutil.which("mco") and shutil.which("mcollectived") and Path(
                "/etc/init.d/activemq").exists():
            env["SKIP_INSTALL"] = "1"
        log = self.workdir.parent / "mco-anchor.log"
        try:
            with log.open("w") as out:
                subprocess.run(["bash", str(self.anchor / "run.sh"), str(n)], env=env,
                               stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                               timeout=ANCHOR_TIMEOUT, check=True)
        finally:
            self._read_pids()
        text = log.read_text()
        ready = READY.search(text)
        if ready is None:
            raise RuntimeError(f"MCollective did not come up; see {log}")
        self.answering, self.ready_s = int(ready.group(1)), float(ready.group(3))
        if self.answering != n:
            raise RuntimeError(f"only {self.answering} of {n} mcollectived answer; see {log}")

    def _read_pids(self) -> None:
        path = self.workdir / "pids.txt"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) == 2 and words[1].isdigit():
                self.pids.append((words[0], int(words[1])))

    def command(self, args: Sequence[str]) -> list[str]:
        return ["mco", *args, "--config", str(self.client_cfg)]

    def stop(self) -> None:
        """Daemons first, then the broker (only if run.sh started it): TERM, then KILL."""
        daemons = [pid for name, pid in self.pids if name != "activemq"]
        broker = [pid for name, pid in self.pids if name == "activemq"]
        _stop_pids(daemons, "mcollectived")
        _stop_pids(broker, "activemq")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _stop_pids(pids: Sequence[int], word: str) -> None:
    """Stop processes by PID, only while their command line still contains ``word``."""
    alive = [pid for pid in pids if word in _cmdline(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if word in _cmdline(pid) and not _zombie(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


@dataclass
class SaltFleet:
    """A salt-master and N salt-minions started by the Salt anchor's ``run.sh`` (``KEEP=1``).

    The anchor's own measurements are cut to one run each (``RUNS=1``, no burst, no stall
    test): this benchmark times Salt's commands itself, interleaved with the others. run.sh
    starts in a session of its own, so stopping that process group stops every master,
    minion and forked child it left running.
    """

    workdir: Path
    anchor: Path
    ready_s: float = 0.0
    version: str = ""
    session: int | None = None

    @property
    def venv(self) -> Path:
        return Path(os.environ.get("ORCH_BENCH_SALT_VENV", "/tmp/saltenv"))

    def start(self, n: int) -> None:
        env = {**os.environ, "KEEP": "1", "RUNS": "1", "ASYNC_JOBS": "1", "STALL_TEST": "0",
               "SETTLE": "0", "WAIT_QUIET": "0", "LAB": str(self.workdir),
               "VENV": str(self.venv)}
        log = self.workdir.parent / "salt-anchor.log"
        with log.open("w") as out:
            process = subprocess.Popen(["bash", str(self.anchor / "run.sh"), str(n)], env=env,
                                       stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            self.session = process.pid
            try:
                process.wait(timeout=ANCHOR_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"the Salt anchor did not finish; see {log}") from None
        text = log.read_text()
        ready = SALT_READY.search(text)
        if process.returncode != 0 or ready is None:
            raise RuntimeError(f"Salt did not come up (run.sh exit {process.returncode}); "
                               f"see {log}")
        self.ready_s = int(ready.group(1)) / 1000
        version = SALT_VERSION.search(text)
        self.version = version.group(1) if version else "?"

    def command(self, args: Sequence[str]) -> list[str]:
        return [str(self.venv / "bin" / "salt"), "-c", str(self.workdir / "master" / "etc"),
                *args]

    def stop(self) -> None:
        """TERM the anchor's whole session, then KILL what is left of it."""
        if self.session is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.session, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline and _session_alive(self.session):
                time.sleep(0.2)


def _session_alive(session: int) -> bool:
    """Whether any live (non-zombie) process is still in ``session``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[3]) == session:
            return True
    return False


def find_salt_anchor() -> Path | None:
    """The Salt anchor directory (``$ORCH_BENCH_SALT_ANCHOR`` or beside the MCollective one),
    or None when Salt is switched off with ``ORCH_BENCH_SALT=0``."""
    if os.environ.get("ORCH_BENCH_SALT", "1") == "0":
        return None
    configured = os.environ.get("ORCH_BENCH_SALT_ANCHOR")
    anchor = Path(configured) if configured else find_anchor().parent / "salt"
    if not (anchor / "run.sh").is_file():
        raise FileNotFoundError(f"Salt anchor not found at {anchor}; set "
                                "ORCH_BENCH_SALT_ANCHOR, or ORCH_BENCH_SALT=0 to leave Salt out")
    return anchor


def mco_facts(index: int) -> list[str]:
    """The anchor's fact file for node ``index``, for ``orch server`` too."""
    return [f"role: {'web' if index % 2 else 'db'}", "os: debian", f"index: {index}"]


@contextmanager
def fleets(n: int, workdir: Path, security: str,
           salt_n: int) -> Iterator[tuple[Daemons, McoFleet, SaltFleet | None, float]]:
    """Every fleet, started one after the other, stopped whatever happens."""
    mco = McoFleet(workdir / "mco", find_anchor())
    mco.workdir.mkdir(parents=True)
    salt_anchor = find_salt_anchor() if salt_n else None
    salt = SaltFleet(workdir / "salt", salt_anchor) if salt_anchor else None
    orch: Daemons | None = None
    # SIGTERM (a timeout, a CI cancel) must still stop everything: make it an exception.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        print(f"starting ActiveMQ and {n} mcollectived (anchor {mco.anchor}) ...", flush=True)
        mco.start(n)
        print(f"  all {n} answer mco ping {mco.ready_s:.1f}s after the first spawn "
              "(run.sh starts them one by one)", flush=True)
        if salt is not None:
            print(f"starting a salt-master and {salt_n} salt-minions (anchor {salt.anchor}; "
                  "installs salt into its venv when missing) ...", flush=True)
            salt.start(salt_n)
            print(f"  all {salt_n} answer test.ping {salt.ready_s:.1f}s after the first "
                  f"launch (salt {salt.version})", flush=True)
        print(f"starting {n} orch server ({security}) ...", flush=True)
        started = time.monotonic()
        orch = start_daemons(workdir / "orch", new_collective(), n, width=3,
                             fact_lines=mco_facts, security=security)
        orch_ready = time.monotonic() - started
        print(f"  all {n} answer orch ping {orch_ready:.1f}s after the first spawn "
              "(started in parallel)", flush=True)
        yield orch, mco, salt, orch_ready
    finally:
        if orch is not None:
            stop_daemons(orch.processes)
            delete_exchanges(orch.collective, orch.broker)
        mco.stop()
        if salt is not None:
            salt.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(n: int = 50, rounds: int = 9, idle_wait: float | None = None,
        security: str | None = None, salt_n: int | None = None) -> dict[str, object]:
    """Start the fleets, measure every pair ``rounds`` times, stop everything.

    Salt runs with ``salt_n`` minions (``$ORCH_BENCH_SALT_NODES``, default ``n``; each costs
    about 115 MB): its reply counts are checked against ``salt_n``, or half of it for the
    grain-filtered ping, and its ratios are only comparable when ``salt_n == n``.
    """
    security = security or os.environ.get("ORCH_BENCH_SECURITY", "x509")
    if idle_wait is None:
        idle_wait = float(os.environ.get("ORCH_BENCH_SIDEBYSIDE_IDLE_WAIT", "5"))
    if salt_n is None:
        salt_n = int(os.environ.get("ORCH_BENCH_SALT_NODES", str(n)))
    exe = orch_executable()
    gate = IdleGate(idle_wait)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="orch-sidebyside-") as tmp, \
            fleets(n, Path(tmp), security, salt_n) as (orch, mco, salt, orch_ready):
        orch_env = orch.env
        session_env = start_session(exe, orch_env, Path(tmp) / "session")
        try:
            mco_env = {k: v for k, v in bench_support.base_env().items()}
            salt_ids = [f"node{i:03d}" for i in range(1, salt_n + 1)]
            todo = pairs(n, orch.nodes_file, mco.nodes_file, salt_ids)

            def sides(pair: Pair) -> list[tuple[str, list[str], dict[str, str],
                                                Callable[[str], int], int]]:
                orch_argv = pair.orch_argv or [exe, *pair.orch]
                found = [("orch", orch_argv, session_env if pair.session else orch_env,
                          pair.orch_count, pair.expected),
                         ("mco", mco.command(pair.mco), mco_env, pair.mco_count, pair.expected)]
                if salt is not None and pair.salt is not None and pair.salt_count is not None:
                    expected = pair.expected and (salt_n - salt_n // 2 if "-G" in pair.salt
                                                  else salt_n)
                    found.append(("salt", salt.command(pair.salt), mco_env, pair.salt_count,
                                  expected))
                return found

            for pair in todo:  # one unmeasured warm-up of each command (page cache, broker)
                for _side, argv, env, _count, _expected in sides(pair):
                    timed(argv, env)
            for index in range(rounds):
                for pair in todo:
                    order = sides(pair)
                    shift = index % len(order)  # which side goes first rotates by round
                    for side, argv, env, count, expected in order[shift:] + order[:shift]:
                        gate()
                        wall, cpu, out = timed(argv, env)
                        got = count(out)
                        if got != expected:
                            raise AssertionError(f"{side}: {' '.join(argv)}: {got} replies, "
                                                 f"expected {expected}:\n{out[-2000:]}")
                        pair.record(side, wall, cpu)
                print(f"round {index + 1}/{rounds} done", flush=True)
        finally:
            served = stop_session(exe, session_env)
        expected_served = (rounds + 1) * sum(pair.session for pair in todo)
        if served != expected_served:  # else a "session" figure timed commands run cold
            raise AssertionError(f"the orch session served {served} commands, "
                                 f"expected {expected_served}")
        return {
            "nodes": n, "rounds": rounds, "orch_security": security,
            "mco_security": "psk", "bytecode_cached": bench_support.bytecode_cached(),
            "salt_nodes": salt_n if salt is not None else 0,
            "salt_version": salt.version if salt is not None else None,
            "orch_fleet_ready_s": round(orch_ready, 1),
            "mco_fleet_ready_s": mco.ready_s,
            "salt_fleet_ready_s": salt.ready_s if salt is not None else None,
            "idle_gate_wait_s": round(gate.waited, 1), "idle_gate_timeouts": gate.timeouts,
            "loadavg_1m_before": round(load_before, 2),
            "loadavg_1m_after": round(os.getloadavg()[0], 2),
            "pairs": [pair.summary() for pair in todo],
        }


def table(results: dict[str, object]) -> str:
    """The figures as a Markdown table, for the terminal and bench/README.md."""
    salt = bool(results.get("salt_nodes"))
    lines = [
        f"{results['nodes']} nodes each side, median [min] of {results['rounds']} interleaved "
        f"rounds, whole commands, seconds. orch {results['orch_security']} on RabbitMQ, "
        f"MCollective 2.12 {results['mco_security']} on ActiveMQ"
        + (f", Salt {results['salt_version']} with {results['salt_nodes']} minions on ZeroMQ"
           if salt else ", Salt left out") +
        f". Bytecode cached: {results['bytecode_cached']}. Load average "
        f"{results['loadavg_1m_before']} -> {results['loadavg_1m_after']}; idle gate waited "
        f"{results['idle_gate_wait_s']} s, timed out {results['idle_gate_timeouts']} times.",
        "",
        "| pair | replies | orch | mco | mco / orch | target | orch CPU | mco CPU |"
        + (" salt | salt / orch |" if salt else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|---|" if salt else ""),
    ]
    for p in results["pairs"]:  # type: ignore[attr-defined]
        target = "" if p["target_ratio"] is None else (
            f"≥ {p['target_ratio']:g}x {'met' if p['target_met'] else '**missed**'}")
        line = (
            f"| {p['pair']} | {p['replies']} | {p['orch_median_s']:.3f} [{p['orch_min_s']:.3f}]"
            f" | {p['mco_median_s']:.3f} [{p['mco_min_s']:.3f}] | {p['ratio_mco_over_orch']:.2f}"
            f" | {target} | {p['orch_cpu_median_s']:.3f} | {p['mco_cpu_median_s']:.3f} |")
        if salt:
            line += (f" {p['salt_median_s']:.3f} [{p['salt_min_s']:.3f}] |"
                     f" {p['ratio_salt_over_orch']:.2f} |" if "salt_median_s" in p
                     else " (no equivalent) | |")
        lines.append(line)
    lines.append("")
    lines.append(f"Fleet start-up until every node answers: orch {results['orch_fleet_ready_s']}"
                 f" s (in parallel), MCollective {results['mco_fleet_ready_s']} s (run.sh "
                 "starts them one by one)"
                 + (f", Salt {results['salt_fleet_ready_s']} s (run.sh, 0.3 s apart)."
                    if salt else "."))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = run(args.nodes, args.rounds)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
