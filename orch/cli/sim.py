"""``orch sim``: a simulated fleet of full orch servers on a real broker, until stopped."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orch.cli.context import registry as cli_registry
from orch.cli.main import configure_logging

if TYPE_CHECKING:
    from orch.sim import Progress

#: ``--ca`` value asking for a new CA on every start.
THROW_AWAY = "throw-away"


def default_state_dir(collective: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                            ".local", "state")
    return Path(base) / "orch" / "sim" / collective


class ProgressLine:
    """Start progress on stderr: one line rewritten in place on a terminal, a line a second
    otherwise; nothing for fleets smaller than ``quiet_below``."""

    def __init__(self, quiet_below: int = 0) -> None:
        self.tty = sys.stderr.isatty()
        self.quiet_below = quiet_below
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        if progress.total < self.quiet_below:
            return
        now = time.monotonic()
        if not progress.ready and now - self.last < (0.2 if self.tty else 1.0):
            return
        self.last = now
        if self.tty:
            click.echo(f"\r{progress.line()}\033[K", nl=progress.ready, err=True)
        else:
            click.echo(progress.line(), err=True)


@click.command()
@click.option("-n", "--nodes", "count", type=int, required=True, metavar="N",
              help="How many nodes to simulate.")
@click.option("--broker", envvar="ORCH_BROKER", required=True, metavar="URL",
              help="Broker URL (amqp://, redis://) [env ORCH_BROKER].")
@click.option("--workers", type=int, default=None, metavar="K",
              help="Worker processes to spread the nodes over (default: one per core).")
@click.option("--collective", default="orch", show_default=True, help="Collective name.")
@click.option("--ca", "ca", default=None, metavar=f"DIR|{THROW_AWAY}",
              help="An `orch ca` directory to issue the node certificates from; "
                   f"'{THROW_AWAY}' makes a new CA on every start (default: the "
                   "simulation's own CA, kept in the state directory).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the CA, the client certificate and client.yaml go "
                   "(default: $XDG_STATE_HOME/orch/sim/COLLECTIVE).")
@click.option("--seed", type=int, default=7, show_default=True, help="Fact generator seed.")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="YAML settings for every simulated node, e.g. plugin sections that "
                   "select a plugin's simulated backend (broker and security are the "
                   "simulation's own).")
@click.option("--start-timeout", type=float, default=None, metavar="SECONDS",
              help="Give up when the nodes are not all consuming by then "
                   "(default: 60 s plus 10 ms a node).")
@click.option("--agents", "agents", default=None, metavar="NAME[,NAME]",
              help="Host only these agents (rpcutil always); default: every installed "
                   "agent that offers a simulation.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, help="Logging threshold (default: warning).")
def sim(count: int, broker: str, workers: int | None, collective: str, ca: str | None,
        state_dir: Path | None, seed: int, config_file: str | None,
        start_timeout: float | None, agents: str | None, log_level: str | None) -> None:
    """Simulate N nodes, each a full orch server, until SIGTERM or Ctrl-C.

    Every node has its own queue on the broker, its own key and certificate from one CA,
    and facts from a realistic distribution; it verifies every request and signs every
    reply. Nodes host only agents that offer a simulation (rpcutil, and plugins'
    simulations such as orch-puppet's, which keep their state in memory): nothing a
    request asks for acts on this machine. The nodes are spread over worker processes.

    The client settings are written to STATE_DIR/client.yaml; the command to use them is
    printed once every node is consuming.
    """
    import shutil

    from orch.core.config import read_config_file
    from orch.core.errors import OrchError
    from orch.sim import SimConfig, SimError, Simulation
    from orch.sim.simulation import default_workers

    if log_level:
        configure_logging(log_level)
    state = state_dir or default_state_dir(collective)
    ca_dir: Path | None = None
    if ca == THROW_AWAY:  # the old CA's certificates go with it
        shutil.rmtree(state / "ca", ignore_errors=True)
        shutil.rmtree(state / "issued", ignore_errors=True)
    elif ca is not None:
        ca_dir = Path(ca).expanduser()
    try:
        extra = read_config_file(config_file) if config_file else {}
        config = SimConfig(nodes=count, broker=broker, state_dir=state,
                           extra_settings=extra,
                           collective=collective,
                           workers=default_workers() if workers is None else workers,
                           seed=seed, ca_dir=ca_dir, start_timeout=start_timeout,
                           agents=None if agents is None else tuple(
                               a.strip() for a in agents.split(",") if a.strip()))
        if config.workers == 0:
            raise SimError("--workers must be at least 1 (orch demo serves a fleet in one "
                           "process)")
        simulation = Simulation(config, ProgressLine(), cli_registry())
        simulation.prepare()
    except (OrchError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"orch sim: starting {count} nodes in {min(config.workers, count)} worker "
               f"process(es) on {simulation.display_url} (collective {collective})", err=True)
    simulation.handle_signals()
    try:
        simulation.start()
    except OrchError as exc:
        simulation.stop()
        raise click.ClickException(str(exc)) from None
    try:
        pids = " ".join(str(pid) for pid in simulation.worker_pids)
        click.echo(f"orch sim: {count} nodes ready in {simulation.progress.elapsed:.1f}s "
                   f"(worker pids {pids})")
        click.echo(f"client settings: {simulation.client_config}")
        click.echo(f"  ORCH_CONFIG={simulation.client_config} orch ping")
        click.echo("SIGTERM or Ctrl-C stops every node.", nl=True)
        sys.stdout.flush()
        failure = simulation.serve_until_signalled()
    finally:
        simulation.stop()
    if failure:
        raise click.ClickException(failure)
    click.echo("orch sim: stopped", err=True)
