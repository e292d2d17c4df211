"""docs/cli.md lists every command ``orch --help`` offers, plugins' included (issue 8)."""

from __future__ import annotations

from pathlib import Path

import click

from orch.cli.main import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_every_installed_command_is_in_the_command_table() -> None:
    text = DOCS.read_text()
    table = text[:text.index("\n## ")]
    with click.Context(cli) as ctx:
        names = cli.list_commands(ctx)
    missing = [name for name in names if f"`orch {name}" not in table]
    assert not missing, f"docs/cli.md's command table lacks: {', '.join(missing)}"
