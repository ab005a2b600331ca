"""Value types of a policy decision: request facts, candidates and their facts, exclusions, the decision.

All are frozen and hashable so the engine can memoize verdicts on them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from relaygate.config.policy_schema import DATA_CLASSES, DataClass

__all__ = [
    "Candidate",
    "Decision",
    "Exclusion",
    "ExclusionCode",
    "Facts",
    "RequestFacts",
]

ExclusionCode = Literal["policy_deny", "policy_allow_only", "fact_unknown", "eval_error", "cutoff"]

# Longest reason code we put in a response header; the ledger keeps the full decision.
_MAX_RULES_IN_CODE = 8


@dataclass(frozen=True, slots=True)
class Facts:
    """What policy knows about one provider, after catalog merge and config overrides.

    ``None`` (and an empty ``regions``) means unknown. Unknown facts are left out of the CEL
    ``provider`` map entirely, so an expression that reads one errors and the candidate is
    excluded (fail closed). ``tags`` are always known: no tag is a fact too.

    - ``jurisdiction``: ISO 3166-1 alpha-2 country of the operator (``US``, ``CN``, ``FR``).
    - ``regions``: where inference runs (ISO codes, or groups such as ``EU``); upper-cased, like
      ``jurisdiction``, so rules compare against ``"DE"``, ``"EU"``, ``"EU-WEST-1"``.
    - ``data_retention_days``: days prompts/outputs are kept by default; ``0`` = not stored.
    - ``trains_on_inputs``: the provider trains models on API inputs by default.
    """

    jurisdiction: str | None = None
    regions: tuple[str, ...] = ()
    data_retention_days: int | None = None
    trains_on_inputs: bool | None = None
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.jurisdiction is not None:
            object.__setattr__(self, "jurisdiction", self.jurisdiction.upper())
        object.__setattr__(self, "regions", tuple(r.upper() for r in self.regions))
        object.__setattr__(self, "tags", tuple(self.tags))

    def cel_map(self, provider: str) -> dict[str, Any]:
        """The CEL ``provider`` variable: ``name`` plus every *known* fact (unknown ones are absent)."""
        out: dict[str, Any] = {"name": provider, "tags": list(self.tags)}
        if self.jurisdiction is not None:
            out["jurisdiction"] = self.jurisdiction
        if self.regions:
            out["regions"] = list(self.regions)
        if self.data_retention_days is not None:
            out["data_retention_days"] = self.data_retention_days
        if self.trains_on_inputs is not None:
            out["trains_on_inputs"] = self.trains_on_inputs
        return out


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """Who asks, under which law, for what: the request side of a decision.

    ``tenant_region`` is upper-cased (``eu`` and ``EU`` are one region); ``None`` means the
    tenant has no region, so only rules without a ``tenant_region`` match apply.
    """

    tenant: str
    tenant_region: str | None
    data_class: DataClass
    route: str

    def __post_init__(self) -> None:
        if self.data_class not in DATA_CLASSES:
            raise ValueError(f"unknown data class {self.data_class!r}")
        if self.tenant_region is not None:
            object.__setattr__(self, "tenant_region", self.tenant_region.strip().upper() or None)

    def cel_map(self) -> dict[str, Any]:
        """The CEL ``request`` variable; ``tenant_region`` is absent when unknown."""
        out: dict[str, Any] = {"tenant": self.tenant, "data_class": self.data_class, "route": self.route}
        if self.tenant_region is not None:
            out["tenant_region"] = self.tenant_region
        return out


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment the router could use: its id, upstream model, provider name and facts."""

    deployment_id: str
    model: str
    provider: str
    facts: Facts = field(default_factory=Facts)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Why one candidate was removed.

    ``rule_index``/``rule`` name the policy rule (``None`` for a cutoff). ``code`` is one of
    ``policy_deny``, ``policy_allow_only``, ``fact_unknown`` (the rule read a fact the provider
    does not declare), ``eval_error`` (the condition failed or was not a bool) and ``cutoff``.
    """

    deployment_id: str
    code: ExclusionCode
    message: str
    rule_index: int | None = None
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment_id,
            "code": self.code,
            "rule_index": self.rule_index,
            "rule": self.rule,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The allowed deployment ids (candidate order kept) and one exclusion per removed candidate."""

    allowed: tuple[str, ...]
    excluded: tuple[Exclusion, ...] = ()

    @property
    def reason_code(self) -> str:
        """Short summary for the ``x-relaygate-policy`` header.

        ``none`` when nothing was excluded, else e.g.
        ``excluded=3;rules=eu-personal-only,no-training;cutoffs=1`` (rule names in first-seen
        order, at most 8 then ``+N``).
        """
        if not self.excluded:
            return "none"
        names: list[str] = []
        cutoffs = 0
        for ex in self.excluded:
            if ex.code == "cutoff":
                cutoffs += 1
            elif ex.rule is not None and ex.rule not in names:
                names.append(ex.rule)
        parts = [f"excluded={len(self.excluded)}"]
        if names:
            shown = names[:_MAX_RULES_IN_CODE]
            extra = len(names) - len(shown)
            parts.append("rules=" + ",".join(shown) + (f",+{extra}" if extra else ""))
        if cutoffs:
            parts.append(f"cutoffs={cutoffs}")
        return ";".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for the ledger row."""
        return {
            "allowed": list(self.allowed),
            "excluded": [ex.to_dict() for ex in self.excluded],
            "reason_code": self.reason_code,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Inverse of ``to_dict`` (the reason code is derived, so it is not read back)."""
        return cls(
            allowed=tuple(data["allowed"]),
            excluded=tuple(
                Exclusion(
                    deployment_id=e["deployment"],
                    code=e["code"],
                    message=e["message"],
                    rule_index=e.get("rule_index"),
                    rule=e.get("rule"),
                )
                for e in data.get("excluded", ())
            ),
        )
