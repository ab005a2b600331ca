"""Scoring a run's answers: a case's graders on one response as it arrives (with the refusal
flag), and the pairwise pass once every answer is in.

A grader that raises is recorded as a problem against (case, metric), never as a wrong answer.
Grader kinds themselves are in ``evals/graders.py``; the runner (``evals/runner.py``) and the
case executor (``evals/executor.py``) call in here.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from relaygate.evals.calls import output_text
from relaygate.evals.model import Case, GraderSpec, Score, Suite
from relaygate.evals.store import EvalStore, RunSummary

__all__ = ["grade_response", "pairwise_pass"]


async def grade_response(
    suite: Suite, case: Case, response: dict[str, Any], ctx: Any
) -> tuple[list[Score], bool | None, list[tuple[str, str]]]:
    """Run the case's graders (else the suite's), except ``pairwise`` (it needs the incumbent's
    answer; see ``pairwise_pass``), on ``response``: ``(scores, refused, problems)``.

    ``refused`` comes from a ``refusal`` grader when the suite has one (value 1.0 = refused),
    else from the refusal detector run on the side (its score is not kept), and is True when the
    finish reason is ``content_filter``. A grader that raises (``GraderError``: misconfigured, no
    judge, no embedding model; or the judge route failing) is left out of ``scores`` and listed in
    ``problems`` as ``(metric, message)``: a broken grader is never a wrong answer.
    """
    from relaygate.evals import graders

    scores: list[Score] = []
    problems: list[tuple[str, str]] = []
    refusal: Score | None = None
    for spec in case.graders or suite.graders:
        if spec.kind == "pairwise":
            continue
        try:
            score = await graders.grade(case, response, spec, ctx=ctx)
        except Exception as exc:  # recorded against (case, grader); the run goes on
            problems.append((spec.metric_name, f"{type(exc).__name__}: {exc}"[:500]))
            continue
        scores.append(score)
        if spec.kind == "refusal":
            refusal = score
    if refusal is None and output_text(response) is not None:
        with contextlib.suppress(Exception):
            refusal = await graders.grade(case, response, GraderSpec("refusal"), ctx=ctx)
    refused = None if refusal is None else refusal.value >= 0.5
    choices = response.get("choices") or [{}]
    if isinstance(choices[0], dict) and choices[0].get("finish_reason") == "content_filter":
        refused = True
    return scores, refused, problems


async def pairwise_pass(suite: Suite, summary: RunSummary, store: EvalStore, ctx: Any) -> None:
    """Pairwise graders, once every answer is in: each candidate's answer against the
    incumbent's (the first target) on the same case, judged in both orders. The incumbent
    gets 0.5 (a tie with itself), so the paired difference is the candidate's preference
    over 0.5. Scores are added to ``summary.results`` and saved; a grader that raises is listed
    in ``summary.grader_errors``. ``ctx``: the run's ``GradeContext``."""
    from relaygate.evals import graders

    incumbent = summary.targets[0]
    by_key = {(r.case_id, r.target): r for r in summary.results}
    for case in suite.cases:
        specs = [g for g in case.graders or suite.graders if g.kind == "pairwise"]
        base = by_key.get((case.id, incumbent))
        if not specs or base is None or base.error is not None:
            continue
        for target in summary.targets:
            r = by_key.get((case.id, target))
            if r is None or r.error is not None or r.response is None:
                continue
            todo = [g for g in specs if all(x.metric != g.metric_name for x in r.scores)]
            for spec in todo:
                if target == incumbent:
                    r.scores.append(Score(spec.metric_name, 0.5, detail="incumbent: the pairwise baseline"))
                    continue
                pair_ctx = dataclasses.replace(ctx, baseline=base.response)
                try:
                    r.scores.append(await graders.grade(case, r.response, spec, ctx=pair_ctx))
                except Exception as exc:  # recorded, as in grade_response
                    summary.grader_errors.append(
                        {
                            "case_id": case.id,
                            "target": target,
                            "metric": spec.metric_name,
                            "error": f"{type(exc).__name__}: {exc}"[:500],
                        }
                    )
            if todo:
                await store.asave_result(
                    summary.run_id, r, cached=(case.id, target) in summary.cached, tags=dict(case.tags)
                )
