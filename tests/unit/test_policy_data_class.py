"""Data class precedence: header > tenant default > policy default; PII only raises."""

from __future__ import annotations

import pytest

from relaygate.errors import InvalidRequestError
from relaygate.policy import DATA_CLASS_HEADER, effective_data_class, parse_data_class

EMAIL = frozenset({"EMAIL_ADDRESS"})


@pytest.mark.parametrize(
    ("header", "tenant", "policy", "detected", "expected"),
    [
        (None, None, "internal", (), ("internal", "policy")),
        (None, None, "public", (), ("public", "policy")),
        (None, "restricted", "internal", (), ("restricted", "tenant")),
        ("public", "restricted", "internal", (), ("public", "header")),
        ("personal", None, "internal", (), ("personal", "header")),
        (" Restricted ", None, "internal", (), ("restricted", "header")),
        # PII raises to personal ...
        (None, None, "internal", EMAIL, ("personal", "pii")),
        ("public", None, "internal", EMAIL, ("personal", "pii")),
        (None, "public", "internal", {"PHONE_NUMBER", "IBAN_CODE"}, ("personal", "pii")),
        # ... but never lowers a declared class.
        ("personal", None, "internal", EMAIL, ("personal", "header")),
        ("restricted", None, "internal", EMAIL, ("restricted", "header")),
        (None, "restricted", "internal", EMAIL, ("restricted", "tenant")),
        (None, None, "restricted", EMAIL, ("restricted", "policy")),
    ],
)
def test_precedence(header, tenant, policy, detected, expected) -> None:  # type: ignore[no-untyped-def]
    assert effective_data_class(header, tenant, policy, detected) == expected


@pytest.mark.parametrize("value", ["secret", "", "PUBLIC!", "pub lic", "x" * 100])
def test_bad_header_is_a_400_naming_the_header(value: str) -> None:
    with pytest.raises(InvalidRequestError) as err:
        effective_data_class(value, None, "internal", ())
    assert err.value.status == 400
    assert err.value.param == DATA_CLASS_HEADER and err.value.code == "invalid_data_class"
    assert (
        DATA_CLASS_HEADER in err.value.message
        and "public, internal, personal, restricted" in err.value.message
    )
    assert len(err.value.message) < 200


def test_parse_data_class() -> None:
    assert parse_data_class("PERSONAL") == "personal"
