"""The simulator speaking the Google Gemini API: ``POST /v1beta/models/{model}:generateContent``
and ``:streamGenerateContent`` (``?alt=sse``: SSE events ``data: {...}\\r\\n\\r\\n``; otherwise
one JSON array), scripted by the same ``Scenario`` as the OpenAI routes.

Shapes follow https://ai.google.dev/api/generate-content (``GenerateContentResponse``, one per
stream event, the last carrying ``finishReason`` and the full ``usageMetadata``) and errors
https://ai.google.dev/gemini-api/docs/troubleshooting (``{"error": {"code", "message",
"status"}}``). Scenario errors are re-shaped the way Gemini reports the same condition: a region
preset answers 400 FAILED_PRECONDITION "User location is not supported for the API use.", the
content_policy preset answers 200 with ``promptFeedback.blockReason: SAFETY`` and no
candidates, rate_limit 429 RESOURCE_EXHAUSTED with RetryInfo/QuotaFailure details, auth 400
"API key not valid", overloaded 503 UNAVAILABLE, server_error 500 INTERNAL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from relaygate.protocols.gemini import error_body
from relaygate.sim.answer import build_answer
from relaygate.sim.scenario import Plan
from relaygate.sim.wire import Answer

if TYPE_CHECKING:
    from relaygate.sim.server import SimServer

__all__ = ["gemini_error", "gemini_request_as_openai", "register_gemini_routes"]

_LOCATION = "User location is not supported for the API use."
_RATE_DETAILS = [
    {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
            {
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
            }
        ],
    },
    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1s"},
]
# OpenAI preset code -> (status, message, google status, details) in Gemini's words.
_BY_CODE: dict[str, tuple[int, str, str, list[Any] | None]] = {
    "unsupported_country_region_territory": (400, _LOCATION, "FAILED_PRECONDITION", None),
    "unavailable_for_legal_reasons": (400, _LOCATION, "FAILED_PRECONDITION", None),
    "rate_limit_exceeded": (
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "RESOURCE_EXHAUSTED",
        _RATE_DETAILS,
    ),
    "insufficient_quota": (
        429,
        "Your prepayment credits are depleted. Please go to AI Studio to manage your billing.",
        "RESOURCE_EXHAUSTED",
        None,
    ),
    "server_is_overloaded": (503, "The model is overloaded. Please try again later.", "UNAVAILABLE", None),
    "context_length_exceeded": (
        400,
        "The input token count (9000) exceeds the maximum number of tokens allowed (8192).",
        "INVALID_ARGUMENT",
        None,
    ),
    "invalid_api_key": (400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", None),
}


def gemini_error(status: int, body: object) -> tuple[int, object]:
    """(status, body) of a scenario error in Gemini's shape; Google-shaped or non-dict bodies and
    a content_policy error (``(200, blocked response)``) are special-cased."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return status, body
    err = body["error"]
    if isinstance(err.get("status"), str):
        return status, body  # already Google-shaped: the scenario wrote it verbatim
    code = err.get("code")
    if code == "content_policy_violation":
        return 200, {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
    if isinstance(code, str) and code in _BY_CODE:
        st, message, gstatus, details = _BY_CODE[code]
        return st, error_body(st, message, gstatus, details)
    if status == 500:
        return status, error_body(500, "An internal error has occurred. Please retry.", "INTERNAL")
    return status, error_body(status, str(err.get("message", "")))


def gemini_request_as_openai(body: dict[str, Any]) -> dict[str, Any]:
    """The few OpenAI fields ``build_answer`` reads (messages, max_tokens, tools, tool_choice),
    from a Gemini request body."""
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict):
        messages.append({"role": "system", "content": _text(system.get("parts"))})
    for content in body.get("contents") or []:
        if isinstance(content, dict):
            role = "assistant" if content.get("role") == "model" else "user"
            messages.append({"role": role, "content": _text(content.get("parts"))})
    out: dict[str, Any] = {"messages": messages}
    cfg = body.get("generationConfig")
    if isinstance(cfg, dict) and isinstance(cfg.get("maxOutputTokens"), int):
        out["max_tokens"] = cfg["maxOutputTokens"]
    decls = [
        d for t in body.get("tools") or [] if isinstance(t, dict) for d in t.get("functionDeclarations") or []
    ]
    if decls:
        out["tools"] = [{"type": "function", "function": d} for d in decls if isinstance(d, dict)]
    mode = (body.get("toolConfig") or {}).get("functionCallingConfig", {}).get("mode")
    if mode == "NONE":
        out["tool_choice"] = "none"
    return out


def _text(parts: object) -> str:
    items = parts if isinstance(parts, list) else []
    return " ".join(p["text"] for p in items if isinstance(p, dict) and isinstance(p.get("text"), str))


def _usage(answer: Answer, final: bool) -> dict[str, int]:
    prompt = answer.usage["prompt_tokens"]
    done = answer.usage["completion_tokens"] if final else 0
    return {"promptTokenCount": prompt, "candidatesTokenCount": done, "totalTokenCount": prompt + done}


