"""Support code for the integration suite: the brokers it runs on, and its names for the
``orch server`` fleets and ``orch`` CLI runs of :mod:`orch.testing.servers`.

The fleets themselves (start real ``orch server`` processes, wait until they answer, stop
them with SIGTERM and check they obeyed) are public in :mod:`orch.testing.servers`, shared
with the contrib suites and third-party plugins; this module gives them the short names
the core tests were written with (``Fleet``, ``Daemon``, ``NodeSpec``, ``FleetFactory``,
``DEFAULT_NODES``) and adds what only this suite needs.

Imported by ``conftest.py`` and the test modules (pytest puts this directory on
``sys.path`` because it has no ``__init__.py``). Private brokers (RabbitMQ nodes and
clusters, TLS Redis, network namespaces) live in ``private_brokers.py``; the HTTP API,
the inventory registry and PostgreSQL in ``api_support.py``; what contrib suites share
with these (waiting, broker probes, purging) in :mod:`orch.testing`.
"""

from __future__ import annotations

import importlib.util

from orch.testing.servers import (
    CLI_TIMEOUT,
    CLIENT_CERTNAME,
    DISCOVERY_WINDOW,
    READY_TIMEOUT,
    SESSION_TOKEN,
    STOP_TIMEOUT,
    CliResult,
    clean_environment,
    client_security,
    client_security_settings,
    identity_args,
    new_collective,
    node_security_flags,
    orch_argv,
    read_line_until,
    run_orch,
    session_ca,
    stop_process,
    wait_answering,
)
from orch.testing.servers import SERVER_NODES as DEFAULT_NODES
from orch.testing.servers import ServerDaemon as Daemon
from orch.testing.servers import ServerFleet as Fleet
from orch.testing.servers import ServerFleetFactory as FleetFactory
from orch.testing.servers import ServerNode as NodeSpec

__all__ = [
    "BROKERS", "CLIENT_CERTNAME", "CLI_TIMEOUT", "DEFAULT_NODES", "DISCOVERY_WINDOW",
    "READY_TIMEOUT", "SESSION_TOKEN", "STOP_TIMEOUT", "CliResult", "Daemon", "Fleet",
    "FleetFactory", "NodeSpec", "clean_environment", "client_security",
    "client_security_settings", "identity_args", "new_collective", "node_security_flags",
    "orch_argv", "pip_build_options", "read_line_until", "run_orch", "session_ca",
    "stop_process", "wait_answering",
]

BROKERS: dict[str, str] = {
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
    "redis": "redis://127.0.0.1:6379/0",
}


def pip_build_options() -> list[str]:
    """``--no-build-isolation`` when setuptools here can build a wheel without downloads.

    Otherwise pip fetches setuptools and wheel for an isolated build from the configured
    package index, as a user's ``pip install .`` does.
    """
    try:
        import setuptools
    except ImportError:
        return []
    major, minor = (int(part) for part in setuptools.__version__.split(".")[:2])
    if (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None:
        return ["--no-build-isolation"]
    return []
