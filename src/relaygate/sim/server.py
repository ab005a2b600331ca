"""The simulator's HTTP server: an OpenAI-compatible ``/v1/chat/completions`` scripted by a ``Scenario``.

Routes: ``POST /v1/chat/completions`` (and ``/chat/completions``), ``GET /v1/models``, and the control
API ``GET /_sim/stats``, ``GET /_sim/requests?model=X``, ``POST /_sim/scenario``, ``POST /_sim/reset``.
Failure modes (reset, hang, cut stream, malformed body) are produced on a real TCP connection so the
gateway's transport sees exactly what it would see from a misbehaving provider.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import uuid
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from relaygate.sim.answer import BadRequest, build_answer, check_request, parse_body, wants_usage_chunk
from relaygate.sim.anthropic_wire import register_anthropic_routes
from relaygate.sim.gemini_wire import register_gemini_routes
from relaygate.sim.presets import error_body
from relaygate.sim.scenario import Plan, Scenario, ScenarioError, coerce_scenario
from relaygate.sim.state import SimState
from relaygate.sim.wire import DONE, Answer, chunk, completion, sse, tool_call_deltas

__all__ = ["SimServer"]

# A 200 body cut mid-object: what a proxy that truncates responses produces.
_MALFORMED_JSON = b'{"id": "chatcmpl-sim", "object": "chat.completion", "choices": [{"index": 0, "mess'
_MALFORMED_SSE = b'data: {"id": "chatcmpl-sim", "choices": [{"delta": {"content": "oops\n\n'


_SPLIT_GAP_MS = 1.0  # pause between split_bytes pieces: long enough for the reader to see each


class _Closing(Exception):
    """The server is stopping: a waiting handler must drop its connection and return."""


def _respond(status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> web.Response:
    merged: CIMultiDict[str] = CIMultiDict(headers)
    merged.setdefault("Content-Type", content_type)
    merged.setdefault("x-request-id", f"req_sim{uuid.uuid4().hex[:24]}")
    return web.Response(status=status, body=payload, headers=merged)


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return _respond(status, orjson.dumps(obj), "application/json", headers or {})


def _drop(request: web.BaseRequest, *, rst: bool) -> None:
    """Close the connection under a request; ``rst`` aborts it with a TCP RST instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    if rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # SO_LINGER on with a 0 s timeout makes close() send RST: "connection reset by peer".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    else:
        transport.close()


