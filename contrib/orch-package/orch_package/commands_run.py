"""Running one package-manager command: argv only (never a shell), a deadline, bounded output.

Why not ``subprocess.run(capture_output=True)``: a package's maintainer script that starts
a daemon hands the daemon its stdout, and a pipe would then stay open until the daemon
exits — the action would hang for as long as the service runs. The output goes to an
unnamed temporary file instead and the wait is for the command's own process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: The environment commands run with: nothing from the daemon's own.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "APT_LISTCHANGES_FRONTEND": "none"}
#: Bytes of a command's output kept for the reply (the tail: errors come last).
OUTPUT_LIMIT = 4096
#: Bytes of a query's output read whole (a package inventory: ~30 bytes a package).
QUERY_LIMIT = 16 * 1024 * 1024
#: Seconds a command gets between SIGTERM and SIGKILL after its deadline.
KILL_GRACE = 2.0


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    output: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


class CommandError(Exception):
    """The command could not be started at all (missing, not executable)."""


def run_command(argv: Sequence[str], timeout: float, limit: int = OUTPUT_LIMIT) -> CommandResult:
    """Run ``argv`` with :data:`ENVIRONMENT`; kill its process group after ``timeout``.

    The last ``limit`` bytes of its output are kept."""
    with tempfile.TemporaryFile() as sink:
        try:
            process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=sink,
                                       stderr=subprocess.STDOUT, env=dict(ENVIRONMENT),
                                       close_fds=True, start_new_session=True, cwd="/")
        except OSError as exc:
            raise CommandError(f"cannot run {argv[0]}: {exc.strerror}") from None
        timed_out = False
        try:
            returncode = process.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = _kill(process)
        sink.seek(0, os.SEEK_END)
        size = sink.tell()
        sink.seek(max(0, size - limit))
        output = sink.read(limit).decode("utf-8", "replace").strip()
    if timed_out:
        log.warning("%s did not finish within %gs; killed", " ".join(argv), timeout)
    return CommandResult(tuple(argv), returncode, output, timed_out)


def _kill(process: subprocess.Popen[bytes]) -> int:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            return process.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