def _response(answer: Answer, parts: list[dict[str, Any]], *, final: bool) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if final:
        cand["finishReason"] = "MAX_TOKENS" if answer.finish_reason == "length" else "STOP"
    return {
        "candidates": [cand],
        "usageMetadata": _usage(answer, final),
        "modelVersion": answer.model,
        "responseId": answer.id.removeprefix("chatcmpl-"),
    }


def _parts(answer: Answer) -> list[list[dict[str, Any]]]:
    """Parts per stream event (one event for a function call, one per word otherwise)."""
    if answer.tool_calls:  # parallel calls: several functionCall parts in one event
        return [[{"functionCall": {"name": n, "args": orjson.loads(a)}} for _, n, a in answer.tool_calls]]
    return [[{"text": w}] for w in answer.chunks] or [[{"text": ""}]]


class _GeminiRoutes:
    def __init__(self, sim: SimServer) -> None:
        self.sim = sim

    async def handle(self, request: web.Request) -> web.StreamResponse:
        from relaygate.sim.server import _Closing, _drop, _json

        model, _, method = request.match_info["target"].partition(":")
        if method not in ("generateContent", "streamGenerateContent"):
            return _json(error_body(404, f"Method {method!r} not found for model {model}."), 404)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _json(error_body(400, "Invalid JSON payload received."), 400)
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
            return _json(error_body(400, "* GenerateContentRequest.contents: contents is not specified"), 400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        plan = self.sim._state.take(model, body, request.path, headers)
        try:
            return await self._answer(request, body, model, plan, stream=method == "streamGenerateContent")
        except _Closing:
            _drop(request, rst=False)
            return web.Response()

    async def _answer(
        self, request: web.Request, body: dict[str, Any], model: str, plan: Plan, *, stream: bool
    ) -> web.StreamResponse:
        from relaygate.sim.server import _MALFORMED_JSON, _Closing, _drop, _json, _respond

        if plan.reset:
            _drop(request, rst=True)
            return web.Response()
        if plan.hang:
            await self.sim._closing.wait()
            raise _Closing
        if plan.status != 200 or plan.body is not None:
            await self.sim._pause(self.sim._latency(plan))
            status, err = gemini_error(plan.status, plan.body)
            if status == 200 and stream and request.query.get("alt") == "sse":
                payload = b"data: " + orjson.dumps(err) + b"\r\n\r\n"
                return _respond(200, payload, "text/event-stream", plan.headers)
            if isinstance(err, str):
                return _respond(status, err.encode(), "text/plain; charset=utf-8", plan.headers)
            return _json(err, status, plan.headers)
        answer = build_answer(gemini_request_as_openai(body), model, plan)
        events = _parts(answer)
        if stream and request.query.get("alt") == "sse":
            return await self._stream(request, plan, answer, events)
        await self.sim._pause(self.sim._latency(plan))
        if plan.malformed:
            return _respond(200, _MALFORMED_JSON, "application/json", plan.headers)
        if stream:  # without alt=sse Gemini streams one JSON array of responses
            chunks = [_response(answer, p, final=i == len(events) - 1) for i, p in enumerate(events)]
            return _json(chunks, 200, plan.headers)
        parts = [p for ev in events for p in ev]
        if not answer.tool_calls:
            parts = [{"text": answer.content}]
        return _json(_response(answer, parts, final=True), 200, plan.headers)

    async def _stream(
        self, request: web.Request, plan: Plan, answer: Answer, events: list[list[dict[str, Any]]]
    ) -> web.StreamResponse:
        from relaygate.sim.server import _Closing, _drop

        response = web.StreamResponse(headers={**plan.headers, "Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            await self.sim._pause(self.sim._latency(plan))
            if plan.malformed:
                await response.write(b'data: {"candidates": [{"content": {"parts": [{"text": "oo\r\n\r\n')
                await response.write_eof()
                return response
            cut = plan.cut_after_chunks
            for i, parts in enumerate(events[:cut] if cut is not None else events):
                await self.sim._pause(plan.ttft_ms if i == 0 else plan.chunk_gap_ms)
                event = _response(answer, parts, final=cut is None and i == len(events) - 1)
                await self.sim._write(response, b"data: " + orjson.dumps(event) + b"\r\n\r\n", plan)
            if cut is not None:
                _drop(request, rst=False)  # no finishReason, no end of body: a cut stream
                return response
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream
        except _Closing:
            _drop(request, rst=False)
        return response


def register_gemini_routes(app: web.Application, sim: SimServer) -> None:
    """Add the Gemini routes (``/v1beta/models/{model}:{method}`` and the ``/v1`` twin)."""
    routes = _GeminiRoutes(sim)
    app.router.add_post("/v1beta/models/{target}", routes.handle)
    app.router.add_post("/v1/models/{target}", routes.handle)
