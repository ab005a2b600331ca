"""Anthropic Messages wire format: inbound request checks, stop-reason, usage and error maps.

Shapes follow the Messages API reference (https://docs.anthropic.com/en/api/messages) and
the errors page (https://docs.anthropic.com/en/api/errors). ``validate_request`` rejects a
malformed body the way Anthropic does, with dotted parameter paths (``messages.0.content``);
what is well-formed but cannot be translated is rejected later by the translators. The maps
here are shared by both translation directions (``translate_anthropic_in`` / ``_out``).
"""

from __future__ import annotations

from typing import Any

from relaygate.errors import InvalidRequestError

__all__ = [
    "API_VERSION",
    "ERROR_STATUS",
    "KNOWN_REQUEST_FIELDS",
    "error_type_for_status",
    "finish_reason_for",
    "stop_reason_for",
    "usage_to_anthropic",
    "usage_to_openai",
    "validate_request",
]

API_VERSION = "2023-06-01"

# Error type -> HTTP status (https://docs.anthropic.com/en/api/errors, "HTTP errors").
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_STATUS_TYPE = {v: k for k, v in ERROR_STATUS.items()}

# Top-level request fields of POST /v1/messages that this gateway recognises (those of the
# anthropic SDK's ``messages.create``, plus the sampling parameters older SDKs and raw clients
# send: temperature, top_p, top_k). Anything else
# is answered as Anthropic does ("Extra inputs are not permitted"); a recognised field that
# cannot be carried to an OpenAI-protocol upstream is rejected by the translator.
KNOWN_REQUEST_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "tools",
        "tool_choice",
        "metadata",
        "thinking",
        "service_tier",
        "output_config",
        "output_format",
        "container",
        "mcp_servers",
        "context_management",
        "cache_control",
        "diagnostics",
        "inference_geo",
        "speed",
        "user_profile_id",
        "workspace_id",
    }
)

