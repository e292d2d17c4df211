"""The install test every plugin distribution needs: into a fresh virtualenv beside orch,
its agent and commands appear; uninstalled, they are gone. Nothing but entry points connects
a plugin to orch, and this proves it from outside (no PYTHONPATH, no ``ORCH_*`` variables,
a regular non-editable install from a copy, so package data such as the DDL must ship).

Exported as :func:`orch.testing.check_fresh_install`; orch-puppet, orch-service and
orch-package use it, and a third-party plugin's tests can too (docs/author-kit.md). It needs
orch as a source checkout (it installs orch itself into the new virtualenv) and skips
otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["check_fresh_install", "run_isolated"]

#: Files never copied from the plugin's tree: build products and its own tests.
IGNORED = ("build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench")


def run_isolated(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run in ``/`` with no PYTHONPATH, VIRTUAL_ENV or ``ORCH_*`` (but ``ORCH_SESSION=off``:
    no session starts for the new virtualenv and outlives the test): only the venv's
    packages."""
    from orch.testing.servers import bare_environment  # orch.testing imports this module

    env = {k: v for k, v in bare_environment().items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd="/", env=env)


def check_fresh_install(tmp_path: Path, plugin_root: Path, *, distribution: str, module: str,
                        command: str, help_words: Sequence[str] = (),
                        hooks: Sequence[str] = ("orch_agents", "orch_cli_commands"),
                        rpc_help: tuple[str, str, str] | None = None,
                        shipped: tuple[str, Sequence[str]] | None = None) -> None:
    """Install orch, then the distribution at ``plugin_root`` (from a copy), into a new
    virtualenv under ``tmp_path``; check it, uninstall it, check it is gone.

    ``distribution`` is the pip name, ``module`` its top-level package, ``command`` the
    ``orch`` subcommand it adds (whose ``--help`` must name ``help_words``), ``hooks`` the
    hooks ``orch plugins`` must list for it. ``rpc_help`` is ``(agent, action, text)``: ``orch
    rpc agent action --help`` must show ``text`` (the DDL shipped). ``shipped`` is ``(python
    code, expected words)``: the code, run by the venv's python, must print those words.
    """
    import orch

    orch_root = Path(orch.__file__).resolve().parent.parent
    if not (orch_root / "setup.cfg").is_file():
        pytest.skip("orch is not a source checkout: cannot install it into a new virtualenv")
    run = run_isolated
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python, pip, orch_bin = (env_dir / "bin" / name for name in ("python", "pip", "orch"))
    assert run(python, "-c", f"import {module}").returncode != 0  # really fresh

    installed = run(pip, "install", "-q", "-e", orch_root)
    assert installed.returncode == 0, installed.stderr
    plugins = run(orch_bin, "plugins")
    assert plugins.returncode == 0 and distribution not in plugins.stdout, plugins.stdout
    assert run(orch_bin, command, "--help").returncode == 2

    # From a copy, so that setuptools' build/ directory never lands in the source tree.
    source = tmp_path / distribution
    shutil.copytree(plugin_root, source, ignore=shutil.ignore_patterns(*IGNORED))
    installed = run(pip, "install", "-q", source)
    assert installed.returncode == 0, installed.stderr
    plugins = run(orch_bin, "plugins")
    line = next(ln for ln in plugins.stdout.splitlines() if ln.startswith(command))
    assert distribution in line, line
    for hook in hooks:
        assert hook in line, (hook, line)
    commands = run(orch_bin, command, "--help")
    assert commands.returncode == 0, commands.stderr
    for word in help_words:
        assert word in commands.stdout, (word, commands.stdout)
    if rpc_help is not None:
        agent, action, text = rpc_help
        ddl_help = run(orch_bin, "rpc", agent, action, "--help")
        assert ddl_help.returncode == 0 and text in ddl_help.stdout, ddl_help.stdout
    if shipped is not None:
        code, expected = shipped
        printed = run(python, "-c", code)
        assert printed.stdout.split() == list(expected), printed.stderr

    removed = run(pip, "uninstall", "-y", "-q", distribution)
    assert removed.returncode == 0, removed.stderr
    assert distribution not in run(orch_bin, "plugins").stdout
    gone = run(orch_bin, command, "status")
    assert gone.returncode == 2 and f"No such command '{command}'" in gone.stderr, gone.stderr
    if rpc_help is not None:
        assert run(orch_bin, "rpc", rpc_help[0], "status", "--help").returncode == 2
