"""Gemini ``generateContent`` answers -> OpenAI ``chat.completion`` / ``chat.completion.chunk`` (pure).

Part of the OpenAI <-> Gemini translation (``translate_gemini`` re-exports the public names).
Sources: https://ai.google.dev/api/generate-content (GenerateContentResponse, Candidate,
FinishReason, PromptFeedback, UsageMetadata; ``streamGenerateContent?alt=sse`` sends one
GenerateContentResponse per event, text parts as deltas, each functionCall part whole);
https://ai.google.dev/gemini-api/docs/thought-signatures and
https://ai.google.dev/gemini-api/docs/openai (a functionCall's thoughtSignature travels in the
OpenAI tool call as ``extra_content.google.thought_signature``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from relaygate.errors import ErrorClass, UpstreamError
from relaygate.protocols.gemini import BLOCK_FINISH_REASONS

__all__ = [
    "GeminiToOpenAIStream",
    "check_prompt_feedback",
    "finish_reason",
    "gemini_response_to_openai",
    "gemini_usage_to_openai",
]


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def gemini_usage_to_openai(meta: object) -> dict[str, Any] | None:
    """OpenAI ``usage`` from Gemini ``usageMetadata`` (tokens).

    prompt_tokens = promptTokenCount (which already includes cachedContentTokenCount) +
    toolUsePromptTokenCount; completion_tokens = candidatesTokenCount + thoughtsTokenCount
    (OpenAI counts reasoning inside completion tokens; Gemini bills thoughts as output);
    prompt_tokens_details.cached_tokens = cachedContentTokenCount;
    completion_tokens_details.reasoning_tokens = thoughtsTokenCount.
    """
    if not isinstance(meta, dict):
        return None

    def n(key: str) -> int:
        v = meta.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0

    prompt = n("promptTokenCount") + n("toolUsePromptTokenCount")
    completion = n("candidatesTokenCount") + n("thoughtsTokenCount")
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": n("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": n("thoughtsTokenCount")},
    }
    return usage


def finish_reason(reason: object, had_tool_calls: bool) -> str | None:
    """Gemini FinishReason -> OpenAI finish_reason (None while the candidate is still going)."""
    if not isinstance(reason, str) or not reason:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in BLOCK_FINISH_REASONS:
        return "content_filter"
    return "tool_calls" if had_tool_calls else "stop"


def check_prompt_feedback(resp: dict[str, Any]) -> None:
    """Raise ``UpstreamError`` (content_policy) when Gemini blocked the prompt itself:
    ``promptFeedback.blockReason`` set and no candidates (GenerateContentResponse docs)."""
    feedback = resp.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason and not resp.get("candidates"):
        body = {
            "error": {
                "code": 400,
                "type": "content_policy_violation",
                "message": f"The Gemini API blocked the prompt (promptFeedback.blockReason {reason}).",
                "status": "PROMPT_BLOCKED",
            }
        }
        raise UpstreamError(
            f"upstream blocked the prompt: blockReason {reason}",
            error_class=ErrorClass.CONTENT_POLICY,
            upstream_status=400,
            upstream_body=orjson.dumps(body),
        )


def _parts_of(cand: dict[str, Any]) -> list[Any]:
    content = cand.get("content")
    parts = content.get("parts") if isinstance(content, dict) else None
    return parts if isinstance(parts, list) else []


def _index_of(cand: dict[str, Any], default: int) -> int:
    index = cand.get("index")
    return index if isinstance(index, int) and not isinstance(index, bool) else default


def _split_parts(parts: object, new_id: Callable[[], str]) -> tuple[str | None, str | None, list[dict]]:
    """(text, thought text, tool calls) of a candidate's parts, in order."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("functionCall"), dict):
            calls.append(_tool_call(part, new_id))
        elif isinstance(part.get("text"), str):
            (thoughts if part.get("thought") else text).append(part["text"])
    return ("".join(text) if text else None, "".join(thoughts) if thoughts else None, calls)


def _tool_call(part: dict[str, Any], new_id: Callable[[], str]) -> dict[str, Any]:
    fc = part["functionCall"]
    args = fc.get("args") if isinstance(fc.get("args"), dict) else {}
    call: dict[str, Any] = {
        "id": fc["id"] if isinstance(fc.get("id"), str) and fc["id"] else new_id(),
        "type": "function",
        "function": {"name": str(fc.get("name", "")), "arguments": orjson.dumps(args).decode()},
    }
    if isinstance(part.get("thoughtSignature"), str):
        call["extra_content"] = {"google": {"thought_signature": part["thoughtSignature"]}}
    return call


