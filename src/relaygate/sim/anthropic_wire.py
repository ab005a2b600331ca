"""The simulator's Anthropic Messages endpoint: ``POST /v1/messages``, scripted by the same scenario.

Answers in Anthropic's shapes (https://docs.anthropic.com/en/api/messages): a Message, or the
SSE sequence message_start, content_block_start, ping, content_block_delta (text_delta or
input_json_delta), content_block_stop, message_delta, message_stop
(https://docs.anthropic.com/en/docs/build-with-claude/streaming); errors as
``{"type": "error", "error": {"type", "message"}}`` (https://docs.anthropic.com/en/api/errors),
with the ``overloaded`` preset answered as Anthropic's 529 ``overloaded_error``. The scenario
behaviours (reply, latency, ttft, chunk gaps, errors and presets, reset, hang, malformed, cut
streams, tool_call and parallel tool_calls, split_bytes, usage overrides) work as on the OpenAI
side; token counts use the same word counting, over the system prompt and the messages.
Anthropic-only features, so a pass-through can be checked end to end: a request with
``thinking.type`` ``enabled`` is answered with a leading thinking block (streamed as
``thinking_delta`` then ``signature_delta``,
https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking), and the words of every
text block marked ``cache_control`` are reported as ``cache_read_input_tokens`` (and left out of
``input_tokens``, https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from relaygate.sim.answer import build_answer
from relaygate.sim.scenario import Plan
from relaygate.sim.wire import Answer, split_in

if TYPE_CHECKING:
    from relaygate.sim.server import SimServer

__all__ = ["anthropic_error", "handle_messages", "message", "register_anthropic_routes", "stream_events"]

_STATUS_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
THINKING = "The user greets me; a short greeting back will do."
SIGNATURE = "sig_sim_EqQBCkYIARgCIkB"
_MALFORMED_JSON = b'{"id": "msg_sim", "type": "message", "role": "assistant", "content": [{"type": "te'
_MALFORMED_SSE = (
    b'event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"te\n\n'
)


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.body = anthropic_error(400, message)


def anthropic_error(status: int, message: str, type_: str | None = None) -> dict[str, Any]:
    """Anthropic's error body; ``type_`` defaults to the type the errors page gives ``status``."""
    kind = type_ or _STATUS_TYPE.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _error_answer(status: int, body: Any) -> tuple[int, Any]:
    """Scenario error bodies are OpenAI-shaped (presets, defaults); re-shape them for Anthropic.
    A verbatim body that is already Anthropic-shaped, or a string, is sent as given."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict) and body.get("type") != "error":
        err = body["error"]
        if err.get("code") == "server_is_overloaded":
            return 529, anthropic_error(529, "Overloaded")
        return status, anthropic_error(status, str(err.get("message") or ""))
    return status, body


def _check(body: dict[str, Any], headers: dict[str, str]) -> str:
    """The checks the real API makes that matter to a gateway; returns the model. Raises _BadRequest."""
    if not headers.get("anthropic-version"):
        raise _BadRequest("anthropic-version: header is required")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model: Field required")
    mt = body.get("max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise _BadRequest("max_tokens: Field required (an integer >= 1)")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("messages: at least one message is required")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise _BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if msg.get("content") is None:
            raise _BadRequest(f"messages.{i}.content: Field required")
    for name in ("temperature", "top_p"):
        v = body.get(name)
        if v is not None and (not isinstance(v, int | float) or not 0 <= v <= 1):
            raise _BadRequest(f"{name}: Input should be less than or equal to 1")
    for i, tool in enumerate(body.get("tools") or []):
        if (
            not isinstance(tool, dict)
            or not tool.get("name")
            or not isinstance(tool.get("input_schema"), dict)
        ):
            raise _BadRequest(f"tools.{i}: a tool needs 'name' and 'input_schema'")
    return model


def _openai_view(body: dict[str, Any]) -> dict[str, Any]:
    """The request as ``build_answer`` reads it: messages (system first), max_tokens, tools."""
    system = body.get("system")
    msgs = list(body["messages"])
    if system:
        msgs.insert(0, {"role": "system", "content": system})
    choice = body.get("tool_choice") or {}
    return {
        "messages": msgs,
        "max_tokens": body["max_tokens"],
        "tools": body.get("tools"),
        "tool_choice": "none" if choice.get("type") == "none" else "auto",
    }


def _cached_words(request: dict[str, Any] | None) -> int:
    """Words of the text blocks marked ``cache_control`` (system and messages)."""
    if not request:
        return 0
    blocks: list[Any] = list(request.get("system") or []) if isinstance(request.get("system"), list) else []
    for msg in request.get("messages") or []:
        if isinstance(msg, dict) and isinstance(msg.get("content"), list):
            blocks += msg["content"]
    return sum(
        len(str(b.get("text", "")).split()) for b in blocks if isinstance(b, dict) and b.get("cache_control")
    )


def _thinks(request: dict[str, Any] | None) -> bool:
    thinking = (request or {}).get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _usage(answer: Answer, request: dict[str, Any] | None = None) -> dict[str, int]:
    read = min(_cached_words(request), answer.usage["prompt_tokens"])
    return {
        "input_tokens": answer.usage["prompt_tokens"] - read,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": read,
        "output_tokens": answer.usage["completion_tokens"],
    }


def _tool_block(call: tuple[str, str, str]) -> tuple[dict[str, Any], str]:
    call_id, name, arguments = call
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        parsed = None
    data = parsed if isinstance(parsed, dict) else {}
    block_id = "toolu_" + call_id.removeprefix("call_")
    return {"type": "tool_use", "id": block_id, "name": name, "input": data}, orjson.dumps(data).decode()


def message(answer: Answer, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """The non-streaming Message for ``answer`` (one tool_use block per function call), with a
    leading thinking block when ``request`` enabled thinking."""
    content = (
        [_tool_block(call)[0] for call in answer.tool_calls]
        if answer.tool_calls
        else [{"type": "text", "text": answer.content}]
    )
    if _thinks(request):
        content.insert(0, {"type": "thinking", "thinking": THINKING, "signature": SIGNATURE})
    return {
        "id": "msg_" + answer.id.removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": content,
        "stop_reason": _STOP[answer.finish_reason],
        "stop_sequence": None,
        "usage": _usage(answer, request),
    }


def _block_events(
    answer: Answer, request: dict[str, Any] | None = None
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """(content_block_start block, its deltas) per content block, in order."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    deltas: list[dict[str, Any]]
    if _thinks(request):
        deltas = [{"type": "thinking_delta", "thinking": t} for t in split_in(THINKING, 2)]
        deltas.append({"type": "signature_delta", "signature": SIGNATURE})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if not answer.tool_calls:
        text = [{"type": "text_delta", "text": t} for t in answer.chunks]
        return [*blocks, ({"type": "text", "text": ""}, text)]
    for call in answer.tool_calls:
        block, args = _tool_block(call)
        # several pieces, as Anthropic streams tool input
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in split_in(args, 3)]
        blocks.append(({**block, "input": {}}, deltas))
    return blocks


