"""External agents: an executable plus its JSON DDL in an agents directory, in any language.

orch speaks the Choria external-agent protocol (``io.choria.mcorpc.external.v1``) so agents
written for Choria run unchanged; ``docs/external-agents.md`` is the author's guide. In short:

* **Layout** (in every directory of the ``agents_dir`` setting): ``<name>.json`` beside an
  executable ``<name>``; or both inside a directory ``<name>/``; or, for compiled agents,
  ``<name>.json`` beside a directory ``<name>/`` holding ``<name>-<goos>_<goarch>`` binaries.
* **Invocation**: ``<executable> <request file> <reply file> <protocol>`` with
  ``CHORIA_EXTERNAL_REQUEST``, ``CHORIA_EXTERNAL_REPLY``, ``CHORIA_EXTERNAL_PROTOCOL``,
  ``CHORIA_EXTERNAL_CONFIG`` and ``CHORIA_EXTERNAL_FACTS`` set. The agent reads the request
  JSON and writes ``{"statuscode": 0, "statusmsg": "OK", "data": {...}}`` to the reply file.
* **Activation**: when the agents are scanned, each is run once with the
  ``activation_request`` protocol and must answer ``{"activate": true}`` within 2 s.

Why child processes: Python threads cannot be killed, so an agent that hangs would hold a
worker forever (see :mod:`orch.core.runner`). A child in its own process group can be:
at the DDL timeout the whole group gets SIGTERM, then SIGKILL, and the caller an ``aborted``
reply. Output is capped, stderr goes to the daemon log, and every failure mode (crash,
non-zero exit, missing or unparsable reply) becomes an ``aborted`` reply saying what
happened, never an exception.

The package follows the seams: :mod:`.settings` (the section and the protocol's names),
:mod:`.scanning` (finding and activation-checking agents), :mod:`.agent` (the agent class),
:mod:`.call` (one call under the protocol), :mod:`.process` (supervising the child),
:mod:`.reply` (mapping the outcome onto orch's reply) and :mod:`.cache` (reusing scans).

Limits can be tuned in the ``plugins.external`` settings section: ``max_reply_bytes``
(default 1 MiB), ``max_log_bytes`` (64 KiB of stdout and of stderr logged per call),
``activation_timeout`` (2 s) and ``kill_grace`` (1 s between SIGTERM and SIGKILL).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orch.agents.external.settings import (
    ACTIVATION_TIMEOUT,
    ENV_CONFIG,
    ENV_FACTS,
    ENV_PROTOCOL,
    ENV_REPLY,
    ENV_REQUEST,
    KILL_GRACE,
    MAX_LOG_BYTES,
    MAX_REPLY_BYTES,
    PLUGIN_NAME,
    PROTOCOL_ACTIVATION,
    PROTOCOL_RPC_REQUEST,
    RESERVED_NAMES,
    SCHEMA_ACTIVATION,
    SCHEMA_RPC_REQUEST,
    ExternalSettings,
    Limits,
)
from orch.core.config import Settings
from orch.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from orch.agents.external.agent import ExternalAgent
    from orch.agents.external.cache import cached_scan, rescan
    from orch.agents.external.scanning import Refusal, _go_platform, scan
    from orch.core.agent import Agent

__all__ = [
    "ACTIVATION_TIMEOUT", "ENV_CONFIG", "ENV_FACTS", "ENV_PROTOCOL", "ENV_REPLY", "ENV_REQUEST",
    "KILL_GRACE", "MAX_LOG_BYTES", "MAX_REPLY_BYTES", "PLUGIN_NAME", "PROTOCOL_ACTIVATION",
    "PROTOCOL_RPC_REQUEST", "RESERVED_NAMES", "SCHEMA_ACTIVATION", "SCHEMA_RPC_REQUEST",
    "ExternalAgent", "ExternalSettings", "Limits", "Refusal", "_go_platform", "cached_scan",
    "orch_agents", "orch_reload", "orch_settings", "rescan", "scan",
]

#: Where the names this package re-exports live. They are imported on first use: every
#: ``orch rpc`` asks this plugin for agents, and with no ``agents_dir`` (the default) the
#: scanning, calling and supervising code is never needed (about 15 ms of imports).
_LAZY = {
    "ExternalAgent": "orch.agents.external.agent",
    "cached_scan": "orch.agents.external.cache",
    "rescan": "orch.agents.external.cache",
    "Refusal": "orch.agents.external.scanning",
    "_go_platform": "orch.agents.external.scanning",
    "scan": "orch.agents.external.scanning",
}


def __getattr__(name: str) -> Any:
    """PEP 562: import a re-exported name's module when the name is first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``external`` section."""
    return {PLUGIN_NAME: ExternalSettings}


@hookimpl
def orch_agents(settings: Settings) -> Iterable[type[Agent]]:
    """The external agents found in ``settings.agents_dir``."""
    if not settings.section(PLUGIN_NAME, ExternalSettings).agents_dir:
        return []
    from orch.agents.external.cache import cached_scan

    return cached_scan(settings)


@hookimpl
def orch_reload(settings: Settings) -> None:
    """SIGHUP: forget the scans, so the daemon's next look re-reads the directories and
    re-runs the activation checks (a dependency may have been installed meanwhile)."""
    from orch.agents.external.cache import rescan

    rescan()
