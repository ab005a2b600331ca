"""Statistics for the eval verdict: bootstrap summaries, paired non-inferiority tests, Holm's
correction and the sample size still needed. Pure functions of arrays; ``evals/verdict.py``
applies them to ``CaseResult`` s.

Every difference is oriented so that **positive = candidate better** (``candidate - incumbent``
for higher-is-better metrics, ``incumbent - candidate`` for lower-is-better ones). A margin
``delta >= 0`` sets the non-inferiority hypotheses H0: diff <= -delta against H1: diff > -delta
(``p_noninferior``) and, mirrored, H0: diff >= -delta against H1: diff < -delta (``p_inferior``,
"inferiority shown"). Intervals are two-sided at ``ci``; at ``ci = 1 - 2 alpha`` the lower bound
exceeds ``-delta`` when ``p_noninferior <= alpha`` (Schuirmann 1987, J Pharmacokin Biopharm
15:657); regulators use alpha = 0.025, the 95% interval (ICH E9; EMA, "Guideline on the choice
of the non-inferiority margin", 2005).

Methods and sources:

* Bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, Chapman & Hall):
  resampling whole cases (pairs stay together for paired statistics). Intervals are BCa
  (ch. 14; the acceleration from the jackknife, ch. 11) for smooth statistics (means, cost per
  success) and percentile (ch. 13) for the 95th percentile, whose jackknife is inconsistent.
  A bootstrap p-value is the level at which the interval's bound touches ``-delta`` (the
  test-interval duality). Below ``MIN_BOOTSTRAP_PAIRS`` the bootstrap tests decide nothing:
  simulated at the margin, the p95 test falsely passed 16% of runs at n = 10, 6.7% at n = 20,
  5.7% at n = 30 and 4.2% at n = 40 (alpha 0.05), the cost-per-success test 8%, 6.3%, 5.3%
  and 4.8%. p95 is numpy's linear interpolation (Hyndman & Fan 1996, definition 7).
* Mean of a continuous score: paired t-test of ``d_i + delta`` (Student 1908; the shifted
  one-sample test in Wellek 2010, *Testing Statistical Hypotheses of Equivalence and
  Noninferiority*, 2nd ed.). Not the bootstrap: the percentile interval of a mean is too narrow
  by about ``sqrt((n-1)/n)`` and lacks the t-correction, so it is liberal for small suites
  (Hesterberg 2015, Am Stat 69:371); bounded scores make the mean difference near-normal.
* Pass/fail metrics, paired: discordant counts ``b`` (incumbent passes, candidate fails) and
  ``c`` (the reverse) of ``n`` pairs; diff = ``(c - b) / n``. Equality: McNemar (1947)
  ``(b-c)^2/(b+c)``, exact conditional binomial and its mid-p (Fagerland, Lydersen & Laake 2013,
  BMC Med Res Methodol 13:91). Non-inferiority: the restricted-MLE score statistic of Nam (1997,
  Biometrics 53:1422) and Tango (1998, Stat Med 17:891), which reduces to McNemar's at
  ``delta = 0``; its inversion is Tango's interval. Small suites (``n <= EXACT_MAX_PAIRS``) use
  the exact unconditional test ordered by that statistic, maximising the tail over the nuisance
  discordance rate on the null boundary (Suissa & Shuster 1991, Biometrics 47:361; Sidik 2003,
  Stat Med 22:265); its size never exceeds alpha (up to the grid of ~380 nuisance values the
  supremum is taken on). ``method="midp"`` halves the observed
  point's probability (Lancaster 1961): nearer nominal, may exceed alpha slightly.
* Multiplicity: Holm (1979, Scand J Statist 6:65) step-down adjusted p-values.
* Sample size: ``n = ((z_{1-a} s0 + z_{power} s1) / (theta + delta))^2`` with ``s1`` the SD of a
  pair's difference and ``s0`` its SD at the restricted null (Nam 1997; Connor 1987, Biometrics
  43:207, at ``delta = 0``). Extra cases for an unfinished comparison: the smallest ``k`` whose
  conditional power (Lan & Wittes 1988, Biometrics 44:579), given the data in hand, reaches
  ``power``. Adding cases and re-testing is a sequential design; this is advice, not a
  group-sequential guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special, stats

from relaygate.evals.model import Direction

__all__ = [
    "CONSTANT",
    "EXACT_MAX_PAIRS",
    "MIN_BOOTSTRAP_PAIRS",
    "Diff",
    "McNemar",
    "Summary",
    "binary_noninferiority",
    "binary_pairs_needed",
    "binary_pvalues",
    "extra_pairs",
    "holm",
    "mcnemar",
    "metric_summary",
    "normal_pairs_needed",
    "paired_difference",
    "paired_ratio_difference",
    "ratio_summary",
    "score_z",
]

EXACT_MAX_PAIRS = 200  # exact unconditional tables up to here (20k cells); the score test above
MIN_BOOTSTRAP_PAIRS = 30  # fewer pairs: bootstrap p-values are 1 (nothing shown)
Rng = np.random.Generator | int
Statistic = Literal["mean", "p95"]
BinaryMethod = Literal["auto", "score", "exact", "midp"]
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


@dataclass(frozen=True, slots=True)
class Diff:
    """Oriented difference (positive = candidate better) in the statistic (``mean_diff``: the
    difference of means, of p95s or of costs per success), its interval at ``ci``, the
    one-sided p-values for non-inferiority and inferiority at margin ``delta``, and the two-sided
    p-value of no difference (``p_equal``: McNemar, t or bootstrap). ``sd`` is one pair's SD
    (``sd0`` at the restricted null), the inputs of the sample-size formulas."""

    mean_diff: float
    lo: float
    hi: float
    p_noninferior: float
    p_inferior: float
    p_equal: float
    n: int
    delta: float
    ci: float
    method: str
    sd: float
    sd0: float


@dataclass(frozen=True, slots=True)
class McNemar:
    """McNemar's test of no difference on discordant counts: chi-square without continuity
    correction, exact conditional binomial and mid-p, all two-sided."""

    b: int
    c: int
    statistic: float
    p_asymptotic: float
    p_exact: float
    p_midp: float


def _gen(rng: Rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _replicates(columns: Sequence[Floats], stat: Callable[..., Floats], n_boot: int, rng: Rng) -> Floats:
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


def _boot_interval(theta: float, reps: Floats, jack: Floats | None, ci: float) -> tuple[float, float]:
    if np.ptp(reps) == 0:
        return theta, theta
    z0, a = _bca(theta, reps, jack)
    z = stats.norm.ppf([(1 - ci) / 2, (1 + ci) / 2]) + z0
    levels = stats.norm.cdf(z0 + z / (1 - a * z))
    lo, hi = np.quantile(reps, levels)
    return float(lo), float(hi)


def _boot_p_below(theta: float, reps: Floats, jack: Floats | None, bound: float) -> float:
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


def _p95(x: Floats) -> Floats:
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
        reps = _replicates([x], lambda v: v.mean(axis=-1), n_boot, rng)
        jack = (x.sum() - x) / (x.size - 1) if x.size > 1 else None
        theta, method = float(x.mean()), "bootstrap-bca"
    else:
        reps, jack = _replicates([x], _p95, n_boot, rng), None
        theta, method = float(_p95(x)), "bootstrap-percentile"
    lo, hi = _boot_interval(theta, reps, jack, ci)
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
        reps = _replicates([x, w], lambda a, b: a.sum(-1) / b.sum(-1), n_boot, rng)
        jack = (x.sum() - x) / (w.sum() - w) if x.size > 2 else None
    reps = np.clip(np.nan_to_num(reps, nan=np.inf), -1e300, 1e300)
    jack = jack if jack is not None and np.all(np.isfinite(jack)) else None
    theta = float(x.sum() / w.sum())
    lo, hi = _boot_interval(theta, reps, jack, ci)
    return Summary(theta, lo, hi, int(x.size), ci, "ratio", "bootstrap-bca")


def _align(
    incumbent: ArrayLike | Mapping[str, float], candidate: ArrayLike | Mapping[str, float]
) -> tuple[Floats, Floats]:
    """Two equal-length arrays; mappings (case id -> value) are aligned by id and must agree."""
    if isinstance(incumbent, Mapping) and isinstance(candidate, Mapping):
        if set(incumbent) != set(candidate):
            raise ValueError(f"case ids differ: {sorted(set(incumbent) ^ set(candidate))[:5]}")
        ids = sorted(incumbent)
        return np.array([incumbent[i] for i in ids], float), np.array([candidate[i] for i in ids], float)
    x, y = np.asarray(incumbent, np.float64), np.asarray(candidate, np.float64)
    if x.shape != y.shape or x.ndim != 1 or x.size == 0:
        raise ValueError(f"paired values need equal, non-empty 1-d shapes, got {x.shape} and {y.shape}")
    return x, y


CONSTANT = "constant-difference-bound"


def _constant_p(d0: float, delta: float, n: int, spread: float | None) -> tuple[float, float]:
    """``(p_noninferior, p_inferior)`` when all ``n`` differences equal ``d0``. With differences
    confined to ``[-spread, spread]`` the null law likeliest to give that puts its mass on ``d0``
    and the far end, so P(all >= d0) <= ((spread - delta) / (spread + d0))^n, and mirrored.
    Without a known spread nothing can be shown."""
    if spread is None:
        return 1.0, 1.0
    p_ni = ((spread - delta) / (spread + d0)) ** n if d0 > -delta else 1.0
    p_in = ((spread + delta) / (spread - d0)) ** n if d0 < -delta else 1.0
    return min(1.0, p_ni), min(1.0, p_in)


def _t_diff(d: Floats, delta: float, ci: float, spread: float | None) -> Diff:
    n, mean = d.size, float(d.mean())
    if n < 2:  # no variance estimate: nothing can be shown
        return Diff(mean, -math.inf, math.inf, 1.0, 1.0, 1.0, n, delta, ci, "paired-t", math.nan, math.nan)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean)):  # every pair differs alike (up to rounding): t is undefined
        p_ni, p_in = _constant_p(mean, delta, n, spread)
        p_eq = min(1.0, 2 * min(_constant_p(mean, 0.0, n, spread)))
        return Diff(mean, mean, mean, p_ni, p_in, p_eq, n, delta, ci, CONSTANT, 0.0, 0.0)
    se = sd / math.sqrt(n)
    t = (mean + delta) / se
    half = float(stats.t.ppf((1 + ci) / 2, n - 1)) * se
    p_eq = float(2 * stats.t.sf(abs(mean / se), n - 1))
    p_ni, p_in = float(stats.t.sf(t, n - 1)), float(stats.t.cdf(t, n - 1))
    return Diff(mean, mean - half, mean + half, p_ni, p_in, p_eq, n, delta, ci, "paired-t", sd, sd)


def _boot_diff(
    theta: float, reps: Floats, jack: Floats | None, n: int, delta: float, ci: float, method: str
) -> Diff:
    lo, hi = _boot_interval(theta, reps, jack, ci)
    finite = reps[np.abs(reps) < 1e300]  # a ratio without successes is clipped to +-1e300
    sd = float(finite.std(ddof=1)) * math.sqrt(n) if len(finite) > 1 else math.nan
    if n < MIN_BOOTSTRAP_PAIRS:  # too liberal to decide anything (see the module doc)
        return Diff(theta, lo, hi, 1.0, 1.0, 1.0, n, delta, ci, method, sd, sd)
    p_ni = _boot_p_below(theta, reps, jack, -delta)
    p0 = _boot_p_below(theta, reps, jack, 0.0)
    return Diff(theta, lo, hi, p_ni, 1.0 - p_ni, min(1.0, 2 * min(p0, 1 - p0)), n, delta, ci, method, sd, sd)


def paired_difference(
    incumbent: ArrayLike | Mapping[str, float],
    candidate: ArrayLike | Mapping[str, float],
    *,
    better: Direction = "higher",
    delta: float = 0.0,
    statistic: Statistic = "mean",
    method: Literal["auto", "t", "bootstrap"] = "auto",
    n_boot: int = 2000,
    ci: float = 0.90,
    bounds: tuple[float, float] | None = None,
    rng: Rng,
) -> Diff:
    """Paired comparison of one metric on the same cases (arrays in the same case order, or
    mappings case id -> value aligned by id). ``statistic="mean"`` uses the paired t-test unless
    ``method="bootstrap"`` (BCa); ``"p95"`` the percentile bootstrap of the p95 difference.
    ``bounds``: the range values can take (``(0, 1)`` for scores); when every pair differs by the
    same amount the t-test is undefined and the range bound of ``_constant_p`` decides."""
    x, y = _align(incumbent, candidate)
    sign = 1.0 if better == "higher" else -1.0
    if statistic == "mean" and method in ("auto", "t"):
        spread = None if bounds is None else float(bounds[1] - bounds[0])
        return _t_diff(sign * (y - x), delta, ci, spread)
    if statistic == "mean":
        d = sign * (y - x)
        reps = _replicates([d], lambda v: v.mean(axis=-1), n_boot, rng)
        jack = (d.sum() - d) / (d.size - 1) if d.size > 1 else None
        return _boot_diff(float(d.mean()), reps, jack, d.size, delta, ci, "paired-bootstrap-bca")
    theta = sign * float(_p95(y) - _p95(x))
    reps = _replicates([x, y], lambda a, b: sign * (_p95(b) - _p95(a)), n_boot, rng)
    return _boot_diff(theta, reps, None, x.size, delta, ci, "paired-bootstrap-percentile")


def paired_ratio_difference(
    incumbent: tuple[ArrayLike, ArrayLike],
    candidate: tuple[ArrayLike, ArrayLike],
    *,
    better: Direction = "lower",
    delta: float = 0.0,
    n_boot: int = 2000,
    ci: float = 0.90,
    rng: Rng,
) -> Diff:
    """Paired BCa bootstrap of a ratio of sums per side, e.g. cost per successful case:
    ``(cost_usd, success)`` arrays in the same case order. A side with no success in a
    resample has an infinite ratio (worse than any finite one)."""
    cols = [np.asarray(v, np.float64) for v in (*incumbent, *candidate)]
    if len({c.shape for c in cols}) != 1 or cols[0].size == 0:
        raise ValueError("ratio columns need equal, non-empty shapes")
    sign = 1.0 if better == "higher" else -1.0

    def ratio(num: Floats, den: Floats) -> Floats:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(den > 0, np.divide(num, den), np.inf)

    def stat(xn: Floats, xd: Floats, yn: Floats, yd: Floats) -> Floats:
        with np.errstate(invalid="ignore"):
            d = sign * (ratio(yn.sum(-1), yd.sum(-1)) - ratio(xn.sum(-1), xd.sum(-1)))
        return np.where(np.isnan(d), -np.inf, d)  # neither side succeeded: not "better"

    n, method = cols[0].size, "paired-bootstrap-bca"
    theta = float(stat(*cols))
    if not math.isfinite(theta):  # a side without any success: no finite comparison
        return Diff(theta, theta, theta, 1.0, 1.0, 1.0, n, delta, ci, method, math.nan, math.nan)
    reps = np.clip(_replicates(cols, stat, n_boot, rng), -1e300, 1e300)
    sums = [c.sum() for c in cols]
    jack = stat(*((s - c)[:, None] for s, c in zip(sums, cols, strict=True))) if n > 2 else None
    if jack is not None and not np.all(np.isfinite(jack)):
        jack = None
    return _boot_diff(theta, reps, jack, n, delta, ci, method)


def mcnemar(b: int, c: int) -> McNemar:
    """McNemar's test of no difference; ``b``, ``c`` are the discordant counts."""
    m = b + c
    if m == 0:
        return McNemar(b, c, 0.0, 1.0, 1.0, 1.0)
    chi2 = (b - c) ** 2 / m
    low = min(b, c)
    exact = min(1.0, 2 * float(stats.binom.cdf(low, m, 0.5)))
    midp = exact - float(stats.binom.pmf(low, m, 0.5)) if b != c else 1 - float(stats.binom.pmf(b, m, 0.5))
    return McNemar(b, c, chi2, float(stats.chi2.sf(chi2, 1)), exact, midp)


