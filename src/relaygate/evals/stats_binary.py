"""Paired pass/fail comparisons: McNemar's test of no difference and the non-inferiority test
on the discordant counts ``b`` (incumbent passes, candidate fails) and ``c`` (the reverse) of
``n`` pairs; diff = ``(c - b) / n``, positive = candidate better.

* Equality: McNemar (1947) ``(b-c)^2/(b+c)``, exact conditional binomial and its mid-p
  (Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91).
* Non-inferiority: the restricted-MLE score statistic of Nam (1997, Biometrics 53:1422) and
  Tango (1998, Stat Med 17:891), which reduces to McNemar's at ``delta = 0``; its inversion is
  Tango's interval. Small suites (``n <= EXACT_MAX_PAIRS``) use the exact unconditional test
  ordered by that statistic, maximising the tail over the nuisance discordance rate on the null
  boundary (Suissa & Shuster 1991, Biometrics 47:361; Sidik 2003, Stat Med 22:265); its size
  never exceeds alpha (up to the grid of ~380 nuisance values the supremum is taken on).
  ``method="midp"`` halves the observed point's probability (Lancaster 1961): nearer nominal,
  may exceed alpha slightly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import optimize, special, stats

from relaygate.evals.stats_bootstrap import Floats
from relaygate.evals.stats_paired import Diff

__all__ = [
    "EXACT_MAX_PAIRS",
    "BinaryMethod",
    "McNemar",
    "binary_noninferiority",
    "binary_pvalues",
    "binary_sds",
    "mcnemar",
    "score_z",
]

EXACT_MAX_PAIRS = 200  # exact unconditional tables up to here (20k cells); the score test above
BinaryMethod = Literal["auto", "score", "exact", "midp"]


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
    sd1, sd0 = binary_sds(p10, p01, delta)
    name = {"exact": "exact-unconditional", "midp": "exact-unconditional-midp", "score": "nam-tango-score"}
    return Diff(
        (c - b) / n, round(bound(z), 12), round(bound(-z), 12), p_ni, p_in,
        mcnemar(b, c).p_midp, n, delta, ci, name[_resolve(method, n)], sd1, sd0,
    )  # fmt: skip


def binary_sds(p10: float, p01: float, delta: float) -> tuple[float, float]:
    """SD of one pair's difference under (p10, p01) and at the restricted null diff = -delta."""
    q = float(_restricted_q(np.array([p10]), np.array([p01]), 1.0, delta)[0])
    return math.sqrt(max(p10 + p01 - (p01 - p10) ** 2, 0.0)), math.sqrt(2 * q + delta - delta**2)
