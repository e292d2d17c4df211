"""Stopping a child process together with everything it started.

Shared by every plugin that runs commands (the external agents, orch-puppet's background
runs): a child started with ``start_new_session=True`` leads its own process group, and
stopping it means signalling the whole group — SIGTERM first, SIGKILL after a grace period —
so that a shell wrapper's children do not outlive it. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess

log = logging.getLogger(__name__)


def signal_group(pid: int, signum: signal.Signals) -> None:
    """Send ``signum`` to the process group led by ``pid``; a group already gone, or not
    ours to signal, is not an error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def terminate_group(proc: subprocess.Popen[bytes], grace: float) -> int | None:
    """Stop ``proc``'s process group: SIGTERM, up to ``grace`` seconds for it to exit, then
    SIGKILL and up to ``grace`` seconds more. Returns the exit status, or None when the
    process could not be reaped (stuck in the kernel)."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    signal_group(proc.pid, signal.SIGKILL)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log.error("process %d did not die after SIGKILL", proc.pid)
        return None
