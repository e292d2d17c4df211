"""``orch server``: the daemon every node runs."""

from __future__ import annotations

import click

from orch.core.errors import OrchError


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
    from orch.cli.serve import serve, start

    try:
        daemon, pid_file = start(cli_registry(), config_file, log_level, pidfile, flags)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    serve(daemon, pid_file)
