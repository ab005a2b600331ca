"""Replay captured traffic against a candidate route and compare it with the incumbent's answers,
without labels: agreement (embedding similarity, else normalised match), pairwise judge
preference (when a judge route is given), JSON and tool-call validity, refusals, latency, cost.

Input: the payloads the ledger captured (``captures_from_payloads``; capture is opt-in per route
or tenant, see ``relaygate.ledger.payload_store``), or a JSONL capture, one request per line::

    {"request": {"model": "gpt-4o", "messages": [...], ...},   # an OpenAI chat body
     "tenant": "acme", "region": "EU", "data_class": "personal",
     "response": {...chat.completion...},   # or "output": "the incumbent's answer text"
     "latency_ms": 812.0, "cost_usd": 0.0012, "request_id": "req_..."}

A line without ``request`` is itself the chat body (the other keys above are taken out of it).
Each request is planned for the candidate as its own tenant, region and data class would be
(``Gateway.plan``); one the policy forbids there (or the tenant may not use the route, or every
allowed deployment is cut off) is skipped and counted by reason, never sent. Re-sends go through
the gateway like client traffic; their ledger rows are billed to the ``evals`` tenant.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from relaygate.errors import GatewayError, InvalidRequestError, NotFoundError, PermissionDeniedError
from relaygate.evals.calls import EVAL_TENANT, call_route, eval_principal, output_text
from relaygate.evals.model import Case, GraderSpec
from relaygate.pipeline import Gateway, PolicyDeniedError
from relaygate.policy import DATA_CLASS_HEADER
from relaygate.protocols.openai import parse_chat_request

__all__ = [
    "CapturedRequest",
    "ReplayItem",
    "ReplayReport",
    "captures_from_payloads",
    "load_capture",
    "replay",
]

_META = ("tenant", "region", "data_class", "response", "output", "latency_ms", "cost_usd", "request_id")


@dataclass(frozen=True, slots=True)
class CapturedRequest:
    """One captured request: the chat body, who sent it (tenant, region, data class) and what the
    incumbent answered (``response``, a ``chat.completion``; None when only unknown), took (ms)
    and cost (USD)."""

    line: int
    body: dict[str, Any]
    tenant: str = EVAL_TENANT
    region: str | None = None
    data_class: str | None = None
    response: dict[str, Any] | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    request_id: str | None = None


def _completion(text: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
    }


def load_capture(path: str | Path) -> list[CapturedRequest]:
    """Read a JSONL capture (format in the module docstring); blank lines are skipped.
    Raises ``ValueError`` naming the line of a bad record, ``OSError`` if unreadable."""
    out: list[CapturedRequest] = []
    for n, raw in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError(f"{path}:{n}: expected a JSON object")
        body = doc.get("request") if "request" in doc else {k: v for k, v in doc.items() if k not in _META}
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            raise ValueError(f"{path}:{n}: the request needs a non-empty 'messages' list")
        response = doc.get("response")
        if response is None and isinstance(doc.get("output"), str):
            response = _completion(doc["output"])
        if response is not None and not isinstance(response, dict):
            raise ValueError(f"{path}:{n}: 'response' must be a chat.completion object")
        out.append(
            CapturedRequest(
                n,
                body,
                str(doc.get("tenant") or EVAL_TENANT),
                doc.get("region"),
                doc.get("data_class"),
                response,
                _float(doc.get("latency_ms")),
                _float(doc.get("cost_usd")),
                doc.get("request_id"),
            )
        )
    return out


def captures_from_payloads(rows: Iterable[Any]) -> list[CapturedRequest]:
    """Captured requests from ledger payloads (``PayloadRecord``s, oldest first): numbered from 1
    in ``line``; a row without a non-empty ``messages`` list is left out. A captured stream is
    replayed as a plain request (its ``stream_options`` dropped; it has no stored answer)."""
    out: list[CapturedRequest] = []
    for row in rows:
        body = row.request
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            continue
        body = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        out.append(
            CapturedRequest(
                len(out) + 1,
                body,
                row.tenant or EVAL_TENANT,
                row.tenant_region,
                row.data_class,
                _completion(row.output) if row.output is not None else None,
                _float(row.latency_ms),
                _float(row.cost_usd),
                row.request_id,
            )
        )
    return out


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(slots=True)
class ReplayItem:
    """One captured request's outcome: ``status`` compared, skipped (``reason``: policy_denied,
    route_not_allowed, cutoff) or error (``reason``: the error). ``checks``: metric -> value for
    each comparison that applied (agreement, pairwise, json_valid, tool_call_valid, refused),
    with the incumbent's own value under ``incumbent_<metric>`` where it has one."""

    line: int
    request_id: str | None
    status: str
    reason: str = ""
    output: str | None = None
    served_by: str | None = None
    latency_ms: float | None = None
    cost_usd: float | None = None
    incumbent_latency_ms: float | None = None
    incumbent_cost_usd: float | None = None
    checks: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class ReplayReport:
    """The label-free comparison. Rates are fractions of the compared requests that had the
    check; latency in ms, cost in USD; deltas are candidate minus incumbent on the requests where
    both are known. ``agreement_metric``: the grader used (similarity, or normalized when the
    embedding model is not installed)."""

    candidate: str
    total: int
    compared: int
    skipped: dict[str, int]
    errors: int
    agreement_metric: str
    agreement_threshold: float
    rates: dict[str, float | None]
    latency_ms: dict[str, float | None]
    cost_usd: dict[str, float | None]
    notes: list[str]
    items: list[ReplayItem]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["skipped_total"] = self.skipped_total
        return out


