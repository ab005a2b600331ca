"""Run the real gateway (uvicorn on a loopback port) in a background thread for tests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from relaygate.app import create_app
from relaygate.config import Config, load_config_text

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningGateway:
    url: str  # e.g. http://127.0.0.1:PORT
    app: Any
    loop: asyncio.AbstractEventLoop
    storage_url: str | None

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run a coroutine on the gateway's own event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def flush_ledger(self) -> None:
        writer = self.gateway.ledger
        if writer is not None and hasattr(writer, "flush"):
            self.call(writer.flush())

    def ledger_rows(self, expect: int, timeout: float = 10) -> list[Any]:
        """Wait until the ledger holds ``expect`` rows (a stream's row is submitted just after
        its last byte, so it can trail the client), then return them newest first."""
        store = self.gateway.ledger._sink
        deadline = time.monotonic() + timeout
        while True:
            self.flush_ledger()
            n = store.count_usage()
            if n >= expect or time.monotonic() > deadline:
                return list(store.list_usage(max(n, 1)))
            time.sleep(0.02)


@contextlib.contextmanager
def run_gateway(
    config: Config | str, *, storage_url: str | None = None, **app_kw: Any
) -> Iterator[RunningGateway]:
    """Start ``create_app(config)`` under uvicorn on 127.0.0.1:<free port>; stop it on exit."""
    cfg = load_config_text(config, "test.yaml") if isinstance(config, str) else config
    app = create_app(cfg, storage_url=storage_url, **app_kw)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
    )
    loop = asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.serve())
        except BaseException as exc:  # surfaced to the test below
            failure.append(exc)
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name=f"gateway-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if failure or not thread.is_alive():
            raise RuntimeError(f"gateway failed to start: {failure}")
        if time.monotonic() > deadline:
            raise TimeoutError("gateway did not start within 60 s")
        time.sleep(0.02)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app, loop, storage_url)
    finally:
        server.should_exit = True
        thread.join(30)
