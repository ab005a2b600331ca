"""The eval response cache: one answer per (target, normalised request), so a re-run costs nothing.

The key is the sha256 of the target (route name) and the request body in a canonical form:
keys sorted, ``null`` fields and fields that cannot change the answer (``model``, ``stream``,
``stream_options``, ``user``, ``metadata``, ``store``) dropped, text-only content-part lists
collapsed to one string, text in Unicode NFC with ``\\n`` line ends, and sampling numbers as
floats (``0`` and ``0.0`` are the same temperature). ``normalize_request`` and ``cache_key`` are
pure; ``ResponseCache`` keeps the entries in the ledger database (table ``eval_cache``).
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from relaygate.evals.store import json_safe
from relaygate.ledger.db import transaction
from relaygate.ledger.schema import eval_cache

__all__ = ["CachedResponse", "ResponseCache", "cache_key", "normalize_request"]

_IGNORED = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})
_FLOATS = frozenset({"temperature", "top_p", "presence_penalty", "frequency_penalty"})


def _text(value: str) -> str:
    return unicodedata.normalize("NFC", value.replace("\r\n", "\n"))


def _content(content: Any) -> Any:
    if isinstance(content, str):
        return _text(content)
    if isinstance(content, list):
        if all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            return "".join(_text(str(p.get("text", ""))) for p in content)
        return [_drop_nulls(p) if isinstance(p, dict) else p for p in content]
    return content


def _drop_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out = _drop_nulls(message)
    if "content" in out:
        out["content"] = _content(out["content"])
    return out


def normalize_request(body: dict[str, Any]) -> dict[str, Any]:
    """The canonical form of an OpenAI chat body for caching (see the module docstring).

    Pure; ``body`` is not changed. Unknown fields are kept as they are: they may change the answer.
    """
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key in _IGNORED or value is None:
            continue
        if key == "messages" and isinstance(value, list):
            value = [_message(m) if isinstance(m, dict) else m for m in value]
        elif key in _FLOATS and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        out[key] = value
    return out


def cache_key(target: str, body: dict[str, Any]) -> str:
    """sha256 hex of ``target`` and ``normalize_request(body)`` in canonical JSON (sorted keys)."""
    blob = orjson.dumps([target, normalize_request(body)], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedResponse:
    """A stored answer: the OpenAI ``chat.completion`` object, the deployment that served it, and
    what the original call took (``latency_ms``) and cost (USD)."""

    response: dict[str, Any]
    served_by: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None


class ResponseCache:
    """Cache entries in table ``eval_cache`` behind ``engine`` (owned by the caller).

    Methods block; ``aget``/``aput`` run them in a worker thread. Raises ``StorageError``.
    """

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def get(self, key: str) -> CachedResponse | None:
        with transaction(self._engine) as conn:
            row = conn.execute(sa.select(eval_cache).where(eval_cache.c.key == key)).mappings().first()
        if row is None:
            return None
        return CachedResponse(row["response"], row["served_by"], row["latency_ms"], row["cost_usd"])

    def put(self, key: str, target: str, request: dict[str, Any], entry: CachedResponse) -> None:
        """Store ``entry`` under ``key``, replacing an older entry."""
        values = {
            "key": key,
            "target": target,
            "request": json_safe(normalize_request(request)),
            "response": json_safe(entry.response),
            "served_by": entry.served_by,
            "latency_ms": entry.latency_ms,
            "cost_usd": entry.cost_usd,
            "created_at": datetime.now(UTC),
        }
        with transaction(self._engine, write=True) as conn:
            conn.execute(sa.delete(eval_cache).where(eval_cache.c.key == key))
            conn.execute(eval_cache.insert(), values)

    def count(self, target: str | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(eval_cache)
        if target is not None:
            stmt = stmt.where(eval_cache.c.target == target)
        with transaction(self._engine) as conn:
            return int(conn.execute(stmt).scalar_one())

    async def aget(self, key: str) -> CachedResponse | None:
        return await asyncio.to_thread(self.get, key)

    async def aput(self, key: str, target: str, request: dict[str, Any], entry: CachedResponse) -> None:
        await asyncio.to_thread(self.put, key, target, request, entry)
