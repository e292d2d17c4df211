"""orch.plugin, the public module for plugin authors, and the helpers it shares."""

from __future__ import annotations

import signal
import subprocess
import sys

import orch.plugin as facade
from orch.core.processes import terminate_group


def test_every_exported_name_resolves_and_all_lists_them() -> None:
    assert sorted(facade.__all__) == sorted(["hookimpl", *facade._EXPORTS])
    for name in facade.__all__:
        assert getattr(facade, name) is not None, name
    assert sorted(dir(facade)) == sorted(facade.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'PluginRegistry'"):
        facade.PluginRegistry  # noqa: B018 — the registry is private to orch


def test_terminate_group_kills_a_child_that_ignores_sigterm() -> None:
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    try:
        assert terminate_group(proc, grace=0.2) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait(timeout=5)
        proc.stdout.close()
