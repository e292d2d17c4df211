"""Loading a JSON DDL into typed objects, and checking action arguments against it.

The layout is Choria's (``https://choria.io/schemas/mcorpc/ddl/v1/agent.json``)::

    {"metadata": {"name": "rpcutil", "timeout": 10, ...},
     "actions": [{"action": "ping", "description": "...", "display": "always",
                  "input": {"name": {"type": "string", "optional": false, ...}},
                  "output": {"pong": {"description": "...", "display_as": "Pong"}},
                  "aggregate": [{"function": "summary", "args": ["pong"]}]}]}
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orch.core.errors import ArgumentError, OrchError

#: DDL input types and the Python types that satisfy them.
INPUT_TYPES: Mapping[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "float": (int, float),
    "boolean": (bool,),
    "list": (list,),
    "array": (list,),
    "hash": (dict,),
    "any": (object,),
}
DEFAULT_TIMEOUT = 10.0


class DDLError(OrchError):
    """A DDL file is malformed; the message names the file and the field."""


@dataclass(frozen=True)
class InputDDL:
    name: str
    type: str = "string"
    description: str = ""
    prompt: str = ""
    optional: bool = True
    default: Any = None
    validation: str | None = None
    maxlength: int | None = None


@dataclass(frozen=True)
class OutputDDL:
    name: str
    description: str = ""
    display_as: str = ""
    type: str = "any"
    default: Any = None

    @property
    def label(self) -> str:
        return self.display_as or self.name


@dataclass(frozen=True)
class ActionDDL:
    name: str
    description: str = ""
    display: str = "failed"
    inputs: Mapping[str, InputDDL] = field(default_factory=dict)
    outputs: Mapping[str, OutputDDL] = field(default_factory=dict)
    aggregate: tuple[Mapping[str, Any], ...] = ()

    def check_arguments(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``data`` with defaults applied, or raise :class:`ArgumentError`.

        The error's ``kind`` attribute is ``missing`` or ``invalid`` so the server can pick
        the matching reply status.
        """
        unknown = sorted(set(data) - set(self.inputs))
        if unknown:
            raise _argument_error("invalid", f"unknown argument(s) {', '.join(unknown)} for "
                                  f"{self.name}; it takes {', '.join(self.inputs) or 'none'}")
        checked = dict(data)
        for name, spec in self.inputs.items():
            if name not in checked:
                if spec.default is not None:
                    checked[name] = spec.default
                elif not spec.optional:
                    raise _argument_error("missing", f"argument {name!r} is required")
                continue
            value = checked[name]
            expected = INPUT_TYPES.get(spec.type, (object,))
            wrong_bool = isinstance(value, bool) and spec.type not in ("boolean", "any")
            if not isinstance(value, expected) or wrong_bool:
                raise _argument_error(
                    "invalid", f"argument {name!r} must be of type {spec.type}, got {value!r}")
            if spec.maxlength and isinstance(value, str) and len(value) > spec.maxlength:
                raise _argument_error(
                    "invalid", f"argument {name!r} is longer than {spec.maxlength} characters")
            if spec.validation and isinstance(value, str):
                problem = validate(spec.validation, value)
                if problem:
                    raise _argument_error("invalid", f"argument {name!r} {problem}")
        return checked


@dataclass(frozen=True)
class AgentDDL:
    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    timeout: float = DEFAULT_TIMEOUT
    actions: Mapping[str, ActionDDL] = field(default_factory=dict)

    def action(self, name: str) -> ActionDDL | None:
        return self.actions.get(name)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _ip(version: int | None) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            return False
        return version is None or address.version == version

    return check


#: Named validators a DDL may give instead of a regular expression.
NAMED_VALIDATORS: Mapping[str, Callable[[str], bool]] = {
    "shellsafe": lambda value: not any(char in value for char in "`$;|&><\n\r\"'\\"),
    "ipv4address": _ip(4),
    "ipv6address": _ip(6),
    "ipaddress": _ip(None),
}


def validate(validation: str, value: str) -> str | None:
    """Apply a DDL ``validation`` (a named validator or a regex); return the problem or None.

    A regex that does not compile matches nothing, so a broken DDL fails closed.
    """
    named = NAMED_VALIDATORS.get(validation)
    if named is not None:
        return None if named(value) else f"is not a valid {validation} value"
    compiled = _compiled(validation)
    if compiled is None or compiled.search(value) is None:
        return f"does not match {validation}"
    return None


def _argument_error(kind: str, message: str) -> ArgumentError:
    error = ArgumentError(message)
    error.kind = kind  # type: ignore[attr-defined]
    return error


def load_ddl(source: str | Path, text: str | None = None) -> AgentDDL:
    """Load a DDL from ``source`` (a path), or from ``text`` naming ``source`` in errors."""
    try:
        raw = json.loads(text if text is not None else Path(source).read_text())
    except (OSError, ValueError) as exc:
        raise DDLError(f"{source}: cannot load DDL: {exc}") from None
    return parse_ddl(raw, str(source))


def parse_ddl(raw: Any, source: str) -> AgentDDL:
    if not isinstance(raw, dict):
        raise DDLError(f"{source}: a DDL must be a JSON object")
    meta = raw.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        raise DDLError(f"{source}: metadata.name is required")
    actions: dict[str, ActionDDL] = {}
    for index, action in enumerate(raw.get("actions") or []):
        where = f"{source}: actions[{index}]"
        if not isinstance(action, dict) or not isinstance(action.get("action"), str):
            raise DDLError(f"{where}.action is required")
        actions[action["action"]] = ActionDDL(
            name=action["action"],
            description=str(action.get("description", "")),
            display=str(action.get("display", "failed")),
            inputs={k: InputDDL(k, **_known(v, InputDDL, f"{where}.input.{k}"))
                    for k, v in (action.get("input") or {}).items()},
            outputs={k: OutputDDL(k, **_known(v, OutputDDL, f"{where}.output.{k}"))
                     for k, v in (action.get("output") or {}).items()},
            aggregate=tuple(action.get("aggregate") or ()),
        )
    return AgentDDL(
        name=meta["name"],
        description=str(meta.get("description", "")),
        version=str(meta.get("version", "")),
        author=str(meta.get("author", "")),
        license=str(meta.get("license", "")),
        timeout=float(meta.get("timeout") or DEFAULT_TIMEOUT),
        actions=actions,
    )


def _known(spec: Any, cls: type, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise DDLError(f"{where} must be an object")
    allowed = set(cls.__dataclass_fields__) - {"name"}  # type: ignore[attr-defined]
    return {k: v for k, v in spec.items() if k in allowed}
