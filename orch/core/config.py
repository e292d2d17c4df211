"""Settings: defaults, then the YAML config file, then ``ORCH_*`` environment, then flags.

Every setting is declared once in :data:`SETTINGS` with its type, default and a one-line
description; ``docs/configuration.md`` documents the same table and a test keeps the two in
step. An unknown key or a bad value is a :class:`~orch.core.errors.ConfigError` naming the key
and where it came from.
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from orch.core.errors import ConfigError
from orch.core.protocol import valid_name

DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"
ENV_PREFIX = "ORCH_"


def _split_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("expected a list of strings or a comma-separated string")


def _name(value: Any) -> str:
    if not valid_name(value):
        raise ValueError("expected a name made of letters, digits, '.', '_' and '-'")
    return str(value)


def _positive(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a positive {kind.__name__}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a positive {kind.__name__}") from None
        if number <= 0:
            raise ValueError(f"expected a positive {kind.__name__}")
        return number

    return convert


def _non_negative(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, 0 or more")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds, 0 or more") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return number


def _optional_path(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("expected a file path")
    return value


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(value)

    return convert


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def _optional_list(value: Any) -> list[str] | None:
    return None if value in (None, "", "all") else _split_list(value)


def _plugin_sections(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("expected a JSON object of {plugin: {key: value}}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in value.items()
    ):
        raise ValueError("expected a mapping of plugin name to a mapping of its settings")
    return {k: dict(v) for k, v in value.items()}


def _setting(default: Any, convert: Callable[[Any], Any], doc: str) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"convert": convert, "doc": doc})
    return field(default=default, metadata={"convert": convert, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one orch process (server, client or demo)."""

    identity: str = _setting(
        lambda: socket.gethostname().split(".")[0] or "localhost", _name,
        "This node's name; requests addressed to it use this (default: the host name).")
    collective: str = _setting(
        "orch", _name, "The collective (group of nodes) to serve or to talk to.")
    broker: list[str] = _setting(
        lambda: [DEFAULT_BROKER], _split_list,
        "Broker URL(s); several are tried in turn when one fails (amqp://, redis://, memory://).")
    heartbeat: float = _setting(
        10.0, _non_negative,
        "Server: AMQP heartbeat (seconds) of the daemon's broker connections; a dead broker "
        "is noticed within about twice this (0 disables).")
    facts: list[str] = _setting(
        list, _split_list, "YAML or JSON fact files merged over the built-in facts, in order.")
    classes: str | None = _setting(
        None, _optional_path, "A Puppet classes.txt file; its lines are the node's classes.")
    agents: list[str] | None = _setting(
        None, _optional_list, "Agents to host (default: every installed agent).")
    agents_dir: list[str] = _setting(
        list, _split_list,
        "Directories of external agents (an executable plus its JSON DDL, any language).")
    plugins: dict[str, dict[str, Any]] = _setting(
        dict, _plugin_sections,
        "Per-plugin settings: {plugin name: {key: value}}, read by each plugin.")
    workers: int = _setting(8, _positive(int), "Actions a server runs at the same time.")
    max_actions: int = _setting(
        64, _positive(int),
        "Server: actions admitted at once, running or waiting for one of the workers; "
        "beyond this a request is not run and gets a signed 'busy' reply (status 6).")
    shutdown_timeout: float = _setting(
        30.0, _non_negative,
        "Server: on SIGTERM, how long running actions may take to finish and reply before "
        "the daemon exits; those still running then get an 'aborted' reply (seconds).")
    action_timeout: float = _setting(
        60.0, _positive(float), "Deadline of an action whose DDL sets no timeout (seconds).")
    timeout: float | None = _setting(
        None, lambda v: None if v is None else _positive(float)(v),
        "Client: seconds to wait for replies (default: the action's DDL timeout + 2).")
    ttl: float = _setting(
        60.0, _positive(float), "Seconds a request stays valid; older ones are dropped unread.")
    max_message_bytes: int = _setting(
        8 * 1024 * 1024, _positive(int),
        "The largest message a server or client reads; bigger ones are dropped before "
        "parsing, so one huge message cannot balloon a process's memory (bytes).")
    max_ttl: float = _setting(
        3600.0, _positive(float),
        "Server: the longest time-to-live a request may ask for; longer ones are refused, so "
        "a captured request cannot stay replayable for long (seconds).")
    clock_skew: float = _setting(
        5.0, _non_negative,
        "Seconds of clock difference tolerated between client and server.")
    discovery_timeout: float = _setting(
        2.0, _positive(float), "Client: the longest broadcast discovery may take (seconds).")
    discovery_window: float = _setting(
        0.2, _positive(float),
        "Client: discovery ends this long after the last reply arrived (seconds).")
    discovery_method: str = _setting(
        "auto", _name,
        "Client: how to find nodes (a discovery plugin's name); 'auto' uses the inventory "
        "when a store is configured and fresh, else broadcast.")
    security: str = _setting(
        "x509", _name,
        "The security provider (a security plugin's name); 'insecure' disables signing.")
    tls_cert: str | None = _setting(
        None, _optional_path, "This process's certificate (PEM), for signing and broker TLS.")
    tls_key: str | None = _setting(
        None, _optional_path, "The private key (PEM) of tls_cert.")
    tls_ca: str | None = _setting(
        None, _optional_path, "The CA certificate (PEM) that every peer must chain to.")
    tls_crl: str | None = _setting(
        None, _optional_path,
        "x509: the certificate revocation list (PEM) peers are checked against, re-read on "
        "SIGHUP; 'off' for none (default: none, or <ssldir>/crl.pem with ssldir).")
    ssldir: str | None = _setting(
        None, _optional_path,
        "A Puppet ssl directory to adopt: certs/ca.pem, certs/<identity>.pem, "
        "private_keys/<identity>.pem.")
    cert_cache: str | None = _setting(
        None, _optional_path,
        "x509: directory (yours, mode 0700) where verified peer certificates are remembered "
        "for later processes; 'off' disables it (default: ~/.cache/orch/x509).")
    client_certnames: list[str] = _setting(
        lambda: ["*.mcollective"], _split_list,
        "x509 with a CA not made by `orch ca` (Puppet's): certificate names (fnmatch "
        "patterns) that are clients; every other certificate is a node.")
    authorization: str = _setting(
        "actionpolicy", _name, "Server: the authorization plugin deciding who may run what.")
    policy_dir: str | None = _setting(
        None, _optional_path, "Server: directory of <agent>.policy actionpolicy files.")
    policy_default: str = _setting(
        "deny", _choice("allow", "deny"),
        "Server: decision for an agent that has no policy file and no default policy file.")
    audit_log: str | None = _setting(
        None, _optional_path, "Server: JSON-lines audit log of every request received.")
    filter_max_bytes: int = _setting(
        16384, _positive(int),
        "Size limit of a request's filter as JSON text (characters); larger ones are refused.")
    filter_max_terms: int = _setting(
        100, _positive(int),
        "Most tests a filter may hold (each term, and each test inside a compound expression).")
    filter_max_depth: int = _setting(
        32, _positive(int), "Deepest nesting of a filter (compound parentheses, term objects).")
    filter_max_seconds: float = _setting(
        0.25, _positive(float), "Server: longest one filter evaluation may run (seconds).")
    filter_workers: int = _setting(
        2, _positive(int),
        "Server: threads evaluating filters, so the broker consumer never waits on one.")
    filter_backlog: int = _setting(
        10000, _positive(int),
        "Server: requests waiting for a filter thread; beyond this, new ones are dropped.")
    audit_redact: list[str] = _setting(
        list, _split_list, "Server: argument names whose values the audit log redacts.")
    log_level: str = _setting(
        "info", _choice("debug", "info", "warning", "error"), "Logging threshold.")

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{setting: description}`` for every setting, for docs and ``--help``."""
        return {f.name: f.metadata["doc"] for f in fields(cls)}

    def plugin(self, name: str) -> dict[str, Any]:
        """The ``plugins.<name>`` section (empty when absent)."""
        return dict(self.plugins.get(name, {}))

    def with_values(self, values: Mapping[str, Any], source: str) -> Settings:
        """Return a copy with ``values`` applied; ``source`` names where they came from."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ConfigError(f"{source}: unknown setting {key!r}{suggestion}")
            try:
                changes[key] = known[key].metadata["convert"](value)
            except ValueError as exc:
                raise ConfigError(f"{source}: bad value {value!r} for {key!r}: {exc}") from None
        return replace(self, **changes)


def load_settings(
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings: defaults < config file < environment < ``overrides``.

    ``config_file`` defaults to ``$ORCH_CONFIG``. ``overrides`` are command-line values;
    None values are ignored so that unset flags do not hide the file or environment.
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        settings = settings.with_values(read_config_file(path), path)
    env_values = {
        name: env[f"{ENV_PREFIX}{name.upper()}"]
        for name in Settings.documented()
        if f"{ENV_PREFIX}{name.upper()}" in env
    }
    settings = settings.with_values(env_values, "environment")
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    return settings.with_values(flags, "command line")


def read_config_file(path: str) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with errors that name the file."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of setting: value")
    return {str(k): v for k, v in data.items()}
