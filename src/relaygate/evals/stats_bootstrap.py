"""Bootstrap summaries of one side of a comparison, and the resampling machinery the paired
bootstrap tests (``stats_paired``) share. Pure functions of arrays.

Bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, Chapman & Hall):
resampling whole cases (pairs stay together for paired statistics). Intervals are BCa (ch. 14;
the acceleration from the jackknife, ch. 11) for smooth statistics (means, cost per success) and
percentile (ch. 13) for the 95th percentile, whose jackknife is inconsistent. A bootstrap
p-value is the level at which the interval's bound touches ``-delta`` (the test-interval
duality, ch. 15). p95 is numpy's linear interpolation (Hyndman & Fan 1996, definition 7).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "Floats",
    "Rng",
    "Statistic",
    "Summary",
    "boot_interval",
    "boot_p_below",
    "metric_summary",
    "p95",
    "ratio_summary",
    "replicates",
]

Rng = np.random.Generator | int
Statistic = Literal["mean", "p95"]
Floats = NDArray[np.float64]
_CHUNK = 1 << 22  # bootstrap replicates are drawn in blocks of about this many values


@dataclass(frozen=True, slots=True)
class Summary:
    """One side's ``statistic`` (``mean`` holds it even for p95 or cost per success) with a
    two-sided bootstrap interval ``[lo, hi]`` at level ``ci``, over ``n`` cases."""

    mean: float
    lo: float
    hi: float
    n: int
    ci: float = 0.95
    statistic: str = "mean"
    method: str = "bootstrap-bca"


def _gen(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def replicates(columns: Sequence[Floats], stat: Callable[..., Floats], n_boot: int, rng: Rng) -> Floats:
    """``n_boot`` values of ``stat`` on case-resampled columns (rows resampled together)."""
    gen, n = _gen(rng), len(columns[0])
    rows, out = max(1, _CHUNK // max(n, 1)), []
    for start in range(0, n_boot, rows):
        idx = gen.integers(0, n, size=(min(rows, n_boot - start), n))
        out.append(stat(*(col[idx] for col in columns)))
    return np.concatenate(out).astype(np.float64)


def _bca(theta: float, reps: Floats, jack: Floats | None) -> tuple[float, float]:
    """BCa bias correction z0 (ties counted half) and jackknife acceleration a; both 0 (the
    plain percentile method) without ``jack``."""
    if jack is None or len(jack) < 3:
        return 0.0, 0.0
    prop = (np.sum(reps < theta) + 0.5 * np.sum(reps == theta)) / len(reps)
    z0 = float(stats.norm.ppf(np.clip(prop, 0.5 / len(reps), 1 - 0.5 / len(reps))))
    dev = jack.mean() - jack
    den = 6.0 * float(np.sum(dev**2)) ** 1.5
    return z0, (float(np.sum(dev**3)) / den if den > 0 else 0.0)


def boot_interval(theta: float, reps: Floats, jack: Floats | None, ci: float) -> tuple[float, float]:
    if np.ptp(reps) == 0:
        return theta, theta
    z0, a = _bca(theta, reps, jack)
    z = stats.norm.ppf([(1 - ci) / 2, (1 + ci) / 2]) + z0
    levels = stats.norm.cdf(z0 + z / (1 - a * z))
    lo, hi = np.quantile(reps, levels)
    return float(lo), float(hi)


def boot_p_below(theta: float, reps: Floats, jack: Floats | None, bound: float) -> float:
    """BCa significance level of ``theta <= bound``: the level at which the lower interval
    endpoint equals ``bound`` (Efron & Tibshirani 1993, ch. 15)."""
    if np.ptp(reps) == 0:
        return 0.0 if theta > bound else (1.0 if theta < bound else 0.5)
    b = len(reps)
    g = (np.sum(reps < bound) + 0.5 * np.sum(reps == bound)) / b
    w = float(stats.norm.ppf(np.clip(g, 0.5 / b, 1 - 0.5 / b)))
    z0, a = _bca(theta, reps, jack)
    den = 1 + a * (w - z0)
    return float(stats.norm.cdf((w - z0) / den - z0)) if den > 0 else float(g)


def p95(x: Floats) -> Floats:
    return np.quantile(x, 0.95, axis=-1)


def metric_summary(
    values: ArrayLike, *, statistic: Statistic = "mean", n_boot: int = 2000, ci: float = 0.95, rng: Rng
) -> Summary:
    """Mean (or p95) of ``values`` with a BCa (percentile for p95) bootstrap interval.

    Raises ValueError on empty input. Constant data give ``lo == hi == mean``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("metric_summary needs at least one value")
    if statistic == "mean":
        reps = replicates([x], lambda v: v.mean(axis=-1), n_boot, rng)
        jack = (x.sum() - x) / (x.size - 1) if x.size > 1 else None
        theta, method = float(x.mean()), "bootstrap-bca"
    else:
        reps, jack = replicates([x], p95, n_boot, rng), None
        theta, method = float(p95(x)), "bootstrap-percentile"
    lo, hi = boot_interval(theta, reps, jack, ci)
    return Summary(theta, lo, hi, int(x.size), ci, statistic, method)


def ratio_summary(
    num: ArrayLike, den: ArrayLike, *, n_boot: int = 2000, ci: float = 0.95, rng: Rng
) -> Summary:
    """``sum(num) / sum(den)`` (e.g. cost per successful case) with a BCa interval over cases;
    ``inf`` where ``sum(den) == 0``."""
    x, w = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if x.size == 0 or x.shape != w.shape:
        raise ValueError("ratio_summary needs equal, non-empty shapes")
    if w.sum() <= 0:
        return Summary(math.inf, math.inf, math.inf, int(x.size), ci, "ratio", "bootstrap-bca")
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = replicates([x, w], lambda a, b: a.sum(-1) / b.sum(-1), n_boot, rng)
        jack = (x.sum() - x) / (w.sum() - w) if x.size > 2 else None
    reps = np.clip(np.nan_to_num(reps, nan=np.inf), -1e300, 1e300)
    jack = jack if jack is not None and np.all(np.isfinite(jack)) else None
    theta = float(x.sum() / w.sum())
    lo, hi = boot_interval(theta, reps, jack, ci)
    return Summary(theta, lo, hi, int(x.size), ci, "ratio", "bootstrap-bca")
