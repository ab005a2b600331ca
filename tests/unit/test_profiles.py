"""Provider profiles (OpenAI-compatible quirks as data) and how openai_compat applies them."""

from __future__ import annotations

import typing
from typing import Any

import orjson
import pytest

from relaygate.config.schema import DeploymentConfig, OpenAIProvider, ProfileName
from relaygate.errors import InvalidRequestError
from relaygate.protocols.openai import parse_chat_request
from relaygate.providers.openai_compat import OpenAICompatProvider
from relaygate.providers.profiles import PROFILES, apply_profile, get_profile, normalize_usage

MSG = [{"role": "user", "content": "你好 👋"}]


def body(**kw: Any) -> dict[str, Any]:
    return {"model": "m", "messages": MSG, **kw}


def test_schema_names_every_profile() -> None:
    assert set(typing.get_args(ProfileName)) == set(PROFILES)
    for p in PROFILES.values():
        assert p.sources, p.name  # every quirk cites its page
        assert p.base_url is None or p.base_url.startswith("http")


def test_unknown_profile_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="profile"):
        OpenAIProvider(protocol="openai", base_url="http://x", profile="nope")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="known: openai"):
        get_profile("nope")


@pytest.mark.parametrize(
    ("profile", "model", "extra"),
    [
        ("openai", "gpt-4o", {"temperature": 2, "top_p": 1, "n": 3}),
        ("deepseek", "deepseek-chat", {"temperature": 1.3, "stop": ["a"] * 16, "n": 1, "logit_bias": {}}),
        ("deepseek", "deepseek-reasoner", {"max_tokens": 100, "logprobs": False}),
        ("qwen", "qwen-plus", {"temperature": 1.99, "n": 4, "top_p": 0.9}),
        ("moonshot", "moonshot-v1-8k", {"temperature": 1, "n": 5, "tool_choice": "auto"}),
        ("zhipu", "glm-4.5", {"temperature": 0.6, "top_p": 0.01, "stop": ["x"], "tool_choice": "auto"}),
        ("vllm", "any", {"temperature": 1.5, "n": 4, "logit_bias": {"1": 2}}),
        ("ollama", "llama3", {"temperature": 0.1, "n": 1, "tool_choice": "auto"}),
        ("llamacpp", "any", {"n": 2}),
    ],
)
def test_accepted_requests_are_left_alone(profile: str, model: str, extra: dict[str, Any]) -> None:
    assert apply_profile(PROFILES[profile], model, body(**extra)) is None


