"""OpenAI Chat Completions -> Google Gemini ``generateContent``, and Gemini's answers back (pure).

``openai_request_to_gemini`` builds the request body, ``gemini_response_to_openai`` turns a
``GenerateContentResponse`` into a ``chat.completion``, and ``GeminiToOpenAIStream`` turns each
``streamGenerateContent?alt=sse`` event into ``chat.completion.chunk`` objects as it arrives.
Anything the Gemini API cannot carry faithfully is an ``InvalidRequestError`` naming the field;
nothing is dropped silently. Only the fields listed in ``NEUTRAL_FIELDS`` are ignored, because
they never change what the model generates.

Sources: https://ai.google.dev/api/generate-content (request, response, GenerationConfig,
FinishReason, UsageMetadata, ``streamGenerateContent?alt=sse``);
https://ai.google.dev/api/caching#Content (Content, Part, FunctionDeclaration, ToolConfig);
https://ai.google.dev/gemini-api/docs/function-calling (functionResponse matched by name);
https://ai.google.dev/gemini-api/docs/thought-signatures (signatures handed back on
functionCall parts; carried in OpenAI tool calls as ``extra_content.google.thought_signature``,
as Gemini's own OpenAI compatibility layer does, https://ai.google.dev/gemini-api/docs/openai).
"""

from __future__ import annotations

from typing import Any

from relaygate.errors import InvalidRequestError
from relaygate.protocols.gemini import json_schema_to_gemini
from relaygate.protocols.translate_gemini_messages import messages_to_contents, tools_to_gemini
from relaygate.protocols.translate_gemini_response import (
    GeminiToOpenAIStream,
    gemini_response_to_openai,
    gemini_usage_to_openai,
)

__all__ = [
    "NEUTRAL_FIELDS",
    "GeminiToOpenAIStream",
    "gemini_response_to_openai",
    "gemini_usage_to_openai",
    "openai_request_to_gemini",
]

# Ignored: they select the endpoint or concern OpenAI-side bookkeeping, never the output.
# model (in the URL), stream (selects streamGenerateContent), stream_options (Gemini always
# reports usage), user (end-user id for abuse monitoring), metadata and store (OpenAI's
# stored-completions dashboard).
NEUTRAL_FIELDS = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})
# reasoning_effort -> thinkingConfig.thinkingBudget (tokens), the mapping Gemini's OpenAI
# compatibility layer documents (https://ai.google.dev/gemini-api/docs/openai#thinking).
_THINKING_BUDGET = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_SIMPLE = {
    "temperature": "temperature",  # both 0..2
    "top_p": "topP",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "seed": "seed",
}
_HANDLED = frozenset(
    {
        *_SIMPLE,
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "stop",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
        "logit_bias",
    }
)


def _bad(message: str, param: str, code: str = "unsupported_parameter") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def openai_request_to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    """A Gemini ``GenerateContentRequest`` for a parsed Chat Completions ``body``.

    Mapping: system/developer messages -> ``systemInstruction``; user/assistant/tool messages ->
    ``contents`` (see ``translate_gemini_messages``); ``tools``/``tool_choice`` -> ``tools``/
    ``toolConfig``; temperature, top_p, presence/frequency penalties, seed -> the same
    ``generationConfig`` fields; max_completion_tokens | max_tokens -> ``maxOutputTokens``;
    n -> ``candidateCount``; stop -> ``stopSequences``; response_format json_object ->
    ``responseMimeType: application/json``, json_schema -> plus ``responseSchema``;
    reasoning_effort -> ``thinkingConfig.thinkingBudget``.

    Raises ``InvalidRequestError`` naming the field for: unknown fields, ``logprobs``/
    ``top_logprobs``/``logit_bias``, ``parallel_tool_calls: false``, unknown ``reasoning_effort``,
    conflicting max_tokens/max_completion_tokens, and every message/tool/schema construct
    Gemini cannot express.
    """
    for name, value in body.items():
        if name in NEUTRAL_FIELDS or value is None:
            continue
        if name not in _HANDLED:
            raise _bad(f"'{name}' cannot be translated to the Gemini API.", name)
    if body.get("logprobs") is True:
        raise _bad("'logprobs' is not supported when the request is served by the Gemini API.", "logprobs")
    for name in ("top_logprobs", "logit_bias"):
        if body.get(name) not in (None, {}):
            raise _bad(f"'{name}' is not supported when the request is served by the Gemini API.", name)
    if body.get("parallel_tool_calls") is False:
        raise _bad(
            "'parallel_tool_calls: false' cannot be honoured by the Gemini API, which may always "
            "return several function calls in one turn.",
            "parallel_tool_calls",
        )
    system, contents = messages_to_contents(body.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system is not None:
        out["systemInstruction"] = system
    tools, tool_config = tools_to_gemini(body.get("tools"), body.get("tool_choice"))
    if tools:
        out["tools"] = tools
    if tool_config:
        out["toolConfig"] = tool_config
    config = _generation_config(body)
    if config:
        out["generationConfig"] = config
    return out


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    for src, dst in _SIMPLE.items():
        if body.get(src) is not None:
            cfg[dst] = body[src]
    mct, mt = body.get("max_completion_tokens"), body.get("max_tokens")
    if mct is not None and mt is not None and mct != mt:
        raise _bad(
            "Give 'max_completion_tokens' or 'max_tokens', not both with different values.",
            "max_tokens",
            "invalid_value",
        )
    if (limit := mct if mct is not None else mt) is not None:
        cfg["maxOutputTokens"] = limit
    n = body.get("n")
    if n is not None and n != 1:
        cfg["candidateCount"] = n
    stop = body.get("stop")
    if isinstance(stop, str):
        cfg["stopSequences"] = [stop]
    elif isinstance(stop, list) and stop:
        cfg["stopSequences"] = list(stop)
    cfg.update(_response_format(body.get("response_format")))
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in _THINKING_BUDGET:
            raise _bad(
                f"'reasoning_effort' {effort!r} has no Gemini thinking budget; use one of "
                + ", ".join(_THINKING_BUDGET)
                + ".",
                "reasoning_effort",
                "invalid_value",
            )
        cfg["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET[effort]}
    return cfg


def _response_format(rf: object) -> dict[str, Any]:
    """json_object -> JSON mode; json_schema -> JSON mode + responseSchema (Gemini always
    enforces the schema, which satisfies both ``strict: true`` and ``strict: false``)."""
    if rf is None:
        return {}
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"responseMimeType": "application/json"}
    if kind == "json_schema":
        spec = rf.get("json_schema") if isinstance(rf, dict) else None
        if not isinstance(spec, dict) or "schema" not in spec:
            raise _bad(
                "'response_format.json_schema.schema' is required for the Gemini API.",
                "response_format.json_schema.schema",
                "missing_required_parameter",
            )
        schema = json_schema_to_gemini(spec["schema"], "response_format.json_schema.schema")
        if spec.get("description") and "description" not in schema:
            schema["description"] = spec["description"]
        return {"responseMimeType": "application/json", "responseSchema": schema}
    raise _bad(f"'response_format' type {kind!r} is not supported.", "response_format.type", "invalid_value")
