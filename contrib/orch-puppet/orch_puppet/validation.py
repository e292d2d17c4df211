"""Checking every action input before anything runs.

The DDL already refuses wrong types and patterns on the client and on the server; these
checks repeat them inside the agent (a DDL can be edited, a request can come from a
program) and add what a pattern cannot say (port ranges, value types inside a hash).
Nothing here ever reaches a shell: arguments go to ``puppet`` as separate argv items, and
resource data to Ruby as JSON on stdin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Puppet's tag syntax (Puppet::Util::Tagging::ValidTagRegex), comma-separated.
TAG = r"[A-Za-z0-9_][A-Za-z0-9_:.\-]*"
TAGS_RE = re.compile(rf"^{TAG}(,{TAG})*$")
#: Puppet's environment names (Puppet::Node::Environment::VALID_ENV_NAME).
ENVIRONMENT_RE = re.compile(r"^[a-z0-9_]+$")
HOST_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                     r"(\.[A-Za-z0-9]([A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$")
SERVER_RE = re.compile(r"^([^:]+)(?::([0-9]{1,5}))?$")
#: Resource type names, including defined types from modules (``apache::vhost``).
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(::[a-z][a-z0-9_]*)*$", re.IGNORECASE)
PARAMETER_RE = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_TITLE = 1024
MAX_VALUE = 65536
MAX_PARAMETERS = 64
MAX_SPLAYLIMIT = 86400


class InvalidInput(ValueError):
    """An input is not acceptable; the message names it and says why."""


def check_tags(name: str, value: str) -> list[str]:
    """``a,b::c`` → ``["a", "b::c"]``; whitespace around commas is tolerated."""
    compact = ",".join(part.strip() for part in value.split(","))
    if not TAGS_RE.match(compact):
        raise InvalidInput(f"{name} {value!r} is not a comma-separated list of Puppet tags "
                           "(letters, digits, _, :, . and -)")
    return compact.split(",")


def check_environment(value: str) -> str:
    if not ENVIRONMENT_RE.match(value):
        raise InvalidInput(f"environment {value!r} is not a valid Puppet environment name "
                           "(lower-case letters, digits and _)")
    return value


def check_server(value: str) -> tuple[str, int | None]:
    """``host[:port]`` → (host, port or None)."""
    match = SERVER_RE.match(value)
    if not match or not HOST_RE.match(match.group(1)):
        raise InvalidInput(f"server {value!r} is not a host name or host:port")
    port = int(match.group(2)) if match.group(2) else None
    if port is not None and not 1 <= port <= 65535:
        raise InvalidInput(f"server {value!r}: port must be between 1 and 65535")
    return match.group(1), port


@dataclass(frozen=True)
class RunOptions:
    """A checked ``runonce`` request."""

    force: bool = False
    noop: bool | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    environment: str | None = None
    server: tuple[str, int | None] | None = None
    splay: bool | None = None
    splaylimit: int | None = None
    use_cached_catalog: bool | None = None
    ignoreschedules: bool = False

    @property
    def custom(self) -> bool:
        """True when the run needs options a signalled daemon cannot take (splay is
        decided separately: it depends on the node's default too)."""
        return bool(self.noop is not None or self.tags or self.skip_tags or self.environment
                    or self.server or self.use_cached_catalog is not None
                    or self.ignoreschedules)


def _flag(data: Mapping[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {value!r}")
    return value


def run_options(data: Mapping[str, Any]) -> RunOptions:
    """Check ``runonce``'s inputs; raise :class:`InvalidInput` naming the first bad one."""
    known = {"force", "noop", "tags", "skip_tags", "environment", "server", "splay",
             "splaylimit", "use_cached_catalog", "ignoreschedules"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown input(s) {', '.join(unknown)}")
    for name in ("tags", "skip_tags", "environment", "server"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InvalidInput(f"{name} must be a string, got {data[name]!r}")
    splaylimit = data.get("splaylimit")
    if splaylimit is not None:
        if isinstance(splaylimit, bool) or not isinstance(splaylimit, int):
            raise InvalidInput(f"splaylimit must be a whole number, got {splaylimit!r}")
        if not 1 <= splaylimit <= MAX_SPLAYLIMIT:
            raise InvalidInput(f"splaylimit must be between 1 and {MAX_SPLAYLIMIT} seconds")
    return RunOptions(
        force=bool(_flag(data, "force")),
        noop=_flag(data, "noop"),
        tags=tuple(check_tags("tags", data["tags"])) if data.get("tags") else (),
        skip_tags=tuple(check_tags("skip_tags", data["skip_tags"]))
        if data.get("skip_tags") else (),
        environment=check_environment(data["environment"]) if data.get("environment")
        else None,
        server=check_server(data["server"]) if data.get("server") else None,
        splay=_flag(data, "splay"),
        splaylimit=splaylimit,
        use_cached_catalog=_flag(data, "use_cached_catalog"),
        ignoreschedules=bool(_flag(data, "ignoreschedules")),
    )


@dataclass(frozen=True)
class ResourceRequest:
    """A checked ``resource`` request: one resource for Puppet's RAL."""

    type: str
    title: str
    parameters: dict[str, Any]

    @property
    def ref(self) -> str:
        """``file[/tmp/x]``: how ``resources.txt`` names it (type lower-cased)."""
        return f"{self.type}[{self.title}]"


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool | int | float)


def resource_request(data: Mapping[str, Any]) -> ResourceRequest:
    """Check ``resource``'s inputs: a type name, a title and a hash of parameters whose
    values are strings, numbers, booleans or lists of them."""
    type_name = data.get("type")
    title = data.get("name")
    parameters = data.get("properties") or {}
    if not isinstance(type_name, str) or not TYPE_RE.match(type_name):
        raise InvalidInput(f"type {type_name!r} is not a Puppet resource type name (letters, "
                           "digits and _, starting with a letter; modules' types as "
                           "module::type)")
    if not isinstance(title, str) or not title or len(title) > MAX_TITLE:
        raise InvalidInput(f"name must be a non-empty string of at most {MAX_TITLE} characters")
    if any(ord(ch) < 32 for ch in title):
        raise InvalidInput("name cannot contain control characters")
    if not isinstance(parameters, dict):
        raise InvalidInput("properties must be a hash of parameter: value")
    if len(parameters) > MAX_PARAMETERS:
        raise InvalidInput(f"at most {MAX_PARAMETERS} properties")
    checked: dict[str, Any] = {}
    for key, value in parameters.items():
        if not isinstance(key, str) or not PARAMETER_RE.match(key):
            raise InvalidInput(f"property name {key!r} is not a Puppet parameter name")
        if _scalar(value):
            items = [value]
        elif isinstance(value, list) and all(_scalar(v) for v in value):
            items = value
        else:
            raise InvalidInput(f"property {key!r}: values must be strings, numbers, booleans "
                               "or lists of them")
        if any(isinstance(v, str) and len(v) > MAX_VALUE for v in items):
            raise InvalidInput(f"property {key!r} is longer than {MAX_VALUE} characters")
        checked[key] = value
    return ResourceRequest(type_name.lower(), title, checked)
