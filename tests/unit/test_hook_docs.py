"""docs/plugins.md documents every hook specification, and nothing that is not one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from orch.core import hookspecs

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _hooks() -> set[str]:
    return {name for name, value in vars(hookspecs).items()
            if name.startswith("orch_") and inspect.isfunction(value)}


def test_the_hook_reference_lists_exactly_the_hookspecs() -> None:
    table = set(re.findall(r"^\| `(orch_\w+)\(", DOC.read_text(), re.M))
    assert table == _hooks()


def test_every_hook_named_in_the_docs_exists() -> None:
    named = set(re.findall(r"\b(orch_[a-z_]+)\(", DOC.read_text()))
    assert named <= _hooks(), f"not hooks: {sorted(named - _hooks())}"


def test_every_hookspec_says_when_it_is_called() -> None:
    missing = [name for name in sorted(_hooks())
               if "Called" not in (getattr(hookspecs, name).__doc__ or "")]
    assert missing == []
