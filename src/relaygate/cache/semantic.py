"""The semantic cache's vector index: answers cached for *similar* questions.

A request's last user message is embedded with the local all-MiniLM-L6-v2 (384 dimensions,
L2-normalised; the loader lives in ``relaygate.evals.graders_similarity``) in a worker thread,
never on the event loop (~5 ms per query on one core, LOCAL_MODEL.md). Vectors live in process
in one exact inner-product index (faiss ``IndexFlatIP`` behind ``IndexIDMap2``) per scope (route
and tenant, or route and ``*``); each vector points at the exact-cache key whose answer it
stands for, and carries the ``context`` digest (system prompt, earlier turns, parameters): a
neighbour counts only when its context is identical and its cosine similarity reaches the route's
threshold.

faiss (https://github.com/facebookresearch/faiss) flat search is exact and supports removal
(TTL, eviction); ~450 us per query at the 10k-vector cap (384 d, one core), small next to the
~4 ms embedding. Measured and rejected: hnswlib (57 us, but only a source distribution: a C++
build at every install, last release 2023), usearch (160 us, but importing it before
onnxruntime crashes the process with a segmentation fault), faiss' HNSW (cannot delete).
Vectors are per replica (with the Redis backend a replica finds the entries others stored only
by exact key); they are lost on restart and re-learnt from traffic.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Embedder", "Neighbour", "SemanticIndex", "default_embedder"]

NEIGHBOURS = 8  # how many nearest vectors are checked for a matching context
_INITIAL_CAPACITY = 256


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape ``(len(texts), dim)``. Blocking (CPU)."""
        ...


def default_embedder() -> Embedder:
    """The process-wide local MiniLM embedder (shared with the eval grader; loads on first use).

    Raises ``EmbeddingModelMissingError`` on first ``embed`` when the model is not installed.
    """
    from relaygate.evals.graders_similarity import default_embedder as shared

    return shared()


@dataclass(frozen=True, slots=True)
class Neighbour:
    key: str
    similarity: float  # cosine, in [-1, 1]


@dataclass(slots=True)
class _Meta:
    key: str
    context: str
    expires: float


class _ScopeIndex:
    def __init__(self, dim: int, cap: int) -> None:
        import faiss

        self.cap = cap
        # Exact inner product on L2-normalised vectors (score = cosine), addressed by our labels.
        self.index: Any = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.meta: OrderedDict[int, _Meta] = OrderedDict()  # live labels, oldest first
        self.labels: dict[str, int] = {}  # cache key -> its live label
        self.next_label = 0

    def remove(self, label: int) -> None:
        meta = self.meta.pop(label, None)
        if meta is not None:
            self.labels.pop(meta.key, None)
            self.index.remove_ids(np.array([label], dtype=np.int64))

    def add(self, vector: np.ndarray, meta: _Meta) -> None:
        old = self.labels.get(meta.key)
        if old is not None:  # the same key stored again replaces its vector
            self.remove(old)
        if len(self.meta) >= self.cap:
            self.remove(next(iter(self.meta)))  # the oldest goes
        label = self.next_label  # labels are never reused, so a removed vector cannot come back
        self.next_label += 1
        self.index.add_with_ids(vector[None, :], np.array([label], dtype=np.int64))
        self.meta[label] = meta
        self.labels[meta.key] = label

    def search(self, vector: np.ndarray, context: str, now: float) -> Neighbour | None:
        if not self.meta:
            return None
        scores, labels = self.index.search(vector[None, :], min(NEIGHBOURS, len(self.meta)))
        for label, score in zip(labels[0], scores[0], strict=True):
            meta = self.meta.get(int(label))
            if meta is None:
                continue
            if meta.expires <= now:
                self.remove(int(label))
                continue
            if meta.context == context:
                return Neighbour(meta.key, float(score))
        return None


class SemanticIndex:
    """Per-scope HNSW indexes of at most ``max_per_scope`` vectors each (oldest evicted).

    Not thread-safe: call from the event loop only (each call is tens of microseconds); only
    ``embedder.embed`` runs in a thread. ``clock``: monotonic seconds.
    """

    def __init__(
        self, embedder: Embedder, *, max_per_scope: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.embedder = embedder
        self.max_per_scope = max_per_scope
        self._clock = clock
        self._scopes: dict[str, _ScopeIndex] = {}

    def nearest(self, scope: str, context: str, vector: np.ndarray) -> Neighbour | None:
        """The most similar live vector of ``scope`` whose context matches (any similarity)."""
        index = self._scopes.get(scope)
        return index.search(vector, context, self._clock()) if index is not None else None

    def add(self, scope: str, key: str, context: str, vector: np.ndarray, ttl_s: float) -> None:
        index = self._scopes.get(scope)
        if index is None:
            index = self._scopes[scope] = _ScopeIndex(int(vector.shape[0]), self.max_per_scope)
        index.add(vector.astype(np.float32, copy=False), _Meta(key, context, self._clock() + ttl_s))

    def forget(self, scope: str, key: str) -> None:
        """Drop the vector of ``key`` (its entry expired or was evicted from the backend)."""
        index = self._scopes.get(scope)
        label = index.labels.get(key) if index is not None else None
        if index is not None and label is not None:
            index.remove(label)

    def __len__(self) -> int:
        return sum(len(s.meta) for s in self._scopes.values())