async def replay(
    captures: Iterable[CapturedRequest],
    candidate: str,
    *,
    gateway: Gateway,
    concurrency: int = 4,
    agreement: str = "similarity",
    threshold: float = 0.8,
    judge_route: str | None = None,
    embedder: Any = None,
) -> ReplayReport:
    """Re-send every capture to route ``candidate`` (at most ``concurrency`` at a time) and
    compare with the incumbent's stored answers. ``agreement``: ``similarity`` (cosine of local
    embeddings; agreement = cosine >= ``threshold``) or ``normalized`` (normalised exact match).
    ``judge_route``: adds a pairwise preference (1 candidate better, 0.5 tie, 0 worse), judged in
    both orders. Raises ``ValueError`` for an unknown route."""
    for route in (candidate, judge_route):
        if route is not None and route not in gateway.config.routes:
            raise ValueError(f"unknown route {route!r} (known: {', '.join(gateway.config.routes) or 'none'})")
    from relaygate.evals.graders import GradeContext

    judge = None
    if judge_route is not None:
        principal = eval_principal(gateway.config)

        async def judge(messages: list[dict[str, Any]]) -> str:
            out = await call_route(gateway, principal, judge_route, {"messages": messages, "temperature": 0})
            return output_text(out.response) or ""

    state = _Compare(
        gateway, candidate, agreement, threshold, GradeContext(call_judge=judge, embedder=embedder)
    )
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(c: CapturedRequest) -> ReplayItem:
        async with gate:
            return await state.item(c)

    items = list(await asyncio.gather(*(one(c) for c in captures)))
    return _report(candidate, items, state)


