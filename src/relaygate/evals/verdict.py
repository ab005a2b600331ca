"""The switch verdict: does a candidate's run stay within the suite's margins of the incumbent's,
metric by metric, on the same cases? PASS, FAIL or INCONCLUSIVE with the evidence behind it.

Metrics. A margin names either a grader metric (``Score.metric``) or one of the operational
metrics below. A grader metric whose scores all carry ``passed`` is pass/fail (paired
McNemar-type test); otherwise its ``value`` s in [0, 1] are compared by the paired t-test.

* ``refusal_rate`` (lower is better): ``CaseResult.refused``, on pairs where both sides answered
  and the flag is known;
* ``error_rate`` (lower is better): the share of cases without an answer;
* ``latency_p95`` (ms, lower is better): paired bootstrap of the p95 difference, on pairs where
  both sides answered with a latency;
* ``cost_per_success`` (USD, lower is better): total cost of all cases (unknown cost counts 0)
  over the number of successful ones (answered, and every pass/fail score passed).

Missing answers are explicit: the case set is every case id seen on either side; a case without
a result or with ``error`` set takes a grader metric's worst value on that side (**fail** for a
pass/fail metric, score **0**; 1 where lower is better), so errors cost the side that made them
(both sides failing is a concordant pair). A case answered but not graded by a metric on a side
is left out of that metric's pairs (``n_excluded``). Latency and cost: see above.

Small or degenerate data are INCONCLUSIVE rather than decided by a method outside its range: the
bootstrap tests need ``stats.MIN_BOOTSTRAP_PAIRS`` pairs; scores whose pairs all differ alike are
decided by the exact bound for values in [0, 1] (``stats_paired._constant_p``), not by a t statistic.

Decision per metric, within one family (the whole run, or one segment): PASS when the Holm
(1979)-adjusted ``p_noninferior <= alpha``; FAIL when the Holm-adjusted ``p_inferior <= alpha``,
i.e. the upper bound of the interval of (candidate - incumbent) lies below ``-delta`` at that
level; else INCONCLUSIVE. Overall: FAIL if any metric fails, PASS if all pass, else
INCONCLUSIVE. Segments (``segments_by`` a tag key) repeat this per tag value as descriptive
evidence: each segment is its own Holm family, with no correction across segments.

"n more" for an INCONCLUSIVE metric: the fewest extra paired cases whose conditional power
(``stats.extra_pairs``) reaches ``power`` at the Holm level the metric would face once the
metrics with smaller p-values pass (``alpha / (k - rank + 1)``), with the per-pair SD observed
(pass/fail: one pseudo-pair added per cell), and assuming for the cases still to come the
observed difference if a two-sided test of no difference rejects at ``alpha``, else no
difference, the usual planning assumption for non-inferiority (Julious 2004, Stat Med 23:1921).
At least what the bootstrap minimum needs; for alike pairs, the n at which the range bound
reaches the level. None when the assumed difference is already beyond the margin (no number of
cases would show non-inferiority) or the data give no variance.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from relaygate.evals import stats
from relaygate.evals.model import Case, CaseResult, Direction, Margin

__all__ = [
    "COST_PER_SUCCESS",
    "ERROR_RATE",
    "LATENCY_P95",
    "OPERATIONAL_METRICS",
    "REFUSAL_RATE",
    "MetricVerdict",
    "SegmentVerdict",
    "Status",
    "Verdict",
    "verdict",
]

Status = Literal["PASS", "FAIL", "INCONCLUSIVE"]
REFUSAL_RATE, ERROR_RATE = "refusal_rate", "error_rate"
LATENCY_P95, COST_PER_SUCCESS = "latency_p95", "cost_per_success"
OPERATIONAL_METRICS: Mapping[str, Direction] = MappingProxyType(
    {REFUSAL_RATE: "lower", ERROR_RATE: "lower", LATENCY_P95: "lower", COST_PER_SUCCESS: "lower"}
)
_FIXED_KINDS: Mapping[str, str] = MappingProxyType(
    {
        ERROR_RATE: "pass_fail",
        REFUSAL_RATE: "pass_fail",
        LATENCY_P95: LATENCY_P95,
        COST_PER_SUCCESS: COST_PER_SUCCESS,
    }
)
UNTAGGED = "(untagged)"
Results = dict[str, CaseResult]


@dataclass(frozen=True, slots=True)
class MetricVerdict:
    """One metric's comparison. ``kind``: pass_fail, continuous, latency_p95 or cost_per_success;
    ``incumbent``/``candidate``: each side's statistic with its bootstrap interval (pass/fail:
    the rate of the metric as named, e.g. the refusal rate); ``diff``: oriented, positive =
    candidate better; ``alpha_level``: the Holm threshold this metric faced; ``discordant``:
    ``(b, c)`` for pass/fail metrics."""

    metric: str
    better: Direction
    delta: float
    kind: str
    status: Status
    n_pairs: int
    n_excluded: int
    incumbent: stats.Summary | None
    candidate: stats.Summary | None
    diff: stats.Diff | None
    p_noninferior_adj: float
    p_inferior_adj: float
    alpha_level: float
    n_more: int | None = None
    discordant: tuple[int, int] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SegmentVerdict:
    key: str
    value: str
    n_cases: int
    status: Status
    metrics: tuple[MetricVerdict, ...]


@dataclass(frozen=True, slots=True)
class Verdict:
    """``n_more``: the most extra cases any INCONCLUSIVE metric needs (None if one is
    unreachable or none is INCONCLUSIVE). ``errors``: cases without an answer per side."""

    status: Status
    metrics: tuple[MetricVerdict, ...]
    alpha: float
    power: float
    n_cases: int
    errors: dict[str, int]
    n_more: int | None
    segments: tuple[SegmentVerdict, ...] = ()
    methods: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: every number, non-finite ones as None, with the method names."""
        out: dict[str, Any] = _clean(asdict(self))
        return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _by_id(results: Iterable[CaseResult], side: str) -> dict[str, CaseResult]:
    out: dict[str, CaseResult] = {}
    for r in results:
        if r.case_id in out:
            raise ValueError(f"{side} has two results for case {r.case_id!r}")
        out[r.case_id] = r
    return out


