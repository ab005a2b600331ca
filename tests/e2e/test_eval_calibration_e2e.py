"""Statistical calibration of the switch verdict, end to end (issue 5, first test bullet).

The real path: the provider simulator plays two deployments, each answering every case of an
exact-match suite correctly or not with a fixed probability (a seeded RNG draws each model's
outcome per case and the simulator replays them as its ``steps``, one reply per request); the
gateway (uvicorn, ``tests/e2e/harness.run_gateway``) serves the routes ``inc`` and ``cand``; the
eval runner (``evals.runner.run_suite``) sends the suite through the gateway's routing and
providers, grades with the ``exact`` grader and stores the results; the verdict is computed from
what the store holds (``report.compute_verdicts``, i.e. ``evals.verdict.verdict``).

Why the Monte-Carlo part does not go through HTTP: 500 full runs of ~120 cases on two targets
(120,000 requests) would take far too long on two cores. The end-to-end runs below show that
the HTTP path delivers exactly the simulator's outcomes (every stored ``exact`` score equals the
planned outcome of that case on that side, every case sent once) and that the verdict of the
stored run equals ``verdict()`` applied to the planned outcome vectors. The verdict therefore
depends on the run only through those vectors, and its calibration is a property of
``verdict()``: re-sampling the outcome vectors with the same seeded generator and error rates
and passing them through the same ``verdict()`` is the same experiment as repeating the whole
run. (``n_boot`` only changes the descriptive per-side intervals: a pass/fail metric is decided
by the paired score test, so the cheaper ``n_boot`` of the simulation decides the same.)

What is asserted (alpha = 0.05, power = 0.8, margin 0.1 on the exact-match pass rate, the
incumbent right 90% of the time, sides independent):

* false PASS: a candidate right 78% of the time (worse by 0.12, more than the margin) PASSes
  in at most ``alpha + 3 sqrt(alpha (1 - alpha) / R)`` of R = 500 runs, at the sample size below;
  so does one worse by exactly the margin (80%), the hardest null;
* power: an equal candidate PASSes at the predicted sample size (``stats.binary_pairs_needed``,
  Nam 1997: 123 pairs) in ``power +- 0.1`` of the runs, and clearly less often at half of it;
* a 10-case suite is INCONCLUSIVE with a finite "n more" > 0, in the end-to-end run and in at
  least 85% of the simulated ones (the rest: the candidate won every discordant pair, a PASS the
  exact test may give), where the median of 10 + n more is within a factor 2 of the predicted
  sample size.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relaygate.evals import stats
from relaygate.evals.model import Case, CaseResult, GraderSpec, Margin, Score, Suite
from relaygate.evals.report import compute_verdicts
from relaygate.evals.runner import run_suite
from relaygate.evals.store import EvalStore
from relaygate.evals.verdict import Verdict, verdict
from relaygate.ledger.migrate import open_database
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

ALPHA, POWER, DELTA = 0.05, 0.8, 0.1
P_INC = 0.9  # the incumbent answers right 90% of the time
P_EQUAL, P_WORSE = 0.9, 0.78  # an equal candidate; one worse by 0.12 > DELTA
RUNS = 500
# Pairs the paired pass/fail test needs for POWER when the sides are truly equal (independent
# sides: P(inc right, cand wrong) = P(inc wrong, cand right) = 0.9 * 0.1).
PREDICTED = math.ceil(
    stats.binary_pairs_needed(
        P_INC * (1 - P_EQUAL), (1 - P_INC) * P_EQUAL, delta=DELTA, alpha=ALPHA, power=POWER
    )
)
TINY = 10

CONFIG = """
providers:
  sim: {{protocol: openai, base_url: "{url}"}}
routes:
  inc: {{deployments: [{{provider: sim, model: inc-model, price: {{input: 0.5, output: 1.5}}}}]}}
  cand: {{deployments: [{{provider: sim, model: cand-model, price: {{input: 0.2, output: 0.6}}}}]}}
