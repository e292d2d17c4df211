"""The demo's ``orch>`` prompt: a real line editor over the same click commands.

A bare ``input()`` had no history, no line editing and no completion, did not know ``help``,
and Ctrl-C quit the whole demo. On a terminal this uses prompt_toolkit: history (↑/↓,
Ctrl-R), Emacs-style editing, Tab completion from the click commands themselves (commands,
options, agents, actions and their inputs — :class:`ClickCompleter` asks click's own shell
completion, so it completes exactly what ``orch completion`` does), ``help [COMMAND]``, and
Ctrl-C that cancels the line being typed (or the command running) and stays at the prompt.
Without a terminal (a pipe, a test) the lines are read plainly.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from prompt_toolkit.completion import Completion
    from prompt_toolkit.document import Document

PROMPT = "orch> "
#: Commands the prompt does not run: they would start a second fleet or a daemon inside it.
NOT_HERE = frozenset({"demo", "server", "sim"})

RunCommand = Callable[[list[str]], int]


def words(line: str) -> list[str] | None:
    """The command's words, without a leading ``orch``; None if the line does not parse."""
    try:
        args = shlex.split(line)
    except ValueError:
        return None
    return args[1:] if args[:1] == ["orch"] else args


def completions(root: click.Command, line: str) -> list[tuple[str, str]]:
    """``(text, help)`` click offers for the last word of ``line`` (click's shell completion).
    """
    from click.shell_completion import ShellComplete

    ended = line.endswith(" ")
    try:
        args = shlex.split(line)
    except ValueError:
        return []
    if args[:1] == ["orch"]:
        args = args[1:]
    incomplete = "" if ended or not args else args.pop()
    shell = ShellComplete(root, {}, "orch", "_ORCH_COMPLETE")
    try:
        items = shell.get_completions(args, incomplete)
    except Exception:  # completion must never break the prompt
        return []
    return [(item.value, item.help or "") for item in items if item.type == "plain"]


class ClickCompleter:
    """prompt_toolkit completion from :func:`completions` (built lazily: it imports
    prompt_toolkit)."""

    def __init__(self, root: click.Command) -> None:
        self.root = root

    def build(self) -> Any:
        from prompt_toolkit.completion import Completer, Completion

        root = self.root

        class _Completer(Completer):
            def get_completions(self, document: Document,
                                event: Any) -> Iterator[Completion]:
                text = document.text_before_cursor
                word = "" if text.endswith(" ") else (text.split() or [""])[-1]
                for value, meta in completions(root, text):
                    yield Completion(value, start_position=-len(word), display_meta=meta)

        return _Completer()


def show_help(root: click.Command, args: list[str], run: RunCommand) -> None:
    """``help`` lists the commands; ``help COMMAND …`` shows that command's help."""
    if args:
        run([*args, "--help"])
        return
    run(["--help"])
    click.echo("\nAt this prompt: Tab completes, ↑/↓ and Ctrl-R search the history, Ctrl-C "
               "cancels the line or the running command, `exit` or Ctrl-D leaves.")


def handle(line: str, root: click.Command, run: RunCommand) -> bool:
    """Run one prompt line; False when the prompt should end."""
    line = line.strip()
    if not line:
        return True
    if line in ("exit", "quit"):
        return False
    args = words(line)
    if args is None:
        click.echo("cannot parse that line (an unclosed quote?)")
        return True
    if not args:
        return True
    if args[0] in ("help", "?"):
        show_help(root, args[1:], run)
    elif args[0] in NOT_HERE:
        click.echo(f"`{args[0]}` is not available inside the demo prompt")
    else:
        try:
            run(args)
        except KeyboardInterrupt:
            click.echo("\n(interrupted)")
    return True


def read_lines(interactive: bool, root: click.Command,
               history_file: str | None = None) -> Iterable[str | None]:
    """The lines typed; None for a line cancelled with Ctrl-C. Ends at Ctrl-D / EOF."""
    if interactive:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, InMemoryHistory

        history = FileHistory(history_file) if history_file else InMemoryHistory()
        session: PromptSession[str] = PromptSession(
            history=history, completer=ClickCompleter(root).build(),
            complete_while_typing=False)
        while True:
            try:
                yield session.prompt(PROMPT)
            except KeyboardInterrupt:
                yield None
            except EOFError:
                return
    else:
        while True:
            click.echo(PROMPT, nl=False)
            line = sys.stdin.readline()
            if not line:
                click.echo()
                return
            yield line


def run_prompt(root: click.Command, run: RunCommand, *, interactive: bool | None = None,
               history_file: str | None = None) -> None:
    """The ``orch>`` loop until ``exit``, Ctrl-D or end of input."""
    if interactive is None:
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
    for line in read_lines(interactive, root, history_file):
        if line is None:
            continue  # Ctrl-C: the line is dropped, the prompt stays
        if not handle(line, root, run):
            return
