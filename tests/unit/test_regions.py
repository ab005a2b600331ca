"""``relaygate.config.regions``: the one region validator, against the fixed ISO 3166-1 list."""

from __future__ import annotations

import phonenumbers
import pytest

from relaygate.config.regions import ISO_3166_ALPHA2, check_cutoff_region, check_region


def test_the_list_is_iso_3166_1_alpha_2() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert all(len(c) == 2 and c.isascii() and c.isupper() for c in ISO_3166_ALPHA2)
    # phonenumbers (a dependency) knows telephone regions, not ISO 3166-1: these are the gaps
    # that keep it from being the source.
    phone = set(phonenumbers.SUPPORTED_REGIONS)
    assert ISO_3166_ALPHA2 - phone >= {"AQ", "BV", "HM"}
    assert phone - ISO_3166_ALPHA2 >= {"XK", "AC", "TA"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("DE", "DE"), (" cn ", "CN"), ("aq", "AQ"), ("EU", "EU"), ("eea", "EEA"), (None, None)],
)
def test_check_region_accepts_assigned_codes_and_groups(text: str | None, expected: str | None) -> None:
    assert check_region(text) == expected


@pytest.mark.parametrize("text", ["XX", "Narnia", "Mars", "Europe", "", "*", "us-east-1", "E U", "ZZ"])
def test_check_region_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 3166-1 alpha-2"):
        check_region(text)


@pytest.mark.parametrize(("text", "hint"), [("UK", "GB"), ("usa", "US"), ("EL", "GR")])
def test_common_mistakes_get_a_hint(text: str, hint: str) -> None:
    with pytest.raises(ValueError, match=f"did you mean {hint}"):
        check_region(text)


@pytest.mark.parametrize(("text", "expected"), [("*", "*"), (None, "*"), ("", "*"), (" ", "*"), ("cn", "CN")])
def test_cutoff_regions_add_every_region(text: str | None, expected: str) -> None:
    assert check_cutoff_region(text) == expected


def test_cutoff_regions_reject_typos() -> None:
    with pytest.raises(ValueError, match="'Narnia'"):
        check_cutoff_region("Narnia")
