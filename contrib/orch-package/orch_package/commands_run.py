"""Running one package-manager command: orch's :func:`~orch.plugin.run_command` (argv only,
a deadline, bounded output, no pipe a maintainer script's daemon could hold open) with the
environment apt and dpkg get: nothing from the daemon's own, never an interactive prompt."""

from __future__ import annotations

from collections.abc import Sequence

from orch.plugin import CommandError, CommandResult
from orch.plugin import run_command as _run

__all__ = ["ENVIRONMENT", "QUERY_LIMIT", "CommandError", "CommandResult", "run_command"]

#: The environment commands run with: nothing from the daemon's own.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C", "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive",
               "APT_LISTCHANGES_FRONTEND": "none"}
#: Bytes of a command's output kept for the reply (the tail: errors come last).
OUTPUT_LIMIT = 4096
#: Bytes of a query's output read whole (a package inventory: ~30 bytes a package).
QUERY_LIMIT = 16 * 1024 * 1024


def run_command(argv: Sequence[str], timeout: float, limit: int = OUTPUT_LIMIT) -> CommandResult:
    """Run ``argv`` with :data:`ENVIRONMENT`; stop its process group after ``timeout``; keep
    the last ``limit`` bytes of its output."""
    return _run(argv, timeout, environment=ENVIRONMENT, limit=limit)
