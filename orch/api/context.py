"""What every route needs: settings, plugins, tokens, jobs, and a client per token.

Why a new :class:`~orch.core.client.Client` per call and not one shared: a client holds one
broker session whose reply queue collects one call at a time, and each token signs with its
own certificate. A client per call keeps calls of different applications apart at the cost
of one broker connection per call (measured in the report of the API overhead). Replies are
verified in the calling thread (see :meth:`ApiContext.client`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from orch.api.errors import MAX_BODY, ApiError
from orch.api.history import Inventory
from orch.api.jobs import JobStore
from orch.api.tokens import ApiToken, TokenStore
from orch.core.client import Client
from orch.core.config import Settings
from orch.core.errors import OrchError
from orch.core.plugins import PluginRegistry

#: The filter kinds the API takes, as the CLI's -F -C -I -A -S -W options.
FILTER_KINDS = ("fact", "class", "identity", "agent", "compound", "with")
#: The most nodes one page of ``GET /api/v1/nodes`` returns.
MAX_PAGE = 1000


@dataclass
class ApiContext:
    """The state of one API process (one per :func:`orch.api.app.create_app`)."""

    settings: Settings
    tokens: TokenStore
    #: The plugins in use: the entry point (``orch api``, the demo) passes its own.
    registry: PluginRegistry
    jobs: JobStore = field(default_factory=JobStore)
    max_body: int = MAX_BODY

    @property
    def inventory(self) -> Inventory | None:
        """The configured inventory store (job history, last seen), None without one."""
        return Inventory.configured(self.settings, self.registry)

    def client(self, token: ApiToken) -> Client:
        """A client signing with ``token``'s certificate (the API's own when it has none)."""
        settings = self.settings
        if token.tls_cert and token.tls_key:
            settings = settings.with_values(
                {"tls_cert": token.tls_cert, "tls_key": token.tls_key}, f"token {token.name}",
                self.registry)
        client = Client(settings, self.registry, caller=f"api={token.name}")
        # Never fork checker processes from this many-threaded server: a child forked while
        # another thread holds a lock (logging, the broker client) can hang for ever.
        client.verify_workers = 0
        return client

    def filter(self, client: Client, terms: Mapping[str, Sequence[str]]) -> dict[str, list[Any]]:
        """A wire filter from CLI-syntax terms (``{"fact": ["role=web"], ...}``); 400 if bad."""
        from orch.core.filterargs import build_filter

        if not any(terms.get(kind) for kind in FILTER_KINDS):
            return {}
        try:
            return build_filter(
                client.filters, fact=list(terms.get("fact", ())),
                classes=list(terms.get("class", ())),
                identities=list(terms.get("identity", ())),
                agents=list(terms.get("agent", ())),
                compound=list(terms.get("compound", ())), with_=list(terms.get("with", ())))
        except OrchError as exc:
            raise ApiError(400, f"bad filter: {exc}") from None


def token_of(request: Request) -> ApiToken:
    """The caller's token (set by :class:`orch.api.auth.BearerAuth`)."""
    token = request.scope.get("orch_token")
    if not isinstance(token, ApiToken):
        raise ApiError(401, "a valid bearer token is required")
    return token


def context_of(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.orch
    return context


def query_filter(request: Request) -> dict[str, list[str]]:
    """Filter terms from query parameters (``?fact=role=web&class=nginx``)."""
    return {kind: request.query_params.getlist(kind) for kind in FILTER_KINDS
            if request.query_params.getlist(kind)}


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"query parameter {name!r} must be between {low} and {high}")
    return value
