"""Response-cache hit latency against a miss, and ledger write throughput on SQLite and PostgreSQL.

    .venv/bin/python bench/cache_bench.py [--requests 300] [--rows 20000] [--smoke]
    .venv/bin/python bench/cache_bench.py --smoke      # a few seconds; what CI may run

Part 1 starts the provider simulator (0 ms, and 50 ms like a fast real upstream) and the gateway on
loopback, then sends the same deterministic request again and again (hits) and a new question each
time (misses), sequentially, through the memory backend, the Redis backend (127.0.0.1:6379, when
reachable) and the semantic route (a miss there also embeds the question). It prints p50/p90/p99
and the ratio hit/miss. Part 2 writes usage rows through ``LedgerWriter`` into ``UsageStore`` on a
temp SQLite file and (when reachable) a throw-away PostgreSQL schema, and prints rows/s and the ratio.

Client, gateway and simulator share this process (and the GIL): absolute numbers are pessimistic;
compare ratios, never gate CI on them (the exit status does not depend on the numbers).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.harness import run_gateway

from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.usage_store import UsageStore
from relaygate.ledger.writer import LedgerWriter
from relaygate.sim import run_sim_in_thread

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _config(sim_url: str, model: str, cache_section: str) -> str:
    return f"""
providers:
  up: {{protocol: openai, base_url: "{sim_url}"}}
routes:
  exact: {{deployments: [{{provider: up, model: {model}}}], cache: {{enabled: true}}}}
  sem:
    deployments: [{{provider: up, model: {model}}}]
    cache: {{enabled: true, semantic: {{enabled: true, threshold: 0.95}}}}
