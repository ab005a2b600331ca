"""ASGI app factory: ``create_app(config, ...)`` wires routes to one ``Gateway``.

The lifespan opens resources (database + migrations, key store, ledger writer, provider
clients, the local model) and closes them in reverse order, flushing the ledger. Tests inject
their own ``ledger``/``keys``/``providers`` through the same parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relaygate.api.admin_routes import admin_routes
from relaygate.api.anthropic_routes import count_tokens, messages
from relaygate.api.error_render import openai_error_body
from relaygate.api.fast_path import FastPath
from relaygate.api.openai_routes import chat_completions, list_models, tenant_usage
from relaygate.auth import KeyLookup
from relaygate.config import load_config
from relaygate.config.schema import Config
from relaygate.errors import ConfigError, GatewayError, InvalidRequestError, NotFoundError
from relaygate.ledger.records import new_request_id
from relaygate.observability.metrics import CONTENT_TYPE_LATEST
from relaygate.pipeline import Gateway, LedgerSink
from relaygate.state import SharedState
from relaygate.state.cutoffs import CutoffMonitor

__all__ = ["app_from_environment", "create_app"]

log = logging.getLogger("relaygate")


async def healthz(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    rt = gw.runtime
    providers: dict[str, Any] = {}
    for name, p in rt.providers.items():
        unavailable = getattr(p, "unavailable", None)
        providers[name] = (
            {"status": "unavailable", "reason": unavailable} if unavailable else {"status": "ok"}
        )
    breakers = {k: v.value for k, v in rt.router.breakers.states().items()}
    writer = gw.ledger
    ledger = {
        k: getattr(writer, k)
        for k in ("pending", "written", "write_errors", "dropped")
        if isinstance(getattr(writer, k, None), int)
    }
    cutoffs = [f"{c.provider}:{c.region}" for c in gw.cutoffs.view.cutoffs]
    # Shared state or cache Redis down: "degraded", still HTTP 200. Every replica loses Redis at
    # once, so a load balancer that dropped degraded replicas would drop them all; they keep
    # serving on local state (limits per replica) or without the cache, and recover on their own.
    shared = gw.state.health()
    cache = gw.cache.health()
    body = {
        "status": "ok" if shared.up and not cache["degraded"] else "degraded",
        "shared_state": {"backend": shared.backend, "up": shared.up, "reason": shared.reason},
        "cache": cache,
        "providers": providers,
        "circuit_breakers": breakers,
        "cutoffs": cutoffs,
        "ledger": ledger,
    }
    return Response(
        orjson.dumps(body), headers={"x-request-id": new_request_id()}, media_type="application/json"
    )


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
    headers = {**(exc.headers or {}), "x-request-id": new_request_id()}
    return Response(openai_error_body(err), err.status, headers, media_type="application/json")


def create_app(
    config: Config,
    *,
    ledger: LedgerSink | None = None,
    keys: KeyLookup | None = None,
    storage_url: str | None = None,
    use_storage: bool = True,
    config_path: str | None = None,
    state: SharedState | None = None,
) -> Starlette:
    """Build the ASGI app.

    With ``use_storage`` (default) and no ``ledger``/``keys`` given, the lifespan opens the
    database at ``storage_url`` (else ``config.storage.url``, else SQLite under
    ``$RELAYGATE_HOME``), runs migrations, and starts the batched ledger writer and the cutoff
    monitor. ``state`` replaces the shared state ``config.state`` asks for (tests: a
    ``MemoryState`` with a fake clock). ``config_path`` enables hot reload (``SIGHUP`` and
    ``POST /admin/reload``).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            sink: LedgerSink | None = ledger
            lookup: KeyLookup | None = keys
            storage = None
            if use_storage:
                from relaygate.ledger.runtime import open_storage

                storage = await stack.enter_async_context(open_storage(storage_url or config.storage.url))
                sink = sink or storage.writer
                lookup = lookup or storage.keys
            monitor = CutoffMonitor(config.cutoffs, storage.cutoffs if storage else None)
            quality = None
            if storage is not None:  # published eval quality, read again on every reload
                from relaygate.ledger.quality_store import QualityStore

                quality = QualityStore(storage.engine)
            gw = Gateway(
                config,
                quality=quality,
                state=state,
                ledger=sink,
                payloads=storage.payload_writer if storage else None,
                payload_store=storage.payloads if storage else None,
                spend=storage.usage if storage else None,  # budgets survive restarts
                keys=lookup,
                cutoffs=monitor,
            )
            await gw.start()
            stack.push_async_callback(gw.close)
            app.state.gateway = gw
            app.state.storage = storage
            if config_path is not None:
                app.state.reload = _reloader(gw, config_path, storage)
                _install_sighup(app.state.reload)
            else:  # the embedded default: SIGHUP's default action would stop the process
                _install_sighup(_nothing_to_reload)
            # Start-up objects (config, routes, SQLAlchemy, pydantic models) live as long as the
            # process: freeze them out of the cyclic collector so a full collection under load
            # scans only what requests left behind (20-100 ms pauses before; bench/flamegraphs/).
            gc.collect()
            gc.freeze()
            stack.callback(gc.unfreeze)
            # The ledger writer's thread needs the GIL back after every SQLite call; under load the
            # event loop holds it, and at the default 5 ms switch interval the writer fell behind
            # (queue full, requests waiting on backpressure). 1 ms keeps it level with the load.
            stack.callback(sys.setswitchinterval, sys.getswitchinterval())
            sys.setswitchinterval(0.001)
            yield

    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/usage", tenant_usage, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *admin_routes(),
    ]
    # The hot POST endpoints skip the router (api/fast_path.py); their Routes stay for the rest.
    hot = {
        "/v1/chat/completions": chat_completions,
        "/chat/completions": chat_completions,
        "/v1/messages": messages,
    }
    return Starlette(
        routes=routes,
        middleware=[Middleware(FastPath, handlers=hot)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )


def _reloader(gw: Gateway, path: str, storage: Any) -> Callable[[str], Awaitable[None]]:
    """Reload ``path`` into ``gw``; a bad file raises ``ConfigError`` and changes nothing.
    Either way an audit event (``config.reload`` / ``config.reload_rejected``) is written."""

    async def reload(actor: str) -> None:
        try:
            new = await asyncio.to_thread(load_config, path)
            if not new.routes:
                raise ConfigError(path, "routes", "the new config has no routes; refusing to drop them all")
            await gw.reload(new)
        except ConfigError as exc:
            log.error("config reload rejected, old config stays in force: %s", exc)
            if storage is not None:
                await storage.audit.aappend("config.reload_rejected", actor, path, {"error": str(exc)})
            raise InvalidRequestError(
                f"Config rejected, the old config stays in force: {exc}", code="config_rejected"
            ) from exc
        log.info("config reloaded from %s", path)
        if storage is not None:
            await storage.audit.aappend("config.reload", actor, path, {"routes": sorted(new.routes)})

    return reload


async def _nothing_to_reload(actor: str) -> None:
    log.warning("%s: no config file to reload (started on the embedded default); ignored", actor)


def _install_sighup(reload: Callable[[str], Awaitable[None]]) -> None:
    """``kill -HUP <pid>`` reloads the config (only possible in the main thread)."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        async def run() -> None:
            with contextlib.suppress(InvalidRequestError):
                await reload("signal:SIGHUP")

        task = loop.create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGHUP, on_hup)


def app_from_environment() -> Starlette:
    """App factory for worker processes (``relaygate serve --workers N``): the config file named
    by ``$RELAYGATE_CONFIG``, else the embedded default."""
    import os

    from relaygate.config import default_config

    path = os.environ.get("RELAYGATE_CONFIG")
    return create_app(load_config(path) if path else default_config(), config_path=path)
