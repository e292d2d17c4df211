"""The pytest fixtures of the ``orch.testing`` plugin."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from orch.core.agent import Agent
    from orch.core.client import Client
    from orch.demo import DemoPKI

from orch.testing.fleet import STOP_TIMEOUT, ClassesArg, NodesArg, OrchFleet
from orch.testing.servers import ServerFleetFactory

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------- fixtures


class _Stopper:
    """Stops fleets in the background and joins them at the end of the session."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def stop(self, fleet: OrchFleet) -> None:
        thread = fleet.stop(wait=False)
        if thread is not None:
            self.threads.append(thread)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                log.warning("a test fleet did not stop within %gs", STOP_TIMEOUT)
        self.threads.clear()


class FleetFactory:
    """The ``orch_fleet`` fixture's value: call it to start a fleet (see :meth:`__call__`)."""

    def __init__(self, pki: DemoPKI, stopper: _Stopper) -> None:
        self.pki = pki
        self.fleets: list[OrchFleet] = []
        self._stopper = stopper

    def __call__(
        self,
        nodes: NodesArg | None = None,
        classes: ClassesArg | None = None,
        agents: Iterable[str | type[Agent]] | None = None,
        broker: str = "memory://",
        *,
        settings: Mapping[str, Any] | None = None,
        simulated: bool = False,
    ) -> OrchFleet:
        """Start a fleet of its own collective, signed by the session's CA.

        See :meth:`OrchFleet.start` for the arguments. The fleet is stopped after the test.
        """
        fleet = OrchFleet.start(nodes, classes, agents, broker, settings=settings,
                                pki=self.pki, simulated=simulated)
        self.fleets.append(fleet)
        return fleet

    def close(self) -> None:
        for fleet in self.fleets:
            self._stopper.stop(fleet)
        self.fleets.clear()


@pytest.fixture(scope="session")
def orch_pki(tmp_path_factory: pytest.TempPathFactory) -> DemoPKI:
    """The session's throw-away CA: a client certificate on disk, node certificates made
    as fleets start. One per session because making a CA is the slow part of a fleet."""
    from orch.demo import DemoPKI

    return DemoPKI.create(tmp_path_factory.mktemp("orch-pki") / "ca",
                          client_name="orch.tester")


@pytest.fixture(scope="session")
def _orch_fleet_stopper() -> Iterator[_Stopper]:
    stopper = _Stopper()
    try:
        yield stopper
    finally:
        stopper.join()


@pytest.fixture
def orch_fleet(orch_pki: DemoPKI, _orch_fleet_stopper: _Stopper) -> Iterator[FleetFactory]:
    """Start in-memory fleets: ``orch_fleet({"web1": {"role": "web"}}).call(...)``.

    Each call starts a new fleet in a collective of its own, secured with certificates
    from ``orch_pki``; all are stopped after the test.
    """
    factory = FleetFactory(orch_pki, _orch_fleet_stopper)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def orch_client(orch_fleet: FleetFactory) -> Client:
    """The client of a fleet of :data:`DEFAULT_NODES` (web1, web2, db1) hosting every
    installed agent."""
    return orch_fleet().client


@pytest.fixture
def orch_servers(tmp_path: Path) -> Iterator[ServerFleetFactory]:
    """Start fleets of real ``orch server`` processes on a broker:
    ``orch_servers("amqp://guest:guest@127.0.0.1:5672//", nodes).run_orch("ping")``.

    Each call starts a :class:`~orch.testing.servers.ServerFleet` in a collective of its
    own and waits until every daemon answers. After the test every daemon gets SIGTERM,
    the collective is purged from the broker, and the test fails if a daemon ignored the
    signal or exited with an error. A failed test's report carries each daemon's log.
    """
    factory = ServerFleetFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.close()


def pytest_configure(config: pytest.Config) -> None:
    """Let the processes a test starts hear Ctrl-C, however the test run was started.

    A run started as a background job of a non-interactive shell (``./run-tests &``, a
    CI wrapper) inherits SIGINT *ignored*, and so would every ``orch`` command and demo a
    test starts: a test that checks what Ctrl-C does (exit 130, "Still awaited") would see
    it ignored and wait out its timeout. A handler, unlike an ignored signal, is not
    inherited across ``exec``, so installing Python's own restores the default in children.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the logs of a failed test's fixtures to its report: every fixture value with
    a ``failure_logs()`` method (``orch_servers``, its fleets, private brokers) gives
    ``(title, text)`` sections — a daemon's log is what explains its failure."""
    report = yield
    if report.failed:
        funcargs: dict[str, Any] = getattr(item, "funcargs", {})
        seen: set[int] = set()  # a fixture that returns another's value is one source
        for value in funcargs.values():
            logs = getattr(value, "failure_logs", None)
            if callable(logs) and id(value) not in seen:
                seen.add(id(value))
                for title, text in logs():
                    report.sections.append((f"log of {title}", text or "(empty)"))
    return report
