"""Incremental stream translation between OpenAI ``chat.completion.chunk``s and Anthropic SSE events.

Both classes are pure state machines fed one parsed event at a time; nothing is buffered
beyond the event at hand, so the first token reaches the client as soon as the upstream sends
it. The Anthropic event grammar is the one in
https://docs.anthropic.com/en/docs/build-with-claude/streaming: ``message_start``, then per
content block ``content_block_start`` / ``content_block_delta`` (``text_delta``,
``input_json_delta``, ``thinking_delta``) / ``content_block_stop``, then ``message_delta``
(stop_reason and cumulative usage) and ``message_stop``; ``ping`` may appear anywhere and
``error`` reports a failure after the 200. OpenAI's chunk format is
https://platform.openai.com/docs/api-reference/chat-streaming.
"""

from __future__ import annotations

import uuid
from typing import Any

from relaygate.protocols.anthropic import (
    ERROR_STATUS,
    finish_reason_for,
    stop_reason_for,
    usage_to_anthropic,
    usage_to_openai,
)
from relaygate.protocols.translate_anthropic_out import tool_call_from_block

__all__ = ["AnthropicToOpenAIStream", "OpenAIToAnthropicStream"]

Event = tuple[str, dict[str, Any]]


class OpenAIToAnthropicStream:
    """OpenAI chunks -> Anthropic events, for an Anthropic client served by an OpenAI upstream.

    ``feed(chunk)`` returns ``[(event_name, data), ...]``; ``finish()`` returns the closing events
    (the last ``content_block_stop`` if still open, ``message_delta``, ``message_stop``).
    ``reasoning_content`` deltas (DeepSeek; vLLM >= 0.11 calls them ``reasoning``) become a thinking
    block, ``content`` and ``refusal`` a text block, and each OpenAI tool-call index its own
    tool_use block, numbered in order of first appearance; argument pieces become
    ``input_json_delta``s in arrival order. A block is closed when the next one starts. Anthropic
    blocks are strictly sequential (start, deltas, stop), but an OpenAI upstream may interleave the
    argument deltas of parallel calls: the first call streams live, later calls are held until the
    live block closes and are then sent whole, each as start, one delta, stop. ``message_delta`` is
    sent once the usage chunk (which OpenAI sends after the finish chunk) has arrived, or at
    ``finish()``; its usage holds the final input and cache counts, which ``message_start`` cannot
    know yet (it reports 0)."""

    def __init__(self, model: str, *, message_id: str | None = None) -> None:
        self.model = model
        self.message_id = message_id
        self.stop_reason: str | None = None
        self._started = False
        self._open: int | None = None  # index of the open block
        self._open_kind: str | None = None
        self._next = 0
        self._tools: dict[int, int] = {}  # OpenAI tool_calls index -> block index
        self._live_tool: int | None = None  # OpenAI index of the tool block streaming live
        self._held: dict[int, tuple[dict[str, Any], list[str]]] = {}  # index -> (block, arg pieces)
        self._usage: dict[str, Any] | None = None
        self._refused = False
        self._delta_sent = False
        self._stopped = False

    @property
    def finished(self) -> bool:
        """True once the upstream gave a finish_reason (a stream without one was cut)."""
        return self.stop_reason is not None

    def _start(self, chunk: dict[str, Any]) -> list[Event]:
        self._started = True
        mid = self.message_id or f"msg_{chunk.get('id') or uuid.uuid4().hex}"
        message: dict[str, Any] = {
            "id": mid,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def _close(self) -> list[Event]:
        events: list[Event] = []
        if self._open is not None:
            idx, self._open, self._open_kind = self._open, None, None
            events.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
        self._live_tool = None
        held, self._held = self._held, {}
        for n, (block, pieces) in held.items():  # first-appearance order
            idx = self._next
            self._next += 1
            self._tools[n] = idx
            events.append(
                ("content_block_start", {"type": "content_block_start", "index": idx, "content_block": block})
            )
            if pieces:
                events.append(self._delta(idx, {"type": "input_json_delta", "partial_json": "".join(pieces)}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": idx}))
        return events

    def _block(self, kind: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open, self._open_kind = self._next, kind
        self._next += 1
        start = {"type": "content_block_start", "index": self._open, "content_block": block}
        return [*events, ("content_block_start", start)]

    def _delta(self, index: int, delta: dict[str, Any]) -> Event:
        return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})

    def _text(self, kind: str, text: str) -> list[Event]:
        events: list[Event] = []
        if self._open_kind != kind:
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            events = self._block(kind, block)
        assert self._open is not None
        delta = (
            {"type": "text_delta", "text": text}
            if kind == "text"
            else {"type": "thinking_delta", "thinking": text}
        )
        return [*events, self._delta(self._open, delta)]

    def _tool(self, call: dict[str, Any]) -> list[Event]:
        n = call.get("index", 0)
        fn = call.get("function") or {}
        args = fn.get("arguments")
        if n in self._held:
            if args:
                self._held[n][1].append(args)
            return []
        events: list[Event] = []
        if n not in self._tools:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": fn.get("name") or "",
                "input": {},
            }
            if self._live_tool is not None:  # a parallel call while another streams: hold it
                self._held[n] = (block, [args] if args else [])
                return []
            events = self._block("tool_use", block)
            assert self._open is not None
            self._tools[n] = self._open
            self._live_tool = n
        if args:
            events.append(self._delta(self._tools[n], {"type": "input_json_delta", "partial_json": args}))
        return events

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = [] if self._started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")  # vLLM >= 0.11
            if reasoning:
                events += self._text("thinking", reasoning)
            if delta.get("content"):
                events += self._text("text", delta["content"])
            if delta.get("refusal"):
                self._refused = True
                events += self._text("text", delta["refusal"])
            for call in delta.get("tool_calls") or []:
                events += self._tool(call)
            if choice.get("finish_reason"):
                events += self._close()
                self.stop_reason = stop_reason_for(choice["finish_reason"])
                if self._refused and self.stop_reason == "end_turn":
                    self.stop_reason = "refusal"
        if self.stop_reason is not None and self._usage is not None and not self._delta_sent:
            events.append(self._message_delta())
        return events

    def _message_delta(self) -> Event:
        self._delta_sent = True
        usage = usage_to_anthropic(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {"stop_reason": self.stop_reason, "stop_sequence": None}
        return ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})

    def finish(self) -> list[Event]:
        """Closing events; idempotent. Call after the upstream's ``[DONE]`` (or its end)."""
        if self._stopped:
            return []
        self._stopped = True
        events = [] if self._started else self._start({})
        events += self._close()
        if not self._delta_sent:
            events.append(self._message_delta())
        events.append(("message_stop", {"type": "message_stop"}))
        return events


