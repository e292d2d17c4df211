"""``orch server``'s process: one :class:`~orch.core.server.Node` on one transport.

The daemon's life around the request path: start and tell systemd it is ready, reload on
SIGHUP without dropping a request, and on SIGTERM stop consuming, give what it admitted
``shutdown_timeout`` seconds to finish and reply, and exit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import fields, replace

from orch.core import sdnotify
from orch.core.config import Settings
from orch.core.errors import OrchError
from orch.core.facts import FactLoader, read_classes, watch_sources
from orch.core.plugins import PluginRegistry
from orch.core.security import mark_long_running, reload_provider
from orch.core.server import Node, NodeServices

log = logging.getLogger(__name__)

#: Settings a SIGHUP cannot change: they are the process's identity, its connections,
#: signing credentials or thread pools. A changed value is logged and ignored until restart.
RESTART_ONLY = (
    "identity", "collective", "broker", "heartbeat", "queue_expiry", "security", "workers",
    "filter_workers", "filter_backlog", "log_level",
)
#: How often the signal thread looks at its flags and at readiness (seconds).
POLL = 0.1
#: systemd is told "ready" when the daemon consumes requests, or after this many seconds
#: if the broker cannot be reached yet: the daemon retries forever, and a node must not
#: fail its boot (or be restarted in a loop by systemd) because the broker is down.
READY_GRACE = 20.0


class Server:
    """``orch server``: one node on one transport, until SIGTERM or SIGINT.

    ``reload_settings`` reads the configuration again (file, environment, flags) on SIGHUP;
    without it a reload re-reads agents, facts and classes under the same settings.
    """

    def __init__(self, settings: Settings, registry: PluginRegistry,
                 reload_settings: Callable[[], Settings] | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self._reload_settings = reload_settings
        registry.check_settings(settings)  # a typo in any plugin section stops the start
        self.transport = registry.transport_for(settings)
        mark_long_running()  # providers may keep a lean steady state (x509: no cryptography)
        self.services = NodeServices.from_settings(settings, registry, self.transport.send_reply)
        self.stop_event = threading.Event()
        #: Ends one consuming cycle: set by stop(), or by reload() when agents changed.
        self._cycle = threading.Event()
        self.ready = threading.Event()
        #: Actions abandoned at shutdown (their threads may still run): see :meth:`run`.
        self.abandoned = 0
        #: Facts: the first load must succeed; a reload keeps the last good ones.
        self._facts = FactLoader(registry.fact_sources(settings), f"node={settings.identity} ")
        self.node = Node(
            settings.identity,
            settings.collective,
            registry.agents_for(settings),
            self._facts,
            read_classes(settings.classes),
            self.services,
        )
        watch_sources(self._facts.sources, self._facts_changed)
        #: Plugins' services run beside the daemon (registration is one).
        self.extras = registry.server_services(settings)

    # -- SIGHUP ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the settings, then agents, policies, plugin settings, the
        security provider's credentials, facts and classes, and reopen the audit log.

        Nothing stops: requests in flight finish with what they started with. A config
        that no longer loads is reported and the current settings are kept. When the set of
        agents changed, the consumer is rebuilt so broadcasts for new agents arrive and
        those for removed ones stop.
        """
        settings = self._fresh_settings()
        self.registry.notify_reload(settings)
        try:
            agents = self.registry.agents_for(settings)
        except OrchError as exc:
            log.error("node=%s keeping the current agents: %s", self.node.identity, exc)
            agents = None
        sources = self.registry.fact_sources(settings)
        self.services.reconfigure(settings, self.registry)  # whole or not at all
        try:  # the x509 certificate, key, CA bundle and CRL, swapped in whole
            reload_provider(self.services.security, settings)
        except OrchError as exc:
            log.error("node=%s keeping the current credentials: %s", self.node.identity, exc)
        self.settings = settings
        if agents is not None and self.node.set_agents(agents, refresh=False):
            log.info("node=%s agents now %s", self.node.identity, ",".join(sorted(agents)))
            self._cycle.set()
        self._facts.sources = list(sources)
        watch_sources(self._facts.sources, self._facts_changed)
        self.node.refresh(read_classes(settings.classes), self._facts)
        self._each_extra("reloaded")
        log.info("node=%s reloaded settings, agents, policies, facts and classes",
                 self.node.identity)

    def _facts_changed(self) -> None:
        """A fact source said its facts changed (facter's timer): re-read facts and
        classes now, as SIGHUP does for them, on the source's thread. Never raises."""
        try:
            self.node.refresh(read_classes(self.settings.classes))
        except Exception:  # a source's thread must not die of the node's trouble
            log.exception("node=%s re-reading facts after a source's change failed",
                          self.node.identity)

    def _fresh_settings(self) -> Settings:
        if self._reload_settings is None:
            return self.settings
        try:
            fresh = self._reload_settings()
            self.registry.check_settings(fresh)
        except OrchError as exc:
            log.error("node=%s configuration not reloaded, keeping the current one: %s",
                      self.node.identity, exc)
            return self.settings
        current = self.settings
        kept = {f.name: getattr(current, f.name) for f in fields(Settings)
                if f.name in RESTART_ONLY and getattr(fresh, f.name) != getattr(current, f.name)}
        if kept:
            log.warning("node=%s %s changed: takes effect when the daemon restarts",
                        self.node.identity, ", ".join(sorted(kept)))
        return replace(fresh, **kept)

    # -- running and stopping ----------------------------------------------------------

    def run(self) -> bool:
        """Serve until :meth:`stop` (or a signal, in the main thread); then finish.

        Returns False when actions were still running at the end of ``shutdown_timeout``:
        they were replied 'aborted', but their threads cannot be stopped, so the caller
        should end the process without waiting for them.
        """
        if threading.current_thread() is threading.main_thread():
            self._install_signal_handlers()
        log.info("node=%s collective=%s agents=%s broker=%s starting",
                 self.node.identity, self.node.collective,
                 ",".join(sorted(self.node.view().agents)), self.transport.display_url)
        self._each_extra("start", self.node, self.transport, self.ready)
        try:
            while not self.stop_event.is_set():
                self._cycle.clear()
                if self.stop_event.is_set():
                    break
                self.transport.serve([self.node.binding()], self._cycle, self.ready)
        finally:
            self._each_extra("stop")
            wait = self.settings.shutdown_timeout
            log.info("node=%s stopping: finishing %d admitted action(s), up to %gs",
                     self.node.identity, self.services.runner.admitted(), wait)
            self.abandoned = self.services.close(wait)
            self.transport.close()
            log.info("node=%s stopped", self.node.identity)
        return self.abandoned == 0

    def stop(self) -> None:
        self.stop_event.set()
        self._cycle.set()

    def _each_extra(self, method: str, *args: object) -> None:
        """Call ``method`` on every server service; one that raises is logged and dropped."""
        for extra in list(self.extras):
            try:
                getattr(extra, method)(*args)
            except Exception:
                log.exception("node=%s server service %r failed in %s; dropped",
                              self.node.identity, type(extra).__name__, method)
                self.extras.remove(extra)

    def _install_signal_handlers(self) -> None:
        """Signals only raise flags; a helper thread acts on them.

        Python runs handlers in the main thread, between any two bytecodes of whatever it
        was doing — here, handling a request while holding the audit log's lock. Doing the
        work in the handler (reopening that log, setting an Event) can deadlock. The same
        thread tells systemd when the daemon is ready, reloading or stopping.
        """
        requested: dict[str, bool] = {"stop": False, "reload": False}

        def flag(name: str) -> Callable[..., None]:
            def handler(*_: object) -> None:
                requested[name] = True

            return handler

        readiness = Readiness(time.monotonic() + READY_GRACE)

        def act() -> None:
            while not self.stop_event.wait(POLL):
                state = readiness.poll(self.ready.is_set(), time.monotonic())
                if state is not None:
                    if state == Readiness.CONSUMING:
                        log.info("node=%s ready", self.node.identity)
                    elif state == Readiness.UNREACHABLE:
                        log.warning("node=%s broker %s not reachable after %gs; still "
                                    "retrying", self.node.identity,
                                    self.transport.display_url, READY_GRACE)
                    sdnotify.notify(state)
                if requested["stop"]:
                    sdnotify.notify("STOPPING=1")
                    self.stop()
                elif requested["reload"]:
                    requested["reload"] = False
                    sdnotify.notify("RELOADING=1")
                    try:
                        self.reload()
                    except Exception:  # keep serving whatever a reload hits
                        log.exception("node=%s reload failed", self.node.identity)
                    sdnotify.notify("READY=1")

        signal.signal(signal.SIGTERM, flag("stop"))
        signal.signal(signal.SIGINT, flag("stop"))
        signal.signal(signal.SIGHUP, flag("reload"))
        threading.Thread(target=act, name="orch-signals", daemon=True).start()


class Readiness:
    """What to tell systemd as the connection comes and goes: "ready" once consuming, or
    once the grace period is over without a broker (the daemon keeps retrying), then a
    status line on each change."""

    CONSUMING = "READY=1\nSTATUS=consuming requests"
    UNREACHABLE = "READY=1\nSTATUS=broker not reachable yet, retrying"
    LOST = "STATUS=broker connection lost, reconnecting"

    def __init__(self, grace_until: float) -> None:
        self.grace_until = grace_until
        self.announced = False
        self.consuming = False

    def poll(self, consuming: bool, now: float) -> str | None:
        """The notification to send now, if any."""
        if consuming != self.consuming:
            self.consuming = consuming
            self.announced = self.announced or consuming
            return self.CONSUMING if consuming else self.LOST
        if not self.announced and now >= self.grace_until:
            self.announced = True
            return self.UNREACHABLE
        return None
