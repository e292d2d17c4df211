"""Bearer-token authentication and the access log, as one ASGI middleware.

Why one middleware for both: every API call must be logged with the token's name, and the
name is known only once the token is checked; doing both in one place means no route can be
reached, or answered, without being logged. Paths under ``/api/`` need a token; the OpenAPI
document and the console's static files do not (the console asks the person for a token and
sends it with each API call).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orch.api.errors import error_response
from orch.api.tokens import TokenStore

log = logging.getLogger("orch.api.access")

#: The longest Authorization header read (a token is short).
MAX_AUTH_HEADER = 4096


class BearerAuth:
    """Checks ``Authorization: Bearer …`` on ``/api/`` paths and logs every request."""

    def __init__(self, app: ASGIApp, tokens: TokenStore) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status: dict[str, Any] = {"code": 500}
        name = "-"
        path: str = scope.get("path", "")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            if path.startswith("/api/"):
                token = self._token(scope)
                if token is None:
                    await error_response(401, "a valid bearer token is required "
                                         "(Authorization: Bearer TOKEN)")(scope, receive, sending)
                    return
                name = token.name
                scope["orch_token"] = token
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            log.info("%s %s %s %s token=%s %.1fms", client[0], scope.get("method"), path,
                     status["code"], name, (time.monotonic() - started) * 1000)

    def _token(self, scope: Scope) -> Any:
        for key, value in scope.get("headers", []):
            if key == b"authorization":
                if len(value) > MAX_AUTH_HEADER:
                    return None
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    return None
                return self.tokens.lookup(token.strip())
        return None
