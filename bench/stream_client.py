"""Streaming client for the relaygate benchmark: time to first byte and to first content token.

    python bench/stream_client.py --url URL --model M [--headers JSON] [--concurrency 16]
                                  [--duration 6] [--warmup 1]

Keeps `concurrency` SSE chat streams open back to back for `duration` seconds (after `warmup`
seconds that are not counted) and prints one JSON line: streams completed, streams/s, errors,
and p50/p90/p99 of TTFB (response headers in), TTFT (first `data:` event whose
choices[0].delta.content is non-empty) and the whole stream. A stream counts only if it carried
content and ended with `data: [DONE]`.

It is a Python asyncio client (aiohttp, uvloop when installed), so it spends CPU of its own: the
harness runs it against the mock directly in the same run and reports gateway numbers as the
difference to that baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

try:
    import orjson

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _loads = json.loads


def _pct(xs: list[float], p: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def _has_content(event: bytes) -> bool:
    for line in event.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]" or b'"content"' not in data:
            continue
        try:
            obj = _loads(data)
        except ValueError:
            continue
        for choice in obj.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                return True
    return False


async def _one(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    async with session.post(url, data=body) as resp:
        ttfb = time.perf_counter() - t0
        if resp.status != 200:
            await resp.read()
            raise RuntimeError(f"status {resp.status}")
        ttft = None
        buf = b""
        tail = b""
        async for chunk in resp.content.iter_any():
            if ttft is None:
                buf += chunk
                while b"\n\n" in buf:
                    event, buf = buf.split(b"\n\n", 1)
                    if _has_content(event):
                        ttft = time.perf_counter() - t0
                        break
            tail = (tail + chunk)[-64:]
        total = time.perf_counter() - t0
    if ttft is None:
        raise RuntimeError("stream without content")
    if b"[DONE]" not in tail:
        raise RuntimeError("stream without [DONE]")
    return ttfb, ttft, total


async def _run(args: argparse.Namespace) -> dict:
    body = json.dumps(
        {
            "model": args.model,
            "messages": [{"role": "user", "content": "hello there, how are you?"}],
            "stream": True,
            "max_tokens": 32,
        }
    ).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
    # one value per header name, whatever its case (two Authorization headers confuse gateways)
    headers.update({k.lower(): v for k, v in json.loads(args.headers or "{}").items()})
    ttfbs: list[float] = []
    ttfts: list[float] = []
    totals: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=args.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.duration
    async with aiohttp.ClientSession(headers=headers, connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                t = time.perf_counter()
                if t >= stop_at:
                    return
                try:
                    ttfb, ttft, total = await _one(session, args.url, body)
                except Exception as exc:
                    if t >= measure_from:
                        key = str(exc)[:80] or type(exc).__name__
                        errors[key] = errors.get(key, 0) + 1
                    await asyncio.sleep(0.01)
                    continue
                if t >= measure_from and t + total <= stop_at + 5:
                    ttfbs.append(ttfb * 1000)
                    ttfts.append(ttft * 1000)
                    totals.append(total * 1000)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    elapsed = max(1e-9, min(time.perf_counter(), stop_at + 5) - measure_from)
    return {
        "streams": len(ttfts),
        "streams_per_s": len(ttfts) / elapsed,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "ttfb_p50_ms": _pct(ttfbs, 50),
        "ttfb_p90_ms": _pct(ttfbs, 90),
        "ttfb_p99_ms": _pct(ttfbs, 99),
        "ttft_p50_ms": _pct(ttfts, 50),
        "ttft_p90_ms": _pct(ttfts, 90),
        "ttft_p99_ms": _pct(ttfts, 99),
        "total_p50_ms": _pct(totals, 50),
        "total_p99_ms": _pct(totals, 99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="the chat completions URL")
    ap.add_argument("--model", required=True)
    ap.add_argument("--headers", default="", help="extra headers as a JSON object")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    args = ap.parse_args()
    try:
        import uvloop

        result = uvloop.run(_run(args))
    except ImportError:
        result = asyncio.run(_run(args))
    sys.stdout.write("BENCHJSON " + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
