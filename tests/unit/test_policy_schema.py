"""The strict ``policy:`` schema and the provider/tenant policy mixins."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from relaygate.config.policy_schema import DATA_CLASSES, PolicyConfig, PolicyRule, ProviderFacts, TenantPolicy


def test_defaults() -> None:
    cfg = PolicyConfig()
    assert cfg.rules == [] and cfg.default_data_class == "internal" and cfg.pii_detection is True
    assert DATA_CLASSES == ("public", "internal", "personal", "restricted")


def test_rule_needs_exactly_one_effect() -> None:
    with pytest.raises(ValidationError, match="exactly one of allow_only or deny"):
        PolicyRule.model_validate({"name": "x"})
    with pytest.raises(ValidationError, match="exactly one of allow_only or deny"):
        PolicyRule.model_validate({"name": "x", "allow_only": "true", "deny": "false"})
    with pytest.raises(ValidationError, match="empty"):
        PolicyRule.model_validate({"name": "x", "deny": "  "})
    rule = PolicyRule.model_validate({"name": "x", "deny": "true"})
    assert (rule.effect, rule.condition) == ("deny", "true")


def test_strict_keys_and_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        PolicyConfig.model_validate({"rules": [], "rulez": []})
    with pytest.raises(ValidationError, match="Extra inputs"):
        PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"region": ["EU"]}})
    cfg = PolicyConfig()
    with pytest.raises(ValidationError):
        cfg.pii_detection = False  # type: ignore[misc]


def test_rule_names_are_header_safe_and_unique() -> None:
    with pytest.raises(ValidationError, match="rule names"):
        PolicyRule.model_validate({"name": "has space", "deny": "true"})
    with pytest.raises(ValidationError, match=r"rules.2: duplicate rule name 'a' \(first at rules.0\)"):
        PolicyConfig.model_validate(
            {
                "rules": [
                    {"name": "a", "deny": "true"},
                    {"name": "b", "deny": "true"},
                    {"name": "a", "deny": "true"},
                ]
            }
        )


def test_match_lists() -> None:
    rule = PolicyRule.model_validate(
        {"name": "x", "deny": "true", "match": {"tenant_region": ["eu", "Cn"], "data_class": ["personal"]}}
    )
    assert rule.match.tenant_region == ["EU", "CN"]
    with pytest.raises(ValidationError):
        PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"tenant_region": []}})
    with pytest.raises(ValidationError):
        PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"data_class": ["secret"]}})
    with pytest.raises(ValidationError, match="ISO 3166-1 alpha-2"):
        PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"tenant_region": ["E U"]}})
    # A well-formed code that names no country would silently never match a tenant.
    for typo in ("Narnia", "XX", "Europe", "us-east-1"):
        with pytest.raises(ValidationError, match="ISO 3166-1 alpha-2"):
            PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"tenant_region": [typo]}})
    eea = PolicyRule.model_validate({"name": "x", "deny": "true", "match": {"tenant_region": ["eea", "AQ"]}})
    assert eea.match.tenant_region == ["EEA", "AQ"]


def test_provider_facts_mixin() -> None:
    class Provider(ProviderFacts):
        jurisdiction: str | None = None

    p = Provider.model_validate({"catalog": "openai", "trains_on_inputs": None, "tags": ["eu-dpa"]})
    assert p.model_fields_set == {"catalog", "trains_on_inputs", "tags"}
    with pytest.raises(ValidationError):
        Provider.model_validate({"data_retention_days": -1})
    with pytest.raises(ValidationError, match="tag"):
        Provider.model_validate({"tags": ["bad tag"]})


def test_tenant_policy() -> None:
    assert TenantPolicy().default_data_class is None
    assert (
        TenantPolicy.model_validate({"default_data_class": "restricted"}).default_data_class == "restricted"
    )
    with pytest.raises(ValidationError):
        TenantPolicy.model_validate({"default_data_class": "secret"})
