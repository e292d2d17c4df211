"""Where a client's settings come from: the default config file search, and each setting's origin.

Operators expect ``mco``'s ``~/.mcollective`` and Choria's ``~/.choriarc``: a client works
without ``--config`` once a file sits in the usual place. The client searches, first found
wins: ``--config``, ``$ORCH_CONFIG``, ``~/.config/orch/client.yaml`` (``$XDG_CONFIG_HOME``
honoured), ``/etc/orch/client.yaml``. ``orch server`` does not search: a daemon reads only
the file it is told to.

:func:`explain_settings` answers "why is this setting that value?" for ``orch config show``
by replaying the layering of :func:`orch.core.config.load_settings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orch.core.config import ENV_PREFIX, Settings, load_settings, read_config_file

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry

SYSTEM_CLIENT_CONFIG = Path("/etc/orch/client.yaml")


def user_client_config(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "orch" / "client.yaml"


def find_client_config(explicit: str | None = None,
                       environ: Mapping[str, str] | None = None) -> tuple[str | None, str]:
    """The client config file to read and why: ``(path or None, origin)``."""
    env = os.environ if environ is None else environ
    if explicit:
        return explicit, "--config"
    if env.get(f"{ENV_PREFIX}CONFIG"):
        return env[f"{ENV_PREFIX}CONFIG"], f"${ENV_PREFIX}CONFIG"
    for candidate in (user_client_config(env), SYSTEM_CLIENT_CONFIG):
        if candidate.is_file():
            return str(candidate), "default search"
    return None, "none found (searched ~/.config/orch/client.yaml, /etc/orch/client.yaml)"


def load_client_settings(explicit: str | None = None,
                         overrides: Mapping[str, Any] | None = None,
                         environ: Mapping[str, str] | None = None,
                         registry: PluginRegistry | None = None) -> Settings:
    """:func:`load_settings` with the client's config file search."""
    path, _ = find_client_config(explicit, environ)
    return load_settings(path, overrides, environ, registry)


@dataclass(frozen=True)
class SettingOrigin:
    name: str
    value: Any
    #: ``default``, ``file PATH``, ``environment ORCH_X`` or ``command line``.
    origin: str


def explain_settings(explicit: str | None = None,
                     overrides: Mapping[str, Any] | None = None,
                     environ: Mapping[str, str] | None = None,
                     registry: PluginRegistry | None = None,
                     ) -> tuple[str | None, list[SettingOrigin]]:
    """The config file read, and every setting's effective value with where it came from."""
    env = os.environ if environ is None else environ
    path, _ = find_client_config(explicit, env)
    settings = load_settings(path, overrides, env, registry)
    from_file = set(read_config_file(path)) if path else set()
    flags = {k for k, v in (overrides or {}).items() if v is not None}
    rows = []
    for name in Settings.documented():
        variable = f"{ENV_PREFIX}{name.upper()}"
        origin = ("command line" if name in flags
                  else f"environment {variable}" if variable in env
                  else f"file {path}" if name in from_file
                  else "default")
        rows.append(SettingOrigin(name, getattr(settings, name), origin))
    return path, rows


_CREDENTIALS = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")


def redact(value: Any) -> Any:
    """``value`` with passwords in URLs hidden (``amqp://user:**@host``)."""
    if isinstance(value, str):
        return _CREDENTIALS.sub(r"\1**@", value)
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    return value
