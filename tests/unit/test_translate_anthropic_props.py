"""Property tests: round trips preserve every field both formats carry; unicode survives any split.

- OpenAI request -> Anthropic -> OpenAI keeps system, messages (text, images, tool calls with ids
  and arguments, tool results), tools, tool_choice, parallel_tool_calls, stop, temperature,
  top_p, max tokens, user, stream and json_schema response formats.
- OpenAI response -> Anthropic -> OpenAI keeps content, reasoning, tool calls, finish reason, usage.
- OpenAI stream -> Anthropic events -> OpenAI stream accumulates to the same answer.
- CJK, emoji and RTL text survive SSE byte streams split at any byte boundary, both ways.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relaygate.protocols.sse import SSEDecoder, encode_event
from relaygate.protocols.translate_anthropic import (
    AnthropicToOpenAIStream,
    OpenAIToAnthropicStream,
    anthropic_request_to_openai,
    anthropic_response_to_openai,
    openai_request_to_anthropic,
    openai_response_to_anthropic,
)

SAMPLES = [
    "漢字かな交じり",
    "한국어",
    "emoji 🧑‍💻👍🏽🇯🇵",
    "שלום עולם",
    "مرحبا بالعالم",
    "e\u0301",
    "\u200f\u202e",
    "😀" * 3,
]
text = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24),
    st.sampled_from(SAMPLES),
)
nonempty = text.filter(bool)
ident = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_-]{0,15}", fullmatch=True)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**9), 10**9) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
args_obj = st.dictionaries(text, json_value, max_size=4)
unit = st.floats(0, 1, allow_nan=False)
settings.register_profile(
    "relaygate", max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None
)
settings.load_profile("relaygate")


@st.composite
def image_part(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        data = draw(st.from_regex(r"[A-Za-z0-9+/]{4,40}={0,2}", fullmatch=True))
        mime = draw(st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"]))
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    return {"type": "image_url", "image_url": {"url": "https://example.com/" + draw(ident) + ".png"}}


def text_part(t: str) -> dict[str, Any]:
    return {"type": "text", "text": t}


@st.composite
def user_message(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        return {"role": "user", "content": draw(text)}
    parts = draw(st.lists(st.one_of(text.map(text_part), image_part()), min_size=1, max_size=4))
    return {"role": "user", "content": parts}


@st.composite
def tool_exchange(draw: st.DrawFn, tool_names: list[str], n: int) -> list[dict[str, Any]]:
    k = draw(st.integers(1, 3))
    calls = [
        {
            "id": f"call_{n}_{i}_" + draw(ident),
            "type": "function",
            "function": {
                "name": draw(st.sampled_from(tool_names)),
                "arguments": orjson.dumps(draw(args_obj)).decode(),
            },
        }
        for i in range(k)
    ]
    assistant = {"role": "assistant", "content": draw(st.one_of(st.none(), nonempty)), "tool_calls": calls}
    results = []
    for call in calls:
        content: Any = (
            draw(text) if draw(st.booleans()) else draw(st.lists(text.map(text_part), min_size=1, max_size=2))
        )
        results.append({"role": "tool", "tool_call_id": call["id"], "content": content})
    return [assistant, *results]


@st.composite
def openai_request(draw: st.DrawFn) -> dict[str, Any]:
    tools = draw(st.lists(ident, min_size=0, max_size=3, unique=True))
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    messages.append(draw(user_message()))
    for n in range(draw(st.integers(0, 3))):
        if tools and draw(st.booleans()):
            messages += draw(tool_exchange(tools, n))
            if draw(st.booleans()):
                messages.append(draw(user_message()))
        else:
            messages += [{"role": "assistant", "content": draw(nonempty)}, draw(user_message())]
    body: dict[str, Any] = {"model": "gpt-x", "messages": messages}
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": name,
                    **({"description": draw(text)} if draw(st.booleans()) else {}),
                    "parameters": {"type": "object", "properties": {draw(ident): {"type": "string"}}},
                    **({"strict": draw(st.booleans())} if draw(st.booleans()) else {}),
                },
            }
            for name in tools
        ]
        choice = draw(st.sampled_from(["auto", "none", "required", "named", None]))
        if choice == "named":
            body["tool_choice"] = {"type": "function", "function": {"name": draw(st.sampled_from(tools))}}
        elif choice is not None:
            body["tool_choice"] = choice
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    optional = {
        "temperature": unit,
        "top_p": unit,
        "max_tokens": st.integers(1, 100_000),
        "max_completion_tokens": st.integers(1, 100_000),
        "stop": st.one_of(nonempty, st.lists(nonempty, min_size=1, max_size=4)),
        "user": nonempty,
        "stream": st.booleans(),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            body[key] = draw(strategy)
    if "max_tokens" in body and "max_completion_tokens" in body:
        del body["max_tokens"]
    if draw(st.booleans()):
        schema = {
            "type": "object",
            "properties": {draw(ident): {"type": "string"}},
            "additionalProperties": False,
        }
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "out", "strict": True, "schema": schema},
        }
    return body


def normalise(body: dict[str, Any]) -> dict[str, Any]:
    """The fields both formats carry, in one canonical spelling."""
    out = {k: v for k, v in body.items() if k not in ("model", "stream_options")}
    if "max_completion_tokens" in out:
        out["max_tokens"] = out.pop("max_completion_tokens")
    out.setdefault("max_tokens", 4096)
    if isinstance(out.get("stop"), str):
        out["stop"] = [out["stop"]]
    if not out.get("stream"):
        out.pop("stream", None)
    if out.get("tool_choice") == "auto":
        del out["tool_choice"]  # the default when tools are given
    if out.get("parallel_tool_calls") is True or out.get("tool_choice") == "none":
        out.pop("parallel_tool_calls", None)
    if "response_format" in out:
        out["response_format"] = out["response_format"]["json_schema"]["schema"]
    msgs = []
    for m in out["messages"]:
        m = dict(m)
        if m["role"] == "assistant":
            if m.get("content") == "" and m.get("tool_calls"):
                m["content"] = None
            m["tool_calls"] = [
                {**c, "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])}}
                for c in m.get("tool_calls") or []
            ] or None
        msgs.append(m)
    out["messages"] = msgs
    return out


@given(openai_request())
def test_openai_request_round_trip(body: dict[str, Any]) -> None:
    anth = openai_request_to_anthropic(body, model="gpt-x", default_max_tokens=4096)
    back = anthropic_request_to_openai(anth)
    assert normalise(back) == normalise(body)


@given(openai_request())
def test_anthropic_side_is_stable(body: dict[str, Any]) -> None:
    """Anthropic -> OpenAI -> Anthropic is the identity on what the outbound translator makes."""
    anth = openai_request_to_anthropic(body, model="claude-x", default_max_tokens=4096)
    again = openai_request_to_anthropic(
        anthropic_request_to_openai(anth), model="claude-x", default_max_tokens=4096
    )
    assert again == anth


@st.composite
def openai_completion(draw: st.DrawFn) -> dict[str, Any]:
    calls = [
        {
            "id": "call_" + draw(ident),
            "type": "function",
            "function": {"name": draw(ident), "arguments": orjson.dumps(draw(args_obj)).decode()},
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    message: dict[str, Any] = {
        "role": "assistant",
        "content": draw(nonempty) if not calls or draw(st.booleans()) else None,
    }
    if calls:
        message["tool_calls"] = calls
    if draw(st.booleans()):
        message["reasoning_content"] = draw(nonempty)
    finish = "tool_calls" if calls else draw(st.sampled_from(["stop", "length", "content_filter"]))
    prompt = draw(st.integers(0, 10**6))
    cached = draw(st.integers(0, prompt))
    completion = draw(st.integers(0, 10**5))
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "up",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


@given(openai_completion())
def test_openai_response_round_trip(resp: dict[str, Any]) -> None:
    back = anthropic_response_to_openai(openai_response_to_anthropic(resp, model="claude-x"), created=1)
    want, got = resp["choices"][0], back["choices"][0]
    assert got["finish_reason"] == want["finish_reason"]
    assert got["message"].get("content") == want["message"].get("content")
    assert got["message"].get("reasoning_content") == want["message"].get("reasoning_content")
    norm = [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in want["message"].get("tool_calls") or []
    ]
    assert [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in got["message"].get("tool_calls") or []
    ] == norm
    assert back["usage"] == resp["usage"]


# ----------------------------------------------------------------------------------------- streams


@st.composite
def openai_chunks(draw: st.DrawFn) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> dict[str, Any]:
        c: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "up"}
        c["choices"] = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return c

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"reasoning_content": t}) for t in draw(st.lists(nonempty, max_size=3))]
    out += [chunk({"content": t}) for t in draw(st.lists(nonempty, max_size=4))]
    n_calls = draw(st.integers(0, 3))
    for i in range(n_calls):
        args = orjson.dumps(draw(args_obj)).decode()
        cuts = sorted(draw(st.lists(st.integers(0, len(args)), max_size=3)))
        pieces = [args[a:b] for a, b in zip([0, *cuts], [*cuts, len(args)], strict=True)]
        head = {
            "index": i,
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": draw(ident), "arguments": pieces[0]},
        }
        out.append(chunk({"tool_calls": [head]}))
        out += [chunk({"tool_calls": [{"index": i, "function": {"arguments": p}}]}) for p in pieces[1:]]
    out.append(chunk({}, "tool_calls" if n_calls else draw(st.sampled_from(["stop", "length"]))))
    usage = {
        "prompt_tokens": 9,
        "completion_tokens": 4,
        "total_tokens": 13,
        "prompt_tokens_details": {"cached_tokens": 2},
    }
    final = chunk(None)
    final["usage"] = usage
    return [*out, final]


def accumulate(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    acc: dict[str, Any] = {"content": "", "reasoning": "", "calls": {}, "finish": None, "usage": None}
    for c in chunks:
        if c.get("usage"):
            acc["usage"] = c["usage"]
        for ch in c["choices"]:
            d = ch["delta"]
            acc["content"] += d.get("content") or ""
            acc["reasoning"] += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                slot = acc["calls"].setdefault(tc["index"], {"id": None, "name": None, "arguments": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] = (tc.get("function") or {}).get("name") or slot["name"]
                slot["arguments"] += (tc.get("function") or {}).get("arguments") or ""
            acc["finish"] = ch.get("finish_reason") or acc["finish"]
    return acc


def through_anthropic(chunks: list[dict[str, Any]], split: list[int] | None = None) -> list[dict[str, Any]]:
    """OpenAI chunks -> Anthropic SSE bytes (optionally split at byte offsets) -> OpenAI chunks."""
    tr = OpenAIToAnthropicStream("claude-x")
    raw = b"".join(encode_event(orjson.dumps(d), n) for c in chunks for n, d in tr.feed(c))
    raw += b"".join(encode_event(orjson.dumps(d), n) for n, d in tr.finish())
    cuts = sorted(set(split or []))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    back = AnthropicToOpenAIStream()
    dec = SSEDecoder()
    out: list[dict[str, Any]] = []
    for piece in pieces:
        for ev in dec.feed(piece):
            assert ev.data is not None
            out += back.feed(ev.event, orjson.loads(ev.data))
    assert dec.finish() is None and back.done
    return out


@given(openai_chunks(), st.data())
def test_stream_round_trip_through_anthropic_events_split_anywhere(
    chunks: list[dict[str, Any]], data: st.DataObject
) -> None:
    size = len(b"".join(orjson.dumps(c) for c in chunks)) * 3
    split = data.draw(st.lists(st.integers(1, size), max_size=12))
    want, got = accumulate(chunks), accumulate(through_anthropic(chunks, split))
    assert got["content"] == want["content"]
    assert got["reasoning"] == want["reasoning"]
    assert got["finish"] == want["finish"]
    assert got["usage"] == want["usage"]
    assert got["calls"] == want["calls"]


def test_unicode_stream_split_at_every_byte() -> None:
    """Every single split point of a CJK/emoji/RTL stream, Anthropic bytes -> OpenAI bytes."""
    text = ["你好，世界", "🧑‍💻 👍🏽 🇯🇵", " שלום ", "مرحبا", " e\u0301"]  # noqa: RUF001
    tr = OpenAIToAnthropicStream("claude-x")
    chunks = [{"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in text]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    raw = b"".join(encode_event(orjson.dumps(d), n) for c in chunks for n, d in tr.feed(c))
    raw += b"".join(encode_event(orjson.dumps(d), n) for n, d in tr.finish())
    for cut in range(1, len(raw)):
        back = AnthropicToOpenAIStream()
        dec = SSEDecoder()
        out: list[dict[str, Any]] = []
        for piece in (raw[:cut], raw[cut:]):
            for ev in dec.feed(piece):
                assert ev.data is not None
                out += back.feed(ev.event, orjson.loads(ev.data))
        assert accumulate(out)["content"] == "".join(text)
