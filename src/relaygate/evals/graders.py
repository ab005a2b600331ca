"""Graders: score one model response to one case with one ``GraderSpec``.

``await grade(case, response, spec, ctx=...)`` returns a ``Score``; ``response`` is an OpenAI
``chat.completion`` dict. Kinds and the modules that implement them:

=============  ==========================  ==============================================
kind           module                      score
=============  ==========================  ==============================================
exact          graders_text                pass/fail
normalized     graders_text                pass/fail (NFKC, case, punctuation, spaces)
contains       graders_text                pass/fail (``all``: fraction present)
regex          graders_text                pass/fail
numeric        graders_text                pass/fail (last number, abs/rel tolerance)
json_schema    graders_json                pass/fail
tool_call      graders_tool                pass/fail
code           graders_code (+ sandbox)    pass/fail
similarity     graders_similarity          cosine in [0, 1]; pass/fail with ``threshold``
refusal        graders_refusal             1.0 = refused; passed = expected behaviour
judge          graders_judge               (rating - 1) / 9; pass/fail with threshold
pairwise       graders_judge               1 win, 0.5 tie, 0 loss vs ``ctx.baseline``
=============  ==========================  ==============================================

``grade`` is async because judges are remote calls; blocking graders (``code`` runs a
subprocess, ``similarity`` runs the embedding model) run in a worker thread so the runner's
event loop keeps going. ``validate_spec`` checks a spec's parameters without grading (the
suite loader calls it). Misconfiguration raises ``GraderError``; an answer never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from relaygate.evals import (
    graders_code,
    graders_json,
    graders_judge,
    graders_refusal,
    graders_similarity,
    graders_text,
    graders_tool,
)
from relaygate.evals.graders_context import (
    Embedder,
    GradeContext,
    GraderError,
    JudgeCall,
    answer_text,
    tool_calls_of,
)
from relaygate.evals.model import Case, GraderSpec, Score

__all__ = [
    "GRADER_KINDS",
    "Embedder",
    "GradeContext",
    "GraderError",
    "JudgeCall",
    "answer_text",
    "grade",
    "grade_case",
    "grade_sync",
    "tool_calls_of",
    "validate_spec",
]

SyncGrader = Callable[[Case, dict[str, Any], GraderSpec], Score]

_PARAMS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        **graders_text.PARAMS,
        **graders_json.PARAMS,
        **graders_tool.PARAMS,
        **graders_code.PARAMS,
        **graders_similarity.PARAMS,
        **graders_refusal.PARAMS,
        **graders_judge.PARAMS,
    }
)
_CHECKS: Mapping[str, Callable[[str, dict[str, Any]], None]] = MappingProxyType(
    {
        **dict.fromkeys(graders_text.PARAMS, graders_text.check_params),
        "json_schema": graders_json.check_params,
        "tool_call": graders_tool.check_params,
        "code": graders_code.check_params,
        "similarity": graders_similarity.check_params,
        "refusal": graders_refusal.check_params,
        "judge": graders_judge.check_params,
        "pairwise": graders_judge.check_params,
    }
)
_INLINE: Mapping[str, SyncGrader] = MappingProxyType(
    {
        "exact": graders_text.grade_exact,
        "normalized": graders_text.grade_normalized,
        "contains": graders_text.grade_contains,
        "regex": graders_text.grade_regex,
        "numeric": graders_text.grade_numeric,
        "json_schema": graders_json.grade_json_schema,
        "tool_call": graders_tool.grade_tool_call,
        "refusal": graders_refusal.grade_refusal,
    }
)
GRADER_KINDS: frozenset[str] = frozenset(_PARAMS)


def validate_spec(spec: GraderSpec) -> None:
    """Raise ``GraderError`` when ``spec`` names an unknown kind or has unknown or unusable
    parameters (a regex that does not compile, an invalid JSON Schema, ...)."""
    if spec.kind not in _PARAMS:
        raise GraderError(f"unknown grader kind {spec.kind!r}; known: {', '.join(sorted(GRADER_KINDS))}")
    unknown = set(spec.params) - _PARAMS[spec.kind]
    if unknown:
        allowed = ", ".join(sorted(_PARAMS[spec.kind])) or "none"
        raise GraderError(f"grader {spec.kind!r}: unknown parameter(s) {sorted(unknown)}; allowed: {allowed}")
    if spec.metric is not None and (not isinstance(spec.metric, str) or not spec.metric.strip()):
        raise GraderError(f"grader {spec.kind!r}: 'metric' must be a non-empty string")
    _CHECKS[spec.kind](spec.kind, spec.params)


async def grade(
    case: Case, response: dict[str, Any], spec: GraderSpec, *, ctx: GradeContext | None = None
) -> Score:
    """Score ``response`` to ``case`` with ``spec``. Raises ``GraderError`` when the grader is
    misconfigured or cannot score (no expected value, no judge, no embedding model)."""
    validate_spec(spec)
    inline = _INLINE.get(spec.kind)
    if inline is not None:
        return inline(case, response, spec)
    if spec.kind == "code":
        limits = ctx.sandbox if ctx else None
        return await asyncio.to_thread(graders_code.grade_code, case, response, spec, limits)
    if spec.kind == "similarity":
        embedder = ctx.embedder if ctx else None
        return await asyncio.to_thread(graders_similarity.grade_similarity, case, response, spec, embedder)
    if spec.kind == "judge":
        return await graders_judge.grade_judge(case, response, spec, ctx)
    return await graders_judge.grade_pairwise(case, response, spec, ctx)


async def grade_case(
    case: Case,
    response: dict[str, Any],
    specs: Iterable[GraderSpec],
    *,
    ctx: GradeContext | None = None,
) -> list[Score]:
    """All of ``specs`` (normally ``case.graders or suite.graders``) concurrently, in order."""
    return list(await asyncio.gather(*(grade(case, response, spec, ctx=ctx) for spec in specs)))


def grade_sync(
    case: Case, response: dict[str, Any], spec: GraderSpec, *, ctx: GradeContext | None = None
) -> Score:
    """``grade`` for code without an event loop (scripts, re-grading); not inside a running loop."""
    return asyncio.run(grade(case, response, spec, ctx=ctx))
