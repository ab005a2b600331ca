"""OpenAI Chat Completions wire format: request checks, byte-exact model rewrite, usage, and
the stream watcher."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

try:  # property tests run when hypothesis is installed; the tables below always run
    from hypothesis import given, settings
    from hypothesis import strategies as st

    HAVE_HYPOTHESIS = True
except ImportError:  # pragma: no cover
    HAVE_HYPOTHESIS = False

from relaygate.errors import InvalidRequestError
from relaygate.protocols.openai import (
    Usage,
    parse_chat_request,
    rewrite_model,
    usage_from,
    with_stream_usage,
)
from relaygate.protocols.openai_stream import ChunkKind, StreamWatch
from relaygate.protocols.sse import SSEDecoder, SSEEvent

USER = {"role": "user", "content": "hi"}


def body(**fields: Any) -> bytes:
    data: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [USER]}
    for k, v in fields.items():
        if v is _DROP:
            data.pop(k, None)
        else:
            data[k] = v
    return json.dumps(data).encode()


_DROP = object()


# --------------------------------------------------------------------------- parse: errors

# (raw body, expected param, expected code or None, substring of the message)
RAW_ERRORS = [
    pytest.param(b"", None, None, "could not parse the JSON body", id="empty-body"),
    pytest.param(b"{", None, None, "could not parse the JSON body", id="truncated"),
    pytest.param(b"{'model': 'x'}", None, None, "could not parse the JSON body", id="single-quotes"),
    pytest.param(b'{"model":"a","messages":[]} x', None, None, "could not parse", id="trailing-garbage"),
    pytest.param(b"\xff\xfe\x00", None, None, "could not parse the JSON body", id="non-utf8-bytes"),
    pytest.param(
        b'{"model":"a","messages":[{"role":"user","content":"\xe9"}]}',
        None,
        None,
        "could not parse the JSON body",
        id="latin1-inside-string",
    ),
    pytest.param(b"[]", None, "invalid_type", "got array", id="array-body"),
    pytest.param(b'[{"model":"a"}]', None, "invalid_type", "got array", id="array-of-object"),
    pytest.param(b'"hello"', None, "invalid_type", "got string", id="string-body"),
    pytest.param(b"42", None, "invalid_type", "got integer", id="integer-body"),
    pytest.param(b"4.2", None, "invalid_type", "got number", id="number-body"),
    pytest.param(b"true", None, "invalid_type", "got boolean", id="bool-body"),
    pytest.param(b"null", None, "invalid_type", "got null", id="null-body"),
]


@pytest.mark.parametrize(("raw", "param", "code", "msg"), RAW_ERRORS)
def test_parse_raw_errors(raw: bytes, param: str | None, code: str | None, msg: str) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        parse_chat_request(raw)
    e = ei.value
    assert e.status == 400 and e.type == "invalid_request_error"
    assert e.param == param and e.code == code
    assert msg in e.message


# (fields to override in a valid body, expected param, expected code)
FIELD_ERRORS = [
    pytest.param({"model": _DROP}, "model", None, id="missing-model"),
    pytest.param({"model": None}, "model", None, id="null-model"),
    pytest.param({"model": 4}, "model", "invalid_type", id="model-int"),
    pytest.param({"model": ["gpt-4o"]}, "model", "invalid_type", id="model-list"),
    pytest.param({"model": ""}, "model", "invalid_type", id="model-empty"),
    pytest.param({"messages": _DROP}, "messages", "missing_required_parameter", id="missing-messages"),
    pytest.param({"messages": None}, "messages", "missing_required_parameter", id="null-messages"),
    pytest.param({"messages": []}, "messages", "empty_array", id="empty-messages"),
    pytest.param({"messages": USER}, "messages", "invalid_type", id="messages-object"),
    pytest.param({"messages": "hi"}, "messages", "invalid_type", id="messages-string"),
    pytest.param({"messages": ["hi"]}, "messages[0]", "invalid_type", id="message-string"),
    pytest.param({"messages": [USER, 3]}, "messages[1]", "invalid_type", id="message-int"),
    pytest.param({"messages": [USER, [USER]]}, "messages[1]", "invalid_type", id="message-list"),
    pytest.param({"messages": [{"content": "x"}]}, "messages[0].role", "invalid_value", id="no-role"),
    pytest.param(
        {"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", "invalid_value", id="bad-role"
    ),
    pytest.param(
        {"messages": [{"role": "User", "content": "x"}]}, "messages[0].role", "invalid_value", id="role-case"
    ),
    pytest.param(
        {"messages": [USER, {"role": 1, "content": "x"}]}, "messages[1].role", "invalid_value", id="role-int"
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        "invalid_type",
        id="content-int",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": {"text": "x"}}]},
        "messages[0].content",
        "invalid_type",
        id="content-object",
    ),
    pytest.param(
        {"messages": [{"role": "user", "content": True}]},
        "messages[0].content",
        "invalid_type",
        id="content-bool",
    ),
    pytest.param(
        {"messages": [{"role": "system"}, USER]},
        "messages[0].content",
        "missing_required_parameter",
        id="system-without-content",
    ),
    pytest.param(
        {"messages": [{"role": "developer", "content": None}, USER]},
        "messages[0].content",
        "missing_required_parameter",
        id="developer-null-content",
    ),
    pytest.param(
        {"messages": [USER, {"role": "user"}]},
        "messages[1].content",
        "missing_required_parameter",
        id="user-without-content",
    ),
    pytest.param({"temperature": "0.5"}, "temperature", "invalid_type", id="temperature-string"),
    pytest.param({"temperature": True}, "temperature", "invalid_type", id="temperature-bool"),
    pytest.param({"temperature": 2.01}, "temperature", "invalid_value", id="temperature-above"),
    pytest.param({"temperature": -0.1}, "temperature", "invalid_value", id="temperature-below"),
    pytest.param({"top_p": 1.5}, "top_p", "invalid_value", id="top_p-above"),
    pytest.param({"presence_penalty": -3}, "presence_penalty", "invalid_value", id="presence-below"),
    pytest.param({"frequency_penalty": 2.5}, "frequency_penalty", "invalid_value", id="frequency-above"),
    pytest.param({"max_tokens": 0}, "max_tokens", "invalid_value", id="max_tokens-0"),
    pytest.param({"max_tokens": -5}, "max_tokens", "invalid_value", id="max_tokens-negative"),
    pytest.param({"max_tokens": 1.0}, "max_tokens", "invalid_type", id="max_tokens-float"),
    pytest.param({"max_tokens": 10.5}, "max_tokens", "invalid_type", id="max_tokens-fraction"),
    pytest.param({"max_tokens": True}, "max_tokens", "invalid_type", id="max_tokens-bool"),
    pytest.param({"max_tokens": "100"}, "max_tokens", "invalid_type", id="max_tokens-string"),
    pytest.param({"max_completion_tokens": 0}, "max_completion_tokens", "invalid_value", id="max_compl-0"),
    pytest.param({"n": "2"}, "n", "invalid_type", id="n-string"),
    pytest.param({"n": 2.0}, "n", "invalid_type", id="n-float"),
    pytest.param({"n": False}, "n", "invalid_type", id="n-bool"),
    pytest.param({"n": 0}, "n", "invalid_value", id="n-0"),
    pytest.param({"seed": "1"}, "seed", "invalid_type", id="seed-string"),
    pytest.param({"logprobs": 1}, "logprobs", "invalid_type", id="logprobs-int"),
    pytest.param({"user": 7}, "user", "invalid_type", id="user-int"),
    pytest.param({"tools": {"type": "function"}}, "tools", "invalid_type", id="tools-object"),
    pytest.param({"response_format": "json"}, "response_format", "invalid_type", id="response_format-str"),
    pytest.param({"stream": "true"}, "stream", "invalid_type", id="stream-string"),
    pytest.param({"stream": 1}, "stream", "invalid_type", id="stream-int"),
    pytest.param({"stream": 0}, "stream", "invalid_type", id="stream-zero"),
    pytest.param({"stop": 5}, "stop", "invalid_type", id="stop-int"),
    pytest.param({"stop": ["a", 1]}, "stop", "invalid_type", id="stop-mixed-list"),
    pytest.param({"stop": {"a": 1}}, "stop", "invalid_type", id="stop-object"),
    pytest.param(
        {"stream_options": {"include_usage": True}}, "stream_options", "invalid_value", id="so-no-stream"
    ),
    pytest.param(
        {"stream": False, "stream_options": {"include_usage": True}},
        "stream_options",
        "invalid_value",
        id="so-stream-false",
    ),
    pytest.param(
        {"stream": True, "stream_options": True}, "stream_options", "invalid_type", id="so-not-object"
    ),
    pytest.param({"stream": True, "stream_options": [1]}, "stream_options", "invalid_type", id="so-list"),
]


@pytest.mark.parametrize(("fields", "param", "code"), FIELD_ERRORS)
def test_parse_field_errors(fields: dict[str, Any], param: str, code: str | None) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        parse_chat_request(body(**fields))
    e = ei.value
    assert e.status == 400 and e.type == "invalid_request_error"
    assert (e.param, e.code) == (param, code), e.message
    assert e.message


@pytest.mark.parametrize("role", [["user"], {"name": "user"}], ids=["role-array", "role-object"])
def test_unhashable_role_is_a_400(role: object) -> None:
    with pytest.raises(InvalidRequestError) as ei:
        parse_chat_request(body(messages=[{"role": role, "content": "x"}]))
    assert ei.value.param == "messages[0].role"


# --------------------------------------------------------------------------- parse: valid


VALID = [
    # (fields, stream, include_usage)
    pytest.param({}, False, False, id="minimal"),
    pytest.param({"stream": True}, True, False, id="stream"),
    pytest.param({"stream": None}, False, False, id="stream-null"),
    pytest.param({"stream": True, "stream_options": {"include_usage": True}}, True, True, id="include-usage"),
    pytest.param({"stream": True, "stream_options": {"include_usage": False}}, True, False, id="usage-false"),
    pytest.param(
        {"stream": True, "stream_options": {"include_usage": 1}}, True, False, id="usage-truthy-int"
    ),
    pytest.param({"stream": True, "stream_options": {}}, True, False, id="empty-stream-options"),
    pytest.param({"stream": True, "stream_options": None}, True, False, id="null-stream-options"),
    pytest.param({"some_new_param": {"x": [1, 2]}, "reasoning_effort": "low"}, False, False, id="unknown"),
    pytest.param(
        {"temperature": 0, "top_p": 1, "presence_penalty": -2, "frequency_penalty": 2},
        False,
        False,
        id="range-edges",
    ),
    pytest.param({"temperature": 2.0, "n": 1, "max_tokens": 1, "seed": -1}, False, False, id="more-edges"),
    pytest.param(
        {"temperature": None, "max_tokens": None, "stop": None, "user": None}, False, False, id="nulls"
    ),
    pytest.param({"stop": "\n"}, False, False, id="stop-string"),
    pytest.param({"stop": []}, False, False, id="stop-empty-list"),
    pytest.param({"stop": ["a", "b"]}, False, False, id="stop-list"),
    pytest.param(
        {"tools": [], "response_format": {"type": "json_object"}, "logprobs": True},
        False,
        False,
        id="typed-objects",
    ),
    pytest.param(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "x"}]},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
                {"role": "function", "name": "f", "content": None},
            ]
        },
        False,
        False,
        id="all-roles",
    ),
]


@pytest.mark.parametrize(("fields", "stream", "include_usage"), VALID)
def test_parse_valid(fields: dict[str, Any], stream: bool, include_usage: bool) -> None:
    raw = body(**fields)
    req = parse_chat_request(raw)
    assert req.body is raw
    assert req.data == json.loads(raw)
    assert req.model == "gpt-4o-mini"
    assert (req.stream, req.include_usage) == (stream, include_usage)


def test_parse_keeps_unicode_model() -> None:
    raw = '{"messages":[{"role":"user","content":"héllo"}],"model":"モデル/v1"}'.encode()
    req = parse_chat_request(raw)
    assert req.model == "モデル/v1"


# --------------------------------------------------------------------------- rewrite_model

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "pick",
            "parameters": {
                "type": "object",
                "properties": {"model": {"type": "string", "enum": ["model", "gpt-4o"]}},
                "required": ["model"],
            },
        },
    }
]

# (body, new model, expected body); every expected body is hand-written byte for byte.
REWRITES = [
    pytest.param(
        b'{"model":"chat","messages":[]}', "gpt-4o", b'{"model":"gpt-4o","messages":[]}', id="compact"
    ),
    pytest.param(
        b'{ "model" : "chat" , "messages": [] }',
        "gpt-4o",
        b'{ "model" : "gpt-4o" , "messages": [] }',
        id="spaces-around-colon",
    ),
    pytest.param(
        b'{\n\t"model"\n\t:\n\t"chat",\r\n"x": 1}',
        "m",
        b'{\n\t"model"\n\t:\n\t"m",\r\n"x": 1}',
        id="newlines-tabs-crlf",
    ),
    pytest.param(
        b'{"messages":[{"role":"user","content":"{\\"model\\": \\"x\\"}"}],"model":"chat"}',
        "gpt-4o",
        b'{"messages":[{"role":"user","content":"{\\"model\\": \\"x\\"}"}],"model":"gpt-4o"}',
        id="escaped-model-in-content-model-last",
    ),
    pytest.param(
        b'{"messages":[{"role":"user","content":"\\"model\\""}],"model":"chat"}',
        "gpt-4o",
        b'{"messages":[{"role":"user","content":"\\"model\\""}],"model":"gpt-4o"}',
        id="content-is-quoted-model",
    ),
    pytest.param(
        b'{"messages":[{"role":"user","content":"model"}],"model":"chat"}',
        "gpt-4o",
        b'{"messages":[{"role":"user","content":"model"}],"model":"gpt-4o"}',
        id="content-is-bare-model-string",
    ),
    pytest.param(
        b'{"messages":[{"role":"user","content":"a\\\\"}],"model":"chat"}',
        "x",
        b'{"messages":[{"role":"user","content":"a\\\\"}],"model":"x"}',
        id="content-ends-with-escaped-backslash",
    ),
    pytest.param(
        b'{"metadata":{"model":"nested"},"model":"chat","x":{"model":"n2"}}',
        "gpt-4o",
        b'{"metadata":{"model":"nested"},"model":"gpt-4o","x":{"model":"n2"}}',
        id="nested-model-keys-before-and-after",
    ),
    pytest.param(
        b'{"a":[{"b":["{","[","}"]}],"model":"chat"}',
        "z",
        b'{"a":[{"b":["{","[","}"]}],"model":"z"}',
        id="brackets-inside-strings",
    ),
    pytest.param(
        b'{"model":"chat","messages":[{"role":"user","content":"h\xc3\xa9llo \xe2\x9c\x93"}]}',
        "\u30e2\u30c7\u30eb",
        b'{"model":"\xe3\x83\xa2\xe3\x83\x87\xe3\x83\xab",'
        b'"messages":[{"role":"user","content":"h\xc3\xa9llo \xe2\x9c\x93"}]}',
        id="unicode",
    ),
    pytest.param(
        b'{"model":"chat\\u00e9","m":1}', 'a"b\\c', b'{"model":"a\\"b\\\\c","m":1}', id="escapes-in-values"
    ),
    pytest.param(b'{"model":"","m":1}', "x", b'{"model":"x","m":1}', id="empty-old-value"),
    pytest.param(
        b'{"c":"\\\\\\\\","model":"m","d":"\\\\\\"model\\\\\\""}',
        "Z",
        b'{"c":"\\\\\\\\","model":"Z","d":"\\\\\\"model\\\\\\""}',
        id="runs-of-backslashes",
    ),
    pytest.param(
        b'{"model":"a\\\\","x":"model","y":["model"]}',
        "Z",
        b'{"model":"Z","x":"model","y":["model"]}',
        id="old-value-ends-in-backslash-and-model-as-values",
    ),
    pytest.param(
        b'{"model" :"a", "messages":[{"model":"n"}], "model"\n: "b"}',
        "Z",
        b'{"model" :"Z", "messages":[{"model":"n"}], "model"\n: "Z"}',
        id="duplicate-top-level-key-all-rewritten",
    ),
]


@pytest.mark.parametrize(("raw", "new", "expected"), REWRITES)
def test_rewrite_model_byte_exact(raw: bytes, new: str, expected: bytes) -> None:
    out = rewrite_model(raw, new)
    assert out == expected
    want = orjson.loads(raw)
    want["model"] = new
    assert orjson.loads(out) == want


@pytest.mark.parametrize("indent", [None, 2])
@pytest.mark.parametrize("ensure_ascii", [True, False])
@pytest.mark.parametrize("model_last", [False, True])
def test_rewrite_model_realistic_body(indent: int | None, ensure_ascii: bool, model_last: bool) -> None:
    data: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": 'Reply as JSON like {"model": "x"} \u2013 ok?'},
            {"role": "user", "content": 'Which model? "model": "gpt" \u00fcber \U0001f600'},
        ],
        "tools": TOOLS,
        "stream": True,
    }
    data = {**data, "model": "chat"} if model_last else {"model": "chat", **data}
    raw = json.dumps(data, indent=indent, ensure_ascii=ensure_ascii).encode()
    out = rewrite_model(raw, "deepseek-chat")
    old_val, new_val = b'"chat"', b'"deepseek-chat"'
    assert raw.count(old_val) == 1
    assert out == raw.replace(old_val, new_val)
    assert orjson.loads(out) == {**data, "model": "deepseek-chat"}


def test_rewrite_model_escaped_key_falls_back_to_round_trip() -> None:
    raw = b'{"mod\\u0065l":"chat","messages":[]}'
    out = rewrite_model(raw, "x")
    assert orjson.loads(out) == {"model": "x", "messages": []}


# Regression: with a duplicated top-level "model" key, parse_chat_request (orjson, last wins) routes
# on the LAST value; rewrite_model used to replace only the FIRST, so the upstream saw the client's value.
def test_rewrite_model_duplicate_key_rewrites_the_value_that_was_routed() -> None:
    raw = b'{"model":"a","messages":[{"role":"user","content":"hi"}],"model":"b"}'
    req = parse_chat_request(raw)
    assert req.model == "b"
    out = rewrite_model(raw, "upstream-model")
    assert orjson.loads(out)["model"] == "upstream-model"


if HAVE_HYPOTHESIS:
    # Property: whatever the surrounding JSON and whitespace, only the value bytes change.
    _json_leaf = st.one_of(
        st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=12), st.just("model")
    )
    _json = st.recursive(
        _json_leaf,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(["model", "a", "b", 'c"d', "\u00e9"]), inner, max_size=3),
        ),
        max_leaves=10,
    )
    _ws = st.sampled_from(["", " ", "\n", "\t", "\r\n", "  \n "])

    def _member(key: str, value: Any, ws: str, ensure_ascii: bool) -> bytes:
        k = json.dumps(key, ensure_ascii=ensure_ascii)
        v = json.dumps(value, ensure_ascii=ensure_ascii)
        return f"{ws}{k}{ws}:{ws}{v}{ws}".encode()

    @settings(max_examples=300, database=None, deadline=None)
    @given(
        others=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "model"), _json, max_size=4),
        pos=st.integers(0, 4),
        old=st.text(max_size=10),
        new=st.text(max_size=10),
        ws=_ws,
        ensure_ascii=st.booleans(),
    )
    def test_rewrite_model_property(
        others: dict[str, Any], pos: int, old: str, new: str, ws: str, ensure_ascii: bool
    ) -> None:
        items = list(others.items())
        pos = min(pos, len(items))
        members = [_member(k, v, ws, ensure_ascii) for k, v in items]
        raw = (
            b"{" + b",".join([*members[:pos], _member("model", old, ws, ensure_ascii), *members[pos:]]) + b"}"
        )
        new_member = f'{ws}"model"{ws}:{ws}'.encode() + orjson.dumps(new) + ws.encode()
        expected = b"{" + b",".join([*members[:pos], new_member, *members[pos:]]) + b"}"
        out = rewrite_model(raw, new)
        assert out == expected
        assert orjson.loads(out) == {**others, "model": new}
else:

    @pytest.mark.skip(reason="hypothesis is not installed: pip install hypothesis")
    def test_rewrite_model_property() -> None:
        pass


# --------------------------------------------------------------------------- with_stream_usage


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","messages":[],"stream":true}',
        b'  {\n  "model": "m",\n  "stream": true\n}',
        b'{"stream":true,"model":"m","x":{"stream_options":1}}',
    ],
)
def test_with_stream_usage_splices_when_absent(raw: bytes) -> None:
    data = orjson.loads(raw)
    out = with_stream_usage(raw, "stream_options" in data)
    got = orjson.loads(out)
    assert got == {**data, "stream_options": {"include_usage": True}}
    # the original bytes survive around the splice
    i = raw.index(b"{") + 1
    assert out.startswith(raw[:i]) and out.endswith(raw[i:])


@pytest.mark.parametrize(
    "opts",
    [{}, {"include_usage": False}, {"include_usage": True}, {"include_usage": False, "other": 1}, None],
)
def test_with_stream_usage_existing_options(opts: dict[str, Any] | None) -> None:
    data = {"model": "m", "stream": True, "stream_options": opts, "messages": [USER]}
    before = json.loads(json.dumps(data))
    raw = json.dumps(data).encode()
    got = orjson.loads(with_stream_usage(raw, True))
    want = {**(opts or {}), "include_usage": True}
    assert got == {**data, "stream_options": want}
    assert data == before  # the parsed request dict is not mutated


def test_with_stream_usage_keeps_a_rewritten_model() -> None:
    raw = b'{"model":"route","stream":true,"stream_options":{},"messages":[]}'
    out = with_stream_usage(rewrite_model(raw, "upstream-model"), True)
    assert orjson.loads(out)["model"] == "upstream-model"


def test_with_stream_usage_result_parses_as_chat_request() -> None:
    raw = body(stream=True)
    req = parse_chat_request(raw)
    req2 = parse_chat_request(with_stream_usage(raw, "stream_options" in req.data))
    assert req2.include_usage is True and req2.stream is True


# --------------------------------------------------------------------------- usage_from


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, None),
        ("usage", None),
        ([1, 2], None),
        ({}, Usage()),
        ({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}, Usage(10, 5, None)),
        (
            {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}},
            Usage(10, 5, 4),
        ),
        ({"prompt_tokens": 10, "prompt_tokens_details": None}, Usage(10, None, None)),
        ({"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": "4"}}, Usage(10, None, None)),
        ({"prompt_tokens": "10", "completion_tokens": 1.5}, Usage(None, None, None)),
        ({"prompt_tokens": 0, "completion_tokens": 0}, Usage(0, 0, None)),
    ],
)
def test_usage_from(obj: object, expected: Usage | None) -> None:
    assert usage_from(obj) == expected


# --------------------------------------------------------------------------- StreamWatch


def ev(data: bytes | str | dict[str, Any] | None, event: str | None = None) -> SSEEvent:
    if isinstance(data, dict):
        data = orjson.dumps(data)
    elif isinstance(data, str):
        data = data.encode()
    raw = (b"data: " + data + b"\n\n") if data is not None else b": keep-alive\n\n"
    return SSEEvent(raw, data, event)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        **extra,
    }


USAGE = {
    "prompt_tokens": 9,
    "completion_tokens": 3,
    "total_tokens": 12,
    "prompt_tokens_details": {"cached_tokens": 2},
}

# (event, kind, content_seen after, finish_reason after, error is set)
WATCH = [
    pytest.param(ev(None), ChunkKind.PREAMBLE, False, None, False, id="comment"),
    pytest.param(
        ev(chunk({"role": "assistant", "content": ""})),
        ChunkKind.PREAMBLE,
        False,
        None,
        False,
        id="role-only",
    ),
    pytest.param(
        ev(chunk({"role": "assistant"})), ChunkKind.PREAMBLE, False, None, False, id="role-no-content"
    ),
    pytest.param(ev(chunk({"content": "Hel"})), ChunkKind.CONTENT, True, None, False, id="content"),
    pytest.param(
        ev(chunk({"tool_calls": [{"index": 0, "id": "t", "function": {"name": "f", "arguments": ""}}]})),
        ChunkKind.CONTENT,
        True,
        None,
        False,
        id="tool-calls",
    ),
    pytest.param(ev(chunk({"refusal": "no"})), ChunkKind.CONTENT, True, None, False, id="refusal"),
    pytest.param(
        ev(chunk({"reasoning_content": "hmm"})), ChunkKind.CONTENT, True, None, False, id="reasoning-deepseek"
    ),
    pytest.param(ev(chunk({"reasoning": "hmm"})), ChunkKind.CONTENT, True, None, False, id="reasoning-vllm"),
    pytest.param(ev(chunk({}, "stop")), ChunkKind.CONTENT, True, "stop", False, id="finish-only"),
    pytest.param(
        ev(chunk({"content": "."}, "length")),
        ChunkKind.CONTENT,
        True,
        "length",
        False,
        id="content-and-finish",
    ),
    pytest.param(
        ev({"id": "c", "choices": [], "usage": USAGE}), ChunkKind.USAGE, False, None, False, id="usage-only"
    ),
    pytest.param(ev({"id": "c", "choices": []}), ChunkKind.PREAMBLE, False, None, False, id="empty-choices"),
    pytest.param(
        ev(chunk({"content": ""}, usage=None)),
        ChunkKind.PREAMBLE,
        False,
        None,
        False,
        id="null-usage-empty-content",
    ),
    pytest.param(ev("[DONE]"), ChunkKind.DONE, False, None, False, id="done"),
    pytest.param(
        ev({"error": {"message": "overloaded", "type": "server_error"}}),
        ChunkKind.ERROR,
        False,
        None,
        True,
        id="error-event",
    ),
    pytest.param(ev({"error": "boom"}), ChunkKind.ERROR, False, None, True, id="error-string"),
    pytest.param(
        ev('{"choices": [{"delta": {"content": "x"'), ChunkKind.ERROR, False, None, True, id="malformed-json"
    ),
    pytest.param(ev("not json"), ChunkKind.ERROR, False, None, True, id="not-json"),
    pytest.param(ev("[1, 2]"), ChunkKind.ERROR, False, None, True, id="json-array"),
]


@pytest.mark.parametrize(("event", "kind", "content_seen", "finish", "has_error"), WATCH)
def test_stream_watch_inspect(
    event: SSEEvent, kind: ChunkKind, content_seen: bool, finish: str | None, has_error: bool
) -> None:
    w = StreamWatch()
    assert w.inspect(event) is kind
    assert w.content_seen is content_seen
    assert w.finish_reason == finish
    assert (w.error is not None) is has_error
    assert w.done is (kind is ChunkKind.DONE)
    assert w.complete is False


def test_stream_watch_error_event_keeps_upstream_error() -> None:
    w = StreamWatch()
    err = {"message": "overloaded", "type": "server_error", "code": None}
    w.inspect(ev({"error": err}))
    assert w.error == err


def test_stream_watch_usage_captured() -> None:
    w = StreamWatch()
    assert w.inspect(ev({"id": "c", "choices": [], "usage": USAGE})) is ChunkKind.USAGE
    assert w.usage == Usage(9, 3, 2)


def test_stream_watch_full_stream() -> None:
    stream = (
        b": OPENROUTER PROCESSING\n\n"
        + b"data: "
        + orjson.dumps(chunk({"role": "assistant", "content": ""}, usage=None))
        + b"\n\n"
        + b"data: "
        + orjson.dumps(chunk({"content": "Hi"}, usage=None))
        + b"\n\n"
        + b"data: "
        + orjson.dumps(chunk({}, "stop", usage=None))
        + b"\n\n"
        + b"data: "
        + orjson.dumps({"id": "c", "choices": [], "usage": USAGE})
        + b"\n\n"
        + b"data: [DONE]\n\n"
    )
    d = SSEDecoder()
    w = StreamWatch()
    kinds = []
    for i in range(0, len(stream), 7):
        for e in d.feed(stream[i : i + 7]):
            kinds.append(w.inspect(e))
            if kinds[-1] is not ChunkKind.DONE:
                assert not w.complete
    assert d.finish() is None
    assert kinds == [
        ChunkKind.PREAMBLE,
        ChunkKind.PREAMBLE,
        ChunkKind.CONTENT,
        ChunkKind.CONTENT,
        ChunkKind.USAGE,
        ChunkKind.DONE,
    ]
    assert w.complete and w.done and w.finish_reason == "stop" and w.content_seen
    assert w.usage == Usage(9, 3, 2)
    assert w.chunks == 4
    assert w.error is None


@pytest.mark.parametrize(
    ("events", "complete"),
    [
        ([ev(chunk({"content": "a"})), ev("[DONE]")], False),  # no finish_reason
        ([ev(chunk({"content": "a"})), ev(chunk({}, "stop"))], False),  # no [DONE]
        ([ev(chunk({}, "tool_calls")), ev("[DONE]")], True),
        ([ev("[DONE]"), ev(chunk({}, "stop"))], True),
    ],
)
def test_stream_watch_complete(events: list[SSEEvent], complete: bool) -> None:
    w = StreamWatch()
    for e in events:
        w.inspect(e)
    assert w.complete is complete
