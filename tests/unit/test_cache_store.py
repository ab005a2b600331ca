"""Cache building blocks without the network: the LRU with TTL, the entry format, replaying an
answer as chunks and assembling chunks back, and the semantic index over real vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from relaygate.cache.entry import CacheEntry, EntryFormatError
from relaygate.cache.memory import MemoryCache
from relaygate.cache.replay import StreamAssembler, fresh_completion, synth_chunks
from relaygate.cache.semantic import SemanticIndex


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(body: bytes = b'{"x":1}', dep: str = "up/m1") -> CacheEntry:
    return CacheEntry(body, dep, "up", 1.5e9, "ctx")


async def test_memory_ttl_expiry() -> None:
    clock = Clock()
    cache = MemoryCache(10, 1 << 20, clock=clock)
    await cache.set("k", entry(), ttl_s=2.0)
    clock.now += 1.99
    assert await cache.get("k") == entry()
    clock.now += 0.01
    assert await cache.get("k") is None and len(cache) == 0 and cache.bytes == 0


async def test_memory_lru_bounded_by_entries_and_bytes() -> None:
    cache = MemoryCache(2, 1 << 20, clock=Clock())
    for k in "abc":
        await cache.set(k, entry(), 60)
        if k == "b":
            await cache.get("a")  # a is now more recent than b
    assert await cache.get("b") is None and await cache.get("a") and await cache.get("c")
    small = MemoryCache(100, 3 * entry(b"x" * 100).size, clock=Clock())
    for k in "abcd":
        await small.set(k, entry(b"x" * 100), 60)
    assert len(small) == 3 and await small.get("a") is None and small.evictions == 1
    await small.set("huge", entry(b"x" * 10_000), 60)  # larger than the whole cache: not kept
    assert await small.get("huge") is None and len(small) == 3


def test_entry_bytes_round_trip_and_foreign_values() -> None:
    e = CacheEntry(b'{"a": "line\\nbreak"}', None, None, 12.5, "")
    assert CacheEntry.from_bytes(e.to_bytes()) == e
    for raw in (b"", b"garbage", b'{"v": 99}\n{}', b'{"v": 1}'):
        with pytest.raises(EntryFormatError):
            CacheEntry.from_bytes(raw)


DOC: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m1",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "x" * 600 + " done",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
}


def test_fresh_completion_changes_only_id_and_created() -> None:
    fresh = fresh_completion(DOC, now=2000.7)
    assert fresh["id"] != DOC["id"] and fresh["id"].startswith("chatcmpl-") and fresh["created"] == 2000
    assert {k: v for k, v in fresh.items() if k not in ("id", "created")} == {
        k: v for k, v in DOC.items() if k not in ("id", "created")
    }


@pytest.mark.parametrize("include_usage", [True, False])
def test_synthesised_chunks_assemble_back_into_the_answer(include_usage: bool) -> None:
    chunks = synth_chunks(DOC, include_usage=include_usage)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert sum(1 for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")) == 3
    assert (chunks[-1]["choices"] == []) is include_usage
    assembler = StreamAssembler()
    for c in chunks:
        assert c["object"] == "chat.completion.chunk" and c["id"] == DOC["id"]
        assembler.feed(c)
    back = assembler.result()
    assert back is not None
    assert back["choices"] == DOC["choices"]
    assert back.get("usage") == (DOC["usage"] if include_usage else None)


def test_assembler_has_no_result_before_a_finish_reason() -> None:
    assembler = StreamAssembler()
    for c in synth_chunks(DOC, include_usage=False)[:-1]:
        assembler.feed(c)
    assert assembler.result() is None
    assert StreamAssembler().result() is None


def _unit(rng: np.random.Generator, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal(dim).astype(np.float32)
    return np.asarray(v / np.linalg.norm(v), dtype=np.float32)


class _NoEmbedder:
    dim = 16

    def embed(self, texts: Any) -> np.ndarray:
        raise AssertionError("the index never embeds by itself")


def test_semantic_index_scopes_contexts_ttl_and_capacity() -> None:
    rng = np.random.default_rng(1)
    clock = Clock()
    index = SemanticIndex(_NoEmbedder(), max_per_scope=300, clock=clock)
    vectors = [_unit(rng) for _ in range(300)]
    for i, v in enumerate(vectors):  # grows past the initial capacity of 256
        index.add("chat:acme", f"k{i}", "ctx", v, ttl_s=10)
    near = index.nearest("chat:acme", "ctx", vectors[7])
    assert near is not None and near.key == "k7" and near.similarity == pytest.approx(1.0, abs=1e-5)
    assert index.nearest("chat:beta", "ctx", vectors[7]) is None  # another tenant's scope
    other = index.nearest("chat:acme", "other-ctx", vectors[7])
    assert other is None  # nothing with that context among the nearest
    index.add("chat:acme", "new", "ctx", _unit(rng), ttl_s=10)  # full: the oldest (k0) goes
    assert len(index) == 300
    hit0 = index.nearest("chat:acme", "ctx", vectors[0])
    assert hit0 is not None and hit0.key != "k0"
    index.forget("chat:acme", "k7")
    hit7 = index.nearest("chat:acme", "ctx", vectors[7])
    assert hit7 is not None and hit7.key != "k7"
    clock.now += 11
    assert index.nearest("chat:acme", "ctx", vectors[9]) is None  # expired


async def test_a_hit_needs_the_producing_deployment_to_be_allowed_now() -> None:
    from relaygate.cache.service import ResponseCache
    from relaygate.config import load_config_text

    cfg = load_config_text(
        """
providers:
  up: {protocol: openai, base_url: "http://127.0.0.1:9"}
routes:
  chat: {deployments: [{provider: up, model: m1}], cache: {enabled: true}}
"""
    )
    cache = ResponseCache(cfg.cache)
    data = {"model": "chat", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}
    miss = await cache.lookup(cfg, "acme", "chat", data, {"up/m1"})
    assert miss.status == "miss" and not miss.hit
    await cache.store(miss, b'{"choices": []}', "up/m1", "up")
    assert (await cache.lookup(cfg, "acme", "chat", data, {"up/m1"})).status == "hit"
    denied = await cache.lookup(cfg, "acme", "chat", data, set())  # policy now excludes up/m1
    assert denied.status == "miss" and not denied.hit
    assert (await cache.lookup(cfg, "beta", "chat", data, {"up/m1"})).status == "miss"
    await cache.close()
