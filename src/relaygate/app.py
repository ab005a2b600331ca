"""ASGI app factory: ``create_app(config, ...)`` wires routes to one ``Gateway``.

The lifespan opens resources (database + migrations, key store, ledger writer, provider
clients, the local model) and closes them in reverse order, flushing the ledger. Tests inject
their own ``ledger``/``keys``/``providers`` through the same parameters.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relaygate.api.auth import KeyLookup
from relaygate.api.error_render import openai_error_body
from relaygate.api.openai_routes import chat_completions, list_models
from relaygate.config.schema import Config
from relaygate.errors import GatewayError, InvalidRequestError, NotFoundError
from relaygate.observability.metrics import CONTENT_TYPE_LATEST
from relaygate.pipeline import Gateway, LedgerSink

__all__ = ["create_app"]

log = logging.getLogger("relaygate")


async def healthz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    providers: dict[str, Any] = {}
    for name, p in gw.providers.items():
        unavailable = getattr(p, "unavailable", None)
        providers[name] = (
            {"status": "unavailable", "reason": unavailable} if unavailable else {"status": "ok"}
        )
    breakers = {k: v.value for k, v in gw.router.breakers.states().items()}
    writer = gw.ledger
    ledger = {
        k: getattr(writer, k)
        for k in ("pending", "written", "write_errors", "dropped")
        if isinstance(getattr(writer, k, None), int)
    }
    body = {"status": "ok", "providers": providers, "circuit_breakers": breakers, "ledger": ledger}
    return Response(orjson.dumps(body), media_type="application/json")


async def metrics(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    gw.refresh_gauges()
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: GatewayError
    if exc.status_code == 404:
        err = NotFoundError(f"Unknown request URL: {request.method} {request.url.path}.", code="unknown_url")
    else:
        err = InvalidRequestError(
            str(exc.detail),
            code="method_not_allowed" if exc.status_code == 405 else None,
            status=exc.status_code,
        )
    return Response(openai_error_body(err), err.status, media_type="application/json")


def create_app(
    config: Config,
    *,
    ledger: LedgerSink | None = None,
    keys: KeyLookup | None = None,
    storage_url: str | None = None,
    use_storage: bool = True,
    gateway: Gateway | None = None,
) -> Starlette:
    """Build the ASGI app.

    With ``use_storage`` (default) and no ``ledger``/``keys`` given, the lifespan opens the
    database at ``storage_url`` (else ``config.storage.url``, else SQLite under
    ``$RELAYGATE_HOME``), runs migrations, and starts the batched ledger writer.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            sink: LedgerSink | None = ledger
            lookup: KeyLookup | None = keys
            if use_storage and (sink is None or lookup is None):
                from relaygate.ledger.runtime import open_storage

                storage = await stack.enter_async_context(open_storage(storage_url or config.storage.url))
                sink = sink or storage.writer
                lookup = lookup or storage.keys
            gw = gateway or Gateway(config, ledger=sink, keys=lookup)
            await gw.start()
            stack.push_async_callback(gw.close)
            app.state.gateway = gw
            yield

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: _http_error})
