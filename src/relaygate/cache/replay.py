"""Turn a cached ``chat.completion`` into a fresh answer or an SSE chunk sequence, and assemble a
streamed answer back into a ``chat.completion`` for storing (pure, no I/O).

Chunk shapes follow https://platform.openai.com/docs/api-reference/chat-streaming: a role chunk,
content (and tool-call) chunks, a chunk with the ``finish_reason``, the usage-only chunk
(``choices: []``) when the client asked with ``stream_options.include_usage``; the edge adds
``data: [DONE]``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

__all__ = ["StreamAssembler", "fresh_completion", "synth_chunks"]

CONTENT_PIECE_CHARS = 256  # a replayed answer's text is sent in pieces of at most this many characters


def fresh_completion(doc: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """``doc`` with a new ``id`` (``chatcmpl-...``) and ``created`` (Unix seconds, ``now``)."""
    return {
        **doc,
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "created": int(time.time() if now is None else now),
    }


def synth_chunks(doc: dict[str, Any], *, include_usage: bool) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects a stream of ``doc`` (already fresh) would have sent."""
    base = {"id": doc.get("id"), "object": "chat.completion.chunk", "created": doc.get("created")}
    base["model"] = doc.get("model")
    if doc.get("system_fingerprint") is not None:
        base["system_fingerprint"] = doc["system_fingerprint"]

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    out: list[dict[str, Any]] = []
    for pos, choice in enumerate(doc.get("choices") or []):
        index = choice.get("index", pos)
        msg = choice.get("message") or {}
        out.append(chunk(index, {"role": msg.get("role", "assistant"), "content": ""}))
        content = msg.get("content")
        if isinstance(content, str):
            for i in range(0, len(content), CONTENT_PIECE_CHARS):
                out.append(chunk(index, {"content": content[i : i + CONTENT_PIECE_CHARS]}))
        if msg.get("refusal"):
            out.append(chunk(index, {"refusal": msg["refusal"]}))
        for i, call in enumerate(msg.get("tool_calls") or []):
            out.append(chunk(index, {"tool_calls": [{"index": i, **call}]}))
        out.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    if include_usage and doc.get("usage") is not None:
        out.append({**base, "choices": [], "usage": doc["usage"]})
    return out


class StreamAssembler:
    """Feed each ``chat.completion.chunk`` object; ``result()`` is the equivalent
    ``chat.completion`` (None until every choice has a ``finish_reason``)."""

    def __init__(self) -> None:
        self._head: dict[str, Any] = {}
        self._choices: dict[int, dict[str, Any]] = {}
        self._usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "created", "model", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None and key not in self._head:
                self._head[key] = chunk[key]
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for ch in chunk.get("choices") or []:
            if isinstance(ch, dict):
                self._feed_choice(ch)

    def _feed_choice(self, ch: dict[str, Any]) -> None:
        index = ch.get("index", 0)
        st = self._choices.setdefault(
            index, {"role": "assistant", "content": [], "refusal": [], "tools": {}, "finish": None}
        )
        delta = ch.get("delta") or {}
        if delta.get("role"):
            st["role"] = delta["role"]
        if isinstance(delta.get("content"), str):
            st["content"].append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            st["refusal"].append(delta["refusal"])
        for call in delta.get("tool_calls") or []:
            slot = st["tools"].setdefault(call.get("index", 0), {"function": {"name": "", "arguments": ""}})
            for key in ("id", "type"):
                if call.get(key):
                    slot[key] = call[key]
            fn = call.get("function") or {}
            slot["function"]["name"] += fn.get("name") or ""
            slot["function"]["arguments"] += fn.get("arguments") or ""
        if ch.get("finish_reason"):
            st["finish"] = ch["finish_reason"]

    def result(self) -> dict[str, Any] | None:
        if not self._choices or any(st["finish"] is None for st in self._choices.values()):
            return None
        choices = []
        for index in sorted(self._choices):
            st = self._choices[index]
            msg: dict[str, Any] = {"role": st["role"], "content": "".join(st["content"]) or None}
            if st["refusal"]:
                msg["refusal"] = "".join(st["refusal"])
            if st["tools"]:
                msg["tool_calls"] = [{"type": "function", **st["tools"][i]} for i in sorted(st["tools"])]
            choices.append({"index": index, "message": msg, "logprobs": None, "finish_reason": st["finish"]})
        doc: dict[str, Any] = {"object": "chat.completion", **self._head, "choices": choices}
        if self._usage is not None:
            doc["usage"] = self._usage
        return doc
