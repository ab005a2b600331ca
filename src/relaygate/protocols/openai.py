"""OpenAI Chat Completions wire format: request checks, byte-level model rewrite, usage.

Only what routing and the ledger need is read; the body is otherwise forwarded as the
client sent it. Parameter types follow the API reference
(https://platform.openai.com/docs/api-reference/chat/create); unknown fields pass through to
the upstream, which accepts or rejects them as OpenAI does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast

import orjson

from relaygate.errors import InvalidRequestError

__all__ = [
    "ChatRequest",
    "Usage",
    "parse_chat_request",
    "rewrite_model",
    "usage_from",
    "with_stream_usage",
]

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUM, _INT, _BOOL, _STR = (int, float), (int,), (bool,), (str,)
# parameter -> (allowed python types, human name); bool is excluded from numbers below.
_SCALARS: dict[str, tuple[tuple[type, ...], str]] = {
    "temperature": (_NUM, "number"),
    "top_p": (_NUM, "number"),
    "presence_penalty": (_NUM, "number"),
    "frequency_penalty": (_NUM, "number"),
    "n": (_INT, "integer"),
    "max_tokens": (_INT, "integer"),
    "max_completion_tokens": (_INT, "integer"),
    "seed": (_INT, "integer"),
    "top_logprobs": (_INT, "integer"),
    "logprobs": (_BOOL, "boolean"),
    "parallel_tool_calls": (_BOOL, "boolean"),
    "user": (_STR, "string"),
    "tools": ((list,), "array"),
    "response_format": ((dict,), "object"),
    "metadata": ((dict,), "object"),
    "logit_bias": ((dict,), "object"),
}
_RANGES = {"temperature": (0, 2), "top_p": (0, 1), "presence_penalty": (-2, 2), "frequency_penalty": (-2, 2)}


@dataclass(slots=True)
class ChatRequest:
    """What the gateway reads from a chat completion body. ``body`` is the raw bytes."""

    body: bytes
    data: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool


@dataclass(slots=True)
class Usage:
    """Token counts from an OpenAI ``usage`` object (None fields: not reported)."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None


