"""Offline PII detection: entity types only, validated candidates, multilingual text."""

from __future__ import annotations

import pytest

from relaygate.policy import detect_pii, messages_text
from relaygate.policy.pii import ENTITY_TYPES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe@example.com today", {"EMAIL_ADDRESS"}),
        ("mail müller@beispiel.de bitte", {"EMAIL_ADDRESS"}),
        (
            "请联系张伟，邮箱 zhang.wei@example.cn，电话 +86 138 0013 8000。",  # noqa: RUF001
            {"EMAIL_ADDRESS", "PHONE_NUMBER"},
        ),
        ("电话：13800138000，谢谢", {"PHONE_NUMBER"}),  # noqa: RUF001
        ("E-Mail：ｈａｎｓ＠ｂｅｉｓｐｉｅｌ．ｄｅ", {"EMAIL_ADDRESS"}),  # full-width forms  # noqa: RUF001
        ("Ruf mich an: 030 1234567", {"PHONE_NUMBER"}),
        ("Appelez le 01 42 68 53 00 demain", {"PHONE_NUMBER"}),
        ("call +1 415 555 0132 now", {"PHONE_NUMBER"}),
        ("Tel. (415) 555-0132", {"PHONE_NUMBER"}),
        ("London office 020 7946 0958", {"PHONE_NUMBER"}),
        ("+1 415 555 0132 4111 1111 1111 1111", {"PHONE_NUMBER", "CREDIT_CARD"}),
        ("card 4111 1111 1111 1111 exp 12/29", {"CREDIT_CARD"}),
        ("カード番号4111111111111111です", {"CREDIT_CARD"}),
        ("mastercard 5555-5555-5555-4444", {"CREDIT_CARD"}),
        ("IBAN DE89 3704 0044 0532 0130 00 Thanks", {"IBAN_CODE"}),
        ("pay GB82WEST12345698765432 now", {"IBAN_CODE"}),
        ("server at 192.168.1.20.", {"IP_ADDRESS"}),
        ("peer fe80::1ff:fe23:4567:890a", {"IP_ADDRESS"}),
        ("SSN 536-22-1234", {"US_SSN"}),
        ("身份证号 11010519491231002X", {"CN_RIC"}),
    ],
)
def test_positives(text: str, expected: set[str]) -> None:
    assert detect_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Summarise the quarterly report in three bullets.",
        "今天天气很好，我们去公园散步吧。",  # noqa: RUF001
        "card 4111 1111 1111 1112",  # fails Luhn
        "ref 1234 5678 9012 3456",  # fails Luhn
        "IBAN DE89 3704 0044 0532 0130 01",  # fails mod-97
        "SSN 078-05-1120",  # the famous invalid Woolworth number
        "SSN 000-12-3456",
        "ID 11010519491231002Y",  # bad checksum character
        "revenue 12 345 678 EUR in 2020-2024, pi 3.14159265, on 2024-05-01",
        "order 1234567890 shipped",
        "localhost 127.0.0.1 and ::1 and 0.0.0.0",
        "upgrade to version 1.2.3.4 or v10.0.0.1",
        "meeting at 10:30:00, use std::vector<int>",
        "ratio 99.5% of 1,024,768 rows",
        "not an email: user@localhost or @handle",
    ],
)
def test_negatives(text: str) -> None:
    assert detect_pii(text) == frozenset()


def test_returns_only_types_never_values() -> None:
    found = detect_pii("jane.doe@example.com 4111 1111 1111 1111 +1 415 555 0132")
    assert found <= set(ENTITY_TYPES)
    assert all("@" not in f and not any(c.isdigit() for c in f) for f in found)


def test_messages_text() -> None:
    messages = [
        {"role": "system", "content": "You are helpful."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "my mail is a.b@example.org"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_text", "text": "second part"},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"iban": "x"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    text = messages_text(messages)
    assert text.splitlines() == [
        "You are helpful.",
        "my mail is a.b@example.org",
        "second part",
        '{"iban": "x"}',
        "ok",
    ]
    assert detect_pii(text) == {"EMAIL_ADDRESS"}
    assert messages_text([]) == ""


def test_many_number_candidates_stay_cheap() -> None:
    import time

    table = (
        "| 2024-05-01 | 12 345 678 | 3.14159 | 0.25 | 1 024 | 2020-2024 | 98.6 | 4111 1111 1111 1112 |\n" * 25
    )
    detect_pii(table)
    t0 = time.perf_counter()
    assert detect_pii(table) == frozenset()
    assert time.perf_counter() - t0 < 0.5  # generous: guards against pathological backtracking only
