"""Turn a stored eval run into ``quality`` records for one route's deployments (pure).

A run's targets are routes (``relaygate eval run -t incumbent -t candidate``); each answer records
the deployment that served it (``CaseResult.served_by``). A target is published under that
deployment when every answered case of the target was served by one and the same deployment and
that deployment belongs to the route being published to; otherwise it is skipped with a note (a
target that failed over between deployments measured a mix, not a deployment).

Per deployment and suite: the suite's main quality metric (``metric``, default the first margin
that is a grader metric) as mean with its bootstrap CI over ``n`` cases, taken from the verdict
(``relaygate.evals.verdict``: unanswered cases score the worst value) so publish agrees with the
report; and the overall verdict of that target against the run's incumbent (the first target), or
``INCUMBENT`` for the incumbent itself. The incumbent's deployment is what the records compare
against: ``cheapest_non_inferior`` uses them only while it is the route's incumbent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from relaygate.config.quality_schema import PublishedQuality, QualityScore
from relaygate.config.schema import RouteConfig
from relaygate.evals import stats
from relaygate.evals.model import CaseResult
from relaygate.evals.store import RunSummary
from relaygate.evals.verdict import OPERATIONAL_METRICS

__all__ = ["PublishPlan", "main_metric", "plan_publish", "served_deployment"]


@dataclass(slots=True)
class PublishPlan:
    """What ``relaygate eval publish`` would write: ``records`` and, per skipped target or
    other doubt, one line in ``notes``. ``incumbent``: the run's incumbent deployment id."""

    route: str
    suite: str
    metric: str
    incumbent: str | None
    records: list[PublishedQuality] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def served_deployment(results: list[CaseResult]) -> tuple[str | None, str]:
    """The one deployment that answered every answered case, else None with the reason."""
    served = Counter(r.served_by for r in results if r.error is None)
    if not served:
        return None, "no answered case"
    if None in served:
        return None, "answers without a serving deployment"
    if len(served) > 1:
        mix = ", ".join(f"{d} x{n}" for d, n in served.most_common())
        return None, f"served by several deployments ({mix}): it measured a mix"
    ((dep, _),) = served.items()
    return dep, ""


def main_metric(summary: RunSummary) -> str | None:
    """The first margin naming a grader metric, else the first grader metric in the results."""
    for m in summary.margins:
        if m.metric not in OPERATIONAL_METRICS:
            return m.metric
    return next((s.metric for r in summary.results for s in r.scores), None)


def plan_publish(
    summary: RunSummary,
    route_name: str,
    route: RouteConfig,
    verdicts: dict[str, Any],
    *,
    suite: str | None = None,
    metric: str | None = None,
    now: datetime | None = None,
) -> PublishPlan:
    """Records for ``route`` from ``summary`` and its ``verdicts`` (``{candidate target:
    Verdict}`` against ``summary.targets[0]``, as ``report.compute_verdicts`` gives; may be empty).

    ``suite``: the name to publish under (default the run's suite). ``metric``: the metric to
    summarise (default ``main_metric``). Raises ``ValueError`` when the run has no such metric or
    its incumbent cannot be tied to one deployment of the route."""
    metric = metric or main_metric(summary)
    if metric is None or not any(s.metric == metric for r in summary.results for s in r.scores):
        raise ValueError(f"run {summary.run_id} has no scores for metric {metric!r}")
    ids = [d.deployment_id for d in route.deployments]
    inc_target = summary.targets[0]
    inc_dep, why = served_deployment(summary.for_target(inc_target))
    if inc_dep is None or inc_dep not in ids:
        where = why or f"served by {inc_dep}, not a deployment of route {route_name} ({', '.join(ids)})"
        raise ValueError(f"the run's incumbent target {inc_target!r}: {where}")
    out = PublishPlan(route_name, suite or summary.suite, metric, inc_dep)
    if inc_dep != route.incumbent:
        out.notes.append(
            f"route {route_name}'s incumbent is {route.incumbent}, the run's is {inc_dep}: "
            "cheapest_non_inferior ignores these verdicts until the incumbents agree"
        )
    seen: set[str] = set()
    for target in summary.targets:
        dep, why = served_deployment(summary.for_target(target))
        if dep is None or dep not in ids or dep in seen:
            reason = why or (f"{dep} already published" if dep in seen else f"{dep} not in the route")
            out.notes.append(f"skipped target {target}: {reason}")
            continue
        seen.add(dep)
        status, side = ("INCUMBENT", None) if target == inc_target else _status(verdicts, target)
        if status is None:
            out.notes.append(f"skipped target {target}: no verdict against {inc_target}")
            continue
        mean, lo, hi, n = _figures(summary, verdicts, target, metric, side)
        score = QualityScore(
            metric=metric, mean=mean, ci_low=lo, ci_high=hi, n=n, verdict=status,
            incumbent=inc_dep, run_id=summary.run_id, published_at=now,
        )  # fmt: skip
        out.records.append(PublishedQuality(route_name, dep, out.suite, score))
    return out


def _status(verdicts: dict[str, Any], target: str) -> tuple[Any, str | None]:
    v = verdicts.get(target)
    return (None, None) if v is None else (v.status, "candidate")


def _figures(
    summary: RunSummary, verdicts: dict[str, Any], target: str, metric: str, side: str | None
) -> tuple[float, float | None, float | None, int]:
    """(mean, ci_low, ci_high, n) of ``metric`` for ``target``: the verdict's summary of that
    side when the metric has a margin, else a bootstrap over the target's answered scores."""
    for v in verdicts.values() if side is None else [verdicts[target]]:
        m = next((m for m in v.metrics if m.metric == metric), None)
        got = getattr(m, side or "incumbent", None) if m is not None else None
        if got is not None:
            return float(got.mean), float(got.lo), float(got.hi), int(got.n)
    values = [s.value for r in summary.for_target(target) for s in r.scores if s.metric == metric]
    if not values:
        return 0.0, None, None, 0
    s = stats.metric_summary(values, rng=0)
    return float(s.mean), float(s.lo), float(s.hi), int(s.n)
