"""Installing orch-puppet into a fresh virtualenv beside orch adds the agent and the
``orch puppet`` commands; uninstalling removes them. Nothing but entry points connects
the two distributions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import orch

import orch_puppet

ORCH_ROOT = Path(orch.__file__).resolve().parent.parent
PLUGIN_ROOT = Path(orch_puppet.__file__).resolve().parent.parent


def run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run in a neutral directory with no PYTHONPATH: only the venv's own packages."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("ORCH_")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, cwd="/", env=env)


def test_install_and_uninstall_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python, pip, orch_bin = (env_dir / "bin" / name for name in ("python", "pip", "orch"))
    assert run(python, "-c", "import orch_puppet").returncode != 0  # really fresh

    installed = run(pip, "install", "-q", "-e", ORCH_ROOT)
    assert installed.returncode == 0, installed.stderr
    plugins = run(orch_bin, "plugins")
    assert plugins.returncode == 0 and "orch-puppet" not in plugins.stdout, plugins.stdout
    assert run(orch_bin, "puppet", "--help").returncode == 2

    # A regular (non-editable) install: the DDL and the Ruby helper must ship as data.
    # From a copy, so that setuptools' build/ directory never lands in the source tree.
    source = tmp_path / "orch-puppet"
    shutil.copytree(PLUGIN_ROOT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench"))
    installed = run(pip, "install", "-q", source)
    assert installed.returncode == 0, installed.stderr
    plugins = run(orch_bin, "plugins")
    line = next(ln for ln in plugins.stdout.splitlines() if ln.startswith("puppet"))
    assert "orch-puppet" in line
    for hook in ("orch_agents", "orch_cli_commands", "orch_fact_sources"):
        assert hook in line
    commands = run(orch_bin, "puppet", "--help")
    assert commands.returncode == 0
    for name in ("status", "runonce", "runall", "summary", "count", "last_run_summary",
                 "enable", "disable", "resource"):
        assert name in commands.stdout
    ddl_help = run(orch_bin, "rpc", "puppet", "runonce", "--help")
    assert ddl_help.returncode == 0 and "splaylimit" in ddl_help.stdout, ddl_help.stdout
    shipped = run(python, "-c", "from orch_puppet.runs import ral_script; "
                  "import orch_puppet.agent as a; from pathlib import Path; "
                  "print(ral_script().is_file(), a.PuppetAgent.ddl().name, "
                  "'site-packages' in a.__file__)")
    assert shipped.stdout.split() == ["True", "puppet", "True"], shipped.stderr

    removed = run(pip, "uninstall", "-y", "-q", "orch-puppet")
    assert removed.returncode == 0, removed.stderr
    plugins = run(orch_bin, "plugins")
    assert "orch-puppet" not in plugins.stdout
    gone = run(orch_bin, "puppet", "status")
    assert gone.returncode == 2 and "No such command 'puppet'" in gone.stderr
    no_agent = run(orch_bin, "rpc", "puppet", "status", "--help")
    assert "puppet" in no_agent.stderr and no_agent.returncode == 2
    assert sys.executable != str(python)
