"""Cache keys (pure): which request fields change the key, the tenant scope, the skip rules."""

from __future__ import annotations

from typing import Any

import pytest

from relaygate.cache.keys import KEY_VERSION, cache_keys, normalise, request_bypass, skip_reason
from relaygate.config.cache_schema import RouteCacheConfig

ON = RouteCacheConfig(enabled=True)
BASE: dict[str, Any] = {
    "model": "chat",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
    "temperature": 0,
}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def key(
    data: dict[str, Any], route: str = "chat", tenant: str | None = "acme", cfg: RouteCacheConfig = ON
) -> str:
    return cache_keys(data, route, tenant, cfg).exact


# (field, value, changes the key?)
TABLE: list[tuple[str, Any, bool]] = [
    ("stream", True, False),
    ("stream_options", {"include_usage": True}, False),
    ("user", "end-user-42", False),
    ("metadata", {"trace": "x"}, False),
    ("store", True, False),
    ("model", "other-alias", False),  # the route stands for the model
    ("temperature", 0.0, False),  # 0 and 0.0 are the same JSON number
    ("max_tokens", 10, True),
    ("max_completion_tokens", 10, True),
    ("top_p", 0.5, True),
    ("seed", 7, True),
    ("stop", ["\n"], True),
    ("presence_penalty", 0.5, True),
    ("frequency_penalty", 0.5, True),
    ("logit_bias", {"50256": -100}, True),
    ("response_format", {"type": "json_object"}, True),
    ("tools", [TOOL], True),
    ("tool_choice", "required", True),
    ("parallel_tool_calls", False, True),
    ("reasoning_effort", "high", True),
    ("some_provider_knob", 1, True),  # unknown parameters may change the answer: kept
]


@pytest.mark.parametrize(("field", "value", "changes"), TABLE)
def test_which_parameters_change_the_key(field: str, value: Any, changes: bool) -> None:
    assert (key({**BASE, field: value}) != key(BASE)) is changes


def test_messages_change_the_key_and_one_text_part_equals_a_string() -> None:
    other = {**BASE, "messages": [BASE["messages"][0], {"role": "user", "content": "Hi there!"}]}
    assert key(other) != key(BASE)
    parts = {
        **BASE,
        "messages": [
            BASE["messages"][0],
            {"role": "user", "content": [{"type": "text", "text": "Hi there"}]},
        ],
    }
    assert key(parts) == key(BASE)
    assert key({**BASE, "seed": None}) == key(BASE)  # null means unset


def test_key_order_does_not_matter() -> None:
    assert key(dict(reversed(list(BASE.items())))) == key(BASE)


def test_tenant_and_route_are_in_the_key_unless_shared() -> None:
    assert key(BASE, tenant="acme") != key(BASE, tenant="beta")
    assert key(BASE, route="chat") != key(BASE, route="chat2")
    shared = RouteCacheConfig(enabled=True, share_across_tenants=True)
    assert key(BASE, tenant="acme", cfg=shared) == key(BASE, tenant="beta", cfg=shared)
    assert key(BASE, cfg=shared) != key(BASE)
    # names holding ':' cannot make two scopes collide
    assert key(BASE, route="a:b", tenant="c") != key(BASE, route="a", tenant="b:c")
    assert key(BASE).startswith(f"{KEY_VERSION}:chat:acme:")


def test_semantic_context_ignores_only_the_last_user_text() -> None:
    a = cache_keys(BASE, "chat", "acme", ON)
    para = {**BASE, "messages": [BASE["messages"][0], {"role": "user", "content": "Hello there"}]}
    b = cache_keys(para, "chat", "acme", ON)
    assert a.exact != b.exact and a.context == b.context and (a.query, b.query) == ("Hi there", "Hello there")
    other_system = {**BASE, "messages": [{"role": "system", "content": "Be long."}, BASE["messages"][1]]}
    assert cache_keys(other_system, "chat", "acme", ON).context != a.context
    assert cache_keys({**BASE, "max_tokens": 5}, "chat", "acme", ON).context != a.context
    tool_turn = {
        **BASE,
        "messages": [*BASE["messages"], {"role": "tool", "content": "42", "tool_call_id": "c"}],
    }
    assert cache_keys(tool_turn, "chat", "acme", ON).query is None  # nothing to embed


@pytest.mark.parametrize(
    ("data", "cfg", "reason"),
    [
        ({"temperature": 0}, ON, None),
        ({}, ON, "temperature"),  # unset = the provider default 1.0
        ({"temperature": 0.2}, ON, "temperature"),
        ({"temperature": 0.2}, RouteCacheConfig(enabled=True, allow_nonzero_temperature=True), None),
        ({"temperature": 0, "n": 2}, ON, "n"),
        ({"temperature": 0, "n": 1}, ON, None),
        ({"temperature": 0, "logprobs": True}, ON, "logprobs"),
        ({"temperature": 0, "tools": [TOOL]}, ON, None),
    ],
)
def test_skip_reasons(data: dict[str, Any], cfg: RouteCacheConfig, reason: str | None) -> None:
    assert skip_reason(data, cfg) == reason


def test_normalise_drops_delivery_fields_only() -> None:
    assert normalise({**BASE, "stream": True, "user": "u", "top_p": 1}) == {
        "messages": BASE["messages"],
        "temperature": 0,
        "top_p": 1,
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("max-age=0", None),
        ("no-cache", "no-cache"),
        ("No-Cache", "no-cache"),
        ("max-age=0, no-cache", "no-cache"),
        ('no-cache="set-cookie"', "no-cache"),
        ("no-store", "no-store"),
        ("no-cache, no-store", "no-store"),
        ("no-cache-please", None),
    ],
)
def test_request_bypass_reads_cache_control_directives(header: str | None, expected: str | None) -> None:
    assert request_bypass(header) == expected
