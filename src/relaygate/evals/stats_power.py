"""Sample size for the paired non-inferiority tests: pairs needed before a run, and extra pairs
that would settle an unfinished comparison.

``n = ((z_{1-a} s0 + z_{power} s1) / (theta + delta))^2`` with ``s1`` the SD of a pair's
difference and ``s0`` its SD at the restricted null (Nam 1997, Biometrics 53:1422; Connor 1987,
Biometrics 43:207, at ``delta = 0``). Extra cases for an unfinished comparison: the smallest
``k`` whose conditional power (Lan & Wittes 1988, Biometrics 44:579), given the data in hand,
reaches ``power``. Adding cases and re-testing is a sequential design; this is advice, not a
group-sequential guarantee.
"""

from __future__ import annotations

import math

from scipy import stats

from relaygate.evals.stats_binary import binary_sds

__all__ = ["binary_pairs_needed", "extra_pairs", "normal_pairs_needed"]


def normal_pairs_needed(
    sd: float,
    effect: float,
    *,
    delta: float,
    alpha: float = 0.05,
    power: float = 0.8,
    sd0: float | None = None,
) -> float:
    """Pairs for a one-sided level-``alpha`` non-inferiority test to reach ``power`` when the
    true oriented difference is ``effect``: ``((z_a sd0 + z_b sd) / (effect + delta))^2``;
    ``inf`` when ``effect <= -delta``."""
    if effect + delta <= 0:
        return math.inf
    za, zb = stats.norm.ppf(1 - alpha), stats.norm.ppf(power)
    return float(((za * (sd if sd0 is None else sd0) + zb * sd) / (effect + delta)) ** 2)


def binary_pairs_needed(
    p10: float, p01: float, *, delta: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Pairs for the paired pass/fail test (Nam 1997; Connor 1987 at ``delta = 0``): ``p10`` =
    P(incumbent passes, candidate fails), ``p01`` the reverse."""
    sd1, sd0 = binary_sds(p10, p01, delta)
    return normal_pairs_needed(sd1, p01 - p10, delta=delta, alpha=alpha, power=power, sd0=sd0)


def extra_pairs(
    n: int, estimate: float, *, effect: float, sd: float, sd0: float, delta: float,
    alpha: float = 0.05, power: float = 0.8, limit: int = 10**7,
) -> int | None:  # fmt: skip
    """Smallest ``k >= 1`` such that, with ``n`` pairs observed at ``estimate`` and ``k`` more
    drawn at true ``effect`` (per-pair SD ``sd``), the final level-``alpha`` test passes with
    probability ``power`` (conditional power, Lan & Wittes 1988). None if beyond ``limit``."""
    if effect + delta <= 0:
        return None
    za, zb = float(stats.norm.ppf(1 - alpha)), float(stats.norm.ppf(power))
    s1 = max(sd, 1e-12)

    def ok(k: int) -> bool:
        total = n + k
        margin = n * estimate + k * effect + total * delta - za * sd0 * math.sqrt(total)
        return margin / (s1 * math.sqrt(k)) >= zb

    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:  # ok(lo) is False (or lo == 0), ok(hi) is True
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi
