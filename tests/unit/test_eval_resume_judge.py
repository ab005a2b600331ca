"""A killed run's judge spend survives the resume: the cost ceiling of the resumed session counts
what the judge cost before the kill (``eval_runs.judge_spent_usd``), not only the answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from relaygate.config import load_config_text
from relaygate.evals.model import GraderSpec
from relaygate.evals.runner import run_suite
from relaygate.evals.store import EvalStore
from relaygate.ledger.migrate import open_database
from relaygate.pipeline import Gateway
from relaygate.sim import run_sim_in_thread
from tests.unit.test_eval_runner import make_suite, requests_for

USAGE = {"prompt_tokens": 10_000, "completion_tokens": 1}  # 0.01 USD at 1 USD per 1M input tokens
SCENARIO = {
    "default": {"reply": "hello", "usage": USAGE, "latency_ms": 40},
    "models": {"judge-m": {"reply": "Rating: [[8]]", "usage": USAGE}},
}


def config(url: str) -> str:
    price = "{input: 1.0, output: 0.0}"
    return f"""
providers: {{sim: {{protocol: openai, base_url: "{url}"}}}}
routes:
  a: {{deployments: [{{provider: sim, model: model-a, price: {price}}}]}}
  judge: {{deployments: [{{provider: sim, model: judge-m, price: {price}}}]}}
auth: {{mode: open}}
"""


async def test_resumed_ceiling_counts_the_judge_spend_of_the_killed_session(tmp_path: Path) -> None:
    engine = open_database(f"sqlite:///{tmp_path / 'evals.db'}")
    suite = make_suite(10, graders=(GraderSpec("contains"), GraderSpec("judge")))
    try:
        with run_sim_in_thread(SCENARIO) as sim:
            gw = Gateway(load_config_text(config(sim.url)))
            await gw.start()
            store = EvalStore(engine)
            kw = {"gateway": gw, "store": store, "judge_route": "judge", "run_id": "jr", "progress": False}
            try:
                task = asyncio.create_task(run_suite(suite, ["a"], concurrency=1, **kw))  # type: ignore[arg-type]
                while len(store.results("jr")) < 3:  # noqa: ASYNC110  (polling what the run task writes)
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                saved = len(store.results("jr"))
                record = store.get_run("jr")
                assert record is not None and record.status == "interrupted"
                assert record.judge_spent_usd == pytest.approx(0.01 * requests_for(sim, "judge-m"))
                assert requests_for(sim, "judge-m") == saved  # one judge call per saved answer
                answers = sum(s.result.cost_usd or 0.0 for s in store.results("jr"))
                assert answers == pytest.approx(0.01 * saved)
                before = store.load_summary("jr")
                assert before is not None and before.spent_usd == pytest.approx(
                    answers + record.judge_spent_usd
                )

                # Above what the answers cost, below answers + judge: nothing more may be sent.
                sent = sim.stats()["total"]
                ceiling = answers + record.judge_spent_usd / 2
                resumed = await run_suite(suite, ["a"], cost_ceiling_usd=ceiling, **kw)  # type: ignore[arg-type]
                assert sim.stats()["total"] == sent
                assert (resumed.sent, resumed.status, resumed.resumed) == (0, "cost_ceiling", saved)
                assert resumed.not_sent == 10 - saved

                # A higher ceiling lets the run go on, still counting from the earlier spend.
                done = await run_suite(suite, ["a"], cost_ceiling_usd=1.0, **kw)  # type: ignore[arg-type]
                assert done.status == "complete" and done.sent == 10 - saved
                assert done.spent_usd == pytest.approx(0.2)  # ten answers and ten judge calls
                final = store.get_run("jr")
                assert final is not None and final.judge_spent_usd == pytest.approx(0.1)
            finally:
                await gw.close()
    finally:
        engine.dispose()
