"""One cached answer and its byte form (the same in process and in Redis).

The body is the upstream's ``chat.completion`` JSON as the client first got it (or as assembled
from a completed stream). Byte form: one line of JSON metadata, ``\\n``, the body bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

__all__ = ["CacheEntry", "EntryFormatError"]

_FORMAT = 1


class EntryFormatError(ValueError):
    """Bytes that are not a cache entry of this version (treated as a miss)."""


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """``body``: ``chat.completion`` JSON bytes. ``deployment``/``provider``: who produced it (a
    hit is served only while policy still allows that deployment). ``created``: Unix seconds.
    ``context``: the semantic context digest of the request (see ``keys.CacheKeys``)."""

    body: bytes
    deployment: str | None
    provider: str | None
    created: float
    context: str = ""

    @property
    def size(self) -> int:
        """Approximate bytes held (body plus a fixed overhead per entry)."""
        return len(self.body) + 256

    def to_bytes(self) -> bytes:
        meta = {
            "v": _FORMAT,
            "dep": self.deployment,
            "prov": self.provider,
            "created": self.created,
            "ctx": self.context,
        }
        return orjson.dumps(meta) + b"\n" + self.body

    @classmethod
    def from_bytes(cls, raw: bytes) -> CacheEntry:
        """Raises ``EntryFormatError`` for anything else (an older format, a foreign value)."""
        head, sep, body = raw.partition(b"\n")
        try:
            meta = orjson.loads(head)
        except orjson.JSONDecodeError as exc:
            raise EntryFormatError("not a cache entry") from exc
        if not sep or not isinstance(meta, dict) or meta.get("v") != _FORMAT:
            raise EntryFormatError("not a cache entry of this format")
        return cls(
            body=body,
            deployment=meta.get("dep"),
            provider=meta.get("prov"),
            created=float(meta.get("created") or 0.0),
            context=str(meta.get("ctx") or ""),
        )