def _answered(r: CaseResult | None) -> bool:
    return r is not None and r.error is None


def _success(r: CaseResult | None) -> float:
    ok = r is not None and r.error is None and all(s.passed for s in r.scores if s.passed is not None)
    return float(ok)


def _grader_kind(metric: str, results: Iterable[CaseResult]) -> str:
    passed = [s.passed for r in results for s in r.scores if s.metric == metric]
    return "pass_fail" if passed and all(p is not None for p in passed) else "continuous"


def _side_value(metric: str, kind: str, better: Direction) -> Callable[[CaseResult | None], float | None]:
    """One side's value of ``metric`` for one case; None leaves the pair out."""
    worst = 0.0 if better == "higher" else 1.0

    def value(r: CaseResult | None) -> float | None:
        if metric == ERROR_RATE:
            return float(not _answered(r))
        if r is None or r.error is not None:  # unanswered: the worst score, else not measured
            return worst if metric not in OPERATIONAL_METRICS else None
        if metric == REFUSAL_RATE:
            return None if r.refused is None else float(r.refused)
        if metric == LATENCY_P95:
            return r.latency_ms
        score = next((s for s in r.scores if s.metric == metric), None)
        if score is None:
            return None
        return float(bool(score.passed)) if kind == "pass_fail" else score.value

    return value


@dataclass(slots=True)
class _Pairs:
    kind: str
    inc: list[float] = field(default_factory=list)
    cand: list[float] = field(default_factory=list)
    excluded: int = 0
    inc_den: list[float] = field(default_factory=list)  # cost per success: success per case
    cand_den: list[float] = field(default_factory=list)


def _pairs(m: Margin, kind: str, ids: Sequence[str], inc: Results, cand: Results) -> _Pairs:
    """Both sides' values of one metric, in ``ids`` order, by the rules of the module doc."""
    out = _Pairs(kind)
    if m.metric == COST_PER_SUCCESS:
        for side, num, den in ((inc, out.inc, out.inc_den), (cand, out.cand, out.cand_den)):
            rs = [side.get(i) for i in ids]
            num.extend(float(r.cost_usd or 0.0) if r is not None else 0.0 for r in rs)
            den.extend(_success(r) for r in rs)
        return out
    value = _side_value(m.metric, kind, m.better)
    for cid in ids:
        x, y = value(inc.get(cid)), value(cand.get(cid))
        if x is None or y is None:
            out.excluded += 1
        else:
            out.inc.append(x)
            out.cand.append(y)
    return out


