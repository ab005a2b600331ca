"""Ledger insert throughput while another thread holds the CPU (as the event loop does under load).

Compares, in one process, the driver's plain ``executemany`` (the baseline) with
``UsageStore.insert_usage`` on the same rows and prints rows/s and the ratio. The busy thread and
a 1 ms switch interval (what ``relaygate serve`` sets) reproduce the GIL hand-offs that starved
the ledger writer at saturation (docs/performance.md).

    .venv/bin/python bench/ledger_contention.py [--db URL] [--batches 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_bench import _rows

from relaygate.ledger.migrate import open_database
from relaygate.ledger.schema import usage
from relaygate.ledger.usage_store import UsageStore, _to_row

BATCH = 128  # LedgerWriter's default batch size


def _rate(insert: Callable[[list], None], batches: list[list]) -> float:
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    busy = threading.Thread(target=spin)
    busy.start()
    t0 = time.perf_counter()
    for batch in batches:
        insert(batch)
    elapsed = time.perf_counter() - t0
    stop.set()
    busy.join()
    return sum(len(b) for b in batches) / elapsed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--db", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--batches", type=int, default=20)
    args = ap.parse_args(argv)
    sys.setswitchinterval(0.001)
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_database(args.db or f"sqlite:///{tmp}/ledger.db")
        store = UsageStore(engine)
        rows = _rows(BATCH * args.batches * 2)
        for i, r in enumerate(rows):
            r.request_id = f"req_{time.time_ns()}_{i}"
        first = [rows[i : i + BATCH] for i in range(0, len(rows) // 2, BATCH)]
        second = [rows[i : i + BATCH] for i in range(len(rows) // 2, len(rows), BATCH)]

        def baseline(batch: list) -> None:
            with engine.begin() as conn:
                conn.execute(usage.insert(), [_to_row(r) for r in batch])

        base = _rate(baseline, first)
        ours = _rate(store.insert_usage, second)
        engine.dispose()
    print(
        f"{engine.dialect.name}: executemany {base:,.0f} rows/s, insert_usage {ours:,.0f} rows/s, "
        f"ratio {ours / base:.2f}x (busy thread, 1 ms switch interval)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