class _Compare:
    def __init__(self, gw: Gateway, candidate: str, agreement: str, threshold: float, ctx: Any) -> None:
        self.gw, self.candidate, self.ctx = gw, candidate, ctx
        self.agreement, self.threshold = agreement, threshold
        self.notes: list[str] = []

    def skip_reason(self, c: CapturedRequest, headers: Mapping[str, str]) -> str | None:
        """Why policy keeps this request from the candidate (None: it may be sent)."""
        rt, principal = self.gw.runtime, eval_principal(self.gw.config, c.tenant, c.region)
        try:
            rt.resolve_route(principal, self.candidate)
        except (PermissionDeniedError, NotFoundError):
            return "route_not_allowed"
        body = orjson.dumps({**c.body, "model": self.candidate, "stream": False})
        try:
            plan = self.gw.plan(rt, principal, parse_chat_request(body), headers)
        except PolicyDeniedError:
            return "policy_denied"
        return None if plan.candidates else "cutoff"

    async def item(self, c: CapturedRequest) -> ReplayItem:
        item = ReplayItem(c.line, c.request_id, "compared")
        item.incumbent_latency_ms, item.incumbent_cost_usd = c.latency_ms, c.cost_usd
        headers = {DATA_CLASS_HEADER: c.data_class} if c.data_class else {}
        principal = eval_principal(self.gw.config, c.tenant, c.region)
        try:
            reason = self.skip_reason(c, headers)
            if reason is not None:
                item.status, item.reason = "skipped", reason
                return item
            out = await call_route(
                self.gw,
                principal,
                self.candidate,
                c.body,
                headers=headers,
                endpoint="eval:replay",
                bill_to=EVAL_TENANT,
            )
        except PolicyDeniedError:
            item.status, item.reason = "skipped", "policy_denied"
            return item
        except (GatewayError, InvalidRequestError) as exc:
            item.status, item.reason = "error", f"{type(exc).__name__}: {exc.message}"[:500]
            return item
        item.output, item.served_by = output_text(out.response), out.served_by
        item.latency_ms, item.cost_usd = out.latency_ms, out.cost_usd
        item.checks = await self.checks(c, out.response)
        return item

    async def checks(self, c: CapturedRequest, response: dict[str, Any]) -> dict[str, float]:
        from relaygate.evals import graders

        params = {k: v for k, v in c.body.items() if k == "response_format"}
        incumbent_text = output_text(c.response) if c.response is not None else None
        case = Case(f"line-{c.line}", c.body["messages"], incumbent_text, c.body.get("tools"), params)
        specs: list[tuple[str, GraderSpec, bool]] = [("refused", GraderSpec("refusal"), True)]
        if incumbent_text is not None:
            spec = GraderSpec(
                self.agreement, {"threshold": self.threshold} if self.agreement == "similarity" else {}
            )
            specs.append(("agreement", spec, False))
            if self.ctx.call_judge is not None:
                specs.append(("pairwise", GraderSpec("pairwise"), False))
        if (
            isinstance(params.get("response_format"), dict)
            and params["response_format"].get("type") != "text"
        ):
            specs.append(("json_valid", GraderSpec("json_schema"), True))
        if c.body.get("tools"):
            specs.append(("tool_call_valid", GraderSpec("tool_call"), True))
        out: dict[str, float] = {}
        ctx = dataclasses.replace(self.ctx, baseline=c.response)
        for name, spec, both in specs:
            sides = [("", response), *([("incumbent_", c.response)] if both and c.response else [])]
            for prefix, resp in sides:
                score = await self._grade(graders, case, resp, spec, ctx)
                if score is None:
                    continue
                if name in ("refused", "pairwise"):
                    out[prefix + name] = score.value
                elif name == "agreement" and score.passed is None:
                    out[prefix + name] = score.value
                else:
                    out[prefix + name] = float(bool(score.passed))
                if name == "agreement" and score.metric == "similarity":
                    out["similarity"] = score.value
        return out

    async def _grade(
        self, graders: Any, case: Case, response: dict[str, Any], spec: GraderSpec, ctx: Any
    ) -> Any:
        try:
            return await graders.grade(case, response, spec, ctx=ctx)
        except graders.GraderError as exc:
            if spec.kind == "similarity":  # no embedding model here: fall back, say so once
                if self.agreement == "similarity":
                    self.notes.append(f"similarity unavailable ({exc}); agreement uses normalized match")
                self.agreement = "normalized"
                return await self._grade(graders, case, response, GraderSpec("normalized"), ctx)
            self.notes.append(f"{spec.kind}: {exc}"[:300])
            return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * 0.95
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _report(candidate: str, items: list[ReplayItem], state: _Compare) -> ReplayReport:
    done = [i for i in items if i.status == "compared"]
    names = sorted({k for i in done for k in i.checks})
    rates = {k: _mean([i.checks[k] for i in done if k in i.checks]) for k in names}
    both_lat = [i for i in done if i.latency_ms is not None and i.incumbent_latency_ms is not None]
    both_cost = [i for i in done if i.cost_usd is not None and i.incumbent_cost_usd is not None]
    cand_lat = [i.latency_ms for i in done if i.latency_ms is not None]
    inc_lat = [i.incumbent_latency_ms for i in done if i.incumbent_latency_ms is not None]
    latency = {
        "candidate_mean": _mean(cand_lat),
        "candidate_p95": _p95(cand_lat),
        "incumbent_mean": _mean(inc_lat),
        "incumbent_p95": _p95(inc_lat),
        "mean_delta": _mean([i.latency_ms - i.incumbent_latency_ms for i in both_lat]),  # type: ignore[operator]
    }
    cost = {
        "candidate_total": sum(i.cost_usd or 0.0 for i in done),
        "candidate_mean": _mean([i.cost_usd for i in done if i.cost_usd is not None]),
        "incumbent_mean": _mean([i.incumbent_cost_usd for i in done if i.incumbent_cost_usd is not None]),
        "mean_delta": _mean([i.cost_usd - i.incumbent_cost_usd for i in both_cost]),  # type: ignore[operator]
    }
    skipped = Counter(i.reason for i in items if i.status == "skipped")
    return ReplayReport(
        candidate=candidate,
        total=len(items),
        compared=len(done),
        skipped=dict(sorted(skipped.items())),
        errors=sum(i.status == "error" for i in items),
        agreement_metric=state.agreement,
        agreement_threshold=state.threshold,
        rates=rates,
        latency_ms=latency,
        cost_usd=cost,
        notes=list(dict.fromkeys(state.notes)),
        items=sorted(items, key=lambda i: i.line),
    )