def _test(
    m: Margin, pairs: _Pairs, *, alpha: float, n_boot: int, rng: np.random.Generator
) -> tuple[stats.Summary | None, stats.Summary | None, stats.Diff | None, tuple[int, int] | None]:
    """Both sides' summaries, the oriented paired difference and, for pass/fail, (b, c)."""
    x, y, ci = np.asarray(pairs.inc), np.asarray(pairs.cand), 1 - 2 * alpha
    if x.size == 0:
        return None, None, None, None
    if pairs.kind == COST_PER_SUCCESS:
        xs, ys = (x, np.asarray(pairs.inc_den)), (y, np.asarray(pairs.cand_den))
        sx, sy = (stats.ratio_summary(*v, n_boot=n_boot, rng=rng) for v in (xs, ys))
        d = stats.paired_ratio_difference(
            xs, ys, better=m.better, delta=m.delta, n_boot=n_boot, ci=ci, rng=rng
        )
        return sx, sy, d, None
    statistic: stats.Statistic = "p95" if pairs.kind == LATENCY_P95 else "mean"
    sx, sy = (stats.metric_summary(v, statistic=statistic, n_boot=n_boot, rng=rng) for v in (x, y))
    if pairs.kind == "pass_fail":
        gx, gy = (v if m.better == "higher" else 1 - v for v in (x, y))
        b, c = int(np.sum(gx > gy)), int(np.sum(gx < gy))
        return sx, sy, stats.binary_noninferiority(b, c, x.size, delta=m.delta, ci=ci), (b, c)
    bounds = (0.0, 1.0) if pairs.kind == "continuous" else None  # Score.value is in [0, 1]
    d = stats.paired_difference(
        x,
        y,
        better=m.better,
        delta=m.delta,
        statistic=statistic,
        n_boot=n_boot,
        ci=ci,
        bounds=bounds,
        rng=rng,
    )
    return sx, sy, d, None


def _notes(d: stats.Diff | None) -> tuple[str, ...]:
    if d is None:
        return ("no paired cases",)
    if d.method.startswith("paired-bootstrap") and d.n < stats.MIN_BOOTSTRAP_PAIRS:
        return (f"fewer than {stats.MIN_BOOTSTRAP_PAIRS} pairs: the bootstrap decides nothing",)
    if d.method == stats.CONSTANT:
        return ("every pair differs alike: decided by the score-range bound",)
    return ()


def _n_more(d: stats.Diff, level: float, alpha: float, power: float) -> int | None:
    if not (math.isfinite(d.sd) and math.isfinite(d.sd0) and math.isfinite(d.mean_diff)):
        return None
    if d.method == stats.CONSTANT:  # cases to come assumed alike: n with the bound <= level
        if d.mean_diff <= -d.delta:
            return None
        need = math.log(level) / math.log((1 - d.delta) / (1 + d.mean_diff))
        return max(1, math.ceil(need) - d.n)
    effect = d.mean_diff if d.p_equal <= alpha else 0.0
    k = stats.extra_pairs(
        d.n, d.mean_diff, effect=effect, sd=d.sd, sd0=d.sd0, delta=d.delta, alpha=level, power=power
    )
    floor = stats.MIN_BOOTSTRAP_PAIRS - d.n if d.method.startswith("paired-bootstrap") else 0
    return None if k is None else max(k, floor)


def _family(
    margins: Sequence[Margin], kinds: dict[str, str], ids: Sequence[str], *, inc: Results, cand: Results,
    alpha: float, power: float, n_boot: int, seed: int, segment: str,
) -> tuple[MetricVerdict, ...]:  # fmt: skip
    """All metrics on the cases ``ids``, Holm-corrected together."""
    tested = []
    for m in margins:
        pairs = _pairs(m, kinds[m.metric], ids, inc, cand)
        rng = np.random.default_rng([seed, zlib.crc32(segment.encode()), zlib.crc32(m.metric.encode())])
        tested.append((m, pairs, *_test(m, pairs, alpha=alpha, n_boot=n_boot, rng=rng)))
    p_ni = np.array([t[4].p_noninferior if t[4] else 1.0 for t in tested])
    p_in = np.array([t[4].p_inferior if t[4] else 1.0 for t in tested])
    adj_ni, adj_in = stats.holm(p_ni), stats.holm(p_in)
    rank = np.empty(len(tested), int)
    rank[np.argsort(p_ni, kind="stable")] = np.arange(len(tested))
    out = []
    for i, (m, pairs, sx, sy, d, disc) in enumerate(tested):
        level = float(alpha / (len(tested) - rank[i]))
        status: Status = "PASS" if adj_ni[i] <= alpha else "FAIL" if adj_in[i] <= alpha else "INCONCLUSIVE"
        n_more = _n_more(d, level, alpha, power) if d is not None and status == "INCONCLUSIVE" else None
        n_pairs = d.n if d is not None else len(pairs.inc)
        notes = _notes(d)
        out.append(
            MetricVerdict(
                m.metric,
                m.better,
                m.delta,
                pairs.kind,
                status,
                n_pairs,
                pairs.excluded,
                sx,
                sy,
                d,
                float(adj_ni[i]),
                float(adj_in[i]),
                level,
                n_more,
                disc,
                notes,
            )
        )
    return tuple(out)


