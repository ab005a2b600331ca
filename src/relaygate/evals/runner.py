"""Run a suite against routes through relaygate's own gateway, in process, and persist the results.

Every case goes to every target (a route name) as an OpenAI chat body through
``parse_chat_request`` -> ``Gateway.plan`` -> ``Gateway.complete`` for the ``evals`` tenant, so
policy, failover and the usage ledger apply exactly as for client traffic. Per target, at most
``concurrency`` requests are in flight; a rate limit (429, ``RateLimitError``) halves that
target's limit and pauses it for the Retry-After, and successes raise it again by one per round
(additive increase, multiplicative decrease, as TCP congestion control, RFC 5681). Transient
failures (5xx, timeouts, all deployments unavailable) are retried with backoff.

Results are written as they complete (``evals/store.py``); a run started again with the same run
id skips every (case, target) already answered. Cancelling a run lets requests already sent finish
and be saved, so a cancelled and resumed run never sends a case twice (a hard kill can lose only
the answers still in flight). Answers are also cached by (target, normalised request)
(``evals/cache.py``), so a re-run under a new run id costs nothing. A cost ceiling stops sending
new cases once the USD spent reaches it; cases already in flight finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from relaygate.api.auth import Principal
from relaygate.config.schema import Config
from relaygate.errors import GatewayError
from relaygate.evals.cache import CachedResponse, ResponseCache, cache_key
from relaygate.evals.calls import (
    EVAL_TENANT,
    CallOutcome,
    call_route,
    eval_principal,
    is_transient,
    output_text,
    rate_limit_wait,
)
from relaygate.evals.model import Case, CaseResult, GraderSpec, Score, Suite
from relaygate.evals.store import EvalStore, RunSummary
from relaygate.pipeline import Gateway

__all__ = [
    "AdaptiveLimiter",
    "RunSummary",
    "grade_response",
    "request_body",
    "run_suite",
]

log = logging.getLogger("relaygate.evals")

_MAX_RATE_LIMIT_WAITS = 12  # per case; then the case is recorded as rate limited
_MAX_WAIT_S = 60.0
_DRAIN_TIMEOUT_S = 120.0  # on cancel: how long requests already sent may take to finish


# --- adaptive concurrency --------------------------------------------------------------------


class AdaptiveLimiter:
    """Concurrency limit for one target: halved (at most once per pause) on a rate limit, with a
    pause of the Retry-After; raised by one after ``limit`` successes in a row, up to
    ``max_concurrency``. ``history`` lists every limit taken, starting value first."""

    def __init__(self, max_concurrency: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self.limit = self.max_concurrency
        self.in_flight = 0
        self.paused_until = 0.0
        self.history = [self.limit]
        self._clock = clock
        self._ok = 0
        self._freed = asyncio.Event()

    async def acquire(self) -> None:
        while True:
            wait = self.paused_until - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            if self.in_flight < self.limit:
                self.in_flight += 1
                return
            self._freed.clear()
            await self._freed.wait()

    def release(self) -> None:
        self.in_flight -= 1
        self._freed.set()

    def on_rate_limit(self, retry_after_s: float) -> None:
        now = self._clock()
        if now >= self.paused_until:  # one cut per pause: a burst of 429s is one signal
            self.limit = max(1, self.limit // 2)
            self.history.append(self.limit)
        self.paused_until = max(self.paused_until, now + min(max(retry_after_s, 0.0), _MAX_WAIT_S))
        self._ok = 0

    def on_success(self) -> None:
        self._ok += 1
        if self._ok >= self.limit and self.limit < self.max_concurrency:
            self.limit += 1
            self.history.append(self.limit)
            self._ok = 0
            self._freed.set()


# --- the run ----------------------------------------------------------------------------------


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
        from relaygate.evals.graders import GradeContext

        self.suite, self.summary, self.targets = suite, summary, summary.targets
        self.gw, self.store, self.cache, self.principal = gateway, store, cache, principal
        self.concurrency, self.max_retries, self.rng = max(1, concurrency), max_retries, rng
        self.ceiling = summary.cost_ceiling_usd
        self.limiters = {t: AdaptiveLimiter(self.concurrency) for t in self.targets}
        self.inflight: set[asyncio.Task[None]] = set()  # requests sent, not yet saved
        self.ctx = GradeContext(call_judge=self._call_judge)
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
        s.tags.update({c.id: dict(c.tags) for c in self.suite.cases})
        queues = {t: [c for c in self.suite.cases if (c.id, t) not in done] for t in self.targets}
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
                if self.inflight:  # requests already sent: let them finish and be saved
                    _done, pending = await asyncio.wait(set(self.inflight), timeout=_DRAIN_TIMEOUT_S)
                    if pending:
                        log.warning("run %s: %d answer(s) still pending are lost", s.run_id, len(pending))
                await self.store.aset_status(s.run_id, "interrupted")
                raise
        await self._pairwise()
        s.status = "cost_ceiling" if s.stopped_by_ceiling else "complete"
        s.concurrency = {t: list(lim.history) for t, lim in self.limiters.items()}
        await self.store.aset_status(s.run_id, s.status)
        return s

    async def _worker(self, target: str, queue: list[Case]) -> None:
        while queue:
            case = queue.pop(0)
            await self._case(target, case)
            self.on_done(target)

    async def _case(self, target: str, case: Case) -> None:
        s = self.summary
        body = request_body(case)
        key = cache_key(target, body)
        hit = await self.cache.aget(key) if self.cache is not None else None
        if hit is not None:
            outcome = CallOutcome(
                hit.response,
                hit.served_by,
                hit.latency_ms or 0.0,
                *_usage(hit.response),
                hit.cost_usd,
            )
            s.cache_hits += 1
            await self._finish(target, case, outcome, cached=True)
            return
        failures = waits = 0
        limiter = self.limiters[target]
        while True:
            if self._over_ceiling():
                return
            await limiter.acquire()
            if self._over_ceiling():  # others spent while this one waited for a slot
                limiter.release()
                return
            task = asyncio.create_task(self._send(target, case, body, key, limiter))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
            try:
                await asyncio.shield(task)
                return
            except GatewayError as exc:
                wait = rate_limit_wait(exc)
                if wait is not None and waits < _MAX_RATE_LIMIT_WAITS:
                    waits += 1
                    s.rate_limited += 1
                    limiter.on_rate_limit(wait)
                    continue
                if wait is None and is_transient(exc) and failures < self.max_retries:
                    failures += 1
                    s.retries += 1
                    await asyncio.sleep(self.rng.uniform(0, min(2.0, 0.2 * 2**failures)))
                    continue
                await self._save(CaseResult(case.id, target, None, error=_error_text(exc)), case)
                return

    def _over_ceiling(self) -> bool:
        s = self.summary
        if self.ceiling is None or s.spent_usd < self.ceiling:
            return False
        s.stopped_by_ceiling = True
        s.not_sent += 1
        return True

    async def _send(
        self, target: str, case: Case, body: dict[str, Any], key: str, limiter: AdaptiveLimiter
    ) -> None:
        """One request, then grading and saving; shielded from cancellation once started."""
        try:
            outcome = await call_route(self.gw, self.principal, target, body, endpoint="eval:run")
        finally:
            limiter.release()
        limiter.on_success()
        self.summary.sent += 1
        self.summary.spent_usd += outcome.cost_usd or 0.0
        if self.cache is not None:
            entry = CachedResponse(outcome.response, outcome.served_by, outcome.latency_ms, outcome.cost_usd)
            await self.cache.aput(key, target, body, entry)
        await self._finish(target, case, outcome, cached=False)

    async def _finish(self, target: str, case: Case, outcome: CallOutcome, *, cached: bool) -> None:
        scores, refused, problems = await grade_response(self.suite, case, outcome.response, self.ctx)
        for metric, message in problems:
            self.summary.grader_errors.append(
                {"case_id": case.id, "target": target, "metric": metric, "error": message}
            )
        result = CaseResult(
            case.id,
            target,
            output_text(outcome.response),
            scores=scores,
            latency_ms=outcome.latency_ms,
            prompt_tokens=outcome.prompt_tokens,
            completion_tokens=outcome.completion_tokens,
            cost_usd=outcome.cost_usd,
            refused=refused,
            served_by=outcome.served_by,
            response=outcome.response,
        )
        if cached:
            self.summary.cached.add((case.id, target))
        await self._save(result, case, cached=cached)

    async def _save(self, result: CaseResult, case: Case, *, cached: bool = False) -> None:
        s = self.summary
        s.results = [r for r in s.results if (r.case_id, r.target) != (result.case_id, result.target)]
        s.results.append(result)
        await self.store.asave_result(s.run_id, result, cached=cached, tags=dict(case.tags))

    async def _pairwise(self) -> None:
        """Pairwise graders, once every answer is in: each candidate's answer against the
        incumbent's (the first target) on the same case, judged in both orders. The incumbent
        gets 0.5 (a tie with itself), so the paired difference is the candidate's preference
        over 0.5."""
        from relaygate.evals import graders

        incumbent = self.targets[0]
        by_key = {(r.case_id, r.target): r for r in self.summary.results}
        for case in self.suite.cases:
            specs = [g for g in case.graders or self.suite.graders if g.kind == "pairwise"]
            base = by_key.get((case.id, incumbent))
            if not specs or base is None or base.error is not None:
                continue
            for target in self.targets:
                r = by_key.get((case.id, target))
                if r is None or r.error is not None or r.response is None:
                    continue
                todo = [g for g in specs if all(x.metric != g.metric_name for x in r.scores)]
                for spec in todo:
                    if target == incumbent:
                        r.scores.append(
                            Score(spec.metric_name, 0.5, detail="incumbent: the pairwise baseline")
                        )
                        continue
                    ctx = dataclasses.replace(self.ctx, baseline=base.response)
                    try:
                        r.scores.append(await graders.grade(case, r.response, spec, ctx=ctx))
                    except Exception as exc:  # recorded, as in grade_response
                        self.summary.grader_errors.append(
                            {
                                "case_id": case.id,
                                "target": target,
                                "metric": spec.metric_name,
                                "error": f"{type(exc).__name__}: {exc}"[:500],
                            }
                        )
                if todo:
                    await self.store.asave_result(
                        self.summary.run_id,
                        r,
                        cached=(case.id, target) in self.summary.cached,
                        tags=dict(case.tags),
                    )

    async def _call_judge(self, messages: list[dict[str, Any]]) -> str:
        judge = self.summary.judge
        if judge is None:
            raise RuntimeError("this suite has a judge grader but no judge route was given (--judge)")
        body = {"messages": messages, "temperature": 0}
        key = cache_key(judge, body)  # judge answers are cached too: a re-run costs nothing
        hit = await self.cache.aget(key) if self.cache is not None else None
        if hit is not None:
            return output_text(hit.response) or ""
        outcome = await call_route(self.gw, self.principal, judge, body, endpoint="eval:judge")
        self.summary.spent_usd += outcome.cost_usd or 0.0
        if self.cache is not None:
            entry = CachedResponse(outcome.response, outcome.served_by, outcome.latency_ms, outcome.cost_usd)
            await self.cache.aput(key, judge, body, entry)
        return output_text(outcome.response) or ""


def request_body(case: Case) -> dict[str, Any]:
    """The OpenAI chat body for ``case``: its messages, tools and extra params (``model`` is set
    per target when sending)."""
    body: dict[str, Any] = {k: v for k, v in case.params.items() if k not in ("model", "stream")}
    body["messages"] = case.messages
    if case.tools:
        body["tools"] = case.tools
    return body


def _usage(response: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = response.get("usage") if isinstance(response, Mapping) else None
    if not isinstance(usage, dict):
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def _error_text(exc: GatewayError) -> str:
    return f"{type(exc).__name__}: {exc.message}"[:2000]


# --- grading and progress ---------------------------------------------------------------------

JudgeCall = Callable[[list[dict[str, Any]]], Awaitable[str]]


async def grade_response(
    suite: Suite, case: Case, response: dict[str, Any], ctx: Any
) -> tuple[list[Score], bool | None, list[tuple[str, str]]]:
    """Run the case's graders (else the suite's), except ``pairwise`` (it needs the incumbent's
    answer; see ``_Run._pairwise``), on ``response``: ``(scores, refused, problems)``.

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
