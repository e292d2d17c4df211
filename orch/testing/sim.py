"""``orch sim`` as a child process, for tests that need a fleet outside the test's process."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- orch sim


class SimProcess:
    """An ``orch sim`` subprocess, started and waited for by :meth:`start`.

    For tests and benchmarks that need thousands of nodes on a real broker: the nodes run
    in the simulation's worker processes, the test talks to them with any orch client
    using :attr:`client_config`. :meth:`stop` sends SIGTERM and reports what went wrong.
    """

    #: The line ``orch sim`` prints on stdout once every node consumes.
    READY = re.compile(r"^orch sim: (\d+) nodes ready in ([\d.]+)s \(worker pids ([\d ]+)\)$")

    def __init__(self, process: subprocess.Popen[str], state_dir: Path) -> None:
        self.process = process
        self.state_dir = state_dir
        self.client_config = state_dir / "client.yaml"
        self.worker_pids: list[int] = []
        self.start_seconds = 0.0
        self.output: list[str] = []

    @classmethod
    def start(cls, argv: Sequence[str], nodes: int, broker: str, state_dir: Path,
              *extra: str, env: Mapping[str, str] | None = None,
              timeout: float = 120.0) -> SimProcess:
        """Run ``argv sim --nodes N --broker URL --state-dir DIR EXTRA…``; return once the
        ready line appeared, or stop it and raise AssertionError with its output."""
        process = subprocess.Popen(
            [*argv, "sim", "--nodes", str(nodes), "--broker", broker,
             "--state-dir", str(state_dir), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=dict(env) if env is not None else None)
        sim = cls(process, state_dir)
        lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=read, name="orch-sim-output", daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                sim.stop()
                raise AssertionError(f"orch sim was not ready within {timeout:g}s:\n"
                                     + "\n".join(sim.output)) from None
            if line is None:
                process.wait(10)
                raise AssertionError(f"orch sim exited with {process.returncode} before "
                                     "it was ready:\n" + "\n".join(sim.output))
            sim.output.append(line)
            match = cls.READY.match(line)
            if match:
                sim.start_seconds = float(match.group(2))
                sim.worker_pids = [int(pid) for pid in match.group(3).split()]
                return sim

    def stop(self, timeout: float = 30.0) -> list[str]:
        """SIGTERM, wait; return problems (a non-zero exit, a worker still alive). Idempotent."""
        problems: list[str] = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            problems.append(f"orch sim did not stop within {timeout:g}s after SIGTERM")
        if self.process.returncode not in (0, -signal.SIGKILL) and not problems:
            problems.append(f"orch sim exited with {self.process.returncode}")
        for pid in self.worker_pids:
            if _alive(pid):
                problems.append(f"worker {pid} still running after orch sim stopped")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return problems

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


