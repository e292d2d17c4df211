"""Turning the client's filter options (``-F -C -I -A -S -W``) into a request's wire filter.

In the core, not in the filter plugin: every client (the CLI, ``orch.testing``, a program)
builds filters the same way, through the :class:`~orch.core.filter.FilterEngine` of the
installed filter kinds, and none of them imports a plugin for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orch.core.filter import FilterEngine


def build_filter(
    engine: FilterEngine,
    fact: Sequence[str] = (),
    classes: Sequence[str] = (),
    identities: Sequence[str] = (),
    agents: Sequence[str] = (),
    compound: Sequence[str] = (),
    with_: Sequence[str] = (),
) -> dict[str, list[Any]]:
    """Turn the values of ``-F -C -I -A -S -W`` into a request's wire filter.

    ``with_`` holds MCollective's combined ``-W "role=web webserver"`` values: each
    whitespace-separated word containing an operator is a fact term, any other a class
    (so a fact term under ``-W`` cannot have spaces around its operator). Kinds with no
    terms are left out, so no options at all give ``{}``, which selects every node.
    """
    facts, classes_with = _split_with(with_)
    typed = {
        "fact": [*fact, *facts],
        "class": [*classes, *classes_with],
        "identity": list(identities),
        "agent": list(agents),
        "compound": list(compound),
    }
    wire = {
        kind: [engine.parse(kind, text) for text in texts] for kind, texts in typed.items() if texts
    }
    engine.check(wire)
    return wire


def _split_with(values: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``-W`` values into (fact terms, classes): a word with an operator (every one
    has ``=``, ``<`` or ``>``; a lone ``!`` is not one) is a fact term."""
    facts: list[str] = []
    classes: list[str] = []
    for value in values:
        for word in value.split():
            (facts if any(char in "=<>" for char in word) else classes).append(word)
    return facts, classes