# Stop reasons (https://docs.anthropic.com/en/api/handling-stop-reasons) <-> OpenAI
# finish_reason (https://platform.openai.com/docs/api-reference/chat/object).
_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def error_type_for_status(status: int) -> str:
    """The Anthropic error ``type`` for an HTTP status (other 4xx: invalid_request_error,
    other 5xx: api_error, as the errors page says)."""
    if status in _STATUS_TYPE:
        return _STATUS_TYPE[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def finish_reason_for(stop_reason: str | None) -> str | None:
    """Anthropic ``stop_reason`` -> OpenAI ``finish_reason``. ``stop_sequence`` and
    ``pause_turn`` become ``stop``; ``model_context_window_exceeded`` becomes ``length``;
    ``refusal`` becomes ``content_filter``; an unknown reason becomes ``stop``."""
    if stop_reason is None:
        return None
    return _STOP_TO_FINISH.get(stop_reason, "stop")


def stop_reason_for(finish_reason: str | None, *, stop_sequence_hit: bool = False) -> str | None:
    """OpenAI ``finish_reason`` -> Anthropic ``stop_reason``. OpenAI reports a matched stop
    sequence as plain ``stop`` without saying which, so ``stop`` maps to ``end_turn`` unless the
    caller knows better. Unknown reasons (e.g. DeepSeek's ``insufficient_system_resource``)
    map to ``end_turn``."""
    if finish_reason is None:
        return None
    if finish_reason == "stop" and stop_sequence_hit:
        return "stop_sequence"
    return _FINISH_TO_STOP.get(finish_reason, "end_turn")


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def usage_to_openai(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic ``usage`` -> OpenAI ``usage``.

    Anthropic's ``input_tokens`` excludes cache reads and writes: the total input is
    ``input_tokens + cache_creation_input_tokens + cache_read_input_tokens`` (Messages API
    reference, ``usage``), while OpenAI's ``prompt_tokens`` includes cached tokens and reports
    them in ``prompt_tokens_details.cached_tokens``. Cache writes have no OpenAI field; they
    are counted in ``prompt_tokens`` and also kept as ``cache_creation_input_tokens`` so the
    reverse mapping is exact. Thinking tokens (``output_tokens_details.thinking_tokens``)
    become ``completion_tokens_details.reasoning_tokens``; both sides count them in the output.
    """
    read = _int(usage.get("cache_read_input_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("input_tokens")) + read + write
    out = _int(usage.get("output_tokens"))
    res: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": out,
        "total_tokens": prompt + out,
        "prompt_tokens_details": {"cached_tokens": read},
    }
    if write:
        res["cache_creation_input_tokens"] = write
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and _int(details.get("thinking_tokens")):
        res["completion_tokens_details"] = {"reasoning_tokens": details["thinking_tokens"]}
    return res


def usage_to_anthropic(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI ``usage`` -> Anthropic ``usage`` (the inverse of ``usage_to_openai``).

    Cached tokens come from ``prompt_tokens_details.cached_tokens``, or DeepSeek's
    ``prompt_cache_hit_tokens`` (https://api-docs.deepseek.com/guides/kv_cache); they are
    subtracted from ``prompt_tokens`` to give Anthropic's ``input_tokens``.
    """
    details = usage.get("prompt_tokens_details")
    read = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    if not read:
        read = _int(usage.get("prompt_cache_hit_tokens"))
    write = _int(usage.get("cache_creation_input_tokens"))
    prompt = _int(usage.get("prompt_tokens"))
    res: dict[str, Any] = {
        "input_tokens": max(0, prompt - read - write),
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": _int(usage.get("completion_tokens")),
    }
    out_details = usage.get("completion_tokens_details")
    if isinstance(out_details, dict) and _int(out_details.get("reasoning_tokens")):
        res["output_tokens_details"] = {"thinking_tokens": out_details["reasoning_tokens"]}
    return res


def _type(v: object) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    return {dict: "object", list: "array", str: "string", type(None): "null"}.get(type(v), "value")


def validate_request(body: dict[str, Any]) -> None:
    """Check an inbound Messages request the way the Anthropic API does.

    Raises ``InvalidRequestError`` with an Anthropic-style dotted ``param`` for: an unknown
    top-level field, a missing ``model`` / ``max_tokens`` / ``messages``, wrong types, ranges
    (``temperature`` and ``top_p`` in [0, 1], ``max_tokens`` >= 1, ``top_k`` >= 0), a role other
    than user/assistant, and content blocks without a string ``type``.
    """
    for key in body:
        if key not in KNOWN_REQUEST_FIELDS:
            raise _bad("Extra inputs are not permitted", key)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("Field required" if model is None else "Input should be a non-empty string", "model")
    mt = body.get("max_tokens")
    if mt is None:
        raise _bad("Field required", "max_tokens")
    if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
        raise _bad("Input should be an integer greater than or equal to 1", "max_tokens")
    for name, lo, hi in (("temperature", 0, 1), ("top_p", 0, 1)):
        v = body.get(name)
        if v is None:
            continue
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise _bad(f"Input should be a number, got {_type(v)}", name)
        if not lo <= v <= hi:
            raise _bad(f"Input should be between {lo} and {hi}, got {v}", name)
    top_k = body.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 0):
        raise _bad("Input should be a non-negative integer", "top_k")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _bad(f"Input should be a valid boolean, got {_type(stream)}", "stream")
    stops = body.get("stop_sequences")
    if stops is not None and not (isinstance(stops, list) and all(isinstance(s, str) for s in stops)):
        raise _bad("Input should be an array of strings", "stop_sequences")
    for name in ("metadata", "tool_choice", "thinking", "output_config", "output_format"):
        v = body.get(name)
        if v is not None and not isinstance(v, dict):
            raise _bad(f"Input should be an object, got {_type(v)}", name)
    _check_system(body.get("system"))
    _check_messages(body.get("messages"))
    _check_tools(body.get("tools"), body.get("tool_choice"))


def _check_system(system: object) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _bad("Input should be a string or an array of text blocks", "system")
    for i, block in enumerate(system):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise _bad("Input should be a text block", f"system.{i}")


def _check_messages(messages: object) -> None:
    if messages is None:
        raise _bad("Field required", "messages")
    if not isinstance(messages, list):
        raise _bad(f"Input should be a valid list, got {_type(messages)}", "messages")
    if not messages:
        raise _bad("at least one message is required", "messages")
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(msg, dict):
            raise _bad(f"Input should be an object, got {_type(msg)}", where)
        if msg.get("role") not in ("user", "assistant"):
            raise _bad(f"Input should be 'user' or 'assistant', got {msg.get('role')!r}", f"{where}.role")
        content = msg.get("content")
        if content is None:
            raise _bad("Field required", f"{where}.content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise _bad("Input should be a string or an array of content blocks", f"{where}.content")
        for j, block in enumerate(content):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise _bad("Input should be a content block with a 'type'", f"{where}.content.{j}")


def _check_tools(tools: object, tool_choice: object) -> None:
    if tools is not None:
        if not isinstance(tools, list):
            raise _bad(f"Input should be a valid list, got {_type(tools)}", "tools")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
                raise _bad("Input should be a tool with a 'name'", f"tools.{i}")
    if isinstance(tool_choice, dict):
        kind = tool_choice.get("type")
        if kind not in ("auto", "any", "tool", "none"):
            raise _bad(f"Input should be 'auto', 'any', 'tool' or 'none', got {kind!r}", "tool_choice.type")
        if kind == "tool" and not isinstance(tool_choice.get("name"), str):
            raise _bad("Field required", "tool_choice.name")