def _overall(metrics: Sequence[MetricVerdict]) -> Status:
    if any(m.status == "FAIL" for m in metrics):
        return "FAIL"
    return "PASS" if all(m.status == "PASS" for m in metrics) else "INCONCLUSIVE"


def _check(margins: Sequence[Margin]) -> None:
    seen: set[str] = set()
    for m in margins:
        if m.metric in seen:
            raise ValueError(f"two margins for metric {m.metric!r}")
        seen.add(m.metric)
        if not (m.delta >= 0 and math.isfinite(m.delta)):
            raise ValueError(f"margin for {m.metric!r} must be finite and >= 0, got {m.delta}")
        want = OPERATIONAL_METRICS.get(m.metric, m.better)
        if m.better != want:
            raise ValueError(f"{m.metric!r} is better {want}, the margin says better={m.better!r}")
    if not seen:
        raise ValueError("verdict needs at least one margin")


def verdict(
    incumbent: Sequence[CaseResult],
    candidate: Sequence[CaseResult],
    margins: Sequence[Margin],
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    segments_by: str | None = None,
    cases: Iterable[Case] | None = None,
    n_boot: int = 2000,
    rng: stats.Rng,
) -> Verdict:
    """Compare two runs of the same suite (one ``CaseResult`` per case per side).

    ``margins``: one per metric (grader metric names or OPERATIONAL_METRICS). ``segments_by``
    a tag key: per-segment results too, with the tags read from ``cases``. ``rng``: a seed or
    Generator; each (segment, metric) draws from its own stream, so adding a metric does not
    change the others' numbers. Raises ValueError on duplicate results or margins, a negative
    margin, an operational metric with the wrong ``better``, or ``segments_by`` without cases."""
    _check(margins)
    if not (0 < alpha < 0.5 and 0 < power < 1):
        raise ValueError(f"need 0 < alpha < 0.5 and 0 < power < 1, got {alpha}, {power}")
    inc, cand = _by_id(incumbent, "incumbent"), _by_id(candidate, "candidate")
    ids = sorted(set(inc) | set(cand))
    every = [*inc.values(), *cand.values()]
    kinds = {m.metric: _FIXED_KINDS.get(m.metric) or _grader_kind(m.metric, every) for m in margins}
    seed = int(rng.integers(2**63)) if isinstance(rng, np.random.Generator) else int(rng)
    family = functools.partial(
        _family, margins, kinds, inc=inc, cand=cand, alpha=alpha, power=power, n_boot=n_boot, seed=seed
    )
    metrics = family(ids, segment="")
    segments = []
    if segments_by is not None:
        if cases is None:
            raise ValueError("segments_by needs the suite's cases (their tags)")
        tag = {c.id: c.tags.get(segments_by, UNTAGGED) for c in cases}
        for value in sorted({tag.get(i, UNTAGGED) for i in ids}):
            sub = [i for i in ids if tag.get(i, UNTAGGED) == value]
            fam = family(sub, segment=f"{segments_by}={value}")
            segments.append(SegmentVerdict(segments_by, value, len(sub), _overall(fam), fam))
    more = [m.n_more for m in metrics if m.status == "INCONCLUSIVE"]
    n_more = max(k for k in more if k is not None) if more and None not in more else None
    methods = {m.metric: (m.diff.method if m.diff else "none") for m in metrics}
    methods |= {"multiplicity": "holm-1979", "n_more": "conditional-power-lan-wittes-1988"}
    methods["summary"] = "bootstrap-bca (percentile for p95), 95%"
    errors = {
        side: sum(not _answered(rs.get(i)) for i in ids)
        for side, rs in (("incumbent", inc), ("candidate", cand))
    }
    return Verdict(
        _overall(metrics), metrics, alpha, power, len(ids), errors, n_more, tuple(segments), methods
    )
