"""The pure parts of the Anthropic pass-through: body rewrite, forwarded headers, usage, stream watch."""

from __future__ import annotations

import orjson
import pytest

from relaygate.errors import ErrorClass
from relaygate.protocols.sse import SSEDecoder
from relaygate.providers.anthropic_passthrough import (
    EventKind,
    NativeStreamWatch,
    forwarded_headers,
    native_body,
    native_usage,
)


def test_native_body_rewrites_only_the_top_level_model() -> None:
    raw = (
        b'{"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":'
        b'{"type":"ephemeral"}}]}],  "model" : "alias","tools":[{"name":"t","input_schema":'
        b'{"properties":{"model":{"type":"string"}}}}],"thinking":{"type":"enabled","budget_tokens":1024}}'
    )
    out = native_body(raw, "claude-sonnet-4-5")
    assert out == raw.replace(b'"alias"', b'"claude-sonnet-4-5"')


def test_forwarded_headers_only_beta() -> None:
    got = forwarded_headers({"anthropic-beta": "a,b", "anthropic-version": "2023-06-01", "x-api-key": "k"})
    assert got == {"anthropic-beta": "a,b"}
    assert forwarded_headers({}) == {}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 10, "output_tokens": 5}, (10, 5, 0)),
        (
            {
                "input_tokens": 10,
                "output_tokens": 5,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 7,
            },
            (117, 5, 100),
        ),
    ],
)
def test_native_usage_counts_cache_reads_and_writes_as_prompt(
    usage: dict[str, int], expected: tuple[int, int, int]
) -> None:
    u = native_usage(usage)
    assert u is not None
    assert (u.prompt_tokens, u.completion_tokens, u.cached_tokens or 0) == expected
    assert native_usage(None) is None


def _sse(event: str, data: dict[str, object]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


START = _sse(
    "message_start",
    {
        "type": "message_start",
        "message": {"usage": {"input_tokens": 12, "cache_read_input_tokens": 30, "output_tokens": 1}},
    },
)


def _watch(stream: bytes) -> tuple[NativeStreamWatch, list[EventKind]]:
    watch = NativeStreamWatch()
    return watch, [watch.inspect(ev) for ev in SSEDecoder().feed(stream)]


def test_watch_reads_usage_and_stop_reason_and_commits_on_first_delta() -> None:
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hm"}}
    end = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 9}}
    watch, kinds = _watch(START + _sse("content_block_start", block) + _sse("ping", {"type": "ping"}))
    assert not watch.content_seen  # an empty block start is not content yet: still a failover
    assert kinds == [EventKind.OTHER, EventKind.OTHER, EventKind.OTHER]
    for ev in SSEDecoder().feed(
        _sse("content_block_delta", delta)
        + _sse("message_delta", end)
        + _sse("message_stop", {"type": "message_stop"})
    ):
        watch.inspect(ev)
    assert watch.content_seen and watch.done and watch.stop_reason == "max_tokens"
    assert watch.finish_reason == "length"
    u = watch.usage
    assert u is not None and (u.prompt_tokens, u.completion_tokens, u.cached_tokens) == (42, 9, 30)


def test_watch_tool_use_block_start_is_content() -> None:
    block = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "t", "name": "f"},
    }
    watch, _ = _watch(START + _sse("content_block_start", block))
    assert watch.content_seen


def test_watch_error_event_is_classified() -> None:
    err = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    watch, kinds = _watch(START + _sse("error", err))
    assert kinds[-1] is EventKind.ERROR
    assert watch.error is not None and watch.error.error_class is ErrorClass.SERVER_ERROR
    watch, kinds = _watch(b"event: content_block_delta\ndata: {not json\n\n")
    assert kinds == [EventKind.ERROR] and watch.error is not None
    assert watch.error.error_class is ErrorClass.MALFORMED
