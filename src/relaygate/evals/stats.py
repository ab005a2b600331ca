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

Methods and sources, by module (each module's docstring gives the details):

* ``stats_bootstrap``: bootstrap summaries, BCa and percentile intervals (Efron & Tibshirani
  1993; p95 as Hyndman & Fan 1996, definition 7).
* ``stats_paired``: continuous metrics, paired: shifted paired t-test of the mean (Student 1908;
  Wellek 2010; Hesterberg 2015 on why not the bootstrap) and paired bootstrap of p95 and cost
  per success, which decides nothing below ``MIN_BOOTSTRAP_PAIRS``.
* ``stats_binary``: pass/fail metrics, paired: McNemar (1947) and mid-p (Fagerland, Lydersen &
  Laake 2013); non-inferiority by the Nam (1997)-Tango (1998) score test, exact unconditional
  for ``n <= EXACT_MAX_PAIRS`` (Suissa & Shuster 1991; Sidik 2003).
* ``stats_power``: pairs needed (Nam 1997; Connor 1987) and extra pairs by conditional power
  (Lan & Wittes 1988).
* Multiplicity, here: Holm (1979, Scand J Statist 6:65) step-down adjusted p-values.

This module is the statistics API the verdict, publish and tests use (``stats.paired_difference``
and so on): it re-exports the names of the modules above.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from relaygate.evals.stats_binary import (
    EXACT_MAX_PAIRS,
    BinaryMethod,
    McNemar,
    binary_noninferiority,
    binary_pvalues,
    mcnemar,
    score_z,
)
from relaygate.evals.stats_bootstrap import Floats, Rng, Statistic, Summary, metric_summary, ratio_summary
from relaygate.evals.stats_paired import (
    CONSTANT,
    MIN_BOOTSTRAP_PAIRS,
    Diff,
    paired_difference,
    paired_ratio_difference,
)
from relaygate.evals.stats_power import binary_pairs_needed, extra_pairs, normal_pairs_needed

__all__ = [
    "CONSTANT",
    "EXACT_MAX_PAIRS",
    "MIN_BOOTSTRAP_PAIRS",
    "BinaryMethod",
    "Diff",
    "Floats",
    "McNemar",
    "Rng",
    "Statistic",
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


def holm(pvalues: ArrayLike) -> Floats:
    """Holm (1979) step-down adjusted p-values, in the input order: reject where <= alpha."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p, kind="stable")
    k = p.size
    adj = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    out = np.empty_like(p)
    out[order] = adj
    return out
