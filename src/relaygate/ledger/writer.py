"""Batched, off-the-hot-path writing of usage rows (and, with another sink, captured payloads).

Requests ``await writer.submit(record)``; one background task gathers rows into batches (up to
``batch_size`` rows or ``flush_interval_s`` after the first) and inserts each batch in a worker
thread. Whatever Python work a row needs before the driver takes it (JSON, datetimes: the sink's
``prepare_row``) runs at submit, one row at a time on the event loop, and batches stay small (128
rows by default): Python code in the writer thread holds the GIL, and the event loop waits a
switch interval each time it has given the GIL up, which was most of the p99 at low concurrency
(bench/flamegraphs/README.md). Nothing is dropped
silently: a full queue makes ``submit`` wait (backpressure); a failing database is retried with
backoff while the rows wait; only ``close()`` running past its timeout gives rows up, and it counts
them in ``dropped`` and logs an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from relaygate.ledger.db import StorageError

__all__ = ["LedgerWriter", "PreparingSink", "UsageSink"]

logger = logging.getLogger(__name__)

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)


class UsageSink(Protocol[R_contra]):
    """Where batches go: ``UsageStore`` or a test double. Called from a worker thread; must
    write all rows or raise (``StorageError`` with ``transient=True`` means "retry later").
    """

    def insert_usage(self, rows: Sequence[R_contra]) -> None: ...


class PreparingSink(UsageSink[R_contra], Protocol[R_contra]):
    """A sink that converts each row to insert parameters first. ``prepare_row`` runs on the
    event loop at ``submit`` (cheap, about 15 µs; raises for a row that cannot be stored, which is
    then rejected and logged); ``insert_prepared`` gets a batch of its results in a worker
    thread, with the contract of ``insert_usage``.
    """

    def prepare_row(self, record: R_contra) -> Any: ...

    def insert_prepared(self, rows: Sequence[Any]) -> None: ...


class LedgerWriter(Generic[R]):
    """Queue + batching task in front of a ``UsageSink``; use from one event loop.

    Counters (rows): ``written``; ``pending`` (submitted, not yet written or given up);
    ``write_errors`` (failed insert attempts; transient ones are retried); ``rejected`` (rows the database
    refused on their own, e.g. a constraint: logged with their content, never retried);
    ``dropped`` (rows given up when ``close()`` timed out; should stay 0).
    """

    def __init__(
        self,
        sink: UsageSink[R],
        *,
        max_queue: int = 10_000,
        batch_size: int = 128,
        flush_interval_s: float = 0.2,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 5.0,
    ) -> None:
        self._sink = sink
        prepare = getattr(sink, "prepare_row", None)
        insert = getattr(sink, "insert_prepared", None)
        self._prepare: Callable[[R], Any] | None = None
        self._insert: Callable[[list[Any]], None] = sink.insert_usage
        if callable(prepare) and callable(insert):
            self._prepare, self._insert = prepare, insert
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._queue: asyncio.Queue[tuple[R, Any] | None] | None = None  # (record, its row)
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._abandoned = False  # close() timed out: the task is gone, late rows count as dropped
        self._submitted = 0
        self._written = 0
        self._rejected = 0
        self._dropped = 0
        self._write_errors = 0
        self._flush_target = 0  # flush() wants every row up to this submit count written now

    @property
    def written(self) -> int:
        return self._written

    @property
    def pending(self) -> int:
        return self._submitted - self._settled

    @property
    def write_errors(self) -> int:
        return self._write_errors

    @property
    def rejected(self) -> int:
        return self._rejected

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def _settled(self) -> int:
        return self._written + self._rejected + self._dropped

    async def start(self) -> None:
        """Start the batching task on the running loop. Raises ``RuntimeError`` if started twice."""
        if self._task is not None:
            raise RuntimeError("LedgerWriter already started")
        self._queue = asyncio.Queue(self._max_queue)
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._task = asyncio.create_task(self._run(), name="relaygate-ledger-writer")

    async def submit(self, record: R) -> None:
        """Enqueue ``record``; waits while the queue is full. Raises ``RuntimeError`` if the
        writer is not started or is closing.
        """
        if self._queue is None or self._wake is None or self._closing:
            raise RuntimeError("LedgerWriter is not running")
        row: Any = record
        if self._prepare is not None:
            try:
                row = self._prepare(record)
            except Exception as exc:  # as a refused insert would be: logged, never retried
                self._submitted += 1
                self._rejected += 1
                logger.error("ledger row rejected: it cannot be stored (%s); row: %r", exc, record)
                return
        await self._queue.put((record, row))
        self._submitted += 1
        if self._abandoned:  # was waiting for room when close() gave up
            self._dropped += 1
            logger.error("ledger writer closed: row %s dropped", getattr(record, "request_id", "?"))
            return
        # A full batch is waiting, or the queue is full and submitters are blocked: write now.
        if self._queue.qsize() >= min(self._batch_size, self._max_queue):
            self._wake.set()

    async def flush(self) -> None:
        """Return once every record submitted before this call is written (or given up).

        Waits as long as the database keeps failing; wrap in ``asyncio.timeout`` to bound it.
        """
        if self._progress is None or self._wake is None:
            return
        target = self._submitted
        self._flush_target = max(self._flush_target, target)
        self._wake.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._settled >= target or self._stopped())

    async def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop. After ``timeout_s`` seconds (e.g. the database is
        down) give the rest up: count it in ``dropped`` and log an error. Idempotent.
        """
        if self._task is None or self._queue is None or self._wake is None or self._closing:
            return
        self._closing = True
        try:
            async with asyncio.timeout(timeout_s):
                await self._queue.put(None)  # after every submit already waiting (FIFO)
                self._wake.set()
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._abandoned = True
            while not self._queue.empty():  # frees submits still waiting for room
                self._queue.get_nowait()
            lost = self.pending
            self._dropped += lost
            logger.error(
                "ledger writer: close() timed out after %.1f s; %d usage rows were NOT written "
                "(dropped; a batch in flight may still land). write_errors=%d",
                timeout_s,
                lost,
                self._write_errors,
            )
            await self._notify()

    def _stopped(self) -> bool:
        return self._task is not None and self._task.done()

    async def _run(self) -> None:
        assert self._queue is not None
        try:
            stopping = False
            while not stopping:
                first = await self._queue.get()
                if first is None:
                    break
                batch = [first]
                stopping = await self._fill(batch)
                await self._write(batch)
                await self._notify()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not pass silently: flush() would wait forever
            logger.exception("ledger writer task failed; %d rows pending", self.pending)
            raise
        finally:
            await self._notify()

    async def _fill(self, batch: list[tuple[R, Any]]) -> bool:
        """Add queued rows to ``batch`` until it is full, the interval since the first row has
        passed, or a flush/close wants it now. Returns True when the close marker was taken.
        """
        assert self._queue is not None and self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._flush_interval_s
        while True:
            self._wake.clear()  # before draining, so a wake-up set while draining is not lost
            while len(batch) < self._batch_size:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if item is None:
                    return True
                batch.append(item)
            remaining = deadline - loop.time()
            urgent = self._closing or self._settled < self._flush_target
            if len(batch) >= self._batch_size or remaining <= 0 or urgent:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _write(self, batch: list[tuple[R, Any]]) -> None:
        """Insert ``batch``, retrying transient failures with exponential backoff until it lands.

        If the database refuses the batch for its data, each row is retried alone so that one
        bad row is rejected (and logged) instead of blocking or losing the others.
        """
        delay = self._retry_initial_s
        while True:
            try:
                await asyncio.to_thread(self._insert, [row for _, row in batch])
            except StorageError as exc:
                self._write_errors += 1
                if not exc.transient:
                    await self._write_alone(batch, exc)
                    return
                logger.warning(
                    "ledger write of %d rows failed (%s); retrying in %.2f s, %d rows pending",
                    len(batch),
                    exc,
                    delay,
                    self.pending,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
            except Exception as exc:  # e.g. a value the sink cannot serialise: treat as refused
                self._write_errors += 1
                await self._write_alone(batch, exc)
                return
            else:
                self._written += len(batch)
                return

    async def _write_alone(self, batch: list[tuple[R, Any]], cause: BaseException) -> None:
        if len(batch) > 1:
            for record in batch:
                await self._write([record])
            return
        self._rejected += 1
        logger.error("ledger row rejected by the database (%s); row: %r", cause, batch[0][0])

    async def _notify(self) -> None:
        if self._progress is not None:
            async with self._progress:
                self._progress.notify_all()
