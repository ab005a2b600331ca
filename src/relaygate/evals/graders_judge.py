"""LLM-as-judge graders: ``judge`` (a 1-10 rubric score) and ``pairwise`` (A vs B, both orders).

The judge is whatever ``GradeContext.call_judge`` routes to: a route configured separately
from the models under test. Prompts follow MT-Bench's single-answer and pairwise judge prompts
(Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv:2306.05685):
the judge explains briefly, then writes ``[[rating]]`` or ``[[A]]``/``[[B]]``/``[[C]]``.
Pairwise judging is run in both orders (position swapping, same paper, section 3.4): a
preference counts only when both orders agree; otherwise the result is a tie.

Templates are ``str.format`` strings over ``question``, ``answer`` (``answer_a``/``answer_b``),
``reference`` (alias ``ref_answer_1``) and ``rubric``; unknown fields are a load-time error.

Later turns of a multi-turn case (``evals/turns.py``) are judged, as MT-Bench does, on the whole
conversation with the focus on the last answer: ``judge`` then uses ``multi_turn_template`` and
``multi_turn_system`` (the importer fills them from MT-Bench's ``single-v1-multi-turn`` /
``single-math-v1-multi-turn`` prompts; default ``JUDGE_MULTI_TURN_*``), over ``question_1``,
``answer_1`` (the first turn and the model's answer to it), ``question_2``, ``answer_2`` (this turn
and the answer judged) and ``ref_answer_1``/``ref_answer_2`` (the per-turn references).
"""

from __future__ import annotations

import re
import string
from typing import Any

from relaygate.evals.graders_context import (
    GradeContext,
    GraderError,
    JudgeCall,
    answer_text,
    last_user_text,
)
from relaygate.evals.model import Case, GraderSpec, Score

__all__ = [
    "DEFAULT_RUBRIC",
    "JUDGE_MULTI_TURN_SYSTEM",
    "JUDGE_MULTI_TURN_TEMPLATE",
    "JUDGE_SYSTEM",
    "JUDGE_TEMPLATE",
    "PAIRWISE_SYSTEM",
    "PAIRWISE_TEMPLATE",
    "PARAMS",
    "check_params",
    "grade_judge",
    "grade_pairwise",
    "parse_rating",
    "parse_verdict",
]

PARAMS: dict[str, frozenset[str]] = {
    "judge": frozenset(
        {"rubric", "system", "template", "pass_threshold", "retries", "source"}
        | {"multi_turn_system", "multi_turn_template"}
    ),
    "pairwise": frozenset({"rubric", "system", "template", "retries", "source"}),
}
_FIELDS = frozenset(
    {"question", "answer", "answer_a", "answer_b", "reference", "ref_answer_1", "rubric"}
    | {"question_1", "answer_1", "question_2", "answer_2", "ref_answer_2"}
)
DEFAULT_RUBRIC = (
    "Consider the helpfulness, relevance, accuracy, depth, creativity and level of detail of the "
    "response. If a reference answer is given, compare with it and count mistakes against the response."
)
JUDGE_SYSTEM = (
    "You are an impartial judge of an AI assistant's answer. Begin with a short explanation, be "
    "as objective as possible, then rate the answer on a scale of 1 to 10 by strictly following "
    'this format: "[[rating]]", for example: "Rating: [[5]]".'
)
JUDGE_TEMPLATE = (
    "[Rubric]\n{rubric}\n\n[Question]\n{question}\n\n{reference_block}"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
JUDGE_MULTI_TURN_SYSTEM = (
    "You are an impartial judge of an AI assistant's answers in a conversation. Judge the answer "
    "to the second user question. Begin with a short explanation, be as objective as possible, "
    'then rate that answer on a scale of 1 to 10 by strictly following this format: "[[rating]]", '
    'for example: "Rating: [[5]]".'
)
JUDGE_MULTI_TURN_TEMPLATE = (
    "[Rubric]\n{rubric}\n\n{reference_block}"
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n"
    "### Assistant A:\n{answer_1}\n\n### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n"
    "<|The End of Assistant A's Conversation with User|>"
)
PAIRWISE_SYSTEM = (
    "You are an impartial judge comparing two AI assistants' answers to the same question. "
    "Choose the one that follows the user's instructions and answers better. Do not let the order "
    "of the answers, their length or the assistants' names influence you. Explain briefly, then "
    'output your verdict strictly as "[[A]]" if A is better, "[[B]]" if B is better, "[[C]]" for a tie.'
)
PAIRWISE_TEMPLATE = (
    "[Rubric]\n{rubric}\n\n[User Question]\n{question}\n\n{reference_block}"
    "[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]\n\n"
    "[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
_RETRY_NOTE = "Your previous reply had no verdict in the required format. Reply again, ending with it."

_RATING_PATTERNS = [
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*(?:/\s*10\s*)?\]\]"),  # [[7]], [[7.5]], [[7/10]]
    re.compile(
        r"(?:rating|score|评分|得分|puntuación|bewertung)\s*[:\uff1a=]?\s*\**\s*(\d+(?:\.\d+)?)", re.I
    ),
    re.compile(r"\b(\d+(?:\.\d+)?)\s*/\s*10\b"),  # 7/10
    re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]"),  # [7]
    re.compile(r"^\s*(\d+(?:\.\d+)?)\s*\.?\s*$"),  # the whole reply is a number
]
_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def check_params(kind: str, params: dict[str, Any]) -> None:
    for key in ("template", "multi_turn_template"):
        _check_template(kind, key, params.get(key))
    threshold = params.get("pass_threshold")
    if threshold is not None and (not isinstance(threshold, int | float) or not 1 <= threshold <= 10):
        raise GraderError("judge: 'pass_threshold' must be a number from 1 to 10")
    retries = params.get("retries", 1)
    if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 5:
        raise GraderError(f"{kind}: 'retries' must be a whole number from 0 to 5")