@pytest.mark.parametrize(
    ("profile", "model", "extra", "param"),
    [
        ("deepseek", "deepseek-chat", {"n": 2}, "n"),
        ("deepseek", "deepseek-chat", {"logit_bias": {"1": 3}}, "logit_bias"),
        ("deepseek", "deepseek-chat", {"stop": ["a"] * 17}, "stop"),
        ("deepseek", "deepseek-reasoner", {"temperature": 0.5}, "temperature"),
        ("deepseek", "deepseek-reasoner", {"top_p": 0.5}, "top_p"),
        ("deepseek", "deepseek-reasoner", {"logprobs": True}, "logprobs"),
        ("deepseek", "deepseek-reasoner", {"top_logprobs": 2}, "top_logprobs"),
        ("qwen", "qwen-plus", {"temperature": 2}, "temperature"),
        ("qwen", "qwen-plus", {"n": 5}, "n"),
        ("moonshot", "kimi", {"temperature": 1.5}, "temperature"),
        ("moonshot", "kimi", {"n": 6}, "n"),
        ("moonshot", "kimi", {"tool_choice": "required"}, "tool_choice"),
        ("zhipu", "glm-4.5", {"temperature": 1.2}, "temperature"),
        ("zhipu", "glm-4.5", {"top_p": 0.001}, "top_p"),
        ("zhipu", "glm-4.5", {"stop": ["a", "b"]}, "stop"),
        ("zhipu", "glm-4.5", {"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ("zhipu", "glm-4.5", {"presence_penalty": 0.5}, "presence_penalty"),
        ("zhipu", "glm-4.5", {"n": 2}, "n"),
        ("ollama", "llama3", {"n": 2}, "n"),
        ("ollama", "llama3", {"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_documented_violations_are_400s_naming_the_parameter(
    profile: str, model: str, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        apply_profile(PROFILES[profile], model, body(**extra))
    assert exc.value.status == 400 and exc.value.param == param
    assert f"'{param}'" in exc.value.message and PROFILES[profile].title in exc.value.message


def test_deepseek_drops_reasoning_content_from_history_only() -> None:
    messages = [
        {"role": "user", "content": "9.11 vs 9.8?"},
        {"role": "assistant", "content": "9.8", "reasoning_content": "compare decimals…"},
        {"role": "user", "content": "确定吗？"},  # noqa: RUF001
    ]
    data = body(messages=messages)
    out = apply_profile(PROFILES["deepseek"], "deepseek-reasoner", data)
    assert out is not None
    assert out["messages"][1] == {"role": "assistant", "content": "9.8"}
    assert out["messages"][0] is messages[0] and out["messages"][2] is messages[2]
    assert data["messages"][1]["reasoning_content"] == "compare decimals…"  # input untouched


@pytest.mark.parametrize(
    ("usage", "expected_cached"),
    [
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 5,
                "prompt_cache_hit_tokens": 64,
                "prompt_cache_miss_tokens": 36,
            },
            64,
        ),
        (
            {
                "prompt_tokens": 100,
                "prompt_cache_hit_tokens": 64,
                "prompt_tokens_details": {"cached_tokens": 70},
            },
            70,
        ),
        ({"prompt_tokens": 100}, None),
    ],
)
def test_deepseek_usage_cache_fields(usage: dict[str, Any], expected_cached: int | None) -> None:
    out = normalize_usage(PROFILES["deepseek"], usage)
    assert out.get("prompt_tokens_details", {}).get("cached_tokens") == expected_cached
    assert out["prompt_tokens"] == 100
    assert normalize_usage(PROFILES["openai"], usage) == usage


def test_reasoning_passthrough_is_declared() -> None:
    assert {n for n, p in PROFILES.items() if p.reasoning_field == "reasoning_content"} >= {
        "deepseek",
        "qwen",
        "zhipu",
        "vllm",
        "llamacpp",
    }


# --- openai_compat.build_body --------------------------------------------------------------


def provider(profile: str | None) -> OpenAICompatProvider:
    cfg = OpenAIProvider(protocol="openai", base_url="http://up/v1", profile=profile)  # type: ignore[arg-type]
    return OpenAICompatProvider("p", cfg)


def build(profile: str | None, data: dict[str, Any], model: str = "up-model", **kw: Any) -> bytes:
    req = parse_chat_request(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return provider(profile).build_body(
        DeploymentConfig(provider="p", model=model), req, stream_usage=False, **kw
    )


@pytest.mark.parametrize("profile", [None, "openai", "deepseek", "zhipu"])
def test_no_rewrite_keeps_the_clients_bytes(profile: str | None) -> None:
    data = body(temperature=0.5)
    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    out = build(profile, data, model="m")
    assert out == raw  # same model: not a byte changed, indentation included
    renamed = build(profile, data, model="other")
    assert orjson.loads(renamed) == {**data, "model": "other"}
    assert renamed.count(b"\n") == raw.count(b"\n")  # only the model value was spliced


def test_profile_violation_raises_before_sending() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        build("moonshot", body(temperature=1.7))
    assert exc.value.param == "temperature"
    assert build(None, body(temperature=1.7))  # without a profile: pure pass-through


def test_profile_removal_reserialises_with_the_upstream_model() -> None:
    data = body(messages=[*MSG, {"role": "assistant", "content": "ok", "reasoning_content": "r"}, *MSG])
    out = orjson.loads(build("deepseek", data, model="deepseek-reasoner"))
    assert out["model"] == "deepseek-reasoner"
    assert "reasoning_content" not in out["messages"][1]
    assert out["messages"][0]["content"] == "你好 👋"


def test_stream_usage_still_added_with_a_profile() -> None:
    data = body(stream=True)
    req = parse_chat_request(orjson.dumps(data))
    out = provider("deepseek").build_body(DeploymentConfig(provider="p", model="m"), req, stream_usage=True)
    assert orjson.loads(out)["stream_options"] == {"include_usage": True}
