"""Calibration of the non-inferiority verdict by simulation (seeded, vectorised with numpy).

* False PASS: when the candidate's true pass rate is worse than the incumbent's by the margin
  (the hardest null case) or more, the share of runs that PASS must stay at or below alpha
  within Monte-Carlo error: ``alpha + 3 * sqrt(alpha * (1 - alpha) / R)`` for R runs.
* Power: when the two are truly equal, PASS is reached at the sample size the power formula
  predicts: empirical power at the predicted n within ``power +- 0.1``.
* A tiny suite (10 cases) is INCONCLUSIVE with a finite "n more" within a factor of 2 of the
  extra cases the simulation needs.

Paired pass/fail outcomes are drawn from the four cells (p11, p10, p01, p00): p10 = incumbent
passes and candidate fails, p01 the reverse; the true difference is p01 - p10.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from relaygate.evals import stats
from relaygate.evals.model import CaseResult, Margin, Score
from relaygate.evals.verdict import verdict

ALPHA, POWER = 0.05, 0.8


def tolerance(runs: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def cells(delta: float, q: float, both: float = 0.7, extra: float = 0.0) -> list[float]:
    """Cells with true difference -(delta + extra): p10 = q + delta + extra, p01 = q."""
    p10, p01 = q + delta + extra, q
    return [both, p10, p01, 1 - both - p10 - p01]


def pass_rate(n: int, probs: list[float], delta: float, runs: int, seed: int) -> float:
    counts = np.random.default_rng(seed).multinomial(n, probs, size=runs)
    p_ni, _ = stats.binary_pvalues(counts[:, 1], counts[:, 2], n, delta=delta)
    return float(np.mean(p_ni <= ALPHA))


@pytest.mark.parametrize(
    ("n", "delta", "probs"),
    [
        (10, 0.1, cells(0.1, 0.05)),  # exact unconditional test
        (30, 0.1, cells(0.1, 0.1, both=0.6)),
        (120, 0.1, cells(0.1, 0.05)),
        (120, 0.05, cells(0.05, 0.0, both=0.85)),  # no candidate-only wins: few discordant pairs
        (400, 0.05, cells(0.05, 0.05)),  # score test
        (120, 0.1, cells(0.1, 0.05, extra=0.03)),  # worse by more than the margin
    ],
)
def test_false_pass_rate_at_most_alpha(n: int, delta: float, probs: list[float]) -> None:
    runs = 4000
    rate = pass_rate(n, probs, delta, runs, seed=n)
    assert rate <= tolerance(runs), (rate, tolerance(runs))


def _results(target: str, passed: np.ndarray, errors: np.ndarray) -> list[CaseResult]:
    out = []
    for i, (ok, err) in enumerate(zip(passed, errors, strict=True)):
        if err:
            out.append(CaseResult(f"c{i}", target, None, error="upstream 503"))
        else:
            out.append(CaseResult(f"c{i}", target, "x", scores=[Score("exact", float(ok), bool(ok))]))
    return out


def test_verdict_false_pass_rate_with_errors() -> None:
    # Through verdict() on CaseResults: the candidate is worse by exactly the margin once its
    # errors count as fails; a third of its fails are errors (and one case is missing outright),
    # 2% of the incumbent's cases error too.
    runs, n, delta = 600, 100, 0.1
    rng = np.random.default_rng(2024)
    draws = rng.multinomial(1, cells(delta, 0.05, both=0.65), size=(runs, n)).argmax(axis=2)
    inc_pass, cand_pass = np.isin(draws, (0, 1)), np.isin(draws, (0, 2))
    cand_err = ~cand_pass & (rng.uniform(size=(runs, n)) < 1 / 3)
    inc_err = ~inc_pass & (rng.uniform(size=(runs, n)) < 0.1)
    passes = 0
    for r in range(runs):
        cand = _results("cand", cand_pass[r], cand_err[r])
        if not cand_pass[r, -1]:
            cand.pop()  # a case the candidate never answered
        v = verdict(
            _results("inc", inc_pass[r], inc_err[r]), cand, [Margin("exact", delta)], n_boot=200, rng=r
        )
        passes += v.status == "PASS"
    assert passes / runs <= tolerance(runs), passes / runs


@pytest.mark.parametrize(
    ("probs", "delta"),
    [
        ([0.7, 0.1, 0.1, 0.1], 0.1),  # predicts 134 pairs: exact test
        ([0.85, 0.05, 0.05, 0.05], 0.05),  # 274 pairs: score test
        ([0.6, 0.15, 0.15, 0.1], 0.05),  # 748 pairs
    ],
)
def test_equal_candidate_passes_at_predicted_n(probs: list[float], delta: float) -> None:
    predicted = math.ceil(
        stats.binary_pairs_needed(probs[1], probs[2], delta=delta, alpha=ALPHA, power=POWER)
    )
    power = pass_rate(predicted, probs, delta, 4000, seed=predicted)
    assert POWER - 0.1 <= power <= POWER + 0.1, (predicted, power)
    assert pass_rate(predicted // 2, probs, delta, 2000, seed=1) < POWER - 0.15  # and n matters


def test_continuous_scores_calibration() -> None:
    # Scores in [0, 1]: cand = inc - delta + U(-0.15, 0.15) with inc ~ U(0.3, 0.9) never leaves
    # [0, 1], so the true mean difference is exactly -delta (null) or 0 (equal, shifted by +delta).
    runs, delta, sd = 2000, 0.05, 0.3 / math.sqrt(12)
    n = math.ceil(stats.normal_pairs_needed(sd, 0.0, delta=delta, alpha=ALPHA, power=POWER))
    rng = np.random.default_rng(5)
    inc = rng.uniform(0.3, 0.9, size=(runs, n))
    noise = rng.uniform(-0.15, 0.15, size=(runs, n))
    null = [
        stats.paired_difference(i, i - delta + e, delta=delta, rng=0) for i, e in zip(inc, noise, strict=True)
    ]
    equal = [
        stats.paired_difference(i, i + e, delta=delta, rng=0) for i, e in zip(inc - 0.05, noise, strict=True)
    ]
    assert np.mean([d.p_noninferior <= ALPHA for d in null]) <= tolerance(runs)
    assert POWER - 0.1 <= np.mean([d.p_noninferior <= ALPHA for d in equal]) <= POWER + 0.1


def test_latency_p95_false_pass_rate() -> None:
    # Log-normal latencies, correlated within a case; the candidate's true p95 is slower by
    # exactly the margin (100 ms).
    runs, n, delta, sigma, rho = 500, 80, 100.0, 0.5, 0.7
    rng = np.random.default_rng(9)
    p95 = math.exp(6 + 1.6448536 * sigma)
    mu_cand = math.log(p95 + delta) - 1.6448536 * sigma
    z1 = rng.standard_normal((runs, n))
    z2 = rho * z1 + math.sqrt(1 - rho**2) * rng.standard_normal((runs, n))
    inc, cand = np.exp(6 + sigma * z1), np.exp(mu_cand + sigma * z2)
    p = [
        stats.paired_difference(
            x, y, better="lower", delta=delta, statistic="p95", n_boot=500, rng=i
        ).p_noninferior
        for i, (x, y) in enumerate(zip(inc, cand, strict=True))
    ]
    assert np.mean(np.array(p) <= ALPHA) <= tolerance(runs)


def test_cost_per_success_false_pass_rate() -> None:
    # Cost per successful case: both sides succeed 80% of the time; the candidate's costs are
    # scaled so its true cost per success (E cost / P success) is higher by exactly the margin.
    runs, n, delta = 500, 60, 0.0005
    rng = np.random.default_rng(12)
    base = 0.001 / 0.8  # U(0, 0.002) cost over 0.8 success
    scale = (base + delta) / base
    success = rng.uniform(size=(2, runs, n)) < 0.8
    cost = rng.uniform(0, 0.002, size=(2, runs, n)) * np.array([1.0, scale])[:, None, None]
    p = [
        stats.paired_ratio_difference(
            (cost[0, r], success[0, r]), (cost[1, r], success[1, r]), delta=delta, n_boot=500, rng=r
        ).p_noninferior
        for r in range(runs)
    ]
    assert np.mean(np.array(p) <= ALPHA) <= tolerance(runs)


def _needed_by_simulation(b: int, c: int, n: int, probs: list[float], delta: float) -> int:
    """Fewest extra pairs (on a 10-step grid) at which >= POWER of 1000 continuations PASS."""
    rng = np.random.default_rng(17)
    for k in range(10, 1000, 10):
        add = rng.multinomial(k, probs, size=1000)
        p_ni, _ = stats.binary_pvalues(b + add[:, 1], c + add[:, 2], n + k, delta=delta)
        if np.mean(p_ni <= ALPHA) >= POWER:
            return k
    raise AssertionError("not reached")


def test_tiny_suite_is_inconclusive_with_sensible_n_more() -> None:
    probs, delta, n = [0.7, 0.1, 0.1, 0.1], 0.1, 10
    draws = np.random.default_rng(3).multinomial(1, probs, size=n).argmax(axis=1)
    inc_pass, cand_pass = np.isin(draws, (0, 1)), np.isin(draws, (0, 2))
    none = np.zeros(n, bool)
    v = verdict(
        _results("a", inc_pass, none), _results("b", cand_pass, none), [Margin("exact", delta)], rng=0
    )
    m = v.metrics[0]
    assert v.status == m.status == "INCONCLUSIVE"
    assert m.n_more is not None and 0 < m.n_more < 10_000 and v.n_more == m.n_more
    assert m.discordant is not None
    simulated = _needed_by_simulation(*m.discordant, n, probs, delta)
    assert 0.5 <= m.n_more / simulated <= 2.0, (m.discordant, m.n_more, simulated)


def test_tiny_suites_n_more_distribution() -> None:
    # 500 tiny suites from a truly equal pair: mostly INCONCLUSIVE, "n more" always finite, and
    # the median within a factor of 2 of what the simulation needs from scratch.
    probs, delta, n, runs = [0.7, 0.1, 0.1, 0.1], 0.1, 10, 500
    draws = np.random.default_rng(8).multinomial(1, probs, size=(runs, n)).argmax(axis=2)
    none = np.zeros(n, bool)
    extra = []
    for r in range(runs):
        inc = _results("a", np.isin(draws[r], (0, 1)), none)
        cand = _results("b", np.isin(draws[r], (0, 2)), none)
        m = verdict(inc, cand, [Margin("exact", delta)], n_boot=100, rng=r).metrics[0]
        if m.status == "INCONCLUSIVE":
            assert m.n_more is not None and m.n_more > 0
            extra.append(m.n_more)
    assert len(extra) / runs >= 0.8
    simulated = _needed_by_simulation(0, 0, 0, probs, delta) - n
    assert 0.5 <= float(np.median(extra)) / simulated <= 2.0, (np.median(extra), simulated)
