"""Converters for settings: each takes a raw value (YAML, an environment string, a flag) and
returns the typed value or raises ``ValueError`` saying what was expected.

They are shared by orch's own settings and by every plugin's declared section (through
:mod:`orch.plugin`), so a plugin never re-implements "a positive number" or "a list given as
a YAML list or a comma-separated string", and the errors read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orch.core.protocol import valid_name


def string_list(value: Any) -> list[str]:
    """A YAML list of strings, or one comma-separated string (environment, flags)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError("expected a list of strings or a comma-separated string")


def optional_list(value: Any) -> list[str] | None:
    """Like :func:`string_list`; ``None``, ``""`` or ``"all"`` mean "no restriction"."""
    return None if value in (None, "", "all") else string_list(value)


def name(value: Any) -> str:
    """A name made of letters, digits, ``.``, ``_`` and ``-`` (identities, plugin names)."""
    if not valid_name(value):
        raise ValueError("expected a name made of letters, digits, '.', '_' and '-'")
    return str(value)


def positive(kind: type) -> Callable[[Any], Any]:
    """A converter to a positive ``int`` or ``float`` (booleans refused)."""
    def convert(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError(f"expected a positive {kind.__name__}")
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a positive {kind.__name__}") from None
        if not number > 0 or number == float("inf"):
            raise ValueError(f"expected a positive {kind.__name__}")
        return number

    return convert


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``convert``, except that ``None`` stays ``None`` (an unset optional value)."""
    def optional_convert(value: Any) -> Any:
        return None if value is None else convert(value)

    return optional_convert


def non_negative(value: Any) -> float:
    """A number of seconds, 0 or more (0 usually means "off")."""
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds, 0 or more")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of seconds, 0 or more") from None
    if not number >= 0 or number == float("inf"):
        raise ValueError("expected a number of seconds, 0 or more")
    return number


def optional_path(value: Any) -> str | None:
    """A file path; ``None`` or ``""`` mean unset. A NUL byte is refused."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("expected a file path")
    if "\0" in value:
        raise ValueError("a path cannot contain NUL")
    return value


def optional_string(value: Any) -> str | None:
    """Any string (the empty string included) or ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value


def string(value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty string")
    return value


def boolean(value: Any) -> bool:
    """``true``/``false`` in YAML, or ``true``/``yes``/``on``/``1`` (and the opposites) as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError("expected true or false")


def choice(*options: str) -> Callable[[Any], str]:
    """A converter accepting exactly one of ``options``."""
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return str(value)

    return convert


def positive_number(value: Any) -> float:
    """A positive, finite number (YAML number or text); booleans refused."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError("expected a positive number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a positive number") from None
    if not 0 < number < float("inf"):
        raise ValueError("expected a positive number")
    return number


def seconds_below(deadline: float) -> Callable[[Any], float]:
    """A converter to positive seconds under ``deadline`` (an action's DDL timeout), so that a
    command killed for running too long still leaves time for a reply saying so."""
    def convert(value: Any) -> float:
        number = positive_number(value)
        if number >= deadline:
            raise ValueError(f"must be below the action's {deadline:g} s deadline, so that "
                             "the reply says what happened")
        return number

    return convert


def count(value: Any) -> int:
    """A whole number, 0 or more (a node count such as "ask above N nodes")."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("expected a whole number, 0 or more")
    try:
        number = int(value)
    except ValueError:
        raise ValueError("expected a whole number, 0 or more") from None
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
    return number


def names_or_all(what: str, valid: Callable[[str], bool],
                 help_text: str) -> Callable[[Any], tuple[str, ...]]:
    """A converter to an allow/deny list: names ``valid`` accepts, or the word ``all``, as a
    YAML list or one comma-separated string; unset is the empty tuple (nothing allowed).

    ``what`` names one item in errors ("service name"), ``help_text`` says what it may be.
    """
    def convert(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            items = [part.strip() for part in value.split(",")]
        elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            items = [part.strip() for part in value]
        else:
            raise ValueError(f"expected a list of {what}s or 'all'")
        names = tuple(item for item in items if item)
        for item in names:
            if item != "all" and not valid(item):
                raise ValueError(f"{item!r} is not a {what} ({help_text})")
        return names

    return convert
