"""Watch an OpenAI ``chat.completion.chunk`` SSE stream as it passes through (pure).

The gateway forwards each event's bytes unchanged; this reads just enough to know when the
first content arrives (failover is allowed only before it), the ``finish_reason``, the final
``usage`` chunk (``stream_options.include_usage``), ``[DONE]``, and in-band error events
(``data: {"error": {...}}``), following
https://platform.openai.com/docs/api-reference/chat-streaming. Reasoning deltas count as
content: DeepSeek's ``reasoning_content`` and vLLM's ``reasoning`` (its name for the same field
since 0.11: https://docs.vllm.ai/en/v0.11.2/features/reasoning_outputs/).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from relaygate.protocols.openai import Usage, usage_from
from relaygate.protocols.sse import SSEEvent

__all__ = ["ChunkKind", "StreamWatch"]


class ChunkKind(StrEnum):
    CONTENT = "content"  # content, tool call deltas, refusal, reasoning, or a finish_reason
    PREAMBLE = "preamble"  # role-only first chunk, comments, keep-alives
    USAGE = "usage"  # the usage-only chunk (choices == [])
    DONE = "done"
    ERROR = "error"


@dataclass(slots=True)
class StreamWatch:
    """Accumulated facts about one stream. Feed every event to ``inspect``."""

    content_seen: bool = False
    done: bool = False
    finish_reason: str | None = None
    usage: Usage | None = None
    error: dict[str, Any] | None = None
    chunks: int = 0

    def inspect(self, ev: SSEEvent) -> ChunkKind:
        data = ev.data
        if data is None:
            return ChunkKind.PREAMBLE
        if data.strip() == b"[DONE]":
            self.done = True
            return ChunkKind.DONE
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = {"message": "upstream sent a malformed stream chunk", "type": "api_error"}
            return ChunkKind.ERROR
        if not isinstance(obj, dict):
            self.error = {"message": "upstream sent a non-object stream chunk", "type": "api_error"}
            return ChunkKind.ERROR
        if obj.get("error") is not None and "choices" not in obj:
            err = obj["error"]
            self.error = err if isinstance(err, dict) else {"message": str(err)}
            return ChunkKind.ERROR
        self.chunks += 1
        if obj.get("usage"):
            self.usage = usage_from(obj["usage"]) or self.usage
        choices = obj.get("choices")
        if not choices:
            return ChunkKind.USAGE if obj.get("usage") else ChunkKind.PREAMBLE
        kind = ChunkKind.PREAMBLE
        for ch in choices:
            if not isinstance(ch, dict):
                continue
            if ch.get("finish_reason"):
                self.finish_reason = ch["finish_reason"]
                kind = ChunkKind.CONTENT
            delta = ch.get("delta")
            if isinstance(delta, dict) and (
                delta.get("content")
                or delta.get("tool_calls")
                or delta.get("refusal")
                or delta.get("reasoning_content")
                or delta.get("reasoning")  # vLLM >= 0.11's name for reasoning_content
                or delta.get("function_call")
            ):
                kind = ChunkKind.CONTENT
        if kind is ChunkKind.CONTENT:
            self.content_seen = True
        return kind

    @property
    def complete(self) -> bool:
        """True when the upstream both gave a finish_reason and ended with ``[DONE]``."""
        return self.done and self.finish_reason is not None
