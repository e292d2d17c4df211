"""The ASGI application: routes, plugin routes, the console, JSON errors, authentication.

Why Starlette (with uvicorn to serve it): a small, well-kept ASGI toolkit with streaming
responses for Server-Sent Events and no ORM or template engine the API does not need.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orch.api.auth import BearerAuth
from orch.api.context import ApiContext
from orch.api.errors import ApiError, error_response
from orch.api.openapi import openapi_document
from orch.api.routes import builtin_routes

log = logging.getLogger(__name__)

CONSOLE_DIR = Path(__file__).parent / "console"
#: The console loads nothing from elsewhere, and the browser is told to enforce that.
CONSOLE_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


class ConsoleFiles(StaticFiles):
    """The console's static files, with a strict Content-Security-Policy."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *CONSOLE_HEADERS]
            await send(message)

        await super().__call__(scope, receive, secured)


class CallerClient:
    """Puts ``scope["orch.client"]``: a callable making a client that signs as the caller.

    Why: a contrib plugin imports only ``orch.plugin``, never ``orch.api``; its route
    handlers get the caller's client from the request scope instead
    (``request.scope["orch.client"]()``, a context manager like any
    :class:`~orch.core.client.Client`).
    """

    def __init__(self, app: ASGIApp, context: ApiContext) -> None:
        self.app, self.context = app, context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = scope.get("orch_token")
        if token is not None:
            scope["orch.client"] = functools.partial(self.context.client, token)
        await self.app(scope, receive, send)


def plugin_routes(context: ApiContext) -> list[BaseRoute]:
    """Routes that plugins add with the ``orch_api_routes`` hook (e.g. orch-puppet's)."""
    return list(context.registry.api_routes())


def _lifespan(context: ApiContext) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            context.jobs.close()

    return lifespan


def create_app(context: ApiContext) -> Starlette:
    extra = plugin_routes(context)

    async def openapi(request: Request) -> JSONResponse:
        agents = [cls.ddl() for cls in context.registry.agents(context.settings).values()]
        return JSONResponse(openapi_document(agents, extra))

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/")

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail))

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return error_response(500, f"internal error: {type(exc).__name__}")

    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        *builtin_routes(),
        *extra,
        Mount("/console", ConsoleFiles(directory=CONSOLE_DIR, html=True), name="console"),
    ]
    handlers: dict[Any, Any] = {ApiError: api_error, HTTPException: http_error,
                                Exception: crash}
    app = Starlette(routes=routes, exception_handlers=handlers,
                    middleware=[Middleware(BearerAuth, tokens=context.tokens),
                                Middleware(CallerClient, context=context)],
                    lifespan=_lifespan(context))
    app.state.orch = context
    return app