auth: {{mode: open}}
{cache_section}
"""


def _question(mode: str, fixed: str, i: int) -> str:
    if mode == "hit":
        return fixed
    if mode == "semantic":  # another exact key each time, the same meaning (padding is ignored)
        return fixed + " " * (1 + i % 200)
    return f"Question number {i}: {uuid.uuid4().hex}?"


async def _latencies(url: str, route: str, n: int, *, mode: str) -> list[float]:
    """``n`` sequential requests; ``mode``: ``hit`` (the same question each time, stored by the
    warm-up), ``semantic`` (a variant of it each time: an exact miss, a semantic hit) or ``miss``
    (a new question each time). Returns milliseconds."""
    fixed = f"Tell me about caching, please. {uuid.uuid4().hex[:6]}"
    lat: list[float] = []
    async with aiohttp.ClientSession(headers={"content-type": "application/json"}) as s:

        async def one(question: str, expect: str | None) -> None:
            body = {"model": route, "temperature": 0, "messages": [{"role": "user", "content": question}]}
            t0 = time.perf_counter()
            async with s.post(url + "/chat/completions", data=orjson.dumps(body)) as r:
                await r.read()
                assert r.status == 200, r.status
                got = r.headers.get("x-relaygate-cache")
            lat.append((time.perf_counter() - t0) * 1000)
            if expect is not None and got != expect:
                raise RuntimeError(f"expected a cache {expect}, got {got}")

        for i in range(10):  # warm-up: pools, the embedding model, the stored answer
            await one(fixed if mode != "miss" else _question(mode, fixed, -i), None)
        await asyncio.sleep(0.05)  # the stored answer is written off the request path
        lat.clear()
        for i in range(n):
            await one(_question(mode, fixed, i), "miss" if mode == "miss" else "hit")
    return lat


def _redis_up() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5)
        client.ping()
        client.close()
        return True
    except redis.exceptions.RedisError:
        return False


def cache_latency(requests: int, upstream_ms: list[int]) -> None:
    print("## cache-hit latency vs miss (sequential, one client)")
    print(f"{'backend':<9}{'route':<7}{'upstream':>9}{'kind':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}")
    backends = [("memory", "")]
    if _redis_up():
        prefix = f"rgbench:{uuid.uuid4().hex}:"
        backends.append(
            ("redis", f'cache: {{backend: redis, redis_url: "{REDIS_URL}", key_prefix: "{prefix}"}}')
        )
    else:
        print(f"(no Redis at {REDIS_URL}: redis backend skipped)")
    scenario = {
        "models": {f"m{ms}": {"reply": "a cached answer " * 20, "latency_ms": ms} for ms in upstream_ms}
    }
    with run_sim_in_thread(scenario) as sim, tempfile.TemporaryDirectory() as tmp:
        for backend, section in backends:
            for ms in upstream_ms:
                cfg = _config(sim.url, f"m{ms}", section)
                with run_gateway(cfg, storage_url=f"sqlite:///{tmp}/{backend}{ms}.db") as gw:
                    for route, modes in (("exact", ("miss", "hit")), ("sem", ("miss", "semantic"))):
                        med: dict[str, float] = {}
                        for mode in modes:
                            lat = asyncio.run(_latencies(gw.base_url, route, requests, mode=mode))
                            med[mode] = statistics.median(lat)
                            pcts = "".join(f"{_pct(lat, p):>9.2f}" for p in (50, 90, 99))
                            print(f"{backend:<9}{route:<7}{f'{ms} ms':>9}{mode:>9}{pcts}")
                        ratio = med[modes[1]] / med["miss"]
                        print(f"  ratio hit/miss p50: {ratio:.3f}x (a hit is {1 / ratio:.1f}x faster)")
                    stats = gw.gateway.cache.stats()
                    if "embed_ms_avg" in stats:
                        avg = stats["embed_ms_avg"]
                        print(f"  semantic: embedding one question took {avg:.2f} ms on average")


def _rows(n: int) -> list[UsageRecord]:
    now = datetime.now(UTC)
    attempt = [AttemptRecord("up/m1", "up", 200, None, 12.5)]
    return [
        UsageRecord(
            request_id=f"req_{i:08d}",
            ts=now,
            endpoint="/v1/chat/completions",
            status=200,
            tenant="acme",
            route="chat",
            served_deployment="up/m1",
            served_provider="up",
            attempts=attempt,
            prompt_tokens=100,
            completion_tokens=20,
            cost_usd=0.0002,
            latency_ms=30.0,
            policy={"allowed": ["up/m1"], "excluded": []},
            cache="miss",
        )
        for i in range(n)
    ]


async def _write(store: UsageStore, rows: list[UsageRecord]) -> float:
    writer: LedgerWriter[UsageRecord] = LedgerWriter(store)
    await writer.start()
    t0 = time.perf_counter()
    for row in rows:
        await writer.submit(row)
    await writer.flush()
    elapsed = time.perf_counter() - t0
    await writer.close()
    assert store.count_usage() == len(rows), "rows were lost"
    return len(rows) / elapsed


def ledger_throughput(n: int) -> None:
    print(f"\n## ledger write throughput ({n} rows through LedgerWriter -> UsageStore)")
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(f"sqlite:///{tmp}/ledger.db")
        try:
            rates["sqlite"] = asyncio.run(_write(UsageStore(engine), _rows(n)))
        finally:
            engine.dispose()
    try:
        import sqlalchemy as sa

        schema = f"rg_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        try:
            engine = open_database(f"{PG_URL}?options=-csearch_path%3D{schema}")
            try:
                rates["postgresql"] = asyncio.run(_write(UsageStore(engine), _rows(n)))
            finally:
                engine.dispose()
        finally:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    except Exception as exc:  # no server, no driver: report and go on
        print(f"(PostgreSQL at {PG_URL} not usable: {str(exc).splitlines()[0]})")
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>10.0f} rows/s")
    if len(rates) == 2:
        print(f"  ratio postgresql/sqlite: {rates['postgresql'] / rates['sqlite']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--requests", type=int, default=300, help="measured requests per (route, hit/miss)")
    ap.add_argument("--rows", type=int, default=20_000, help="ledger rows per backend")
    ap.add_argument("--smoke", action="store_true", help="a few seconds: 20 requests, 2,000 rows, 0 ms only")
    args = ap.parse_args(argv)
    if args.smoke:
        args.requests, args.rows = 20, 2_000
    cache_latency(args.requests, [0] if args.smoke else [0, 50])
    ledger_throughput(args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