def _check_template(kind: str, key: str, template: Any) -> None:
    if template is None:
        return
    if not isinstance(template, str):
        raise GraderError(f"{kind}: '{key}' must be a string")
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise GraderError(f"{kind}: bad template: {exc}") from exc
    unknown = names - _FIELDS - {"reference_block"}
    if unknown:
        raise GraderError(f"{kind}: unknown template field(s) {sorted(unknown)}; allowed: {sorted(_FIELDS)}")


def parse_rating(text: str) -> float | None:
    """The 1-10 rating in a judge's reply: ``[[7]]`` first, then ``[7]``, ``Rating: 7``,
    ``7/10``, or a reply that is only a number; the last such mention wins. None if absent or
    out of range."""
    for pattern in _RATING_PATTERNS:
        found = pattern.findall(text.strip())
        if found:
            value = float(found[-1])
            return value if 1.0 <= value <= 10.0 else None
    return None


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"C"`` (tie) from ``[[A]]`` etc.; the last one wins; None if absent."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def _render(case: Case, spec: GraderSpec, template: str, **answers: str) -> str:
    reference = spec.params.get("expected", case.expected)
    reference_text = "" if reference is None else str(reference)
    block = (
        f"[The Start of Reference Answer]\n{reference_text}\n[The End of Reference Answer]\n\n"
        if reference_text
        else ""
    )
    fields = {
        "question": last_user_text(case),
        "reference": reference_text,
        "ref_answer_1": reference_text,
        "rubric": str(spec.params.get("rubric", DEFAULT_RUBRIC)),
        "reference_block": block,
        **_turn_fields(case),
        **answers,
    }
    return template.format_map(fields)


def _turn_fields(case: Case) -> dict[str, str]:
    """``question_1``/``answer_1`` (the first turn and the model's answer to it), ``question_2``
    (this turn), ``ref_answer_1``/``ref_answer_2`` (per-turn references) of a later turn."""
    meta = case.meta if isinstance(case.meta, dict) else {}
    if not isinstance(meta.get("turn"), int) or meta["turn"] < 2:
        return {"question_1": "", "answer_1": "", "question_2": "", "ref_answer_2": ""}
    turns, answers, refs = meta.get("turns") or [""], meta.get("answers") or [""], meta.get("reference")
    refs = refs if isinstance(refs, list) else []
    return {
        "question_1": str(turns[0]),
        "answer_1": str(answers[0]),
        "question_2": last_user_text(case),
        "ref_answer_1": str(refs[0]) if refs else "",
        "ref_answer_2": str(refs[meta["turn"] - 1]) if len(refs) >= meta["turn"] else "",
    }


