"""The API and console for ``orch demo --api``: one throw-away token, served in a thread.

Why in the demo's own process: the demo's fleet may live on ``memory://``, which only this
process can reach; the API's jobs then talk to the simulated nodes exactly as the tour's
commands do, signed with the demo's client certificate.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orch.api.context import ApiContext
from orch.api.serve import Listen, server, start_in_thread
from orch.api.tokens import ApiToken, TokenStore, digest
from orch.core.config import load_settings

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry

STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class DemoApi:
    url: str
    token: str
    stop: Callable[[], None]


def start_demo_api(listen: str, client_settings: Mapping[str, str],
                   registry: PluginRegistry) -> DemoApi:
    """Serve the API on ``listen`` for a fresh random token signing as the demo's client."""
    token = secrets.token_urlsafe(24)
    entry = ApiToken("demo", digest(token), client_settings.get("tls_cert"),
                     client_settings.get("tls_key"))
    address = Listen.parse(listen)
    settings = load_settings(None, dict(client_settings), registry=registry)
    srv = server(ApiContext(settings, TokenStore([entry]), registry), address)
    thread = start_in_thread(srv)

    def stop() -> None:
        srv.should_exit = True
        thread.join(STOP_TIMEOUT)

    return DemoApi(address.url(tls=False), token, stop)
