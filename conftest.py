"""Wiring for the whole repository's suites: process-wide state per test, pytest-xdist groups.

Every test starts with the root logger as the run configured it: a test that runs the CLI in
process (``configure_logging`` raises the root level and replaces its handlers) must not
silence the warnings a later test expects in ``caplog``. Likewise a test that starts an
``orch server`` in process marks the process long-running
(:func:`orch.core.security.mark_long_running`): the next test is a command again.

``./run-tests`` runs ``pytest -n 2 --dist loadgroup`` (``ORCH_TEST_WORKERS`` sets the
number, 0 for none): the integration suites spend most of their time waiting (for daemons
to start, brokers to restart, timeouts to pass), so two workers overlap those waits (12
minutes instead of 25-34 on the 2-core machine). Tests that assert on timing therefore run
beside another worker's load, and must allow for it.

Each worker is a separate pytest session, so session- and
module-scoped fixtures run once per worker that needs them. To keep each running once:

* every test file is one group, named after the file (a worker runs the whole file: its
  module fixtures start once);
* every test that uses one of :data:`SHARED` — session fixtures that start something heavy
  — joins that fixture's group, whatever its file, so one worker starts it once.

Plain ``pytest`` (no ``-n``) runs everything in one process, as before.

The run's caches (plugin index, verified certificates, DDL digests) go to a directory of
its own (``XDG_CACHE_HOME``, which ``orch`` commands the tests start inherit), removed at
the end: thousands of test certificates have no place in the developer's ``~/.cache/orch``.
A run of ``bench/`` alone keeps the real caches: it measures orch as installed.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

#: ``XDG_CACHE_HOME`` as the run found it, and the directory that replaced it.
_cache_home: list[tuple[str | None, str]] = []
#: ``ORCH_SESSION`` as the run found it.
_session_mode: list[str | None] = []


def _benchmarks_only(config: pytest.Config) -> bool:
    """A run of ``bench/`` alone measures an installation as users have it, warm caches
    included (the plugin index decides what a daemon imports, hence its memory)."""
    bench = Path(__file__).resolve().parent / "bench"
    paths = [Path(str(arg).split("::", 1)[0]).resolve() for arg in config.args]
    return bool(paths) and all(path == bench or bench in path.parents for path in paths)


def pytest_configure(config: pytest.Config) -> None:
    # Every ``orch`` command a test or benchmark starts runs by itself (a session starts by
    # default, and would outlive the run and serve the next test's commands). The session's
    # own tests set ORCH_SESSION for their commands.
    _session_mode.append(os.environ.get("ORCH_SESSION"))
    os.environ["ORCH_SESSION"] = "off"
    if _benchmarks_only(config):
        return
    previous = os.environ.get("XDG_CACHE_HOME")
    directory = tempfile.mkdtemp(prefix="orch-tests-cache-")
    _cache_home.append((previous, directory))
    os.environ["XDG_CACHE_HOME"] = directory


def pytest_unconfigure(config: pytest.Config) -> None:
    while _session_mode:
        previous_mode = _session_mode.pop()
        if previous_mode is None:
            os.environ.pop("ORCH_SESSION", None)
        else:
            os.environ["ORCH_SESSION"] = previous_mode
    while _cache_home:
        previous, directory = _cache_home.pop()
        if previous is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = previous
        shutil.rmtree(directory, ignore_errors=True)

#: Session fixtures too heavy to start twice: the real puppetserver (with PuppetDB and the
#: agents that use it) and a fresh virtualenv with every distribution's wheel built.
SHARED = ("puppet_stack", "clean_install")


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the marks into node ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        shared = next((name for name in SHARED if name in getattr(item, "fixturenames", ())),
                      None)
        # A file's group is its name: short in reports (xdist appends ``@group`` to each
        # test id), and two files of one name merely share a worker.
        file_group = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
        item.add_marker(pytest.mark.xdist_group(shared or file_group))


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """The CLI group reconfigures root logging (onto CliRunner's soon-closed stderr, at its
    own level): put the run's back after every test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _command_process() -> Iterator[None]:
    """A server run in process marks the whole process a daemon, which changes how the x509
    provider loads credentials: take the mark back after every test."""
    from orch.core import security

    yield
    security.mark_long_running(False)
