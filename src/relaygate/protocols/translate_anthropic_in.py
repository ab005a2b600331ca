"""Inbound translation: an Anthropic Messages request -> the gateway's OpenAI shape, and the answer back.

Pure functions over wire dicts (no I/O), used by ``POST /v1/messages`` when the serving
deployment speaks OpenAI Chat Completions. Request fields follow
https://docs.anthropic.com/en/api/messages; anything that cannot be carried faithfully is a 400
naming the field (Anthropic-style dotted ``param``), never a silent drop. Deliberate non-errors,
documented where they happen: ``cache_control`` hints, on blocks or top-level (OpenAI-compatible
upstreams cache prompts automatically), earlier turns' thinking blocks (Anthropic itself strips them from the
context, https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking), and
``tool_result.is_error`` (rendered as an ``Error:`` prefix on the tool message).
"""

from __future__ import annotations

from typing import Any

import orjson

from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.anthropic import stop_reason_for, usage_to_anthropic, validate_request

__all__ = ["anthropic_request_to_openai", "openai_response_to_anthropic"]

_TIER = {"auto": "auto", "standard_only": "default"}


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {message}", param=param)


def anthropic_request_to_openai(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request -> a Chat Completions request (same ``model`` name).

    ``system`` -> a leading system message (a string stays a string, blocks become text parts);
    text / image blocks -> content parts (base64 sources -> data URLs, url sources -> URLs);
    ``tool_use`` -> ``tool_calls`` (``input`` as a JSON string, ids kept); ``tool_result`` ->
    ``tool`` messages; tools / tool_choice (auto/any/tool/none -> auto/required/named/none),
    ``disable_parallel_tool_use`` -> ``parallel_tool_calls: false``; ``stop_sequences`` ->
    ``stop``; ``metadata.user_id`` -> ``user``; ``output_config.format`` -> ``response_format``
    json_schema; ``top_k`` is passed through (vLLM, DashScope and others accept it).
    Raises ``InvalidRequestError`` for an invalid body (``validate_request``) or a field an
    OpenAI-protocol upstream cannot honour (documents, server tools, enabled ``thinking``, a
    trailing assistant prefill, ...).
    """
    validate_request(body)
    out: dict[str, Any] = {"model": body["model"], "max_tokens": body["max_tokens"]}
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if isinstance(system, str):
        messages.append({"role": "system", "content": system})
    elif system:
        messages.append({"role": "system", "content": [{"type": "text", "text": b["text"]} for b in system]})
    turns = body["messages"]
    if turns[-1]["role"] == "assistant":
        raise _bad(
            "a final assistant turn (prefill) cannot be continued by an OpenAI-protocol upstream",
            f"messages.{len(turns) - 1}.role",
        )
    for i, msg in enumerate(turns):
        if msg["role"] == "user":
            messages += _user(msg["content"], f"messages.{i}.content")
        else:
            messages.append(_assistant(msg["content"], f"messages.{i}.content"))
    out["messages"] = messages
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # Anthropic streams always carry usage
    _metadata(body.get("metadata"), out)
    _tools(body, out)
    _unsupported(body, out)
    return out


def _metadata(meta: dict[str, Any] | None, out: dict[str, Any]) -> None:
    for key, value in (meta or {}).items():
        if key != "user_id":
            raise _bad("Extra inputs are not permitted", f"metadata.{key}")
        if value is not None:
            out["user"] = value


def _unsupported(body: dict[str, Any], out: dict[str, Any]) -> None:
    tier = body.get("service_tier")
    if tier is not None:
        if tier not in _TIER:
            raise _bad("Input should be 'auto' or 'standard_only'", "service_tier")
        out["service_tier"] = _TIER[tier]
    thinking = body.get("thinking")
    if thinking is not None and thinking.get("type") != "disabled":
        raise _bad(
            "extended thinking cannot be requested from an OpenAI-protocol upstream; "
            "omit 'thinking' or set it to disabled",
            "thinking",
        )
    for key in ("output_config", "output_format"):
        cfg = body.get(key)
        if not cfg:
            continue
        fmt = cfg if key == "output_format" else cfg.get("format")
        extra = [k for k in cfg if k != "format"] if key == "output_config" else []
        if extra:
            raise _bad("cannot be honoured by an OpenAI-protocol upstream", f"{key}.{extra[0]}")
        if fmt is None:
            continue
        if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
            raise _bad("only a json_schema format with a 'schema' can be translated", key)
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt["schema"], "strict": True},
        }
    if body.get("speed") not in (None, "standard"):
        raise _bad("fast mode cannot be requested from an OpenAI-protocol upstream", "speed")
    # inference_geo is a data-residency request: where it runs is decided by the gateway's
    # routing policy, so an explicit value is refused rather than silently not enforced.
    for key in ("container", "mcp_servers", "context_management", "diagnostics", "inference_geo"):
        if body.get(key) is not None:
            raise _bad("cannot be honoured by an OpenAI-protocol upstream", key)
    for key in ("user_profile_id", "workspace_id"):
        if body.get(key) is not None:
            raise _bad("has no meaning for an OpenAI-protocol upstream", key)


def _image(block: dict[str, Any], param: str) -> dict[str, Any]:
    """An image block -> an ``image_url`` part (https://docs.anthropic.com/en/docs/build-with-claude/vision)."""
    src = block.get("source") or {}
    url: Any
    if src.get("type") == "base64":
        url = f"data:{src.get('media_type')};base64,{src.get('data')}"
    elif src.get("type") == "url":
        url = src.get("url")
    else:
        raise _bad(f"image source {src.get('type')!r} cannot be sent to an OpenAI-protocol upstream", param)
    return {"type": "image_url", "image_url": {"url": url}}


def _check_text(block: dict[str, Any], param: str) -> str:
    if block.get("citations"):
        raise _bad("citations cannot be sent to an OpenAI-protocol upstream", f"{param}.citations")
    text = block.get("text")
    if not isinstance(text, str):
        raise _bad("Field required", f"{param}.text")
    return text  # cache_control, if any, is a caching hint: not an error, not translated


def _user(content: Any, param: str) -> list[dict[str, Any]]:
    """One user turn -> user and tool messages, in block order (tool results become ``tool``
    messages, which OpenAI requires right after the assistant's tool calls)."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind, where = block["type"], f"{param}.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": _check_text(block, where)})
        elif kind == "image":
            parts.append(_image(block, f"{where}.source"))
        elif kind == "tool_result":
            if parts:
                out.append({"role": "user", "content": parts})
                parts = []
            out.append(_tool_result(block, where))
        else:
            raise _bad(f"'{kind}' blocks cannot be sent to an OpenAI-protocol upstream", f"{where}.type")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _tool_result(block: dict[str, Any], param: str) -> dict[str, Any]:
    if not isinstance(block.get("tool_use_id"), str):
        raise _bad("Field required", f"{param}.tool_use_id")
    content = block.get("content")
    result: Any
    if content is None:
        result = ""
    elif isinstance(content, str):
        result = content
    else:
        result = []
        for k, inner in enumerate(content):
            if not isinstance(inner, dict) or inner.get("type") != "text":
                kind = inner.get("type") if isinstance(inner, dict) else None
                raise _bad(
                    f"'{kind}' blocks in a tool result cannot be sent to an OpenAI-protocol upstream",
                    f"{param}.content.{k}.type",
                )
            result.append({"type": "text", "text": _check_text(inner, f"{param}.content.{k}")})
    if block.get("is_error"):
        # OpenAI tool messages have no error flag; the model still has to see it.
        if isinstance(result, str):
            result = f"Error: {result}" if result else "Error"
        else:
            result = [{"type": "text", "text": "Error:"}, *result]
    return {"role": "tool", "tool_call_id": block["tool_use_id"], "content": result}


def _assistant(content: Any, param: str) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind, where = block["type"], f"{param}.{j}"
        if kind == "text":
            parts.append({"type": "text", "text": _check_text(block, where)})
        elif kind == "tool_use":
            inp = block.get("input")
            if not isinstance(inp, dict):
                raise _bad("Input should be an object", f"{where}.input")
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": orjson.dumps(inp).decode()},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier turns' thinking: Anthropic strips it from the context too
        else:
            raise _bad(f"'{kind}' blocks cannot be sent to an OpenAI-protocol upstream", f"{where}.type")
    text: Any = parts[0]["text"] if len(parts) == 1 else parts or (None if calls else "")
    msg: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Client tools -> function tools; server tools (typed, e.g. ``web_search_20250305``) run
    inside Anthropic and have no OpenAI-protocol equivalent
    (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use)."""
    tools = body.get("tools")
    if tools:
        fns = []
        for i, tool in enumerate(tools):
            if tool.get("type") not in (None, "custom"):
                raise _bad(
                    f"server tool '{tool['type']}' cannot be run by an OpenAI-protocol upstream",
                    f"tools.{i}.type",
                )
            fn: dict[str, Any] = {"name": tool["name"]}
            if tool.get("description") is not None:
                fn["description"] = tool["description"]
            fn["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
            if tool.get("strict") is not None:
                fn["strict"] = tool["strict"]
            fns.append({"type": "function", "function": fn})
        out["tools"] = fns
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice["type"]
    if kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") and kind != "none" and tools:
        out["parallel_tool_calls"] = False


def openai_response_to_anthropic(resp: dict[str, Any], *, model: str) -> dict[str, Any]:
    """A ``chat.completion`` -> an Anthropic Message for the client that asked for ``model``.

    ``reasoning_content`` (DeepSeek; ``reasoning`` from vLLM >= 0.11) -> a leading thinking
    block; content -> a text block; ``refusal`` -> a text block with ``stop_reason: refusal``;
    ``tool_calls`` -> tool_use blocks
    (arguments parsed to ``input``, ids kept); ``finish_reason`` -> ``stop_reason``; usage as
    ``usage_to_anthropic``. Raises ``UpstreamError`` (malformed) when tool-call arguments are
    not a JSON object: Anthropic's ``input`` must be one.
    """
    choices = resp.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    msg = choice.get("message") or {}
    blocks: list[dict[str, Any]] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")  # vLLM >= 0.11: "reasoning"
    if reasoning:
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content:
        blocks.append({"type": "text", "text": content})
    refusal = msg.get("refusal")
    if refusal:
        blocks.append({"type": "text", "text": refusal})
    for call in msg.get("tool_calls") or []:
        blocks.append(_tool_use(call))
    stop = stop_reason_for(choice.get("finish_reason")) or "end_turn"
    if refusal and stop == "end_turn":
        stop = "refusal"
    rid = str(resp.get("id") or "")
    return {
        "id": rid if rid.startswith("msg_") else f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage_to_anthropic(resp.get("usage") or {}),
    }


def _tool_use(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments") or "{}"
    try:
        parsed = orjson.loads(args)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamError(
            f"upstream tool call arguments are not a JSON object: {args[:200]!r}",
            error_class=ErrorClass.MALFORMED,
        )
    return {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": parsed}
