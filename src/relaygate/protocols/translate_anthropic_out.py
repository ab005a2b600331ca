"""Outbound translation: the gateway's OpenAI Chat Completions shape -> an Anthropic upstream and back.

Pure functions over wire dicts (no I/O): ``openai_request_to_anthropic`` builds the body of
``POST /v1/messages`` (https://docs.anthropic.com/en/api/messages);
``anthropic_response_to_openai`` turns a Message into a ``chat.completion``; and
``AnthropicToOpenAIStream`` turns the Anthropic SSE events (message_start, content_block_start,
content_block_delta with text_delta / input_json_delta / thinking_delta, content_block_stop,
message_delta, message_stop, ping, error; https://docs.anthropic.com/en/docs/build-with-claude/streaming)
into ``chat.completion.chunk`` dicts, one event at a time.

A caller parameter that Anthropic cannot honour is a 400 naming it (OpenAI-style ``param``),
never dropped or clamped. Deliberate non-errors, each documented where it happens: a previous
assistant turn's ``reasoning_content`` is not sent (Anthropic itself strips earlier turns'
thinking from the context, https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking),
and no-op values (``n: 1``, penalties of 0, ``logprobs: false``, ``response_format: text``)
are accepted.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from relaygate.errors import InvalidRequestError
from relaygate.protocols.anthropic import finish_reason_for, usage_to_openai

__all__ = ["anthropic_response_to_openai", "openai_request_to_anthropic", "tool_call_from_block"]

# Fields translated below; any other field is a 400 (OpenAI's own wording for unknown ones).
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "user",
        "response_format",
        "service_tier",
        # no-op at their default value, else 400
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "store",
        "modalities",
        "metadata",
        "seed",
        "reasoning_effort",
        # Anthropic-native extensions an OpenAI SDK can send through ``extra_body``
        "top_k",
        "thinking",
    }
)
# field -> the values that mean "not used"
_NOOP: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "logprobs": (None, False),
    "top_logprobs": (None,),
    "logit_bias": (None, {}),
    "store": (None, False),
    "modalities": (None, ["text"]),
    "metadata": (None, {}),
    "seed": (None,),
    "reasoning_effort": (None,),
}
_WHY = {
    "n": "Anthropic returns exactly one choice; 'n' must be 1",
    "seed": "Anthropic has no deterministic sampling seed",
    "reasoning_effort": "Anthropic has no reasoning_effort; send 'thinking' (extra_body) instead",
    "metadata": "Anthropic metadata carries only user_id; use 'user'",
    "store": "Anthropic does not store completions",
}
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.S)
_SERVICE_TIER = {"auto": "auto", "default": "standard_only"}


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="unsupported_parameter")


def openai_request_to_anthropic(
    body: dict[str, Any], *, model: str, default_max_tokens: int
) -> dict[str, Any]:
    """A Chat Completions body -> a Messages body for upstream model ``model``.

    ``max_completion_tokens`` (else ``max_tokens``, else ``default_max_tokens``: Anthropic
    requires one) -> ``max_tokens``; leading system/developer messages -> ``system``; tool
    messages -> ``tool_result`` blocks in a user turn; ``parallel_tool_calls: false`` ->
    ``tool_choice.disable_parallel_tool_use``; ``stop`` -> ``stop_sequences``; ``user`` ->
    ``metadata.user_id``; ``response_format`` json_schema -> ``output_config.format``
    (https://docs.anthropic.com/en/docs/build-with-claude/structured-outputs).
    Raises ``InvalidRequestError`` naming the field for anything Anthropic cannot honour,
    e.g. ``temperature`` above 1 (Anthropic's range is 0-1, OpenAI's 0-2).
    """
    for key, value in body.items():
        if key not in _HANDLED:
            raise _bad(f"Unrecognized request argument supplied: {key}", key)
        if key in _NOOP and value not in _NOOP[key]:
            why = _WHY.get(key, f"Anthropic has no equivalent of '{key}'")
            raise _bad(f"'{key}' cannot be honoured by an Anthropic upstream: {why}.", key)
    out: dict[str, Any] = {"model": model, "max_tokens": _max_tokens(body, default_max_tokens)}
    system, messages = _messages(body.get("messages") or [])
    if system is not None:
        out["system"] = system
    out["messages"] = messages
    temp = body.get("temperature")
    if temp is not None:
        if temp > 1:
            raise _bad(
                f"'temperature' {temp} cannot be honoured: Anthropic accepts 0 to 1 "
                "(OpenAI 0 to 2), and the gateway does not clamp it. Send a value of at most 1.",
                "temperature",
            )
        out["temperature"] = temp
    for key in ("top_p", "top_k", "thinking"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    if body.get("user") is not None:
        out["metadata"] = {"user_id": body["user"]}
    tier = body.get("service_tier")
    if tier is not None:
        if tier not in _SERVICE_TIER:
            raise _bad(f"service_tier '{tier}' has no Anthropic equivalent (auto, default).", "service_tier")
        out["service_tier"] = _SERVICE_TIER[tier]
    _tools(body, out)
    _response_format(body.get("response_format"), out)
    return out


def _max_tokens(body: dict[str, Any], default: int) -> int:
    mct, mt = body.get("max_completion_tokens"), body.get("max_tokens")
    if mct is not None and mt is not None and mct != mt:
        raise _bad(
            "'max_tokens' and 'max_completion_tokens' disagree; Anthropic has one limit. Send one.",
            "max_tokens",
        )
    value = mct if mct is not None else mt
    return int(value) if value is not None else default


def _text_of(content: Any, param: str, *, allow_refusal: bool = False) -> list[str]:
    """Text pieces of a string or an array of text (and refusal) parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    pieces: list[str] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            pieces.append(part["text"])
        elif kind == "refusal" and allow_refusal and isinstance(part.get("refusal"), str):
            pieces.append(part["refusal"])
        else:
            raise _bad(f"Content part type {kind!r} is not allowed here.", f"{param}[{j}].type")
    return pieces


def _messages(msgs: list[dict[str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    system: list[str] = []
    system_was_str = True
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(msgs):
        role, where = msg.get("role"), f"messages[{i}]"
        if msg.get("name") is not None:
            raise _bad("Anthropic messages carry no participant 'name'.", f"{where}.name")
        if role in ("system", "developer"):
            if out:
                raise _bad(
                    "A system message after the conversation started cannot be sent to Anthropic, "
                    "whose system prompt comes before all messages.",
                    f"{where}.role",
                )
            system_was_str = system_was_str and isinstance(msg.get("content"), str) and not system
            system += _text_of(msg.get("content"), f"{where}.content")
        elif role == "user":
            out.append({"role": "user", "content": _user_content(msg.get("content"), f"{where}.content")})
        elif role == "assistant":
            out.append(_assistant(msg, where))
        elif role == "tool":
            block = _tool_result(msg, where)
            prev = out[-1] if out else None
            if prev and prev["role"] == "user" and prev.get("_tool_results"):
                prev["content"].append(block)  # parallel results share one user turn
            else:
                out.append({"role": "user", "content": [block], "_tool_results": True})
        else:
            raise _bad(f"Role {role!r} cannot be translated for Anthropic; use 'tool'.", f"{where}.role")
    for m in out:
        m.pop("_tool_results", None)
    if out and out[-1]["role"] == "assistant":
        # Anthropic would continue a final assistant turn (prefill) instead of answering it.
        raise _bad(
            "A conversation ending with an assistant message would be continued, not answered, by "
            "Anthropic (prefill); end with a user or tool message.",
            f"messages[{len(msgs) - 1}].role",
        )
    if not system:
        return None, out
    if system_was_str:
        return system[0], out
    return [{"type": "text", "text": t} for t in system], out


def _user_content(content: Any, param: str) -> Any:
    if isinstance(content, str):
        return content
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url") or {}, f"{param}[{j}].image_url"))
        else:
            raise _bad(
                f"Content part type {kind!r} cannot be sent to an Anthropic upstream.", f"{param}[{j}].type"
            )
    return blocks


def _image(img: dict[str, Any], param: str) -> dict[str, Any]:
    """``image_url`` -> an image block with a base64 or url source
    (https://docs.anthropic.com/en/docs/build-with-claude/vision). ``detail: low`` has no
    Anthropic equivalent (images are always read at full resolution, i.e. ``high``)."""
    if img.get("detail") not in (None, "auto", "high"):
        raise _bad(f"Image detail {img.get('detail')!r} has no Anthropic equivalent.", f"{param}.detail")
    url = img.get("url")
    if not isinstance(url, str):
        raise _bad("Image url is required.", f"{param}.url")
    if url.startswith("data:"):
        m = _DATA_URL.match(url)
        if m is None:
            raise _bad("Only base64 data URLs (data:<type>;base64,...) can be sent.", f"{param}.url")
        source = {"type": "base64", "media_type": m["type"], "data": m["data"]}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant(msg: dict[str, Any], where: str) -> dict[str, Any]:
    # ``reasoning_content`` of an earlier turn is not sent: Anthropic drops previous turns'
    # thinking from the context anyway, and it could not be replayed without its signature.
    for key in ("audio", "function_call"):
        if msg.get(key) is not None:
            raise _bad(f"Assistant '{key}' cannot be sent to an Anthropic upstream.", f"{where}.{key}")
    content = msg.get("content")
    texts = _text_of(content, f"{where}.content", allow_refusal=True)
    if isinstance(msg.get("refusal"), str):
        texts.append(msg["refusal"])
    calls = msg.get("tool_calls") or []
    if isinstance(content, str) and not calls and msg.get("refusal") is None:
        return {"role": "assistant", "content": content}
    blocks: list[dict[str, Any]] = [{"type": "text", "text": t} for t in texts if t]
    for k, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{k}]"))
    if not blocks:
        raise _bad("An assistant message needs content or tool_calls.", f"{where}.content")
    return {"role": "assistant", "content": blocks}


def _tool_use(call: dict[str, Any], param: str) -> dict[str, Any]:
    if call.get("type", "function") != "function":
        raise _bad(f"Tool call type {call.get('type')!r} cannot be sent to Anthropic.", f"{param}.type")
    fn = call.get("function") or {}
    args = fn.get("arguments") or "{}"
    try:
        parsed = orjson.loads(args)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _bad("Tool call arguments must be a JSON object for Anthropic.", f"{param}.function.arguments")
    return {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": parsed}


def _tool_result(msg: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(msg.get("tool_call_id"), str):
        raise _bad("A tool message needs 'tool_call_id'.", f"{where}.tool_call_id")
    content = msg.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg["tool_call_id"]}
    if isinstance(content, str):
        block["content"] = content
    else:
        block["content"] = [{"type": "text", "text": t} for t in _text_of(content, f"{where}.content")]
    return block


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    """Function tools -> Anthropic tools; tool_choice auto/none/required/named -> auto/none/any/tool
    (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use)."""
    tools = body.get("tools")
    if tools:
        converted = []
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                kind = tool.get("type") if isinstance(tool, dict) else None
                raise _bad(f"Tool type {kind!r} cannot be sent to Anthropic.", f"tools[{i}].type")
            fn = tool.get("function") or {}
            t: dict[str, Any] = {"name": fn.get("name")}
            if fn.get("description") is not None:
                t["description"] = fn["description"]
            t["input_schema"] = fn.get("parameters") or {"type": "object", "properties": {}}
            if fn.get("strict") is not None:
                t["strict"] = fn["strict"]
            converted.append(t)
        out["tools"] = converted
    choice = body.get("tool_choice")
    tc: dict[str, Any] | None
    if choice is None:
        tc = None
    elif choice in ("auto", "none"):
        tc = {"type": choice}
    elif choice == "required":
        tc = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        tc = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    else:
        raise _bad(f"tool_choice {choice!r} cannot be sent to Anthropic.", "tool_choice")
    if body.get("parallel_tool_calls") is False and tools and (tc is None or tc["type"] != "none"):
        tc = {**(tc or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tc is not None:
        out["tool_choice"] = tc


def _response_format(rf: Any, out: dict[str, Any]) -> None:
    if rf is None or (isinstance(rf, dict) and rf.get("type") == "text"):
        return
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "json_schema":
        js = rf.get("json_schema") or {}
        if js.get("description"):
            raise _bad(
                "Anthropic structured outputs carry no schema description.",
                "response_format.json_schema.description",
            )
        if not isinstance(js.get("schema"), dict):
            raise _bad("A json_schema response_format needs 'schema'.", "response_format.json_schema.schema")
        out["output_config"] = {"format": {"type": "json_schema", "schema": js["schema"]}}
        return
    raise _bad(
        f"response_format {kind!r} cannot be honoured by Anthropic; use json_schema with a schema.",
        "response_format.type",
    )


def tool_call_from_block(block: dict[str, Any], index: int | None = None) -> dict[str, Any]:
    call: dict[str, Any] = {} if index is None else {"index": index}
    call.update(
        {
            "id": block.get("id"),
            "type": "function",
            "function": {
                "name": block.get("name"),
                "arguments": orjson.dumps(block.get("input") or {}).decode(),
            },
        }
    )
    return call


def anthropic_response_to_openai(resp: dict[str, Any], *, created: int = 0) -> dict[str, Any]:
    """A Messages response -> a ``chat.completion``.

    text blocks -> ``content`` (joined), thinking blocks -> ``reasoning_content`` (DeepSeek's
    field), tool_use blocks -> ``tool_calls`` (``input`` serialised to a JSON string, ids kept),
    ``stop_reason`` -> ``finish_reason``, usage as ``usage_to_openai``. ``redacted_thinking``
    (encrypted, unreadable) has no OpenAI form and is left out. ``created`` is Unix seconds.
    """
    texts, thinking, calls = [], [], []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thinking.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append(tool_call_from_block(block))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    if calls:
        message["tool_calls"] = calls
    return {
        "id": resp.get("id", ""),
        "object": "chat.completion",
        "created": created,
        "model": resp.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason_for(resp.get("stop_reason")) or "stop",
            }
        ],
        "usage": usage_to_openai(resp.get("usage") or {}),
    }
