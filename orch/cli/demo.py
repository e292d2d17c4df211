"""``orch demo``: a simulated fleet in this process, a guided tour, then a prompt."""

from __future__ import annotations

import shlex
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import click

from orch.cli.context import registry as cli_registry

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry

TOUR = (
    ("Ping every node; the command returns as soon as replies stop coming.",
     "ping"),
    ("Find production web servers by fact (one identity per line, for pipes).",
     "find -F role=web -F environment=production"),
    ("Run an action on a compound selection; each node's reply, then a summary.",
     'rpc rpcutil get_fact fact=os.family -S "role=db and (datacenter=ams1 or datacenter=fra1)"'),
    ("How a fact is distributed over the fleet.",
     "facts os.name"),
    ("Everything one node knows about itself.",
     "inventory {first}"),
)


def run_cli(args: list[str], environ: Mapping[str, str] | None = None,
            registry: PluginRegistry | None = None) -> int:
    """Run one ``orch`` command in this process; return its exit code. ``environ`` holds
    ``ORCH_*`` settings for it (the simulated fleet's), layered over the process's;
    ``registry`` is the demo's plugins (None: the command's own entry point picks)."""
    from orch.cli.context import Invocation
    from orch.cli.main import cli

    try:
        cli.main(args=args, prog_name="orch", standalone_mode=False,
                 obj=Invocation(registry, dict(environ or {})))
    except SystemExit as exc:
        return int(exc.code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        return 1
    return 0


@click.command()
@click.option("-n", "--nodes", "count", type=click.IntRange(1, 20000), default=50,
              show_default=True, help="How many nodes to simulate.")
@click.option("--broker", default="memory://", show_default=True, metavar="URL",
              help="Serve the fleet on this broker; with amqp:// or redis:// other shells "
                   "can use it too.")
@click.option("--workers", type=click.IntRange(0), default=None, metavar="K",
              help="Worker processes for the nodes (default: none on memory://, which "
                   "lives in this process; one per core on a real broker).")
@click.option("--collective", default="orch", show_default=True, help="Collective name.")
@click.option("--seed", type=int, default=7, show_default=True, help="Fact generator seed.")
@click.option("--tour/--no-tour", default=True, show_default=True, help="Run the tour.")
@click.option("--interactive/--no-interactive", default=None,
              help="Offer an orch> prompt afterwards (default: when stdin is a terminal).")
@click.option("--serve", is_flag=True,
              help="After the tour, keep serving until Ctrl-C (for other shells).")
@click.option("--api", "api_listen", metavar="HOST:PORT",
              help="Also serve the HTTP API and web console there (needs orch[api]); "
                   "keeps serving after the tour until Ctrl-C.")
@click.option("--insecure", is_flag=True,
              help="Development only: run without certificates or signatures.")
@click.option("--config", "config_file", default=None, metavar="FILE",
              help="YAML settings for every simulated node, e.g. plugin sections that "
                   "select a plugin's simulated backend.")
def demo(count: int, broker: str, workers: int | None, collective: str, seed: int,
         tour: bool, interactive: bool | None, serve: bool, insecure: bool,
         api_listen: str | None, config_file: str | None) -> None:
    """Run a simulated fleet and walk through what orch does with it.

    Each simulated node is a real orch server instance (its own identity, certificate,
    facts, classes and counters) — the machinery of `orch sim`, served in this process
    on memory://. A throw-away CA signs every request and reply, as in production.
    Simulated nodes host only agents that offer a simulation (rpcutil, and plugins'
    simulations such as orch-puppet's): nothing here acts on this machine.
    """
    from orch.core.config import read_config_file
    from orch.core.errors import OrchError
    from orch.sim.simulation import default_workers

    try:
        node_settings = read_config_file(config_file) if config_file else {}
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    if workers is None:
        workers = 0 if broker.strip().startswith("memory:") else default_workers()
    with tempfile.TemporaryDirectory(prefix="orch-demo-") as scratch:
        _run_demo(count, broker, workers, collective, seed, tour, interactive, serve,
                  Path(scratch), not insecure, api_listen, node_settings)


def _run_demo(count: int, broker: str, workers: int, collective: str, seed: int,
              tour: bool, interactive: bool | None, serve: bool, scratch: Path,
              secure: bool, api_listen: str | None = None,
              node_settings: dict[str, object] | None = None) -> None:
    from orch.cli.sim import ProgressLine
    from orch.core.errors import OrchError
    from orch.sim import SimConfig, Simulation
    from orch.sim.facts import node_specs

    registry = cli_registry()
    try:
        simulation = Simulation(SimConfig(nodes=count, broker=broker, state_dir=scratch,
                                          collective=collective, workers=workers,
                                          seed=seed, secure=secure,
                                          keep_certificates=False,
                                          extra_settings=dict(node_settings or {})),
                                ProgressLine(quiet_below=1000), registry)
        simulation.prepare()
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    client_env = simulation.client_settings
    tour_env = {f"ORCH_{key.upper()}": value for key, value in client_env.items()}
    try:
        simulation.start()
    except OrchError as exc:
        raise click.ClickException(str(exc)) from None
    first = node_specs(count, seed, 1, 1)[0].identity
    click.secho(f"orch demo: {count} simulated nodes serving on {simulation.display_url}"
                + (f", signed with a throw-away CA in {scratch / 'ca'}" if secure
                   else ", UNSIGNED"), bold=True)
    exports = " ".join(f"ORCH_{k.upper()}='{v}'" for k, v in client_env.items())
    stop_api = _start_api(api_listen, client_env, registry) if api_listen else None
    serve = serve or stop_api is not None
    try:
        if tour:
            for explanation, command in TOUR:
                line = command.format(first=first)
                click.secho(f"\n# {explanation}", fg="cyan")
                click.secho(f"$ orch {line}", bold=True)
                run_cli(shlex.split(line), tour_env, registry)
        if interactive or (interactive is None and sys.stdin.isatty()):
            _prompt(broker, exports, tour_env, registry)
        elif serve:
            click.echo(f"\nServing. In another shell: {exports} orch ping   (Ctrl-C stops)")
            _wait_forever()
    finally:
        if stop_api is not None:
            stop_api()
        simulation.stop()


def _start_api(listen: str, client_env: dict[str, str],
               registry: PluginRegistry) -> Callable[[], None]:
    """Start ``orch api`` in this process (the fleet may be on memory://); its stop."""
    from orch.core.errors import OrchError

    try:
        from orch.api.demo import start_demo_api
    except ImportError as exc:
        raise click.UsageError(f"--api needs the api extra ({exc.name} is missing): "
                               "pip install 'orch[api]'") from None
    try:
        api = start_demo_api(listen, client_env, registry)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    click.secho(f"orch demo: API and console on {api.url}/console/ — API token: {api.token}",
                bold=True)
    return api.stop


def _prompt(broker: str, exports: str, environ: Mapping[str, str],
            registry: PluginRegistry) -> None:
    from orch.cli.main import cli
    from orch.cli.prompt import run_prompt

    click.secho("\nYour turn: type any orch command (for example `find -C nginx` or "
                "`rpc rpcutil --help`); `help` lists them, Tab completes, Ctrl-C cancels, "
                "`exit` or Ctrl-D leaves.", fg="green")
    if not broker.startswith("memory"):
        click.echo(f"Other shells can join: {exports} orch ping")
    run_prompt(cli, lambda args: run_cli(args, environ, registry))


def _wait_forever() -> None:
    import threading

    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        return
