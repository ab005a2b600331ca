"""OpenAI Chat Completions <-> Anthropic Messages: request and response translation, as tables.

Fixtures in tests/fixtures/anthropic/ follow the shapes of Anthropic's documentation examples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.anthropic import (
    finish_reason_for,
    stop_reason_for,
    usage_to_anthropic,
    usage_to_openai,
    validate_request,
)
from relaygate.protocols.translate_anthropic import (
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

FIX = Path(__file__).parent.parent / "fixtures" / "anthropic"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def fixture(name: str) -> Any:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def to_anthropic(body: dict[str, Any], default: int = 1024) -> dict[str, Any]:
    return openai_request_to_anthropic(body, model="claude-x", default_max_tokens=default)


def areq(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "claude-x",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }
    body.update(kw)
    return body


def oreq(**kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


# ---------------------------------------------------------------- inbound: Anthropic request -> OpenAI


def test_doc_fixture_request_to_openai() -> None:
    out = anthropic_request_to_openai(fixture("request_tools_vision.json"))
    assert out["model"] == "claude-sonnet-4-5" and out["max_tokens"] == 1024
    system, user, assistant, tool1, tool2 = out["messages"]
    assert system == {
        "role": "system",
        "content": [{"type": "text", "text": "You are a terse travel assistant."}],
    }
    assert user["content"] == [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/paris-skyline.jpg"}},
        {"type": "text", "text": "Which two cities are these, and what is the weather there now?"},
    ]
    assert assistant["content"] == "Checking both cities."
    assert [c["id"] for c in assistant["tool_calls"]] == [
        "toolu_01RgParis000000000001",
        "toolu_01RgTokyo000000000002",
    ]
    assert json.loads(assistant["tool_calls"][1]["function"]["arguments"]) == {
        "location": "東京",
        "unit": "celsius",
    }
    assert tool1 == {
        "role": "tool",
        "tool_call_id": "toolu_01RgParis000000000001",
        "content": "14°C, light rain",
    }
    assert tool2["content"] == [{"type": "text", "text": "22°C, sunny ☀️"}]
    assert out["stop"] == ["\n\nHuman:"] and out["temperature"] == 0.4 and out["user"] == "user-7f3a"
    assert out["tools"][0]["function"]["parameters"]["required"] == ["location"]
    assert out["tool_choice"] == "auto" and "parallel_tool_calls" not in out


def test_doc_fixture_request_round_trips_through_openai() -> None:
    """Anthropic -> OpenAI -> Anthropic gives the request back, less the caching hint."""
    body = fixture("request_tools_vision.json")
    back = openai_request_to_anthropic(
        anthropic_request_to_openai(body), model=body["model"], default_max_tokens=1
    )
    body["system"][0].pop("cache_control")
    body["tool_choice"].pop("disable_parallel_tool_use")  # false is the default
    assert back == body


def test_system_string_stays_a_string_and_stream_asks_for_usage() -> None:
    out = anthropic_request_to_openai(
        areq(
            system="be brief",
            stream=True,
            top_k=5,
            top_p=0.9,
            cache_control={"type": "ephemeral"},
            speed="standard",
        )
    )
    assert out["messages"][0] == {"role": "system", "content": "be brief"}
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["top_k"] == 5 and out["top_p"] == 0.9


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "w"}, {"type": "function", "function": {"name": "w"}}, None),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        (
            {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
            {"type": "function", "function": {"name": "w"}},
            False,
        ),
    ],
)
def test_tool_choice_inbound(choice: dict[str, Any], expected: Any, parallel: bool | None) -> None:
    out = anthropic_request_to_openai(
        areq(tools=[{"name": "w", "input_schema": WEATHER_SCHEMA}], tool_choice=choice)
    )
    assert out["tool_choice"] == expected
    assert out.get("parallel_tool_calls") == parallel
    assert out["tools"] == [{"type": "function", "function": {"name": "w", "parameters": WEATHER_SCHEMA}}]


def test_tool_result_error_flag_is_visible_to_the_model() -> None:
    msgs = [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "sh", "input": {"cmd": "ls"}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "exit 2", "is_error": True},
                {"type": "text", "text": "fix it"},
            ],
        },
    ]
    out = anthropic_request_to_openai(areq(messages=msgs))["messages"]
    assert out[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "sh", "arguments": '{"cmd":"ls"}'}}
        ],
    }
    assert out[2] == {"role": "tool", "tool_call_id": "t1", "content": "Error: exit 2"}
    assert out[3] == {"role": "user", "content": [{"type": "text", "text": "fix it"}]}


def test_earlier_thinking_blocks_are_not_sent() -> None:
    msgs = [
        {"role": "user", "content": "2+2?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "easy", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xx"},
                {"type": "text", "text": "4"},
            ],
        },
        {"role": "user", "content": "and 3+3?"},
    ]
    out = anthropic_request_to_openai(areq(messages=msgs, thinking={"type": "disabled"}))
    assert out["messages"][1] == {"role": "assistant", "content": "4"}


def test_output_config_format_becomes_json_schema_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    out = anthropic_request_to_openai(
        areq(output_config={"format": {"type": "json_schema", "schema": schema}})
    )
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (areq(foo=1), "foo"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (areq(max_tokens=0), "max_tokens"),
        (areq(temperature=1.5), "temperature"),
        (areq(messages=[]), "messages"),
        (areq(messages=[{"role": "system", "content": "x"}]), "messages.0.role"),
        (
            areq(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "{"}]),
            "messages.1.role",
        ),
        (
            areq(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "document", "source": {"type": "text", "data": "x"}}],
                    }
                ]
            ),
            "messages.0.content.0.type",
        ),
        (
            areq(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
                    }
                ]
            ),
            "messages.0.content.0.source",
        ),
        (
            areq(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": "t",
                                "content": [{"type": "image", "source": {"type": "url", "url": "u"}}],
                            }
                        ],
                    }
                ]
            ),
            "messages.0.content.0.content.0.type",
        ),
        (areq(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools.0.type"),
        (areq(thinking={"type": "enabled", "budget_tokens": 2048}), "thinking"),
        (areq(metadata={"user_id": "u", "team": "x"}), "metadata.team"),
        (areq(output_config={"effort": "high"}), "output_config.effort"),
        (areq(mcp_servers=[{"type": "url", "url": "https://x", "name": "x"}]), "mcp_servers"),
        (areq(tool_choice={"type": "sometimes"}), "tool_choice.type"),
        (areq(stop_sequences="STOP"), "stop_sequences"),
        (areq(service_tier="priority"), "service_tier"),
        (areq(speed="fast"), "speed"),
        (areq(inference_geo="us"), "inference_geo"),
        (areq(diagnostics={"previous_message_id": "msg_1"}), "diagnostics"),
        (areq(workspace_id="w"), "workspace_id"),
    ],
)
def test_inbound_rejects_with_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        anthropic_request_to_openai(body)
    assert exc.value.param == param
    assert exc.value.status == 400
    assert param in exc.value.message


def test_validate_accepts_the_doc_fixture() -> None:
    validate_request(fixture("request_tools_vision.json"))


# --------------------------------------------------------------- outbound: OpenAI request -> Anthropic


def test_outbound_full_mapping() -> None:
    body = oreq(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is here?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "auto"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Rome"}'},
                    },
                ],
                "reasoning_content": "earlier thoughts",
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "and tomorrow?"},
        ],
        max_completion_tokens=300,
        temperature=0.7,
        top_p=0.5,
        stop="END",
        stream=True,
        stream_options={"include_usage": True},
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "w",
                    "description": "weather",
                    "parameters": WEATHER_SCHEMA,
                    "strict": True,
                },
            }
        ],
        tool_choice="required",
        parallel_tool_calls=False,
        user="u-1",
        n=1,
        presence_penalty=0,
        logprobs=False,
        response_format={"type": "text"},
    )
    out = to_anthropic(body)
    assert out == {
        "model": "claude-x",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in French."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "call_1", "name": "w", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "w", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_2",
                        "content": [{"type": "text", "text": "rain"}],
                    },
                ],
            },
            {"role": "user", "content": "and tomorrow?"},
        ],
        "temperature": 0.7,
        "top_p": 0.5,
        "stop_sequences": ["END"],
        "stream": True,
        "metadata": {"user_id": "u-1"},
        "tools": [{"name": "w", "description": "weather", "input_schema": WEATHER_SCHEMA, "strict": True}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_outbound_max_tokens_default_and_plain_system() -> None:
    out = to_anthropic(
        oreq(messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]), 777
    )
    assert out["max_tokens"] == 777 and out["system"] == "s"
    assert to_anthropic(oreq(max_tokens=5))["max_tokens"] == 5


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "w"}}, None, {"type": "tool", "name": "w"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "w"}},
            False,
            {"type": "tool", "name": "w", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice_outbound(choice: Any, parallel: bool | None, expected: dict[str, Any]) -> None:
    body = oreq(tools=[{"type": "function", "function": {"name": "w", "parameters": WEATHER_SCHEMA}}])
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    assert to_anthropic(body)["tool_choice"] == expected


def test_json_schema_response_format_maps_to_output_config() -> None:
    rf = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": WEATHER_SCHEMA}}
    assert to_anthropic(oreq(response_format=rf))["output_config"] == {
        "format": {"type": "json_schema", "schema": WEATHER_SCHEMA}
    }


def test_function_tool_without_parameters_gets_an_empty_object_schema() -> None:
    out = to_anthropic(oreq(tools=[{"type": "function", "function": {"name": "now"}}]))
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (oreq(temperature=1.5), "temperature"),
        (oreq(n=2), "n"),
        (oreq(logprobs=True), "logprobs"),
        (oreq(top_logprobs=2), "top_logprobs"),
        (oreq(seed=7), "seed"),
        (oreq(presence_penalty=0.5), "presence_penalty"),
        (oreq(frequency_penalty=-1), "frequency_penalty"),
        (oreq(logit_bias={"50256": -100}), "logit_bias"),
        (oreq(metadata={"k": "v"}), "metadata"),
        (oreq(reasoning_effort="high"), "reasoning_effort"),
        (oreq(functions=[{"name": "f"}]), "functions"),
        (oreq(max_tokens=10, max_completion_tokens=20), "max_tokens"),
        (oreq(service_tier="flex"), "service_tier"),
        (oreq(response_format={"type": "json_object"}), "response_format.type"),
        (
            oreq(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "x", "description": "d", "schema": {}},
                }
            ),
            "response_format.json_schema.description",
        ),
        (
            oreq(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "https://x", "detail": "low"}}
                        ],
                    }
                ]
            ),
            "messages[0].content[0].image_url.detail",
        ),
        (
            oreq(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                    }
                ]
            ),
            "messages[0].content[0].image_url.url",
        ),
        (
            oreq(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
                    }
                ]
            ),
            "messages[0].content[0].type",
        ),
        (
            oreq(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "late"}]),
            "messages[1].role",
        ),
        (oreq(messages=[{"role": "user", "content": "a", "name": "bob"}]), "messages[0].name"),
        (oreq(messages=[{"role": "function", "name": "f", "content": "a"}]), "messages[0].name"),
        (oreq(tools=[{"type": "custom", "custom": {"name": "c"}}]), "tools[0].type"),
        (
            oreq(
                messages=[
                    {"role": "user", "content": "a"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    },
                ]
            ),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            oreq(messages=[{"role": "user", "content": "a"}, {"role": "tool", "content": "x"}]),
            "messages[1].tool_call_id",
        ),
        (
            oreq(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": None}]),
            "messages[1].content",
        ),
        (
            oreq(messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]),
            "messages[1].role",
        ),
        (oreq(tool_choice={"type": "allowed_tools", "allowed_tools": {}}), "tool_choice"),
    ],
)
def test_outbound_rejects_with_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        to_anthropic(body)
    assert exc.value.param == param and exc.value.status == 400


def test_temperature_error_names_the_field_and_never_clamps() -> None:
    with pytest.raises(InvalidRequestError) as exc:
        to_anthropic(oreq(temperature=1.2))
    assert "temperature" in exc.value.message and "0 to 1" in exc.value.message
    assert to_anthropic(oreq(temperature=1))["temperature"] == 1


# ------------------------------------------------------------------------------------ responses


def test_anthropic_response_with_parallel_tools_to_openai() -> None:
    out = anthropic_response_to_openai(fixture("response_parallel_tools.json"), created=1700000000)
    assert out["object"] == "chat.completion" and out["created"] == 1700000000
    assert out["id"] == "msg_01RgParallel000007" and out["model"] == "claude-sonnet-4-5"
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "I'll look up both cities at once."
    calls = choice["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in calls] == [
        ("toolu_01RgWeather00000004", "get_weather"),
        ("toolu_01RgTime0000000005", "get_time"),
    ]
    assert json.loads(calls[1]["function"]["arguments"]) == {"timezone": "America/Los_Angeles"}
    assert out["usage"] == {
        "prompt_tokens": 472 + 100 + 1800,
        "completion_tokens": 91,
        "total_tokens": 472 + 100 + 1800 + 91,
        "prompt_tokens_details": {"cached_tokens": 1800},
        "cache_creation_input_tokens": 100,
    }


def test_anthropic_text_response_keeps_unicode() -> None:
    out = anthropic_response_to_openai(fixture("response_text.json"))
    assert out["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Bonjour! こんにちは 👋 مرحبا",
        "refusal": None,
    }
    assert out["choices"][0]["finish_reason"] == "stop"


def test_thinking_blocks_become_reasoning_content() -> None:
    resp = {
        "id": "msg_1",
        "model": "c",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "redacted_thinking", "data": "zz"},
            {"type": "text", "text": "42"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 5, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}},
    }
    out = anthropic_response_to_openai(resp)
    assert out["choices"][0]["message"]["reasoning_content"] == "hmm"
    assert out["choices"][0]["message"]["content"] == "42"
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, None),
    ],
)
def test_stop_reason_to_finish_reason(stop: str | None, finish: str | None) -> None:
    assert finish_reason_for(stop) == finish


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("function_call", "tool_use"),
        ("content_filter", "refusal"),
        ("insufficient_system_resource", "end_turn"),
        (None, None),
    ],
)
def test_finish_reason_to_stop_reason(finish: str | None, stop: str | None) -> None:
    assert stop_reason_for(finish) == stop


def completion(
    message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-chat",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}],
        "usage": usage or {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
    }


def test_openai_response_to_anthropic_text_and_usage() -> None:
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 7,
        "total_tokens": 107,
        "prompt_tokens_details": {"cached_tokens": 30},
    }
    out = openai_response_to_anthropic(
        completion({"content": "你好 👋 שלום"}, usage=usage), model="claude-sonnet-4-5"
    )
    assert out == {
        "id": "msg_chatcmpl-abc",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "text", "text": "你好 👋 שלום"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 70,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 30,
            "output_tokens": 7,
        },
    }


def test_openai_response_with_reasoning_and_parallel_tool_calls() -> None:
    msg = {
        "content": None,
        "reasoning_content": "need both",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "w", "arguments": '{"city":"Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "w", "arguments": '{"city":"东京"}'}},
        ],
    }
    out = openai_response_to_anthropic(completion(msg, "tool_calls"), model="m")
    assert out["content"] == [
        {"type": "thinking", "thinking": "need both", "signature": ""},
        {"type": "tool_use", "id": "call_a", "name": "w", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_b", "name": "w", "input": {"city": "东京"}},
    ]
    assert out["stop_reason"] == "tool_use"


def test_openai_response_with_vllm_reasoning_field() -> None:
    out = openai_response_to_anthropic(completion({"content": "9.8", "reasoning": "compare"}), model="m")
    assert out["content"] == [
        {"type": "thinking", "thinking": "compare", "signature": ""},
        {"type": "text", "text": "9.8"},
    ]


def test_openai_refusal_and_length() -> None:
    out = openai_response_to_anthropic(completion({"content": None, "refusal": "I can't help."}), model="m")
    assert out["content"] == [{"type": "text", "text": "I can't help."}] and out["stop_reason"] == "refusal"
    assert (
        openai_response_to_anthropic(completion({"content": "ab"}, "length"), model="m")["stop_reason"]
        == "max_tokens"
    )
    assert (
        openai_response_to_anthropic(completion({"content": ""}, "content_filter"), model="m")["stop_reason"]
        == "refusal"
    )


def test_deepseek_cache_hit_usage() -> None:
    usage = {
        "prompt_tokens": 50,
        "completion_tokens": 5,
        "prompt_cache_hit_tokens": 40,
        "prompt_cache_miss_tokens": 10,
    }
    assert usage_to_anthropic(usage)["cache_read_input_tokens"] == 40
    assert usage_to_anthropic(usage)["input_tokens"] == 10


def test_bad_tool_arguments_from_upstream_are_malformed() -> None:
    msg = {
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
    }
    with pytest.raises(UpstreamError) as exc:
        openai_response_to_anthropic(completion(msg, "tool_calls"), model="m")
    assert exc.value.error_class is ErrorClass.MALFORMED


@pytest.mark.parametrize(
    "usage",
    [
        {
            "input_tokens": 12,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 3,
        },
        {
            "input_tokens": 472,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1800,
            "output_tokens": 91,
        },
    ],
)
def test_usage_round_trip(usage: dict[str, int]) -> None:
    assert usage_to_anthropic(usage_to_openai(usage)) == usage
