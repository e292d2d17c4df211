"""Two (or more) whole commands, interleaved round after round: median wall time and CPU.

    python bench/ab.py --rounds 15 "OLD/bin/orch ping --nodes F" "NEW/bin/orch ping --nodes F"

Why: on a shared 2-core machine the load drifts within minutes, so two versions timed one
after the other differ by more than the change being measured. Run back to back in every
round, both see the same drift. Each command's environment is this one (set ``ORCH_BROKER``,
``ORCH_COLLECTIVE`` and the ``ORCH_TLS_*`` of the fleet you measure against); a command that
exits non-zero stops the run with its stderr. CPU is the user + system time of the command's
process tree, from ``getrusage(RUSAGE_CHILDREN)``.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import statistics
import subprocess
import sys
import time

COMMAND_TIMEOUT = 120.0


def run_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of ``argv``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT,
                          stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{shlex.join(argv)} exited {proc.returncode}:\n"
                 f"{proc.stderr.decode(errors='replace')[-2000:]}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("commands", nargs="+", help="each a whole command line, quoted")
    args = parser.parse_args()
    commands = [shlex.split(command) for command in args.commands]
    walls: list[list[float]] = [[] for _ in commands]
    cpus: list[list[float]] = [[] for _ in commands]
    for argv in commands:
        run_once(argv)  # warm-up: bytecode, caches, the plugin index
    for _ in range(args.rounds):
        for index, argv in enumerate(commands):
            wall, cpu = run_once(argv)
            walls[index].append(wall)
            cpus[index].append(cpu)
    for index, argv in enumerate(commands):
        print(f"median {statistics.median(walls[index]) * 1000:7.1f} ms  "
              f"min {min(walls[index]) * 1000:7.1f} ms  "
              f"CPU {statistics.median(cpus[index]) * 1000:7.1f} ms  {shlex.join(argv)}")


if __name__ == "__main__":
    main()
