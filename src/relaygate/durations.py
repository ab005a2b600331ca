"""Human durations (``30m``, ``1h``, ``2d``, ``1w``, ``1h30m``) for the CLI and the APIs."""

from __future__ import annotations

import re
from datetime import timedelta

__all__ = ["parse_duration"]

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> timedelta:
    """``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` (also ``s``, and sums like ``"1h30m"``) -> timedelta.

    Raises ``ValueError`` for anything else, including zero.
    """
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 2d or 1w")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)
