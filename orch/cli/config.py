"""``orch config show``: the settings a client command would use, and where each came from."""

from __future__ import annotations

import click

from orch.cli import output
from orch.cli.context import registry as cli_registry
from orch.core.errors import OrchError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def config() -> None:
    """Inspect the client's settings."""


@config.command()
@click.option("--config", "config_file", metavar="FILE",
              help="Read FILE instead of searching ($ORCH_CONFIG, "
                   "~/.config/orch/client.yaml, /etc/orch/client.yaml).")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def show(config_file: str | None, json_output: bool) -> None:
    """Print every effective setting with its origin: default, the config file, an
    ORCH_* variable. Passwords in URLs are hidden."""
    from orch.core.clientconfig import explain_settings, find_client_config, redact

    try:
        path, rows = explain_settings(config_file, registry=cli_registry())
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    _, why = find_client_config(config_file)
    if json_output:
        output.print_json({"config_file": path, "config_file_origin": why,
                           "settings": [{"name": r.name, "value": redact(r.value),
                                         "origin": r.origin} for r in rows]})
        return
    click.echo(f"config file: {path} ({why})" if path else f"config file: {why}")
    width = max(len(r.name) for r in rows)
    for row in rows:
        value = redact(row.value)
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        click.echo(f"{row.name:<{width}} = {text:<40} ({row.origin})")
