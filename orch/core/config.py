"""Settings: defaults, then the YAML config file, then ``ORCH_*`` environment, then flags.

Every core setting is declared once, as a field of :class:`Settings`, with its converter,
default and description; ``docs/configuration.md``'s table is generated from them
(:mod:`orch.core.settingsdoc`). Plugins declare theirs as sections (:mod:`orch.core.sections`,
the ``orch_settings`` hook), read with :meth:`Settings.section`. An unknown key or a bad value
is a :class:`~orch.core.errors.ConfigError` naming the key and where it came from.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from orch.core import convert, sections
from orch.core.errors import ConfigError
from orch.core.sections import setting

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry

T = TypeVar("T")

DEFAULT_BROKER = "amqp://guest:guest@localhost:5672//"
ENV_PREFIX = "ORCH_"


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


def _setting(default: Any, convert: Callable[[Any], Any], doc: str,
             default_doc: str | None = None) -> Any:
    return setting(default, convert, doc, default_doc=default_doc)


_split_list = convert.string_list
_name = convert.name
_positive = convert.positive
_non_negative = convert.non_negative
_optional_path = convert.optional_path
_choice = convert.choice
_optional_list = convert.optional_list


@dataclass(frozen=True)
class Settings:
    """The effective configuration of one orch process (server, client or demo)."""

    identity: str = _setting(
        lambda: socket.gethostname().split(".")[0] or "localhost", _name,
        "This node's name; requests addressed to it use it. Letters, digits, `.`, `_`, `-`.",
        default_doc="the host name (up to the first dot)")
    collective: str = _setting(
        "orch", _name,
        "The collective (group of nodes) to serve or to talk to. Client flag: `-T/--target`.",
        default_doc="`orch`")
    broker: list[str] = _setting(
        lambda: [DEFAULT_BROKER], _split_list,
        "Broker URL(s): `amqp://`/`amqps://` (RabbitMQ), `redis://`/`rediss://`, `memory://` "
        "(one process only), or a scheme a transport plugin adds (see [Broker "
        "schemes](#broker-schemes-and-what-they-need)). Several URLs fail over in turn; all "
        "must share a scheme.",
        default_doc="`amqp://guest:guest@localhost:5672//`")
    heartbeat: float = _setting(
        10.0, _non_negative,
        "Server: the AMQP heartbeat (seconds) asked for on the daemon's broker connections — "
        "the one consuming requests and the one publishing replies. Heartbeats are sent and "
        "checked whatever the message rate (every quarter interval, also under a steady "
        "stream of requests), so a dead broker or network is noticed within about twice this, "
        "and the broker never drops a busy daemon. RabbitMQ uses the smaller of this and its "
        "own `heartbeat` (default 60). `0` disables them. Client connections ask for none: "
        "every client wait has its own deadline, and a client idle between calls has nobody "
        "to send them. Ignored by `redis://` and `memory://`.",
        default_doc="`10`")
    queue_expiry: float = _setting(
        120.0, _positive(float),
        "Server: how long (seconds) a node's queue outlives its consumer. A daemon whose "
        "broker connection drops finds the requests sent meanwhile when it re-consumes within "
        "this time, and answers those still inside their time-to-live (each request also "
        "carries its TTL as a per-message expiration, so nothing stale is kept). A daemon "
        "that *restarts* drops requests created before it started (replay protection). On "
        "RabbitMQ this is the queue's `x-expires`: a node gone for good leaves nothing behind "
        "after it. On Redis, where kombu has no such expiry, each daemon keeps a liveness key "
        "per node and the daemons sweep the queues and bindings of nodes nobody keeps alive: "
        "a node killed without a clean shutdown collects broadcasts for at most about twice "
        "this. Changing it on a running fleet: the broker refuses to re-declare an existing "
        "queue with another expiry until that queue is gone (stop the daemon for longer than "
        "the old expiry, or delete its queue). See [brokers.md](brokers.md).",
        default_doc="`120`")
    facts: list[str] = _setting(
        list, _split_list,
        "YAML or JSON fact files (`.json` is read as JSON) merged over the built-in facts, in "
        "order. Server only.",
        default_doc="none")
    classes: str | None = _setting(
        None, _optional_path,
        "A Puppet `classes.txt` file; its lines are the node's classes for `-C` filters. "
        "Server only.",
        default_doc="none")
    agents: list[str] | None = _setting(
        None, _optional_list,
        "Agents to host. Naming one that is not installed is an error. Server only.",
        default_doc="all installed")
    plugins: dict[str, dict[str, Any]] = _setting(
        dict, _plugin_sections,
        "Per-plugin settings (in the environment, a JSON object), `{plugin: {key: value}}`; "
        "each plugin documents its keys (e.g. `plugins: {puppet: {resource_types_allow: "
        "[file]}}`).",
        default_doc="none")
    workers: int = _setting(8, _positive(int),
        "Actions a server runs at the same time.",
        default_doc="`8`")
    max_actions: int = _setting(
        64, _positive(int),
        "Server: actions admitted at once, running or waiting for one of the workers; "
        "beyond this a request is not run and gets a signed `busy` reply (status 6).",
        default_doc="`64`")
    shutdown_timeout: float = _setting(
        30.0, _non_negative,
        "Server: on SIGTERM, how long (seconds) running actions may take to finish and reply "
        "before the daemon exits; those still running then get an `aborted` reply.",
        default_doc="`30`")
    action_timeout: float = _setting(
        60.0, _positive(float),
        "Deadline (seconds) of an action whose DDL sets no timeout.",
        default_doc="`60`")
    timeout: float | None = _setting(
        None, lambda v: None if v is None else _positive(float)(v),
        "Client: seconds to wait for replies, counted from when the last request was "
        "published; 0.5 ms per addressed node and the time the client spends verifying "
        "replies are added (see [cli.md](cli.md), \"How long a call waits\"). Flag: "
        "`--timeout`.",
        default_doc="the action's DDL timeout + 2")
    ttl: float = _setting(
        60.0, _positive(float),
        "Seconds a request stays valid; servers drop older ones unread.",
        default_doc="`60`")
    max_message_bytes: int = _setting(
        8 * 1024 * 1024, _positive(int),
        "The largest message a server or client reads; bigger ones are dropped (and audited) "
        "before parsing.",
        default_doc="`8388608`")
    max_ttl: float = _setting(
        3600.0, _positive(float),
        "Server: the longest time-to-live a request may ask for; longer ones are refused "
        "(`dropped`), so a captured request cannot stay replayable for long.",
        default_doc="`3600`")
    clock_skew: float = _setting(
        5.0, _non_negative,
        "Seconds of clock difference tolerated between client and server.",
        default_doc="`5`")
    discovery_timeout: float = _setting(
        2.0, _positive(float),
        "Client: the longest broadcast discovery (and a broadcast `ping`) may wait for the "
        "fleet (the client's own verification time is added). Ended by it while replies were "
        "still arriving, the command says so and exits 1. Flag: `--discovery-timeout`.",
        default_doc="`2`")
    discovery_window: float = _setting(
        0.2, _positive(float),
        "Client: discovery ends this many seconds after the last reply arrived (or twice the "
        "longest gap between replies so far, if longer).",
        default_doc="`0.2`")
    discovery_memory: bool = _setting(
        True, convert.boolean,
        "Client: remember who answered each broadcast (discovery, a broadcast `ping`) in the "
        "per-user cache; the next identical broadcast waits for those nodes (up to its "
        "timeout, naming the ones that stay silent) and, once all answered, ends "
        "`discovery_settle` after the last reply instead of `discovery_window` (at least "
        "every five minutes it waits the whole window again, to learn of slower new nodes); "
        "knowing how "
        "many to expect, it adds 0.5 ms per node to `discovery_timeout`, as a direct call "
        "does.",
        default_doc="`true`")
    discovery_settle: float = _setting(
        0.05, _non_negative,
        "Client: with `discovery_memory`, how long a broadcast waits after the last reply "
        "once every node that answered it before has answered again — for nodes new since.",
        default_doc="`0.05`")
    discovery_method: str = _setting(
        "auto", _name,
        "Client: how to find nodes — the name of a discovery plugin: `auto` (the inventory "
        "when a store is configured and fresh, else `broadcast`), `broadcast`, `inventory`, "
        "`puppetdb` (see [inventory.md](inventory.md)). Flag: `--discovery-method`.",
        default_doc="`auto`")
    security: str = _setting(
        "x509", _name,
        "The security provider — the name of a security plugin. `x509` signs every request "
        "and reply with the `tls_*` (or `ssldir`) certificate; `insecure` signs nothing and "
        "logs a warning at start — for development only. See [security.md](security.md).",
        default_doc="`x509`")
    tls_cert: str | None = _setting(
        None, _optional_path,
        "This process's certificate (PEM): signs its messages (with `security: x509`) and "
        "authenticates it to an `amqps://`/`rediss://` broker.",
        default_doc="none")
    tls_key: str | None = _setting(
        None, _optional_path,
        "The private key (PEM) of `tls_cert`. Keep it 0600.",
        default_doc="none")
    tls_ca: str | None = _setting(
        None, _optional_path,
        "The CA certificate (PEM) every peer's certificate must chain to.",
        default_doc="none")
    tls_crl: str | None = _setting(
        None, _optional_path,
        "x509: the certificate revocation list (PEM) every peer is checked against, re-read "
        "on SIGHUP; `off` for none. See [security.md](security.md#revocation).",
        default_doc="none, or `<ssldir>/crl.pem` with `ssldir`")
    ssldir: str | None = _setting(
        None, _optional_path,
        "Adopt a Puppet ssl directory instead of the three `tls_*` settings: `certs/ca.pem`, "
        "`certs/<identity>.pem`, `private_keys/<identity>.pem`.",
        default_doc="none")
    authorization: str = _setting(
        "actionpolicy", _name,
        "Server: the authorization plugin deciding who may run what. See "
        "[actionpolicy.md](actionpolicy.md).",
        default_doc="`actionpolicy`")
    audit_log: str | None = _setting(
        None, _optional_path,
        "Server: a JSON-lines file recording every request received and what became of it "
        "(created 0600, reopened on `SIGHUP`).",
        default_doc="none")
    filter_max_bytes: int = _setting(
        16384, _positive(int),
        "Size limit of a request's filter as JSON text. A server refuses (and audits) a "
        "request whose filter is larger; a client refuses to send one (exit 2). See "
        "[security.md](security.md#filters-are-bounded).",
        default_doc="`16384`")
    filter_max_terms: int = _setting(
        100, _positive(int),
        "Most tests one filter may hold: each `-F`/`-C`/`-I`/`-A` term, and each comparison, "
        "class test or function call inside a `-S` expression. Checked by server and client "
        "alike.",
        default_doc="`100`")
    filter_max_depth: int = _setting(
        32, _positive(int),
        "Deepest nesting of a filter: `and`/`or`/`not` inside a `-S` expression, objects and "
        "lists inside a term. Checked by server and client alike.",
        default_doc="`32`")
    filter_max_seconds: float = _setting(
        0.25, _positive(float),
        "Server: the longest one filter evaluation may run; a request whose filter takes "
        "longer is refused and audited.",
        default_doc="`0.25`")
    filter_workers: int = _setting(
        2, _positive(int),
        "Server: threads that evaluate filters and check requests after the cheap checks, so "
        "the thread reading the broker never waits on a filter.",
        default_doc="`2`")
    filter_backlog: int = _setting(
        10000, _positive(int),
        "Server: requests that may wait for a filter thread; beyond this a new request is "
        "dropped and audited (`busy`). A simulated fleet (`orch demo`, `orch.testing`) shares "
        "one backlog, raised to at least twice its number of nodes.",
        default_doc="`10000`")
    audit_redact: list[str] = _setting(
        list, _split_list,
        "Server: argument names whose values the audit log replaces with `\"[redacted]\"`.",
        default_doc="none")
    log_level: str = _setting(
        "info", _choice("debug", "info", "warning", "error"),
        "Logging threshold: `debug`, `info`, `warning`, `error`.",
        default_doc="`info` (server), `warning` (client commands)")

    #: Where each ``plugins.<section>.<key>`` value came from, for error messages.
    origins: Mapping[tuple[str, str], str] = field(
        default_factory=dict, compare=False, repr=False)
    #: The ``ORCH_*`` environment seen by :func:`load_settings`: a plugin section's
    #: ``ORCH_<SECTION>_<KEY>`` is read from it when the section is first checked.
    environ: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    #: Section keys set after the environment was read (flags), which the environment
    #: must not override.
    after_environ: frozenset[tuple[str, str]] = field(
        default_factory=frozenset, compare=False, repr=False)
    _sections: dict[tuple[str, type], Any] = field(
        default_factory=dict, compare=False, repr=False, init=False)

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{setting: description}`` for every core setting, for docs and ``--help``."""
        return {f.name: f.metadata["doc"] for f in fields(cls) if "doc" in f.metadata}

    def plugin(self, name: str) -> dict[str, Any]:
        """The raw ``plugins.<name>`` section (empty when absent), unchecked.

        A plugin that declares its section (``orch_settings``) reads it typed and checked
        with :meth:`section` instead.
        """
        return dict(self.plugins.get(name, {}))

    def section(self, name: str, cls: type[T]) -> T:
        """The declared section ``name`` as an instance of ``cls``, checked once.

        Layers, each overriding the one before: the class's defaults, the config file's
        ``plugins.<name>`` (or a key's top-level alias), the environment
        (``ORCH_<NAME>_<KEY>``, an alias's ``ORCH_<ALIAS>``, ``ORCH_PLUGINS``), the command
        line. Raises :class:`ConfigError` naming the key and its source.
        """
        cached = self._sections.get((name, cls))
        if cached is not None:
            return cast(T, cached)
        values = dict(self.plugins.get(name, {}))
        origins = {key: self.origins.get((name, key), "settings") for key in values}
        for key, value in sections.environment_values(name, cls, self.environ).items():
            if (name, key) not in self.after_environ:
                values[key] = value
                origins[key] = "environment"
        checked = sections.check(name, cls, values, origins)
        self._sections[(name, cls)] = checked
        return checked

    def with_values(self, values: Mapping[str, Any], source: str,
                    registry: PluginRegistry | None = None) -> Settings:
        """Return a copy with ``values`` applied; ``source`` names where they came from.

        Keys are core settings, ``plugins`` (a mapping of sections, merged key by key),
        ``<section>.<key>`` (also ``plugins.<section>.<key>``), or a top-level alias a
        plugin declared for one of its keys, found through ``registry`` and asked only when
        such a key appears. Given none, the installed plugins' aliases are used
        (:func:`~orch.core.plugins.default_registry`): the convenience for an application
        building settings, as ``Client(settings)`` is; library code passes its registry.
        """
        known = {f.name: f for f in fields(self) if "doc" in f.metadata}
        changes: dict[str, Any] = {}
        plugin_values: list[tuple[str, str, Any]] = []
        for key, value in values.items():
            if key == "plugins":
                try:
                    given = _plugin_sections(value)
                except ValueError as exc:
                    raise ConfigError(
                        f"{source}: bad value {value!r} for 'plugins': {exc}") from None
                plugin_values.extend((s, k, v) for s, kv in given.items() for k, v in kv.items())
            elif key in known:
                try:
                    changes[key] = known[key].metadata["convert"](value)
                except ValueError as exc:
                    raise ConfigError(
                        f"{source}: bad value {value!r} for {key!r}: {exc}") from None
            elif "." in str(key):
                dotted = str(key).removeprefix("plugins.")
                section_name, _, section_key = dotted.partition(".")
                plugin_values.append((section_name, section_key, value))
            else:
                section_name, section_key = _alias(str(key), source, known, registry)
                plugin_values.append((section_name, section_key, value))
        if plugin_values:
            merged = {name: dict(section) for name, section in self.plugins.items()}
            origins = dict(self.origins)
            after = set(self.after_environ)
            for section_name, section_key, value in plugin_values:
                merged.setdefault(section_name, {})[section_key] = value
                origins[(section_name, section_key)] = source
                if self.environ:
                    after.add((section_name, section_key))
            changes.update(plugins=merged, origins=origins, after_environ=frozenset(after))
        return replace(self, **changes)


