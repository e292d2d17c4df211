"""Running one command for an agent: argv only (never a shell), a deadline, bounded output.

Why not ``subprocess.run(capture_output=True)``: a command that starts a daemon (an init
script, a package's maintainer script) hands the daemon its stdout, and a pipe would then
stay open until the daemon exits — the action would hang for as long as the daemon runs. The
output goes to an unnamed temporary file instead and the wait is for the command's own
process; after the deadline its whole process group is stopped (:func:`terminate_group`).
Shared by every plugin whose agent runs system commands (orch-service, orch-package).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orch.core.processes import terminate_group

__all__ = ["KILL_GRACE", "OUTPUT_LIMIT", "CommandError", "CommandResult", "run_command"]

log = logging.getLogger(__name__)

#: Bytes of a command's output kept for the reply (the tail: errors come last).
OUTPUT_LIMIT = 4096
#: Seconds a command gets between SIGTERM and SIGKILL after its deadline.
KILL_GRACE = 2.0


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its exit status and the tail of its output."""

    argv: tuple[str, ...]
    returncode: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class CommandError(Exception):
    """The command could not be started at all (missing, not executable)."""


def run_command(argv: Sequence[str], timeout: float, *, environment: Mapping[str, str],
                limit: int = OUTPUT_LIMIT) -> CommandResult:
    """Run ``argv`` with exactly ``environment`` (nothing of the daemon's own), from ``/``,
    stdin closed; stop its process group after ``timeout`` seconds. The last ``limit`` bytes
    of its output (stdout and stderr together) are kept."""
    with tempfile.TemporaryFile() as sink:
        try:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=sink,
                                       stderr=subprocess.STDOUT, env=dict(environment),
                                       close_fds=True, start_new_session=True, cwd="/")
        except OSError as exc:
            raise CommandError(f"cannot run {argv[0]}: {exc.strerror}") from None
        timed_out = False
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stopped = terminate_group(process, KILL_GRACE)
            returncode = -signal.SIGKILL if stopped is None else stopped
        sink.seek(0, os.SEEK_END)
        size = sink.tell()
        sink.seek(max(0, size - limit))
        output = sink.read(limit).decode("utf-8", "replace").strip()
    if timed_out:
        log.warning("%s did not finish within %gs; killed", " ".join(argv), timeout)
    return CommandResult(tuple(argv), returncode, output, timed_out)
