"""Cutoffs on the hot path: an immutable view of the registry, and the re-probe schedule. Pure.

``CutoffView`` answers "is provider P cut off for region R?" from memory; the gateway builds a new
one from ``CutoffStore.active()`` whenever ``CutoffStore.version()`` changes (polled about every
second) and swaps it in whole, so a request sees one consistent set.

Re-probe schedule (defaults; the config may change both):

- Only ``detected`` cutoffs are probed and cleared automatically. ``operator`` cutoffs stay until
  an operator clears them or their ``expires_at`` passes.
- A detected cutoff is probed when ``probe_interval_s`` (default 300 s) has passed since its last
  probe, or since it was created if never probed (``probe_due``). A probe is one minimal request
  from the cut-off region to the provider; its result goes to ``CutoffStore.record_probe``.
- A success adds one to ``probe_successes``; a failure, or the block being detected again,
  resets it to 0. Once it reaches ``clear_after_successes`` consecutive successes (default 3,
  so about 15 minutes of clean probes) the gateway clears the cutoff (``should_auto_clear``), which
  writes a ``cutoff.clear`` audit event. ``clear_after_successes=None`` means never: detected
  cutoffs then also wait for an operator.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relaygate.ledger.cutoff_store import Cutoff

__all__ = [
    "ALL_REGIONS",
    "DEFAULT_CLEAR_AFTER_SUCCESSES",
    "DEFAULT_PROBE_INTERVAL_S",
    "CutoffView",
    "probe_due",
    "should_auto_clear",
]

ALL_REGIONS = "*"
DEFAULT_PROBE_INTERVAL_S = 300.0
DEFAULT_CLEAR_AFTER_SUCCESSES: int | None = 3


@dataclass(frozen=True)
class CutoffView:
    """The cutoffs in force, indexed by (provider, upper-case region).

    ``version`` is the store version the view was built from (0 when unknown). Build with
    ``CutoffView.of(store.active(), version)``; an empty ``CutoffView()`` cuts nothing.
    """

    cutoffs: tuple[Cutoff, ...] = ()
    version: int = 0
    _index: dict[tuple[str, str], Cutoff] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], Cutoff] = {}
        for cutoff in self.cutoffs:
            if cutoff.cleared_at is not None:
                continue
            key = (cutoff.provider, cutoff.region.strip().upper())
            held = index.get(key)
            # One open row per pair in the store; if handed two, an operator's wins.
            if held is None or (held.source != "operator" and cutoff.source == "operator"):
                index[key] = cutoff
        object.__setattr__(self, "_index", index)

    @classmethod
    def of(cls, cutoffs: Iterable[Cutoff], version: int = 0) -> CutoffView:
        return cls(tuple(cutoffs), version)

    def is_cut(self, provider: str, region: str | None, now: datetime | None = None) -> Cutoff | None:
        """The cutoff that restricts ``provider`` for a request from ``region``, else None.

        ``region`` is matched case-insensitively; a ``*`` cutoff matches every request, and a
        request without a region is only affected by ``*``. A region-specific cutoff is returned
        in preference to ``*``. With ``now``, cutoffs whose ``expires_at`` has passed are ignored
        (the view may be older than the nearest expiry).
        """
        if not self._index:
            return None
        candidates = []
        if region is not None and region.strip():
            candidates.append(self._index.get((provider, region.strip().upper())))
        candidates.append(self._index.get((provider, ALL_REGIONS)))
        for cutoff in candidates:
            if cutoff is not None and (now is None or cutoff.expires_at is None or cutoff.expires_at > now):
                return cutoff
        return None

    def pairs(self, now: datetime | None = None) -> frozenset[tuple[str, str]]:
        """Every (provider, region) restricted, regions upper case (``*`` as is): the shape
        ``policy.engine.decide`` takes. With ``now``, expired cutoffs are left out.
        """
        if now is None:
            return frozenset(self._index)
        return frozenset(k for k, c in self._index.items() if c.expires_at is None or c.expires_at > now)

    @property
    def next_expiry(self) -> datetime | None:
        """The earliest ``expires_at`` in the view: rebuild the view by then (or pass ``now``)."""
        return min((c.expires_at for c in self._index.values() if c.expires_at is not None), default=None)

    def __len__(self) -> int:
        return len(self._index)


def probe_due(cutoff: Cutoff, now: datetime, interval_s: float = DEFAULT_PROBE_INTERVAL_S) -> bool:
    """True when a re-probe of ``cutoff`` should run at ``now``: it is an open ``detected`` cutoff
    and ``interval_s`` seconds have passed since its last probe (or its creation). Raises
    ``ValueError`` for a non-positive interval.
    """
    if interval_s <= 0:
        raise ValueError("interval_s must be positive")
    if cutoff.source != "detected" or cutoff.cleared_at is not None:
        return False
    last = cutoff.last_probe_at or cutoff.created_at
    return now - last >= timedelta(seconds=interval_s)


def should_auto_clear(cutoff: Cutoff, required_successes: int | None = DEFAULT_CLEAR_AFTER_SUCCESSES) -> bool:
    """True when ``cutoff`` has earned automatic clearing: it is an open ``detected`` cutoff with
    at least ``required_successes`` consecutive successful probes. ``None`` means never; operator
    cutoffs never are. Raises ``ValueError`` when ``required_successes`` is below 1.
    """
    if required_successes is None:
        return False
    if required_successes < 1:
        raise ValueError("required_successes must be at least 1 (or None for never)")
    if cutoff.source != "detected" or cutoff.cleared_at is not None:
        return False
    return cutoff.probe_successes >= required_successes