def stream_events(
    answer: Answer, request: dict[str, Any] | None = None
) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """(head, deltas, tail) SSE events for ``answer``; the server paces and may cut the deltas.

    Blocks follow each other (Anthropic never interleaves them): a later block's
    content_block_stop of the previous block and its own content_block_start ride on its first
    delta, so ``deltas`` holds exactly one item per content_block_delta.
    """
    msg = message(answer, request)
    start = {**msg, "content": [], "stop_reason": None, "usage": {**msg["usage"], "output_tokens": 1}}
    head = [_sse("message_start", {"type": "message_start", "message": start})]
    blocks = _block_events(answer, request)
    body: list[bytes] = []
    for index, (block, deltas) in enumerate(blocks):
        opening = _sse(
            "content_block_start", {"type": "content_block_start", "index": index, "content_block": block}
        )
        if index == 0:
            head += [opening, _sse("ping", {"type": "ping"})]
            opening = b""
        else:
            opening = _sse("content_block_stop", {"type": "content_block_stop", "index": index - 1}) + opening
        events = [
            _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        if opening:
            events = [opening + events[0], *events[1:]] if events else [opening]
        body += events
    tail = [
        _sse("content_block_stop", {"type": "content_block_stop", "index": len(blocks) - 1}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": msg["usage"]["output_tokens"]},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]
    return head, body, tail


def register_anthropic_routes(app: web.Application, sim: SimServer) -> None:
    """Add ``POST /v1/messages`` (and ``/messages``) answered by ``handle_messages``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return await handle_messages(sim, request)

    app.router.add_post("/v1/messages", handler)
    app.router.add_post("/messages", handler)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(obj), headers=headers, content_type="application/json"
    )


async def handle_messages(sim: SimServer, request: web.Request) -> web.StreamResponse:
    """``POST /v1/messages`` on ``sim``: parse, record, and answer per the model's plan."""
    # Imported here: server.py imports this module to register the route.
    from relaygate.sim.server import _Closing, _drop

    headers = {name.lower(): value for name, value in request.headers.items()}
    try:
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise _BadRequest("The request body is not valid JSON.") from exc
        if not isinstance(body, dict):
            raise _BadRequest("The request body must be a JSON object.")
        model = _check(body, headers)
    except _BadRequest as exc:
        return _json(exc.body, 400)
    plan = sim._state.take(model, body, request.path, headers, raw)
    try:
        return await _answer(sim, request, body, model, plan)
    except _Closing:
        _drop(request, rst=False)
        return web.Response()


async def _answer(
    sim: SimServer, request: web.Request, body: dict[str, Any], model: str, plan: Plan
) -> web.StreamResponse:
    from relaygate.sim.server import _Closing, _drop

    if plan.reset:
        _drop(request, rst=True)
        return web.Response()
    if plan.hang:
        await sim._closing.wait()
        raise _Closing
    if plan.status != 200 or plan.body is not None:
        await sim._pause(sim._latency(plan))
        status, err = _error_answer(plan.status, plan.body)
        if isinstance(err, str):
            return web.Response(status=status, text=err, headers=plan.headers)
        return _json(err, status, plan.headers)
    answer = build_answer(_openai_view(body), model, plan)
    if body.get("stream") is True:
        return await _stream(sim, request, plan, answer, body)
    await sim._pause(sim._latency(plan))
    if plan.malformed:
        return web.Response(
            status=200, body=_MALFORMED_JSON, headers=plan.headers, content_type="application/json"
        )
    return _json(message(answer, body), 200, plan.headers)


async def _stream(
    sim: SimServer, request: web.Request, plan: Plan, answer: Answer, body: dict[str, Any]
) -> web.StreamResponse:
    from relaygate.sim.server import _Closing, _drop

    response = web.StreamResponse(headers={**plan.headers, "Cache-Control": "no-cache"})
    response.content_type = "text/event-stream"
    await response.prepare(request)
    head, deltas, tail = stream_events(answer, body)
    try:
        await sim._pause(sim._latency(plan))
        await sim._write(response, head[0], plan)
        if plan.malformed:
            await response.write(_MALFORMED_SSE)
            await response.write_eof()
            return response
        await sim._write(response, b"".join(head[1:]), plan)
        for i, event in enumerate(deltas):
            if plan.cut_after_chunks is not None and i >= plan.cut_after_chunks:
                break
            await sim._pause(plan.ttft_ms if i == 0 else plan.chunk_gap_ms)
            await sim._write(response, event, plan)
        if plan.cut_after_chunks is not None:
            _drop(request, rst=False)  # no message_stop, no terminating HTTP chunk
            return response
        await sim._pause(plan.chunk_gap_ms)
        await sim._write(response, b"".join(tail), plan)
        await response.write_eof()
    except ConnectionError:
        pass
    except _Closing:
        _drop(request, rst=False)
    return response