class SimServer:
    """A scripted OpenAI-compatible provider on a loopback (or any) TCP port.

    ``scenario``: a Scenario, a dict of the same shape, or None (every model answers the default reply).
    ``seed`` makes latency jitter reproducible. Raises ScenarioError for an invalid scenario.
    """

    def __init__(self, scenario: Scenario | dict[str, Any] | None = None, *, seed: int | None = None) -> None:
        self._state = SimState(coerce_scenario(scenario))
        self._rng = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.url: str | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 = a free port); return the base URL ``http://HOST:PORT/v1``."""
        if self._runner is not None:
            raise RuntimeError("SimServer already started")
        self._closing = asyncio.Event()
        # handler_cancellation: a client that gives up (timeout tests) cancels its hanging handler.
        runner = web.AppRunner(
            self._make_app(), handler_cancellation=True, shutdown_timeout=2.0, access_log=None
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{bound_port}/v1"
        return self.url

    async def stop(self) -> None:
        """Stop listening; hanging and sleeping handlers drop their connections at once."""
        if self._runner is None:
            return
        self._closing.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()
        self.url = None

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def set_scenario(self, scenario: Scenario | dict[str, Any]) -> None:
        """Replace the scenario (step positions restart). Raises ScenarioError."""
        self._state.set_scenario(coerce_scenario(scenario))

    @property
    def scenario(self) -> Scenario:
        return self._state.scenario

    def stats(self) -> dict[str, Any]:
        """``{"models": {model: {"requests": n}}, "total": n}``."""
        return self._state.stats()

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """The last requests (200 at most), oldest first: ``[{"model", "path", "body", "headers"}]``."""
        return self._state.requests(model)

    def reset(self) -> None:
        """Zero counters and step positions, empty the request log."""
        self._state.reset()

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[_openai_errors], client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/_sim/stats", self._get_stats)
        app.router.add_get("/_sim/requests", self._get_requests)
        app.router.add_post("/_sim/scenario", self._post_scenario)
        app.router.add_post("/_sim/reset", self._post_reset)
        register_anthropic_routes(app, self)  # POST /v1/messages
        register_gemini_routes(app, self)  # POST /v1beta/models/{model}:generateContent etc.
        return app

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = parse_body(await request.read())
            model = check_request(body)
        except BadRequest as exc:
            return _json(exc.body, 400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        plan = self._state.take(model, body, request.path, headers)
        try:
            return await self._answer(request, body, model, plan)
        except _Closing:
            _drop(request, rst=False)
            return web.Response()

    async def _answer(
        self, request: web.Request, body: dict[str, Any], model: str, plan: Plan
    ) -> web.StreamResponse:
        if plan.reset:
            _drop(request, rst=True)
            return web.Response()
        if plan.hang:
            await self._closing.wait()
            raise _Closing
        if plan.status != 200 or plan.body is not None:
            await self._pause(self._latency(plan))
            if isinstance(plan.body, str):
                return _respond(plan.status, plan.body.encode(), "text/plain; charset=utf-8", plan.headers)
            return _json(plan.body, plan.status, plan.headers)
        answer = build_answer(body, model, plan)
        if body.get("stream") is True:
            return await self._stream(request, wants_usage_chunk(body), plan, answer)
        await self._pause(self._latency(plan))
        if plan.malformed:
            return _respond(200, _MALFORMED_JSON, "application/json", plan.headers)
        return _json(completion(answer), 200, plan.headers)

    async def _stream(
        self, request: web.Request, include_usage: bool, plan: Plan, answer: Answer
    ) -> web.StreamResponse:
        """SSE: role chunk, content (or tool-call) chunks, finish chunk, usage chunk, ``[DONE]``."""
        response = web.StreamResponse(headers={**plan.headers, "Cache-Control": "no-cache"})
        response.content_type = "text/event-stream"
        await response.prepare(request)
        try:
            await self._pause(self._latency(plan))
            role = {"role": "assistant", "content": None if answer.tool_call else ""}
            await self._write(response, sse(chunk(answer, role, with_usage_field=include_usage)), plan)
            if plan.malformed:
                await response.write(_MALFORMED_SSE + DONE)
                await response.write_eof()
                return response
            if answer.tool_calls:
                deltas: list[dict[str, Any]] = tool_call_deltas(answer)
            else:
                deltas = [{"content": text} for text in answer.chunks]
            for i, delta in enumerate(deltas):
                if plan.cut_after_chunks is not None and i >= plan.cut_after_chunks:
                    break
                await self._pause(plan.ttft_ms if i == 0 else plan.chunk_gap_ms)
                await self._write(response, sse(chunk(answer, delta, with_usage_field=include_usage)), plan)
            if plan.cut_after_chunks is not None:
                # No finish_reason, no [DONE], no terminating HTTP chunk: the client sees a cut body.
                _drop(request, rst=False)
                return response
            await self._pause(plan.chunk_gap_ms)
            last = chunk(answer, {}, finish_reason=answer.finish_reason, with_usage_field=include_usage)
            tail = sse(last) + (sse(chunk(answer, None)) if include_usage else b"") + DONE
            await self._write(response, tail, plan)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-stream; nothing left to tell it
        except _Closing:
            _drop(request, rst=False)
        return response

    async def _write(self, response: web.StreamResponse, data: bytes, plan: Plan) -> None:
        """Write stream bytes; with ``split_bytes``, in pieces of that size with a short pause
        between them so the reader sees each piece (and multi-byte characters split) apart."""
        step = plan.split_bytes
        if not step:
            await response.write(data)
            return
        for i in range(0, len(data), step):
            await response.write(data[i : i + step])
            await self._pause(_SPLIT_GAP_MS)

    def _latency(self, plan: Plan) -> float:
        return plan.latency_ms + (
            self._rng.uniform(0, plan.latency_jitter_ms) if plan.latency_jitter_ms else 0
        )

    async def _pause(self, ms: float) -> None:
        """Sleep ``ms`` milliseconds, or raise _Closing as soon as the server stops."""
        if ms > 0:
            try:
                await asyncio.wait_for(self._closing.wait(), ms / 1000)
            except TimeoutError:
                return
        if self._closing.is_set():
            raise _Closing

    async def _models(self, request: web.Request) -> web.Response:
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "relaygate-sim"}
            for name in self._state.scenario.models
        ]
        return _json({"object": "list", "data": data})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self._state.stats())

    async def _get_requests(self, request: web.Request) -> web.Response:
        return _json(self._state.requests(request.query.get("model")))

    async def _post_scenario(self, request: web.Request) -> web.Response:
        try:
            self.set_scenario(orjson.loads(await request.read()))
        except orjson.JSONDecodeError:
            return _json(error_body("scenario body is not valid JSON", "invalid_request_error"), 400)
        except ScenarioError as exc:
            return _json(error_body(str(exc), "invalid_request_error", "invalid_scenario"), 400)
        return _json({"ok": True, "models": sorted(self._state.scenario.models)})

    async def _post_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json({"ok": True})


@web.middleware
async def _openai_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown routes and wrong methods answer OpenAI-shaped errors instead of aiohttp's text pages."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"Invalid URL ({request.method} {request.path})"
        return _json(error_body(message, "invalid_request_error"), exc.status)
