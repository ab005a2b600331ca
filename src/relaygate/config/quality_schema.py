"""Strict schema of published eval quality: ``quality:`` on a deployment (``routes.R.deployments[i]``).

One ``QualityScore`` per suite says how a deployment did on that suite when it was evaluated as a
replacement for the route's incumbent: the suite's main quality metric (mean and bootstrap CI over
``n`` cases) and the run's overall non-inferiority verdict against ``incumbent``. ``relaygate eval
publish`` writes the same records to the ``deployment_quality`` table; the gateway merges them over
the config at start-up and on every reload (``relaygate.routing.quality.with_quality``). The
``cheapest_non_inferior`` strategy (``relaygate.routing.strategies``) reads them.

YAML example::

    deployments:
      - provider: cheap
        model: small-model
        quality:
          mtbench: {metric: judge, mean: 0.81, ci_low: 0.74, ci_high: 0.87, n: 80,
                    verdict: PASS, incumbent: openai/gpt-4o}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PublishedQuality", "QualityScore", "QualityVerdict"]

# PASS/FAIL/INCONCLUSIVE: the eval verdict of this deployment against ``incumbent``;
# INCUMBENT: this deployment *is* the incumbent of that run (its scores are the reference).
QualityVerdict = Literal["PASS", "FAIL", "INCONCLUSIVE", "INCUMBENT"]


class QualityScore(BaseModel):
    """One suite's evidence for one deployment on one route.

    ``metric``: the grader metric summarised (``mean`` in the metric's unit, a fraction for pass
    rates and scores in [0, 1]; ``ci_low``/``ci_high`` its two-sided bootstrap interval, None when
    not computed); ``n``: cases behind it; ``verdict``: the run's overall verdict against the
    deployment id ``incumbent`` (all margins, Holm-corrected; ``relaygate.evals.verdict``);
    ``run_id``/``published_at``: where and when it came from (None when written by hand)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(min_length=1)
    mean: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = Field(0, ge=0)
    verdict: QualityVerdict
    incumbent: str = Field(min_length=1, description="deployment id the verdict compared against")
    run_id: str | None = None
    published_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class PublishedQuality:
    """One stored record: ``score`` of deployment id ``deployment`` on ``route`` for ``suite``."""

    route: str
    deployment: str
    suite: str
    score: QualityScore