def _restricted_q(b: Floats, c: Floats, n: float, gap: float) -> Floats:
    """Restricted MLE of p01 given p10 - p01 = gap >= 0 (Nam 1997; Tango 1998)."""
    m = b + c
    qb = -(m * (1 - gap) - 2 * gap * (n - b))
    qc = -c * gap * (1 - gap)
    return (-qb + np.sqrt(qb * qb - 8 * n * qc)) / (4 * n)


def score_z(b: ArrayLike, c: ArrayLike, n: float, d0: float) -> Floats:
    """Nam-Tango score statistic of H0: p01 - p10 = d0 (large = candidate better than d0)."""
    bb, cc = np.asarray(b, np.float64), np.asarray(c, np.float64)
    if d0 > 0:  # mirror: swap the discordant cells
        return -score_z(cc, bb, n, -d0)
    gap = -d0
    q = _restricted_q(bb, cc, n, gap)
    var = (2 * q + gap - gap * gap) / n
    num = (cc - bb) / n - d0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = num / np.sqrt(var)
    return np.where(var > 0, z, np.where(num > 0, np.inf, np.where(num < 0, -np.inf, 0.0)))


@lru_cache(maxsize=64)
def _exact_tables(n: int, delta: float, midp: bool) -> tuple[Floats, Floats]:
    """``(p_noninferior, p_inferior)`` for every ``(b, c)`` with ``b + c <= n``, indexed
    ``[b, c]``: the tail of the score statistic maximised over the boundary nuisance."""
    bg, cg = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = bg + cg <= n
    b, c = bg[ok].astype(np.float64), cg[ok].astype(np.float64)
    z = np.round(score_z(b, c, n, -delta), 9)
    order = np.argsort(-z, kind="stable")
    neg = -z[order]
    n_gt, n_ge = np.searchsorted(neg, neg, "left"), np.searchsorted(neg, neg, "right")
    bo, co = b[order], c[order]
    log_coef = special.gammaln(n + 1) - special.gammaln(bo + 1) - special.gammaln(co + 1)
    log_coef = log_coef - special.gammaln(n - bo - co + 1)
    top = (1 - delta) / 2
    grid = np.unique(np.concatenate([np.linspace(0, top, 257), top * np.linspace(0, 1, 257) ** 2]))
    upper, lower = np.zeros(len(bo)), np.zeros(len(bo))
    for qs in np.array_split(grid, max(1, len(grid) * len(bo) // (1 << 21))):
        q = qs[:, None]
        logp = log_coef + special.xlogy(bo, q + delta) + special.xlogy(co, q)
        logp = logp + special.xlogy(n - bo - co, np.clip(1 - 2 * q - delta, 0, 1))
        cum = np.concatenate([np.zeros((len(qs), 1)), np.cumsum(np.exp(logp), axis=1)], axis=1)
        ge, gt = cum[:, n_ge], cum[:, n_gt]
        tail = (ge + gt) / 2 if midp else ge
        upper = np.maximum(upper, tail.max(axis=0))
        lower = np.maximum(lower, (1 - ((ge + gt) / 2 if midp else gt)).max(axis=0))
    p_ni, p_in = np.full((n + 1, n + 1), np.nan), np.full((n + 1, n + 1), np.nan)
    p_ni[bo.astype(int), co.astype(int)] = np.clip(upper, 0, 1)
    p_in[bo.astype(int), co.astype(int)] = np.clip(lower, 0, 1)
    p_ni.flags.writeable = p_in.flags.writeable = False
    return p_ni, p_in


def _resolve(method: BinaryMethod, n: int) -> str:
    return ("exact" if n <= EXACT_MAX_PAIRS else "score") if method == "auto" else method


def binary_pvalues(
    b: ArrayLike, c: ArrayLike, n: int, *, delta: float, method: BinaryMethod = "auto"
) -> tuple[Floats, Floats]:
    """Vectorised ``(p_noninferior, p_inferior)`` for arrays of discordant counts of ``n``
    pairs (for simulation). ``auto``: exact unconditional up to EXACT_MAX_PAIRS, else score.
    Raises ValueError unless ``0 <= delta < 1``."""
    if not 0 <= delta < 1:
        raise ValueError(f"a pass-rate margin must be in [0, 1), got {delta}")
    bb, cc = np.asarray(b), np.asarray(c)
    kind = _resolve(method, n)
    if kind == "score":
        z = score_z(bb, cc, n, -delta)
        return stats.norm.sf(z), stats.norm.cdf(z)
    p_ni, p_in = _exact_tables(n, float(delta), kind == "midp")
    return p_ni[bb, cc], p_in[bb, cc]


def binary_noninferiority(
    b: int, c: int, n: int, *, delta: float, method: BinaryMethod = "auto", ci: float = 0.90
) -> Diff:
    """Paired pass/fail non-inferiority: diff ``(c - b) / n``, Tango's score interval at
    ``ci``, p-values by ``method``. ``sd``/``sd0`` (for planning only) add one pseudo-pair to
    each of the four cells, i.e. estimate the discordance rate by the Agresti & Coull (1998, Am
    Stat 52:119) centre ``(b + c + 2) / (n + 4)``, so a suite without discordant pairs still has
    a variance and a tiny one does not understate it."""
    if not 0 <= b + c <= n or n < 1:
        raise ValueError(f"need 0 <= b + c <= n and n >= 1, got b={b} c={c} n={n}")
    p_ni, p_in = (float(v) for v in binary_pvalues(b, c, n, delta=delta, method=method))
    z = float(stats.norm.ppf((1 + ci) / 2))

    def bound(target: float) -> float:  # Z decreases in d0: solve Z(d0) = target
        def f(d0: float) -> float:
            return float(score_z(b, c, n, d0)) - target

        lo_end, hi_end = -1 + 1e-9, 1 - 1e-9
        if f(lo_end) * f(hi_end) > 0:
            return lo_end if f(lo_end) < 0 else hi_end
        return float(optimize.brentq(f, lo_end, hi_end, xtol=1e-10))

    p10, p01 = (b + 1) / (n + 4), (c + 1) / (n + 4)
    sd1, sd0 = _binary_sds(p10, p01, delta)
    name = {"exact": "exact-unconditional", "midp": "exact-unconditional-midp", "score": "nam-tango-score"}
    return Diff(
        (c - b) / n, round(bound(z), 12), round(bound(-z), 12), p_ni, p_in,
        mcnemar(b, c).p_midp, n, delta, ci, name[_resolve(method, n)], sd1, sd0,
    )  # fmt: skip


def _binary_sds(p10: float, p01: float, delta: float) -> tuple[float, float]:
    """SD of one pair's difference under (p10, p01) and at the restricted null diff = -delta."""
    q = float(_restricted_q(np.array([p10]), np.array([p01]), 1.0, delta)[0])
    return math.sqrt(max(p10 + p01 - (p01 - p10) ** 2, 0.0)), math.sqrt(2 * q + delta - delta**2)


def holm(pvalues: ArrayLike) -> Floats:
    """Holm (1979) step-down adjusted p-values, in the input order: reject where <= alpha."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p, kind="stable")
    k = p.size
    adj = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    out = np.empty_like(p)
    out[order] = adj
    return out


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
    sd1, sd0 = _binary_sds(p10, p01, delta)
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
