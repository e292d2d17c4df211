"""The ``orch`` entry point: ``orch server`` straight to the daemon, every other command
through the click group in :mod:`orch.cli.group`.

Why two paths: an idle daemon is measured in megabytes (issue 13), and click with the
modules it pulls in is about 1 MB of it. The daemon's options are parsed here by
:mod:`orch.cli.serve` only when they are plain (known options with valid values, no help);
anything else — ``--help``, a typo, a bad value, a settings error — goes through the click
command, so help and error messages are exactly click's. ``cli`` and ``PluginGroup`` are
still importable from here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

EXIT_USAGE = 2


def configure_logging(level: str) -> None:
    """Key=value style log lines on stderr; library loggers name their context."""
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
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["server"]:
        from orch.cli import serve

        serve.run_plain(args[1:])  # returns only when click must handle these arguments
    from orch.cli.group import cli

    return cli.main(args=argv, prog_name="orch")
