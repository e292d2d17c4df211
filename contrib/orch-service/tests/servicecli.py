"""Running the ``orch`` CLI in this process against an orch.testing fleet (a module of
its own: ``conftest`` is a name every test directory has)."""

from __future__ import annotations

from click.testing import CliRunner, Result
from orch.cli.main import cli
from orch.testing import OrchFleet


def run_cli(fleet: OrchFleet, *args: str, input: str | None = None) -> Result:
    """``orch ARGS`` in this process against ``fleet`` (memory broker, the fleet's CA)."""
    settings = fleet.settings
    argv = [*args, "--broker", "memory://", "-T", settings.collective, "--security", "x509",
            "--tls-cert", str(settings.tls_cert), "--tls-key", str(settings.tls_key),
            "--tls-ca", str(settings.tls_ca), "--discovery-timeout", "1"]
    result = CliRunner().invoke(cli, argv, input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result
