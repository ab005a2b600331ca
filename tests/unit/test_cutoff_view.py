"""The pure cutoff view and re-probe schedule (``relaygate.policy.cutoffs``), as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relaygate.ledger.cutoff_store import Cutoff
from relaygate.policy.cutoffs import (
    DEFAULT_CLEAR_AFTER_SUCCESSES,
    DEFAULT_PROBE_INTERVAL_S,
    CutoffView,
    probe_due,
    should_auto_clear,
)

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def cut(provider: str, region: str, source: str = "operator", **fields: object) -> Cutoff:
    return Cutoff(provider, region, f"{provider}:{region}", source, T0, **fields)  # type: ignore[arg-type]


VIEW = CutoffView.of(
    [
        cut("openai", "CN"),
        cut("openai", "RU", "detected"),
        cut("deepseek", "*"),
        cut("gemini", "EU"),
        cut("gemini", "*", "detected"),
        cut("anthropic", "US", expires_at=T0 + timedelta(hours=1)),
        cut("mistral", "EU", cleared_at=T0),  # history rows never count
    ],
    version=7,
)


@pytest.mark.parametrize(
    ("provider", "region", "expected"),
    [
        ("openai", "CN", "openai:CN"),
        ("openai", "cn", "openai:CN"),  # case-insensitive
        ("openai", " Cn ", "openai:CN"),
        ("openai", "RU", "openai:RU"),
        ("openai", "EU", None),  # other regions keep the provider
        ("openai", None, None),  # no region: only `*` applies
        ("openai", "", None),
        ("deepseek", "EU", "deepseek:*"),  # `*` matches every region
        ("deepseek", None, "deepseek:*"),  # ... and requests without one
        ("gemini", "eu", "gemini:EU"),  # the specific cutoff wins over `*`
        ("gemini", "US", "gemini:*"),
        ("gemini", None, "gemini:*"),
        ("anthropic", "US", "anthropic:US"),
        ("mistral", "EU", None),  # cleared
        ("OpenAI", "CN", None),  # provider ids are exact
        ("qwen", "CN", None),
    ],
)
def test_is_cut(provider: str, region: str | None, expected: str | None) -> None:
    found = VIEW.is_cut(provider, region)
    assert (found.target if found else None) == expected


def test_is_cut_with_now_ignores_expired() -> None:
    assert VIEW.is_cut("anthropic", "US", T0 + timedelta(minutes=59)) is not None
    assert VIEW.is_cut("anthropic", "US", T0 + timedelta(hours=1)) is None
    assert VIEW.is_cut("openai", "CN", T0 + timedelta(days=999)) is not None  # no expiry


def test_pairs_len_version_and_next_expiry() -> None:
    assert VIEW.pairs() == frozenset(
        {
            ("openai", "CN"),
            ("openai", "RU"),
            ("deepseek", "*"),
            ("gemini", "EU"),
            ("gemini", "*"),
            ("anthropic", "US"),
        }
    )
    assert ("anthropic", "US") not in VIEW.pairs(T0 + timedelta(hours=1))
    assert len(VIEW.pairs(T0 + timedelta(hours=1))) == 5 and len(VIEW.pairs(T0)) == 6
    assert len(VIEW) == 6 and VIEW.version == 7
    assert VIEW.next_expiry == T0 + timedelta(hours=1)
    assert CutoffView().next_expiry is None


def test_empty_view_cuts_nothing_and_views_are_immutable_and_hashable() -> None:
    empty = CutoffView()
    assert empty.is_cut("openai", "CN") is None and empty.pairs() == frozenset() and len(empty) == 0
    with pytest.raises(AttributeError):
        VIEW.version = 8  # type: ignore[misc]
    assert hash(VIEW) == hash(CutoffView.of(VIEW.cutoffs, 7)) and VIEW == CutoffView.of(VIEW.cutoffs, 7)


def test_lower_case_regions_in_input_are_indexed_upper_case() -> None:
    view = CutoffView.of([cut("openai", "cn")])
    assert view.pairs() == frozenset({("openai", "CN")})
    assert view.is_cut("openai", "CN") is not None


def test_duplicate_pairs_prefer_the_operator() -> None:
    view = CutoffView.of([cut("openai", "CN", "detected"), cut("openai", "CN", "operator")])
    found = view.is_cut("openai", "CN")
    assert found is not None and found.source == "operator"


def test_defaults_match_the_documented_schedule() -> None:
    assert DEFAULT_PROBE_INTERVAL_S == 300.0
    assert DEFAULT_CLEAR_AFTER_SUCCESSES == 3


@pytest.mark.parametrize(
    ("cutoff", "now", "interval", "due"),
    [
        (cut("o", "CN", "detected"), T0 + timedelta(seconds=299), 300, False),
        (cut("o", "CN", "detected"), T0 + timedelta(seconds=300), 300, True),
        (cut("o", "CN", "detected"), T0 + timedelta(seconds=60), 30, True),
        (
            cut("o", "CN", "detected", last_probe_at=T0 + timedelta(seconds=400)),
            T0 + timedelta(seconds=600),
            300,
            False,
        ),
        (
            cut("o", "CN", "detected", last_probe_at=T0 + timedelta(seconds=400)),
            T0 + timedelta(seconds=700),
            300,
            True,
        ),
        (cut("o", "CN", "operator"), T0 + timedelta(days=1), 300, False),  # operator: never probed
        (cut("o", "CN", "detected", cleared_at=T0), T0 + timedelta(days=1), 300, False),
    ],
)
def test_probe_due(cutoff: Cutoff, now: datetime, interval: float, due: bool) -> None:
    assert probe_due(cutoff, now, interval) is due


def test_probe_due_default_interval_and_bad_interval() -> None:
    assert probe_due(cut("o", "CN", "detected"), T0 + timedelta(minutes=5)) is True
    assert probe_due(cut("o", "CN", "detected"), T0 + timedelta(minutes=4)) is False
    with pytest.raises(ValueError):
        probe_due(cut("o", "CN", "detected"), T0, 0)


@pytest.mark.parametrize(
    ("cutoff", "required", "clear"),
    [
        (cut("o", "CN", "detected", probe_successes=3), 3, True),
        (cut("o", "CN", "detected", probe_successes=4), 3, True),
        (cut("o", "CN", "detected", probe_successes=2), 3, False),
        (cut("o", "CN", "detected", probe_successes=1), 1, True),
        (cut("o", "CN", "detected", probe_successes=0), 1, False),
        (cut("o", "CN", "detected", probe_successes=99), None, False),  # None: never
        (cut("o", "CN", "operator", probe_successes=99), 1, False),  # operator: never
        (cut("o", "CN", "detected", probe_successes=5, cleared_at=T0), 3, False),
    ],
)
def test_should_auto_clear(cutoff: Cutoff, required: int | None, clear: bool) -> None:
    assert should_auto_clear(cutoff, required) is clear


def test_should_auto_clear_default_and_bad_setting() -> None:
    assert should_auto_clear(cut("o", "CN", "detected", probe_successes=3)) is True
    assert should_auto_clear(cut("o", "CN", "detected", probe_successes=2)) is False
    with pytest.raises(ValueError):
        should_auto_clear(cut("o", "CN", "detected"), 0)


def test_policy_module_is_pure() -> None:
    """No storage import at run time: the hot path module stays I/O-free."""
    import relaygate.policy.cutoffs as module

    assert "sqlalchemy" not in vars(module) and "Cutoff" not in vars(module)
