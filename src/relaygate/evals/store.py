"""Eval runs in the ledger database: one ``eval_runs`` row per run id, one ``eval_results`` row
per (run, case, target), written as each result completes so a killed run can resume.

A run row remembers the suite's name, a hash of its cases and graders (a resumed run refuses a
suite that changed), the targets, the judge route, the cost ceiling and the suite's margins, alpha
and power (so ``relaygate eval verdict --run-id`` needs no suite file). Units as in
``evals/model.py``: milliseconds, tokens, USD.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa

from relaygate.evals.model import CaseResult, Margin, Score, Suite
from relaygate.ledger.db import transaction
from relaygate.ledger.schema import eval_results, eval_runs

__all__ = [
    "EvalStore",
    "RunMismatchError",
    "RunRecord",
    "RunSummary",
    "StoredResult",
    "json_safe",
    "margins_from_meta",
    "suite_hash",
    "suite_meta",
]

RUN_STATUSES = ("running", "complete", "cost_ceiling", "interrupted")


class RunMismatchError(ValueError):
    """A run id already exists for another suite (name or content): resuming would mix results."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One ``eval_runs`` row. ``status``: running, complete, cost_ceiling or interrupted.
    ``judge_spent_usd``: what the run's judge calls cost, every session together."""

    run_id: str
    suite: str
    suite_hash: str
    targets: list[str]
    judge: str | None
    status: str
    cost_ceiling_usd: float | None
    meta: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    judge_spent_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A persisted result: the ``CaseResult``, whether it came from the response cache, and the
    case's tags (for per-segment statistics without the suite file)."""

    result: CaseResult
    cached: bool
    tags: dict[str, str]


@dataclass(slots=True)
class RunSummary:
    """What a run produced. ``results``: every (case, target) answered so far, earlier sessions of
    the same run id included; ``cached``: the (case_id, target) pairs served from the response
    cache; ``tags``: each case's tags; ``meta``: the suite's margins, alpha, power and source.
    ``spent_usd``: what the run paid in USD (answers and judge calls; cache hits cost nothing).
    ``not_sent``: cases the cost ceiling kept back. ``status``: complete, cost_ceiling or
    interrupted. ``concurrency``: per target, every concurrency limit taken (adaptive back-off)."""

    run_id: str
    suite: str
    targets: list[str]
    results: list[CaseResult]
    cached: set[tuple[str, str]] = field(default_factory=set)
    tags: dict[str, dict[str, str]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    judge: str | None = None
    status: str = "complete"
    spent_usd: float = 0.0
    cost_ceiling_usd: float | None = None
    stopped_by_ceiling: bool = False
    not_sent: int = 0
    resumed: int = 0
    sent: int = 0
    cache_hits: int = 0
    rate_limited: int = 0
    retries: int = 0
    grader_errors: list[dict[str, str]] = field(default_factory=list)
    concurrency: dict[str, list[int]] = field(default_factory=dict)

    def for_target(self, target: str) -> list[CaseResult]:
        return [r for r in self.results if r.target == target]

    @property
    def margins(self) -> tuple[Margin, ...]:
        return margins_from_meta(self.meta)

    @property
    def errors(self) -> int:
        return sum(r.error is not None for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; each result carries ``cached``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "results"}
        out["cached"] = sorted([c, t] for c, t in self.cached)
        out["errors"] = self.errors
        out["results"] = [
            {**dataclasses.asdict(r), "cached": (r.case_id, r.target) in self.cached} for r in self.results
        ]
        return out


def suite_hash(suite: Suite) -> str:
    """sha256 hex over the suite's cases (id, messages, tools, params, expected, graders) and its
    default graders. Tags, margins and metadata are left out: changing them does not change answers
    or scores."""

    def grader(g: Any) -> list[Any]:
        return [g.kind, g.params, g.metric]

    doc = {
        "graders": [grader(g) for g in suite.graders],
        "cases": [
            [c.id, c.messages, c.tools, c.params, c.expected, [grader(g) for g in c.graders]]
            for c in suite.cases
        ],
    }
    blob = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS, default=repr)
    return hashlib.sha256(blob).hexdigest()


def suite_meta(suite: Suite) -> dict[str, Any]:
    """What the verdict needs later: margins, alpha, power, case count and the suite's source."""
    return {
        "margins": [dataclasses.asdict(m) for m in suite.margins],
        "alpha": suite.alpha,
        "power": suite.power,
        "cases": len(suite.cases),
        "source": dataclasses.asdict(suite.source) if suite.source else None,
    }


