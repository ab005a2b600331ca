"""In-process LRU of cached answers with a TTL per entry, bounded by entries and bytes.

One per gateway process (replicas do not share it; use the Redis backend for that). Every
operation is O(1) and never awaits, so it is safe on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from relaygate.cache.entry import CacheEntry

__all__ = ["MemoryCache"]


class MemoryCache:
    """``max_entries`` entries and ``max_bytes`` bytes (``CacheEntry.size``) at most; the least
    recently used go first. ``clock``: monotonic seconds (injectable for tests)."""

    def __init__(
        self, max_entries: int, max_bytes: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, CacheEntry]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    async def get(self, key: str) -> CacheEntry | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires, entry = item
        if self._clock() >= expires:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return entry

    async def set(self, key: str, entry: CacheEntry, ttl_s: float) -> None:
        """Store ``entry`` for ``ttl_s`` seconds; an entry larger than ``max_bytes`` is not kept."""
        if key in self._items:
            self._drop(key)
        if entry.size > self.max_bytes:
            return
        self._items[key] = (self._clock() + ttl_s, entry)
        self.bytes += entry.size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            oldest = next(iter(self._items))
            self._drop(oldest)
            self.evictions += 1

    def _drop(self, key: str) -> None:
        _, entry = self._items.pop(key)
        self.bytes -= entry.size

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
        self.bytes = 0
