"""OpenAI-compatible providers as data: each profile lists one provider's documented quirks.

A profile is applied only when a provider's config names it (``profile: deepseek``); without
one, ``openai_compat`` passes bytes through untouched. ``apply_profile`` checks a parsed
request against the profile (pure): a parameter outside the provider's documented range, or
one it does not support, is an ``InvalidRequestError`` naming the parameter (never a silent
clamp or drop); a documented rename or a documented-neutral removal returns a new body, else
None (the caller keeps the client's bytes). ``normalize_usage`` maps a provider's own usage
fields onto OpenAI's (e.g. DeepSeek's ``prompt_cache_hit_tokens``).

Every fact cites the provider's page (read 2026-11); where a provider documents nothing, the
profile says nothing. Responses' ``reasoning_content`` (DeepSeek, Qwen, Zhipu, vLLM, llama.cpp)
already is the field the gateway forwards, so it passes through as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from relaygate.errors import InvalidRequestError

__all__ = ["PROFILES", "ModelRule", "Profile", "apply_profile", "get_profile", "normalize_usage"]

Range = tuple[float, float, bool]  # (min, max, max inclusive)


@dataclass(frozen=True, slots=True)
class ModelRule:
    """Extra rules for the models whose name matches ``pattern`` (``re.search``)."""

    pattern: str
    ranges: Mapping[str, Range] = field(default_factory=dict)
    unsupported: Mapping[str, str] = field(default_factory=dict)  # parameter -> why (doc)


@dataclass(frozen=True, slots=True)
class Profile:
    """One provider's documented behaviour.

    - ``ranges``: parameter -> (min, max, max inclusive); values outside -> 400.
    - ``unsupported``: parameter -> reason; any value other than the neutral default -> 400.
    - ``max_stop``: most stop sequences accepted.
    - ``tool_choices``: string tool_choice values accepted (None: all); a named function counts as
      ``"function"``.
    - ``renames``: request parameter -> the provider's name for it.
    - ``drop_assistant_fields``: assistant-message fields the provider rejects and documents as
      unused on input (removed, which is semantically neutral).
    - ``usage_fields``: provider usage key -> dotted OpenAI usage path.
    """

    name: str
    title: str
    base_url: str | None
    ranges: Mapping[str, Range] = field(default_factory=dict)
    unsupported: Mapping[str, str] = field(default_factory=dict)
    max_stop: int | None = None
    tool_choices: frozenset[str] | None = None
    renames: Mapping[str, str] = field(default_factory=dict)
    drop_assistant_fields: tuple[str, ...] = ()
    usage_fields: Mapping[str, str] = field(default_factory=dict)
    reasoning_field: str | None = None
    models: tuple[ModelRule, ...] = ()
    sources: Mapping[str, str] = field(default_factory=dict)


_OPENAI_RANGES: Mapping[str, Range] = MappingProxyType(
    {
        "temperature": (0, 2, True),
        "top_p": (0, 1, True),
        "presence_penalty": (-2, 2, True),
        "frequency_penalty": (-2, 2, True),
    }
)
_DS_API = "https://api-docs.deepseek.com/api/create-chat-completion"
_DS_REASONER = "https://api-docs.deepseek.com/guides/reasoning_model"
_QWEN = "https://www.alibabacloud.com/help/en/model-studio/compatibility-of-openai-with-dashscope"
_KIMI = "https://platform.moonshot.cn/docs/api/chat"
_ZHIPU = "https://docs.bigmodel.cn/api-reference/模型-api/对话补全"
_OLLAMA = "https://github.com/ollama/ollama/blob/main/docs/openai.md"

_REASONER_NO_EFFECT = f"accepted but has no effect on deepseek-reasoner ({_DS_REASONER})"
_REASONER_ERROR = f"not supported by deepseek-reasoner ({_DS_REASONER})"

_PROFILES = (
    Profile(
        "openai",
        "OpenAI",
        "https://api.openai.com/v1",
        ranges=_OPENAI_RANGES,
        sources={"ranges": "https://platform.openai.com/docs/api-reference/chat/create"},
    ),
    Profile(
        "deepseek",
        "DeepSeek",
        "https://api.deepseek.com",
        ranges=_OPENAI_RANGES,
        unsupported={
            "n": f"DeepSeek returns one choice; 'n' is not a documented parameter ({_DS_API})",
            "logit_bias": f"not a documented DeepSeek parameter ({_DS_API})",
        },
        max_stop=16,
        drop_assistant_fields=("reasoning_content",),
        usage_fields={"prompt_cache_hit_tokens": "prompt_tokens_details.cached_tokens"},
        reasoning_field="reasoning_content",
        models=(
            ModelRule(
                r"deepseek-reasoner",
                unsupported={
                    "temperature": _REASONER_NO_EFFECT,
                    "top_p": _REASONER_NO_EFFECT,
                    "presence_penalty": _REASONER_NO_EFFECT,
                    "frequency_penalty": _REASONER_NO_EFFECT,
                    "logprobs": _REASONER_ERROR,
                    "top_logprobs": _REASONER_ERROR,
                },
            ),
        ),
        sources={
            "ranges": _DS_API,
            "max_stop": _DS_API,
            "drop_assistant_fields": _DS_REASONER + " (reasoning_content in input messages answers 400; "
            "earlier rounds' CoT is never part of the context)",
            "usage_fields": "https://api-docs.deepseek.com/guides/kv_cache",
        },
    ),
    Profile(
        "qwen",
        "Alibaba Cloud Model Studio (DashScope compatible mode)",
        "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
        ranges={
            "temperature": (0, 2, False),
            "top_p": (0, 1, True),
            "presence_penalty": (-2, 2, True),
            "n": (1, 4, True),
        },
        reasoning_field="reasoning_content",
        sources={"ranges": _QWEN, "reasoning_field": _QWEN},
    ),
    Profile(
        "moonshot",
        "Moonshot AI Kimi (global endpoint: https://api.moonshot.ai/v1)",
        "https://api.moonshot.cn/v1",
        ranges={
            "temperature": (0, 1, True),
            "top_p": (0, 1, True),
            "presence_penalty": (-2, 2, True),
            "frequency_penalty": (-2, 2, True),
            "n": (1, 5, True),
        },
        tool_choices=frozenset({"none", "auto"}),
        sources={"ranges": _KIMI, "tool_choices": _KIMI + " (tool_choice 'required' is not supported)"},
    ),
    Profile(
        "zhipu",
        "Zhipu AI BigModel (GLM)",
        "https://open.bigmodel.cn/api/paas/v4",
        ranges={"temperature": (0, 1, True), "top_p": (0.01, 1, True)},
        unsupported={
            "n": f"GLM returns one choice ({_ZHIPU})",
            "presence_penalty": f"not a GLM parameter ({_ZHIPU})",
            "frequency_penalty": f"not a GLM parameter ({_ZHIPU})",
            "logit_bias": f"not a GLM parameter ({_ZHIPU})",
            "logprobs": f"not a GLM parameter ({_ZHIPU})",
            "top_logprobs": f"not a GLM parameter ({_ZHIPU})",
        },
        max_stop=1,
        tool_choices=frozenset({"auto"}),
        reasoning_field="reasoning_content",
        sources={
            "ranges": _ZHIPU,
            "max_stop": _ZHIPU + " (only one stop word)",
            "tool_choices": _ZHIPU + " (tool_choice supports only 'auto')",
        },
    ),
    Profile(
        "vllm",
        "vLLM OpenAI-compatible server",
        "http://localhost:8000/v1",
        reasoning_field="reasoning_content",
        sources={
            "base_url": "https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html",
            "reasoning_field": "https://docs.vllm.ai/en/latest/features/reasoning_outputs.html",
        },
    ),
    Profile(
        "ollama",
        "Ollama OpenAI compatibility",
        "http://localhost:11434/v1",
        unsupported={
            "n": f"listed as unsupported ({_OLLAMA})",
            "logit_bias": f"listed as unsupported ({_OLLAMA})",
            "tool_choice": f"listed as unsupported ({_OLLAMA})",
        },
        sources={"base_url": _OLLAMA, "unsupported": _OLLAMA},
    ),
    Profile(
        "llamacpp",
        "llama.cpp server",
        "http://localhost:8080/v1",
        reasoning_field="reasoning_content",
        sources={
            "base_url": "https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md",
            "reasoning_field": "https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md"
            " (--reasoning-format deepseek puts thoughts in message.reasoning_content)",
        },
    ),
)
PROFILES: Mapping[str, Profile] = MappingProxyType({p.name: p for p in _PROFILES})

# Values that mean "not set": sending them to a provider that lacks the parameter changes nothing.
_NEUTRAL: Mapping[str, tuple[Any, ...]] = MappingProxyType(
    {"n": (1,), "logprobs": (False,), "logit_bias": ({},), "tool_choice": ("auto",)}
)


def get_profile(name: str) -> Profile:
    """The profile ``name``; raises ``KeyError`` naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None


