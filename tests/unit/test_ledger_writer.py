"""LedgerWriter: batching, flush, backpressure, close, and surviving database failures."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from relaygate.ledger.db import StorageError, create_db_engine
from relaygate.ledger.migrate import migrate, open_database
from relaygate.ledger.records import AttemptRecord, UsageRecord
from relaygate.ledger.usage_store import UsageStore
from relaygate.ledger.writer import LedgerWriter


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'relaygate.db'}"
    migrate(url)
    return url


@pytest.fixture
def store(sqlite_url: str) -> Iterator[UsageStore]:
    engine = create_db_engine(sqlite_url)
    yield UsageStore(engine)
    engine.dispose()


def record(i: int, **overrides: object) -> UsageRecord:
    rec = UsageRecord(
        request_id=f"req-{i}",
        ts=datetime.now(UTC),
        endpoint="/v1/chat/completions",
        status=200,
        tenant=f"t{i % 3}",
        route="gpt-4o",
        served_deployment="dep",
        attempts=[AttemptRecord("dep", "prov", 200, None, 10.0)],
        prompt_tokens=i,
        completion_tokens=2 * i,
        cost_usd=i / 1000,
        latency_ms=100.0,
    )
    for name, value in overrides.items():
        setattr(rec, name, value)
    return rec


class RecordingSink:
    """Passes batches to a real store and remembers their sizes; can be told to fail."""

    def __init__(self, inner: UsageStore | None = None) -> None:
        self.inner = inner
        self.batches: list[int] = []
        self.fail_with: Exception | None = None
        self.gate = threading.Event()
        self.gate.set()

    def insert_usage(self, rows: Sequence[UsageRecord]) -> None:
        self.gate.wait(10)
        if self.fail_with is not None:
            raise self.fail_with
        if self.inner is not None:
            self.inner.insert_usage(rows)
        self.batches.append(len(rows))


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Poll ``predicate`` (a writer counter check) every 10 ms; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def test_batches_are_bounded_and_flush_writes_everything(store: UsageStore) -> None:
    sink = RecordingSink(store)
    writer = LedgerWriter(sink, batch_size=500)
    await writer.start()
    await asyncio.gather(*(writer.submit(record(i)) for i in range(1200)))
    await writer.flush()
    assert store.count_usage() == 1200
    assert sum(sink.batches) == 1200
    assert max(sink.batches) <= 500
    assert len(sink.batches) <= 6
    assert (writer.written, writer.pending, writer.write_errors, writer.dropped) == (1200, 0, 0, 0)
    await writer.close()


async def test_rows_wait_for_the_interval_and_flush_returns_only_when_written(store: UsageStore) -> None:
    writer = LedgerWriter(store, flush_interval_s=30.0)
    await writer.start()
    for i in range(3):
        await writer.submit(record(i))
    await asyncio.sleep(0.1)
    assert store.count_usage() == 0  # batching: nothing written yet
    assert writer.pending == 3
    await writer.flush()
    assert store.count_usage() == 3
    assert writer.pending == 0
    await writer.flush()  # nothing pending: returns at once
    await writer.close()


async def test_interval_writes_without_flush(store: UsageStore) -> None:
    writer = LedgerWriter(store, flush_interval_s=0.05)
    await writer.start()
    await writer.submit(record(1))
    await wait_for(lambda: writer.written == 1, timeout_s=2.0)
    assert store.count_usage() == 1
    await writer.close()


async def test_2000_concurrent_submits_land_exactly_once(db_url: str) -> None:
    engine = open_database(db_url)
    try:
        store = UsageStore(engine)
        writer = LedgerWriter(store, max_queue=100)  # smaller than a batch: exercises backpressure
        await writer.start()
        await asyncio.gather(*(writer.submit(record(i)) for i in range(2000)))
        await writer.flush()
        assert store.count_usage() == 2000
        totals = store.query_usage(datetime(2000, 1, 1, tzinfo=UTC), "tenant")
        assert sum(r["requests"] for r in totals) == 2000
        assert sum(r["prompt_tokens"] for r in totals) == sum(range(2000))
        assert sum(r["completion_tokens"] for r in totals) == 2 * sum(range(2000))
        assert sum(r["cost_usd"] for r in totals) == pytest.approx(sum(range(2000)) / 1000)
        await writer.close()
        assert (writer.written, writer.dropped, writer.write_errors) == (2000, 0, 0)
    finally:
        engine.dispose()


async def test_close_flushes_and_later_submits_are_refused(store: UsageStore) -> None:
    writer = LedgerWriter(store, flush_interval_s=30.0)
    with pytest.raises(RuntimeError):
        await writer.submit(record(0))  # not started
    await writer.start()
    for i in range(50):
        await writer.submit(record(i))
    await writer.close()
    assert store.count_usage() == 50
    assert writer.dropped == 0
    with pytest.raises(RuntimeError):
        await writer.submit(record(99))
    await writer.close()  # idempotent


async def test_full_queue_makes_submit_wait(store: UsageStore) -> None:
    sink = RecordingSink(store)
    sink.gate.clear()  # the database "hangs"
    writer = LedgerWriter(sink, max_queue=5, batch_size=2, flush_interval_s=0.01)
    await writer.start()
    tasks = [asyncio.create_task(writer.submit(record(i))) for i in range(20)]
    await asyncio.sleep(0.2)
    assert sum(t.done() for t in tasks) < 20  # backpressure: some submits are waiting
    sink.gate.set()
    await asyncio.gather(*tasks)
    await writer.flush()
    assert store.count_usage() == 20
    await writer.close()


async def test_table_missing_for_a_while_loses_nothing(db_url: str) -> None:
    engine = open_database(db_url)
    store = UsageStore(engine)
    writer = LedgerWriter(store, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.05)
    await writer.start()
    try:
        for i in range(10):
            await writer.submit(record(i))
        await writer.flush()
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE usage RENAME TO usage_offline")
        for i in range(10, 110):
            await writer.submit(record(i))
        await wait_for(lambda: writer.write_errors >= 2)
        assert writer.pending == 100
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE usage_offline RENAME TO usage")
        await writer.flush()
        assert store.count_usage() == 110
        assert sorted(r.request_id for r in store.list_usage(200)) == sorted(f"req-{i}" for i in range(110))
        await writer.close()
        assert (writer.written, writer.dropped, writer.rejected) == (110, 0, 0)
    finally:
        await writer.close()
        engine.dispose()


async def test_locked_database_is_retried_until_released(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_db_engine(sqlite_url, busy_timeout_ms=20)
    store = UsageStore(engine)
    writer = LedgerWriter(store, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.05)
    await writer.start()
    locker = sqlite3.connect(tmp_path / "relaygate.db", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        for i in range(25):
            await writer.submit(record(i))
        await wait_for(lambda: writer.write_errors >= 2)
        assert writer.written == 0
        locker.execute("COMMIT")
        await writer.flush()
        assert store.count_usage() == 25
        await writer.close()
        assert writer.dropped == 0
    finally:
        locker.close()
        engine.dispose()


async def test_a_refused_row_is_rejected_alone(store: UsageStore, caplog: pytest.LogCaptureFixture) -> None:
    writer = LedgerWriter(store, flush_interval_s=30.0, retry_initial_s=0.01, retry_max_s=0.05)
    await writer.start()
    for i in range(5):
        await writer.submit(record(i, endpoint=None) if i == 2 else record(i))
    with caplog.at_level(logging.ERROR, logger="relaygate.ledger.writer"):
        await writer.flush()
    assert store.count_usage() == 4
    assert (writer.written, writer.rejected, writer.pending, writer.dropped) == (4, 1, 0, 0)
    assert "req-2" in caplog.text
    await writer.close()


async def test_close_timeout_counts_dropped_rows_loudly(caplog: pytest.LogCaptureFixture) -> None:
    sink = RecordingSink()
    sink.fail_with = StorageError("database is locked", transient=True)
    writer = LedgerWriter(sink, flush_interval_s=0.01, retry_initial_s=0.01, retry_max_s=0.05)
    await writer.start()
    for i in range(7):
        await writer.submit(record(i))
    await wait_for(lambda: writer.write_errors >= 1)
    with caplog.at_level(logging.ERROR, logger="relaygate.ledger.writer"):
        await writer.close(timeout_s=0.2)
    assert (writer.dropped, writer.pending, writer.written) == (7, 0, 0)
    assert "NOT written" in caplog.text


async def test_rows_are_prepared_on_the_event_loop_and_inserted_in_a_thread(store: UsageStore) -> None:
    # The Python work per row (JSON, datetimes) happens at submit on the loop, one row at a time;
    # the writer thread gets ready parameters (the GIL is then held there only for the driver).
    loop_thread = threading.get_ident()
    seen: dict[str, set[int]] = {"prepare": set(), "insert": set()}

    class Spy:
        def insert_usage(self, rows: Sequence[UsageRecord]) -> None:
            raise AssertionError("a preparing sink gets insert_prepared")

        def prepare_row(self, rec: UsageRecord) -> object:
            seen["prepare"].add(threading.get_ident())
            return store.prepare_row(rec)

        def insert_prepared(self, rows: Sequence[object]) -> None:
            seen["insert"].add(threading.get_ident())
            assert all(isinstance(row, tuple) for row in rows)  # SQLite: driver values
            store.insert_prepared(rows)  # type: ignore[arg-type]

    writer = LedgerWriter(Spy(), flush_interval_s=30.0)
    await writer.start()
    for i in range(5):
        await writer.submit(record(i))
    assert seen["prepare"] == {loop_thread} and not seen["insert"]
    await writer.flush()
    assert store.count_usage() == 5
    assert seen["insert"] and loop_thread not in seen["insert"]
    await writer.close()


async def test_a_row_that_cannot_be_prepared_is_rejected_and_the_rest_land(
    store: UsageStore, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(store, flush_interval_s=30.0)
    await writer.start()
    with caplog.at_level(logging.ERROR, logger="relaygate.ledger.writer"):
        for i in range(4):  # a set is not JSON: the policy column cannot hold it
            await writer.submit(record(i, policy={"bad": {1, 2}}) if i == 1 else record(i))
        await writer.flush()
    assert store.count_usage() == 3
    assert (writer.written, writer.rejected, writer.pending, writer.dropped) == (3, 1, 0, 0)
    assert "req-1" in caplog.text and "cannot be stored" in caplog.text
    await writer.close()
