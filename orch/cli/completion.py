"""``orch completion bash|zsh|fish``: the shell completion script, from click's own support.

Commands, options, agents, actions and each action's inputs complete (the same agent set
calls use), plugin commands included: the script asks ``orch`` itself at each Tab.
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script for SHELL.

    \b
    bash:  eval "$(orch completion bash)"       (in ~/.bashrc)
    zsh:   eval "$(orch completion zsh)"        (in ~/.zshrc)
    fish:  orch completion fish > ~/.config/fish/completions/orch.fish
    """
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    cls = get_completion_class(shell)
    if cls is None:  # every SHELLS entry is one of click's; guard a click that dropped one
        raise click.UsageError(f"click offers no completion for {shell}")
    name = root.info_name or "orch"
    script = cls(root.command, {}, name, f"_{name.replace('-', '_').upper()}_COMPLETE")
    click.echo(script.source())
