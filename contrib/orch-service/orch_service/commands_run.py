"""Running one service-manager command: orch's :func:`~orch.plugin.run_command` (argv only,
a deadline, bounded output, no pipe a started daemon could hold open) with the environment
systemctl and init scripts get: nothing from the daemon's own, no pager, no colours."""

from __future__ import annotations

from collections.abc import Sequence

from orch.plugin import CommandError, CommandResult
from orch.plugin import run_command as _run

__all__ = ["ENVIRONMENT", "CommandError", "CommandResult", "run_command"]

#: The environment commands run with: nothing from the daemon's own.
ENVIRONMENT = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C", "LC_ALL": "C", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}


def run_command(argv: Sequence[str], timeout: float) -> CommandResult:
    """Run ``argv`` with :data:`ENVIRONMENT`; stop its process group after ``timeout``."""
    return _run(argv, timeout, environment=ENVIRONMENT)
