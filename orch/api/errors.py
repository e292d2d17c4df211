"""JSON errors and bounded, validated request bodies.

Why every error is JSON with a ``message``: programs read the API, and a program should never
have to parse an HTML error page or a traceback to learn what to fix. Why bodies are read
with a hard limit before parsing: everything from the network is bounded, and a JSON parser
given an unbounded body is a memory exhaustion waiting to happen.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jsonschema
from starlette.requests import Request
from starlette.responses import JSONResponse

#: The default largest request body the API reads (bytes).
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """An error the caller can fix (or must know about): an HTTP status and a message."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, **self.details)


def error_response(status: int, message: str, **details: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": 'Bearer realm="orch"'} if status == 401 else None
    return JSONResponse({"error": {"status": status, "message": message, **details}},
                        status_code=status, headers=headers)


async def read_json(request: Request, schema: Mapping[str, Any], limit: int) -> Any:
    """The request's JSON body, at most ``limit`` bytes, checked against ``schema``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raw = b"{}"
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    validator = jsonschema.Draft202012Validator(schema)
    problems = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    if problems:
        first = problems[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(body)"
        raise ApiError(422, f"invalid request body at {where}: {first.message}",
                       problems=[f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: "
                                 f"{e.message}" for e in problems[:20]])
    return body
