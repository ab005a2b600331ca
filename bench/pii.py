"""PII detection cost on 2 KB prompts, next to a plain regex scan of the same text.

Run: ``PYTHONPATH=src .venv/bin/python bench/pii.py``. Prints, per prompt kind, the median time of
``relaygate.policy.pii.detect_pii`` and of a baseline (one ``re.findall`` for e-mail-like and
digit-run tokens), and their ratio. Not a test: numbers depend on the machine; the budget from
issue 3 is "under ~5 ms for a 2 KB prompt".
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable

from relaygate.policy.pii import detect_pii, warm_up

SIZE = 2048
# Baseline: what a naive scanner would do, one pass of one regex for e-mail-ish and long digit runs.
_BASELINE = re.compile(r"\S+@\S+|[0-9][0-9 -]{6,}[0-9]")

_PROSE = (
    "The quarterly report covers revenue growth across the region, the hiring plan for the "
    "platform team and the outlook for next year. Please summarise the risks in three bullets. "
)
_PII = (
    " Contact Jane at jane.doe@example.com or +1 415 555 0132; card 4111 1111 1111 1111, "
    "IBAN DE89 3704 0044 0532 0130 00, server 192.168.1.20, SSN 536-22-1234. "
)
_CJK = (
    "请总结本季度的销售情况并给出下季度的建议。"
    "联系人张伟，邮箱 zhang.wei@example.cn，电话 +86 138 0013 8000。"  # noqa: RUF001
)
_TABLE = "| 2024-05-01 | 12 345 678 | 3.14159 | 0.25 | 1 024 | 2020-2024 | 98.6 | 4111 1111 1111 1112 |\n"


def _fill(*chunks: str) -> str:
    text = ""
    while len(text) < SIZE:
        for c in chunks:
            text += c
    return text[:SIZE]


def _median_us(fn: Callable[[str], object], text: str, rounds: int = 300) -> float:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(text)
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def main() -> None:
    t0 = time.perf_counter()
    warm_up()
    print(f"warm_up (imports phonenumbers, python-stdnum): {(time.perf_counter() - t0) * 1e3:.0f} ms\n")
    prompts = {
        "2 KB prose, no PII": _fill(_PROSE),
        "2 KB prose with PII": _fill(_PROSE * 6, _PII),
        "2 KB Chinese with email+phone": _fill(_CJK),
        "2 KB number table, no PII": _fill(_TABLE),
    }
    print(f"{'prompt':34} {'detect_pii':>12} {'baseline':>10} {'ratio':>7}  entities")
    for name, text in prompts.items():
        ours = _median_us(detect_pii, text)
        base = _median_us(_BASELINE.findall, text)
        found = ",".join(sorted(detect_pii(text))) or "-"
        print(f"{name:34} {ours:9.0f} us {base:7.0f} us {ours / base:6.1f}x  {found}")


if __name__ == "__main__":
    main()
