"""Latency the gateway adds, measured against the same upstream called directly, in one process run.

    .venv/bin/python bench/overhead.py [--requests 500] [--concurrency 1]

Starts the provider simulator (0 ms) and the gateway on loopback, sends the same chat request
directly and through the gateway, and prints p50/p90/p99 for both plus the added milliseconds
and the ratio. Client, gateway and simulator share this process (and the GIL), so absolute
numbers are pessimistic; compare ratios between commits, never gate CI on them. The full
side-by-side harness against other gateways is issue #6.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import run_gateway

from relaygate.sim import run_sim_in_thread

BODY = b'{"model": "%s", "messages": [{"role": "user", "content": "hello there, how are you?"}]}'


async def _measure(url: str, model: str, n: int, concurrency: int, stream: bool) -> list[float]:
    body = BODY % model.encode()
    if stream:
        body = body[:-1] + b', "stream": true}'
    lat: list[float] = []
    async with aiohttp.ClientSession(headers={"content-type": "application/json"}) as s:

        async def one() -> None:
            t0 = time.perf_counter()
            async with s.post(url + "/chat/completions", data=body) as r:
                await r.read()
                assert r.status == 200, r.status
            lat.append((time.perf_counter() - t0) * 1000)

        for _ in range(20):  # warm-up: pools, caches
            await one()
        lat.clear()
        sem = asyncio.Semaphore(concurrency)

        async def limited() -> None:
            async with sem:
                await one()

        await asyncio.gather(*(limited() for _ in range(n)))
    return lat


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--concurrency", type=int, default=1)
    args = ap.parse_args()
    with run_sim_in_thread({}) as sim, tempfile.TemporaryDirectory() as tmp:
        cfg = f"""
providers:
  up: {{protocol: openai, base_url: "{sim.url}"}}
routes:
  chat: {{deployments: [{{provider: up, model: m1, price: {{input: 1, output: 2}}}}]}}
auth: {{mode: open}}
"""
        with run_gateway(cfg, storage_url=f"sqlite:///{tmp}/bench.db") as gw:
            print(f"{'path':<22}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'req/s':>9}")
            for stream in (False, True):
                rows = {}
                for name, url, model in (("direct", sim.url, "m1"), ("via relaygate", gw.base_url, "chat")):
                    t0 = time.perf_counter()
                    lat = asyncio.run(_measure(url, model, args.requests, args.concurrency, stream))
                    rps = args.requests / (time.perf_counter() - t0)
                    rows[name] = lat
                    label = f"{name}{' (stream)' if stream else ''}"
                    pcts = "".join(f"{_pct(lat, p):>9.2f}" for p in (50, 90, 99))
                    print(f"{label:<22}{pcts}{rps:>9.0f}")
                d, g = statistics.median(rows["direct"]), statistics.median(rows["via relaygate"])
                print(f"  added p50: {g - d:.2f} ms, ratio gateway/direct: {g / d:.2f}x")


if __name__ == "__main__":
    main()
