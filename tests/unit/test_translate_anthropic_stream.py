"""Stream translation both ways, checked with the SDKs' own stream accumulators.

Anthropic -> OpenAI: the documentation-shaped SSE fixtures through ``AnthropicToOpenAIStream``,
accumulated by the openai SDK's ``ChatCompletionStreamState``. OpenAI -> Anthropic: chunk
streams through ``OpenAIToAnthropicStream``, checked event by event and accumulated by the
anthropic SDK's ``accumulate_event`` (what ``messages.stream()`` uses), including a three-turn
streaming tool conversation with parallel tool calls, translated both ways.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from relaygate.protocols.sse import SSEDecoder
from relaygate.protocols.translate_anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    openai_request_to_anthropic,
)

FIX = Path(__file__).parent.parent / "fixtures" / "anthropic"


def sse_events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    dec = SSEDecoder()
    events = dec.feed(raw)
    tail = dec.finish()
    if tail is not None:
        events.append(tail)
    return [(ev.event, orjson.loads(ev.data)) for ev in events if ev.data is not None]


def to_openai(
    events: list[tuple[str | None, dict[str, Any]]], **kw: Any
) -> tuple[list[dict[str, Any]], AnthropicToOpenAIStream]:
    tr = AnthropicToOpenAIStream(**kw)
    chunks = [c for name, data in events for c in tr.feed(name, data)]
    return chunks + tr.finish(), tr


def openai_final(chunks: list[dict[str, Any]]) -> ChatCompletion:
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    for c in chunks:
        if "error" in c:
            continue
        state.handle_chunk(ChatCompletionChunk.model_validate(c))
    return state.get_final_completion()


def anthropic_final(events: list[tuple[str, dict[str, Any]]]) -> Message:
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for name, data in events:
        assert name == data["type"]
        if name in ("ping", "error"):
            continue
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=json_bufs)  # type: ignore[arg-type]
    assert snapshot is not None
    return snapshot


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    c: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "up"}
    c["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        c["usage"] = usage
    return c


# ------------------------------------------------------------------ Anthropic events -> OpenAI chunks


def test_text_fixture_to_openai() -> None:
    chunks, tr = to_openai(sse_events((FIX / "stream_text.sse").read_bytes()), created=5)
    assert tr.done and tr.finish_reason == "stop"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    final = openai_final(chunks)
    assert final.id == "msg_01RgTextStream000006" and final.created == 5
    assert final.choices[0].message.content == "Hello, 世界 🌏! שלום עולם"
    assert final.choices[0].finish_reason == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 35,
        "completion_tokens": 15,
        "total_tokens": 50,
        "prompt_tokens_details": {"cached_tokens": 10},
    }


def test_tool_use_fixture_keeps_argument_deltas_in_order_with_tool_indexes() -> None:
    chunks, _ = to_openai(sse_events((FIX / "stream_tool_use.sse").read_bytes()))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    tool_deltas = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert tool_deltas[0] == {
        "index": 0,
        "id": "toolu_01RgWeather00000004",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert [t["function"]["arguments"] for t in tool_deltas if t["index"] == 0][1:] == [
        '{"location":',
        ' "北京',
        ', 中国"',
        ', "unit": "celsius"}',
    ]
    assert tool_deltas[-2]["index"] == 1 and tool_deltas[-2]["id"] == "toolu_01RgTime0000000005"
    final = openai_final(chunks)
    msg = final.choices[0].message
    assert msg.content == "Okay, let me check the weather in 北京:"
    assert msg.tool_calls is not None
    assert [json.loads(c.function.arguments) for c in msg.tool_calls] == [  # type: ignore[union-attr]
        {"location": "北京, 中国", "unit": "celsius"},
        {"timezone": "Asia/Shanghai"},
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_thinking_fixture_becomes_reasoning_content() -> None:
    chunks, _ = to_openai(sse_events((FIX / "stream_thinking.sse").read_bytes()))
    reasoning = "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks if c["choices"])
    assert reasoning == "27 * 453 = 27 * 400 + 27 * 53 = 10800 + 1431 = 12231"
    assert openai_final(chunks).choices[0].message.content == "27 × 453 = 12,231"  # noqa: RUF001
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 41}


def test_error_event_becomes_in_band_error_with_status() -> None:
    chunks, tr = to_openai(sse_events((FIX / "stream_error.sse").read_bytes()))
    assert chunks[-1] == {"error": {"message": "Overloaded", "type": "overloaded_error", "code": 529}}
    assert not tr.done


def test_without_include_usage_there_is_no_usage_chunk() -> None:
    chunks, _ = to_openai(sse_events((FIX / "stream_text.sse").read_bytes()), include_usage=False)
    assert all(c["choices"] for c in chunks)


# ------------------------------------------------------------------ OpenAI chunks -> Anthropic events


def parallel_tool_stream() -> list[dict[str, Any]]:
    """A DeepSeek-style stream: reasoning, text, then two parallel tool calls in pieces."""
    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "User wants "}),
        chunk({"reasoning_content": "two cities."}),
        chunk({"content": "Checking "}),
        chunk({"content": "東京 and القاهرة."}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "w", "arguments": ""},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"東京"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"ci'},
                    }
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 1, "function": {"arguments": 'ty": "القاهرة"}'}}]}),
        chunk({}, "tool_calls"),
        chunk(
            None,
            usage={
                "prompt_tokens": 120,
                "completion_tokens": 40,
                "total_tokens": 160,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
        ),
    ]


def test_parallel_tool_stream_event_sequence_is_exact() -> None:
    tr = OpenAIToAnthropicStream("claude-sonnet-4-5", message_id="msg_fixed")
    events = [e for c in parallel_tool_stream() for e in tr.feed(c)] + tr.finish()
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        # a parallel call is held while the first one streams, then sent whole (one delta)
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert [d["index"] for n, d in events if n == "content_block_start"] == [0, 1, 2, 3]
    assert starts[2] == {"type": "tool_use", "id": "call_a", "name": "w", "input": {}}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 100,
            "output_tokens": 40,
        },
    }
    final = anthropic_final(events)
    assert final.id == "msg_fixed" and final.model == "claude-sonnet-4-5"
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 20 and final.usage.cache_read_input_tokens == 100
    assert final.usage.output_tokens == 40
    blocks = [b.to_dict() for b in final.content]
    assert blocks == [
        {"type": "thinking", "thinking": "User wants two cities.", "signature": ""},
        {"type": "text", "text": "Checking 東京 and القاهرة."},
        {"type": "tool_use", "id": "call_a", "name": "w", "input": {"city": "東京"}},
        {"type": "tool_use", "id": "call_b", "name": "w", "input": {"city": "القاهرة"}},
    ]


def test_message_delta_waits_for_the_usage_chunk_then_finish_closes() -> None:
    tr = OpenAIToAnthropicStream("m")
    out = tr.feed(chunk({"content": "hi"}))
    assert [n for n, _ in out] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    out = tr.feed(chunk({}, "length"))
    assert [n for n, _ in out] == ["content_block_stop"] and tr.finished
    out = tr.feed(chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2}))
    assert [n for n, _ in out] == ["message_delta"] and out[0][1]["delta"]["stop_reason"] == "max_tokens"
    assert tr.finish() == [("message_stop", {"type": "message_stop"})]
    assert tr.finish() == []


def test_empty_upstream_stream_still_closes_properly() -> None:
    tr = OpenAIToAnthropicStream("m", message_id="msg_x")
    events = tr.finish()
    assert [n for n, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert not tr.finished
    assert anthropic_final(events).content == []


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # DeepSeek; vLLM >= 0.11
def test_reasoning_deltas_become_a_thinking_block(field: str) -> None:
    tr = OpenAIToAnthropicStream("m")
    events = tr.feed(chunk({"role": "assistant", "content": ""}))
    events += tr.feed(chunk({field: "think "})) + tr.feed(chunk({field: "more"}))
    events += tr.feed(chunk({"content": "answer"})) + tr.feed(chunk({}, "stop")) + tr.finish()
    final = anthropic_final(events)
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "think more"  # type: ignore[union-attr]
    assert final.content[1].text == "answer"  # type: ignore[union-attr]


def test_refusal_delta_is_text_with_refusal_stop_reason() -> None:
    tr = OpenAIToAnthropicStream("m")
    events = tr.feed(chunk({"refusal": "No."})) + tr.feed(chunk({}, "stop")) + tr.finish()
    final = anthropic_final(events)
    assert final.stop_reason == "refusal" and final.content[0].to_dict() == {"type": "text", "text": "No."}


# ------------------------------------------------------------- three-turn tool conversation, both ways


def openai_stream_for(turn: int) -> list[dict[str, Any]]:
    """A scripted OpenAI-protocol upstream for the conversation below."""
    if turn == 0:
        return parallel_tool_stream()
    if turn == 1:
        return [
            chunk({"role": "assistant", "content": None}),
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_c",
                            "type": "function",
                            "function": {"name": "convert", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"c": 21}'}}]}),
            chunk({}, "tool_calls"),
            chunk(None, usage={"prompt_tokens": 200, "completion_tokens": 9}),
        ]
    return [
        chunk({"content": "Tokyo 21°C (70°F), "}),
        chunk({"content": "Cairo 30°C. ☀️"}),
        chunk({}, "stop"),
        chunk(None, usage={"prompt_tokens": 260, "completion_tokens": 12}),
    ]


TOOLS = [
    {
        "name": "w",
        "description": "weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"name": "convert", "input_schema": {"type": "object", "properties": {"c": {"type": "number"}}}},
]


def test_three_turn_streaming_tool_conversation_anthropic_client_openai_upstream() -> None:
    """An Anthropic-SDK agent loop served by an OpenAI-protocol upstream, streamed each turn."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "Weather in Tokyo and Cairo, with Fahrenheit?"}
    ]
    results = {"call_a": "21°C", "call_b": "30°C", "call_c": "70°F"}
    for turn in range(3):
        oa = anthropic_request_to_openai(
            {"model": "claude-x", "max_tokens": 256, "stream": True, "tools": TOOLS, "messages": messages}
        )
        if turn == 1:  # the tool results of turn 0 arrive as tool messages right after the calls
            assert [m["role"] for m in oa["messages"][-3:]] == ["assistant", "tool", "tool"]
            assert [m.get("tool_call_id") for m in oa["messages"][-2:]] == ["call_a", "call_b"]
        tr = OpenAIToAnthropicStream("claude-x")
        events = [e for c in openai_stream_for(turn) for e in tr.feed(c)] + tr.finish()
        final = anthropic_final(events)
        messages.append({"role": "assistant", "content": [b.to_dict() for b in final.content]})
        uses = [b for b in final.content if b.type == "tool_use"]
        if turn < 2:
            assert final.stop_reason == "tool_use"
            messages.append(
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": u.id, "content": results[u.id]} for u in uses
                    ],
                }
            )
    assert final.stop_reason == "end_turn"
    assert final.content[0].to_dict() == {"type": "text", "text": "Tokyo 21°C (70°F), Cairo 30°C. ☀️"}
    assert len(messages) == 6


