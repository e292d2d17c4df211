"""``orch server`` without click: the daemon's start-up, shared by the click command.

Why: click and what it imports are about 1 MB of an idle daemon's memory (issue 13), for
parsing a dozen ``--name value`` options once. :func:`run_plain` handles exactly the plain
case — ``orch server`` with known options, each given a value that click would accept, the
built-in ``server`` command not overridden by a plugin — and returns without doing anything
otherwise, so the caller hands the arguments to the click command (:mod:`orch.cli.server`):
help, unknown options, bad values and every start-up error are printed by click, word for
word as before. A start-up error found here is not printed here: click's run meets it again
(the settings, the daemon and the pid file are checked the same way) and reports it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from orch.core.errors import OrchError

if TYPE_CHECKING:
    from orch.core.daemon import Server
    from orch.core.pidfile import PidFile
    from orch.core.plugins import PluginRegistry

#: ``--option`` → parameter name, as declared by the click command in :mod:`orch.cli.server`
#: (a unit test keeps the two lists equal).
OPTIONS: Mapping[str, str] = {
    "--config": "config_file", "--identity": "identity", "--broker": "broker",
    "--collective": "collective", "--facts": "facts", "--classes": "classes",
    "--agents": "agents", "--workers": "workers", "--security": "security",
    "--tls-cert": "tls_cert", "--tls-key": "tls_key", "--tls-ca": "tls_ca",
    "--tls-crl": "tls_crl", "--ssldir": "ssldir", "--policy-dir": "policy_dir",
    "--audit-log": "audit_log", "--log-level": "log_level", "--pidfile": "pidfile",
}
LOG_LEVELS = ("debug", "info", "warning", "error")
#: What click's ``int`` accepts for ``--workers`` that is certainly plain (else click decides).
_PLAIN_INT = re.compile(r"[0-9]+")
#: The entry point that provides the built-in ``server`` command.
BUILTIN_PROVIDER = "runners"


def parse_plain(args: Sequence[str]) -> dict[str, str | int | None] | None:
    """The options of a plain ``orch server`` command line, or None for click to parse.

    Takes ``--name value`` and ``--name=value`` of known options (the last one wins, as in
    click); a value that starts with ``-``, a positional argument, ``--``, ``-h``/``--help``
    or an invalid ``--log-level``/``--workers`` makes it None.
    """
    values: dict[str, str | int | None] = dict.fromkeys(OPTIONS.values())
    index = 0
    while index < len(args):
        arg = args[index]
        name, eq, value = arg.partition("=")
        if name not in OPTIONS:
            return None
        if not eq:
            index += 1
            if index >= len(args) or args[index].startswith("-"):
                return None
            value = args[index]
        index += 1
        key = OPTIONS[name]
        if key == "log_level" and value not in LOG_LEVELS:
            return None
        if key == "workers":
            if not _PLAIN_INT.fullmatch(value):
                return None
            values[key] = int(value)
        else:
            values[key] = value
    # The root group's --log-level comes from ORCH_LOG_LEVEL: click rejects a bad one.
    root_level = os.environ.get("ORCH_LOG_LEVEL")
    if root_level and root_level not in LOG_LEVELS:
        return None
    if values["config_file"] is None:
        values["config_file"] = os.environ.get("ORCH_CONFIG") or None  # click's envvar
    return values


def builtin_server(registry: PluginRegistry) -> bool:
    """Whether ``orch server`` is certainly the built-in command (by the plugin index)."""
    return registry.index_providers("orch_cli_commands", "server") == [BUILTIN_PROVIDER]


def start(registry: PluginRegistry, config_file: str | None, log_level: str | None,
          pidfile: str | None, flags: Mapping[str, object]) -> tuple[Server, PidFile | None]:
    """Load settings, build the daemon and take the pid file; an :class:`OrchError` if not."""
    from orch.cli.main import configure_logging
    from orch.core.config import Settings, load_settings
    from orch.core.daemon import Server
    from orch.core.pidfile import PidFile

    def reload_settings() -> Settings:
        return load_settings(config_file, {**flags, "log_level": log_level},
                             registry=registry)

    settings = reload_settings()
    configure_logging(settings.log_level)
    daemon = Server(settings, registry, reload_settings)
    pid_file = PidFile(pidfile).__enter__() if pidfile is not None else None
    return daemon, pid_file


def serve(daemon: Server, pid_file: PidFile | None) -> None:
    """Run the daemon until it stops, then release the pid file."""
    try:
        clean = daemon.run()
    finally:
        if pid_file is not None:
            pid_file.__exit__(None, None, None)
    if not clean:
        # Actions abandoned at shutdown_timeout hold threads Python cannot stop, and the
        # interpreter would wait for them at exit: their callers were already answered.
        logging.shutdown()
        os._exit(0)


def run_plain(args: Sequence[str]) -> None:
    """Run ``orch server ARGS`` and exit, or return when click must handle ``args``."""
    from orch.core.plugins import default_registry

    values = parse_plain(args)
    if values is None:
        return
    registry = default_registry(lean=True)  # a daemon keeps only the plugins it uses
    if not builtin_server(registry):
        return
    config_file = values.pop("config_file")
    log_level = values.pop("log_level")
    pidfile = values.pop("pidfile")
    try:
        daemon, pid_file = start(registry, config_file if isinstance(config_file, str) else None,
                                 log_level if isinstance(log_level, str) else None,
                                 pidfile if isinstance(pidfile, str) else None, values)
    except OrchError:
        return  # click's run reports it, in click's words
    serve(daemon, pid_file)
    sys.exit(0)  # as click's standalone mode ends a command that returned
