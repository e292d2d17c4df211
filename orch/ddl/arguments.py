"""Typing ``key=value`` arguments from the command line.

With a DDL the declared input type decides (``count=10`` is an integer only if ``count`` is
declared ``integer``; a ``string`` input keeps ``"10"`` as text). Without one, values that
read as JSON numbers, booleans, null, lists or objects become those, anything else a string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from orch.core.errors import ArgumentError
from orch.ddl.model import ActionDDL

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def parse_arguments(pairs: Iterable[str], ddl: ActionDDL | None = None) -> dict[str, Any]:
    """Turn ``["name=value", "--name", "value", …]`` into typed action arguments.

    Errors name the argument.
    """
    arguments: dict[str, Any] = {}
    for pair in option_pairs(pairs, ddl):
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ArgumentError(f"argument {pair!r} must look like name=value")
        input_type = ddl.inputs[key].type if ddl and key in ddl.inputs else None
        value = convert(key, text, input_type)
        if key in arguments:
            # Never keep only the last of several values silently: an ``array`` input
            # collects them, any other says how to give several values.
            if input_type != "array":
                raise ArgumentError(
                    f"argument {key!r} given more than once; it takes one value")
            arguments[key] = [*arguments[key], *(value if isinstance(value, list)
                                                 else [value])]
            continue
        arguments[key] = value
    return arguments


def option_pairs(tokens: Iterable[str], ddl: ActionDDL | None) -> list[str]:
    """Accept ``--name value``, ``--name=value`` and ``name=value`` alike; return ``name=value``.

    A boolean input may be given as a bare ``--name`` (true) or ``--no-name`` (false).
    ``--`` style names may use dashes for underscores.
    """
    pairs: list[str] = []
    items = list(tokens)
    index = 0
    while index < len(items):
        token = items[index]
        index += 1
        if not token.startswith("--"):
            pairs.append(token)
            continue
        name, sep, value = token[2:].partition("=")
        name = name.replace("-", "_")
        spec = ddl.inputs.get(name) if ddl else None
        negated_spec = ddl.inputs.get(name[3:]) if ddl and name.startswith("no_") else None
        if negated_spec is not None and spec is None and negated_spec.type != "boolean":
            raise ArgumentError(f"option --{token[2:].split('=')[0]} is only for boolean "
                                f"inputs; {name[3:]!r} is a {negated_spec.type}")
        negated = negated_spec is not None and spec is None
        if sep:
            pairs.append(f"{name}={value}")
        elif (spec is not None and spec.type == "boolean") or negated:
            pairs.append(f"{name[3:]}=false" if negated else f"{name}=true")
        elif index < len(items):
            pairs.append(f"{name}={items[index]}")
            index += 1
        else:
            raise ArgumentError(f"option --{name} needs a value")
    return pairs


def convert(key: str, text: str, input_type: str | None) -> Any:
    """Convert one value to ``input_type`` (a DDL type name), or guess when None/``any``."""
    try:
        if input_type == "string":
            return text
        if input_type == "integer":
            return int(text)
        if input_type in ("number", "float"):
            try:
                return int(text)
            except ValueError:
                return float(text)
        if input_type == "boolean":
            lowered = text.lower()
            if lowered in _TRUE | _FALSE:
                return lowered in _TRUE
            raise ValueError("expected true or false")
        if input_type == "list":
            return text  # an enumeration of strings; the DDL check names the choices
        if input_type in ("array", "hash"):
            value = json.loads(text)
            expected = dict if input_type == "hash" else list
            if not isinstance(value, expected):
                raise ValueError(f"expected a JSON {'object' if expected is dict else 'array'}")
            return value
    except ValueError as exc:
        raise ArgumentError(f"argument {key!r}: {text!r} is not a valid {input_type} "
                            f"({exc})") from None
    return guess(text)


def guess(text: str) -> Any:
    """JSON scalars and containers become themselves; any other text stays a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text
