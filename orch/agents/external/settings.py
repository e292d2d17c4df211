"""The external-agent plugin's settings section and the protocol's names.

The ``plugins.external`` section (``agents_dir`` and the limits of every call) and the
constants of the Choria external-agent protocol, shared by scanning, calling and replying.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from orch.core import convert
from orch.core.config import Settings
from orch.core.sections import setting

#: One logger for the whole plugin, so the daemon log names it as before the split.
log = logging.getLogger("orch.agents.external")

PROTOCOL_RPC_REQUEST = "io.choria.mcorpc.external.v1.rpc_request"
SCHEMA_RPC_REQUEST = "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json"
PROTOCOL_ACTIVATION = "io.choria.mcorpc.external.v1.activation_request"
SCHEMA_ACTIVATION = "https://choria.io/schemas/mcorpc/external/v1/activation_request.json"

ENV_REQUEST = "CHORIA_EXTERNAL_REQUEST"
ENV_REPLY = "CHORIA_EXTERNAL_REPLY"
ENV_PROTOCOL = "CHORIA_EXTERNAL_PROTOCOL"
ENV_CONFIG = "CHORIA_EXTERNAL_CONFIG"
ENV_FACTS = "CHORIA_EXTERNAL_FACTS"

#: The name of this plugin's settings section (``plugins.external``).
PLUGIN_NAME = "external"
MAX_REPLY_BYTES = 1024 * 1024
MAX_LOG_BYTES = 64 * 1024
#: Choria gives activation checks 2 seconds; so do we.
ACTIVATION_TIMEOUT = 2.0
KILL_GRACE = 1.0
#: Names of built-in agents an external agent may not replace (Choria has the same rule).
RESERVED_NAMES = frozenset({"rpcutil"})
#: Files in an agents directory that are never agents (Ruby agents and their DDLs, docs).
_NOT_AGENTS = (".json", ".ddl", ".rb", ".erb", ".md", ".txt", ".policy", ".yaml", ".yml")




@dataclass(frozen=True)
class ExternalSettings:
    """``plugins: {external: {…}}``: where external agents are and the limits of their calls.
    ``agents_dir`` was one of orch's own settings before plugins declared theirs, so the old
    top-level name still works."""

    agents_dir: list[str] = setting(
        list, convert.string_list,
        "Directories of external agents: an executable plus its JSON DDL, in any language "
        "(see [external-agents.md](external-agents.md)).", aliases=("agents_dir",))
    max_reply_bytes: int = setting(
        MAX_REPLY_BYTES, convert.positive(int),
        "Largest reply file an external agent may write (bytes); a bigger one aborts the call.")
    max_log_bytes: int = setting(
        MAX_LOG_BYTES, convert.positive(int),
        "Output of an external agent logged per call, of stdout and of stderr each (bytes).")
    activation_timeout: float = setting(
        ACTIVATION_TIMEOUT, convert.positive(float),
        "Seconds an external agent's activation check may take when the agents are scanned.")
    kill_grace: float = setting(
        KILL_GRACE, convert.positive(float),
        "Seconds between SIGTERM and SIGKILL for an external agent past its deadline.")


@dataclass(frozen=True)
class Limits:
    """Resource limits of external agent calls, from the ``plugins.external`` section."""

    max_reply_bytes: int = MAX_REPLY_BYTES
    max_log_bytes: int = MAX_LOG_BYTES
    activation_timeout: float = ACTIVATION_TIMEOUT
    kill_grace: float = KILL_GRACE

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Limits:
        """The limits of the (checked) ``external`` section."""
        if settings is None:
            return cls()
        section = settings.section(PLUGIN_NAME, ExternalSettings)
        return cls(section.max_reply_bytes, section.max_log_bytes, section.activation_timeout,
                   section.kill_grace)
