"""``orch api``: serve the HTTP API and the web console (wiring only; see :mod:`orch.api`)."""

from __future__ import annotations

from collections.abc import Iterable

import click

from orch.cli.context import registry as cli_registry
from orch.core.errors import OrchError
from orch.plugin import hookimpl


@click.command()
@click.option("--listen", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address to listen on.")
@click.option("--tokens", "tokens_file", required=True, metavar="FILE",
              envvar="ORCH_API_TOKENS",
              help="YAML tokens file: each token's name and client certificate and key "
                   "[env ORCH_API_TOKENS].")
@click.option("--tls-listen-cert", metavar="FILE", help="Serve HTTPS with this certificate.")
@click.option("--tls-listen-key", metavar="FILE", help="Its private key.")
@click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
              help="YAML config file [env ORCH_CONFIG].")
@click.option("--broker", envvar="ORCH_BROKER", metavar="URL[,URL...]",
              help="Broker URL(s) [env ORCH_BROKER].")
@click.option("-T", "--target", "collective", envvar="ORCH_COLLECTIVE", metavar="COLLECTIVE",
              help="Collective [env ORCH_COLLECTIVE].")
@click.option("--max-body", type=click.IntRange(1024, 64 * 1024 * 1024), default=64 * 1024,
              show_default=True, help="Largest request body accepted, bytes.")
def api(listen: str, tokens_file: str, tls_listen_cert: str | None,
        tls_listen_key: str | None, config_file: str | None, broker: str | None,
        collective: str | None, max_body: int) -> None:
    """Serve the orch HTTP API and web console until SIGTERM or SIGINT.

    Needs the api extra: pip install 'orch[api]'. Each bearer token in --tokens signs as
    its own client certificate, so node policies (cert=NAME) limit what it may run.
    """
    try:
        from orch.api.context import ApiContext
        from orch.api.serve import Listen, server
        from orch.api.tokens import TokenStore
    except ImportError as exc:
        raise click.UsageError(f"orch api needs the api extra ({exc.name} is missing): "
                               "pip install 'orch[api]'") from None
    from orch.core.config import load_settings

    try:
        address = Listen.parse(listen)
        registry = cli_registry()
        context = ApiContext(load_settings(config_file, {"broker": broker,
                                                         "collective": collective},
                                           registry=registry),
                             TokenStore.load(tokens_file), registry, max_body=max_body)
        srv = server(context, address, tls_listen_cert, tls_listen_key)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"orch api: console and API on {address.url(tls_listen_cert is not None)}/",
               err=True)
    srv.run()


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    return [api]
