"""One eval case against one target, from request to saved result: the per-case half of a run.

The case goes as an OpenAI chat body through ``call_route`` (``evals/calls.py``:
``parse_chat_request`` -> ``Gateway.plan`` -> ``Gateway.complete`` for the ``evals`` tenant), so
policy, failover and the usage ledger apply exactly as for client traffic. It takes a slot of the
target's ``AdaptiveLimiter`` (``evals/limiter.py``); a rate limit pauses the target and the case
waits its turn again, transient failures (5xx, timeouts, all deployments unavailable) are retried
with backoff. Answers are cached by (target, normalised request) (``evals/cache.py``), the
judge's too, so a re-run under a new run id costs nothing. A cost ceiling keeps new requests
back once the USD spent reaches it. Each answer is graded (``evals/scoring.py``) and saved as it
completes (``evals/store.py``); a request once sent is shielded from cancellation, so it is saved
even when the run is cancelled.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any

from relaygate.auth import Principal
from relaygate.errors import GatewayError
from relaygate.evals.cache import CachedResponse, ResponseCache, cache_key
from relaygate.evals.calls import CallOutcome, call_route, is_transient, output_text, rate_limit_wait
from relaygate.evals.limiter import AdaptiveLimiter
from relaygate.evals.model import Case, CaseResult, Suite
from relaygate.evals.scoring import grade_response
from relaygate.evals.store import EvalStore, RunSummary
from relaygate.pipeline import Gateway

__all__ = ["CaseExecutor", "request_body"]

_MAX_RATE_LIMIT_WAITS = 12  # per case; then the case is recorded as rate limited


def request_body(case: Case) -> dict[str, Any]:
    """The OpenAI chat body for ``case``: its messages, tools and extra params (``model`` is set
    per target when sending)."""
    body: dict[str, Any] = {k: v for k, v in case.params.items() if k not in ("model", "stream")}
    body["messages"] = case.messages
    if case.tools:
        body["tools"] = case.tools
    return body


class CaseExecutor:
    """Sends, grades and saves cases for one session of a run, filling in ``summary`` (counters,
    spend, results, grader errors). ``inflight``: requests sent and not yet saved (the runner
    waits for them on cancel); ``ctx``: the ``GradeContext`` whose judge is ``call_judge``."""

    def __init__(
        self,
        suite: Suite,
        summary: RunSummary,
        *,
        gateway: Gateway,
        store: EvalStore,
        cache: ResponseCache | None,
        principal: Principal,
        limiters: Mapping[str, AdaptiveLimiter],
        max_retries: int,
        rng: random.Random,
    ) -> None:
        from relaygate.evals.graders import GradeContext

        self.suite, self.summary = suite, summary
        self.gw, self.store, self.cache, self.principal = gateway, store, cache, principal
        self.limiters, self.max_retries, self.rng = limiters, max_retries, rng
        self.ceiling = summary.cost_ceiling_usd
        self.inflight: set[asyncio.Task[CaseResult]] = set()  # requests sent, not yet saved
        self.ctx = GradeContext(call_judge=self.call_judge)

    async def run(self, target: str, case: Case) -> CaseResult | None:
        """One request (from the cache if there), graded and saved; None when the cost ceiling
        kept it back."""
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
            return await self._finish(target, case, outcome, cached=True)
        failures = waits = 0
        limiter = self.limiters[target]
        while True:
            if self._over_ceiling():
                return None
            await limiter.acquire()
            if self._over_ceiling():  # others spent while this one waited for a slot
                limiter.release()
                return None
            task = asyncio.create_task(self._send(target, case, body, key, limiter))
            self.inflight.add(task)
            task.add_done_callback(self.inflight.discard)
            try:
                return await asyncio.shield(task)
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
                return await self._save(CaseResult(case.id, target, None, error=_error_text(exc)), case)

    def _over_ceiling(self) -> bool:
        s = self.summary
        if self.ceiling is None or s.spent_usd < self.ceiling:
            return False
        s.stopped_by_ceiling = True
        s.not_sent += 1
        return True

    async def _send(
        self, target: str, case: Case, body: dict[str, Any], key: str, limiter: AdaptiveLimiter
    ) -> CaseResult:
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
        return await self._finish(target, case, outcome, cached=False)

    async def _finish(self, target: str, case: Case, outcome: CallOutcome, *, cached: bool) -> CaseResult:
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
        return await self._save(result, case, cached=cached)

    async def _save(self, result: CaseResult, case: Case, *, cached: bool = False) -> CaseResult:
        s = self.summary
        s.results = [r for r in s.results if (r.case_id, r.target) != (result.case_id, result.target)]
        s.results.append(result)
        await self.store.asave_result(s.run_id, result, cached=cached, tags=dict(case.tags))
        return result

    async def call_judge(self, messages: list[dict[str, Any]]) -> str:
        """The judge route's answer text to ``messages`` (at temperature 0, cached like answers);
        its cost counts toward the ceiling and is persisted at once in the run row. Raises
        ``RuntimeError`` when the run has no judge route, ``GatewayError`` when the call fails."""
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
        if outcome.cost_usd:  # persisted at once: a resumed run's ceiling counts it
            await self.store.aadd_judge_spend(self.summary.run_id, outcome.cost_usd)
        if self.cache is not None:
            entry = CachedResponse(outcome.response, outcome.served_by, outcome.latency_ms, outcome.cost_usd)
            await self.cache.aput(key, judge, body, entry)
        return output_text(outcome.response) or ""


def _usage(response: Mapping[str, Any]) -> tuple[int | None, int | None]:
    usage = response.get("usage") if isinstance(response, Mapping) else None
    if not isinstance(usage, dict):
        return None, None
    return usage.get("prompt_tokens"), usage.get("completion_tokens")


def _error_text(exc: GatewayError) -> str:
    return f"{type(exc).__name__}: {exc.message}"[:2000]