def _alias(key: str, source: str, known: Mapping[str, Any],
           registry: PluginRegistry | None) -> tuple[str, str]:
    """The ``(section, key)`` a plugin declared top-level ``key`` an alias of, else a
    :class:`ConfigError` suggesting the closest core setting or alias."""
    if registry is None:
        from orch.core.plugins import default_registry

        registry = default_registry()  # the documented convenience of with_values
    target = registry.setting_alias(key)
    if target is not None:
        return target
    candidates = [*known, *registry.setting_aliases()]
    hint = sections.did_you_mean(key, candidates)
    raise ConfigError(f"{source}: unknown setting {key!r}{hint}")


def load_settings(
    config_file: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    registry: PluginRegistry | None = None,
) -> Settings:
    """Build the effective settings: defaults < config file < environment < ``overrides``.

    ``config_file`` defaults to ``$ORCH_CONFIG``. ``overrides`` are command-line values;
    None values are ignored so that unset flags do not hide the file or environment.
    ``registry`` resolves top-level aliases of plugin settings; given none, the installed
    plugins' (:func:`~orch.core.plugins.default_registry`), a convenience for applications
    that start here, as :class:`~orch.core.client.Client` is: library code passes its own.
    """
    env = os.environ if environ is None else environ
    settings = Settings()
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    if path:
        settings = settings.with_values(read_config_file(path), path, registry)
    env_values = {
        name: env[f"{ENV_PREFIX}{name.upper()}"]
        for name in Settings.documented()
        if f"{ENV_PREFIX}{name.upper()}" in env
    }
    settings = settings.with_values(env_values, "environment", registry)
    snapshot = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    settings = replace(settings, environ=snapshot)
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    return settings.with_values(flags, "command line", registry)


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