class AnthropicToOpenAIStream:
    """Anthropic SSE events -> ``chat.completion.chunk`` dicts, incrementally.

    ``feed(event_name, data)`` takes one parsed event and returns the chunks it produces (often
    none). Text deltas become ``content`` deltas, thinking deltas ``reasoning_content``, each
    tool_use block a ``tool_calls`` entry whose ``index`` counts tool blocks in order, with its
    ``input_json_delta`` pieces as ``arguments`` deltas in arrival order. ``message_delta`` gives
    the finish chunk; ``message_stop`` the usage chunk (``choices: []``) when ``include_usage``.
    An ``error`` event becomes an OpenAI in-band error chunk ``{"error": {..., "code": status}}``.
    ``done`` turns true at ``message_stop``: only then may the caller send ``[DONE]``.
    """

    def __init__(self, *, include_usage: bool = True, created: int = 0) -> None:
        self.include_usage = include_usage
        self.created = created
        self.done = False
        self.finish_reason: str | None = None
        self._id = ""
        self._model = ""
        self._usage: dict[str, Any] = {}
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: str | None, data: dict[str, Any]) -> list[dict[str, Any]]:
        kind = data.get("type") or event
        if kind == "message_start":
            msg = data.get("message") or {}
            self._id, self._model = msg.get("id", ""), msg.get("model", "")
            self._usage.update(msg.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "message_delta":
            self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
            self.finish_reason = finish_reason_for((data.get("delta") or {}).get("stop_reason"))
            return [self._chunk({}, self.finish_reason or "stop")]
        if kind == "message_stop":
            self.done = True
            if not self.include_usage:
                return []
            chunk = self._chunk({})
            chunk["choices"] = []
            chunk["usage"] = usage_to_openai(self._usage)
            return [chunk]
        if kind == "error":
            return [_error_chunk(data.get("error") or {})]
        return []  # ping, content_block_stop, and event types added later

    def _block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            n = self._tool_index[data.get("index", 0)] = len(self._tool_index)
            call = tool_call_from_block(block, n)
            if not block.get("input"):
                call["function"]["arguments"] = ""  # the input arrives as input_json_delta pieces
            return [self._chunk({"tool_calls": [call]})]
        if kind == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if kind == "thinking" and block.get("thinking"):
            return [self._chunk({"reasoning_content": block["thinking"]})]
        return []

    def _block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            n = self._tool_index.get(data.get("index", 0), 0)
            return [
                self._chunk({"tool_calls": [{"index": n, "function": {"arguments": delta["partial_json"]}}]})
            ]
        return []  # signature_delta, citations_delta: no OpenAI form

    def finish(self) -> list[dict[str, Any]]:
        """Nothing is held back, so there is nothing to flush; kept for symmetry with decoders."""
        return []


def _error_chunk(err: dict[str, Any]) -> dict[str, Any]:
    kind = str(err.get("type") or "api_error")
    return {"error": {"message": err.get("message", kind), "type": kind, "code": ERROR_STATUS.get(kind, 500)}}