def _is_later_turn(case: Case) -> bool:
    turn = case.meta.get("turn") if isinstance(case.meta, dict) else None
    return isinstance(turn, int) and turn >= 2


async def _ask(call: JudgeCall, system: str, prompt: str, retries: int, parse: Any) -> tuple[Any, str]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system},
        {"role": "user", "content": prompt},
    ]
    reply = ""
    for _ in range(retries + 1):
        reply = await call(messages)
        parsed = parse(reply)
        if parsed is not None:
            return parsed, reply
        messages = [
            *messages,
            {"role": "assistant", "content": reply},
            {"role": "user", "content": _RETRY_NOTE},
        ]
    raise GraderError(f"the judge's reply has no verdict in the required format: {reply[-200:]!r}")


def _judge_call(ctx: GradeContext | None, kind: str) -> JudgeCall:
    if ctx is None or ctx.call_judge is None:
        raise GraderError(f"{kind}: no judge configured (GradeContext.call_judge is None)")
    return ctx.call_judge


async def grade_judge(
    case: Case, response: dict[str, Any], spec: GraderSpec, ctx: GradeContext | None
) -> Score:
    """``value``: (rating - 1) / 9, so 1 -> 0.0 and 10 -> 1.0; the raw rating is in the detail.
    With ``pass_threshold`` (1-10), ``passed`` says whether the rating reached it. A later turn of
    a multi-turn case is judged with the two-turn template (module docstring)."""
    call = _judge_call(ctx, "judge")
    answer = answer_text(response)
    if _is_later_turn(case):
        template = str(spec.params.get("multi_turn_template", JUDGE_MULTI_TURN_TEMPLATE))
        system = str(spec.params.get("multi_turn_system", JUDGE_MULTI_TURN_SYSTEM))
    else:
        template = str(spec.params.get("template", JUDGE_TEMPLATE))
        system = str(spec.params.get("system", JUDGE_SYSTEM))
    prompt = _render(case, spec, template, answer=answer, answer_2=answer)
    rating, _ = await _ask(call, system, prompt, int(spec.params.get("retries", 1)), parse_rating)
    threshold = spec.params.get("pass_threshold")
    passed = None if threshold is None else rating >= float(threshold)
    return Score(spec.metric_name, (rating - 1.0) / 9.0, passed=passed, detail=f"rating {rating:g}/10")


async def grade_pairwise(
    case: Case, response: dict[str, Any], spec: GraderSpec, ctx: GradeContext | None
) -> Score:
    """This response against ``ctx.baseline``, judged twice with the positions swapped.
    ``value``: 1.0 win, 0.0 loss, 0.5 tie (including an inconsistent pair); ``passed`` is None."""
    call = _judge_call(ctx, "pairwise")
    if ctx is None or ctx.baseline is None:
        raise GraderError("pairwise: no baseline response to compare with (GradeContext.baseline)")
    mine, theirs = answer_text(response), answer_text(ctx.baseline)
    template = str(spec.params.get("template", PAIRWISE_TEMPLATE))
    system = str(spec.params.get("system", PAIRWISE_SYSTEM))
    retries = int(spec.params.get("retries", 1))
    first, _ = await _ask(
        call, system, _render(case, spec, template, answer_a=mine, answer_b=theirs), retries, parse_verdict
    )
    second, _ = await _ask(
        call, system, _render(case, spec, template, answer_a=theirs, answer_b=mine), retries, parse_verdict
    )
    # Translate both into "this response's" outcome: first order A = mine, second order B = mine.
    outcome_1 = {"A": "win", "B": "loss", "C": "tie"}[first]
    outcome_2 = {"A": "loss", "B": "win", "C": "tie"}[second]
    outcome = outcome_1 if outcome_1 == outcome_2 else "tie"
    value = {"win": 1.0, "loss": 0.0, "tie": 0.5}[outcome]
    consistency = "consistent" if outcome_1 == outcome_2 else "inconsistent, counted as a tie"
    return Score(
        spec.metric_name, value, detail=f"{outcome} (as A: {outcome_1}, as B: {outcome_2}; {consistency})"
    )
