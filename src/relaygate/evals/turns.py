"""Multi-turn cases (MT-Bench): each later user turn is sent with the model's own earlier answers in
the history, and graded as a case of its own (pure).

A case is multi-turn when ``meta["turns"]`` holds two or more user messages; its ``messages`` are
the first turn. As FastChat's ``gen_model_answer`` (llm_judge, Zheng et al. 2023, arXiv:2306.05685)
does, turn ``k`` is the conversation so far, the model's answer to each earlier turn appended as an
``assistant`` message, then the next user turn. Turn ``k >= 2`` is stored and graded as case
``"<id>#turn<k>"`` (tag ``turn: "<k>"``; the first turn keeps the case's own id and gets ``turn:
"1"``), so resuming skips each stored turn, and a later turn is sent only after the earlier
one's answer exists. Its ``expected`` is ``meta["reference"][k - 1]`` when the case has per-turn
references (MT-Bench), else None; its ``meta`` adds ``turn`` and ``answers`` (the earlier
answers), which the ``judge`` grader's two-turn template reads (``graders_judge``).

Statistics treat every turn as one paired case, so the mean over a target's rows is MT-Bench's
average over both turns; turns of one question are not independent, so intervals are somewhat
narrower than a per-question analysis would give.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from relaygate.evals.model import Case

__all__ = ["TURN_TAG", "first_turn", "turn_case", "turn_count", "turn_id", "turn_ids"]

TURN_TAG = "turn"


def turn_count(case: Case) -> int:
    """How many user turns ``case`` has (1 for an ordinary case)."""
    turns = case.meta.get("turns") if isinstance(case.meta, dict) else None
    return len(turns) if isinstance(turns, list) and len(turns) >= 2 else 1


def turn_id(case_id: str, k: int) -> str:
    """The stored case id of turn ``k`` (1-based); turn 1 keeps ``case_id``."""
    return case_id if k == 1 else f"{case_id}#turn{k}"


def turn_ids(case: Case) -> list[str]:
    return [turn_id(case.id, k) for k in range(1, turn_count(case) + 1)]


def first_turn(case: Case) -> Case:
    """``case`` tagged as turn 1 when it is multi-turn, else unchanged."""
    if turn_count(case) == 1:
        return case
    return replace(case, tags={**case.tags, TURN_TAG: "1"})


def turn_case(case: Case, k: int, answers: list[str]) -> Case:
    """Turn ``k`` (2 .. ``turn_count``) of ``case`` after ``answers`` (the model's answers to turns
    1 .. k-1, in order). Raises ``ValueError`` for a turn the case does not have or missing answers."""
    turns: list[Any] = case.meta["turns"] if turn_count(case) > 1 else []
    if not 2 <= k <= len(turns) or len(answers) < k - 1:
        raise ValueError(f"case {case.id!r}: no turn {k} with {len(answers)} earlier answer(s)")
    messages = list(case.messages)
    for i in range(1, k):
        messages += [
            {"role": "assistant", "content": answers[i - 1]},
            {"role": "user", "content": str(turns[i])},
        ]
    reference = case.meta.get("reference")
    expected = reference[k - 1] if isinstance(reference, list) and len(reference) >= k else None
    return replace(
        case,
        id=turn_id(case.id, k),
        messages=messages,
        expected=expected,
        tags={**case.tags, TURN_TAG: str(k)},
        meta={**case.meta, "turn": k, "answers": list(answers[: k - 1])},
    )