def gemini_response_to_openai(
    resp: dict[str, Any],
    *,
    model: str,
    created: int | None = None,
    new_id: Callable[[], str] = _new_call_id,
) -> dict[str, Any]:
    """A ``chat.completion`` for a Gemini ``GenerateContentResponse``.

    candidates[i] -> choices[i] (index from ``candidate.index``); text parts -> ``content``;
    thought parts -> ``reasoning_content``; functionCall parts -> ``tool_calls`` (id from
    ``functionCall.id`` or a new ``call_...``; ``args`` as a JSON string; a thoughtSignature in
    ``extra_content.google.thought_signature``); finishReason via ``finish_reason``;
    usageMetadata via ``gemini_usage_to_openai``. Raises ``UpstreamError`` (content_policy)
    when the prompt was blocked.
    """
    check_prompt_feedback(resp)
    choices = []
    for i, cand in enumerate(resp.get("candidates") or []):
        if not isinstance(cand, dict):
            continue
        text, thoughts, calls = _split_parts(_parts_of(cand), new_id)
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        if thoughts is not None:
            message["reasoning_content"] = thoughts
        if calls:
            message["tool_calls"] = calls
        index = _index_of(cand, i)
        reason = finish_reason(cand.get("finishReason"), bool(calls)) or "stop"
        choices.append({"index": index, "message": message, "logprobs": None, "finish_reason": reason})
    out: dict[str, Any] = {
        "id": f"chatcmpl-{resp.get('responseId') or uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": model,
        "choices": choices,
    }
    usage = gemini_usage_to_openai(resp.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return out


class GeminiToOpenAIStream:
    """Incremental ``streamGenerateContent?alt=sse`` -> ``chat.completion.chunk`` translation.

    ``feed(event)`` takes one parsed SSE ``data`` object and returns the chunks it yields at once
    (no buffering): the first delta of each choice carries ``role``; text, thought text
    (``reasoning_content``) and whole function calls (Gemini sends each functionCall part
    complete, so each becomes one ``tool_calls`` delta with its full ``arguments``, indexed in
    arrival order) keep their part order; a ``finishReason`` yields the choice's final chunk.
    ``finish()`` returns the usage chunk (``choices: []``) when ``include_usage``. ``finished``
    is True once every choice seen has a finish_reason.
    """

    def __init__(
        self,
        *,
        model: str,
        include_usage: bool = False,
        created: int | None = None,
        new_id: Callable[[], str] = _new_call_id,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time()) if created is None else created
        self.id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        self.usage: dict[str, Any] | None = None
        self._new_id = new_id
        self._started: set[int] = set()
        self._calls: dict[int, int] = {}  # choice index -> tool calls sent
        self._open: set[int] = set()  # choices without a finish_reason yet

    @property
    def finished(self) -> bool:
        return bool(self._started) and not self._open

    def _chunk(self, index: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        if index not in self._started:
            self._started.add(index)
            self._open.add(index)
            delta = {"role": "assistant", **delta}
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}],
        }

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Chunks for one Gemini stream event. Raises ``UpstreamError`` (content_policy) when
        the prompt was blocked."""
        check_prompt_feedback(event)
        usage = gemini_usage_to_openai(event.get("usageMetadata"))
        if usage is not None:
            self.usage = usage  # cumulative: the last event carries the totals
        out: list[dict[str, Any]] = []
        for i, cand in enumerate(event.get("candidates") or []):
            if not isinstance(cand, dict):
                continue
            index = _index_of(cand, i)
            out.extend(self._part_chunks(index, _parts_of(cand)))
            reason = finish_reason(cand.get("finishReason"), self._calls.get(index, 0) > 0)
            if reason is not None and (index in self._open or index not in self._started):
                out.append(self._chunk(index, {} if index in self._started else {"content": ""}, reason))
                self._open.discard(index)
        return out

    def _part_chunks(self, index: int, parts: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in parts:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("functionCall"), dict):
                call = _tool_call(part, self._new_id)
                k = self._calls.get(index, 0)
                self._calls[index] = k + 1
                delta: dict[str, Any] = {"tool_calls": [{"index": k, **call}]}
                if index not in self._started:
                    delta["content"] = None
                out.append(self._chunk(index, delta))
            elif isinstance(part.get("text"), str) and part["text"]:
                key = "reasoning_content" if part.get("thought") else "content"
                last = out[-1]["choices"][0]["delta"] if out else None
                if last is not None and set(last) <= {"role", key} and key in last:
                    last[key] += part["text"]  # consecutive text parts: one delta
                else:
                    out.append(self._chunk(index, {key: part["text"]}))
        return out

    def finish(self) -> list[dict[str, Any]]:
        """The trailing usage chunk (when ``include_usage`` and Gemini reported usage)."""
        if not self.include_usage or self.usage is None:
            return []
        return [
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage,
            }
        ]
