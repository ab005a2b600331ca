"""Statistics of the eval verdict on inputs small enough to check by hand.

Every expected number is worked out in a comment (binomial tails, t statistics, Holm products)
rather than recomputed by the code under test; scipy appears only to turn a hand-derived
statistic into its tail probability.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from relaygate.evals import stats, stats_binary
from relaygate.evals.model import Case, CaseResult, Margin, Score
from relaygate.evals.verdict import verdict


def test_mcnemar_known_counts() -> None:
    # b=3, c=10: chi2 = 7^2/13; P(X<=3 | Bin(13, 1/2)) = (1+13+78+286)/8192 = 378/8192.
    t = stats.mcnemar(3, 10)
    assert t.statistic == pytest.approx(49 / 13)
    assert t.p_asymptotic == pytest.approx(sps.chi2.sf(49 / 13, 1))
    assert t.p_exact == pytest.approx(2 * 378 / 8192)
    assert t.p_midp == pytest.approx(2 * 378 / 8192 - 286 / 8192)  # minus P(X=3)
    # b == c: the exact p-value is 1 and the mid-p 1 - P(X=5) = 1 - 252/1024.
    assert stats.mcnemar(5, 5).p_exact == 1.0
    assert stats.mcnemar(5, 5).p_midp == pytest.approx(1 - 252 / 1024)
    assert stats.mcnemar(0, 0).p_midp == 1.0


def test_score_statistic_is_mcnemar_at_zero_margin() -> None:
    # At d0 = 0 the restricted MLE is p01 = p10 = (b+c)/2n and Z = (c-b)/sqrt(b+c).
    assert float(stats.score_z(3, 10, 50, 0.0)) == pytest.approx(7 / math.sqrt(13))
    assert float(stats.score_z(10, 3, 50, 0.0)) == pytest.approx(-7 / math.sqrt(13))


@pytest.mark.parametrize(("b", "c", "n", "delta"), [(5, 2, 40, 0.1), (0, 0, 10, 0.2), (12, 30, 100, 0.05)])
def test_restricted_mle_maximises_the_likelihood(b: int, c: int, n: int, delta: float) -> None:
    # Under p10 = q + delta, p01 = q the log-likelihood is
    # b log(q+delta) + c log q + (n-b-c) log(1-2q-delta); the closed form must be its argmax.
    def nll(q: float) -> float:
        return -(
            b * math.log(q + delta)
            + (c * math.log(q) if c else 0.0)
            + (n - b - c) * math.log(1 - 2 * q - delta)
        )

    top = (1 - delta) / 2
    best = optimize.minimize_scalar(
        nll, bounds=(1e-12, top - 1e-12), method="bounded", options={"xatol": 1e-12}
    )
    closed = float(stats_binary._restricted_q(np.array([b], float), np.array([c], float), n, delta)[0])
    assert closed == pytest.approx(best.x, abs=1e-6)


def test_exact_test_without_discordance_is_binomial_tail() -> None:
    # b = c = 0: the worst null case is p10 = delta, p01 = 0, where P(no discordance) = (1-delta)^n.
    assert stats.binary_noninferiority(0, 0, 10, delta=0.1).p_noninferior == pytest.approx(0.9**10)
    d = stats.binary_noninferiority(0, 0, 30, delta=0.1)
    assert d.p_noninferior == pytest.approx(0.9**30)  # 0.0424 < 0.05: 30 clean pairs show it
    assert d.method == "exact-unconditional" and d.mean_diff == 0.0 and d.lo < 0 < d.hi


def test_exact_test_size_never_exceeds_alpha() -> None:
    # Rejection probability summed over every (b, c) cell, on a grid of the nuisance parameter.
    n, delta, alpha = 30, 0.1, 0.05
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = b + c <= n
    b, c = b[ok], c[ok]
    reject = stats.binary_pvalues(b, c, n, delta=delta, method="exact")[0] <= alpha
    sizes = []
    for q in np.linspace(0, (1 - delta) / 2, 91):
        cells = np.stack([b, c, n - b - c], axis=1)
        pmf = sps.multinomial.pmf(cells, n, [q + delta, q, max(0.0, 1 - 2 * q - delta)])
        sizes.append(float(np.sum(pmf[reject])))
    assert max(sizes) <= alpha + 1e-9
    assert max(sizes) > 0.03  # and it is not trivially conservative


def test_midp_is_never_more_conservative_than_exact() -> None:
    n = 40
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = b + c <= n
    exact = stats.binary_pvalues(b[ok], c[ok], n, delta=0.1, method="exact")
    midp = stats.binary_pvalues(b[ok], c[ok], n, delta=0.1, method="midp")
    assert np.all(midp[0] <= exact[0] + 1e-12)
    assert np.all(exact[0] + exact[1] >= 1 - 1e-9)  # PASS and FAIL cannot both be shown


def test_score_path_above_exact_limit() -> None:
    n = stats.EXACT_MAX_PAIRS + 100
    d = stats.binary_noninferiority(20, 20, n, delta=0.05)
    assert d.method == "nam-tango-score"
    z = float(stats.score_z(20, 20, n, -0.05))
    assert d.p_noninferior == pytest.approx(sps.norm.sf(z))
    # Tango's interval inverts the same statistic: at its bounds Z = -/+ z_{0.95}.
    assert float(stats.score_z(20, 20, n, d.lo)) == pytest.approx(sps.norm.ppf(0.95), abs=1e-6)
    assert float(stats.score_z(20, 20, n, d.hi)) == pytest.approx(-sps.norm.ppf(0.95), abs=1e-6)


def test_holm_adjusted_pvalues() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]).tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([0.02]).tolist() == [0.02]


def test_bootstrap_on_constant_data() -> None:
    s = stats.metric_summary([0.7] * 20, rng=1)
    assert (s.mean, s.lo, s.hi, s.n) == (pytest.approx(0.7), pytest.approx(0.7), pytest.approx(0.7), 20)
    p = stats.metric_summary([250.0] * 9, statistic="p95", rng=1)
    assert p.lo == p.hi == 250.0 and p.method == "bootstrap-percentile"
    with pytest.raises(ValueError):
        stats.metric_summary([], rng=1)


def test_bootstrap_interval_covers_a_binary_mean() -> None:
    s = stats.metric_summary([1] * 7 + [0] * 3, rng=3)
    assert s.mean == pytest.approx(0.7)
    assert 0.3 <= s.lo < 0.7 < s.hi <= 1.0


def test_paired_t_by_hand() -> None:
    # d = cand - inc = [0.1, -0.1, 0.2, 0.0]: mean 0.05, sd = sqrt(0.05/3) = 0.12910;
    # with delta = 0.1, t = (0.05 + 0.1) / (0.12910 / 2) = 2.32379 on 3 df.
    inc = [0.5, 0.6, 0.3, 0.8]
    cand = [0.6, 0.5, 0.5, 0.8]
    d = stats.paired_difference(inc, cand, delta=0.1, rng=0)
    assert d.method == "paired-t" and d.mean_diff == pytest.approx(0.05)
    assert d.sd == pytest.approx(math.sqrt(0.05 / 3))
    assert d.p_noninferior == pytest.approx(sps.t.sf(2.32379, 3), abs=1e-5)
    assert d.p_noninferior + d.p_inferior == pytest.approx(1.0)


def test_orientation_positive_means_candidate_better() -> None:
    # Lower latency is better: the candidate is 20 ms faster on every case.
    lat = np.linspace(100, 1000, 40)
    jitter = np.tile([-1.0, 1.0], 20)
    d = stats.paired_difference(lat, lat - 20 + jitter, better="lower", delta=50, rng=0)
    assert d.mean_diff == pytest.approx(20) and d.lo < 20 < d.hi and d.p_noninferior < 1e-20
    p95 = stats.paired_difference(lat, lat - 20, better="lower", delta=50, statistic="p95", rng=0)
    assert p95.mean_diff == pytest.approx(20) and p95.lo == p95.hi == pytest.approx(20)
    worse = stats.paired_difference(lat, lat + 80 + jitter, better="lower", delta=50, rng=0)
    assert worse.mean_diff == pytest.approx(-80) and worse.p_inferior < 1e-20


def test_constant_differences_use_the_range_bound() -> None:
    # 29 pairs all +0.02 on scores in [0, 1], margin 0.05: the likeliest null law puts mass p on
    # +0.02 and the rest on -1 with mean -0.05, so p = 0.95 / 1.02 and P = (0.95 / 1.02)^29.
    inc = np.linspace(0.1, 0.9, 29)
    d = stats.paired_difference(inc, inc + 0.02, delta=0.05, bounds=(0.0, 1.0), rng=0)
    assert d.method == stats.CONSTANT and d.lo == d.hi
    assert d.p_noninferior == pytest.approx((0.95 / 1.02) ** 29)
    assert stats.paired_difference(inc, inc + 0.02, delta=0.05, rng=0).p_noninferior == 1.0  # no range
    # All -0.2 against a 0.05 margin: inferiority, P = ((1 + 0.05) / (1 + 0.2))^29.
    worse = stats.paired_difference(inc, inc - 0.2, delta=0.05, bounds=(0.0, 1.0), rng=0)
    assert worse.p_inferior == pytest.approx((1.05 / 1.2) ** 29) and worse.p_noninferior == 1.0


def test_alignment_by_case_id() -> None:
    a = stats.paired_difference({"x": 0.1, "y": 0.9}, {"y": 0.8, "x": 0.2}, delta=0.1, rng=0)
    assert a.mean_diff == pytest.approx(0.0)  # (+0.1 - 0.1) / 2 when aligned by id
    with pytest.raises(ValueError, match="case ids differ"):
        stats.paired_difference({"x": 0.1}, {"y": 0.2}, rng=0)
    with pytest.raises(ValueError):
        stats.paired_difference([0.1, 0.2], [0.3], rng=0)


def test_ratio_of_sums() -> None:
    # Incumbent: 0.4 USD over 2 successes = 0.2; candidate 0.3 over 2 = 0.15 (better by 0.05).
    inc = ([0.1, 0.1, 0.1, 0.1], [1, 0, 1, 0])
    cand = ([0.075] * 4, [1, 0, 1, 0])
    d = stats.paired_ratio_difference(inc, cand, delta=0.01, rng=0)
    assert d.mean_diff == pytest.approx(0.05)
    none = stats.ratio_summary([0.1, 0.1], [0, 0], rng=0)
    assert math.isinf(none.mean)
    assert stats.paired_ratio_difference(inc, ([0.1] * 4, [0] * 4), delta=0.01, rng=0).p_noninferior == 1.0


def test_sample_size_formulas() -> None:
    # Normal: ((1.64485 + 0.84162) / 0.5)^2 = 24.73 pairs.
    assert stats.normal_pairs_needed(1.0, 0.0, delta=0.5) == pytest.approx(24.73, abs=0.01)
    # Connor (1987) at delta = 0, two-sided 5% (one-sided 0.025): p10 = 0.1, p01 = 0.2,
    # n = (1.95996 sqrt(0.3) + 0.84162 sqrt(0.3 - 0.01))^2 / 0.01 = (1.07350 + 0.45322)^2 * 100.
    assert stats.binary_pairs_needed(0.1, 0.2, delta=0.0, alpha=0.025) == pytest.approx(233.09, abs=0.01)
    assert stats.binary_pairs_needed(0.3, 0.1, delta=0.1) == math.inf  # truly worse than the margin
    # Conditional power with nothing in hand is the plain formula, rounded up.
    assert stats.extra_pairs(0, 0.0, effect=0.0, sd=1.0, sd0=1.0, delta=0.5) == 25
    assert stats.extra_pairs(10, 0.0, effect=-0.6, sd=1.0, sd0=1.0, delta=0.5) is None
    # Data in hand that already lean the right way need fewer extra cases.
    ahead = stats.extra_pairs(20, 0.3, effect=0.0, sd=1.0, sd0=1.0, delta=0.5)
    behind = stats.extra_pairs(20, -0.3, effect=0.0, sd=1.0, sd0=1.0, delta=0.5)
    assert ahead is not None and behind is not None and ahead < behind


# --- verdict ------------------------------------------------------------------------------------


def _runs(target: str, passed: list[bool], **kw: object) -> list[CaseResult]:
    return [
        CaseResult(f"c{i}", target, "ok", scores=[Score("exact", float(p), p)], latency_ms=100.0 + i, **kw)  # type: ignore[arg-type]
        for i, p in enumerate(passed)
    ]


def test_errors_and_missing_cases_count_as_fails() -> None:
    inc = _runs("a", [True] * 6)
    cand = _runs("b", [True] * 6)
    cand[1] = CaseResult("c1", "b", None, error="timeout")
    del cand[5]  # no result at all for c5
    v = verdict(inc, cand, [Margin("exact", 0.1), Margin("error_rate", 0.1, "lower")], rng=0)
    exact, errors = v.metrics
    assert exact.discordant == (2, 0) and exact.n_pairs == 6  # c1 and c5: incumbent pass, candidate fail
    assert exact.diff is not None and exact.diff.mean_diff == pytest.approx(-2 / 6)
    assert errors.candidate is not None and errors.candidate.mean == pytest.approx(2 / 6)
    assert errors.discordant == (2, 0)  # oriented on "no error": the incumbent is better twice
    assert v.errors == {"incumbent": 0, "candidate": 2}
    # Latency only on pairs where both answered.
    lat = verdict(inc, cand, [Margin("latency_p95", 10, "lower")], rng=0).metrics[0]
    assert lat.n_pairs == 4 and lat.n_excluded == 2
    # Four pairs are far too few for a bootstrap test (see MIN_BOOTSTRAP_PAIRS): nothing shown.
    assert lat.status == "INCONCLUSIVE" and lat.diff is not None and lat.diff.p_noninferior == 1.0
    assert lat.notes and lat.n_more is not None and lat.n_more >= stats.MIN_BOOTSTRAP_PAIRS - 4


def test_clear_pass_and_clear_fail() -> None:
    same = [i % 10 != 0 for i in range(200)]  # 90% pass on both sides, identical cases
    v = verdict(_runs("a", same), _runs("b", same), [Margin("exact", 0.05)], rng=0)
    assert v.status == "PASS" and v.metrics[0].discordant == (0, 0) and v.n_more is None
    worse = [i % 2 == 0 for i in range(200)]  # 50%: worse by 0.4 against a 0.05 margin
    v = verdict(_runs("a", same), _runs("b", worse), [Margin("exact", 0.05)], rng=0)
    assert v.status == "FAIL" and v.metrics[0].diff is not None and v.metrics[0].diff.hi < -0.05


def test_holm_applies_across_metrics_and_overall_rules() -> None:
    rng = np.random.default_rng(4)
    passed = list(rng.uniform(size=60) < 0.8)
    inc = _runs("a", passed, refused=False)
    cand = _runs("b", passed, refused=False)
    for r in cand[:6]:
        r.refused = True  # 10% more refusals against a 5% margin: unresolved at n=60
    margins = [Margin("exact", 0.1), Margin("refusal_rate", 0.05, "lower")]
    v = verdict(inc, cand, margins, rng=0)
    raw = [m.diff.p_noninferior for m in v.metrics if m.diff is not None]
    assert [m.p_noninferior_adj for m in v.metrics] == pytest.approx(stats.holm(raw).tolist())
    exact, refusal = v.metrics
    assert exact.status == "PASS" and refusal.status == "INCONCLUSIVE"
    assert refusal.alpha_level == pytest.approx(0.05)  # second in Holm order: alpha / 1
    assert v.status == "INCONCLUSIVE" and v.n_more == refusal.n_more
    assert refusal.n_more is None or refusal.n_more > 0


def test_continuous_scores_use_paired_t_and_exclusions() -> None:
    inc = [CaseResult(f"c{i}", "a", "x", scores=[Score("sim", 0.5 + 0.01 * i)]) for i in range(30)]
    # The candidate is 0.02 better, +-0.01 alternately: mean 0.02 over the 29 pairs left.
    cand = [
        CaseResult(f"c{i}", "b", "x", scores=[Score("sim", 0.52 + 0.01 * i + 0.01 * (-1) ** i)])
        for i in range(30)
    ]
    cand[3] = CaseResult("c3", "b", "x", scores=[])  # answered but not graded: left out
    m = verdict(inc, cand, [Margin("sim", 0.05)], rng=0).metrics[0]
    assert m.kind == "continuous" and m.n_excluded == 1 and m.n_pairs == 29
    assert m.diff is not None and m.diff.method == "paired-t"
    assert m.diff.mean_diff == pytest.approx(0.02 + 0.01 / 29)  # 15 of +0.01, 14 of -0.01
    assert m.status == "PASS"
    # Identical scores on a tiny suite: the range bound (0.9^5 = 0.59) shows nothing yet, and the
    # cases needed for 0.9^n <= 0.05 are 29, so 24 more.
    same = verdict(inc[:5], inc[:5], [Margin("sim", 0.1)], rng=0).metrics[0]
    assert same.status == "INCONCLUSIVE" and same.diff is not None and same.diff.method == stats.CONSTANT
    assert same.diff.p_noninferior == pytest.approx(0.9**5) and same.n_more == 24


def test_segments_to_dict_and_determinism() -> None:
    rng = np.random.default_rng(7)
    inc = _runs("a", list(rng.uniform(size=80) < 0.8), cost_usd=0.01, refused=False)
    cand = _runs("b", list(rng.uniform(size=80) < 0.8), cost_usd=0.008, refused=False)
    cases = [Case(f"c{i}", [], tags={"lang": "en"} if i % 4 else {}) for i in range(80)]
    margins = [
        Margin("exact", 0.1),
        Margin("latency_p95", 20, "lower"),
        Margin("cost_per_success", 0.002, "lower"),
    ]
    v = verdict(inc, cand, margins, segments_by="lang", cases=cases, rng=11)
    assert [(s.value, s.n_cases) for s in v.segments] == [("(untagged)", 20), ("en", 60)]
    d = v.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["methods"]["multiplicity"] == "holm-1979"
    assert d["metrics"][0]["diff"]["method"] == "exact-unconditional"
    assert d["metrics"][1]["diff"]["method"] == "paired-bootstrap-percentile"
    assert d["metrics"][2]["diff"]["method"] == "paired-bootstrap-bca"
    assert verdict(inc, cand, margins, segments_by="lang", cases=cases, rng=11).to_dict() == d
    # Each metric has its own random stream: dropping one leaves the others' numbers alone.
    fewer = verdict(inc, cand, margins[1:2], rng=11)
    assert fewer.metrics[0].diff == v.metrics[1].diff


def test_verdict_input_errors() -> None:
    runs = _runs("a", [True, False])
    with pytest.raises(ValueError, match="two results"):
        verdict([*runs, runs[0]], runs, [Margin("exact", 0.1)], rng=0)
    with pytest.raises(ValueError, match="better lower"):
        verdict(runs, runs, [Margin("latency_p95", 10)], rng=0)
    with pytest.raises(ValueError, match="two margins"):
        verdict(runs, runs, [Margin("exact", 0.1), Margin("exact", 0.2)], rng=0)
    with pytest.raises(ValueError, match=">= 0"):
        verdict(runs, runs, [Margin("exact", -0.1)], rng=0)
    with pytest.raises(ValueError, match="cases"):
        verdict(runs, runs, [Margin("exact", 0.1)], segments_by="lang", rng=0)
    empty = verdict(runs, runs, [Margin("refusal_rate", 0.1, "lower")], rng=0).metrics[0]
    assert empty.status == "INCONCLUSIVE" and empty.notes == ("no paired cases",) and empty.n_more is None


def test_binary_margin_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stats.binary_noninferiority(1, 2, 10, delta=1.0)
    with pytest.raises(ValueError):
        stats.binary_noninferiority(6, 6, 10, delta=0.1)  # b + c > n
