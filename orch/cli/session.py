"""``orch session start|stop|status``: the resident session (:mod:`orch.resident`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from orch.cli.output import print_json
from orch.core.timefmt import duration_text
from orch.resident import wire

if TYPE_CHECKING:
    from orch.resident.control import SessionStatus

#: ``orch session status`` when no session runs, as ``systemctl status`` does for a stopped unit.
EXIT_NOT_RUNNING = 3


@click.group()
def session() -> None:
    """Keep orch's imports warm so that later commands start faster.

    \b
    A session is a process of yours that has already imported click, kombu, the
    security provider and orch. Each later `orch` command run with the same Python
    (same virtualenv, path, user, namespaces and control group: each ssh login has
    its own session) hands its arguments, environment, working directory and
    terminal to it, and a fresh child of the session runs it: settings, plugins,
    certificates and the broker connection are read anew each time. A command the
    session cannot take runs by itself, as without one.

    \b
    orch session start            start one (stops after 15 minutes without a command)
    orch session status           is one running, and what has it served
    orch session stop             stop it after the commands it is running
    ORCH_SESSION=off orch ...     run one command by itself
    ORCH_SESSION=on               use a running one, but never start one by itself
    (unset, or auto)              the default: a command that finds none starts one
    """


@session.command()
@click.option("--idle", type=click.FloatRange(min=0), default=wire.DEFAULT_IDLE,
              show_default=True,
              help="Stop after this many seconds without a command (0: only when stopped).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def start(idle: float, as_json: bool) -> None:
    """Start a session for this Python, user and login (nothing happens if one runs)."""
    from orch.resident import control

    with _reported():
        current, new = control.start(idle)
    if as_json:
        print_json({**current.to_json(), "new": new})
        return
    if new:
        click.echo(f"orch session started (pid {current.pid}); orch commands run from this "
                   "Python now start warm.")
    else:
        click.echo(f"orch session already running (pid {current.pid}).")
    click.echo(f"Stop it with `orch session stop`; {_idle_text(current.idle)}.")


@session.command()
@click.option("--json", "as_json", is_flag=True, help="Print the final status as JSON.")
def stop(as_json: bool) -> None:
    """Stop the session; commands it is running still finish."""
    from orch.resident import control

    with _reported():
        current = control.stop()
    if as_json:
        _print_json(current)
    elif current is None:
        click.echo("No orch session is running.")
    elif current.running:
        click.echo(f"orch session {current.pid} stops after the {current.running} command(s) "
                   "it is running.")
    else:
        click.echo(f"orch session {current.pid} stopped after {current.served} command(s).")


@session.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (null if none).")
def status(as_json: bool) -> None:
    """Say whether a session runs (exit 3 when none does)."""
    from orch.resident import control

    with _reported():
        current = control.status()
    if as_json:
        _print_json(current)
    elif current is None:
        click.echo("No orch session is running; `orch session start` starts one.")
    else:
        up = duration_text(time.time() - current.started)
        click.echo(f"orch session {current.pid}: up {up}, "
                   f"{current.served} command(s) served, {current.running} running, "
                   f"{current.modules} modules imported")
        click.echo(f"  socket: {current.socket}")
        click.echo(f"  log:    {control.log_path(current.socket)}")
        click.echo(f"  {_idle_text(current.idle)}"
                   + (f"; stopping: {current.stopping}" if current.stopping else ""))
    if current is None:
        raise click.exceptions.Exit(EXIT_NOT_RUNNING)


def _idle_text(idle: float) -> str:
    if idle <= 0:
        return "it runs until stopped"
    return f"it stops by itself after {duration_text(idle)} without a command"


@contextmanager
def _reported() -> Iterator[None]:
    """A session that cannot be started or asked: its message, exit 1."""
    from orch.resident.control import SessionError

    try:
        yield
    except SessionError as exc:
        raise click.ClickException(str(exc)) from None


def _print_json(current: SessionStatus | None) -> None:
    print_json(current.to_json() if current is not None else None)