def margins_from_meta(meta: dict[str, Any]) -> tuple[Margin, ...]:
    return tuple(Margin(**m) for m in meta.get("margins") or [])


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EvalStore:
    """Runs and results behind ``engine`` (owned by the caller). Methods block; ``a``-prefixed
    wrappers run them in a worker thread. All raise ``StorageError`` when the database fails."""

    def __init__(self, engine: sa.Engine, *, clock: Callable[[], datetime] = _utcnow) -> None:
        self.engine = engine
        self._clock = clock

    def open_run(
        self,
        run_id: str,
        suite: Suite,
        targets: list[str],
        *,
        judge: str | None = None,
        cost_ceiling_usd: float | None = None,
    ) -> tuple[RunRecord, bool]:
        """Create the run, or reopen it: returns ``(record, resumed)``.

        Reopening keeps the stored results; targets not yet in the run are added, and the judge
        and cost ceiling take the new values. Raises ``RunMismatchError`` when ``run_id`` belongs
        to another suite (name or hash) and ``ValueError`` for an empty or over-long run id.
        """
        if not run_id or len(run_id) > 64:
            raise ValueError("run id must be 1-64 characters")
        digest, now = suite_hash(suite), self._clock()
        with transaction(self.engine, write=True) as conn:
            row = conn.execute(sa.select(eval_runs).where(eval_runs.c.run_id == run_id)).mappings().first()
            if row is None:
                values = {
                    "run_id": run_id,
                    "suite": suite.name,
                    "suite_hash": digest,
                    "targets": list(targets),
                    "judge": judge,
                    "status": "running",
                    "cost_ceiling_usd": cost_ceiling_usd,
                    "meta": suite_meta(suite),
                    "created_at": now,
                    "updated_at": now,
                }
                conn.execute(eval_runs.insert(), values)
                return _run(values), False
            if row["suite"] != suite.name or row["suite_hash"] != digest:
                raise RunMismatchError(
                    f"run {run_id!r} belongs to suite {row['suite']!r} with other cases or graders; "
                    "use a new run id"
                )
            merged = list(row["targets"]) + [t for t in targets if t not in row["targets"]]
            update = {
                "targets": merged,
                "judge": judge,
                "status": "running",
                "cost_ceiling_usd": cost_ceiling_usd,
                "meta": suite_meta(suite),
                "updated_at": now,
            }
            conn.execute(sa.update(eval_runs).where(eval_runs.c.run_id == run_id).values(**update))
            return _run({**row, **update}), True

    def get_run(self, run_id: str) -> RunRecord | None:
        with transaction(self.engine) as conn:
            row = conn.execute(sa.select(eval_runs).where(eval_runs.c.run_id == run_id)).mappings().first()
        return _run(dict(row)) if row is not None else None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        """The newest ``limit`` runs, newest first."""
        stmt = sa.select(eval_runs).order_by(eval_runs.c.created_at.desc()).limit(limit)
        with transaction(self.engine) as conn:
            return [_run(dict(r)) for r in conn.execute(stmt).mappings()]

    def load_summary(self, run_id: str) -> RunSummary | None:
        """The stored run as a ``RunSummary`` (None when there is no such run); ``spent_usd``
        sums the stored answers' costs, cache hits excluded, and the judge spend of every session
        (``add_judge_spend``), so a resumed run's cost ceiling counts what was already paid."""
        record = self.get_run(run_id)
        if record is None:
            return None
        stored = self.results(run_id)
        return RunSummary(
            run_id=run_id,
            suite=record.suite,
            targets=list(record.targets),
            results=[s.result for s in stored],
            cached={(s.result.case_id, s.result.target) for s in stored if s.cached},
            tags={s.result.case_id: s.tags for s in stored},
            meta=record.meta,
            judge=record.judge,
            status=record.status,
            spent_usd=sum(s.result.cost_usd or 0.0 for s in stored if not s.cached) + record.judge_spent_usd,
            cost_ceiling_usd=record.cost_ceiling_usd,
            stopped_by_ceiling=record.status == "cost_ceiling",
            resumed=len(stored),
        )

    def set_status(self, run_id: str, status: str) -> None:
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}")
        with transaction(self.engine, write=True) as conn:
            conn.execute(
                sa.update(eval_runs)
                .where(eval_runs.c.run_id == run_id)
                .values(status=status, updated_at=self._clock())
            )

    def add_judge_spend(self, run_id: str, usd: float) -> None:
        """Add ``usd`` (a judge call's cost) to the run's ``judge_spent_usd``; one atomic UPDATE,
        so concurrent judge calls never lose an amount."""
        col = eval_runs.c.judge_spent_usd
        with transaction(self.engine, write=True) as conn:
            conn.execute(sa.update(eval_runs).where(eval_runs.c.run_id == run_id).values({col: col + usd}))

    def save_result(
        self, run_id: str, result: CaseResult, *, cached: bool = False, tags: dict[str, str] | None = None
    ) -> None:
        """Insert the result for (run, case, target), replacing an earlier one (e.g. an error)."""
        values = _result_row(run_id, result, cached, tags or {}, self._clock())
        key = (
            (eval_results.c.run_id == run_id)
            & (eval_results.c.case_id == result.case_id)
            & (eval_results.c.target == result.target)
        )
        with transaction(self.engine, write=True) as conn:
            conn.execute(sa.delete(eval_results).where(key))
            conn.execute(eval_results.insert(), values)

    def results(self, run_id: str, target: str | None = None) -> list[StoredResult]:
        """The run's results in insertion order (one target's when given)."""
        stmt = sa.select(eval_results).where(eval_results.c.run_id == run_id)
        if target is not None:
            stmt = stmt.where(eval_results.c.target == target)
        with transaction(self.engine) as conn:
            rows = conn.execute(stmt.order_by(eval_results.c.id)).mappings().all()
        return [_stored(r) for r in rows]

    async def aopen_run(
        self,
        run_id: str,
        suite: Suite,
        targets: list[str],
        *,
        judge: str | None = None,
        cost_ceiling_usd: float | None = None,
    ) -> tuple[RunRecord, bool]:
        return await asyncio.to_thread(
            lambda: self.open_run(run_id, suite, targets, judge=judge, cost_ceiling_usd=cost_ceiling_usd)
        )

    async def asave_result(
        self, run_id: str, result: CaseResult, *, cached: bool = False, tags: dict[str, str] | None = None
    ) -> None:
        await asyncio.to_thread(lambda: self.save_result(run_id, result, cached=cached, tags=tags))

    async def aadd_judge_spend(self, run_id: str, usd: float) -> None:
        await asyncio.to_thread(self.add_judge_spend, run_id, usd)

    async def aresults(self, run_id: str, target: str | None = None) -> list[StoredResult]:
        return await asyncio.to_thread(self.results, run_id, target)

    async def aload_summary(self, run_id: str) -> RunSummary | None:
        return await asyncio.to_thread(self.load_summary, run_id)

    async def aset_status(self, run_id: str, status: str) -> None:
        await asyncio.to_thread(self.set_status, run_id, status)