def _bad(message: str, param: str | None, code: str | None = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def _type_name(v: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "integer" if isinstance(v, int) else "number" if isinstance(v, float) else "value"
    )


def parse_chat_request(body: bytes) -> ChatRequest:
    """Parse and check a Chat Completions body.

    Raises ``InvalidRequestError`` (400, OpenAI-shaped ``param``) on invalid JSON, non-UTF-8
    bytes, a non-object body, a missing/empty ``messages``, or a known parameter of the wrong
    type or range. Unknown parameters are not checked here.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(
            f"We could not parse the JSON body of your request. ({exc.args[0] if exc.args else exc}). "
            "The OpenAI API expects a JSON payload.",
            None,
            None,
        ) from exc
    if not isinstance(data, dict):
        raise _bad(
            f"Invalid type for request body: expected an object, but got {_type_name(data)}.",
            None,
            "invalid_type",
        )
    model = data.get("model")
    if model is None:
        raise _bad("you must provide a model parameter", "model", None)
    if not isinstance(model, str) or not model:
        raise _bad(
            f"Invalid type for 'model': expected a non-empty string, but got {_type_name(model)}.",
            "model",
            "invalid_type",
        )
    _check_messages(data.get("messages"))
    for name, value in data.items():
        spec = _SCALARS.get(name)
        if spec is None or value is None:
            continue
        types, tname = spec
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise _bad(
                f"Invalid type for '{name}': expected {tname}, but got {_type_name(value)}.",
                name,
                "invalid_type",
            )
        lim = _RANGES.get(name)
        if lim and not lim[0] <= cast(float, value) <= lim[1]:
            raise _bad(f"Invalid value for '{name}': {value} is outside [{lim[0]}, {lim[1]}].", name)
        if name in ("n", "max_tokens", "max_completion_tokens") and cast(int, value) < 1:
            raise _bad(f"Invalid value for '{name}': must be at least 1.", name)
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad(
            f"Invalid type for 'stream': expected boolean, but got {_type_name(stream)}.",
            "stream",
            "invalid_type",
        )
    stop = data.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    ):
        raise _bad(
            "Invalid type for 'stop': expected a string or an array of strings.", "stop", "invalid_type"
        )
    opts = data.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise _bad("Invalid type for 'stream_options': expected an object.", "stream_options", "invalid_type")
    if opts is not None and not stream:
        raise _bad(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options"
        )
    include_usage = bool(opts and opts.get("include_usage") is True)
    return ChatRequest(body=body, data=data, model=model, stream=stream, include_usage=include_usage)


def _check_messages(messages: object) -> None:
    if messages is None:
        raise _bad("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    if not isinstance(messages, list):
        raise _bad(
            f"Invalid type for 'messages': expected an array, but got {_type_name(messages)}.",
            "messages",
            "invalid_type",
        )
    if not messages:
        raise _bad(
            "Invalid 'messages': empty array. Expected an array with minimum length 1.",
            "messages",
            "empty_array",
        )
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(
                f"Invalid type for '{where}': expected an object, but got {_type_name(msg)}.",
                where,
                "invalid_type",
            )
        role = msg.get("role")
        if not isinstance(role, str) or role not in _ROLES:
            raise _bad(
                f"Invalid value for '{where}.role': {role!r}. Supported values are: "
                + ", ".join(sorted(_ROLES))
                + ".",
                f"{where}.role",
            )
        content = msg.get("content")
        if content is not None and not isinstance(content, str | list):
            raise _bad(
                f"Invalid type for '{where}.content': expected a string or an array of content "
                f"parts, but got {_type_name(content)}.",
                f"{where}.content",
                "invalid_type",
            )
        if content is None and role in ("system", "developer", "user"):
            raise _bad(
                f"Missing required parameter: '{where}.content'.",
                f"{where}.content",
                "missing_required_parameter",
            )


# The next quote or structural character. Strings are skipped with bytes.find (memchr speed),
# which matters for multi-megabyte base64 images: a regex over the string body is ~20x slower.
_STRUCT = re.compile(rb'["{}\[\]]')
_COLON = re.compile(rb"\s*:\s*")


def _string_end(body: bytes, start: int) -> int:
    """Index just past the JSON string that opens at ``start`` (a quote)."""
    i = start + 1
    while True:
        j = body.find(b'"', i)
        if j < 0:
            raise ValueError("unterminated string")
        k = j - 1
        while body[k] == 0x5C:  # count the backslashes before the quote
            k -= 1
        if (j - 1 - k) % 2 == 0:
            return j + 1
        i = j + 1


def _model_value_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of every top-level ``"model"`` string value. A duplicated key is legal
    JSON and the parser keeps the last one, so all of them are rewritten."""
    spans: list[tuple[int, int]] = []
    depth, pos = 0, 0
    search = _STRUCT.search
    while (m := search(body, pos)) is not None:
        at = m.start()
        c = body[at]
        if c == 0x22:
            end = _string_end(body, at)
            if depth == 1 and end - at == 7 and body[at:end] == b'"model"':
                colon = _COLON.match(body, end)
                if colon is not None and body[colon.end() : colon.end() + 1] == b'"':
                    end = _string_end(body, colon.end())
                    spans.append((colon.end(), end))
            pos = end
        else:
            depth += 1 if c in (0x7B, 0x5B) else -1
            pos = at + 1
    return spans


def rewrite_model(body: bytes, new_model: str) -> bytes:
    """Return ``body`` with the top-level ``"model"`` value replaced by ``new_model``.

    Only the value's bytes change (no re-serialisation); nested ``"model"`` keys (e.g. a tool
    schema property) are left alone. Falls back to a full orjson round trip if the key is not
    found as a plain string (cannot happen for a body ``parse_chat_request`` accepted).
    """
    spans = _model_value_spans(body)
    if not spans:
        data = orjson.loads(body)
        data["model"] = new_model
        return orjson.dumps(data)
    value = orjson.dumps(new_model)
    for start, end in reversed(spans):
        body = body[:start] + value + body[end:]
    return body


def with_stream_usage(body: bytes, has_stream_options: bool) -> bytes:
    """Ask the upstream for a final usage chunk (``stream_options.include_usage``).

    When the client sent no ``stream_options`` the key is spliced in after the opening brace;
    otherwise ``body`` (already rewritten for the upstream) is re-encoded with the option set.
    """
    if not has_stream_options:
        i = body.index(b"{")
        return body[: i + 1] + b'"stream_options":{"include_usage":true},' + body[i + 1 :]
    data = orjson.loads(body)
    data["stream_options"] = {**(data.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(data)


def usage_from(obj: object) -> Usage | None:
    """Read an OpenAI ``usage`` object (prompt_tokens, completion_tokens,
    prompt_tokens_details.cached_tokens). Returns None when absent or malformed."""
    if not isinstance(obj, dict):
        return None
    u = Usage()
    pt, ct = obj.get("prompt_tokens"), obj.get("completion_tokens")
    u.prompt_tokens = pt if _count(pt) else None
    u.completion_tokens = ct if _count(ct) else None
    details = obj.get("prompt_tokens_details")
    if isinstance(details, dict) and _count(details.get("cached_tokens")):
        u.cached_tokens = details["cached_tokens"]
    return u


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0
