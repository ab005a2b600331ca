"""The evaluation harness's shared vocabulary: suites, cases, grader specs, scores, results.

A **suite** is cases plus how to grade them and the non-inferiority margins a candidate must
meet. A **run** sends every case to one or more targets (routes or deployments) and records one
``CaseResult`` per (case, target), holding the grader ``Score`` s. A **verdict** compares a
candidate's results with an incumbent's on the same cases (``evals/stats.py``).

Units: latency in milliseconds, cost in USD, margins in the metric's own unit (a fraction for
pass rates, ms for latency, USD for cost).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Case", "CaseResult", "GraderSpec", "Margin", "Score", "Suite", "SuiteSource"]

# Which way is better for a metric: a quality score is better higher, latency and cost lower.
Direction = Literal["higher", "lower"]


@dataclass(frozen=True, slots=True)
class GraderSpec:
    """One grader and its settings, e.g. ``GraderSpec("regex", {"pattern": r"\\b42\\b"})``.

    ``metric`` names the score it produces (default: the grader's kind); ``kind`` is one of
    exact, normalized, contains, regex, numeric, json_schema, tool_call, code, similarity,
    refusal, judge, pairwise.
    """

    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None

    @property
    def metric_name(self) -> str:
        return self.metric or self.kind


@dataclass(frozen=True, slots=True)
class Case:
    """One test case. ``messages`` is an OpenAI Chat Completions messages list (a prompt
    template with ``variables`` is rendered into it at load). ``expected`` is whatever the
    graders compare against (None: reference-free graders only). ``tags`` label segments
    (language, task type) for per-segment results. ``graders`` override the suite's."""

    id: str
    messages: list[dict[str, Any]]
    expected: Any = None
    tools: list[dict[str, Any]] | None = None
    params: dict[str, Any] = field(default_factory=dict)  # extra request fields: max_tokens, ...
    tags: dict[str, str] = field(default_factory=dict)
    graders: tuple[GraderSpec, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. HumanEval's test code, entry point


@dataclass(frozen=True, slots=True)
class Margin:
    """Non-inferiority margin for one metric: the candidate may be worse than the incumbent by
    at most ``delta`` (absolute, in the metric's unit) in the ``better`` direction."""

    metric: str
    delta: float
    better: Direction = "higher"


@dataclass(frozen=True, slots=True)
class SuiteSource:
    """Where an imported suite came from: package name, version, licence, file within it."""

    name: str
    version: str
    licence: str
    path: str = ""


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    graders: tuple[GraderSpec, ...] = ()
    margins: tuple[Margin, ...] = ()
    alpha: float = 0.05  # family-wise, Holm-corrected across metrics
    power: float = 0.8  # for the "n more cases" estimate of an INCONCLUSIVE verdict
    source: SuiteSource | None = None


@dataclass(frozen=True, slots=True)
class Score:
    """One grader's judgement of one response. ``value`` is in [0, 1] for quality metrics;
    ``passed`` is set for pass/fail graders (McNemar applies to those)."""

    metric: str
    value: float
    passed: bool | None = None
    detail: str = ""


@dataclass(slots=True)
class CaseResult:
    """One case sent to one target. ``output`` is the assistant message text (or the tool calls
    as JSON); ``error`` is set when no answer came (then ``scores`` is empty)."""

    case_id: str
    target: str
    output: str | None
    scores: list[Score] = field(default_factory=list)
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    refused: bool | None = None
    served_by: str | None = None  # the deployment that answered (a route may fail over)
    response: dict[str, Any] | None = None  # the raw OpenAI chat.completion, for re-grading