def _bad(profile: Profile, param: str, why: str, code: str = "unsupported_parameter") -> InvalidRequestError:
    return InvalidRequestError(f"'{param}' {why} [{profile.title}]", param=param, code=code)


def _check_range(profile: Profile, name: str, value: object, lim: Range) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return  # types are checked by protocols.openai.parse_chat_request
    lo, hi, hi_inclusive = lim
    if value < lo or value > hi or (value == hi and not hi_inclusive):
        shown = f"[{lo:g}, {hi:g}{']' if hi_inclusive else ')'}"
        raise _bad(profile, name, f"is {value:g}, outside the documented range {shown}", "invalid_value")


def apply_profile(profile: Profile, model: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Check request ``data`` (a parsed Chat Completions body) for upstream ``model``.

    Returns None when the body may go out unchanged, or a new body when a documented rename or
    neutral removal applies. Raises ``InvalidRequestError`` naming the parameter for a value out
    of range, an unsupported parameter, too many stop sequences or an unsupported tool_choice.
    """
    rules = [r for r in profile.models if re.search(r.pattern, model)]
    ranges = {**profile.ranges, **{k: v for r in rules for k, v in r.ranges.items()}}
    unsupported = {**profile.unsupported, **{k: v for r in rules for k, v in r.unsupported.items()}}
    for name, value in data.items():
        if value is None:
            continue
        if name in unsupported and value not in _NEUTRAL.get(name, ()):
            raise _bad(profile, name, f"is not supported: {unsupported[name]}")
        if name in ranges:
            _check_range(profile, name, value, ranges[name])
    stop = data.get("stop")
    if profile.max_stop is not None and isinstance(stop, list) and len(stop) > profile.max_stop:
        raise _bad(profile, "stop", f"has {len(stop)} sequences; at most {profile.max_stop} are supported")
    choice = data.get("tool_choice")
    if profile.tool_choices is not None and choice is not None:
        kind = choice if isinstance(choice, str) else "function"
        if kind not in profile.tool_choices:
            raise _bad(
                profile, "tool_choice", f"{kind!r} is not supported (only {sorted(profile.tool_choices)})"
            )
    return _rewrite(profile, data)


def _rewrite(profile: Profile, data: Mapping[str, Any]) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    for old, new in profile.renames.items():
        if old in data:
            out = out if out is not None else dict(data)
            out[new] = out.pop(old)
    if profile.drop_assistant_fields and isinstance(data.get("messages"), list):
        drop = profile.drop_assistant_fields
        hits = [
            i
            for i, m in enumerate(data["messages"])
            if isinstance(m, dict) and m.get("role") == "assistant" and any(f in m for f in drop)
        ]
        if hits:
            out = out if out is not None else dict(data)
            messages = list(out["messages"])
            for i in hits:
                messages[i] = {k: v for k, v in messages[i].items() if k not in drop}
            out["messages"] = messages
    return out


def normalize_usage(profile: Profile, usage: Mapping[str, Any]) -> dict[str, Any]:
    """``usage`` with the profile's own fields copied to their OpenAI paths (tokens); an OpenAI
    field the provider already filled wins. The provider's fields are kept."""
    out: dict[str, Any] = dict(usage)
    for src, path in profile.usage_fields.items():
        value = usage.get(src)
        if not isinstance(value, int) or isinstance(value, bool):
            continue
        head, _, leaf = path.rpartition(".")
        node = out
        for key in head.split(".") if head else []:
            node[key] = dict(node[key]) if isinstance(node.get(key), dict) else {}
            node = node[key]
        node.setdefault(leaf, value)
    return out
