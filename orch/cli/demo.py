"""``orch demo``: a simulated fleet in this process, a guided tour, then a prompt."""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from pathlib import Path

import click

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


def run_cli(args: list[str]) -> int:
    """Run one ``orch`` command in this process; return its exit code."""
    from orch.cli.main import cli

    try:
        cli.main(args=args, prog_name="orch", standalone_mode=False)
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
@click.option("--collective", default="orch", show_default=True, help="Collective name.")
@click.option("--seed", type=int, default=7, show_default=True, help="Fact generator seed.")
@click.option("--tour/--no-tour", default=True, show_default=True, help="Run the tour.")
@click.option("--interactive/--no-interactive", default=None,
              help="Offer an orch> prompt afterwards (default: when stdin is a terminal).")
@click.option("--serve", is_flag=True,
              help="After the tour, keep serving until Ctrl-C (for other shells).")
@click.option("--insecure", is_flag=True,
              help="Development only: run without certificates or signatures.")
def demo(count: int, broker: str, collective: str, seed: int, tour: bool,
         interactive: bool | None, serve: bool, insecure: bool) -> None:
    """Run a simulated fleet and walk through what orch does with it.

    Each simulated node is a real orch server instance (its own identity, certificate,
    facts, classes, agents and counters) sharing one broker connection in this process.
    A throw-away CA signs every request and reply, as in production.
    """
    with tempfile.TemporaryDirectory(prefix="orch-demo-") as scratch:
        _run_demo(count, broker, collective, seed, tour, interactive, serve,
                  None if insecure else Path(scratch) / "ca")


def _run_demo(count: int, broker: str, collective: str, seed: int, tour: bool,
              interactive: bool | None, serve: bool, ca_dir: Path | None) -> None:
    from orch.core.config import load_settings
    from orch.core.errors import OrchError
    from orch.core.fleet import Fleet
    from orch.demo import DemoPKI, demo_specs

    client_env = {"broker": broker, "collective": collective}
    try:
        pki = DemoPKI.create(ca_dir) if ca_dir is not None else None
        client_env.update(pki.client_settings if pki else {"security": "insecure"})
        for key, value in client_env.items():
            os.environ[f"ORCH_{key.upper()}"] = value
        settings = load_settings(overrides=client_env)
        fleet = Fleet(settings, demo_specs(count, seed),
                      security_for=pki.node_security if pki else None).start()
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    first = fleet.nodes[0].identity
    click.secho(f"orch demo: {count} simulated nodes serving on {fleet.transport.display_url}"
                + (f", signed with a throw-away CA in {ca_dir}" if ca_dir else ", UNSIGNED"),
                bold=True)
    exports = " ".join(f"ORCH_{k.upper()}='{v}'" for k, v in client_env.items())
    try:
        if tour:
            for explanation, command in TOUR:
                line = command.format(first=first)
                click.secho(f"\n# {explanation}", fg="cyan")
                click.secho(f"$ orch {line}", bold=True)
                run_cli(shlex.split(line))
        if interactive or (interactive is None and sys.stdin.isatty()):
            _prompt(broker, exports)
        elif serve:
            click.echo(f"\nServing. In another shell: {exports} orch ping   (Ctrl-C stops)")
            _wait_forever()
    finally:
        fleet.stop()


def _prompt(broker: str, exports: str) -> None:
    click.secho("\nYour turn: type any orch command (for example `find -C nginx` or "
                "`rpc rpcutil --help`); `exit` or Ctrl-D leaves.", fg="green")
    if not broker.startswith("memory"):
        click.echo(f"Other shells can join: {exports} orch ping")
    while True:
        try:
            line = input("orch> ").strip()
        except (EOFError, KeyboardInterrupt):
            click.echo()
            return
        if line in ("exit", "quit"):
            return
        if not line:
            continue
        try:
            args = shlex.split(line)
        except ValueError as exc:
            click.echo(f"cannot parse that line: {exc}")
            continue
        if args and args[0] == "orch":
            args = args[1:]
        if args and args[0] in ("demo", "server"):
            click.echo(f"`{args[0]}` is not available inside the demo prompt")
            continue
        run_cli(args)


def _wait_forever() -> None:
    import threading

    stop = threading.Event()
    try:
        while not stop.wait(3600):
            pass
    except KeyboardInterrupt:
        return
