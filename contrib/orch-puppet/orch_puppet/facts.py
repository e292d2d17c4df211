"""Facts from facter, cached and refreshed in the background.

``facter --json`` costs about 0.3-0.5 s of CPU (``puppet facts show`` about 0.7 s), far too
much for the request path, and the daemon only reads fact sources when it starts and on
SIGHUP. So :class:`FacterSource` runs facter once when the daemon first asks (before it
serves anything), then on its own thread every ``facts_refresh_interval`` seconds;
:meth:`FacterSource.load` only ever returns the cached copy. After each refresh the node is
told to re-read its facts (:mod:`orch_puppet.nodes`), so ``-F os.family=Debian`` and
``-F networking.interfaces.eth0.ip=...`` see current values.

A failed refresh keeps the previous facts (stale facts beat no facts) and is logged. Facter
exiting non-zero while still printing a JSON object (facter 4 does this when one resolver
fails, e.g. in a container whose PID 1 ``environ`` is unreadable) is accepted with a warning.
"""

from __future__ import annotations

import json
import logging
import resource
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from orch.plugin import ConfigError

from orch_puppet.config import PuppetPluginConfig, expand
from orch_puppet.paths import find_executable

log = logging.getLogger(__name__)

#: A request to refresh (SIGHUP, a finished run) is ignored if the facts are younger.
MIN_AGE = 5.0


@dataclass
class RefreshStats:
    """What the refreshes cost: the numbers ``docs/puppet.md`` reports."""

    refreshes: int = 0
    failures: int = 0
    last_wall: float = 0.0
    last_cpu: float = 0.0
    total_wall: float = 0.0
    total_cpu: float = 0.0
    last_refreshed: float = 0.0
    last_error: str | None = None


def facts_argv(config: PuppetPluginConfig, identity: str) -> list[str]:
    """The command that prints this node's facts as one JSON object."""
    if config.facts_command == "puppet":
        puppet = find_executable(config.puppet_bin, "puppet")
        if puppet is None:
            raise ConfigError("plugins.puppet.facts_command is puppet, but no puppet command "
                              "was found (set plugins.puppet.puppet_bin)")
        confdir = expand(config.confdir, identity)
        return [puppet, "facts", "show", "--render-as", "json",
                *(["--confdir", confdir] if confdir else [])]
    facter = find_executable(config.facter_bin, "facter")
    if facter is None:
        raise ConfigError("plugins.puppet.facts_enabled is true, but no facter command was "
                          "found (set plugins.puppet.facter_bin)")
    return [facter, "--json"]


def run_facter(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run ``argv`` (bounded by ``timeout``) and return the JSON object it printed."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    try:
        facts = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        facts = None
    if not isinstance(facts, dict):
        detail = proc.stderr.strip().splitlines()[:2]
        raise RuntimeError(f"{argv[0]} exited {proc.returncode} without a JSON object: "
                           f"{' / '.join(detail) or 'no output'}")
    if proc.returncode != 0:
        first = next(iter(proc.stderr.strip().splitlines()), "")
        log.warning("%s exited %d but printed facts; using them (%s)", argv[0],
                    proc.returncode, first[:200])
    return facts


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class FacterSource:
    """An orch fact source backed by facter, refreshed off the request path."""

    name = "facter"

    def __init__(self, argv: list[str], interval: float, timeout: float,
                 on_change: Callable[[], Any] | None = None,
                 runner: Callable[[list[str], float], dict[str, Any]] = run_facter) -> None:
        self.argv = argv
        self.interval = interval
        self.timeout = timeout
        self.on_change = on_change
        self._runner = runner
        self._facts: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = RefreshStats()

    @classmethod
    def from_config(cls, config: PuppetPluginConfig, identity: str,
                    on_change: Callable[[], Any] | None = None) -> FacterSource:
        return cls(facts_argv(config, identity), config.facts_refresh_interval,
                   config.facts_timeout, on_change)

    # -- the FactSource contract -----------------------------------------------------------

    def watch(self, changed: Callable[[], Any]) -> None:
        """The daemon's "re-read your facts" for the node using this source: called after
        a background refresh that changed the facts (replaces ``on_change``)."""
        self.on_change = changed

    def load(self) -> Mapping[str, Any]:
        """The cached facts. Only the very first call (daemon start-up) waits for facter."""
        with self._lock:
            facts = self._facts
        if facts is None:
            self.refresh()
            self._start()
            with self._lock:
                facts = self._facts
            if facts is None:
                raise RuntimeError(self.stats.last_error or "facter produced no facts")
            return facts
        self._start()
        if time.time() - self.stats.last_refreshed > MIN_AGE:
            self._wake.set()  # SIGHUP or a finished run: refresh soon, in the background
        return facts

    # -- refreshing ------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Run facter now (on the calling thread); True when the facts changed."""
        with self._refresh_lock:
            wall, cpu = time.monotonic(), _children_cpu()
            try:
                facts = self._runner(self.argv, self.timeout)
            except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
                self.stats.failures += 1
                self.stats.last_error = f"{self.argv[0]}: {exc}"
                log.error("facter refresh failed, keeping the previous facts: %s", exc)
                return False
            finally:
                self.stats.last_wall = time.monotonic() - wall
                self.stats.last_cpu = _children_cpu() - cpu
                self.stats.total_wall += self.stats.last_wall
                self.stats.total_cpu += self.stats.last_cpu
            self.stats.refreshes += 1
            self.stats.last_refreshed = time.time()
            self.stats.last_error = None
            with self._lock:
                changed = facts != self._facts
                self._facts = facts
            log.debug("facter refresh took %.2fs wall, %.2fs CPU (changed: %s)",
                      self.stats.last_wall, self.stats.last_cpu, changed)
            return changed

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._loop, name="orch-puppet-facter",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            if self.refresh() and self.on_change is not None:
                try:
                    self.on_change()
                except Exception:
                    log.exception("after-refresh callback failed")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the refresh thread (a facter run in progress finishes within its timeout)."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
