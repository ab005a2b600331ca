"""Pause diagnostics for a `relaygate serve` process (bench only; never imported by relaygate).

    PYTHONPATH=bench/diag relaygate serve ...     # or through bench/profile.py, which passes env on

In a process whose command line contains ``serve``: times every garbage collection (per
generation: count, total and max ms, the slow ones) and every ledger batch insert (rows, wall ms,
thread CPU ms), and writes them as JSON to ``/tmp/relaygate-diag-<pid>.json`` every 2 s. This is
how the tail at concurrency 1 was traced to gen-2 collections and to the ledger thread holding
the GIL (bench/flamegraphs/README.md).
"""

from __future__ import annotations

import sys

if "serve" in sys.argv:
    import gc
    import json
    import threading
    import time
    from typing import Any

    _st: dict[str, Any] = {
        "n": [0, 0, 0],
        "ms": [0.0, 0.0, 0.0],
        "max_ms": [0.0, 0.0, 0.0],
        "slow": [],
        "ins": [],
    }
    _t0 = [0.0]
    _start = time.perf_counter()

    def _gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            _t0[0] = time.perf_counter()
            return
        d = (time.perf_counter() - _t0[0]) * 1000
        g = info["generation"]
        _st["n"][g] += 1
        _st["ms"][g] += d
        _st["max_ms"][g] = max(_st["max_ms"][g], d)
        if d > 1 and len(_st["slow"]) < 500:
            # generation, ms, seconds since start, objects frozen by then (0: before gc.freeze)
            since = round(time.perf_counter() - _start, 2)
            _st["slow"].append([g, round(d, 2), since, gc.get_freeze_count()])

    gc.callbacks.append(_gc)

    def _wrap_insert() -> None:
        for _ in range(100):  # wait until the app has imported the store
            time.sleep(0.1)
            mod = sys.modules.get("relaygate.ledger.usage_store")
            if mod is not None:
                break
        else:
            return
        orig = mod.UsageStore.insert_usage

        def insert_usage(self: Any, rows: Any) -> None:
            w0, c0 = time.perf_counter(), time.thread_time()
            try:
                orig(self, rows)
            finally:
                if len(_st["ins"]) < 2000:
                    _st["ins"].append(
                        [
                            len(rows),
                            round((time.perf_counter() - w0) * 1000, 2),
                            round((time.thread_time() - c0) * 1000, 2),
                        ]
                    )

        mod.UsageStore.insert_usage = insert_usage

    def _dump() -> None:
        import os

        while True:
            time.sleep(2)
            _st["frozen"] = gc.get_freeze_count()
            with open(f"/tmp/relaygate-diag-{os.getpid()}.json", "w") as f:
                json.dump(_st, f)

    threading.Thread(target=_wrap_insert, daemon=True).start()
    threading.Thread(target=_dump, daemon=True).start()
