"""Run a suite against routes through relaygate's own gateway, in process: the run's scheduling.

Every case goes to every target (a route name) for the ``evals`` tenant; each (case, target) is
sent, graded and saved by the case executor (``evals/executor.py``), so policy, failover and the
usage ledger apply exactly as for client traffic. Per target, ``concurrency`` workers take cases
in order and at most that many requests are in flight, under an adaptive limit that a rate limit
halves and successes raise again (``evals/limiter.py``).

Results are written as they complete (``evals/store.py``); a run started again with the same run
id skips every (case, target) already answered. A multi-turn case (MT-Bench) sends each later turn
with the model's own earlier answers in the history and stores every turn as a result of its own
(``evals/turns.py``); a resumed run takes earlier answers from the stored results. Cancelling a
run lets requests already sent finish and be saved, so a cancelled and resumed run never sends a
case twice (a hard kill can lose only the answers still in flight). A cost ceiling stops sending
new cases once the USD spent reaches it; cases already in flight finish. What was spent counts
every session of the run: answers' costs are in their results, the judge's in the run row.
Pairwise graders run once every answer is in (``evals/scoring.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from relaygate.auth import Principal
from relaygate.config.schema import Config
from relaygate.evals.cache import ResponseCache
from relaygate.evals.calls import EVAL_TENANT, eval_principal
from relaygate.evals.executor import CaseExecutor
from relaygate.evals.limiter import AdaptiveLimiter
from relaygate.evals.model import Case, CaseResult, Suite
from relaygate.evals.scoring import pairwise_pass
from relaygate.evals.store import EvalStore, RunSummary
from relaygate.evals.turns import first_turn, turn_case, turn_count, turn_ids
from relaygate.pipeline import Gateway

__all__ = ["RunSummary", "run_suite"]

log = logging.getLogger("relaygate.evals")

_DRAIN_TIMEOUT_S = 120.0  # on cancel: how long requests already sent may take to finish


async def run_suite(
    suite: Suite,
    targets: list[str],
    *,
    gateway: Gateway,
    store: EvalStore,
    cache: ResponseCache | None = None,
    concurrency: int = 4,
    cost_ceiling_usd: float | None = None,
    run_id: str | None = None,
    judge_route: str | None = None,
    allow_self_judge: bool = False,
    max_retries: int = 2,
    progress: bool = True,
    tenant: str = EVAL_TENANT,
    rng: random.Random | None = None,
) -> RunSummary:
    """Run every case of ``suite`` against every route in ``targets``; see the module docstring.

    ``concurrency``: most requests in flight per target. ``cost_ceiling_usd``: stop sending new
    cases once this much was spent (None: no ceiling). ``run_id``: resume that run (new id when
    None). ``judge_route``: the route LLM-as-judge graders call; it may not be a target unless
    ``allow_self_judge``. ``max_retries``: retries of a transient failure per case.

    Raises ``ValueError`` for no targets, an unknown route, or a judge that is a target;
    ``RunMismatchError`` when ``run_id`` belongs to another suite; ``StorageError``.
    """
    targets = list(dict.fromkeys(targets))
    _check_routes(gateway.config, targets, judge_route, allow_self_judge)
    run_id = run_id or f"run_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"
    record, _resumed = await store.aopen_run(
        run_id, suite, targets, judge=judge_route, cost_ceiling_usd=cost_ceiling_usd
    )
    run = _Run(
        suite,
        RunSummary(
            run_id, suite.name, record.targets, [], judge=judge_route, cost_ceiling_usd=cost_ceiling_usd
        ),
        gateway=gateway,
        store=store,
        cache=cache,
        principal=eval_principal(gateway.config, tenant),
        concurrency=concurrency,
        max_retries=max_retries,
        rng=rng or random.Random(),
    )
    return await run.execute(progress)


def _check_routes(config: Config, targets: list[str], judge: str | None, allow_self_judge: bool) -> None:
    if not targets:
        raise ValueError("give at least one target route")
    unknown = [t for t in [*targets, *([judge] if judge else [])] if t not in config.routes]
    if unknown:
        known = ", ".join(config.routes) or "none"
        raise ValueError(f"unknown route {', '.join(map(repr, unknown))} (known: {known})")
    if judge is not None and judge in targets and not allow_self_judge:
        raise ValueError(
            f"judge route {judge!r} is one of the targets; a model would grade itself "
            "(pass allow_self_judge / --allow-self-judge to accept that)"
        )


class _Run:
    """One session of a run: per-target workers, limiters, and the summary they fill in."""

    def __init__(
        self,
        suite: Suite,
        summary: RunSummary,
        *,
        gateway: Gateway,
        store: EvalStore,
        cache: ResponseCache | None,
        principal: Principal,
        concurrency: int,
        max_retries: int,
        rng: random.Random,
    ) -> None:
        self.suite, self.summary, self.targets, self.store = suite, summary, summary.targets, store
        self.concurrency = max(1, concurrency)
        self.limiters = {t: AdaptiveLimiter(self.concurrency) for t in self.targets}
        self.cases = CaseExecutor(
            suite,
            summary,
            gateway=gateway,
            store=store,
            cache=cache,
            principal=principal,
            limiters=self.limiters,
            max_retries=max_retries,
            rng=rng,
        )
        self.done: dict[tuple[str, str], CaseResult] = {}  # (case id, target) answered earlier
        self.on_done: Callable[[str], None] = lambda _t: None

    async def execute(self, show_progress: bool) -> RunSummary:
        s = self.summary
        previous = await self.store.aload_summary(s.run_id)
        done: dict[tuple[str, str], CaseResult] = {}
        if previous is not None:
            s.meta, s.cached, s.tags = previous.meta, previous.cached, previous.tags
            s.spent_usd = previous.spent_usd
            done = {(r.case_id, r.target): r for r in previous.results if r.error is None}
            s.results, s.resumed = list(done.values()), len(done)
        self.done = done
        s.tags.update({c.id: dict(first_turn(c).tags) for c in self.suite.cases})
        queues = {
            t: [c for c in self.suite.cases if any((i, t) not in done for i in turn_ids(c))]
            for t in self.targets
        }
        totals = {t: len(self.suite.cases) for t in self.targets}
        already = {t: totals[t] - len(queues[t]) for t in self.targets}
        with progress_bar(show_progress, s, totals, already) as advance:
            self.on_done = advance
            workers = [
                asyncio.create_task(self._worker(t, queues[t]))
                for t in self.targets
                for _ in range(self.concurrency)
            ]
            try:
                await asyncio.gather(*workers)
            except asyncio.CancelledError:
                for w in workers:
                    w.cancel()
                if self.cases.inflight:  # requests already sent: let them finish and be saved
                    _done, pending = await asyncio.wait(set(self.cases.inflight), timeout=_DRAIN_TIMEOUT_S)
                    if pending:
                        log.warning("run %s: %d answer(s) still pending are lost", s.run_id, len(pending))
                await self.store.aset_status(s.run_id, "interrupted")
                raise
        await pairwise_pass(self.suite, s, self.store, self.cases.ctx)
        s.status = "cost_ceiling" if s.stopped_by_ceiling else "complete"
        s.concurrency = {t: list(lim.history) for t, lim in self.limiters.items()}
        await self.store.aset_status(s.run_id, s.status)
        return s

    async def _worker(self, target: str, queue: list[Case]) -> None:
        while queue:
            case = queue.pop(0)
            await self._conversation(target, case)
            self.on_done(target)

    async def _conversation(self, target: str, case: Case) -> None:
        """Every turn of ``case`` not answered yet, in order; a turn that gets no answer (error,
        cost ceiling) ends the conversation, as its successors would lack their history."""
        answers: list[str] = []
        for k in range(1, turn_count(case) + 1):
            turn = first_turn(case) if k == 1 else turn_case(case, k, answers)
            self.summary.tags[turn.id] = dict(turn.tags)
            result = self.done.get((turn.id, target)) or await self.cases.run(target, turn)
            if result is None or result.error is not None or result.output is None:
                return
            answers.append(result.output)


@contextlib.contextmanager
def progress_bar(
    enabled: bool, summary: RunSummary, totals: dict[str, int], done: dict[str, int]
) -> Iterator[Callable[[str], None]]:
    """A rich progress bar per target on standard error; yields ``advance(target)``."""
    if not enabled:
        yield lambda _target: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    ids = {t: bar.add_task(t, total=totals[t], completed=done[t], note="") for t in totals}

    def advance(target: str) -> None:
        spent = f"${summary.spent_usd:.4f}"
        note = f"{spent} spent, {summary.cache_hits} cached, {summary.errors} errors"
        if summary.stopped_by_ceiling:
            note += " [yellow]cost ceiling reached[/yellow]"
        bar.update(ids[target], advance=1, note=note)

    with bar:
        yield advance
