"""Helpers for the scale-out tests: a throw-away PostgreSQL schema, a redis-server of the test's
own (so it can be killed without touching the shared one), and N gateway replicas sharing both.

Each replica is the real app under uvicorn on its own loopback port and event loop
(``harness.run_gateway``), with its own ``RedisState``, breakers and cutoff monitor, exactly as
separate processes would have; only the Python interpreter is shared.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from tests.e2e.harness import RunningGateway, free_port, run_gateway

SHARED_REDIS = "redis://127.0.0.1:6379/0"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> Any:
    """Poll ``pred`` until it returns something truthy; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


def shared_redis_or_skip() -> str:
    try:
        redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {SHARED_REDIS}: {exc}")
    return SHARED_REDIS


class OwnRedis:
    """A redis-server on a free port, no persistence; ``stop()`` kills it, ``start()`` brings a
    fresh one back on the same port (its data is gone, as after a real crash without AOF)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(pong, timeout=10)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # a crash, not a clean shutdown
            self.proc.wait(10)
            self.proc = None


@contextlib.contextmanager
def own_redis() -> Iterator[OwnRedis]:
    if not os.path.exists(REDIS_SERVER):
        pytest.skip("redis-server not installed")
    server = OwnRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def replicas(config: str, n: int, storage_url: str) -> Iterator[list[RunningGateway]]:
    """``n`` gateways with the same config text and database (started one after another, so
    the first one runs the migrations)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(run_gateway(config, storage_url=storage_url)) for _ in range(n)]


def health(http: httpx.Client, gw: RunningGateway) -> dict[str, Any]:
    resp = http.get(gw.url + "/healthz")
    assert resp.status_code == 200  # degraded or not: load balancers keep every replica
    body: dict[str, Any] = resp.json()
    return body


def state_config(redis_url: str, prefix: str | None = None) -> str:
    prefix = prefix or f"rgt{secrets.token_hex(4)}:"
    return (
        f'state: {{backend: redis, redis_url: "{redis_url}", key_prefix: "{prefix}", reconnect_max_ms: 200}}'
    )
