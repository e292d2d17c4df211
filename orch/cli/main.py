"""The ``orch`` entry point: ``orch server`` straight to the daemon, every other command
through the click group in :mod:`orch.cli.group`.

Why two paths: an idle daemon is measured in megabytes (issue 13), and click with the
modules it pulls in is about 1 MB of it. The daemon's options are parsed here by
:mod:`orch.cli.serve` only when they are plain (known options with valid values, no help);
anything else — ``--help``, a typo, a bad value, a settings error — goes through the click
command, so help and error messages are exactly click's. ``cli`` and ``PluginGroup`` are
still importable from here.

Before either, a command run from the console script is offered to the user's session
(:mod:`orch.resident`), which runs it in a child with everything already imported; without
a session that costs one ``lstat``, and by default starts one for the commands after it.
"""

from __future__ import annotations

import atexit
import gc
import sys

TYPE_CHECKING = False  # typing, like logging, is imported only where used: the first thing
if TYPE_CHECKING:      # every command does is offer itself to a session (orch.resident)
    from typing import Any

EXIT_USAGE = 2


def configure_logging(level: str) -> None:
    """Key=value style log lines on stderr; library loggers name their context."""
    import logging

    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    if level != "debug":
        logging.getLogger("kombu").setLevel(logging.ERROR)
        logging.getLogger("amqp").setLevel(logging.ERROR)


def __getattr__(name: str) -> Any:
    """``cli`` and ``PluginGroup`` live in :mod:`orch.cli.group` (imported on first use)."""
    if name in ("cli", "PluginGroup"):
        from orch.cli import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> Any:
    """The console script: the user's session runs the command when one takes it."""
    if argv is None and sys.argv[1:2] != ["server"]:  # a daemon imports none of it
        from orch.resident.client import delegate

        status = delegate(sys.argv[1:])
        if status is not None:
            sys.exit(status)
    atexit.register(_end_quickly)  # first registered, so the last handler to run
    return run(argv)


def _end_quickly() -> None:
    """Stop the collector's scans of the interpreter's own teardown.

    After the last exit handler, Python clears every module and collects garbage over
    each object a command imported and made: 19 ms of the 191 a 50-node ``orch rpc …
    --nodes FILE`` took on the two-core machine of issue 13 (median of 12). Frozen objects
    are not scanned; nothing is skipped but the scans (threads were joined and the other
    exit handlers ran before this, and unreachable cycles are not promised a finalizer at
    exit). A command run by a session never gets here: its child ends with ``os._exit``.
    """
    gc.disable()
    gc.freeze()


def run(argv: list[str] | None = None) -> Any:
    """Run ``orch ARGV`` in this process (a session's child runs commands through this)."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["server"]:
        from orch.cli import serve

        serve.run_plain(args[1:])  # returns only when click must handle these arguments
    from orch.cli.group import cli

    return cli.main(args=argv, prog_name="orch")
