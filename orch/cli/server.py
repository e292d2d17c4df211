"""``orch server``: the daemon every node runs."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import click

from orch.cli.main import configure_logging
from orch.core.errors import OrchError

if TYPE_CHECKING:
    from orch.core.config import Settings


@click.command()
@click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
              help="YAML config file [env ORCH_CONFIG].")
@click.option("--identity", metavar="NAME", help="This node's name (default: host name).")
@click.option("--broker", metavar="URL[,URL...]", help="Broker URL(s) [env ORCH_BROKER].")
@click.option("--collective", metavar="NAME", help="Collective to serve (default: orch).")
@click.option("--facts", metavar="FILE[,FILE...]", help="YAML/JSON fact files.")
@click.option("--classes", metavar="FILE", help="Puppet classes.txt file.")
@click.option("--agents", metavar="NAME[,NAME...]", help="Agents to host (default: all).")
@click.option("--workers", type=int, metavar="N", help="Actions run at the same time.")
@click.option("--security", metavar="PROVIDER", help="Security provider (default x509).")
@click.option("--tls-cert", metavar="FILE", help="Node certificate (PEM).")
@click.option("--tls-key", metavar="FILE", help="Its private key (PEM).")
@click.option("--tls-ca", metavar="FILE", help="CA certificate (PEM).")
@click.option("--tls-crl", metavar="FILE",
              help="Certificate revocation list (PEM), re-read on SIGHUP.")
@click.option("--ssldir", metavar="DIR", help="Adopt a Puppet ssl directory instead.")
@click.option("--policy-dir", metavar="DIR", help="Directory of <agent>.policy files.")
@click.option("--audit-log", metavar="FILE", help="JSON-lines audit log.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Logging threshold (default: info).")
@click.option("--pidfile", metavar="FILE",
              help="Write the daemon's pid to FILE while it runs (refused if FILE names a "
                   "running process).")
def server(config_file: str | None, log_level: str | None, pidfile: str | None,
           **flags: str | None) -> None:
    """Run the node daemon: serve this node's agents until SIGTERM or SIGINT.

    Settings come from defaults, then --config, then ORCH_* environment variables, then
    these flags. SIGHUP re-reads them, with agents, policies, facts, classes and the x509
    credentials and CRL, without dropping a request. SIGTERM stops taking requests and gives
    running actions up to shutdown_timeout to reply. The daemon reconnects forever when the
    broker goes away.
    """
    from orch.cli.context import registry as cli_registry
    from orch.core.config import load_settings
    from orch.core.daemon import Server

    def reload_settings() -> Settings:
        return load_settings(config_file, {**flags, "log_level": log_level},
                             registry=registry)

    registry = cli_registry()
    try:
        settings = reload_settings()
        configure_logging(settings.log_level)
        daemon = Server(settings, registry, reload_settings)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    from orch.core.pidfile import PidFile

    try:
        pid_file = PidFile(pidfile).__enter__() if pidfile is not None else None
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        clean = daemon.run()
    finally:
        if pid_file is not None:
            pid_file.__exit__(None, None, None)
    if not clean:
        # Actions abandoned at shutdown_timeout hold threads Python cannot stop, and the
        # interpreter would wait for them at exit: their callers were already answered.
        logging.shutdown()
        os._exit(0)