def _run(row: dict[str, Any]) -> RunRecord:
    # A run just created has no judge_spent_usd in ``row`` yet: the field's default (0) applies.
    return RunRecord(**{f.name: row[f.name] for f in dataclasses.fields(RunRecord) if f.name in row})


def _result_row(
    run_id: str, r: CaseResult, cached: bool, tags: dict[str, str], now: datetime
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "case_id": r.case_id,
        "target": r.target,
        "output": _clean(r.output),
        "scores": [dataclasses.asdict(s) for s in r.scores],
        "latency_ms": r.latency_ms,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost_usd": r.cost_usd,
        "error": _clean(r.error),
        "refused": r.refused,
        "served_by": r.served_by,
        "response": json_safe(r.response) if r.response is not None else None,
        "cached": cached,
        "tags": dict(tags),
        "created_at": now,
    }


def _clean(text: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL; a model can emit one.
    return text.replace("\x00", "\ufffd") if text is not None else None


def json_safe(obj: Any) -> Any:
    """``obj`` as plain JSON types (through orjson and back) with NUL characters replaced:
    PostgreSQL's text and jsonb refuse ``\u0000``, and a model answer can contain one."""
    return _strip_nul(orjson.loads(orjson.dumps(obj)))


def _strip_nul(obj: Any) -> Any:
    if isinstance(obj, str):
        return _clean(obj)
    if isinstance(obj, list):
        return [_strip_nul(v) for v in obj]
    if isinstance(obj, dict):
        return {_clean(k): _strip_nul(v) for k, v in obj.items()}
    return obj


def _stored(row: Any) -> StoredResult:
    result = CaseResult(
        case_id=row["case_id"],
        target=row["target"],
        output=row["output"],
        scores=[Score(**s) for s in row["scores"] or []],
        latency_ms=row["latency_ms"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=row["cost_usd"],
        error=row["error"],
        refused=row["refused"],
        served_by=row["served_by"],
        response=row["response"],
    )
    return StoredResult(result, bool(row["cached"]), dict(row["tags"] or {}))
