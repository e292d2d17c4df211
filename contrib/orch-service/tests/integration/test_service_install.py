"""Installing orch-service into a fresh virtualenv beside orch adds the agent and the
``orch service``command; uninstalling removes them. Nothing but entry points connects the
two distributions."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import orch

import orch_service

ORCH_ROOT = Path(orch.__file__).resolve().parent.parent
PLUGIN_ROOT = Path(orch_service.__file__).resolve().parent.parent


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
    assert run(python, "-c", "import orch_service").returncode != 0  # really fresh

    installed = run(pip, "install", "-q", "-e", ORCH_ROOT)
    assert installed.returncode == 0, installed.stderr
    assert run(orch_bin, "service", "--help").returncode == 2

    # A regular (non-editable) install from a copy: the DDL must ship as package data.
    source = tmp_path / "orch-service"
    shutil.copytree(PLUGIN_ROOT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "tests", "bench"))
    installed = run(pip, "install", "-q", source)
    assert installed.returncode == 0, installed.stderr
    plugins = run(orch_bin, "plugins")
    line = next(ln for ln in plugins.stdout.splitlines() if ln.startswith("service"))
    assert "orch-service" in line and "orch_agents" in line and "orch_cli_commands" in line
    commands = run(orch_bin, "service", "--help")
    assert commands.returncode == 0 and "restart" in commands.stdout
    ddl_help = run(orch_bin, "rpc", "service", "restart", "--help")
    assert ddl_help.returncode == 0 and "service" in ddl_help.stdout, ddl_help.stdout
    shipped = run(python, "-c", "import orch_service.agent as a; "
                  "print(a._ServiceActions.ddl().name, 'site-packages' in a.__file__)")
    assert shipped.stdout.split() == ["service", "True"], shipped.stderr

    removed = run(pip, "uninstall", "-y", "-q", "orch-service")
    assert removed.returncode == 0, removed.stderr
    assert "orch-service" not in run(orch_bin, "plugins").stdout
    gone = run(orch_bin, "service", "status")
    assert gone.returncode == 2 and "No such command 'service'" in gone.stderr
    no_agent = run(orch_bin, "rpc", "service", "status", "--help")
    assert no_agent.returncode == 2
