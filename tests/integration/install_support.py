"""Support for the tests of an installed orch: build every wheel, install them as an operator
does, run the installed entry points.

Shared by ``test_clean_install.py`` (the wheels in a fresh virtualenv, driven like any
user's) and ``test_install_layout.py`` (the documented Debian layout: that virtualenv at
``<root>/opt/orch``, the shipped config in ``<root>/etc/orch``, logs in
``<root>/var/log/orch``). One session-scoped build serves both (the ``clean_install``
fixture in conftest.py): building and resolving the runtime requirements is the slow part.

Imported like :mod:`orch_integration` (this directory is on ``sys.path``).
"""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from orch_integration import CliResult, clean_environment, pip_build_options

REPO = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 300.0
RUN_TIMEOUT = 60.0
#: Where the documented install puts the virtualenv, relative to the (temporary) root.
VENV_PATH = Path("opt/orch")


def distributions() -> dict[str, Path]:
    """``{name: source}``: orch and every ``contrib/*/`` distribution (from setup.cfg)."""
    found = {"orch": REPO}
    for setup in sorted(REPO.glob("contrib/*/setup.cfg")):
        config = configparser.ConfigParser(interpolation=None)
        config.read(setup)
        found[config["metadata"]["name"]] = setup.parent
    return found


@dataclass(frozen=True)
class CleanInstall:
    """A virtualenv at ``root / VENV_PATH`` holding only the built wheels and what pip
    resolved for them."""

    root: Path

    @property
    def venv(self) -> Path:
        return self.root / VENV_PATH

    @property
    def orch(self) -> list[str]:
        """The installed console script, as a user runs it."""
        return [str(self.venv / "bin" / "orch")]

    @property
    def share(self) -> Path:
        """Where the wheel's data files (config, systemd unit, logrotate) land."""
        return self.venv / "share" / "orch"

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        return run_isolated([*self.orch, *args], env=env, cwd=self.venv)

    def distributions(self) -> set[str]:
        listed = run_isolated(
            [str(self.venv / "bin" / "python"), "-c",
             "import importlib.metadata as m, json; "
             "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"],
            cwd=self.venv)
        assert listed.rc == 0, listed.describe()
        return {name.lower() for name in json.loads(listed.stdout)}


def isolated_environment() -> dict[str, str]:
    """No ORCH_*, PYTEST_*, PYTHONPATH or virtualenv of the outer run leaks into the venv."""
    leaks = ("PYTEST_", "PYTHON", "VIRTUAL_ENV")
    return {k: v for k, v in clean_environment().items() if not k.startswith(leaks)}


def run_isolated(args: list[str], *, cwd: Path, env: Mapping[str, str] | None = None,
                 timeout: float = RUN_TIMEOUT) -> CliResult:
    started = time.monotonic()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                              stdin=subprocess.DEVNULL,
                              env={**isolated_environment(), **(env or {})})
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout:g}s"
                             f"\nstdout: {exc.stdout!r}\nstderr: {exc.stderr!r}") from None
    return CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def copy_sources(destination: Path) -> dict[str, Path]:
    """Each distribution's tree without caches, build output or the other distributions:
    pip builds in place, and the checkout must stay untouched (and shareable by runs)."""
    ignore = shutil.ignore_patterns(".git", "*.egg-info", "build", "dist", "__pycache__",
                                    ".*_cache", ".hypothesis", ".benchmarks", ".tox",
                                    ".venv", "contrib", "tests", "bench")
    copies = {}
    for name, source in distributions().items():
        copies[name] = destination / name
        shutil.copytree(source, copies[name], ignore=ignore)
    return copies


def build_and_install(root: Path) -> CleanInstall:
    """Build every wheel (no dependencies), then one ``pip install`` of all of them into a
    new virtualenv at ``root / VENV_PATH``: runtime requirements come from the package
    index, nothing else."""
    work = root / "build"
    sources = copy_sources(work / "src")
    wheels = work / "wheels"
    built = run_isolated([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-input",
                          "--disable-pip-version-check", *pip_build_options(), "--wheel-dir",
                          str(wheels), *(str(path) for path in sources.values())],
                         cwd=work, timeout=INSTALL_TIMEOUT)
    assert built.rc == 0, built.describe()
    install = CleanInstall(root)
    install.venv.parent.mkdir(parents=True, exist_ok=True)
    created = run_isolated([sys.executable, "-m", "venv", str(install.venv)], cwd=work)
    assert created.rc == 0, created.describe()
    installed = run_isolated([str(install.venv / "bin" / "python"), "-m", "pip", "install",
                              "--no-input", "--disable-pip-version-check",
                              *map(str, sorted(wheels.glob("*.whl")))],
                             cwd=work, timeout=INSTALL_TIMEOUT)
    assert installed.rc == 0, installed.describe()
    return install
