"""Strict schema of the ``policy:`` section and of the policy facts carried by providers and tenants.

Like ``schema.py``: unknown keys are errors and every model is frozen. The CEL conditions in
``PolicyRule.allow_only`` / ``deny`` are only checked for shape here; ``relaygate.policy.compile_policy``
compiles them at load and names the failing rule (``policy.rules.3 (name): ...``).

Mixins for the lead to add to existing models (same pydantic config, so plain inheritance works):

- ``ProviderFacts`` -> ``_ProviderBase`` (``jurisdiction`` and ``regions`` already live there).
- ``TenantPolicy`` -> ``TenantConfig``.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from relaygate.config.regions import check_region

__all__ = [
    "DATA_CLASSES",
    "DataClass",
    "PolicyConfig",
    "PolicyRule",
    "ProviderFacts",
    "RuleMatch",
    "TenantPolicy",
]

DataClass = Literal["public", "internal", "personal", "restricted"]
# Ordered from least to most sensitive: ``public < internal < personal < restricted``.
DATA_CLASSES: tuple[DataClass, ...] = ("public", "internal", "personal", "restricted")

# Rule names travel in the ``x-relaygate-policy`` response header, so keep them header-safe.
_RULE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_tags(tags: list[str] | None) -> list[str] | None:
    for tag in tags or []:
        if not _TAG.match(tag):
            raise ValueError(f"tag {tag!r} may hold only letters, digits and _ . : / - (64 at most)")
    return tags


class ProviderFacts(_Strict):
    """Facts policy rules test, beyond ``jurisdiction``/``regions`` (already on providers).

    ``None`` means unknown, and unknown facts fail closed: a rule that reads one excludes the
    provider. ``catalog`` names an entry of ``relaygate.policy.catalog.CATALOG`` whose facts fill in
    every field the provider config does not set itself (field by field; an explicit ``null`` in
    the config counts as set, i.e. "unknown").
    """

    catalog: str | None = Field(None, description="built-in catalog entry to inherit facts from")
    data_retention_days: int | None = Field(
        None, ge=0, description="days the provider keeps prompts/outputs by default; 0 = not stored"
    )
    trains_on_inputs: bool | None = Field(None, description="provider trains models on API inputs by default")
    tags: list[str] = Field(default_factory=list, description="free-form labels rules can test")

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str]) -> list[str]:
        _check_tags(v)
        return v


class TenantPolicy(_Strict):
    """Per-tenant policy settings. ``default_data_class`` applies when a request has no header."""

    default_data_class: DataClass | None = None


class RuleMatch(_Strict):
    """Which requests (and candidates) a rule applies to. An omitted list means "any".

    - ``tenant_region``: ISO 3166-1 alpha-2 codes or ``EU`` / ``EEA`` (``relaygate.config.regions``),
      compared case-insensitively. A request
      without a tenant region matches only rules that omit this list.
    - ``data_class`` / ``min_data_class``: exact classes, or "this class or more sensitive".
    - ``route``, ``tenant``: exact names.
    - ``tags``: the rule applies only to candidates whose provider carries one of these tags.
    """

    tenant_region: list[str] | None = Field(None, min_length=1)
    data_class: list[DataClass] | None = Field(None, min_length=1)
    min_data_class: DataClass | None = None
    route: list[str] | None = Field(None, min_length=1)
    tenant: list[str] | None = Field(None, min_length=1)
    tags: list[str] | None = Field(None, min_length=1)

    @field_validator("tenant_region")
    @classmethod
    def _regions(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [str(check_region(r)) for r in v]

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: list[str] | None) -> list[str] | None:
        return _check_tags(v)


class PolicyRule(_Strict):
    """One rule: a match and exactly one effect, a CEL condition over the candidate.

    - ``allow_only``: only candidates for which the condition is true stay.
    - ``deny``: candidates for which the condition is true are removed.

    Either way a condition that cannot be evaluated (an unknown fact, a type error, a non-bool)
    removes the candidate: policy fails closed. CEL: https://github.com/google/cel-spec
    """

    name: str
    description: str = ""
    match: RuleMatch = RuleMatch()
    allow_only: str | None = None
    deny: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _RULE_NAME.match(v):
            raise ValueError("rule names may hold only letters, digits and _ . : - (64 at most)")
        return v

    @model_validator(mode="after")
    def _one_effect(self) -> PolicyRule:
        if (self.allow_only is None) == (self.deny is None):
            raise ValueError("give exactly one of allow_only or deny")
        if not (self.allow_only or self.deny or "").strip():
            raise ValueError("the condition is empty")
        return self

    @property
    def effect(self) -> Literal["allow_only", "deny"]:
        return "allow_only" if self.allow_only is not None else "deny"

    @property
    def condition(self) -> str:
        """The CEL source of whichever effect is set."""
        return self.allow_only if self.allow_only is not None else (self.deny or "")


class PolicyConfig(_Strict):
    """The ``policy:`` section. Rules apply in order and only ever narrow the candidate set."""

    rules: list[PolicyRule] = Field(default_factory=list)
    default_data_class: DataClass = "internal"
    pii_detection: bool = True

    @model_validator(mode="after")
    def _unique_names(self) -> PolicyConfig:
        seen: dict[str, int] = {}
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(
                    f"rules.{i}: duplicate rule name {rule.name!r} (first at rules.{seen[rule.name]})"
                )
            seen[rule.name] = i
        return self
