"""OpenAI Chat Completions wire shapes the simulator emits, and its deterministic token counting.

Shapes follow https://platform.openai.com/docs/api-reference/chat/object (``chat.completion``) and
https://platform.openai.com/docs/api-reference/chat-streaming (``chat.completion.chunk``, SSE lines
``data: {...}\\n\\n`` ending with ``data: [DONE]``). Pure functions: no I/O.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "DONE",
    "Answer",
    "chunk",
    "completion",
    "count_prompt_tokens",
    "count_words",
    "new_id",
    "split_in",
    "split_words",
    "sse",
    "tool_call_deltas",
    "usage_block",
]

DONE = b"data: [DONE]\n\n"
SYSTEM_FINGERPRINT = "fp_relaygate_sim"
_WORD = re.compile(r"\S+\s*")


def split_words(text: str) -> list[str]:
    """Word chunks of ``text`` keeping all whitespace, so ``"".join(split_words(t)) == t``.

    Leading whitespace rides on the first chunk; a whitespace-only text is one chunk (and zero words
    for counting, see ``count_words``).
    """
    chunks = _WORD.findall(text)
    if not chunks:
        return [text] if text else []
    lead = text[: len(text) - len(text.lstrip())]
    if lead:
        chunks[0] = lead + chunks[0]
    return chunks


def count_words(text: str) -> int:
    """Whitespace-separated words in ``text``: the simulator's token count."""
    return len(text.split())


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, {"type": "image_url"}]
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_prompt_tokens(messages: list[Any]) -> int:
    """Prompt tokens: words over all messages' text content, plus 3 per message."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        total += count_words(_message_text(content)) + 3
    return total


def usage_block(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The ``usage`` object: prompt, completion and total tokens."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@dataclass(frozen=True)
class Answer:
    """What one successful request answers: text chunks or a tool call, and its accounting.

    ``chunks`` concatenate to the content; ``tool_calls`` holds ``(id, name, arguments_json)``
    per function call (several: parallel tool calls); ``usage`` is the ``usage`` object;
    ``finish_reason`` is "stop", "length" or "tool_calls".
    """

    id: str
    created: int
    model: str
    chunks: tuple[str, ...]
    tool_calls: tuple[tuple[str, str, str], ...]
    finish_reason: str
    usage: dict[str, int]

    @property
    def tool_call(self) -> tuple[str, str, str] | None:
        """The first function call, or None."""
        return self.tool_calls[0] if self.tool_calls else None

    @property
    def content(self) -> str:
        return "".join(self.chunks)


def new_id(prefix: str) -> str:
    """A random OpenAI-looking id: ``prefix`` ("chatcmpl-", "call_") + "sim" + 24 hex digits."""
    return f"{prefix}sim{uuid.uuid4().hex[:24]}"


def completion(answer: Answer) -> dict[str, Any]:
    """The non-streaming ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
    if answer.tool_calls:
        message["content"] = None
        message["tool_calls"] = [_tool_call(call) for call in answer.tool_calls]
    return {
        "id": answer.id,
        "object": "chat.completion",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish_reason}
        ],
        "usage": answer.usage,
    }


def _tool_call(call: tuple[str, str, str]) -> dict[str, Any]:
    call_id, name, arguments = call
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(
    answer: Answer,
    delta: dict[str, Any] | None,
    *,
    finish_reason: str | None = None,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``. ``delta=None`` gives the final usage chunk (``choices: []``).

    With ``stream_options.include_usage`` OpenAI sends ``"usage": null`` on every chunk but the last;
    ``with_usage_field`` reproduces that.
    """
    obj: dict[str, Any] = {
        "id": answer.id,
        "object": "chat.completion.chunk",
        "created": answer.created,
        "model": answer.model,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    if delta is None:
        obj["choices"] = []
        obj["usage"] = answer.usage
        return obj
    obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    if with_usage_field:
        obj["usage"] = None
    return obj


def tool_call_deltas(answer: Answer) -> list[dict[str, Any]]:
    """The stream deltas of the answer's tool calls.

    One call: a single delta carrying the whole call (index 0). Several (parallel tool calls):
    first each call's head (index, id, name, empty arguments), then the arguments in three
    pieces per call, interleaved across calls (call 0 piece 1, call 1 piece 1, call 0 piece 2,
    ...), as an upstream generating the calls concurrently may send them.
    """
    calls = answer.tool_calls
    if len(calls) == 1:
        return [{"tool_calls": [{"index": 0, **_tool_call(calls[0])}]}]
    deltas: list[dict[str, Any]] = []
    for i, (call_id, name, _) in enumerate(calls):
        head = {"index": i, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        deltas.append({"tool_calls": [head]})
    pieces = [split_in(arguments, 3) for _, _, arguments in calls]
    for k in range(max(len(p) for p in pieces)):
        for i, parts in enumerate(pieces):
            if k < len(parts):
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": parts[k]}}]})
    return deltas


def split_in(text: str, n: int) -> list[str]:
    """``text`` in ``n`` (or fewer, when shorter) consecutive non-empty pieces."""
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]


def sse(obj: Any) -> bytes:
    """One SSE event line: ``data: <json>\\n\\n``."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"