def anthropic_stream_for(turn: int) -> bytes:
    """A scripted Anthropic-protocol upstream: turn 0 is the tool-use fixture (two parallel
    calls), turn 1 one more call, turn 2 the text fixture."""
    if turn == 0:
        return (FIX / "stream_tool_use.sse").read_bytes()
    if turn == 2:
        return (FIX / "stream_text.sse").read_bytes()
    events = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_t1",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "usage": {"input_tokens": 300, "output_tokens": 1},
                },
            },
        ),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "tool_use", "id": "toolu_c", "name": "convert", "input": {}},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": '{"c": 2'},
            },
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": "1}"},
            },
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(b"event: " + n.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n" for n, d in events)


def test_three_turn_streaming_tool_conversation_openai_client_anthropic_upstream() -> None:
    """An OpenAI-SDK agent loop served by an Anthropic-protocol upstream, streamed each turn."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Beijing and the time there?"}]
    tools = [
        {"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}} for t in TOOLS
    ]
    for turn in range(3):
        body = openai_request_to_anthropic(
            {"model": "gpt-x", "stream": True, "tools": tools, "messages": messages},
            model="claude-x",
            default_max_tokens=512,
        )
        if turn == 1:  # both results in one user turn, ids preserved
            assert body["messages"][-1]["content"] == [
                {"type": "tool_result", "tool_use_id": "toolu_01RgWeather00000004", "content": "result 0"},
                {"type": "tool_result", "tool_use_id": "toolu_01RgTime0000000005", "content": "result 1"},
            ]
            assert [b["type"] for b in body["messages"][-2]["content"]] == ["text", "tool_use", "tool_use"]
        chunks, _ = to_openai(sse_events(anthropic_stream_for(turn)))
        final = openai_final(chunks)
        msg = final.choices[0].message
        messages.append(msg.model_dump(exclude_none=True, exclude={"parsed"}))
        for k, call in enumerate(msg.tool_calls or []):
            messages.append({"role": "tool", "tool_call_id": call.id, "content": f"result {k}"})
        if turn < 2:
            assert final.choices[0].finish_reason == "tool_calls"
    assert final.choices[0].finish_reason == "stop"
    assert final.choices[0].message.content == "Hello, 世界 🌏! שלום עולם"
    assert messages[4]["tool_calls"][0]["function"] == {"name": "convert", "arguments": '{"c": 21}'}


@pytest.mark.parametrize("name", ["stream_text.sse", "stream_tool_use.sse", "stream_thinking.sse"])
def test_anthropic_to_openai_to_anthropic_stream_keeps_the_message(name: str) -> None:
    """Fixture stream -> OpenAI chunks -> Anthropic events: the SDK accumulates the same content."""
    events = sse_events((FIX / name).read_bytes())
    original = anthropic_final([(n or d["type"], d) for n, d in events])
    chunks, _ = to_openai(events)
    tr = OpenAIToAnthropicStream(original.model, message_id=original.id)
    again = anthropic_final([e for c in chunks for e in tr.feed(c)] + tr.finish())
    strip = [
        {**b.to_dict(), "signature": ""} if b.type == "thinking" else b.to_dict() for b in original.content
    ]
    assert [b.to_dict() for b in again.content] == strip
    assert again.stop_reason == original.stop_reason
    assert again.usage.output_tokens == original.usage.output_tokens


def test_interleaved_parallel_tool_deltas_keep_blocks_sequential() -> None:
    """Every delta of a block comes between its start and its stop, even when the upstream
    interleaves two calls' argument pieces."""
    tr = OpenAIToAnthropicStream("m")
    heads = [
        {"index": i, "id": f"call_{i}", "type": "function", "function": {"name": "w", "arguments": ""}}
        for i in (0, 1)
    ]
    pieces = [(0, '{"ci'), (1, '{"city'), (0, 'ty": "東京"}'), (1, '": "القاهرة"}')]
    chunks = [chunk({"tool_calls": heads})]
    chunks += [chunk({"tool_calls": [{"index": i, "function": {"arguments": a}}]}) for i, a in pieces]
    chunks.append(chunk({}, "tool_calls"))
    events = [e for c in chunks for e in tr.feed(c)] + tr.finish()
    open_blocks: set[int] = set()
    args: dict[int, str] = {}
    for name, data in events:
        if name == "content_block_start":
            open_blocks.add(data["index"])
        elif name == "content_block_delta":
            assert data["index"] in open_blocks
            args[data["index"]] = args.get(data["index"], "") + data["delta"]["partial_json"]
        elif name == "content_block_stop":
            open_blocks.remove(data["index"])
    assert args == {0: '{"city": "東京"}', 1: '{"city": "القاهرة"}'}
