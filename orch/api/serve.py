"""Serve the API with uvicorn: parse the listen address, TLS for the listener when configured.

Why a function of its own: ``orch api`` and ``orch demo --api`` both start the listener, and
tests start it in a thread of their own (:func:`start_in_thread`) with a way to stop it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import uvicorn

from orch.api.app import create_app
from orch.api.context import ApiContext
from orch.core.errors import ConfigError

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 10.0


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``HOST:PORT`` (``[::1]:8080`` for IPv6); a clear error for anything else."""
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
        return cls(host, int(port))

    def url(self, tls: bool) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if tls else 'http'}://{host}:{self.port}"


def server(context: ApiContext, listen: Listen, tls_cert: str | None = None,
           tls_key: str | None = None) -> uvicorn.Server:
    """A uvicorn server for the app (TLS when ``tls_cert`` and ``tls_key`` are given)."""
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("give both --tls-listen-cert and --tls-listen-key, or neither")
    config = uvicorn.Config(
        create_app(context), host=listen.host, port=listen.port, log_config=None,
        access_log=False, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
        timeout_graceful_shutdown=5, limit_concurrency=1000)
    return uvicorn.Server(config)


def start_in_thread(srv: uvicorn.Server) -> threading.Thread:
    """Run ``srv`` in a thread until ``srv.should_exit`` is set; wait until it listens."""
    thread = threading.Thread(target=srv.run, name="orch-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError("the API listener did not start (is the port in use?)")
        time.sleep(0.05)
    return thread
