"""Pure-ASGI shortcut to the hot endpoints, ahead of Starlette's router.

``POST /v1/chat/completions`` (and ``/chat/completions``) and ``POST /v1/messages`` go straight to
their handlers; every other request, method and path goes through the router as before. Route
matching, the per-route ``request_response`` wrapper and the exception middleware cost about a
tenth of a request's CPU in profiles (bench/flamegraphs/README.md) and do nothing for these
handlers: each catches every error itself (one ledger row and a protocol-shaped error per request),
and Starlette's ``ServerErrorMiddleware`` still wraps this middleware for anything that escapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastPath"]

Handler = Callable[[Request], Awaitable[Any]]


class FastPath:
    """``Middleware(FastPath, handlers={path: handler})``: POSTs to those paths skip the router."""

    def __init__(self, app: ASGIApp, handlers: Mapping[str, Handler]) -> None:
        self.app = app
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            handler = self.handlers.get(scope["path"])
            if handler is not None:
                response = await handler(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
