"""Cache keys and the cache-or-not decision for one chat request (pure).

The key is ``{KEY_VERSION}:{route}:{scope}:{sha256}`` where ``scope`` is the tenant (or ``*``
when the route shares across tenants) and the digest covers the normalised request: messages,
tools and every parameter that can change the answer. Left out, because they change only how
the answer is delivered or labelled, never its content: ``model`` (the route stands for it),
``stream``, ``stream_options``, ``user``, ``metadata``, ``store``. Unknown parameters stay in
(a provider-specific knob may change the answer). Bump ``KEY_VERSION`` when this changes.

Parameter meanings: https://platform.openai.com/docs/api-reference/chat/create
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from relaygate.config.cache_schema import RouteCacheConfig

__all__ = [
    "EXCLUDED_PARAMS",
    "KEY_VERSION",
    "CacheKeys",
    "SkipReason",
    "cache_keys",
    "normalise",
    "request_bypass",
    "skip_reason",
]

KEY_VERSION = "rgc1"
EXCLUDED_PARAMS = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})
SHARED_SCOPE = "*"
# OpenAI's and Anthropic's default sampling temperature when a request sets none.
DEFAULT_TEMPERATURE = 1.0

SkipReason = str  # "temperature" | "n" | "logprobs"


@dataclass(frozen=True, slots=True)
class CacheKeys:
    """``exact``: the entry's key. ``context``: the digest of everything but the last user
    message's text (the semantic cache requires it to match exactly). ``query``: that text
    (what the semantic cache embeds; None when the last message is not a user message with text).
    ``scope``: ``{route}:{tenant or *}``, the partition of the semantic index."""

    exact: str
    context: str
    query: str | None
    scope: str


def _text_of(content: Any) -> Any:
    """A content list holding exactly one text part is the same prompt as the plain string."""
    if (
        isinstance(content, list)
        and len(content) == 1
        and isinstance(content[0], dict)
        and content[0].get("type") == "text"
        and set(content[0]) <= {"type", "text"}
    ):
        return content[0].get("text")
    return content


def _number(v: Any) -> Any:
    """``0.0`` and ``0`` are the same JSON number to every provider (top-level parameters)."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """The request without the excluded parameters, ``None`` values dropped (unset), integral
    numbers as integers, and single-text-part message contents as plain strings. Shape: a
    JSON-able dict."""
    out = {k: _number(v) for k, v in data.items() if k not in EXCLUDED_PARAMS and v is not None}
    messages = out.get("messages")
    if isinstance(messages, list):
        out["messages"] = [
            {**m, "content": _text_of(m["content"])} if isinstance(m, dict) and "content" in m else m
            for m in messages
        ]
    return out


def skip_reason(data: dict[str, Any], route: RouteCacheConfig) -> SkipReason | None:
    """Why this request must not be cached (None: it may be).

    - ``temperature``: sampling (``temperature > 0``, or unset, i.e. the provider default of 1.0)
      gives a different answer each time; replaying one would hide that, unless the route opts in
      with ``allow_nonzero_temperature``.
    - ``n``: ``n > 1`` asks for several distinct samples; a replay would fake their variety.
    - ``logprobs``: a replayed stream could not carry them faithfully; rare enough to not cache.
    Tools are cached: the gateway never runs them, and a replayed ``tool_calls`` answer is what
    the model would deterministically say again, so the client's side effects are the same.
    """
    temperature = data.get("temperature")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    if isinstance(temperature, int | float) and temperature > 0 and not route.allow_nonzero_temperature:
        return "temperature"
    n = data.get("n")
    if isinstance(n, int) and n > 1:
        return "n"
    if data.get("logprobs"):
        return "logprobs"
    return None


def request_bypass(cache_control: str | None) -> Literal["no-cache", "no-store"] | None:
    """The client's own cache directive from its ``Cache-Control`` request header (RFC 9111
    section 5.2.1): ``no-store`` (neither look up nor store; it wins over ``no-cache``),
    ``no-cache`` (do not answer from the cache, but store the fresh answer), else None.
    Directive names are case-insensitive; arguments and other directives are ignored."""
    if not cache_control:
        return None
    names = {part.split("=", 1)[0].strip().lower() for part in cache_control.split(",")}
    if "no-store" in names:
        return "no-store"
    return "no-cache" if "no-cache" in names else None


def _digest(obj: Any) -> str:
    try:
        raw = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:  # parsed JSON always serialises; a defensive guard
        raise ValueError(f"request is not serialisable: {exc}") from exc
    return hashlib.sha256(raw).hexdigest()


def _last_user_text(messages: list[Any]) -> str | None:
    if not messages or not isinstance(messages[-1], dict) or messages[-1].get("role") != "user":
        return None
    content = messages[-1].get("content")
    return content if isinstance(content, str) and content.strip() else None


def cache_keys(data: dict[str, Any], route: str, tenant: str | None, config: RouteCacheConfig) -> CacheKeys:
    """The keys of one OpenAI-shaped request ``data`` (as parsed) for ``route`` and ``tenant``."""
    who = SHARED_SCOPE if config.share_across_tenants else (tenant or "")
    scope = f"{route}:{who}"
    norm = normalise(data)
    # Route and tenant are hashed too: names may hold ':' and the prefix is only for reading.
    exact = f"{KEY_VERSION}:{scope}:{_digest([route, who, norm])}"
    raw = norm.get("messages")
    messages: list[Any] = raw if isinstance(raw, list) else []
    query = _last_user_text(messages)
    if query is None:
        return CacheKeys(exact, exact, None, scope)
    context = {**norm, "messages": [*messages[:-1], {**messages[-1], "content": None}]}
    return CacheKeys(exact, f"{KEY_VERSION}:{scope}:{_digest([route, who, context])}", query, scope)
