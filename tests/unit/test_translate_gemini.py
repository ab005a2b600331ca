"""OpenAI <-> Gemini translation (pure): request tables, schema subset, responses, streams, unicode."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relaygate.errors import ErrorClass, InvalidRequestError, UpstreamError
from relaygate.protocols.gemini import generate_url, json_schema_to_gemini
from relaygate.protocols.translate_gemini import (
    GeminiToOpenAIStream,
    gemini_response_to_openai,
    gemini_usage_to_openai,
    openai_request_to_gemini,
)
from relaygate.protocols.translate_gemini_messages import SKIP_SIGNATURE
from relaygate.providers.gemini import GeminiStreamDecoder

FIX = Path(__file__).parent.parent / "fixtures" / "gemini"
UNICODE = [
    "你好，世界",  # noqa: RUF001
    "emoji 👋🏽🐈‍⬛ family 👨‍👩‍👧",
    "مرحبا بالعالم",
    "שלום עולם",
    "mixed 日本語 and עברית 🎉",
]


def fixture(name: str) -> Any:
    return orjson.loads((FIX / name).read_bytes())


def req(**kw: Any) -> dict[str, Any]:
    return {"model": "gpt-x", "messages": [{"role": "user", "content": "hi"}], **kw}


def ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


# --- requests ------------------------------------------------------------------------------


def test_doc_request_fixture_is_what_the_openai_request_becomes() -> None:
    body = {
        "model": "gemini-2.0-flash",
        "messages": [
            {"role": "system", "content": "You are a cat. Your name is Neko."},
            {"role": "user", "content": "Hello there"},
        ],
        "stop": ["Title"],
        "temperature": 1.0,
        "top_p": 0.8,
        "max_tokens": 800,
        "stream": False,
        "user": "u-1",
    }
    assert openai_request_to_gemini(body) == fixture("text_request.json")


@pytest.mark.parametrize(
    ("extra", "config"),
    [
        ({"temperature": 0}, {"temperature": 0}),
        ({"temperature": 2}, {"temperature": 2}),
        ({"top_p": 0.5}, {"topP": 0.5}),
        (
            {"presence_penalty": -1.5, "frequency_penalty": 2},
            {"presencePenalty": -1.5, "frequencyPenalty": 2},
        ),
        ({"seed": 42}, {"seed": 42}),
        ({"max_completion_tokens": 64}, {"maxOutputTokens": 64}),
        ({"max_tokens": 64, "max_completion_tokens": 64}, {"maxOutputTokens": 64}),
        ({"n": 3}, {"candidateCount": 3}),
        ({"n": 1}, None),
        ({"stop": "END"}, {"stopSequences": ["END"]}),
        ({"stop": ["a", "b"]}, {"stopSequences": ["a", "b"]}),
        ({"stop": []}, None),
        ({"response_format": {"type": "text"}}, None),
        ({"response_format": {"type": "json_object"}}, {"responseMimeType": "application/json"}),
        ({"reasoning_effort": "low"}, {"thinkingConfig": {"thinkingBudget": 1024}}),
        ({"reasoning_effort": "none"}, {"thinkingConfig": {"thinkingBudget": 0}}),
        ({"logprobs": False, "parallel_tool_calls": True, "logit_bias": {}}, None),
        ({"stream": True, "stream_options": {"include_usage": True}, "metadata": {"a": "b"}}, None),
    ],
)
def test_generation_config_mapping(extra: dict[str, Any], config: dict[str, Any] | None) -> None:
    out = openai_request_to_gemini(req(**extra))
    assert out.get("generationConfig") == config


def test_json_schema_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": ["integer", "null"]}},
        "required": ["name", "age"],
        "additionalProperties": False,
    }
    rf = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": schema}}
    cfg = openai_request_to_gemini(req(response_format=rf))["generationConfig"]
    assert cfg == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER", "nullable": True}},
            "required": ["name", "age"],
        },
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"max_tokens": 10, "max_completion_tokens": 20}, "max_tokens"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"oneOf": []}},
                }
            },
            "response_format.json_schema.schema.oneOf",
        ),
    ],
)
def test_untranslatable_parameters_are_400s_naming_the_field(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        openai_request_to_gemini(req(**extra))
    assert exc.value.status == 400
    assert exc.value.param == param
    assert param.split(".")[0] in exc.value.message


# --- messages ------------------------------------------------------------------------------

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def test_system_multipart_text_and_images() -> None:
    body = req(
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be terse."}]},
            {"role": "system", "content": "Answer in 日本語."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is"},
                    {"type": "text", "text": " in these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.JPG?x=1", "detail": "auto"},
                    },
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "A cat."}, {"type": "refusal", "refusal": "No."}],
            },
            {"role": "user", "content": "thanks"},
        ]
    )
    out = openai_request_to_gemini(body)
    assert out["systemInstruction"] == {"parts": [{"text": "Be terse."}, {"text": "Answer in 日本語."}]}
    assert out["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What is"},
                {"text": " in these?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.JPG?x=1"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
            ],
        },
        {"role": "model", "parts": [{"text": "A cat."}, {"text": "No."}]},
        {"role": "user", "parts": [{"text": "thanks"}]},
    ]


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "late"}], "messages[1].role"),
        ([{"role": "user", "content": "a", "name": "bob"}], "messages[0].name"),
        ([{"role": "function", "name": None, "content": "x"}], "messages[0].role"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/img"}}],
                }
            ],
            "messages[0].content[0].image_url.url",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
                }
            ],
            "messages[0].content[0].image_url.url",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "high"}}
                    ],
                }
            ],
            "messages[0].content[0].image_url.detail",
        ),
        (
            [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
            "messages[0].content[0].file.file_id",
        ),
        ([{"role": "user", "content": [{"type": "video", "video": {}}]}], "messages[0].content[0].type"),
        (
            [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "messages[0].content[0].type",
        ),
        (
            [
                {"role": "user", "content": "a"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
                    ],
                },
            ],
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            [{"role": "user", "content": "a"}, {"role": "tool", "tool_call_id": "nope", "content": "x"}],
            "messages[1].tool_call_id",
        ),
        ([{"role": "system", "content": "only a system prompt"}], "messages"),
    ],
)
def test_untranslatable_messages_are_400s(messages: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        openai_request_to_gemini(req(messages=messages))
    assert exc.value.param == param


def test_three_turn_tool_conversation_with_parallel_calls() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ]
    messages = [
        {"role": "user", "content": "Weather and time in 東京?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "東京"}'},
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                },
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "10:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "晴れ 25°C"}]},
        {"role": "assistant", "content": "Sunny, 10:00.", "reasoning_content": "dropped"},
        {"role": "user", "content": "And tomorrow?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "call_c",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"東京"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_c", "content": "雨"},
    ]
    out = openai_request_to_gemini(req(messages=messages, tools=tools, tool_choice="auto"))
    assert out["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                },
                {"name": "get_time"},
            ]
        }
    ]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    assert out["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time in 東京?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "東京"}},
                    "thoughtSignature": "c2ln",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_time", "response": {"output": "10:00"}}},
                {"functionResponse": {"name": "get_weather", "response": {"output": "晴れ 25°C"}}},
            ],
        },
        {"role": "model", "parts": [{"text": "Sunny, 10:00."}]},
        {"role": "user", "parts": [{"text": "And tomorrow?"}]},
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "東京"}},
                    "thoughtSignature": SKIP_SIGNATURE,
                }
            ],
        },
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "雨"}}}],
        },
    ]


FN = [
    {
        "type": "function",
        "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
    }
]


@pytest.mark.parametrize(
    ("choice", "strict", "config"),
    [
        (None, False, None),
        (None, True, {"mode": "VALIDATED"}),
        ("auto", True, {"mode": "VALIDATED"}),
        ("none", False, {"mode": "NONE"}),
        ("required", False, {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "f"}},
            False,
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "required",
                    "tools": [{"type": "function", "function": {"name": "f"}}],
                },
            },
            False,
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
    ],
)
def test_tool_choice_mapping(choice: Any, strict: bool, config: dict[str, Any] | None) -> None:
    tools = [{**FN[0], "function": {**FN[0]["function"], "strict": strict}}]
    out = openai_request_to_gemini(req(tools=tools, tool_choice=choice))
    assert out.get("toolConfig") == ({"functionCallingConfig": config} if config else None)


@pytest.mark.parametrize(
    ("tools", "choice", "param"),
    [
        (FN, {"type": "function", "function": {"name": "g"}}, "tool_choice.function.name"),
        (
            FN,
            {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}},
            "tool_choice.allowed_tools",
        ),
        ([{"type": "custom", "custom": {"name": "x"}}], None, "tools[0].type"),
        (None, "required", "tool_choice"),
        (
            [
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": {"type": "object", "patternProperties": {}}},
                }
            ],
            None,
            "tools[0].function.parameters.patternProperties",
        ),
    ],
)
def test_untranslatable_tools(tools: Any, choice: Any, param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        openai_request_to_gemini(req(tools=tools, tool_choice=choice))
    assert exc.value.param == param


# --- JSON Schema subset --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            {"type": "string", "enum": ["a", "b"], "description": "d"},
            {"type": "STRING", "enum": ["a", "b"], "description": "d"},
        ),
        ({"type": ["string", "null"]}, {"type": "STRING", "nullable": True}),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "INTEGER", "nullable": True}),
        (
            {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]},
        ),
        ({"const": "x"}, {"enum": ["x"]}),
        ({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "boolean"}, {"type": "BOOLEAN"}),
        (
            {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}, "minItems": 1},
            {"type": "ARRAY", "items": {"type": "NUMBER", "minimum": 0, "maximum": 1}, "minItems": 1},
        ),
        (
            {
                "type": "object",
                "properties": {
                    "p": {"$ref": "#/$defs/Pet"},
                    "q": {"allOf": [{"$ref": "#/$defs/Pet"}], "description": "q"},
                },
                "$defs": {
                    "Pet": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}},
                        "additionalProperties": False,
                    }
                },
            },
            {
                "type": "OBJECT",
                "properties": {
                    "p": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}},
                    "q": {"type": "OBJECT", "properties": {"name": {"type": "STRING"}}, "description": "q"},
                },
            },
        ),
    ],
)
def test_schema_translation(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert json_schema_to_gemini(schema, "s") == expected


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        ({"oneOf": [{"type": "string"}]}, "s.oneOf"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "s.additionalProperties"),
        ({"type": "integer", "enum": [1, 2]}, "s.enum"),
        ({"type": "array", "items": [{"type": "string"}]}, "s.items"),
        ({"not": {"type": "string"}}, "s.not"),
        ({"type": ["string", "integer"]}, "s.type"),
        ({"type": "number", "multipleOf": 2}, "s.multipleOf"),
        (
            {
                "$ref": "#/$defs/Node",
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
            },
            "s.properties.next.$ref",
        ),
        ({"$ref": "https://example.com/schema"}, "s.$ref"),
    ],
)
def test_schema_keywords_gemini_cannot_express(schema: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as exc:
        json_schema_to_gemini(schema, "s")
    assert exc.value.param == param


def test_generate_url() -> None:
    assert generate_url("https://h/v1beta/", "gemini-2.0-flash", stream=False) == (
        "https://h/v1beta/models/gemini-2.0-flash:generateContent"
    )
    assert generate_url("https://h/v1beta", "tunedModels/t1", stream=True) == (
        "https://h/v1beta/tunedModels/t1:streamGenerateContent?alt=sse"
    )


# --- responses -----------------------------------------------------------------------------


def test_text_response_fixture() -> None:
    out = gemini_response_to_openai(fixture("text_response.json"), model="gemini-2.0-flash", created=7)
    assert out == {
        "id": "chatcmpl-mAitaLmkHPPlz7IPvtfUqQ4",
        "object": "chat.completion",
        "created": 7,
        "model": "gemini-2.0-flash",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Meow! Neko here. 你好 👋 مرحبا",
                    "refusal": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 11,
            "total_tokens": 23,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }


def test_parallel_function_calls_fixture() -> None:
    out = gemini_response_to_openai(fixture("function_call_response.json"), model="g", new_id=ids())
    choice = out["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_0",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"東京"}'},
            "extra_content": {"google": {"thought_signature": "c2lnLTE="}},
        },
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz":"Asia/Tokyo"}'},
        },
    ]


def test_tool_call_round_trip_keeps_signature_and_arguments() -> None:
    resp = gemini_response_to_openai(fixture("function_call_response.json"), model="g", new_id=ids())
    message = resp["choices"][0]["message"]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in message["tool_calls"]]
    out = openai_request_to_gemini(req(messages=[{"role": "user", "content": "q"}, message, *results]))
    original = fixture("function_call_response.json")["candidates"][0]["content"]
    assert out["contents"][1] == original
    assert [p["functionResponse"]["name"] for p in out["contents"][2]["parts"]] == ["get_weather", "get_time"]


def test_thinking_and_cached_usage_fixture() -> None:
    out = gemini_response_to_openai(fixture("thinking_cached_response.json"), model="g")
    message = out["choices"][0]["message"]
    assert message["content"] == "4"
    assert message["reasoning_content"] == "The user asks for a sum. 2 + 2 = 4."
    assert out["usage"] == {
        "prompt_tokens": 2100,
        "completion_tokens": 26,
        "total_tokens": 2126,
        "prompt_tokens_details": {"cached_tokens": 2048},
        "completion_tokens_details": {"reasoning_tokens": 25},
    }


@pytest.mark.parametrize(
    ("reason", "tools", "expected"),
    [
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", False, "length"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("OTHER", False, "stop"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        (None, False, "stop"),
    ],
)
def test_finish_reasons(reason: str | None, tools: bool, expected: str) -> None:
    parts: list[dict[str, Any]] = [{"text": "x"}]
    if tools:
        parts.append({"functionCall": {"name": "f", "args": {}}})
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if reason:
        cand["finishReason"] = reason
    out = gemini_response_to_openai({"candidates": [cand]}, model="g")
    assert out["choices"][0]["finish_reason"] == expected


def test_candidates_become_choices() -> None:
    cands = [
        {"content": {"role": "model", "parts": [{"text": t}]}, "finishReason": "STOP", "index": i}
        for i, t in enumerate(["a", "b"])
    ]
    out = gemini_response_to_openai({"candidates": cands}, model="g")
    assert [(c["index"], c["message"]["content"]) for c in out["choices"]] == [(0, "a"), (1, "b")]
    assert "usage" not in out


def test_blocked_prompt_is_a_content_policy_error() -> None:
    with pytest.raises(UpstreamError) as exc:
        gemini_response_to_openai(fixture("prompt_blocked.json"), model="g")
    assert exc.value.error_class is ErrorClass.CONTENT_POLICY
    with pytest.raises(UpstreamError):
        GeminiToOpenAIStream(model="g").feed(fixture("prompt_blocked.json"))


def test_usage_with_tool_use_prompt_tokens() -> None:
    meta = {
        "promptTokenCount": 10,
        "toolUsePromptTokenCount": 5,
        "candidatesTokenCount": 3,
        "totalTokenCount": 18,
    }
    assert gemini_usage_to_openai(meta) == {
        "prompt_tokens": 15,
        "completion_tokens": 3,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert gemini_usage_to_openai(None) is None


# --- streams -------------------------------------------------------------------------------


def sse_bytes(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)


def openai_events(raw: bytes) -> list[Any]:
    out = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            data = block[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out


def accumulate(events: list[Any]) -> dict[int, dict[str, Any]]:
    """What an OpenAI SDK stream accumulator builds: per choice content, tool calls, finish."""
    acc: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev == "[DONE]":
            continue
        for ch in ev["choices"]:
            a = acc.setdefault(ch["index"], {"content": "", "reasoning": "", "tools": {}, "finish": None})
            d = ch["delta"]
            a["content"] += d.get("content") or ""
            a["reasoning"] += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                slot = a["tools"].setdefault(tc["index"], {"id": None, "name": "", "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += tc.get("function", {}).get("name") or ""
                slot["arguments"] += tc.get("function", {}).get("arguments") or ""
            a["finish"] = ch["finish_reason"] or a["finish"]
    return acc


def test_doc_stream_fixture_translates_incrementally() -> None:
    raw = (FIX / "text_stream.sse").read_bytes()
    dec = GeminiStreamDecoder(model="g", include_usage=True)
    first = dec.feed(raw[: raw.index(b"\r\n\r\n") + 4])
    assert openai_events(first)[0]["choices"][0]["delta"] == {"role": "assistant", "content": "从前，"}  # noqa: RUF001
    events = openai_events(first + dec.feed(raw[raw.index(b"\r\n\r\n") + 4 :]) + dec.finish())
    assert events[-1] == "[DONE]"
    assert events[-2]["choices"] == [] and events[-2]["usage"]["completion_tokens"] == 12
    acc = accumulate(events)
    assert acc[0]["content"] == "从前，a cat 🐈‍⬛ said שלום עולם."  # noqa: RUF001
    assert acc[0]["finish"] == "stop"


@pytest.mark.parametrize("text", UNICODE)
def test_unicode_survives_a_split_at_every_byte(text: str) -> None:
    words = text.split(" ")
    events = [
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [{"text": w + (" " if i < len(words) - 1 else "")}],
                    },
                    "index": 0,
                }
            ]
        }
        for i, w in enumerate(words)
    ]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    raw = sse_bytes(events)
    for cut in range(1, len(raw)):
        dec = GeminiStreamDecoder(model="g", include_usage=False)
        out = dec.feed(raw[:cut]) + dec.feed(raw[cut:]) + dec.finish()
        acc = accumulate(openai_events(out))
        assert acc[0]["content"] == text, cut
        assert out.endswith(b"data: [DONE]\n\n")


def test_unicode_survives_byte_by_byte_feeding() -> None:
    text = "".join(UNICODE)
    raw = sse_bytes([{"candidates": [{"content": {"parts": [{"text": text}]}, "finishReason": "STOP"}]}])
    dec = GeminiStreamDecoder(model="g", include_usage=False)
    out = b"".join(dec.feed(raw[i : i + 1]) for i in range(len(raw))) + dec.finish()
    assert accumulate(openai_events(out))[0]["content"] == text


@settings(max_examples=60, deadline=None)
@given(
    pieces=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
)
def test_any_text_any_splits(pieces: list[str], cuts: list[int]) -> None:
    events = [{"candidates": [{"content": {"parts": [{"text": p}]}, "index": 0}]} for p in pieces]
    events[-1]["candidates"][0]["finishReason"] = "STOP"
    raw = sse_bytes(events)
    bounds = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})
    dec = GeminiStreamDecoder(model="g", include_usage=False)
    out = b"".join(dec.feed(raw[a:b]) for a, b in itertools.pairwise(bounds)) + dec.finish()
    assert accumulate(openai_events(out))[0]["content"] == "".join(pieces)


def test_stream_tool_calls_are_whole_ordered_deltas() -> None:
    stream = GeminiToOpenAIStream(model="g", new_id=ids())
    out = stream.feed({"candidates": [{"content": {"parts": [{"text": "Let me check. "}]}}]})
    out += stream.feed(
        {
            "candidates": [
                {
                    "content": {
                        "parts": [
                            {"functionCall": {"name": "a", "args": {"x": "ü"}}, "thoughtSignature": "s1"},
                            {"functionCall": {"name": "b", "args": {}}},
                        ]
                    }
                }
            ]
        }
    )
    out += stream.feed(
        {
            "candidates": [
                {
                    "content": {"parts": [{"functionCall": {"name": "c", "args": {"n": 1}}}]},
                    "finishReason": "STOP",
                }
            ]
        }
    )
    deltas = [c["choices"][0]["delta"] for c in out]
    assert deltas[0] == {"role": "assistant", "content": "Let me check. "}
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert [(c["index"], c["id"], c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        (0, "call_0", "a", '{"x":"ü"}'),
        (1, "call_1", "b", "{}"),
        (2, "call_2", "c", '{"n":1}'),
    ]
    assert calls[0]["extra_content"] == {"google": {"thought_signature": "s1"}}
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert stream.finished
    assert stream.finish() == []  # include_usage off


def test_stream_thoughts_then_text_and_a_tool_call_first() -> None:
    stream = GeminiToOpenAIStream(model="g", include_usage=True, new_id=ids())
    out = stream.feed(
        {"candidates": [{"content": {"parts": [{"text": "hmm", "thought": True}, {"text": "ok"}]}}]}
    )
    assert [c["choices"][0]["delta"] for c in out] == [
        {"role": "assistant", "reasoning_content": "hmm"},
        {"content": "ok"},
    ]
    other = GeminiToOpenAIStream(model="g", new_id=ids())
    first = other.feed({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f"}}]}}]})
    assert first[0]["choices"][0]["delta"]["role"] == "assistant"
    assert first[0]["choices"][0]["delta"]["content"] is None
    assert stream.finish() == []  # no usage reported yet


def test_stream_multiple_candidates_and_safety_stop() -> None:
    stream = GeminiToOpenAIStream(model="g")
    out = stream.feed(
        {
            "candidates": [
                {"content": {"parts": [{"text": "a"}]}, "index": 0},
                {"content": {"parts": [{"text": "b"}]}, "index": 1, "finishReason": "SAFETY"},
            ]
        }
    )
    assert not stream.finished
    out += stream.feed(
        {"candidates": [{"content": {"parts": [{"text": "c"}]}, "index": 0, "finishReason": "MAX_TOKENS"}]}
    )
    acc = accumulate(out)
    assert (acc[0]["content"], acc[0]["finish"]) == ("ac", "length")
    assert (acc[1]["content"], acc[1]["finish"]) == ("b", "content_filter")
    assert stream.finished


def test_cut_stream_has_no_done() -> None:
    dec = GeminiStreamDecoder(model="g", include_usage=True)
    out = dec.feed(sse_bytes([{"candidates": [{"content": {"parts": [{"text": "half"}]}}]}])) + dec.finish()
    assert b"[DONE]" not in out
    assert accumulate(openai_events(out))[0]["finish"] is None


def test_stream_error_events() -> None:
    dec = GeminiStreamDecoder(model="g", include_usage=False)
    with pytest.raises(UpstreamError) as exc:
        dec.feed(
            b'data: {"error": {"code": 503, "message": "The model is overloaded.", '
            b'"status": "UNAVAILABLE"}}\r\n\r\n'
        )
    assert exc.value.error_class is ErrorClass.SERVER_ERROR
    with pytest.raises(UpstreamError) as exc:
        GeminiStreamDecoder(model="g", include_usage=False).feed(b'data: {"candidates": [\r\n\r\n')
    assert exc.value.error_class is ErrorClass.MALFORMED