retry: {{max_attempts: 2, backoff_base_ms: 10, backoff_max_ms: 50, max_wait_ms: 500}}
auth: {{mode: open}}
"""


def tolerance(runs: int) -> float:
    return ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def outcomes(rng: np.random.Generator, n: int, p_cand: float) -> tuple[np.ndarray, np.ndarray]:
    """Whether each side answers each of ``n`` cases right: independent Bernoulli draws."""
    draws = rng.uniform(size=(2, n))
    return draws[0] < P_INC, draws[1] < p_cand


def make_suite(n: int) -> Suite:
    cases = tuple(
        Case(
            f"c{i:03d}",
            [{"role": "user", "content": f"What is {i} + {i}? Digits only."}],
            expected=str(2 * i),
        )
        for i in range(n)
    )
    return Suite(
        f"calibration-{n}",
        cases,
        graders=(GraderSpec("exact"),),
        margins=(Margin("exact", DELTA),),
        alpha=ALPHA,
        power=POWER,
    )


def steps(suite: Suite, right: np.ndarray) -> list[dict[str, Any]]:
    """One simulator step per case, in case order: the expected answer or a wrong one."""
    return [
        {"reply": str(c.expected) if ok else str(int(c.expected) + 1)}
        for c, ok in zip(suite.cases, right, strict=True)
    ]


def planned(target: str, right: np.ndarray) -> list[CaseResult]:
    """The results the outcome vector stands for, without any HTTP: what ``verdict()`` sees."""
    return [
        CaseResult(f"c{i:03d}", target, "x", scores=[Score("exact", float(ok), bool(ok))])
        for i, ok in enumerate(right)
    ]


def pure_verdict(inc_right: np.ndarray, cand_right: np.ndarray, *, n_boot: int = 2000) -> Verdict:
    margins = [Margin("exact", DELTA)]
    return verdict(
        planned("inc", inc_right),
        planned("cand", cand_right),
        margins,
        alpha=ALPHA,
        power=POWER,
        n_boot=n_boot,
        rng=0,
    )


@dataclass
class Env:
    sim: SimHandle
    gw: RunningGateway
    store: EvalStore


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("calibration")
    engine = open_database(f"sqlite:///{tmp / 'evals.db'}")
    with run_sim_in_thread({}, seed=0) as sim, run_gateway(CONFIG.format(url=sim.url)) as gw:
        yield Env(sim, gw, EvalStore(engine))
    engine.dispose()


def run_end_to_end(env: Env, run_id: str, n: int, seed: int, p_cand: float) -> tuple[Verdict, Verdict]:
    """One real run; returns (verdict of the stored run, verdict of the planned outcomes)."""
    inc_right, cand_right = outcomes(np.random.default_rng(seed), n, p_cand)
    suite = make_suite(n)
    env.sim.set_scenario(
        {
            "models": {
                "inc-model": {"steps": steps(suite, inc_right)},
                "cand-model": {"steps": steps(suite, cand_right)},
            }
        }
    )
    env.sim.reset()
    # concurrency 1: each route sends its cases in suite order, so step i answers case i
    summary = env.gw.call(
        run_suite(
            suite,
            ["inc", "cand"],
            gateway=env.gw.gateway,
            store=env.store,
            cache=None,
            concurrency=1,
            run_id=run_id,
            progress=False,
        ),
        timeout=120,
    )
    assert summary.status == "complete" and summary.errors == 0 and summary.retries == 0
    assert env.sim.stats()["models"] == {"inc-model": {"requests": n}, "cand-model": {"requests": n}}

    stored = env.store.load_summary(run_id)
    assert stored is not None and len(stored.results) == 2 * n
    for target, right in (("inc", inc_right), ("cand", cand_right)):
        got = {r.case_id: r for r in stored.for_target(target)}
        assert sorted(got) == [c.id for c in suite.cases]  # every case once
        for i, ok in enumerate(right):
            r = got[f"c{i:03d}"]
            assert [(s.metric, s.passed) for s in r.scores] == [("exact", bool(ok))], (target, i, r.output)
            assert r.served_by is not None and f"{target}-model" in r.served_by
    real = compute_verdicts(stored, "inc", ["cand"], segments_by=None)["cand"]
    return real, pure_verdict(inc_right, cand_right)


def same_decision(real: Verdict, pure: Verdict) -> None:
    assert real.status == pure.status and real.n_cases == pure.n_cases and real.n_more == pure.n_more
    (a,), (b,) = real.metrics, pure.metrics
    assert (a.status, a.discordant, a.n_pairs, a.n_more) == (b.status, b.discordant, b.n_pairs, b.n_more)
    assert a.p_noninferior_adj == pytest.approx(b.p_noninferior_adj, abs=1e-12)
    assert a.p_inferior_adj == pytest.approx(b.p_inferior_adj, abs=1e-12)
    assert a.diff is not None and b.diff is not None
    assert (a.diff.lo, a.diff.hi) == pytest.approx((b.diff.lo, b.diff.hi), abs=1e-12)


@pytest.mark.parametrize(
    ("run_id", "n", "seed", "p_cand"),
    [
        ("equal-at-predicted-n", PREDICTED, 11, P_EQUAL),
        ("worse-than-margin", PREDICTED, 12, P_WORSE),
        ("worse-than-margin-2", PREDICTED, 13, P_WORSE),
        ("tiny-suite", TINY, 14, P_EQUAL),
    ],
)
def test_end_to_end_run_gives_the_verdict_of_its_outcomes(
    env: Env, run_id: str, n: int, seed: int, p_cand: float
) -> None:
    real, pure = run_end_to_end(env, run_id, n, seed, p_cand)
    same_decision(real, pure)
    if n == TINY:
        assert real.status == "INCONCLUSIVE"
        assert real.n_more is not None and 0 < real.n_more < 20 * PREDICTED, real.n_more


def simulate(n: int, p_cand: float, seed: int, runs: int = RUNS) -> list[Verdict]:
    """``runs`` verdicts on outcome vectors drawn exactly as the end-to-end runs draw them."""
    rng = np.random.default_rng(seed)
    return [pure_verdict(*outcomes(rng, n, p_cand), n_boot=100) for _ in range(runs)]


def share(verdicts: list[Verdict], status: str) -> float:
    return sum(v.status == status for v in verdicts) / len(verdicts)


@pytest.mark.parametrize("p_cand", [P_WORSE, P_INC - DELTA])  # worse than the margin; exactly it
def test_false_pass_rate_at_most_alpha(p_cand: float) -> None:
    rate = share(simulate(PREDICTED, p_cand, seed=1), "PASS")
    print(f"false PASS, candidate worse by {P_INC - p_cand:.2f}, n={PREDICTED}: {rate:.3f}")
    assert rate <= tolerance(RUNS), (rate, tolerance(RUNS))


def test_equal_candidate_passes_at_the_predicted_n() -> None:
    assert 100 <= PREDICTED <= 150  # 123 for these rates
    power = share(simulate(PREDICTED, P_EQUAL, seed=2), "PASS")
    half = share(simulate(PREDICTED // 2, P_EQUAL, seed=3, runs=200), "PASS")
    print(f"PASS share of an equal candidate: n={PREDICTED}: {power:.3f}; n={PREDICTED // 2}: {half:.3f}")
    assert POWER - 0.1 <= power <= POWER + 0.1, (PREDICTED, power)
    assert half < POWER - 0.15, half  # and the sample size matters


def test_tiny_suites_are_inconclusive_with_a_sensible_n_more() -> None:
    verdicts = simulate(TINY, P_EQUAL, seed=4)
    inconclusive = [v for v in verdicts if v.status == "INCONCLUSIVE"]
    print(
        f"tiny suites: PASS {share(verdicts, 'PASS'):.3f}, FAIL {share(verdicts, 'FAIL'):.3f}, "
        f"INCONCLUSIVE {len(inconclusive) / len(verdicts):.3f}"
    )
    assert len(inconclusive) / len(verdicts) >= 0.85
    # The few tiny suites that PASS are those where the candidate won every discordant pair
    # (b = 0 < c): the exact test may decide 10 pairs then, and rightly so for an equal candidate.
    assert all((v.metrics[0].discordant or (1, 0))[0] == 0 for v in verdicts if v.status == "PASS")
    more = [v.n_more for v in inconclusive]
    assert all(k is not None and k > 0 for k in more), more
    median_total = TINY + float(np.median([k for k in more if k is not None]))
    print(f"tiny suites: median 10 + n more = {median_total} (predicted from scratch: {PREDICTED})")
    assert 0.5 * PREDICTED <= median_total <= 2 * PREDICTED, (median_total, PREDICTED)
